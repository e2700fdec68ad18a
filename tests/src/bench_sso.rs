//! The `sso` benchmark: complete click flows per second through the real HTTP server, as a panel
//! server and browsers drive them — `POST /oauth/token` with a link's credential, then
//! `GET /oauth/sso?access_token=…` (the redirect is not followed) — on SQLite and on PostgreSQL.
//!
//! Set-up per backend: a fresh database, `panelink` served in-process on port 0 with the rate
//! limits off, 50 clients with one active service each, every service with an SSO credential and
//! its 14 links on record. Then `concurrency` workers run flows back to back over the services
//! (round robin) for a fixed time; a flow's latency is both requests. The HTTP client runs in the
//! same process and shares the machine's cores with the server: the figures include its cost,
//! and so does the process's CPU time per flow that each line ends with.
//!
//! PostgreSQL is the one at `PANELINK_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`;
//! `off` skips it), reached without TLS (`sslmode=disable`: on loopback TLS would only measure
//! rustls). Targets: on SQLite ≥ 5,000 flows/s at concurrency 8 with p99 ≤ 5 ms; on PostgreSQL
//! ≥ 3,000 flows/s at concurrency 8.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use panelink::adapter::Secret;
use panelink::config::{Config, Layer};
use panelink::crypto::SecretBox;
use panelink::model::{
    ApplicationId, ClientStatus, Email, Hostname, Name, Port, ServiceStatus, Username,
};
use panelink::storage::{Actor, Db, NewClient, NewServer, NewService};
use panelink::sync_port::{RecordChange, RecordedLink};

const SECRET_KEY: &str = "5d0c2a9e8f7b6c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d";
const SERVICES: usize = 50;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(4);
const CONCURRENCY: &[usize] = &[1, 8, 32];
const SCOPES: &[&str] = &[
    "clientarea:upgrade",
    "clientarea:submit_ticket",
    "clientarea:invoices",
    "clientarea:product_details",
];

/// Run the benchmark and print its figures.
pub async fn run() -> anyhow::Result<()> {
    println!("== sso: click flows (token + redemption, redirect not followed) ==");
    let sqlite = crate::bench_db::BenchDb::sqlite()?;
    backend("sqlite", &sqlite.url).await?;
    let Some(postgres) = crate::bench_db::BenchDb::postgres().await? else {
        println!("  postgres: skipped (PANELINK_TEST_POSTGRES=off)");
        return Ok(());
    };
    let result = backend("postgres", &postgres.url).await;
    postgres.drop_now().await?;
    result
}

/// One credential and what to ask for with it.
struct Link {
    subscriber_id: String,
    secret: Secret,
}

async fn backend(label: &str, database_url: &str) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut config = Config::resolve([Layer {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(database_url.to_owned()),
        data_dir: Some(data.path().to_path_buf()),
        secret_key: Some(SECRET_KEY.into()),
        plugin_dir: Some(crate::plugin_dir()),
        log_level: Some("warn".into()),
        ..Layer::default()
    }])?;
    config.sso.rate_limit_per_address = 0;
    config.sso.rate_limit_per_credential = 0;
    config.sso.redeem_rate_limit_per_address = 0;
    let host = panelink::boot::Host::start(
        config,
        panelink::boot::Options {
            runtime: crate::runtime_config(),
            ..Default::default()
        },
    )
    .await?;
    let base = format!("http://{}", host.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(host.run(async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        if Instant::now() > deadline {
            bail!("the host did not get ready in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let db = Db::connect(
        database_url,
        Arc::new(SecretBox::from_material(SECRET_KEY)?),
    )
    .await?;
    let links = Arc::new(fixtures(&db).await?);

    for &concurrency in CONCURRENCY {
        let (elapsed, cpu, samples) = measure(&http, &base, &links, concurrency).await?;
        let flows = samples.len();
        let (mut flow, mut token): (Vec<_>, Vec<_>) =
            samples.iter().map(|s| (s.flow, s.token)).unzip();
        let mut redeem: Vec<_> = samples.iter().map(|s| s.flow - s.token).collect();
        println!(
            "  {label:<8} concurrency {concurrency:>2}: {:>5.0} flows/s  flow p50 {} p99 {}  \
             (token p50 {} p99 {}, redemption p50 {} p99 {}; {flows} flows; CPU {:.0} µs/flow)",
            flows as f64 / elapsed.as_secs_f64(),
            ms(&mut flow, 50),
            ms(&mut flow, 99),
            ms(&mut token, 50),
            ms(&mut token, 99),
            ms(&mut redeem, 50),
            ms(&mut redeem, 99),
            cpu.as_secs_f64() * 1e6 / flows.max(1) as f64,
        );
    }
    db.close().await;
    let _ = stop.send(());
    running.await??;
    Ok(())
}

/// A model type's parse result as an `anyhow` one.
fn text<T>(r: Result<T, String>) -> anyhow::Result<T> {
    r.map_err(anyhow::Error::msg)
}

/// The `q`th percentile of samples, in milliseconds.
fn ms(samples: &mut [Duration], q: usize) -> String {
    samples.sort_unstable();
    let n = samples.len();
    format!(
        "{:.2} ms",
        samples[(n * q / 100).min(n - 1)].as_secs_f64() * 1e3
    )
}

/// One flow's timings.
struct Sample {
    /// Both requests.
    flow: Duration,
    /// The token request.
    token: Duration,
}

/// Clients, services, credentials and recorded links.
async fn fixtures(db: &Db) -> anyhow::Result<Vec<Link>> {
    let actor = Actor::cli();
    let server = db
        .create_server(
            &actor,
            &NewServer {
                name: text(Name::parse("bench"))?,
                module: text(ApplicationId::parse("cpanel"))?,
                hostname: text(Hostname::parse("127.0.0.1"))?,
                port: text(Port::new(9))?,
                secure: false,
                username: text(Username::parse("root"))?,
                api_token: Secret::new("unused"),
                enabled: true,
            },
            |_| None,
        )
        .await?
        .0;
    db.set_application_enabled(&actor, "cpanel", true).await?;
    let mut links = Vec::with_capacity(SERVICES);
    for i in 0..SERVICES {
        let client = db
            .create_client(
                &actor,
                &NewClient {
                    name: text(Name::parse(&format!("Client {i}")))?,
                    email: text(Email::parse(&format!("owner{i}@example.com")))?,
                    status: ClientStatus::Active,
                    allow_sso: true,
                },
            )
            .await?;
        let service = db
            .create_service(
                &actor,
                &NewService {
                    client_id: client.id,
                    server_id: server.id,
                    username: text(Username::parse(&format!("user{i}")))?,
                    domain: text(Hostname::parse(&format!("user{i}.example")))?,
                    status: ServiceStatus::Active,
                },
                |_| None,
            )
            .await?
            .0;
        let (subscriber_id, secret) = db.mint_sso_credential(service.id).await?;
        let changes: Vec<RecordChange> = SCOPES
            .iter()
            .enumerate()
            .map(|(position, scope)| {
                RecordChange::Link(RecordedLink {
                    service_id: service.id,
                    username: format!("user{i}"),
                    scope: (*scope).to_owned(),
                    label: (*scope).to_owned(),
                    position: position as i64 + 1,
                    credential_version: 1,
                })
            })
            .collect();
        db.record_changes("cpanel", server.id, &changes, None, None, &[])
            .await?;
        links.push(Link {
            subscriber_id,
            secret,
        });
    }
    Ok(links)
}

/// Run `concurrency` workers for the warm-up, then for the measured time: its length, the
/// process's CPU time in it (server and client together: on a shared machine a steadier figure
/// than the rate), and the flows.
async fn measure(
    http: &reqwest::Client,
    base: &str,
    links: &Arc<Vec<Link>>,
    concurrency: usize,
) -> anyhow::Result<(Duration, Duration, Vec<Sample>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let run = |until: Instant| {
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (http, base, links, next) =
                    (http.clone(), base.to_owned(), links.clone(), next.clone());
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    while Instant::now() < until {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let link = &links[n % links.len()];
                        let scope = SCOPES[n / links.len() % SCOPES.len()];
                        let started = Instant::now();
                        let token = flow(&http, &base, link, scope, started).await?;
                        samples.push(Sample {
                            flow: started.elapsed(),
                            token,
                        });
                    }
                    anyhow::Ok(samples)
                })
            })
            .collect();
        async move {
            let mut all = Vec::new();
            for worker in workers {
                all.extend(worker.await??);
            }
            anyhow::Ok((started.elapsed(), all))
        }
    };
    run(Instant::now() + WARM_UP).await?;
    let cpu = crate::bench_sync::cpu_time();
    let (elapsed, samples) = run(Instant::now() + MEASURE).await?;
    Ok((elapsed, crate::bench_sync::cpu_time() - cpu, samples))
}

/// One click: the panel's token call, then the browser's redemption. Returns how long the token
/// call took.
async fn flow(
    http: &reqwest::Client,
    base: &str,
    link: &Link,
    scope: &str,
    started: Instant,
) -> anyhow::Result<Duration> {
    let answer = http
        .post(format!(
            "{base}/oauth/token?scope=clientarea%3Asso+{}&module=cpanel",
            scope.replace(':', "%3A")
        ))
        .form(&[
            ("subscriber_unique_id", link.subscriber_id.as_str()),
            ("token", link.secret.expose()),
            ("attempt", "1"),
        ])
        .send()
        .await?;
    if answer.status() != 200 {
        bail!("token endpoint answered {}", answer.status());
    }
    let answer: serde_json::Value = answer.json().await?;
    let redirect = answer["redirect_url"].as_str().context("no redirect_url")?;
    let token = started.elapsed();
    let landed = http.get(redirect).send().await?;
    if landed.status() != 302 {
        bail!("redemption answered {}", landed.status());
    }
    Ok(token)
}
