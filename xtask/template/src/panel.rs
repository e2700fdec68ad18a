//! The plugin's logic: the Example Panel's requests and answers, as plain Rust over a
//! [`Transport`], so that it runs the same in the component and in `cargo test`.
//!
//! Replace the requests with your panel's. Keep the rules the contract sets (see
//! `wit/adapter.wit` and Panelink's plugin guide):
//! - one outcome per account, in input order, one result per operation attempted, the panel's
//!   own error text unchanged;
//! - a failure of a whole request (timeout, 5xx, authentication) is the call's error:
//!   `transient` when retrying may help, `panel` otherwise; the host retries transient ones;
//! - idempotent: the host may send the same work again (after a crash or a retry), so creating
//!   replaces, and removing what is already gone is success;
//! - only the requests of [`allowed_requests`], and only links this plugin created.

use serde_json::{Value, json};

use crate::bindings::exports::panelink::adapter::plugin::Support;
use crate::bindings::panelink::adapter::http::{Error as HttpError, Request, Response};
use crate::bindings::panelink::adapter::types::{
    AccountOutcome, AccountWork, AllowedRequest, Credential, Limits, LinkTemplate, ListedLink,
    Method, Operation, OperationResult, PanelAccount, PluginError, Server, Settings,
};

/// The panel's version check.
pub const INFO: &str = "/api/panelink/v1/info";
/// The accounts on the server.
pub const ACCOUNTS: &str = "/api/panelink/v1/accounts";
/// The links of one account (`?user=`).
pub const LINKS: &str = "/api/panelink/v1/links";
/// Creates and removes links, many operations per request.
pub const BATCH: &str = "/api/panelink/v1/links/batch";

/// The oldest panel version with the links API.
pub const MIN_VERSION: (u64, u64) = (2, 0);

/// The plugin's limits: the Example Panel takes at most 100 operations per batch request.
pub const LIMITS: Limits = Limits {
    accounts_per_call: 50,
    operations_per_request: 100,
};

/// Every request this plugin sends, declared to the host, which refuses any other before it
/// leaves the host. Add a request here when the plugin starts making it.
#[must_use]
pub fn allowed_requests() -> Vec<AllowedRequest> {
    [
        (Method::Get, INFO),
        (Method::Get, ACCOUNTS),
        (Method::Get, LINKS),
        (Method::Post, BATCH),
    ]
    .into_iter()
    .map(|(method, path)| AllowedRequest {
        method,
        path: path.to_owned(),
        calls: None,
    })
    .collect()
}

/// The way to the panel: the host's `http` import in the component, a stub in tests. The host
/// adds the server's credentials to every request itself; the plugin never sees them.
pub trait Transport {
    /// Sends one request to the server being worked on and returns its answer.
    fn send(&mut self, request: Request) -> Result<Response, HttpError>;
}

/// `http(s)://host:port` of the server.
fn base(server: &Server) -> String {
    let scheme = if server.secure { "https" } else { "http" };
    if server.hostname.contains(':') && !server.hostname.starts_with('[') {
        format!("{scheme}://[{}]:{}", server.hostname, server.port)
    } else {
        format!("{scheme}://{}:{}", server.hostname, server.port)
    }
}

/// Percent-encodes a query value (unreserved characters pass).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends a request and reads its JSON answer; whole-request failures become the call's error.
fn call(
    t: &mut dyn Transport,
    method: Method,
    url: String,
    body: Option<&Value>,
) -> Result<Value, PluginError> {
    let mut headers = vec![("accept".to_owned(), "application/json".to_owned())];
    if body.is_some() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    let response = t
        .send(Request {
            method,
            url,
            headers,
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        })
        .map_err(|e| match e {
            HttpError::Timeout => PluginError::Transient("the panel did not answer in time".into()),
            HttpError::Connection(m) => PluginError::Transient(format!("connection failed: {m}")),
            HttpError::TooLarge(cap) => {
                PluginError::Panel(format!("the panel's answer exceeded {cap} bytes"))
            }
            HttpError::Invalid(m) => PluginError::InvalidInput(m),
        })?;
    let json: Option<Value> = serde_json::from_slice(&response.body).ok();
    let message = || {
        json.as_ref()
            .and_then(|j| j.get("error"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("HTTP {}", response.status), str::to_owned)
    };
    match response.status {
        200..=299 => {
            json.ok_or_else(|| PluginError::Panel("the panel's answer is not JSON".into()))
        }
        401 | 403 => Err(PluginError::Panel(format!(
            "the panel refused the credentials: {}",
            message()
        ))),
        500..=599 => Err(PluginError::Transient(message())),
        _ => Err(PluginError::Panel(message())),
    }
}

/// Whether the server runs a panel version with the links API.
pub fn check_server(t: &mut dyn Transport, server: &Server) -> Result<Support, PluginError> {
    let info = call(t, Method::Get, format!("{}{INFO}", base(server)), None)?;
    let version = info["version"].as_str().unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    let found = (
        parts.next().flatten().unwrap_or(0),
        parts.next().flatten().unwrap_or(0),
    );
    let has_links = info["features"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "links"));
    Ok(if found >= MIN_VERSION && has_links {
        Support {
            supported: true,
            detail: format!("Example Panel {version} with the links API"),
        }
    } else {
        Support {
            supported: false,
            detail: format!(
                "Example Panel {version}: the links API needs version {}.{} or later",
                MIN_VERSION.0, MIN_VERSION.1
            ),
        }
    })
}

/// The panel-side id of a scope's link: `PANELINK_clientarea_invoices`.
#[must_use]
pub fn link_id(settings: &Settings, scope: &str) -> String {
    format!("{}_{}", settings.app_prefix, scope.replace(':', "_"))
}

/// The scope of a panel-side link id, when the link is one of this plugin's.
#[must_use]
pub fn scope_of(settings: &Settings, id: &str) -> Option<String> {
    crate::LINKS
        .iter()
        .map(|(_, _, scope, _)| *scope)
        .find(|scope| link_id(settings, scope) == id)
        .map(str::to_owned)
}

/// One operation to send, and where its result goes.
struct Pending {
    account: usize,
    op: Operation,
    json: Value,
    /// Removing what is not there counts as done.
    removal: bool,
}

/// Sends the operations in requests of at most [`LIMITS`]`.operations_per_request` and puts
/// each result on its account's outcome.
fn send_operations(
    t: &mut dyn Transport,
    server: &Server,
    pending: Vec<Pending>,
    outcomes: &mut [AccountOutcome],
) -> Result<(), PluginError> {
    let url = format!("{}{BATCH}", base(server));
    let per_request = LIMITS.operations_per_request.max(1) as usize;
    for chunk in pending.chunks(per_request) {
        let body = json!({ "operations": chunk.iter().map(|p| &p.json).collect::<Vec<_>>() });
        let answer = call(t, Method::Post, url.clone(), Some(&body))?;
        let results = answer["results"].as_array().ok_or_else(|| {
            PluginError::Panel("the panel's batch answer has no \"results\"".into())
        })?;
        if results.len() != chunk.len() {
            return Err(PluginError::Panel(format!(
                "the panel answered {} results for {} operations",
                results.len(),
                chunk.len()
            )));
        }
        for (p, result) in chunk.iter().zip(results) {
            let ok = result["ok"].as_bool() == Some(true)
                || (p.removal && result["code"].as_str() == Some("not_found"));
            let error = (!ok).then(|| {
                result["error"]
                    .as_str()
                    .unwrap_or("the panel refused the operation")
                    .to_owned()
            });
            outcomes[p.account].results.push(OperationResult {
                op: p.op.clone(),
                error,
            });
        }
    }
    Ok(())
}

/// Brings the accounts to their links: one outcome per account, in input order.
pub fn provision(
    t: &mut dyn Transport,
    server: &Server,
    settings: &Settings,
    templates: &[LinkTemplate],
    accounts: &[AccountWork],
) -> Result<Vec<AccountOutcome>, PluginError> {
    let mut outcomes: Vec<AccountOutcome> = accounts
        .iter()
        .map(|a| AccountOutcome {
            username: a.username.clone(),
            results: Vec::new(),
        })
        .collect();
    let mut pending = Vec::new();
    for (i, account) in accounts.iter().enumerate() {
        if account.username.is_empty() {
            outcomes[i].results.push(OperationResult {
                op: Operation::EnsureGroup,
                error: Some("the account has no user name".into()),
            });
            continue;
        }
        // The Example Panel has no separate group: each link carries the group's label, so
        // the group exists as soon as its links do.
        if account.ensure_group {
            outcomes[i].results.push(OperationResult {
                op: Operation::EnsureGroup,
                error: None,
            });
        }
        let Credential::Token(credential) = &account.credential else {
            for scope in &account.links {
                outcomes[i].results.push(OperationResult {
                    op: Operation::UpsertLink(scope.clone()),
                    error: Some("this plugin signs in by token exchange: the account needs a token credential".into()),
                });
            }
            continue;
        };
        for scope in &account.links {
            let Some(template) = templates.iter().find(|t| &t.scope == scope) else {
                outcomes[i].results.push(OperationResult {
                    op: Operation::UpsertLink(scope.clone()),
                    error: Some(format!("no link template for {scope}")),
                });
                continue;
            };
            pending.push(Pending {
                account: i,
                op: Operation::UpsertLink(scope.clone()),
                json: json!({
                    "op": "put",
                    "user": account.username,
                    "id": link_id(settings, scope),
                    "label": template.label,
                    "url": template.url.replace("{service-id}", &account.service_id),
                    "order": template.order,
                    "group": settings.group_label,
                    "sso": {
                        "token_url": template.token_url,
                        "subscriber_id": credential.subscriber_id,
                        "secret": credential.secret,
                    },
                }),
                removal: false,
            });
        }
        for scope in &account.remove {
            pending.push(removal(settings, i, &account.username, scope));
        }
    }
    send_operations(t, server, pending, &mut outcomes)?;
    Ok(outcomes)
}

fn removal(settings: &Settings, account: usize, user: &str, scope: &str) -> Pending {
    Pending {
        account,
        op: Operation::RemoveLink(scope.to_owned()),
        json: json!({ "op": "delete", "user": user, "id": link_id(settings, scope) }),
        removal: true,
    }
}

/// Removes every link of this plugin from the accounts (and so their group).
pub fn deprovision(
    t: &mut dyn Transport,
    server: &Server,
    settings: &Settings,
    usernames: &[String],
) -> Result<Vec<AccountOutcome>, PluginError> {
    let mut outcomes: Vec<AccountOutcome> = usernames
        .iter()
        .map(|u| AccountOutcome {
            username: u.clone(),
            results: Vec::new(),
        })
        .collect();
    let mut pending = Vec::new();
    for (i, user) in usernames.iter().enumerate() {
        if user.is_empty() {
            outcomes[i].results.push(OperationResult {
                op: Operation::RemoveGroup,
                error: Some("the account has no user name".into()),
            });
            continue;
        }
        for (_, _, scope, _) in &crate::LINKS {
            pending.push(removal(settings, i, user, scope));
        }
    }
    send_operations(t, server, pending, &mut outcomes)?;
    for outcome in outcomes.iter_mut().filter(|o| !o.username.is_empty()) {
        // The group goes with its last link.
        let links_gone = outcome.results.iter().all(|r| r.error.is_none());
        outcome.results.push(OperationResult {
            op: Operation::RemoveGroup,
            error: (!links_gone).then(|| "links remain on the account".to_owned()),
        });
    }
    Ok(outcomes)
}

/// The links on one account (this plugin's with their scope, others as foreign).
pub fn list_links(
    t: &mut dyn Transport,
    server: &Server,
    settings: &Settings,
    username: &str,
) -> Result<Vec<ListedLink>, PluginError> {
    let url = format!("{}{LINKS}?user={}", base(server), encode(username));
    let answer = call(t, Method::Get, url, None)?;
    let links = answer["links"]
        .as_array()
        .ok_or_else(|| PluginError::Panel("the panel's answer has no \"links\"".into()))?;
    Ok(links
        .iter()
        .filter_map(|l| l["id"].as_str())
        .map(|id| ListedLink {
            app: id.to_owned(),
            scope: scope_of(settings, id),
        })
        .collect())
}

/// Every hosting account on the server.
pub fn list_accounts(
    t: &mut dyn Transport,
    server: &Server,
) -> Result<Vec<PanelAccount>, PluginError> {
    let answer = call(t, Method::Get, format!("{}{ACCOUNTS}", base(server)), None)?;
    let accounts = answer["accounts"]
        .as_array()
        .ok_or_else(|| PluginError::Panel("the panel's answer has no \"accounts\"".into()))?;
    Ok(accounts
        .iter()
        .map(|a| {
            let username = a["user"].as_str().unwrap_or("").to_owned();
            let owner = a["owner"]
                .as_str()
                .filter(|o| !o.is_empty() && *o != username && *o != "root")
                .map(str::to_owned);
            PanelAccount {
                domain: a["domain"].as_str().unwrap_or("").to_owned(),
                email: a["email"]
                    .as_str()
                    .filter(|e| e.contains('@'))
                    .map(str::to_owned),
                suspended: a["suspended"].as_bool().unwrap_or(false),
                owner,
                username,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::panelink::adapter::types::TokenCredential;
    use crate::stub::StubPanel;

    impl Transport for StubPanel {
        fn send(&mut self, request: Request) -> Result<Response, HttpError> {
            let method = match request.method {
                Method::Get => "GET",
                Method::Post => "POST",
            };
            let path = request
                .url
                .splitn(4, '/')
                .nth(3)
                .map(|p| format!("/{p}"))
                .ok_or_else(|| HttpError::Invalid(format!("bad URL {}", request.url)))?;
            let (status, body) = self.handle(method, &path, &request.body);
            Ok(Response {
                status,
                headers: Vec::new(),
                body,
            })
        }
    }

    fn server() -> Server {
        Server {
            hostname: "panel.example".into(),
            port: 8443,
            secure: true,
            username: "admin".into(),
        }
    }

    fn settings() -> Settings {
        Settings {
            app_prefix: "PANELINK".into(),
            group_id: "panelink".into(),
            group_label: "Billing & Support".into(),
        }
    }

    fn templates() -> Vec<LinkTemplate> {
        crate::LINKS
            .iter()
            .zip(1..)
            .map(|((_, label, scope, destination), order)| LinkTemplate {
                scope: (*scope).into(),
                label: (*label).into(),
                order,
                token_url: format!("https://billing.example/oauth/token?scope={scope}"),
                url: format!(
                    "https://billing.example{}",
                    destination.replace("{service_id}", "{service-id}")
                ),
            })
            .collect()
    }

    fn work(user: &str, service: u32) -> AccountWork {
        AccountWork {
            username: user.into(),
            domain: format!("{user}.example"),
            service_id: service.to_string(),
            credential: Credential::Token(TokenCredential {
                subscriber_id: format!("svc-{service}"),
                secret: "s3cret".into(),
            }),
            ensure_group: true,
            links: crate::LINKS.iter().map(|l| l.2.to_owned()).collect(),
            remove: Vec::new(),
        }
    }

    fn errors(outcome: &AccountOutcome) -> Vec<&str> {
        outcome
            .results
            .iter()
            .filter_map(|r| r.error.as_deref())
            .collect()
    }

    #[test]
    fn description_is_sound() {
        let d = crate::describe();
        let mut scopes: Vec<&str> = d.links.iter().map(|l| l.scope.as_str()).collect();
        scopes.sort_unstable();
        scopes.dedup();
        assert_eq!(scopes.len(), 14, "scopes are unique");
        assert!(
            d.allowed_requests
                .iter()
                .all(|r| r.path.starts_with('/') && !r.path.contains('?'))
        );
        assert_eq!(d.contract_version, "0.2.0");
    }

    #[test]
    fn a_supported_panel_says_its_version_and_an_old_one_is_refused() {
        let mut panel = StubPanel::default();
        let support = check_server(&mut panel, &server()).expect("checked");
        assert!(support.supported, "{}", support.detail);
        assert!(support.detail.contains("2.4.0"));
        panel.version = "1.9.3".into();
        let support = check_server(&mut panel, &server()).expect("checked");
        assert!(!support.supported);
        assert!(support.detail.contains("2.0"), "{}", support.detail);
    }

    #[test]
    fn provisioning_creates_every_link_with_the_accounts_own_values() {
        let mut panel =
            StubPanel::with_accounts(&[("alice", "alice.example"), ("bob", "bob.example")]);
        let accounts = [work("alice", 7), work("bob", 8)];
        let outcomes = provision(&mut panel, &server(), &settings(), &templates(), &accounts)
            .expect("provisioned");
        assert_eq!(outcomes.len(), 2);
        for outcome in &outcomes {
            assert!(errors(outcome).is_empty(), "{:?}", errors(outcome));
            assert_eq!(outcome.results.len(), 15, "the group and 14 links");
        }
        assert_eq!(panel.link_ids("alice").len(), 14);
        let upgrade = &panel.accounts["bob"].links["PANELINK_clientarea_upgrade"];
        assert_eq!(
            upgrade["url"],
            "https://billing.example/upgrade.php?type=package&id=8"
        );
        assert_eq!(upgrade["sso"]["subscriber_id"], "svc-8");
        assert_eq!(upgrade["order"], 1);
        // 28 operations: one request.
        assert_eq!(
            panel
                .requests
                .iter()
                .filter(|r| r.ends_with("/batch"))
                .count(),
            1
        );
    }

    #[test]
    fn operations_are_split_over_requests_by_the_plugins_limit() {
        let users: Vec<(String, String)> = (0..10)
            .map(|i| (format!("user{i}"), format!("site{i}.example")))
            .collect();
        let refs: Vec<(&str, &str)> = users
            .iter()
            .map(|(u, d)| (u.as_str(), d.as_str()))
            .collect();
        let mut panel = StubPanel::with_accounts(&refs);
        let accounts: Vec<AccountWork> = (0..10).map(|i| work(&format!("user{i}"), i)).collect();
        let outcomes = provision(&mut panel, &server(), &settings(), &templates(), &accounts)
            .expect("provisioned");
        assert!(outcomes.iter().all(|o| errors(o).is_empty()));
        // 140 link operations, at most 100 a request.
        assert_eq!(
            panel
                .requests
                .iter()
                .filter(|r| r.ends_with("/batch"))
                .count(),
            2
        );
    }

    #[test]
    fn an_unknown_account_is_that_accounts_error_alone() {
        let mut panel = StubPanel::with_accounts(&[("alice", "alice.example")]);
        let accounts = [work("ghost", 1), work("alice", 2)];
        let outcomes = provision(&mut panel, &server(), &settings(), &templates(), &accounts)
            .expect("provisioned");
        assert!(errors(&outcomes[0]).contains(&"no such account: ghost"));
        assert!(errors(&outcomes[1]).is_empty());
        assert_eq!(panel.link_ids("alice").len(), 14);
    }

    #[test]
    fn removing_takes_only_this_plugins_links_and_is_idempotent() {
        let mut panel = StubPanel::with_accounts(&[("alice", "alice.example")]);
        provision(
            &mut panel,
            &server(),
            &settings(),
            &templates(),
            &[work("alice", 1)],
        )
        .expect("provisioned");
        panel
            .accounts
            .get_mut("alice")
            .expect("alice")
            .links
            .insert("OTHER_webmail".into(), json!({ "order": 99 }));
        let mut one = work("alice", 1);
        one.ensure_group = false;
        one.links.clear();
        one.remove = vec!["clientarea:invoices".into()];
        let outcomes =
            provision(&mut panel, &server(), &settings(), &templates(), &[one]).expect("removed");
        assert!(errors(&outcomes[0]).is_empty());
        assert_eq!(
            panel.link_ids("alice").len(),
            14,
            "13 ours and the foreign one"
        );

        for _ in 0..2 {
            let outcomes = deprovision(&mut panel, &server(), &settings(), &["alice".to_owned()])
                .expect("deprovisioned");
            assert!(
                errors(&outcomes[0]).is_empty(),
                "{:?}",
                errors(&outcomes[0])
            );
        }
        assert_eq!(panel.link_ids("alice"), vec!["OTHER_webmail".to_owned()]);
        let listed = list_links(&mut panel, &server(), &settings(), "alice").expect("listed");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].scope, None);
    }

    #[test]
    fn accounts_are_listed_with_their_owner() {
        let mut panel = StubPanel::with_accounts(&[("alice", "alice.example")]);
        panel.accounts.get_mut("alice").expect("alice").owner = "reseller1".into();
        let accounts = list_accounts(&mut panel, &server()).expect("listed");
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].owner.as_deref(), Some("reseller1"));
        assert_eq!(accounts[0].domain, "alice.example");
        assert_eq!(accounts[0].email.as_deref(), Some("alice@alice.example"));
    }

    #[test]
    fn a_failing_panel_is_a_transient_error_of_the_call() {
        struct Down;
        impl Transport for Down {
            fn send(&mut self, _: Request) -> Result<Response, HttpError> {
                Ok(Response {
                    status: 503,
                    headers: Vec::new(),
                    body: br#"{"error":"maintenance"}"#.to_vec(),
                })
            }
        }
        match check_server(&mut Down, &server()) {
            Err(PluginError::Transient(m)) => assert_eq!(m, "maintenance"),
            other => panic!("expected a transient error, got {other:?}"),
        }
    }
}
