//! `batch`: double encoding, per-command envelopes, `abort_on_error`, unknown functions.

use panel_sim::batch_command;
use panel_sim::whm::texts;
use serde_json::{Value, json};

use super::{assert_ok, call, client, failure, link_params, start};

/// POSTs a batch body built by hand (so the test sees the wire encoding).
async fn post_batch(
    sim: &panel_sim::SimHandle,
    commands: &[String],
    extra: &[(&str, &str)],
) -> (String, Value) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("api.version", "1");
    for (k, v) in extra {
        form.append_pair(k, v);
    }
    for command in commands {
        form.append_pair("command", command);
    }
    let body = form.finish();
    let response = client()
        .post(sim.url("batch"))
        .header("Authorization", sim.auth_header())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    (body, response.json().await.unwrap())
}

fn results(envelope: &Value) -> &Vec<Value> {
    envelope["data"]["result"].as_array().expect("data.result")
}

#[tokio::test]
async fn double_encoded_commands_run_in_order() {
    let sim = start().await;
    let app = "PANELINK_clientarea_invoices";
    let fallback = "https://billing.test/clientarea.php?action=invoices&ssoredirect=1";
    let token_url = "https://billing.test/oauth/token.php?scope=clientarea%3Asso+clientarea%3Ainvoices&module=cpanel";
    let mut link = link_params(app, fallback);
    link.push(("autologin_token_url", token_url));
    link.push(("label", "Invoices & Billing — “quoted”"));
    let commands = vec![
        batch_command(
            "create_integration_group",
            [
                ("user", "bob"),
                ("group_id", "panelink"),
                ("label", "Billing & Support"),
                ("order", "1"),
            ],
        ),
        batch_command("create_integration_link", link.iter().copied()),
        batch_command("list_integration_links", [("user", "bob")]),
    ];
    let (wire, body) = post_batch(&sim, &commands, &[]).await;
    // `?` encoded once, the inner `&` of "Billing & Support" twice.
    assert!(
        wire.contains("create_integration_group%3Fuser%3Dbob"),
        "{wire}"
    );
    assert!(wire.contains("Billing%2B%2526%2BSupport"), "{wire}");

    assert_ok(&body);
    assert_eq!(body["metadata"]["command"], "batch");
    let results = results(&body);
    assert_eq!(results.len(), 3);
    for (result, command) in results.iter().zip([
        "create_integration_group",
        "create_integration_link",
        "list_integration_links",
    ]) {
        assert_ok(result);
        assert_eq!(result["metadata"]["command"], command);
    }
    assert_eq!(results[2]["data"]["links"], json!([{ "app": app }]));

    assert_eq!(sim.groups("bob")["panelink"].label, "Billing & Support");
    let stored = sim.link("bob", app).unwrap();
    assert_eq!(stored.label(), Some("Invoices & Billing — “quoted”"));
    assert_eq!(stored.url(), Some(fallback));
    assert_eq!(stored.autologin_token_url(), Some(token_url));

    // Each command counts individually, plus the batch itself.
    let counters = sim.counters();
    assert_eq!(counters.calls("batch"), 1);
    assert_eq!(counters.calls("create_integration_group"), 1);
    assert_eq!(counters.calls("create_integration_link"), 1);
    assert_eq!(counters.calls("list_integration_links"), 1);
    assert_eq!(counters.http_requests, 1);
}

#[tokio::test]
async fn failures_are_per_command_and_abort_on_error_stops() {
    let sim = start().await;
    let link = |user: &'static str, app: &'static str| {
        let mut p = link_params(app, "https://billing.test/x");
        p[0] = ("user", user);
        batch_command("create_integration_link", p)
    };
    let commands = vec![
        link("bob", "PANELINK_a"),
        link("carol", "PANELINK_b"),
        batch_command("no_such_function", [("x", "1")]),
        link("alice", "PANELINK_c"),
    ];

    let (_, body) = post_batch(&sim, &commands, &[]).await;
    assert_eq!(body["metadata"]["result"], 0);
    assert_eq!(
        failure(&body),
        texts::no_such_user("carol"),
        "first failure's reason"
    );
    let r = results(&body);
    assert_eq!(r.len(), 4);
    assert_ok(&r[0]);
    assert_eq!(failure(&r[1]), texts::no_such_user("carol"));
    assert_eq!(failure(&r[2]), texts::unknown_function("no_such_function"));
    assert_eq!(r[2]["metadata"]["command"], "no_such_function");
    assert_ok(&r[3]);
    assert!(sim.link("alice", "PANELINK_c").is_some());

    sim.clear_integrations();
    let (_, body) = post_batch(&sim, &commands, &[("abort_on_error", "1")]).await;
    assert_eq!(body["metadata"]["result"], 0);
    let r = results(&body);
    assert_eq!(r.len(), 2, "stops after the first failure: {body}");
    assert_ok(&r[0]);
    assert_eq!(failure(&r[1]), texts::no_such_user("carol"));
    assert!(sim.link("bob", "PANELINK_a").is_some());
    assert!(
        sim.link("alice", "PANELINK_c").is_none(),
        "later commands did not run"
    );
}

#[tokio::test]
async fn batch_by_get_and_edge_cases() {
    let sim = start().await;
    let response = client()
        .get(format!(
            "{}?api.version=1&command=version&command=applist",
            sim.url("batch")
        ))
        .header("Authorization", sim.auth_header())
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_ok(&body);
    let r = results(&body);
    assert_eq!(r[0]["data"]["version"], panel_sim::DEFAULT_VERSION);
    assert_eq!(r[1]["metadata"]["command"], "applist");

    let body = call(&sim, "batch", &[]).await;
    assert_eq!(failure(&body), texts::missing_parameter("command", "batch"));

    let body = call(&sim, "batch", &[("command", "batch?command=version")]).await;
    assert_eq!(failure(&results(&body)[0]), texts::nested_batch());
}

#[tokio::test]
async fn old_version_batch_fails_per_command() {
    let sim = super::start_with(panel_sim::SimConfig::new().old_version()).await;
    let commands = vec![
        batch_command("version", Vec::<(&str, &str)>::new()),
        batch_command(
            "create_integration_link",
            link_params("PANELINK_a", "https://billing.test/x"),
        ),
    ];
    let (_, body) = post_batch(&sim, &commands, &[]).await;
    assert_eq!(body["metadata"]["result"], 0);
    let r = results(&body);
    assert_ok(&r[0]);
    assert_eq!(
        failure(&r[1]),
        texts::unknown_function("create_integration_link")
    );
}
