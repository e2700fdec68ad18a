//! The component glue: the contract's `plugin` export, calling [`crate::panel`] with the host's
//! `http` import as its [`Transport`].
#![allow(
    unsafe_code,
    reason = "the export macro of the bindings generates the canonical-ABI entry points"
)]

use crate::bindings::exports::panelink::adapter::plugin::{Guest, Support};
use crate::bindings::panelink::adapter::http::{self, Error as HttpError, Request, Response};
use crate::bindings::panelink::adapter::types::{
    AccountOutcome, AccountWork, Description, LinkTemplate, ListedLink, PanelAccount, PluginError,
    Server, Settings,
};
use crate::panel::{self, Transport};

/// The host's `http` import.
struct Host;

impl Transport for Host {
    fn send(&mut self, request: Request) -> Result<Response, HttpError> {
        http::send(&request)
    }
}

/// The exported plugin.
struct Plugin;

impl Guest for Plugin {
    fn describe() -> Description {
        crate::describe()
    }

    fn check_server(server: Server) -> Result<Support, PluginError> {
        panel::check_server(&mut Host, &server)
    }

    fn provision(
        server: Server,
        settings: Settings,
        templates: Vec<LinkTemplate>,
        accounts: Vec<AccountWork>,
    ) -> Result<Vec<AccountOutcome>, PluginError> {
        panel::provision(&mut Host, &server, &settings, &templates, &accounts)
    }

    fn deprovision(
        server: Server,
        settings: Settings,
        usernames: Vec<String>,
    ) -> Result<Vec<AccountOutcome>, PluginError> {
        panel::deprovision(&mut Host, &server, &settings, &usernames)
    }

    fn list_links(
        server: Server,
        settings: Settings,
        username: String,
    ) -> Result<Vec<ListedLink>, PluginError> {
        panel::list_links(&mut Host, &server, &settings, &username)
    }

    fn list_accounts(server: Server) -> Result<Vec<PanelAccount>, PluginError> {
        panel::list_accounts(&mut Host, &server)
    }
}

crate::bindings::export!(Plugin with_types_in crate::bindings);
