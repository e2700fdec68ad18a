//! The sandbox holds: misbehaving components get the runtime's typed error within their limits,
//! and the runtime goes on serving good calls afterwards.

use std::future::Future;
use std::time::Duration;

use panel_sim::{PanelSim, SimConfig, SimHandle};
use panelink::adapter::{AccountWork, Credential, Secret, ServerTarget, Settings};
use panelink::runtime::{AllocatorChoice, Clock, Error, Runtime, RuntimeConfig};
use panelink_tests::load;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        call_deadline: Duration::from_secs(1),
        memory_limit: 32 * 1024 * 1024,
        allocator: AllocatorChoice::Auto,
        ..panelink_tests::runtime_config()
    })
    .expect("runtime")
}

/// A server nothing listens on: the misbehaving calls never reach it legitimately.
fn target() -> ServerTarget {
    ServerTarget {
        hostname: "127.0.0.1".into(),
        port: 9,
        secure: false,
        username: "root".into(),
        api_token: Secret::new("sandbox-test-token"),
    }
}

fn work(username: &str) -> Vec<AccountWork> {
    vec![AccountWork {
        username: username.into(),
        domain: format!("{username}.example"),
        service_id: "1".into(),
        credential: Credential::Token {
            subscriber_id: "1".into(),
            secret: Secret::new("s"),
        },
        ensure_group: true,
        links: vec![],
        remove: vec![],
    }]
}

async fn provision_as(rt: &Runtime, username: &str) -> Result<(), Error> {
    let plugin = load(rt, "misbehave").await;
    plugin
        .provision(&target(), &Settings::default(), vec![], work(username))
        .await
        .map(|_| ())
}

async fn assert_still_serves(rt: &Runtime) {
    let out = provision_as(rt, "good").await;
    assert!(
        out.is_ok(),
        "a good call after misbehaviour failed: {out:?}"
    );
}

#[tokio::test]
async fn endless_loop_times_out_and_the_runtime_goes_on() {
    let rt = runtime();
    let err = provision_as(&rt, "loop").await.unwrap_err();
    assert!(
        matches!(&err, Error::Timeout { plugin, limit, .. } if plugin == "misbehave" && *limit == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(err.to_string().contains("misbehave"), "{err}");
    assert_still_serves(&rt).await;
}

#[tokio::test]
async fn endless_allocation_hits_the_memory_cap() {
    let rt = runtime();
    let err = provision_as(&rt, "alloc").await.unwrap_err();
    assert!(
        matches!(&err, Error::MemoryLimit { plugin, limit, .. } if plugin == "misbehave" && *limit == 32 * 1024 * 1024),
        "{err:?}"
    );
    assert_still_serves(&rt).await;
}

#[tokio::test]
async fn trap_is_an_error_naming_plugin_and_version() {
    let rt = runtime();
    let err = provision_as(&rt, "trap").await.unwrap_err();
    match &err {
        Error::Trapped {
            plugin, version, ..
        } => {
            assert_eq!(plugin, "misbehave");
            assert!(!version.is_empty());
            assert!(err.to_string().contains(version.as_str()));
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_still_serves(&rt).await;
}

#[tokio::test]
async fn http_to_another_host_or_port_is_denied() {
    let rt = runtime();
    for who in ["escape", "escape-port"] {
        let err = provision_as(&rt, who).await.unwrap_err();
        assert!(
            matches!(&err, Error::CapabilityDenied { plugin, detail, .. } if plugin == "misbehave" && detail.contains("outside the grant")),
            "{who}: {err:?}"
        );
        assert!(!err.to_string().contains("sandbox-test-token"));
    }
    assert_still_serves(&rt).await;
}

#[tokio::test]
async fn misbehaving_calls_do_not_stall_concurrent_good_calls() {
    let rt = runtime();
    let looping = {
        let rt = rt.clone();
        tokio::spawn(async move { provision_as(&rt, "loop").await })
    };
    for _ in 0..5 {
        assert_still_serves(&rt).await;
    }
    assert!(matches!(looping.await.unwrap(), Err(Error::Timeout { .. })));
}

#[tokio::test]
async fn non_components_are_refused_at_load() {
    let rt = runtime();
    let err = rt.load(b"not wasm at all").await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    // A core module (wasm magic, version 1) is not a component.
    let core = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    let err = rt.load(&core).await.unwrap_err();
    assert!(
        err.to_string().contains("not a WebAssembly component"),
        "{err}"
    );
}

/// A bound on anything a test waits for: far above every limit under test, so a hang fails the
/// test instead of stalling the run (the limits themselves are checked by the error's type).
const BOUND: Duration = Duration::from_secs(120);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within {BOUND:?}"))
}

fn sim_target(sim: &SimHandle) -> ServerTarget {
    ServerTarget {
        hostname: sim.addr().ip().to_string(),
        port: sim.addr().port(),
        secure: false,
        username: sim.api_user(),
        api_token: Secret::new(sim.api_token()),
    }
}

/// Has the `misbehave` plugin POST `body` to `path_and_query` on the simulated server.
async fn send_as(
    rt: &Runtime,
    sim: &SimHandle,
    path_and_query: &str,
    body: &str,
) -> Result<(), Error> {
    let plugin = load(rt, "misbehave").await;
    let mut work = work("send");
    work[0].domain = path_and_query.into();
    work[0].credential = Credential::Token {
        subscriber_id: body.into(),
        secret: Secret::new("s"),
    };
    bounded(
        path_and_query,
        plugin.provision(&sim_target(sim), &Settings::default(), vec![], work),
    )
    .await
    .map(|_| ())
}

fn assert_denied(err: &Error, what: &str) {
    assert!(
        matches!(err, Error::CapabilityDenied { plugin, detail, .. } if plugin == "misbehave" && detail.contains(what)),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_undeclared_whm_function_is_denied_before_it_is_sent() {
    let rt = runtime();
    let sim = PanelSim::start(SimConfig::new().sample_accounts(1))
        .await
        .expect("sim");
    for (path, body) in [
        (
            "/json-api/api_token_create",
            "api.version=1&token_name=mine",
        ),
        (
            "/json-api/api_token_create?api.version=1&token_name=mine",
            "",
        ),
        // Declared for GET only.
        ("/json-api/version?api.version=1", ""),
        ("/json-api/%61pi_token_create", "api.version=1"),
    ] {
        let err = send_as(&rt, &sim, path, body).await.unwrap_err();
        assert_denied(&err, "is not among the plugin's allowed requests");
        assert!(!err.to_string().contains(&sim.api_token()));
    }
    assert_eq!(sim.http_requests(), 0, "{:?}", sim.counters());
    assert_still_serves(&rt).await;
}

#[tokio::test]
async fn an_undeclared_function_inside_a_batch_is_denied_with_the_whole_batch() {
    let rt = runtime();
    let sim = PanelSim::start(SimConfig::new().sample_accounts(1))
        .await
        .expect("sim");
    let user = sim.accounts().into_keys().next().unwrap();
    let group = format!(
        "command=create_integration_group%3Fuser%3D{user}%26group_id%3Dpanelink%26label%3DBilling%26order%3D1"
    );
    let smuggled = "command=api_token_create%3Ftoken_name%3Dmine";
    for (path, body, why) in [
        (
            "/json-api/batch".to_owned(),
            format!("api.version=1&{group}&{smuggled}"),
            "not among the plugin's allowed batch functions",
        ),
        (
            format!("/json-api/batch?api.version=1&{smuggled}"),
            format!("api.version=1&{group}"),
            "not among the plugin's allowed batch functions",
        ),
        (
            "/json-api/batch".to_owned(),
            format!("api.version=1&{group}&comm%61nd=%61pi_token_create"),
            "not among the plugin's allowed batch functions",
        ),
        (
            "/json-api/batch".to_owned(),
            format!("api.version=1&{group}&command=batch%3F{smuggled}"),
            "not among the plugin's allowed batch functions",
        ),
        (
            "/json-api/batch".to_owned(),
            format!("api.version=1&{group};{smuggled}"),
            "not strictly form-encoded",
        ),
    ] {
        let err = send_as(&rt, &sim, &path, &body).await.unwrap_err();
        assert_denied(&err, why);
    }
    assert_eq!(sim.http_requests(), 0, "{:?}", sim.counters());
    assert!(sim.groups(&user).is_empty());

    // The declared batch goes through, and only it.
    send_as(
        &rt,
        &sim,
        "/json-api/batch",
        &format!("api.version=1&{group}"),
    )
    .await
    .expect("a declared batch");
    assert_eq!(sim.http_requests(), 1);
    assert_eq!(sim.calls("create_integration_group"), 1);
    assert_eq!(sim.calls("api_token_create"), 0);
    assert_eq!(sim.groups(&user).len(), 1);
    assert_still_serves(&rt).await;
}

/// A runtime whose wall-clock deadline (2 s) comes long before its guest-time one.
fn wall_clock_runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        call_deadline: Duration::from_secs(60),
        wall_deadline: Duration::from_secs(2),
        ..panelink_tests::runtime_config()
    })
    .expect("runtime")
}

fn assert_wall_timeout(err: &Error) {
    assert!(
        matches!(err, Error::Timeout { plugin, limit, clock: Clock::Wall, .. } if plugin == "misbehave" && *limit == Duration::from_secs(2)),
        "{err:?}"
    );
    assert!(err.to_string().contains("wall-clock"), "{err}");
}

#[tokio::test]
async fn sleeping_through_wasi_clocks_ends_at_the_wall_clock_deadline() {
    let rt = wall_clock_runtime();
    let err = bounded("sleep", provision_as(&rt, "sleep"))
        .await
        .unwrap_err();
    assert_wall_timeout(&err);
    // The support check (what `/servers/{id}/check` runs) too.
    let plugin = load(&rt, "misbehave").await;
    let mut sleeper = target();
    sleeper.username = "sleep".into();
    let err = bounded("check", plugin.check_server(&sleeper))
        .await
        .unwrap_err();
    assert_wall_timeout(&err);
    assert_still_serves(&rt).await;
}

#[tokio::test]
async fn the_wall_clock_deadline_counts_waiting_on_the_panel() {
    let rt = wall_clock_runtime();
    let sim = PanelSim::start(SimConfig::new().sample_accounts(1))
        .await
        .expect("sim");
    sim.set_request_latency(Duration::from_secs(30));
    let plugin = load(&rt, "misbehave").await;
    let err = bounded(
        "sleep-host",
        plugin.provision(
            &sim_target(&sim),
            &Settings::default(),
            vec![],
            work("sleep-host"),
        ),
    )
    .await
    .unwrap_err();
    assert_wall_timeout(&err);
    assert_still_serves(&rt).await;
}

#[tokio::test]
async fn ten_thousand_host_calls_hit_the_host_call_cap() {
    let rt = Runtime::new(panelink_tests::runtime_config()).expect("runtime");
    let limit = rt.config().max_host_calls;
    assert!(limit < 10_000);
    for who in ["host-calls", "clock-calls"] {
        let err = bounded(who, provision_as(&rt, who)).await.unwrap_err();
        assert!(
            matches!(&err, Error::HostCallLimit { plugin, limit: l, .. } if plugin == "misbehave" && *l == limit),
            "{who}: {err:?}"
        );
        assert!(err.to_string().contains("host calls"), "{err}");
    }
    assert_still_serves(&rt).await;
}

#[tokio::test]
async fn a_description_that_never_returns_is_a_load_error_within_the_describe_deadline() {
    let rt = Runtime::new(RuntimeConfig {
        describe_deadline: Duration::from_secs(1),
        ..panelink_tests::runtime_config()
    })
    .expect("runtime");
    let err = bounded(
        "load",
        rt.load_file(&panelink_tests::built_plugin("sleepy")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(m) if m.contains("wall-clock")),
        "{err:?}"
    );
    assert_still_serves(&rt).await;
}

/// A host whose plugin directory holds a component that never describes itself (and one that
/// sleeps in its support check) still becomes ready, serves the other applications, and answers
/// the support check and the upload of the sleeper with the error instead of hanging.
#[tokio::test]
async fn a_host_with_a_sleeping_plugin_becomes_ready_and_serves_the_others() {
    let data = tempfile::tempdir().unwrap();
    let plugin_dir = tempfile::tempdir().unwrap();
    for name in ["cpanel", "misbehave", "sleepy"] {
        std::fs::copy(
            panelink_tests::built_plugin(name),
            plugin_dir.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let database_url = format!("sqlite://{}?mode=rwc", data.path().join("p.db").display());
    let config = panelink::config::Config::resolve([panelink::config::Layer {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(database_url.clone()),
        data_dir: Some(data.path().to_path_buf()),
        plugin_dir: Some(plugin_dir.path().to_path_buf()),
        plugin_call_timeout: Some(3),
        ..Default::default()
    }])
    .unwrap();
    // What `serve` runs, with the test suite's shared compilation cache.
    let options = panelink::boot::Options {
        runtime: RuntimeConfig {
            cache_dir: panelink_tests::runtime_config().cache_dir,
            ..panelink::boot::runtime_config(&config)
        },
        ..Default::default()
    };
    assert_eq!(options.runtime.wall_deadline, Duration::from_secs(3));
    let host = panelink::boot::Host::start(config, options).await.unwrap();
    let base = format!("http://{}", host.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(host.run(async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    bounded("readiness", async {
        loop {
            let ready = client.get(format!("{base}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let db = panelink::storage::Db::connect(
        &database_url,
        std::sync::Arc::new(panelink::crypto::SecretBox::from_config(None, data.path()).unwrap()),
    )
    .await
    .unwrap();
    let (_, token) = db
        .create_admin(
            &panelink::storage::Actor::cli(),
            &panelink::model::Email::parse("ops@example.com").unwrap(),
            "Full Administrator",
        )
        .await
        .unwrap();
    db.close().await;
    let call = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(token.expose())
    };

    let plugins: serde_json::Value = call(reqwest::Method::GET, "/api/v1/plugins")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpanel", "misbehave"], "{plugins}");
    let cpanel = &plugins["plugins"][0];
    assert_eq!(cpanel["active"], true);
    let batch = cpanel["allowed_requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "/json-api/batch")
        .unwrap_or_else(|| panic!("{cpanel}"));
    assert_eq!(batch["method"], "POST");
    assert_eq!(batch["calls"]["protocol"], "whm-batch");
    assert!(
        batch["calls"]["names"]
            .as_array()
            .unwrap()
            .contains(&"create_integration_link".into())
    );
    let doc: serde_json::Value = call(reqwest::Method::GET, "/api/v1/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["components"]["schemas"]["PluginView"]["properties"]["allowed_requests"].is_object(),
        "{}",
        doc["components"]["schemas"]["PluginView"]
    );
    let apps: serde_json::Value = call(reqwest::Method::GET, "/api/v1/applications")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(apps.to_string().contains("\"cpanel\""), "{apps}");

    // A support check that sleeps answers with the deadline instead of hanging the request.
    let server: serde_json::Value = call(reqwest::Method::POST, "/api/v1/servers")
        .json(
            &serde_json::json!({"name": "sleeper", "module": "misbehave", "hostname": "127.0.0.1",
            "port": 9, "secure": false, "username": "sleep", "api_token": "T"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = server["id"].as_i64().unwrap_or_else(|| panic!("{server}"));
    let check = bounded(
        "the support check",
        call(
            reqwest::Method::POST,
            &format!("/api/v1/servers/{id}/check"),
        )
        .send(),
    )
    .await
    .unwrap();
    assert_eq!(check.status(), 200);
    let check: serde_json::Value = check.json().await.unwrap();
    assert_eq!(check["supported"], false);
    assert!(
        check["detail"].as_str().unwrap().contains("wall-clock"),
        "{check}"
    );

    // Uploading the sleeper is refused as an unusable plugin.
    let upload = bounded(
        "the upload",
        call(reqwest::Method::POST, "/api/v1/plugins")
            .header("content-type", "application/wasm")
            .body(std::fs::read(panelink_tests::built_plugin("sleepy")).unwrap())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(upload.status(), 422);
    let upload: serde_json::Value = upload.json().await.unwrap();
    assert!(
        upload["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wall-clock"),
        "{upload}"
    );

    let _ = stop.send(());
    bounded("shutdown", running).await.unwrap().unwrap();
}
