//! Injected faults, latency and the down switch.

use std::time::{Duration, Instant};

use panel_sim::{FaultKind, SimConfig, SimHandle, batch_command};

use super::{call, client, link_params, start, start_with};

const APP: &str = "PANELINK_clientarea_invoices";

/// Sends a valid `create_integration_link` for bob with `client`.
async fn create_link(
    sim: &SimHandle,
    client: &reqwest::Client,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut form = link_params(APP, "https://billing.test/x");
    form.push(("api.version", "1"));
    client
        .post(sim.url("create_integration_link"))
        .header("Authorization", sim.auth_header())
        .form(&form)
        .send()
        .await
}

#[tokio::test]
async fn http_500_changes_nothing() {
    let sim = start().await;
    sim.inject_faults(FaultKind::Http500, 1);
    let response = create_link(&sim, &client()).await.unwrap();
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(text.contains("Internal Server Error"), "{text}");
    assert!(sim.link("bob", APP).is_none());
    let counters = sim.counters();
    assert_eq!(counters.faults_of(FaultKind::Http500), 1);
    assert_eq!(counters.calls("create_integration_link"), 0);

    // The next request is served normally.
    let response = create_link(&sim, &client()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(sim.link("bob", APP).is_some());
}

#[tokio::test]
async fn dropped_connection_changes_nothing() {
    let sim = start().await;
    sim.inject_faults(FaultKind::DropConnection, 1);
    let error = create_link(&sim, &client()).await.unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    assert!(error.is_request() || error.is_connect(), "{error:?}");
    assert!(sim.link("bob", APP).is_none());
    assert_eq!(sim.counters().faults_of(FaultKind::DropConnection), 1);
    assert_eq!(sim.faults_injected(), 1);
}

#[tokio::test]
async fn timeout_hangs_then_closes_and_shutdown_is_prompt() {
    let sim = start_with(SimConfig::new().hang_for(Duration::from_secs(30))).await;
    sim.inject_faults(FaultKind::Timeout, 1);
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = create_link(&sim, &impatient).await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert!(sim.link("bob", APP).is_none());
    assert_eq!(sim.counters().faults_of(FaultKind::Timeout), 1);

    // A hanging request does not hold shutdown for its 30 s.
    sim.inject_faults(FaultKind::Timeout, 1);
    let url = sim.url("version");
    let header = sim.auth_header();
    let pending = tokio::spawn(async move {
        client()
            .get(format!("{url}?api.version=1"))
            .header("Authorization", header)
            .send()
            .await
    });
    assert!(
        sim.wait_for(Duration::from_secs(5), |c| c.faults_of(FaultKind::Timeout)
            == 2)
            .await
    );
    let started = Instant::now();
    sim.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        pending.await.unwrap().is_err(),
        "the hanging request got no answer"
    );
}

#[tokio::test]
async fn seeded_fault_rate_is_reproducible() {
    async fn statuses(seed: u64) -> (Vec<u16>, u64) {
        let sim = start_with(
            SimConfig::new()
                .seed(seed)
                .fault_rate(0.5)
                .fault_kinds([FaultKind::Http500]),
        )
        .await;
        let client = client();
        let mut statuses = Vec::new();
        for _ in 0..24 {
            let response = client
                .get(format!("{}?api.version=1", sim.url("version")))
                .header("Authorization", sim.auth_header())
                .send()
                .await
                .unwrap();
            statuses.push(response.status().as_u16());
        }
        (statuses, sim.counters().faults_of(FaultKind::Http500))
    }
    let (a, faults_a) = statuses(99).await;
    let (b, _) = statuses(99).await;
    assert_eq!(a, b, "same seed, same faults");
    let failed = a.iter().filter(|s| **s == 500).count();
    assert!(failed > 0 && failed < 24, "{a:?}");
    assert_eq!(failed as u64, faults_a);

    let sim = start_with(
        SimConfig::new()
            .fault_rate(1.0)
            .fault_kinds([FaultKind::Http500]),
    )
    .await;
    for _ in 0..3 {
        let response = create_link(&sim, &client()).await.unwrap();
        assert_eq!(response.status(), 500);
    }
    sim.set_fault_rate(0.0);
    assert_eq!(create_link(&sim, &client()).await.unwrap().status(), 200);
}

#[tokio::test]
async fn down_switch_refuses_everything_until_up() {
    let sim = start().await;
    // A pooled connection that exists before the switch is closed on its next request.
    let pooled = client();
    assert_eq!(create_link(&sim, &pooled).await.unwrap().status(), 200);
    sim.clear_integrations();

    sim.set_down(true);
    assert!(sim.is_down());
    assert!(create_link(&sim, &pooled).await.is_err());
    assert!(create_link(&sim, &client()).await.is_err());
    assert!(sim.link("bob", APP).is_none());
    assert!(sim.counters().down_rejections >= 2);

    sim.set_down(false);
    assert_eq!(create_link(&sim, &client()).await.unwrap().status(), 200);
}

#[tokio::test]
async fn request_and_command_latency() {
    let sim = start().await;
    sim.set_request_latency(Duration::from_millis(150));
    let started = Instant::now();
    call(&sim, "version", &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(150));

    sim.set_request_latency(Duration::ZERO);
    sim.set_command_latency(Duration::from_millis(60));
    let commands: Vec<(&str, String)> = (0..3)
        .map(|_| {
            (
                "command",
                batch_command("version", Vec::<(&str, &str)>::new()),
            )
        })
        .collect();
    let params: Vec<(&str, &str)> = commands.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Instant::now();
    call(&sim, "batch", &params).await;
    assert!(
        started.elapsed() >= Duration::from_millis(180),
        "each of the 3 commands waits"
    );
}
