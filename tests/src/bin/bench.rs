//! `cargo xtask bench [NAME...]`: Panelink's benchmarks, printed as a table.
//!
//! - `runtime`: the instantiate + call overhead of one provisioning call (pooling vs on-demand
//!   allocator), and the cost of a 100-account provisioning batch inside wasm vs the same plugin
//!   code compiled natively (interleaved rounds, the median of their ratios; target ≤ 1.5×).
//!
//! - `sync`: a fleet of simulated servers driven by the sync engine (see `bench_sync`).
//! - `sso`: complete click flows (token + redemption) per second with latencies, on SQLite and
//!   PostgreSQL (see `bench_sso`).
//! - `plugins`: activation → first call on the new version, and a start's plugin loading with
//!   the compile cache vs without (see `bench_plugins`).
//!
//! Speed targets live here, never in timed tests.

/// The same allocator as the `panelink` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use panelink::adapter::{self, Secret, ServerTarget};
use panelink::runtime::{AllocatorChoice, Runtime, RuntimeConfig};
use panelink_tests::{built_plugin, runtime_config};

fn main() -> anyhow::Result<()> {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let wants = |n: &str| names.is_empty() || names.iter().any(|x| x == n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if wants("runtime") {
        rt.block_on(runtime_bench())?;
    }
    if wants("sync") {
        rt.block_on(panelink_tests::bench_sync::run())?;
    }
    if wants("sso") {
        rt.block_on(panelink_tests::bench_sso::run())?;
    }
    if wants("plugins") {
        rt.block_on(panelink_tests::bench_plugins::run())?;
    }
    Ok(())
}

/// Summary statistics of a set of samples.
struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    let mean = samples.iter().sum::<Duration>() / n as u32;
    Stats {
        mean,
        p50: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

async fn runtime_bench() -> anyhow::Result<()> {
    println!("== runtime: instantiate + call overhead of one provisioning call ==");
    println!(
        "(misbehave component, one well-behaved account, no host calls; fresh Store per call)"
    );
    for (label, choice) in [
        ("pooling", AllocatorChoice::Pooling),
        ("on-demand", AllocatorChoice::OnDemand),
    ] {
        let runtime = Runtime::new(RuntimeConfig {
            allocator: choice,
            ..runtime_config()
        })?;
        let plugin = runtime.load_file(&built_plugin("misbehave")).await?;
        let target = dummy_target();
        let work = vec![account("good")];
        let settings = adapter::Settings::default();
        for _ in 0..200 {
            plugin
                .provision(&target, &settings, Vec::new(), work.clone())
                .await?;
        }
        let mut samples = Vec::with_capacity(5000);
        for _ in 0..5000 {
            let t = Instant::now();
            plugin
                .provision(&target, &settings, Vec::new(), work.clone())
                .await?;
            samples.push(t.elapsed());
        }
        let s = stats(samples);
        println!(
            "  {label:<10} allocator={:?}  mean {}  p50 {}  p99 {}",
            runtime.allocator(),
            us(s.mean),
            us(s.p50),
            us(s.p99)
        );
    }

    println!(
        "\n== runtime: building and mapping a 100-account provisioning batch, wasm vs native =="
    );
    let (templates, accounts) = panelink_whm::sample_call(100);
    // The plugin's own cap on commands per request, as the component runs it.
    let settings = panelink_whm::Settings {
        app_prefix: "PANELINK".into(),
        group_id: "panelink".into(),
        group_label: "Billing & Support".into(),
        max_commands_per_request: panelink_whm::LIMITS.operations_per_request,
    };
    let commands: usize = accounts.iter().map(|a| 1 + a.links.len()).sum();

    // Native: the same plugin code, with an in-memory transport that answers instantly.
    let mut fake = CannedTransport::default();
    let server = panelink_whm::Server {
        hostname: "127.0.0.1".into(),
        port: 2086,
        secure: false,
        username: "root".into(),
    };
    // Wasm: the cpanel component through the runtime, against a stub that answers the same
    // canned result at once; the plain HTTP round trip of the same requests is measured apart
    // and subtracted.
    let stub = CannedServer::start().await?;
    let runtime = Runtime::new(runtime_config())?;
    let plugin = runtime.load_file(&built_plugin("cpanel")).await?;
    let target = ServerTarget {
        hostname: "127.0.0.1".into(),
        port: stub.port,
        secure: false,
        username: "root".into(),
        api_token: Secret::new("bench"),
    };
    let host_templates: Vec<_> = templates.iter().map(template_to_host).collect();
    let host_accounts: Vec<_> = accounts.iter().map(to_host).collect();
    let host_settings = adapter::Settings::default();
    let bodies: Vec<Vec<u8>> =
        panelink_whm::build_provision_batches(&settings, &templates, &accounts)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .into_iter()
            .map(|b| b.body)
            .collect();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/json-api/batch", stub.port);

    // Interleaved rounds: each round measures the three back to back, so that what disturbs
    // the machine for a while disturbs all three; the ratio is taken per round and its median
    // reported (one median of each, subtracted, swings with a noisy machine).
    const ROUNDS: usize = 15;
    const PER_ROUND: usize = 20;
    let (mut native_all, mut wasm_all, mut rtt_all, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let (mut native, mut wasm, mut rtt) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..PER_ROUND {
            let t = Instant::now();
            let out = panelink_whm::plugin::provision(
                &mut fake, &server, &settings, &templates, &accounts,
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            native.push(t.elapsed());
            assert_eq!(out.len(), 100);

            let t = Instant::now();
            let out = plugin
                .provision(
                    &target,
                    &host_settings,
                    host_templates.clone(),
                    host_accounts.clone(),
                )
                .await?;
            wasm.push(t.elapsed());
            assert_eq!(out.value.len(), 100);
            assert!(out.value.iter().all(|o| o.errors().count() == 0));

            let t = Instant::now();
            for body in &bodies {
                let answer = client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .send()
                    .await?
                    .bytes()
                    .await?;
                assert!(!answer.is_empty());
            }
            rtt.push(t.elapsed());
        }
        // The first round warms up.
        if round == 0 {
            continue;
        }
        let (n, w, r) = (
            stats(native.clone()).p50,
            stats(wasm.clone()).p50,
            stats(rtt.clone()).p50,
        );
        ratios.push(w.saturating_sub(r).as_secs_f64() / n.as_secs_f64());
        native_all.extend(native);
        wasm_all.extend(wasm);
        rtt_all.extend(rtt);
    }
    ratios.sort_by(f64::total_cmp);
    let (native, wasm, rtt) = (stats(native_all), stats(wasm_all), stats(rtt_all));
    let wasm_net = wasm.p50.saturating_sub(rtt.p50);
    let body_bytes: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "  call: 100 accounts, {commands} commands in {} requests, request bodies {} KiB",
        bodies.len(),
        body_bytes / 1024
    );
    println!(
        "  native (same code, in-memory transport)   p50 {}",
        us(native.p50)
    );
    println!(
        "  wasm   (runtime call, incl. instantiate)   p50 {}  (whole call incl. HTTP {})",
        us(wasm_net),
        us(wasm.p50)
    );
    println!(
        "  plain HTTP round trips of the same requests p50 {}",
        us(rtt.p50)
    );
    println!(
        "  ratio wasm / native: median of {ROUNDS} interleaved rounds {:.2}x (rounds from {:.2}x to {:.2}x)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    Ok(())
}

fn dummy_target() -> ServerTarget {
    ServerTarget {
        hostname: "127.0.0.1".into(),
        port: 9,
        secure: false,
        username: "root".into(),
        api_token: Secret::new("bench"),
    }
}

fn account(username: &str) -> adapter::AccountWork {
    adapter::AccountWork {
        username: username.into(),
        domain: format!("{username}.example"),
        service_id: "1".into(),
        credential: adapter::Credential::Token {
            subscriber_id: "1".into(),
            secret: Secret::new("s"),
        },
        ensure_group: true,
        links: vec![],
        remove: vec![],
    }
}

fn template_to_host(t: &panelink_whm::LinkTemplate) -> adapter::LinkTemplate {
    adapter::LinkTemplate {
        scope: t.scope.clone(),
        label: t.label.clone(),
        order: t.order,
        token_url: t.token_url.clone(),
        url: t.url.clone(),
    }
}

fn to_host(a: &panelink_whm::AccountWork) -> adapter::AccountWork {
    adapter::AccountWork {
        username: a.username.clone(),
        domain: a.domain.clone(),
        service_id: a.service_id.clone(),
        credential: match &a.credential {
            panelink_whm::Credential::Token {
                subscriber_id,
                secret,
            } => adapter::Credential::Token {
                subscriber_id: subscriber_id.clone(),
                secret: Secret::new(secret.clone()),
            },
            panelink_whm::Credential::LinkHandle(h) => {
                adapter::Credential::LinkHandle(Secret::new(h.clone()))
            }
        },
        ensure_group: a.ensure_group,
        links: a.links.clone(),
        remove: a.remove.clone(),
    }
}

/// A WHM `batch` answer with `n` successful commands.
fn canned_answer(n: usize) -> Vec<u8> {
    let one = r#"{"metadata":{"command":"create_integration_link","reason":"OK","result":1,"version":1},"data":{}}"#;
    let mut s = String::from(
        r#"{"metadata":{"command":"batch","reason":"OK","result":1,"version":1},"data":{"result":["#,
    );
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(one);
    }
    s.push_str("]}}");
    s.into_bytes()
}

fn count_commands(body: &[u8]) -> usize {
    body.split(|b| *b == b'&')
        .filter(|f| f.starts_with(b"command="))
        .count()
}

/// The native transport: answers every batch at once with all commands successful.
#[derive(Default)]
struct CannedTransport {
    answers: std::collections::HashMap<usize, Vec<u8>>,
}

impl panelink_whm::Transport for CannedTransport {
    fn post_form(
        &mut self,
        _url: &str,
        body: Vec<u8>,
    ) -> Result<panelink_whm::HttpResponse, panelink_whm::HttpError> {
        let n = count_commands(&body);
        let answer = self.answers.entry(n).or_insert_with(|| canned_answer(n));
        Ok(panelink_whm::HttpResponse {
            status: 200,
            body: answer.clone(),
        })
    }

    fn debug(&mut self, _message: &str) {}
}

/// An HTTP server that answers every batch at once with all commands successful.
struct CannedServer {
    port: u16,
}

impl CannedServer {
    async fn start() -> anyhow::Result<Self> {
        use axum::routing::post;
        let answers: Arc<std::sync::Mutex<std::collections::HashMap<usize, Vec<u8>>>> =
            Arc::default();
        let app = axum::Router::new().route(
            "/json-api/{function}",
            post(move |body: axum::body::Bytes| {
                let answers = answers.clone();
                async move {
                    let n = count_commands(&body);
                    let answer = answers
                        .lock()
                        .expect("lock")
                        .entry(n)
                        .or_insert_with(|| canned_answer(n))
                        .clone();
                    ([("content-type", "application/json")], answer)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { port })
    }
}
