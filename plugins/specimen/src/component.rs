//! The component itself.

use std::hint::black_box;

use panelink_whm::bindings::exports::panelink::adapter::plugin::{Guest, Support};
use panelink_whm::bindings::panelink::adapter::types::{
    AccountOutcome, AccountWork, Description, Limits, LinkGroup, LinkSpec, LinkTemplate,
    ListedLink, PanelAccount, PanelAuth, PluginError, Server, Settings, SignInStyle,
};

struct Specimen;

/// The `key=value` lines of the region (after the marker).
fn config() -> impl Iterator<Item = (&'static str, &'static str)> {
    let region: &'static [u8; super::REGION_SIZE] = black_box(&super::CONFIG);
    let text = std::str::from_utf8(region).unwrap_or_default();
    text.strip_prefix(super::MARKER)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().split_once('='))
}

fn value(key: &str) -> &'static str {
    config()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn link(spec: &str) -> LinkSpec {
    let mut parts = spec.split('|');
    let mut next = || parts.next().unwrap_or_default().to_owned();
    let scope = next();
    let group = match next().as_str() {
        "ordering" => LinkGroup::Ordering,
        "support" => LinkGroup::Support,
        _ => LinkGroup::Account,
    };
    LinkSpec {
        scope,
        group,
        default_label: next(),
        implements: None,
        destination: next(),
        icon: None,
    }
}

fn spin() -> ! {
    let mut counter = 0_u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

fn behave(key: &str) {
    match value(key) {
        "trap" => panic!("specimen: {key} traps as configured"),
        "loop" => spin(),
        _ => {}
    }
}

impl Guest for Specimen {
    fn describe() -> Description {
        Description {
            id: value("id").to_owned(),
            name: value("name").to_owned(),
            version: value("version").to_owned(),
            description: value("description").to_owned(),
            contract_version: value("contract").to_owned(),
            links: config()
                .filter(|(k, _)| *k == "link")
                .map(|(_, v)| link(v))
                .collect(),
            // It sends nothing to a panel.
            allowed_requests: Vec::new(),
            auth: PanelAuth::SchemeUserToken("whm".to_owned()),
            sign_in: SignInStyle::TokenExchange,
            limits: Limits {
                accounts_per_call: 300,
                operations_per_request: 300,
            },
        }
    }

    fn check_server(server: Server) -> Result<Support, PluginError> {
        behave("check");
        let supported = value("check") != "unsupported";
        Ok(Support {
            supported,
            detail: if supported {
                format!("specimen supports {}", server.hostname)
            } else {
                format!(
                    "specimen does not support {} (as configured)",
                    server.hostname
                )
            },
        })
    }

    fn provision(
        _server: Server,
        _settings: Settings,
        _templates: Vec<LinkTemplate>,
        accounts: Vec<AccountWork>,
    ) -> Result<Vec<AccountOutcome>, PluginError> {
        behave("provision");
        Ok(accounts
            .into_iter()
            .map(|a| AccountOutcome {
                username: a.username,
                results: Vec::new(),
            })
            .collect())
    }

    fn deprovision(
        _server: Server,
        _settings: Settings,
        usernames: Vec<String>,
    ) -> Result<Vec<AccountOutcome>, PluginError> {
        Ok(usernames
            .into_iter()
            .map(|username| AccountOutcome {
                username,
                results: Vec::new(),
            })
            .collect())
    }

    fn list_links(
        _server: Server,
        _settings: Settings,
        _username: String,
    ) -> Result<Vec<ListedLink>, PluginError> {
        Ok(Vec::new())
    }

    fn list_accounts(_server: Server) -> Result<Vec<PanelAccount>, PluginError> {
        Ok(Vec::new())
    }
}

panelink_whm::bindings::export_adapter!(Specimen with_types_in panelink_whm::bindings);
