//! The plugin operations against a scripted fake panel.

use std::collections::VecDeque;

use serde_json::{Value, json};

use crate::api::{HttpError, HttpResponse, Transport};
use crate::flavor::{Flavor, ProfileRule};
use crate::model::{Operation, OperationResult, PluginError, Server, Settings};
use crate::plan::NO_RESULT;
use crate::{plugin, sample_accounts};

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
    let mut accounts = sample_accounts(3);
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
    let outcomes = plugin::provision(&mut panel, &server(), &settings(20), &accounts).unwrap();

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
    assert!(
        panel
            .logs
            .iter()
            .all(|l| !l.contains(&accounts[0].credential.secret))
    );

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
    let accounts = sample_accounts(2);
    let mut timeout = FakePanel::default()
        .answer(200, &batch(&[]))
        .fail(HttpError::Timeout);
    assert!(matches!(
        plugin::provision(&mut timeout, &server(), &settings(15), &accounts),
        Err(PluginError::Transient(_))
    ));
    let mut unavailable = FakePanel::default().answer(503, &json!({}));
    assert!(matches!(
        plugin::provision(&mut unavailable, &server(), &settings(100), &accounts),
        Err(PluginError::Transient(_))
    ));
    let mut unauthorized = FakePanel::default().answer(401, &failed("batch", "Invalid token"));
    assert!(matches!(
        plugin::provision(&mut unauthorized, &server(), &settings(100), &accounts),
        Err(PluginError::Panel(m)) if m.contains("Invalid token")
    ));
    let mut html = FakePanel::default();
    html.script.push_back(Ok(HttpResponse {
        status: 200,
        body: b"<html>login</html>".to_vec(),
    }));
    assert!(matches!(
        plugin::provision(&mut html, &server(), &settings(100), &accounts),
        Err(PluginError::Panel(_))
    ));
    let mut whole_batch_refused =
        FakePanel::default().answer(200, &failed("batch", "Permission denied."));
    assert_eq!(
        plugin::provision(
            &mut whole_batch_refused,
            &server(),
            &settings(100),
            &accounts
        ),
        Err(PluginError::Panel("Permission denied.".into()))
    );
}

#[test]
fn provision_without_commands_sends_nothing() {
    let mut accounts = sample_accounts(2);
    accounts[0].username.clear();
    accounts[1].links.clear();
    accounts[1].ensure_group = false;
    let mut panel = FakePanel::default();
    let outcomes = plugin::provision(&mut panel, &server(), &settings(100), &accounts).unwrap();
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
        ("cpanel", "cPanel", "0.1.0")
    );
    assert_eq!(d.links.len(), 14);
    assert_eq!(WP_SQUARED.describe().links, d.links);
}

#[test]
fn sample_batch_of_a_hundred_accounts() {
    let batches = crate::build_provision_batches(&settings(500), &sample_accounts(100)).unwrap();
    assert_eq!(batches.iter().map(|b| b.slots.len()).sum::<usize>(), 1500);
    assert!(batches.iter().all(|b| b.slots.len() <= 500));
    assert_eq!(batches.len(), 4);
}
