//! Plugin versions swapped under load, and compiled plugins kept across restarts, with real
//! `panelink serve` processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use panel_sim::{PanelSim, RedirectSource, SimConfig, SimHandle};
use serde_json::{Value, json};

use crate::serve::Process;

/// `/metrics` sample of the compile cache.
fn cache(outcome: &str) -> String {
    format!("panelink_plugin_cache_total{{outcome=\"{outcome}\"}}")
}

/// `/metrics` sample of a version's calls.
fn calls(version: &str, outcome: &str) -> String {
    format!(
        "panelink_plugin_calls_total{{plugin=\"cpanel\",version=\"{version}\",outcome=\"{outcome}\"}}"
    )
}

/// `/metrics` sample saying which cpanel version a host runs.
fn active(version: &str) -> String {
    format!("panelink_plugin_active{{plugin=\"cpanel\",version=\"{version}\"}}")
}

/// The compile cache's entries (wasmtime's layout: `modules/<compiler>/<name>`).
fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for compiler in std::fs::read_dir(dir.join("modules")).unwrap().flatten() {
        for file in std::fs::read_dir(compiler.path()).unwrap().flatten() {
            if !file.file_name().to_string_lossy().contains('.') {
                found.push(file.path());
            }
        }
    }
    found.sort();
    found
}

/// A restart loads the compiled plugins from `plugin_cache_dir` instead of compiling them;
/// an entry that is damaged, swapped for another's, or sealed with another host's key is
/// deleted and compiled afresh, never loaded. (Two small specimen components in the plugin
/// directory keep the compilations short.)
#[tokio::test]
async fn a_restart_loads_compiled_plugins_from_the_cache_and_only_sealed_entries() {
    let bin = panelink_tests::panelink_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir(&plugin_dir).unwrap();
    for id in ["alpha", "beta"] {
        let specimen = panelink_tests::Specimen {
            id: id.into(),
            ..panelink_tests::Specimen::default()
        };
        std::fs::write(plugin_dir.join(format!("{id}.wasm")), specimen.bytes()).unwrap();
    }
    let cache_dir = dir.path().join("compiled");
    let host = Process::new(
        &bin,
        dir.path(),
        &format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display()),
    )
    .env("PLUGIN_DIR", plugin_dir.display().to_string())
    .env("PLUGIN_CACHE_DIR", cache_dir.display().to_string());
    let counts = |host: Process| async move {
        (
            host.metric(&cache("hit")).await,
            host.metric(&cache("miss")).await,
            host.metric(&cache("rejected")).await,
        )
    };
    // Each application runs its own component (a swapped entry would make one the other).
    let both_active = |host: Process| async move {
        host.metric("panelink_plugin_active{plugin=\"alpha\",version=\"1.0.0\"}")
            .await
            + host
                .metric("panelink_plugin_active{plugin=\"beta\",version=\"1.0.0\"}")
                .await
    };

    // First start: both compiled and sealed.
    let serve = host.start().await;
    assert_eq!(counts(host.clone()).await, (0, 2, 0));
    drop(serve);
    let first = entries(&cache_dir);
    assert_eq!(first.len(), 2, "one entry per component: {first:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the cache is the host's alone");
    }

    // Second start: both from the cache.
    let serve = host.start().await;
    assert_eq!(counts(host.clone()).await, (2, 0, 0));
    assert_eq!(both_active(host.clone()).await, 2);
    drop(serve);

    // One entry damaged (a byte in its middle), the other replaced by the first's original
    // bytes (sound code, of the other component): neither is trusted.
    let original = std::fs::read(&first[0]).unwrap();
    let mut damaged = original.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x5a;
    std::fs::write(&first[0], &damaged).unwrap();
    std::fs::write(&first[1], &original).unwrap();
    let serve = host.start().await;
    assert_eq!(counts(host.clone()).await, (0, 2, 2));
    assert_eq!(both_active(host.clone()).await, 2, "each compiled afresh");
    drop(serve);

    // Sealed again: the next start hits.
    let serve = host.start().await;
    assert_eq!(counts(host.clone()).await, (2, 0, 0));
    drop(serve);

    // The same entries under another host's key (another secret key): foreign, not trusted.
    let other = host.clone().env(
        "SECRET_KEY",
        "7e3f1c9a5b2d8e4f6a0c1b3d5e7f9a2c4b6d8e0f1a3c5b7d9e2f4a6c8b0d1e3f",
    );
    let serve = other.start().await;
    assert_eq!(counts(other.clone()).await, (0, 2, 2));
    assert_eq!(both_active(other.clone()).await, 2);
    drop(serve);
}

/// The accounts per simulated server (two servers: 2,000 accounts).
const ACCOUNTS: usize = 1000;
/// The panels' latency per request while the versions are swapped: long enough that both
/// hosts are still mid-sync after every step, however slow the machine running the test (at
/// this latency each server's sync takes 75 s).
const SLOW: Duration = Duration::from_millis(3000);

/// Two `panelink serve` hosts on one PostgreSQL database sync 2,000 accounts on two panels while
/// SSO clicks flow; a second build of the cPanel plugin is installed (signed), activated and
/// rolled back mid-sync. Both hosts' running syncs take each version over from their next
/// batch, no plugin call and no click fails, the panels end exact with each link created once,
/// and both hosts report the right active version after each step.
#[tokio::test]
async fn hot_swap_and_rollback_under_load_on_two_hosts() {
    let Some(backend) = crate::harness::Backend::postgres() else {
        return;
    };
    let test_db = crate::harness::TestDb::new(backend).await;
    let bin = panelink_tests::panelink_binary();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let vendor = panelink::signing::PrivateKey::generate();
    let a = Process::new(&bin, dirs[0].path(), &test_db.url);
    let public_url = a.base();
    // Both hosts on this machine share one compile cache (they share the secret key, so each
    // trusts the other's seals): B finds what A compiled, and so do later runs of this test.
    let compiled = panelink_tests::repo_root().join("target/wasm-cache-serve");
    let configure = |p: Process| {
        p.env(
            "SECRET_KEY",
            "3b8e1f6a9c2d5e7f0a4b6c8d1e3f5a7b9c0d2e4f6a8b1c3d5e7f9a0b2c4d6e8f",
        )
        .env("PLUGIN_CACHE_DIR", compiled.display().to_string())
        .env("PUBLIC_URL", public_url.clone())
        .env("TRUSTED_KEYS", format!("acme={}", vendor.public()))
        .env("SSO_RATE_LIMIT_PER_ADDRESS", "0")
        .env("SSO_REDEEM_RATE_LIMIT_PER_ADDRESS", "0")
        .env(
            "LOG_LEVEL",
            "info,panelink::http=warn,panelink::sso=warn,sqlx=warn,panelink::storage=debug,panelink::sync=debug",
        )
    };
    let a = configure(a);
    let b = configure(Process::new(&bin, dirs[1].path(), &test_db.url));
    let token = a.admin_token("ops@example.com");
    // One at a time: the first applies the migrations.
    let _serve_a = a.start().await;
    let _serve_b = b.start().await;
    let client = reqwest::Client::new();
    let call = |host: &Process, method: reqwest::Method, path: &str, body: Option<Value>| {
        let request = client
            .request(method, format!("{}/api/v1{path}", host.base()))
            .bearer_auth(&token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };

    let sims: Arc<[SimHandle; 2]> = Arc::new([
        PanelSim::start(SimConfig::new().sample_accounts(ACCOUNTS))
            .await
            .unwrap(),
        PanelSim::start(SimConfig::new().sample_accounts(ACCOUNTS))
            .await
            .unwrap(),
    ]);
    let (status, client_row) = call(
        &a,
        reqwest::Method::POST,
        "/clients",
        Some(json!({"name": "Acme", "email": "owner@acme.example"})),
    )
    .await;
    assert_eq!(status, 201, "{client_row}");
    let client_id = client_row["id"].as_i64().unwrap();
    for (i, sim) in sims.iter().enumerate() {
        let (status, server) = call(
            &a,
            reqwest::Method::POST,
            "/servers",
            Some(
                json!({"name": format!("sim{i}"), "module": "cpanel", "hostname": "127.0.0.1",
                   "port": sim.addr().port(), "secure": false, "username": sim.api_user(),
                   "api_token": sim.api_token()}),
            ),
        )
        .await;
        assert_eq!(status, 201, "{server}");
        let server_id = server["id"].as_i64().unwrap();
        let created: Vec<u16> = futures::stream::iter(sim.accounts())
            .map(|(user, domain)| {
                let body = json!({"client_id": client_id, "server_id": server_id,
                                  "username": user, "domain": domain, "status": "active"});
                let call = &call;
                let a = &a;
                async move {
                    call(a, reqwest::Method::POST, "/services", Some(body))
                        .await
                        .0
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        assert!(created.iter().all(|s| *s == 201), "services created");
    }

    // The vendor's next build, signed, installed: staged, nothing changes.
    let next = panelink_tests::built_at_version("cpanel", "0.1.0", "0.1.1");
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&next))
    );
    let signature = vendor.sign(panelink::signing::message("cpanel", "0.1.1", &digest).as_bytes());
    let installed = client
        .post(format!("{}/api/v1/plugins", a.base()))
        .bearer_auth(&token)
        .header("content-type", "application/wasm")
        .header("X-Panelink-Signature", signature.to_string())
        .body(next)
        .send()
        .await
        .unwrap();
    assert_eq!(installed.status(), 201);

    // Which version each host lists as active, and runs.
    let listed = |host: Process| {
        let call = &call;
        async move {
            let (status, list) = call(&host, reqwest::Method::GET, "/plugins", None).await;
            assert_eq!(status, 200);
            list["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["name"] == "cpanel" && p["active"] == true)
                .map(|p| p["version"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let both_on = |version: &'static str| {
        let (a, b) = (a.clone(), b.clone());
        let listed = &listed;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            for host in [a, b] {
                loop {
                    let runs = host.metric(&active(version)).await == 1;
                    if runs && listed(host.clone()).await == [version] {
                        break;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{} never ran and listed cpanel {version}: lists {:?}",
                        host.base(),
                        listed(host.clone()).await
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    };
    both_on("0.1.0").await;

    // What each host runs and says, for a failure's message: its plugin samples, the sync's
    // servers, and the end of its log.
    let sync_of_test = std::sync::OnceLock::<i64>::new();
    let diagnosis = || {
        let sync_of_test = &sync_of_test;
        let test_db = &test_db;
        let hosts = [a.clone(), b.clone()];
        let logs = [
            dirs[0].path().join("serve.log"),
            dirs[1].path().join("serve.log"),
        ];
        let call = &call;
        async move {
            let mut out = String::new();
            for (host, log) in hosts.iter().zip(logs) {
                let metrics = reqwest::get(format!("{}/metrics", host.base()))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let syncs = match sync_of_test.get() {
                    Some(id) => call(host, reqwest::Method::GET, &format!("/syncs/{id}"), None)
                        .await
                        .1
                        .to_string(),
                    None => String::new(),
                };
                let log = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .filter(|l| !l.contains("plugin call"))
                    .take(60)
                    .collect();
                out += &format!(
                    "\n== {}\n{}\nsyncs: {syncs}\nlog tail (newest first):\n{}\n",
                    host.base(),
                    metrics
                        .lines()
                        .filter(|l| l.starts_with("panelink_plugin") || l.contains("sync"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    tail.join("\n")
                );
            }
            let pool = sqlx::PgPool::connect(&test_db.url).await.unwrap();
            let leases: Vec<(i64, String, i64)> =
                sqlx::query_as("SELECT server_id, owner, until_ms FROM server_leases")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let hosts: Vec<(String, i64)> =
                sqlx::query_as("SELECT node_id, seen_at FROM sync_hosts")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            out += &format!("\nleases: {leases:?}\nhosts: {hosts:?}\n");
            out
        }
    };
    // Until both hosts have run a call of `version` past `floor` (a batch of each host's sync).
    let both_ran = |version: &'static str, floors: [u64; 2]| {
        let hosts = [a.clone(), b.clone()];
        let diagnosis = &diagnosis;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            for (host, floor) in hosts.iter().zip(floors) {
                while host.metric(&calls(version, "returned")).await <= floor {
                    if tokio::time::Instant::now() >= deadline {
                        panic!(
                            "{} never called cpanel {version} past {floor}: {}",
                            host.base(),
                            diagnosis().await
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    };
    let returned = |version: &'static str| {
        let hosts = [a.clone(), b.clone()];
        async move {
            [
                hosts[0].metric(&calls(version, "returned")).await,
                hosts[1].metric(&calls(version, "returned")).await,
            ]
        }
    };

    for sim in sims.iter() {
        sim.set_request_latency(SLOW);
    }
    let before = returned("0.1.0").await;
    let (status, app) = call(
        &a,
        reqwest::Method::PATCH,
        "/applications/cpanel",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 202, "{app}");
    let sync_id = app["sync"]["id"].as_i64().expect("a sync was scheduled");
    sync_of_test.set(sync_id).unwrap();

    // SSO clicks on links already placed, from the start to the end of the sync.
    let stop = tokio_util::sync::CancellationToken::new();
    let clicked = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clickers: Vec<_> = (0..2u64)
        .map(|seed| {
            let (sims, stop, clicked, failures) = (
                sims.clone(),
                stop.clone(),
                clicked.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                let browser = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap();
                let mut n = seed;
                while !stop.is_cancelled() {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let sim = &sims[(n >> 33) as usize % 2];
                    let users = sim.users_with_links();
                    let Some(user) = users.get((n >> 17) as usize % users.len().max(1)) else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let links: Vec<String> = sim.links(user).into_keys().collect();
                    let app = &links[(n >> 7) as usize % links.len()];
                    match sim.click(user, app).await {
                        Ok(outcome) if outcome.source == RedirectSource::TokenEndpoint => {
                            let landed = browser.get(&outcome.redirect_url).send().await;
                            match landed {
                                Ok(r) if r.status().is_redirection() => {
                                    clicked.fetch_add(1, Ordering::Relaxed);
                                }
                                other => failures.lock().unwrap().push(format!(
                                    "{user} {app}: sign-in answered {:?}",
                                    other.map(|r| r.status())
                                )),
                            }
                        }
                        other => failures
                            .lock()
                            .unwrap()
                            .push(format!("{user} {app}: {other:?}")),
                    }
                    // Pace the clicks: a steady flow, not a flood of the host's two cores.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();

    // Until more than `floor` clicks have signed in.
    let clicks_past = |floor: u64| {
        let clicked = clicked.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while clicked.load(Ordering::Relaxed) <= floor {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no click signed in past {floor}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            clicked.load(Ordering::Relaxed)
        }
    };

    // Both hosts are mid-sync (each on its fair share: one server), and clicks flow.
    both_ran("0.1.0", before).await;
    let clicks_at_activation = clicks_past(0).await;

    // Activate the new version through host B: both switch, and both running syncs continue on
    // it from their next batch.
    let (status, body) = call(
        &b,
        reqwest::Method::POST,
        "/plugins/cpanel/versions/0.1.1/activate",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    both_on("0.1.1").await;
    both_ran("0.1.1", [0, 0]).await;
    let clicks_at_rollback = clicks_past(clicks_at_activation).await;

    // Roll back through host A: both go back, and the syncs continue on 0.1.0.
    let (status, body) = call(&a, reqwest::Method::POST, "/plugins/cpanel/rollback", None).await;
    assert_eq!(status, 200, "{body}");
    both_on("0.1.0").await;
    let before = returned("0.1.0").await;
    both_ran("0.1.0", before).await;
    clicks_past(clicks_at_rollback).await;

    // Let the rest of the sync run at full speed.
    for sim in sims.iter() {
        sim.set_request_latency(Duration::ZERO);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let detail = loop {
        let (_, s) = call(&a, reqwest::Method::GET, &format!("/syncs/{sync_id}"), None).await;
        if s["state"] != "running" && s["state"] != "queued" {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sync never ended: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    for clicker in clickers {
        clicker.await.unwrap();
    }

    // Nothing failed.
    assert_eq!(detail["state"], "completed", "{detail}");
    for server in detail["servers"].as_array().unwrap() {
        assert_eq!(server["state"], "completed", "{detail}");
        assert_eq!(server["attempts"], 0, "no retried batch: {detail}");
        assert!(server["last_error"].is_null(), "{detail}");
    }
    for host in [&a, &b] {
        for version in ["0.1.0", "0.1.1"] {
            assert_eq!(
                host.metric(&calls(version, "failed")).await,
                0,
                "{} cpanel {version}",
                host.base()
            );
        }
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed clicks: {failures:?}");

    // The panels are exact, each link and group created once.
    for sim in sims.iter() {
        for user in sim.accounts().keys() {
            assert_eq!(sim.links(user).len(), 14, "{user}");
            assert_eq!(sim.groups(user).len(), 1, "{user}");
        }
        assert_eq!(sim.calls("create_integration_link"), 14 * ACCOUNTS as u64);
        assert_eq!(sim.calls("create_integration_group"), ACCOUNTS as u64);
        assert_eq!(sim.calls("remove_integration_link"), 0);
        assert_eq!(sim.calls("remove_integration_group"), 0);
    }
    both_on("0.1.0").await;
}
