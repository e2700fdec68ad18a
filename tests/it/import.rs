//! Account import through the admin API, with the real cPanel component listing a panel-sim
//! server's accounts (`listaccts`), on SQLite and PostgreSQL: the dry run writes nothing, the
//! import creates exactly the missing clients and services, a second import creates none, and
//! bad or partial entries are reported per account.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use panel_sim::{AccountDetails, PanelSim, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::harness::{Backend, Engine, TestApp, on_both};

on_both!(
    dry_run_lists_and_changes_nothing,
    import_creates_exactly_the_missing_services_once,
    import_needs_manage_clients_and_a_plugin_that_lists,
);

/// A panel with a reseller (`res`, who owns `bob`), a suspended account, an account already
/// known to billing (`alice`) and three entries Panelink cannot take.
async fn panel() -> SimHandle {
    let details = |suspended, owner: &str, email: &str| AccountDetails {
        suspended,
        owner: owner.into(),
        email: email.into(),
    };
    PanelSim::start(
        SimConfig::new()
            .account("alice", "alice.example")
            .account("bob", "bob.example")
            .account_details("bob", details(false, "res", "bob@mail.example"))
            .account("carol", "carol.example")
            .account_details("carol", details(true, "root", ""))
            .account("res", "res.example")
            .account_details("res", details(false, "res", "billing@reseller.example"))
            .account("", "nouser.example")
            .account("bad!name", "bad.example")
            .account("dave", "not a domain"),
    )
    .await
    .expect("panel-sim")
}

/// The server (through the API) and `alice`'s existing client and service.
async fn setup(app: &TestApp, sim: &SimHandle) -> (i64, i64) {
    let server = app
        .call(
            "POST",
            "/api/v1/servers",
            Some(json!({
                "name": "sim", "module": "cpanel", "hostname": "127.0.0.1",
                "port": sim.addr().port(), "secure": false, "username": sim.api_user(),
                "api_token": sim.api_token()
            })),
        )
        .await;
    assert_eq!(server.status, StatusCode::CREATED, "{}", server.text);
    let server_id = server.json["id"].as_i64().unwrap();
    let client = app
        .call(
            "POST",
            "/api/v1/clients",
            Some(json!({"name": "Alice", "email": "alice@example.com"})),
        )
        .await;
    let client_id = client.json["id"].as_i64().unwrap();
    let service = app
        .call(
            "POST",
            "/api/v1/services",
            Some(json!({
                "client_id": client_id, "server_id": server_id, "username": "alice",
                "domain": "alice.example", "status": "active"
            })),
        )
        .await;
    assert_eq!(service.status, StatusCode::CREATED, "{}", service.text);
    (server_id, client_id)
}

/// Every row of the database but the tokens' (whose last use a call may note).
async fn rows(app: &TestApp) -> Vec<String> {
    let mut rows = app.snapshot().await;
    rows.retain(|row| !row.starts_with("api_tokens"));
    rows
}

async fn import(app: &TestApp, server_id: i64, body: Option<Value>) -> Value {
    let answer = app
        .call("POST", &format!("/api/v1/servers/{server_id}/import"), body)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json
}

/// (username, action, error present) per listed account, in the panel's order.
fn actions(report: &Value) -> Vec<(String, String, bool)> {
    report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["username"].as_str().unwrap().to_owned(),
                a["action"].as_str().unwrap().to_owned(),
                a.get("error").is_some(),
            )
        })
        .collect()
}

fn expected(fresh: &str) -> Vec<(String, String, bool)> {
    [
        ("", "error", true),
        ("alice", "exists", false),
        ("bad!name", "error", true),
        ("bob", fresh, false),
        ("carol", fresh, false),
        ("dave", "error", true),
        ("res", fresh, false),
    ]
    .map(|(u, a, e)| (u.to_owned(), a.to_owned(), e))
    .to_vec()
}

async fn dry_run_lists_and_changes_nothing(backend: Backend) {
    let app = TestApp::with(backend, Engine::Recording).await;
    let sim = panel().await;
    let (server_id, _) = setup(&app, &sim).await;
    let before = rows(&app).await;

    // No body, `{}` and `{"apply": false}` are the same dry run.
    for body in [None, Some(json!({})), Some(json!({"apply": false}))] {
        let report = import(&app, server_id, body).await;
        assert_eq!(report["server_id"], server_id);
        assert_eq!(report["applied"], false);
        assert_eq!(report["created"], 0);
        assert_eq!(actions(&report), expected("create"), "{report}");
        let accounts = report["accounts"].as_array().unwrap();
        let bob = &accounts[3];
        assert_eq!(
            (
                bob["domain"].clone(),
                bob["suspended"].clone(),
                bob["owner"].clone()
            ),
            (json!("bob.example"), json!(false), json!("res"))
        );
        // `root` and the reseller itself are no owners.
        assert_eq!(accounts[4]["owner"], Value::Null);
        assert_eq!(accounts[4]["suspended"], true);
        assert_eq!(accounts[6]["owner"], Value::Null);
        assert!(
            accounts[0]["error"]
                .as_str()
                .unwrap()
                .contains("without a user name")
        );
        assert!(accounts[2]["error"].as_str().unwrap().contains("bad!name"));
        assert!(accounts[5]["error"].as_str().unwrap().contains("domain"));
    }
    assert_eq!(rows(&app).await, before, "a dry run writes nothing");
    assert!(app.recorder.as_ref().unwrap().requests().is_empty());

    // Bad input is refused and changes nothing.
    for body in [json!({"apply": "yes"}), json!({"apply": true, "extra": 1})] {
        let answer = app
            .call(
                "POST",
                &format!("/api/v1/servers/{server_id}/import"),
                Some(body),
            )
            .await;
        assert!(answer.status.is_client_error(), "{}", answer.text);
    }
    let missing = app
        .call("POST", "/api/v1/servers/999999/import", Some(json!({})))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    assert_eq!(rows(&app).await, before);
    sim.shutdown().await;
}

/// The services on the server, by user name: (client id, domain, status).
async fn services(app: &TestApp, server_id: i64) -> BTreeMap<String, (i64, String, String)> {
    let list = app
        .call(
            "GET",
            &format!("/api/v1/services?server_id={server_id}"),
            None,
        )
        .await;
    list.json["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["username"].as_str().unwrap().to_owned(),
                (
                    s["client_id"].as_i64().unwrap(),
                    s["domain"].as_str().unwrap().to_owned(),
                    s["status"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

async fn client(app: &TestApp, id: i64) -> (String, String) {
    let c = app
        .call("GET", &format!("/api/v1/clients/{id}"), None)
        .await;
    (
        c.json["name"].as_str().unwrap().to_owned(),
        c.json["email"].as_str().unwrap().to_owned(),
    )
}

async fn import_creates_exactly_the_missing_services_once(backend: Backend) {
    let app = TestApp::with(backend, Engine::Recording).await;
    let sim = panel().await;
    let (server_id, alice_client) = setup(&app, &sim).await;
    let enabled = app
        .call(
            "PATCH",
            "/api/v1/applications/cpanel",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(enabled.status, StatusCode::ACCEPTED, "{}", enabled.text);
    let recorder = app.recorder.as_ref().unwrap();
    let syncs_before = recorder.requests().len();
    let clients_before = app.call("GET", "/api/v1/clients", None).await.json["clients"]
        .as_array()
        .unwrap()
        .len();

    let report = import(&app, server_id, Some(json!({"apply": true}))).await;
    assert_eq!(report["applied"], true);
    assert_eq!(report["created"], 3, "{report}");
    assert_eq!(actions(&report), expected("create"), "{report}");

    let listed = services(&app, server_id).await;
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        ["alice", "bob", "carol", "res"],
        "exactly the missing services"
    );
    assert_eq!(listed["alice"].0, alice_client, "alice left alone");
    let (bob, carol, res) = (&listed["bob"], &listed["carol"], &listed["res"]);
    assert_eq!((bob.1.as_str(), bob.2.as_str()), ("bob.example", "active"));
    assert_eq!(carol.2, "suspended", "suspended on the panel");
    // The reseller's account and the account it owns share the reseller's client; the others
    // have their own.
    assert_eq!(bob.0, res.0);
    assert_ne!(carol.0, res.0);
    assert_ne!(carol.0, alice_client);
    assert_eq!(
        client(&app, res.0).await,
        ("res".to_owned(), "billing@reseller.example".to_owned())
    );
    assert_eq!(
        client(&app, carol.0).await,
        ("carol.example".to_owned(), "carol@carol.example".to_owned()),
        "no contact e-mail on the panel: the domain mailbox"
    );
    let clients_after = app.call("GET", "/api/v1/clients", None).await.json["clients"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(clients_after, clients_before + 2);
    // One sync of the server pushes the new services' links.
    let syncs = recorder.requests();
    assert_eq!(syncs.len(), syncs_before + 1, "{syncs:?}");
    assert_eq!(syncs.last().unwrap().application, "cpanel");

    // Again: nothing new, and nothing changes.
    let before = rows(&app).await;
    let again = import(&app, server_id, Some(json!({"apply": true}))).await;
    assert_eq!(again["created"], 0, "{again}");
    assert_eq!(actions(&again), expected("exists"), "{again}");
    assert_eq!(rows(&app).await, before, "a second import writes nothing");
    assert_eq!(recorder.requests().len(), syncs_before + 1);

    // A new account on the panel owned by the reseller joins its client.
    sim.add_account("erin", "erin.example");
    sim.set_account_details(
        "erin",
        AccountDetails {
            suspended: false,
            owner: "res".into(),
            email: String::new(),
        },
    );
    let third = import(&app, server_id, Some(json!({"apply": true}))).await;
    assert_eq!(third["created"], 1, "{third}");
    assert_eq!(services(&app, server_id).await["erin"].0, res.0);
    sim.shutdown().await;
}

async fn import_needs_manage_clients_and_a_plugin_that_lists(backend: Backend) {
    let app = TestApp::with(backend, Engine::Recording).await;
    let sim = panel().await;
    let (server_id, _) = setup(&app, &sim).await;
    let path = format!("/api/v1/servers/{server_id}/import");
    let servers_only = app.token_with("Servers only", &["manage_servers"]).await;
    let refused = app
        .call_as(&servers_only, "POST", &path, Some(json!({"apply": true})))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let clients = app.token_with("Clients", &["manage_clients"]).await;
    let allowed = app.call_as(&clients, "POST", &path, None).await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text);

    // A panel that cannot be reached is the server's problem, not an account's.
    sim.set_down(true);
    let down = app.call("POST", &path, Some(json!({"apply": true}))).await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.text
    );
    sim.set_down(false);

    // The plugins list says which contract each plugin implements.
    let plugins = app.call("GET", "/api/v1/plugins", None).await;
    for p in plugins.json["plugins"].as_array().unwrap() {
        assert_eq!(p["contract"], "0.2.0", "{p}");
        assert_eq!(p["sign_in"], "token-exchange", "{p}");
        assert_eq!(p["limits"]["operations_per_request"], 300, "{p}");
    }
    sim.shutdown().await;
}
