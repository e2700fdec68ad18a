//! The sandbox holds: misbehaving components get the runtime's typed error within their limits,
//! and the runtime goes on serving good calls afterwards.

use std::time::Duration;

use panelink::adapter::{AccountWork, Credential, Secret, ServerTarget, Settings};
use panelink::runtime::{AllocatorChoice, Error, Runtime, RuntimeConfig};
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
        credential: Credential {
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
        .provision(&target(), &Settings::default(), work(username))
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
