//! The `sync` benchmark: a fleet of simulated panel servers driven by the sync engine, against
//! the physical limit of its configuration and against the way existing systems do it.
//!
//! Size from the environment: `PANELINK_BENCH_SERVERS` (default 50), `PANELINK_BENCH_ACCOUNTS`
//! (default 1000), `PANELINK_BENCH_LATENCY_MS` (default 20). `PANELINK_BENCH_FULL_ONLY` stops
//! after the full push (for profiling it).
//!
//! `PANELINK_BENCH_DATABASE=postgres` runs it on a fresh PostgreSQL database (see `bench_db`)
//! instead of SQLite, and `PANELINK_BENCH_HOSTS=2` (PostgreSQL only) with two sync engines,
//! each with its own connection pool and node id, sharing the work as two `panelink serve`
//! hosts do (they run in this one process: the host CPU figure covers both; the database
//! server's CPU is reported apart).

use std::sync::Arc;
use std::time::{Duration, Instant};

use panel_sim::{PanelSim, SimConfig, SimHandle};
use panelink::adapter::Secret;
use panelink::crypto::SecretBox;
use panelink::model::{
    ApplicationId, ClientStatus, DisplayName, Email, Hostname, LinkSetting, Name, Port, Scope,
    ServiceStatus, Username,
};
use panelink::runtime::{Plugins, Runtime};
use panelink::storage::{Actor, Db, NewClient, NewServer, NewService};
use panelink::sync::{SyncConfig, SyncEngine};
use panelink::sync_port::{Event, Events};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

use crate::bench_db::{BenchDb, processes_cpu_time, stat_cpu};

/// CPU time of this whole process.
pub(crate) fn cpu_time() -> Duration {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU time of this process's threads named `name` (the simulators' runtime).
fn threads_cpu_time(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| stat_cpu(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default()))
        .sum()
}

/// Context switches (voluntary and not) of this process's threads other than the simulators':
/// threads that hand work to each other (the sqlx SQLite workers, tokio's) switch for it.
fn host_context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            !std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == SIM_THREADS)
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// The simulated fleet runs on its own runtime, so that its CPU time (a real fleet's, spent on
/// other machines) can be told apart from the host's.
const SIM_THREADS: &str = "panel-sim";

fn text<T>(r: Result<T, String>) -> anyhow::Result<T> {
    r.map_err(anyhow::Error::msg)
}

/// The simulators' runtime; dropped in the background (it is dropped inside another runtime).
struct SimRuntime(Option<tokio::runtime::Runtime>);

impl SimRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("runtime").handle()
    }
}

impl Drop for SimRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Run the benchmark and print its figures.
pub async fn run() -> anyhow::Result<()> {
    let servers = env("PANELINK_BENCH_SERVERS", 50);
    let accounts = env("PANELINK_BENCH_ACCOUNTS", 1000);
    let latency = Duration::from_millis(env("PANELINK_BENCH_LATENCY_MS", 20) as u64);
    println!(
        "\n== sync: {servers} servers x {accounts} accounts x 14 links, {} ms per request ==",
        latency.as_millis()
    );

    let hosts = env("PANELINK_BENCH_HOSTS", 1).max(1);
    let bench_db = match std::env::var("PANELINK_BENCH_DATABASE").as_deref() {
        Ok("postgres") => BenchDb::postgres()
            .await?
            .ok_or_else(|| anyhow::anyhow!("PostgreSQL is off (PANELINK_TEST_POSTGRES=off)"))?,
        Ok("sqlite") | Err(_) => BenchDb::sqlite()?,
        Ok(other) => anyhow::bail!("PANELINK_BENCH_DATABASE is sqlite or postgres, not {other}"),
    };
    let backend = if bench_db.url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    if hosts > 1 && backend == "SQLite" {
        anyhow::bail!("PANELINK_BENCH_HOSTS > 1 needs PANELINK_BENCH_DATABASE=postgres");
    }
    println!("  on {backend}, {hosts} host(s)");
    let secrets = || {
        SecretBox::from_material("7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f0a1b2c3d4e5f6a7b8c9d0e1f2a3b")
            .map(Arc::new)
    };
    let db = Db::connect(&bench_db.url, secrets()?).await?;
    db.migrate().await?;
    // One request in flight per server, as the limit below counts them.
    let mut runtime_config = crate::runtime_config();
    runtime_config.http.max_in_flight_per_server = Some(1);
    let runtime = Runtime::new(runtime_config)?;
    let plugins = Arc::new(Plugins::new());
    plugins.activate(crate::load(&runtime, "cpanel").await);
    db.ensure_application("cpanel").await?;

    let actor = Actor::cli();
    let client = db
        .create_client(
            &actor,
            &NewClient {
                name: text(Name::parse("Bench"))?,
                email: text(Email::parse("bench@example.com"))?,
                status: ClientStatus::Active,
                allow_sso: true,
            },
        )
        .await?;
    let sim_runtime = SimRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SIM_THREADS)
            .enable_all()
            .build()?,
    ));
    let mut sims: Vec<SimHandle> = Vec::new();
    for i in 0..servers {
        let sim = sim_runtime
            .handle()
            .spawn(PanelSim::start(
                SimConfig::new()
                    .sample_accounts(accounts)
                    .request_latency(latency),
            ))
            .await??;
        let server = db
            .create_server(
                &actor,
                &NewServer {
                    name: text(Name::parse(&format!("sim{i}")))?,
                    module: text(ApplicationId::parse("cpanel"))?,
                    hostname: text(Hostname::parse("127.0.0.1"))?,
                    port: text(Port::new(i64::from(sim.addr().port())))?,
                    secure: false,
                    username: text(Username::parse(&sim.api_user()))?,
                    api_token: Secret::new(sim.api_token()),
                    enabled: true,
                },
                |_| None,
            )
            .await?
            .0;
        for (user, domain) in sim.accounts() {
            db.create_service(
                &actor,
                &NewService {
                    client_id: client.id,
                    server_id: server.id,
                    username: text(Username::parse(&user))?,
                    domain: text(Hostname::parse(&domain))?,
                    status: ServiceStatus::Active,
                },
                |_| None,
            )
            .await?;
        }
        sims.push(sim);
    }

    let config = SyncConfig {
        workers: servers.max(1),
        // Two batches under way per server, one request in flight (the runtime's per-server
        // gate, set above): the limit below counts the requests one after another.
        per_server_concurrency: 2,
        poll_interval: Duration::from_millis(50),
        ..SyncConfig::default()
    };
    // Whole accounts per request: 300 commands hold 20 accounts of 15 commands.
    let commands_per_request = (plugins
        .get("cpanel")
        .expect("cpanel")
        .description
        .limits
        .operations_per_request as usize
        / 15)
        * 15;
    let events = Events::new();
    let engine = Arc::new(SyncEngine::new(
        db.clone(),
        plugins.clone(),
        events.clone(),
        SyncConfig {
            node_id: "bench-0".into(),
            ..config.clone()
        },
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(engine.clone().run(async move {
        let _ = stopped.await;
    }));
    // The other hosts: engines of their own, on pools of their own.
    let mut others = Vec::new();
    for i in 1..hosts {
        let other_db = Db::connect(&bench_db.url, secrets()?).await?;
        let other = Arc::new(SyncEngine::new(
            other_db.clone(),
            plugins.clone(),
            Events::new(),
            SyncConfig {
                node_id: format!("bench-{i}"),
                ..config.clone()
            },
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(other.clone().run(async move {
            let _ = stopped.await;
        }));
        others.push((other, other_db, stop, task));
    }
    // Every host counts among the live ones before the work is queued.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.live_hosts(0).await? < hosts as i64 {
        anyhow::ensure!(Instant::now() < deadline, "the hosts never all came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Waits for a sync to finish: on the engine's events (its closing summary), so that the
    // benchmark itself does not poll the database while it measures the host's CPU; the
    // database is read at first, on a lagging receiver and every second as a safety net.
    let wait = |id: i64| {
        let db = db.clone();
        let mut events = events.subscribe();
        async move {
            loop {
                let s = db.sync_summary(id).await?.expect("sync");
                if s.finished_at.is_some() {
                    return anyhow::Ok(s);
                }
                let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                loop {
                    match tokio::time::timeout_at(deadline, events.recv()).await {
                        Ok(Ok(Event::Sync(s))) if s.id == id && s.finished_at.is_some() => {
                            return anyhow::Ok(s);
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) | Err(_) => break,
                    }
                }
            }
        }
    };

    // 1. Full push (enable).
    let (_, enabled) = db.set_application_enabled(&actor, "cpanel", true).await?;
    let switches0 = host_context_switches();
    let (cpu0, sim0, db0, t0) = (
        cpu_time(),
        threads_cpu_time(SIM_THREADS),
        processes_cpu_time("postgres"),
        Instant::now(),
    );
    let sync = engine
        .request(enabled)
        .await?
        .into_iter()
        .next()
        .expect("sync");
    let done = wait(sync.id).await?;
    let full_wall = t0.elapsed();
    let sim_cpu = threads_cpu_time(SIM_THREADS) - sim0;
    let host_cpu = (cpu_time() - cpu0).saturating_sub(sim_cpu);
    let db_cpu = processes_cpu_time("postgres").saturating_sub(db0);
    // Threads that ended meanwhile take their switches with them: a lower bound.
    let switches = host_context_switches().saturating_sub(switches0);
    let calls: u64 = sims.iter().map(|s| s.counters().total_calls()).sum();
    let requests: u64 = sims.iter().map(|s| s.http_requests()).sum();
    let per_server_requests = (accounts * 15).div_ceil(commands_per_request) + 3;
    // The panel's own cost per command, as the simulators measured it (on a real fleet each
    // server spends it on its own CPU, in parallel with the others).
    let per_command = sim_cpu / u32::try_from(calls.max(1)).unwrap_or(u32::MAX);
    let per_server_calls = u32::try_from(calls / servers.max(1) as u64).unwrap_or(u32::MAX);
    let limit = latency * per_server_requests as u32 + per_command * per_server_calls;
    println!(
        "  full push: {:?} in {:.2} s wall ({} panel calls, {} HTTP requests)",
        done.state,
        full_wall.as_secs_f64(),
        calls,
        requests
    );
    println!(
        "    physical limit: {per_server_requests} requests per server x {} ms + {per_server_calls} commands x {:.1} µs (the panel's cost per command), servers in parallel = {:.2} s; ratio {:.2}x",
        latency.as_millis(),
        per_command.as_secs_f64() * 1e6,
        limit.as_secs_f64(),
        full_wall.as_secs_f64() / limit.as_secs_f64()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let floor = (host_cpu + sim_cpu) / u32::try_from(cores).unwrap_or(1);
    println!(
        "    CPU floor on this machine: (host + simulators) / {cores} cores = {:.2} s; wall / floor {:.2}",
        floor.as_secs_f64(),
        full_wall.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
    // What the host's CPU alone allows, as if the fleet ran on machines of its own: its CPU time
    // spread over every core, against the limit.
    let host_floor = host_cpu / u32::try_from(cores).unwrap_or(1);
    let fleet_floor = sim_cpu / u32::try_from(cores).unwrap_or(1);
    println!(
        "    the host's CPU alone over {cores} cores: {:.2} s ({:.2}x the limit); the simulated fleet's alone: {:.2} s ({:.2}x)",
        host_floor.as_secs_f64(),
        host_floor.as_secs_f64() / limit.as_secs_f64(),
        fleet_floor.as_secs_f64(),
        fleet_floor.as_secs_f64() / limit.as_secs_f64()
    );
    println!(
        "    host CPU (engine + plugins + storage): {:.2} s, {:.1} µs per panel call; the simulators: {:.2} s, {:.1} µs per command",
        host_cpu.as_secs_f64(),
        host_cpu.as_secs_f64() * 1e6 / calls.max(1) as f64,
        sim_cpu.as_secs_f64(),
        sim_cpu.as_secs_f64() * 1e6 / calls.max(1) as f64
    );

    println!(
        "    the host's threads switched {switches} times ({:.0} per HTTP request)",
        switches as f64 / requests.max(1) as f64
    );
    if backend == "PostgreSQL" {
        println!(
            "    the PostgreSQL server's CPU: {:.2} s, {:.1} µs per panel call",
            db_cpu.as_secs_f64(),
            db_cpu.as_secs_f64() * 1e6 / calls.max(1) as f64
        );
    }
    if hosts > 1 {
        let pushed: Vec<String> = std::iter::once(&engine)
            .chain(others.iter().map(|(e, ..)| e))
            .map(|e| e.batches_pushed().to_string())
            .collect();
        println!("    batches pushed by each host: {}", pushed.join(" / "));
    }
    // The other hosts stop here; the rest runs on the first.
    for (_, other_db, stop, task) in others {
        let _ = stop.send(());
        task.await?;
        other_db.close().await;
    }

    if std::env::var_os("PANELINK_BENCH_FULL_ONLY").is_some() {
        let _ = stop.send(());
        task.await?;
        db.close().await;
        return bench_db.drop_now().await;
    }
    // 2. A one-label change.
    for sim in &sims {
        sim.reset_counters();
    }
    let mut links: Vec<LinkSetting> = plugins
        .get("cpanel")
        .expect("cpanel")
        .description
        .links
        .iter()
        .map(|l| {
            Ok(LinkSetting {
                scope: text(Scope::parse(&l.scope))?,
                display_name: text(DisplayName::parse(&l.default_label))?,
                enabled: true,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    links[13].display_name = text(DisplayName::parse("Invoices"))?;
    let saved = db.save_link_settings(&actor, "cpanel", &links).await?;
    let t1 = Instant::now();
    let sync = engine
        .request(saved)
        .await?
        .into_iter()
        .next()
        .expect("sync");
    wait(sync.id).await?;
    let label_wall = t1.elapsed();
    let label_calls: u64 = sims.iter().map(|s| s.counters().total_calls()).sum();
    println!(
        "  one-label change: {:.2} s wall, {label_calls} panel calls",
        label_wall.as_secs_f64()
    );
    let _ = stop.send(());
    task.await?;

    // 3. The same change the way existing systems do it: servers one after another, every
    //    account's links removed and created again, through the same plugin.
    for sim in &sims {
        sim.reset_counters();
    }
    let plugin = plugins.get("cpanel").expect("cpanel");
    let settings = panelink::adapter::Settings::default();
    let t2 = Instant::now();
    for (i, sim) in sims.iter().enumerate() {
        let target = db.server_target(i64::try_from(i + 1)?).await?;
        let usernames: Vec<String> = sim.accounts().keys().cloned().collect();
        for chunk in usernames.chunks(20) {
            plugin.deprovision(&target, &settings, chunk).await?;
        }
        let (templates, work) = sequential_work(&plugin.description, &usernames);
        for chunk in work.chunks(20) {
            plugin
                .provision(&target, &settings, templates.clone(), chunk.to_vec())
                .await?;
        }
    }
    let seq_wall = t2.elapsed();
    let seq_calls: u64 = sims.iter().map(|s| s.counters().total_calls()).sum();
    println!(
        "  the sequential full re-push: {:.2} s wall, {seq_calls} panel calls",
        seq_wall.as_secs_f64()
    );
    println!(
        "  one-label change, Panelink vs sequential: {:.1}x faster, {:.1}x fewer panel calls",
        seq_wall.as_secs_f64() / label_wall.as_secs_f64(),
        seq_calls as f64 / label_calls.max(1) as f64
    );
    db.close().await;
    bench_db.drop_now().await
}

fn sequential_work(
    description: &panelink::adapter::Description,
    usernames: &[String],
) -> (
    Vec<panelink::adapter::LinkTemplate>,
    Vec<panelink::adapter::AccountWork>,
) {
    let templates = description
        .links
        .iter()
        .zip(1..)
        .map(|(l, order)| panelink::adapter::LinkTemplate {
            scope: l.scope.clone(),
            label: l.default_label.clone(),
            order,
            token_url: "https://billing.example/oauth/token".into(),
            url: "https://billing.example/portal".into(),
        })
        .collect();
    let work = usernames
        .iter()
        .map(|u| panelink::adapter::AccountWork {
            username: u.clone(),
            domain: String::new(),
            service_id: String::new(),
            credential: panelink::adapter::Credential::Token {
                subscriber_id: format!("sub-{u}"),
                secret: Secret::new("0123456789abcdef"),
            },
            ensure_group: true,
            links: description.links.iter().map(|l| l.scope.clone()).collect(),
            remove: Vec::new(),
        })
        .collect();
    (templates, work)
}
