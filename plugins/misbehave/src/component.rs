//! The component itself.

use std::hint::black_box;
use std::time::{Duration, Instant};

use panelink_whm::bindings::exports::panelink::adapter::plugin::{Guest, Support};
use panelink_whm::bindings::panelink::adapter::types::{
    AccountOutcome, AccountWork, AllowedRequest, Credential, Description, Limits, LinkGroup,
    LinkSpec, LinkTemplate, ListedLink, Method, Operation, OperationResult, PanelAccount,
    PanelAuth, PluginError, Server, Settings, SignInStyle, Tunnel,
};
use panelink_whm::bindings::panelink::adapter::{http, log};

struct Misbehave;

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn well_behaved(usernames: impl Iterator<Item = String>) -> Vec<AccountOutcome> {
    usernames
        .map(|username| AccountOutcome {
            username,
            results: Vec::new(),
        })
        .collect()
}

fn url(server: &Server, port: u16, path: &str) -> String {
    let scheme = if server.secure { "https" } else { "http" };
    format!("{scheme}://{}:{port}{path}", server.hostname)
}

/// Sends a GET to `url`; `Ok(status)` when an answer came back.
fn get(url: String) -> Result<u16, http::Error> {
    http::send(&http::Request {
        method: http::Method::Get,
        url,
        headers: Vec::new(),
        body: Vec::new(),
    })
    .map(|response| response.status)
}

/// POSTs `body` to `path_and_query` on the server; `Ok(status)` when an answer came back.
fn post(server: &Server, path_and_query: &str, body: &str) -> Result<u16, http::Error> {
    http::send(&http::Request {
        method: Method::Post,
        url: url(server, server.port, path_and_query),
        headers: vec![(
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        )],
        body: body.as_bytes().to_vec(),
    })
    .map(|response| response.status)
}

/// Waits through WASI's monotonic clock (a `subscribe-duration` pollable, then `poll`).
fn sleep_for_an_hour() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The answer to an escape attempt the host did not end.
fn escaped(
    accounts: Vec<AccountWork>,
    attempt: Result<u16, http::Error>,
) -> Result<Vec<AccountOutcome>, PluginError> {
    match attempt {
        Ok(status) => {
            let mut outcomes = well_behaved(accounts.into_iter().map(|a| a.username));
            if let Some(first) = outcomes.first_mut() {
                first.results.push(OperationResult {
                    op: Operation::EnsureGroup,
                    error: Some(format!("escape was not stopped: HTTP {status}")),
                });
            }
            Ok(outcomes)
        }
        Err(e) => Err(PluginError::InvalidInput(format!(
            "escape refused by the host: {e:?}"
        ))),
    }
}

fn spin() -> ! {
    let mut counter = 0_u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

fn hog() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0_u8; MIB];
        for byte in block.iter_mut().step_by(PAGE) {
            *byte = 1;
        }
        blocks.push(black_box(block));
    }
}

impl Guest for Misbehave {
    fn describe() -> Description {
        Description {
            id: "misbehave".to_owned(),
            name: "Misbehave".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "A deliberately misbehaving plugin for the host's sandbox tests."
                .to_owned(),
            contract_version: panelink_whm::CONTRACT_VERSION.to_owned(),
            links: vec![LinkSpec {
                scope: "clientarea:invoices".to_owned(),
                group: LinkGroup::Account,
                default_label: "View Invoice History".to_owned(),
                implements: None,
                destination: "/clientarea.php?action=invoices".to_owned(),
                icon: None,
            }],
            allowed_requests: vec![
                AllowedRequest {
                    method: Method::Get,
                    path: "/json-api/version".to_owned(),
                    calls: None,
                },
                AllowedRequest {
                    method: Method::Post,
                    path: "/json-api/batch".to_owned(),
                    calls: Some(Tunnel::WhmBatch(vec![
                        "create_integration_group".to_owned(),
                        "create_integration_link".to_owned(),
                    ])),
                },
            ],
            auth: PanelAuth::SchemeUserToken("whm".to_owned()),
            sign_in: SignInStyle::TokenExchange,
            limits: Limits {
                accounts_per_call: 300,
                operations_per_request: 300,
            },
        }
    }

    fn check_server(server: Server) -> Result<Support, PluginError> {
        if server.username == "sleep" {
            sleep_for_an_hour();
        }
        Ok(Support {
            supported: true,
            detail: "misbehave supports every server".to_owned(),
        })
    }

    fn provision(
        server: Server,
        _settings: Settings,
        _templates: Vec<LinkTemplate>,
        accounts: Vec<AccountWork>,
    ) -> Result<Vec<AccountOutcome>, PluginError> {
        let behaviour = accounts
            .first()
            .map(|a| a.username.clone())
            .unwrap_or_default();
        match behaviour.as_str() {
            "loop" => spin(),
            "alloc" => hog(),
            "trap" => panic!("misbehave: trap requested"),
            "escape" => {
                let attempt = get("http://example.invalid:80/".to_owned());
                escaped(accounts, attempt)
            }
            "escape-port" => {
                let port = if server.port == u16::MAX {
                    1
                } else {
                    server.port + 1
                };
                let attempt = get(url(&server, port, "/json-api/version"));
                escaped(accounts, attempt)
            }
            "send" => {
                let account = accounts.first().map_or_else(Default::default, |a| {
                    let id = match &a.credential {
                        Credential::Token(t) => t.subscriber_id.clone(),
                        Credential::LinkHandle(h) => h.clone(),
                    };
                    (a.domain.clone(), id)
                });
                let (path_and_query, body): (String, String) = account;
                let attempt = post(&server, &path_and_query, &body);
                escaped(accounts, attempt)
            }
            "sleep" => sleep_for_an_hour(),
            "host-calls" => {
                for n in 0..10_000 {
                    log::write(log::Level::Debug, &format!("host call {n}"));
                }
                Ok(well_behaved(accounts.into_iter().map(|a| a.username)))
            }
            "clock-calls" => {
                let started = Instant::now();
                let mut last = started;
                for _ in 0..1_000_000 {
                    last = black_box(Instant::now());
                }
                let _ = black_box(last.duration_since(started));
                Ok(well_behaved(accounts.into_iter().map(|a| a.username)))
            }
            "sleep-host" => match get(url(&server, server.port, "/json-api/version?api.version=1"))
            {
                Ok(_) => Ok(well_behaved(accounts.into_iter().map(|a| a.username))),
                Err(e) => Err(PluginError::Transient(format!(
                    "request to the server failed: {e:?}"
                ))),
            },
            _ => Ok(well_behaved(accounts.into_iter().map(|a| a.username))),
        }
    }

    fn deprovision(
        _server: Server,
        _settings: Settings,
        usernames: Vec<String>,
    ) -> Result<Vec<AccountOutcome>, PluginError> {
        Ok(well_behaved(usernames.into_iter()))
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

panelink_whm::bindings::export_adapter!(Misbehave with_types_in panelink_whm::bindings);
