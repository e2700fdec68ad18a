//! A real `panelink serve` process killed with SIGKILL mid-sync, then restarted: the sync resumes
//! where it stopped and the panels end exactly in the desired state.

use std::time::Duration;

use panel_sim::{PanelSim, SimConfig};
use serde_json::{Value, json};

use crate::serve::Process;

#[tokio::test]
async fn sigkill_mid_sync_then_restart_ends_exact() {
    let bin = panelink_tests::panelink_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Process::new(
        &bin,
        dir.path(),
        &format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display()),
    );
    let token = host.admin_token("ops@example.com");

    let sims = [
        PanelSim::start(SimConfig::new().sample_accounts(60))
            .await
            .unwrap(),
        PanelSim::start(SimConfig::new().sample_accounts(60))
            .await
            .unwrap(),
    ];
    for sim in &sims {
        // 20 accounts x 15 commands a batch: about 0.6 s a batch, 3 batches a server.
        sim.set_command_latency(Duration::from_millis(2));
    }

    let serve = host.start().await;
    let api = |path: &str| format!("{}/api/v1{path}", host.base());
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Value| {
        client
            .request(method, api(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let client_id = call(
        reqwest::Method::POST,
        "/clients",
        json!({"name": "Acme", "email": "owner@acme.example"}),
    )
    .await
    .unwrap()
    .json::<Value>()
    .await
    .unwrap()["id"]
        .as_i64()
        .unwrap();
    for (i, sim) in sims.iter().enumerate() {
        let r = call(
            reqwest::Method::POST,
            "/servers",
            json!({"name": format!("sim{i}"), "module": "cpanel", "hostname": "127.0.0.1",
                   "port": sim.addr().port(), "secure": false, "username": sim.api_user(),
                   "api_token": sim.api_token()}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
        let server_id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        for (user, domain) in sim.accounts() {
            let r = call(
                reqwest::Method::POST,
                "/services",
                json!({"client_id": client_id, "server_id": server_id, "username": user,
                       "domain": domain, "status": "active"}),
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 201);
        }
    }
    let app: Value = call(
        reqwest::Method::PATCH,
        "/applications/cpanel",
        json!({"enabled": true}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let sync_id = app["sync"]["id"].as_i64().expect("a sync was scheduled");

    // Kill it part-way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s: Value = call(
            reqwest::Method::GET,
            &format!("/syncs/{sync_id}"),
            Value::Null,
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if s["done"].as_u64().unwrap_or(0) >= 20 {
            assert_ne!(s["state"], "completed", "finished before the kill");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(serve); // SIGKILL
    let linked: usize = sims.iter().map(|s| s.users_with_links().len()).sum();
    assert!(linked < 120, "all accounts were done before the kill");

    // Restart: the sync resumes and ends exact.
    let _serve = host.start().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s: Value = call(
            reqwest::Method::GET,
            &format!("/syncs/{sync_id}"),
            Value::Null,
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if s["state"] == "completed" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sync never completed: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for sim in &sims {
        for user in sim.accounts().keys() {
            assert_eq!(sim.links(user).len(), 14, "{user}");
            assert_eq!(sim.groups(user).len(), 1, "{user}");
        }
    }
}
