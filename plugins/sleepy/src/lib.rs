//! A test component whose `describe` never returns: it sleeps through WASI's monotonic clock.
//!
//! Built by plain `wasm32-wasip2` std, so it imports `wasi:clocks` and `wasi:io/poll` like any
//! component that sleeps. The host must give up on it within its load deadline and go on (at
//! start-up: become ready and serve the other plugins). Every other export fails, should the
//! host ever get that far. Only compiled for `wasm32`: natively this crate is empty.

#[cfg(target_arch = "wasm32")]
mod component {
    use std::time::Duration;

    use panelink_whm::bindings::exports::panelink::adapter::plugin::{Guest, Support};
    use panelink_whm::bindings::panelink::adapter::types::{
        AccountOutcome, AccountWork, Description, LinkTemplate, ListedLink, PanelAccount,
        PluginError, Server, Settings,
    };

    struct Sleepy;

    fn refused<T>() -> Result<T, PluginError> {
        Err(PluginError::Unsupported(
            "sleepy only ever sleeps in describe".to_owned(),
        ))
    }

    impl Guest for Sleepy {
        fn describe() -> Description {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }

        fn check_server(_server: Server) -> Result<Support, PluginError> {
            refused()
        }

        fn provision(
            _server: Server,
            _settings: Settings,
            _templates: Vec<LinkTemplate>,
            _accounts: Vec<AccountWork>,
        ) -> Result<Vec<AccountOutcome>, PluginError> {
            refused()
        }

        fn deprovision(
            _server: Server,
            _settings: Settings,
            _usernames: Vec<String>,
        ) -> Result<Vec<AccountOutcome>, PluginError> {
            refused()
        }

        fn list_links(
            _server: Server,
            _settings: Settings,
            _username: String,
        ) -> Result<Vec<ListedLink>, PluginError> {
            refused()
        }

        fn list_accounts(_server: Server) -> Result<Vec<PanelAccount>, PluginError> {
            refused()
        }
    }

    panelink_whm::bindings::export_adapter!(Sleepy with_types_in panelink_whm::bindings);
}
