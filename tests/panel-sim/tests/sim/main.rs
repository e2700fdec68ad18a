//! The simulator's own tests, through a raw HTTP client: envelopes, auth, validation texts,
//! batches, old-version mode, faults, the click and the binary.

mod api;
mod batch;
mod binary;
mod click;
mod faults;

use std::time::Duration;

use panel_sim::{PanelSim, SimConfig, SimHandle};
use serde_json::Value;

/// A client that never uses a proxy and gives up after 5 s.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// A server with accounts `bob` and `alice` and a fixed fault seed.
pub async fn start() -> SimHandle {
    start_with(SimConfig::new()).await
}

/// A server from `config` plus accounts `bob` and `alice` and seed 1 (unless set).
pub async fn start_with(mut config: SimConfig) -> SimHandle {
    if config.seed.is_none() {
        config = config.seed(1);
    }
    PanelSim::start(
        config
            .account("bob", "bob.example.test")
            .account("alice", "alice.example.test"),
    )
    .await
    .expect("start panel-sim")
}

/// POSTs a form (`api.version=1` added) with valid credentials; returns status and JSON body.
pub async fn post(sim: &SimHandle, function: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let mut form: Vec<(&str, &str)> = vec![("api.version", "1")];
    form.extend_from_slice(params);
    let response = client()
        .post(sim.url(function))
        .header("Authorization", sim.auth_header())
        .form(&form)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body = response.json().await.expect("JSON body");
    (status, body)
}

/// POSTs and asserts HTTP 200; returns the envelope.
pub async fn call(sim: &SimHandle, function: &str, params: &[(&str, &str)]) -> Value {
    let (status, body) = post(sim, function, params).await;
    assert_eq!(status, 200, "{function}: {body}");
    body
}

/// The `metadata.reason` of an envelope that must have failed.
pub fn failure(envelope: &Value) -> &str {
    assert_eq!(
        envelope["metadata"]["result"], 0,
        "expected a failure: {envelope}"
    );
    envelope["metadata"]["reason"].as_str().expect("reason")
}

/// Asserts an envelope succeeded.
pub fn assert_ok(envelope: &Value) {
    assert_eq!(
        envelope["metadata"]["result"], 1,
        "expected success: {envelope}"
    );
    assert_eq!(envelope["metadata"]["reason"], "OK");
    assert_eq!(envelope["metadata"]["version"], 1);
}

/// The parameters of a complete, valid `create_integration_link` for `bob`.
pub fn link_params<'a>(app: &'a str, url: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("user", "bob"),
        ("app", app),
        ("implements", "billing"),
        ("label", "View Invoice History"),
        ("subscriber_unique_id", "PANELINK.0123456789abcdef"),
        ("token", "s3cr3t"),
        ("url", url),
        ("group_id", "panelink"),
        ("order", "14"),
    ]
}
