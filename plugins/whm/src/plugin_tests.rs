//! The plugin operations against a scripted fake panel.

use std::collections::VecDeque;

use serde_json::{Value, json};

use crate::api::{HttpError, HttpResponse, Transport};
use crate::flavor::{Flavor, ProfileRule};
use crate::model::{Operation, OperationResult, PanelAccount, PluginError, Server, Settings};
use crate::plan::NO_RESULT;
use crate::{plugin, sample_call};

const CPANEL: Flavor = Flavor {
    id: "cpanel",
    name: "cPanel",
    version: "0.1.0",
    description: "test",
    profile: ProfileRule::Refuse("WP2"),
};
const WP_SQUARED: Flavor = Flavor {
    id: "wpsquared",
    name: "WP Squared",
    version: "0.1.0",
    description: "test",
    profile: ProfileRule::Require("WP2"),
};

/// One request as the fake panel saw it.
#[derive(Debug)]
struct Sent {
    url: String,
    fields: Vec<(String, String)>,
}

/// Answers requests from a script, in order, and records them.
#[derive(Debug, Default)]
struct FakePanel {
    script: VecDeque<Result<HttpResponse, HttpError>>,
    sent: Vec<Sent>,
    logs: Vec<String>,
}

impl FakePanel {
    fn answer(mut self, status: u16, body: &Value) -> Self {
        self.script.push_back(Ok(HttpResponse {
            status,
            body: body.to_string().into_bytes(),
        }));
        self
    }

    fn fail(mut self, error: HttpError) -> Self {
        self.script.push_back(Err(error));
        self
    }

    fn functions(&self) -> Vec<&str> {
        self.sent
            .iter()
            .map(|s| s.url.rsplit('/').next().unwrap_or_default())
            .collect()
    }
}

impl Transport for FakePanel {
    fn post_form(&mut self, url: &str, body: Vec<u8>) -> Result<HttpResponse, HttpError> {
        let fields = form_urlencoded::parse(&body).into_owned().collect();
        self.sent.push(Sent {
            url: url.to_owned(),
            fields,
        });
        self.script
            .pop_front()
            .expect("the fake panel ran out of answers")
    }

    fn debug(&mut self, message: &str) {
        self.logs.push(message.to_owned());
    }
}

fn server() -> Server {
    Server {
        hostname: "whm.example.test".into(),
        port: 2087,
        secure: true,
        username: "root".into(),
    }
}

fn settings(cap: u32) -> Settings {
    Settings {
        app_prefix: "PANELINK".into(),
        group_id: "panelink".into(),
        group_label: "Billing & Support".into(),
        max_commands_per_request: cap,
    }
}

fn ok(command: &str, data: &Value) -> Value {
    json!({"metadata": {"command": command, "result": 1, "reason": "OK", "version": 1}, "data": data})
}

fn failed(command: &str, reason: &str) -> Value {
    json!({"metadata": {"command": command, "result": 0, "reason": reason, "version": 1}})
}

fn applist(with_links: bool) -> Value {
    let mut apps = vec!["applist", "version", "get_current_profile", "batch"];
    if with_links {
        apps.push("create_integration_link");
    }
    ok("applist", &json!({ "app": apps }))
}

fn batch(results: &[Value]) -> Value {
    let all_ok = results.iter().all(|r| r["metadata"]["result"] == 1);
    json!({"metadata": {"command": "batch", "result": i32::from(all_ok), "reason": "OK"}, "data": {"result": results}})
}

fn panel_for(profile: &str) -> FakePanel {
    FakePanel::default()
        .answer(200, &applist(true))
        .answer(200, &ok("version", &json!({"version": "11.130.0.7"})))
        .answer(
            200,
            &ok(
                "get_current_profile",
                &json!({"code": profile, "name": profile}),
            ),
        )
}

#[test]
fn check_server_supported_for_cpanel() {
    let mut panel = panel_for("STANDARD");
    let support = plugin::check_server(&mut panel, &CPANEL, &server()).unwrap();
    assert!(support.supported, "{}", support.detail);
    assert!(support.detail.contains("11.130.0.7"), "{}", support.detail);
    assert_eq!(
        panel.functions(),
        ["applist", "version", "get_current_profile"]
    );
    assert_eq!(
        panel.sent[0].url,
        "https://whm.example.test:2087/json-api/applist"
    );
    assert!(
        panel
            .sent
            .iter()
            .all(|s| s.fields.first() == Some(&("api.version".into(), "1".into())))
    );
}

#[test]
fn profile_rules() {
    let cpanel_on_wp2 = plugin::check_server(&mut panel_for("WP2"), &CPANEL, &server()).unwrap();
    assert!(!cpanel_on_wp2.supported);
    assert!(
        cpanel_on_wp2.detail.contains("WP2"),
        "{}",
        cpanel_on_wp2.detail
    );
    let wp2_on_wp2 = plugin::check_server(&mut panel_for("WP2"), &WP_SQUARED, &server()).unwrap();
    assert!(wp2_on_wp2.supported, "{}", wp2_on_wp2.detail);
    let wp2_on_standard =
        plugin::check_server(&mut panel_for("STANDARD"), &WP_SQUARED, &server()).unwrap();
    assert!(!wp2_on_standard.supported);
    assert!(
        wp2_on_standard.detail.contains("STANDARD"),
        "{}",
        wp2_on_standard.detail
    );
}

#[test]
fn old_servers_are_unsupported_without_a_profile_call() {
    let mut panel = FakePanel::default()
        .answer(200, &applist(false))
        .answer(200, &ok("version", &json!({"version": "11.52.0.1"})));
    let support = plugin::check_server(&mut panel, &CPANEL, &server()).unwrap();
    assert!(!support.supported);
    assert!(
        support
            .detail
            .starts_with("cPanel & WHM 54 or later is required for Application Links")
    );
    assert!(support.detail.contains("11.52.0.1"));
    assert_eq!(panel.functions(), ["applist", "version"]);
}

#[test]
fn check_server_errors() {
    let mut denied =
        FakePanel::default().answer(403, &failed("applist", "Access denied: bad token"));
    assert!(matches!(
        plugin::check_server(&mut denied, &CPANEL, &server()),
        Err(PluginError::Panel(m)) if m.contains("Access denied: bad token")
    ));
    let mut refused = FakePanel::default().answer(200, &failed("applist", "Permission denied."));
    assert_eq!(
        plugin::check_server(&mut refused, &CPANEL, &server()),
        Err(PluginError::Panel("Permission denied.".into()))
    );
    let mut down = FakePanel::default().fail(HttpError::Connection("connection refused".into()));
    assert!(matches!(
        plugin::check_server(&mut down, &CPANEL, &server()),
        Err(PluginError::Transient(_))
    ));
    let mut busy = FakePanel::default().answer(502, &json!("bad gateway"));
    assert!(matches!(
        plugin::check_server(&mut busy, &CPANEL, &server()),
        Err(PluginError::Transient(_))
    ));
    let mut blank = server();
    blank.hostname.clear();
    assert!(matches!(
        plugin::check_server(&mut FakePanel::default(), &CPANEL, &blank),
        Err(PluginError::InvalidInput(_))
    ));
}

#[test]
fn provision_maps_results_across_batches() {
    let (templates, mut accounts) = sample_call(3);
    accounts[1].username.clear();
    // 15 commands per account, cap 20: one batch per account with a user name.
    let first: Vec<Value> = (0..15)
        .map(|i| {
            if i == 4 {
                failed(
                    "create_integration_link",
                    "The “app” argument cannot begin with “group_”.",
                )
            } else {
                ok("x", &json!({}))
            }
        })
        .collect();
    let second: Vec<Value> = (0..14).map(|_| ok("x", &json!({}))).collect();
    let mut panel = FakePanel::default()
        .answer(200, &batch(&first))
        .answer(200, &batch(&second));
    let outcomes =
        plugin::provision(&mut panel, &server(), &settings(20), &templates, &accounts).unwrap();

    assert_eq!(panel.functions(), ["batch", "batch"]);
    assert_eq!(
        panel.sent[0].url,
        "https://whm.example.test:2087/json-api/batch"
    );
    assert_eq!(panel.sent[0].fields.len(), 16);
    assert!(
        panel
            .sent
            .iter()
            .all(|s| s.fields.iter().all(|(k, _)| k != "abort_on_error"))
    );
    assert_eq!(panel.logs.len(), 2);
    let crate::Credential::Token { secret, .. } = &accounts[0].credential else {
        unreachable!("sample accounts carry tokens")
    };
    assert!(panel.logs.iter().all(|l| !l.contains(secret.as_str())));

    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0].username, "user00000");
    assert_eq!(outcomes[0].results.len(), 15);
    assert_eq!(
        outcomes[0].results[0],
        OperationResult {
            op: Operation::EnsureGroup,
            error: None
        }
    );
    assert_eq!(
        outcomes[0].results[4],
        OperationResult {
            op: Operation::UpsertLink("clientarea:submit_ticket".into()),
            error: Some("The “app” argument cannot begin with “group_”.".into())
        }
    );
    assert_eq!(
        outcomes[1].results,
        [OperationResult {
            op: Operation::EnsureGroup,
            error: Some("site00001.example: username cannot be empty.".into())
        }]
    );
    assert_eq!(outcomes[2].results.len(), 15);
    assert!(outcomes[2].results[..14].iter().all(|r| r.error.is_none()));
    assert_eq!(outcomes[2].results[14].error.as_deref(), Some(NO_RESULT));
}

#[test]
fn provision_fails_whole_on_transport_and_auth_errors() {
    let (templates, accounts) = sample_call(2);
    let mut timeout = FakePanel::default()
        .answer(200, &batch(&[]))
        .fail(HttpError::Timeout);
    assert!(matches!(
        plugin::provision(
            &mut timeout,
            &server(),
            &settings(15),
            &templates,
            &accounts
        ),
        Err(PluginError::Transient(_))
    ));
    let mut unavailable = FakePanel::default().answer(503, &json!({}));
    assert!(matches!(
        plugin::provision(
            &mut unavailable,
            &server(),
            &settings(100),
            &templates,
            &accounts
        ),
        Err(PluginError::Transient(_))
    ));
    let mut unauthorized = FakePanel::default().answer(401, &failed("batch", "Invalid token"));
    assert!(matches!(
        plugin::provision(&mut unauthorized, &server(), &settings(100), &templates, &accounts),
        Err(PluginError::Panel(m)) if m.contains("Invalid token")
    ));
    let mut html = FakePanel::default();
    html.script.push_back(Ok(HttpResponse {
        status: 200,
        body: b"<html>login</html>".to_vec(),
    }));
    assert!(matches!(
        plugin::provision(&mut html, &server(), &settings(100), &templates, &accounts),
        Err(PluginError::Panel(_))
    ));
    let mut whole_batch_refused =
        FakePanel::default().answer(200, &failed("batch", "Permission denied."));
    assert_eq!(
        plugin::provision(
            &mut whole_batch_refused,
            &server(),
            &settings(100),
            &templates,
            &accounts
        ),
        Err(PluginError::Panel("Permission denied.".into()))
    );
}

#[test]
fn provision_without_commands_sends_nothing() {
    let (templates, mut accounts) = sample_call(2);
    accounts[0].username.clear();
    accounts[1].links.clear();
    accounts[1].ensure_group = false;
    let mut panel = FakePanel::default();
    let outcomes =
        plugin::provision(&mut panel, &server(), &settings(100), &templates, &accounts).unwrap();
    assert!(panel.sent.is_empty());
    assert_eq!(outcomes[0].results.len(), 1);
    assert!(outcomes[1].results.is_empty());
}

#[test]
fn deprovision_batches_and_maps() {
    let users = vec!["bob".to_owned(), String::new()];
    let results: Vec<Value> = (0..15).map(|_| ok("x", &json!({}))).collect();
    let mut panel = FakePanel::default().answer(200, &batch(&results));
    let outcomes = plugin::deprovision(&mut panel, &server(), &settings(100), &users).unwrap();
    assert_eq!(outcomes[0].results.len(), 15);
    assert!(outcomes[0].results.iter().all(|r| r.error.is_none()));
    assert_eq!(outcomes[0].results[14].op, Operation::RemoveGroup);
    assert_eq!(
        outcomes[1].results,
        [OperationResult {
            op: Operation::RemoveGroup,
            error: Some("username cannot be empty.".into())
        }]
    );
}

#[test]
fn list_links_maps_scopes() {
    let mut panel = FakePanel::default().answer(
        200,
        &ok(
            "list_integration_links",
            &json!({"links": [{"app": "PANELINK_clientarea_invoices"}, {"app": "WHMCS_billing"}, {"app": "PANELINK_old"}]}),
        ),
    );
    let links = plugin::list_links(&mut panel, &server(), &settings(100), "bob").unwrap();
    assert_eq!(panel.functions(), ["list_integration_links"]);
    assert!(
        panel.sent[0]
            .fields
            .contains(&("user".into(), "bob".into()))
    );
    let mapped: Vec<(&str, Option<&str>)> = links
        .iter()
        .map(|l| (l.app.as_str(), l.scope.as_deref()))
        .collect();
    assert_eq!(
        mapped,
        [
            ("PANELINK_clientarea_invoices", Some("clientarea:invoices")),
            ("WHMCS_billing", None),
            ("PANELINK_old", None)
        ]
    );
    let mut missing = FakePanel::default().answer(
        200,
        &failed(
            "list_integration_links",
            "You do not have a user named “bob”.",
        ),
    );
    assert_eq!(
        plugin::list_links(&mut missing, &server(), &settings(100), "bob"),
        Err(PluginError::Panel(
            "You do not have a user named “bob”.".into()
        ))
    );
    assert!(matches!(
        plugin::list_links(&mut FakePanel::default(), &server(), &settings(100), ""),
        Err(PluginError::InvalidInput(_))
    ));
}

#[test]
fn describe_lists_fourteen_links() {
    let d = CPANEL.describe();
    assert_eq!(
        (d.id.as_str(), d.name.as_str(), d.contract_version.as_str()),
        ("cpanel", "cPanel", crate::CONTRACT_VERSION)
    );
    assert_eq!(d.links.len(), 14);
    assert_eq!(WP_SQUARED.describe().links, d.links);
}

#[test]
fn sample_batch_of_a_hundred_accounts() {
    let (templates, accounts) = sample_call(100);
    let batches = crate::build_provision_batches(&settings(500), &templates, &accounts).unwrap();
    assert_eq!(batches.iter().map(|b| b.slots.len()).sum::<usize>(), 1500);
    assert!(batches.iter().all(|b| b.slots.len() <= 500));
    assert_eq!(batches.len(), 4);
}

#[test]
fn the_contract_version_is_the_wit_package_version() {
    let wit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../wit/0.2/adapter.wit"
    ))
    .expect("wit/0.2/adapter.wit");
    let package = format!("package panelink:adapter@{};", crate::CONTRACT_VERSION);
    assert!(wit.lines().any(|l| l.trim() == package), "{package}");
}

/// Answers every WHM function the way a supporting server does, and records each request as
/// (path, functions called): the function of the path, or every `batch` command's.
#[derive(Debug, Default)]
struct Recorder {
    sent: Vec<(String, Vec<String>)>,
}

impl Transport for Recorder {
    fn post_form(&mut self, url: &str, body: Vec<u8>) -> Result<HttpResponse, HttpError> {
        let path = url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        let function = path.rsplit('/').next().unwrap_or_default().to_owned();
        let answer = if function == "batch" {
            let commands: Vec<String> = form_urlencoded::parse(&body)
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.split('?').next().unwrap_or_default().to_owned())
                .collect();
            let answer = batch(
                &commands
                    .iter()
                    .map(|c| ok(c, &Value::Null))
                    .collect::<Vec<_>>(),
            );
            self.sent.push((path, commands));
            answer
        } else {
            self.sent.push((path, vec![function.clone()]));
            match function.as_str() {
                "applist" => applist(true),
                "version" => ok("version", &json!({"version": "11.110.0.5"})),
                "get_current_profile" => ok("get_current_profile", &json!({"code": "STANDARD"})),
                "list_integration_links" => ok(
                    "list_integration_links",
                    &json!({"links": [{"app": "PANELINK_clientarea_invoices"}]}),
                ),
                "listaccts" => ok("listaccts", &json!({"acct": []})),
                other => failed(other, "not simulated"),
            }
        };
        Ok(HttpResponse {
            status: 200,
            body: answer.to_string().into_bytes(),
        })
    }

    fn debug(&mut self, _message: &str) {}
}

/// The declaration holds exactly what the operations send: every request is declared (the host
/// would refuse it otherwise), and every declared path and batch function is used.
#[test]
fn allowed_requests_are_exactly_what_the_plugins_send() {
    use crate::model::{Method, Tunnel};

    let mut panel = Recorder::default();
    let (server, settings) = (server(), settings(7));
    plugin::check_server(&mut panel, &CPANEL, &server).unwrap();
    let (templates, mut accounts) = sample_call(2);
    accounts[1].remove = vec![accounts[1].links.pop().unwrap()];
    plugin::provision(&mut panel, &server, &settings, &templates, &accounts).unwrap();
    plugin::deprovision(&mut panel, &server, &settings, &["bob".to_owned()]).unwrap();
    plugin::list_links(&mut panel, &server, &settings, "bob").unwrap();
    plugin::list_accounts(&mut panel, &server).unwrap();

    let declared = CPANEL.describe().allowed_requests;
    assert_eq!(declared, WP_SQUARED.describe().allowed_requests);
    let mut unused: Vec<(String, Option<String>)> = Vec::new();
    for request in &declared {
        assert_eq!(request.method, Method::Post, "{request:?}");
        match &request.calls {
            None => unused.push((request.path.clone(), None)),
            Some(Tunnel::WhmBatch(functions)) => unused.extend(
                functions
                    .iter()
                    .map(|f| (request.path.clone(), Some(f.clone()))),
            ),
            Some(other) => panic!("unexpected tunnel {other:?}"),
        }
    }
    for (path, functions) in &panel.sent {
        let request = declared
            .iter()
            .find(|r| &r.path == path)
            .unwrap_or_else(|| panic!("{path} is sent but not declared"));
        match &request.calls {
            None => unused.retain(|u| u != &(path.clone(), None)),
            Some(Tunnel::WhmBatch(allowed)) => {
                for function in functions {
                    assert!(
                        allowed.contains(function),
                        "{function} in {path} is not declared"
                    );
                    unused.retain(|u| u != &(path.clone(), Some(function.clone())));
                }
            }
            Some(other) => panic!("unexpected tunnel {other:?}"),
        }
    }
    assert!(unused.is_empty(), "declared but never sent: {unused:?}");
}

#[test]
fn list_accounts_reads_listaccts() {
    let mut panel = FakePanel::default().answer(
        200,
        &ok(
            "listaccts",
            &json!({"acct": [
                {"user": "bob", "domain": "bob.example", "suspended": 0, "owner": "root", "email": "bob@example.com"},
                {"user": "res", "domain": "res.example", "suspended": 1, "owner": "res", "email": "*unknown*"},
                {"user": "cust", "domain": "cust.example", "suspended": "1", "owner": "res"},
                {"domain": "nouser.example", "suspended": 0, "owner": "root"},
            ]}),
        ),
    );
    let accounts = plugin::list_accounts(&mut panel, &server()).unwrap();
    assert_eq!(panel.functions(), ["listaccts"]);
    assert_eq!(
        panel.sent[0].fields,
        [
            ("api.version".to_owned(), "1".to_owned()),
            (
                "want".to_owned(),
                "user,domain,suspended,owner,email".to_owned()
            )
        ]
    );
    let account =
        |username: &str, domain: &str, suspended, email: Option<&str>, owner: Option<&str>| {
            PanelAccount {
                username: username.into(),
                domain: domain.into(),
                suspended,
                email: email.map(Into::into),
                owner: owner.map(Into::into),
            }
        };
    assert_eq!(
        accounts,
        [
            account("bob", "bob.example", false, Some("bob@example.com"), None),
            account("res", "res.example", true, None, None),
            account("cust", "cust.example", true, None, Some("res")),
            account("", "nouser.example", false, None, None),
        ]
    );
    let mut refused = FakePanel::default().answer(200, &failed("listaccts", "Access denied"));
    assert_eq!(
        plugin::list_accounts(&mut refused, &server()),
        Err(PluginError::Panel("Access denied".into()))
    );
    let mut no_list = FakePanel::default().answer(200, &ok("listaccts", &json!({})));
    assert!(matches!(
        plugin::list_accounts(&mut no_list, &server()),
        Err(PluginError::Panel(_))
    ));
}
