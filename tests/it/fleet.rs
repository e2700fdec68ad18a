//! The fleet the sync tests of every panel run: a database, simulated panel servers with their
//! accounts as services of one client, the real plugins, and a running sync engine. What differs
//! per panel (starting a simulator, its accounts, its call counters, what an account must hold)
//! is the [`Panel`] trait, implemented by each panel's test module for its simulator's handle
//! (`sync.rs`: panel-sim, cPanel & WHM; `plesk.rs`: plesk-sim). The flows both panels share run
//! here once, parametric in the panel.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use panelink::adapter::{LogLevel, Secret};
use panelink::model::{
    ApplicationId, ClientStatus, DisplayName, Email, Hostname, LinkSetting, Name, Port, Scope,
    ServiceStatus, Username,
};
use panelink::runtime::{Plugins, Runtime};
use panelink::storage::{Actor, Db, NewClient, NewServer, NewService};
use panelink::sync::{SyncConfig, SyncEngine};
use panelink::sync_port::{Change, ChangeId, Events, SyncState, SyncSummary};
use tokio::sync::oneshot;

use crate::harness::{Backend, TestDb, database};

pub const PUBLIC_URL: &str = "https://billing.example";

/// One panel's simulator, as the fleet drives it.
pub trait Panel: Sized + Send + Sync + 'static {
    /// The application whose plugin provisions this panel.
    const APP: &'static str;
    /// The plugins the fleet loads (and whose applications it creates).
    const PLUGINS: &'static [&'static str];
    /// Server `i` is named `{SERVER_NAME}{i}`.
    const SERVER_NAME: &'static str;

    /// A simulated server with `accounts` sample accounts (`user1…`), whose hangs last 10 s.
    fn start(accounts: usize) -> impl Future<Output = Self> + Send;
    fn addr(&self) -> SocketAddr;
    /// The server's API user and secret, as stored in its server record.
    fn credentials(&self) -> (String, String);
    /// Its accounts: (username, domain).
    fn accounts(&self) -> Vec<(String, String)>;
    /// Panel calls of one function (or operation) since the last reset.
    fn calls(&self, function: &str) -> u64;
    fn reset_counters(&self);
    fn set_request_latency(&self, latency: Duration);
    fn set_down(&self, down: bool);
    /// `user` holds exactly Panelink's `expected` (scope, label) in this order (none at all when
    /// `expected` is empty).
    fn assert_links(&self, user: &str, expected: &[(&str, &str)]);
}

/// A fleet: simulated servers of one panel, their services in storage, and a running sync engine.
pub struct Fleet<P: Panel> {
    pub db: Db,
    pub test_db: TestDb,
    pub runtime: Runtime,
    pub plugins: Arc<Plugins>,
    pub sims: Vec<P>,
    pub server_ids: Vec<i64>,
    /// service id → (server index, username, status)
    pub services: BTreeMap<i64, (usize, String, ServiceStatus)>,
    pub engine: Option<Running>,
}

pub struct Running {
    pub engine: Arc<SyncEngine>,
    pub stop: oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<()>,
}

/// The hosts `Fleet::start_two_hosts` started: `a` runs beside the fleet's own engine `b`.
pub struct OtherHost {
    pub a: Running,
    pub b: Arc<SyncEngine>,
}

impl OtherHost {
    /// Stop host A through its shutdown future and wait for it.
    pub async fn stop_a(self) {
        let _ = self.a.stop.send(());
        self.a.task.await.expect("host A's engine task");
    }
}

/// Short leases, polls and retries, so that the tests run fast.
pub fn config() -> SyncConfig {
    SyncConfig {
        workers: 4,
        batch_accounts: 3,
        per_server_concurrency: 2,
        lease: Duration::from_secs(2),
        poll_interval: Duration::from_millis(50),
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        retry_window: Duration::from_secs(2),
        public_url: PUBLIC_URL.into(),
        client_area_url: format!("{PUBLIC_URL}/portal"),
        ..SyncConfig::default()
    }
}

/// The 14 default links as (scope, label).
pub fn defaults() -> Vec<(&'static str, &'static str)> {
    vec![
        ("clientarea:upgrade", "Upgrade/Downgrade"),
        (
            "clientarea:shopping_cart_domain_register",
            "Register New Domain",
        ),
        (
            "clientarea:shopping_cart_domain_transfer",
            "Transfer a Domain",
        ),
        ("clientarea:submit_ticket", "Open Ticket"),
        ("clientarea:tickets", "View Ticket History"),
        ("clientarea:announcements", "News & Announcements"),
        ("clientarea:downloads", "Download Resources"),
        ("clientarea:knowledgebase", "Search our Knowledgebase"),
        ("clientarea:network_status", "Check Network Status"),
        ("clientarea:profile", "Manage Profile"),
        ("clientarea:product_details", "View Billing Information"),
        ("clientarea:billing_info", "Manage Billing Information"),
        ("clientarea:emails", "View Email History"),
        ("clientarea:invoices", "View Invoice History"),
    ]
}

impl<P: Panel> Fleet<P> {
    /// `servers` simulated servers with `accounts` accounts each, every account a service of one
    /// client. Service statuses cycle through `statuses`.
    pub async fn new(
        backend: Backend,
        servers: usize,
        accounts: usize,
        statuses: &[ServiceStatus],
    ) -> Fleet<P> {
        let (db, test_db) = database(backend).await;
        let mut c = panelink_tests::runtime_config();
        c.http.request_timeout = Duration::from_secs(2);
        let runtime = Runtime::new(c).expect("runtime");
        let plugins = Arc::new(Plugins::new());
        for name in P::PLUGINS {
            plugins.activate(panelink_tests::load(&runtime, name).await);
        }
        for p in plugins.all() {
            db.ensure_application(p.id()).await.expect("application");
        }
        let actor = Actor::system();
        let client = db
            .create_client(
                &actor,
                &NewClient {
                    name: Name::parse("Acme").unwrap(),
                    email: Email::parse("owner@acme.example").unwrap(),
                    status: ClientStatus::Active,
                    allow_sso: true,
                },
            )
            .await
            .expect("client");
        let mut fleet = Fleet {
            db,
            test_db,
            runtime,
            plugins,
            sims: Vec::new(),
            server_ids: Vec::new(),
            services: BTreeMap::new(),
            engine: None,
        };
        let mut n = 0;
        for i in 0..servers {
            let sim = P::start(accounts).await;
            let (user, secret) = sim.credentials();
            let server = fleet
                .db
                .create_server(
                    &actor,
                    &NewServer {
                        name: Name::parse(&format!("{}{i}", P::SERVER_NAME)).unwrap(),
                        module: ApplicationId::parse(P::APP).unwrap(),
                        hostname: Hostname::parse("127.0.0.1").unwrap(),
                        port: Port::new(i64::from(sim.addr().port())).unwrap(),
                        secure: false,
                        username: Username::parse(&user).unwrap(),
                        api_token: Secret::new(secret),
                        enabled: true,
                    },
                    |_| None,
                )
                .await
                .expect("server")
                .0;
            for (user, domain) in sim.accounts() {
                let status = statuses[n % statuses.len()];
                n += 1;
                let service = fleet
                    .db
                    .create_service(
                        &actor,
                        &NewService {
                            client_id: client.id,
                            server_id: server.id,
                            username: Username::parse(&user).unwrap(),
                            domain: Hostname::parse(&domain).unwrap(),
                            status,
                        },
                        |_| None,
                    )
                    .await
                    .expect("service")
                    .0;
                fleet.services.insert(service.id, (i, user, status));
            }
            fleet.sims.push(sim);
            fleet.server_ids.push(server.id);
        }
        fleet
    }

    pub fn start(&mut self, config: SyncConfig) -> Arc<SyncEngine> {
        self.start_on(self.db.clone(), config)
    }

    /// Start an engine on its own connection pool, as another host would.
    pub fn start_on(&mut self, db: Db, config: SyncConfig) -> Arc<SyncEngine> {
        let engine = Arc::new(SyncEngine::new(
            db,
            self.plugins.clone(),
            Events::new(),
            config,
        ));
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(engine.clone().run(async move {
            let _ = rx.await;
        }));
        self.engine = Some(Running {
            engine: engine.clone(),
            stop,
            task,
        });
        engine
    }

    /// Two hosts on one PostgreSQL database, configured by `host(name)`: "host-a" on a pool of
    /// its own, handed back, and "host-b", the fleet's engine (the one the fleet's requests go
    /// through). Returns once both count among the live hosts.
    pub async fn start_two_hosts(&mut self, host: impl Fn(&str) -> SyncConfig) -> OtherHost {
        let other_db = crate::harness::connect(&self.test_db).await;
        self.start_on(other_db, host("host-a"));
        let a = self.engine.take().expect("host A running");
        let b = self.start(host("host-b"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let live = self.db.live_hosts(0).await.unwrap();
            if live == 2 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "live hosts: {live}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        OtherHost { a, b }
    }

    pub fn engine(&self) -> &Arc<SyncEngine> {
        &self.engine.as_ref().expect("engine running").engine
    }

    /// Stop the engine through its shutdown future and wait for it.
    pub async fn stop(&mut self) {
        if let Some(running) = self.engine.take() {
            let _ = running.stop.send(());
            running.task.await.expect("engine task");
        }
    }

    /// Hand a queued change to the engine; the one sync it causes.
    pub async fn request(&self, change: ChangeId) -> SyncSummary {
        let mut syncs = self.engine().request(change).await.expect("request");
        assert_eq!(syncs.len(), 1, "{syncs:?}");
        syncs.remove(0)
    }

    /// An admin's repair request.
    pub async fn repair(&self) -> SyncSummary {
        let change = Change::RepairRequested {
            application: P::APP.into(),
        };
        let queued = self.db.enqueue_change(&change, None).await.expect("queue");
        self.request(queued).await
    }

    pub async fn set_enabled(&self, enabled: bool) -> SyncSummary {
        let (_, change) = self
            .db
            .set_application_enabled(&Actor::system(), P::APP, enabled)
            .await
            .expect("enable");
        self.request(change).await
    }

    /// Save the links as (scope, label, enabled).
    pub async fn configure(&self, links: &[(&str, &str, bool)]) -> SyncSummary {
        let settings: Vec<LinkSetting> = links
            .iter()
            .map(|(scope, name, enabled)| LinkSetting {
                scope: Scope::parse(scope).unwrap(),
                display_name: DisplayName::parse(name).unwrap(),
                enabled: *enabled,
            })
            .collect();
        let change = self
            .db
            .save_link_settings(&Actor::system(), P::APP, &settings)
            .await
            .expect("save links");
        self.request(change).await
    }

    /// Wait (bounded) until a sync has finished.
    pub async fn finished(&self, id: i64) -> SyncSummary {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let s = self
                .db
                .sync_summary(id)
                .await
                .expect("summary")
                .expect("sync");
            if s.finished_at.is_some() {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sync {id} did not finish: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait (bounded) until no worker holds a server's lease: a worker lets go of its server a
    /// moment after the sync it worked reports finished, and until then a drift check skips
    /// that server. Takes and gives back each lease under an owner of the test's own.
    pub async fn servers_let_go(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for &server_id in &self.server_ids {
            loop {
                let until = panelink::storage::now_ms() + 60_000;
                if self
                    .db
                    .take_lease(server_id, "test-probe", until)
                    .await
                    .unwrap()
                {
                    self.db
                        .release_lease(server_id, "test-probe")
                        .await
                        .unwrap();
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "server {server_id}'s lease was never given back"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    pub fn reset_counters(&self) {
        for sim in &self.sims {
            sim.reset_counters();
        }
    }

    /// Panel calls of one function, over all servers, since the last reset. A sync whose unit
    /// needed a retry (the test machine was too slow for the request timeout) repeats a batch,
    /// so the counts are only compared for syncs that needed none.
    pub fn calls(&self, function: &str) -> u64 {
        self.sims.iter().map(|s| s.calls(function)).sum()
    }

    /// Every account has exactly `expected` (scope, label) in this order, or nothing at all when
    /// its service does not get links.
    pub fn assert_exact(&self, expected: &[(&str, &str)]) {
        for (i, user, status) in self.services.values() {
            let expected = if status.gets_links() { expected } else { &[] };
            self.sims[*i].assert_links(user, expected);
        }
    }
}

/// Stopped part-way through a sync, a new engine (another node id) resumes it: the stopped one
/// gave its leases back, and the panels end up exact.
pub async fn stopped_mid_sync_resumes_exactly<P: Panel>(backend: Backend, accounts: usize) {
    let mut fleet = Fleet::<P>::new(backend, 2, accounts, &[ServiceStatus::Active]).await;
    for sim in &fleet.sims {
        sim.set_request_latency(Duration::from_millis(30));
    }
    let mut c = config();
    c.per_server_concurrency = 1;
    c.batch_accounts = 1;
    fleet.start(c.clone());
    let s = fleet.set_enabled(true).await;
    // Wait until the sync is part-way, then stop the engine through its shutdown future.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = fleet.db.sync_summary(s.id).await.unwrap().unwrap();
        if now.done >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fleet.stop().await;
    let stopped = fleet.db.sync_summary(s.id).await.unwrap().unwrap();
    assert!(
        stopped.finished_at.is_none(),
        "finished before the stop: {stopped:?}"
    );
    assert!(stopped.done < 2 * accounts as u64, "{stopped:?}");

    fleet.start(c);
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    fleet.assert_exact(&defaults());
    fleet.stop().await;
}

/// Three servers: `faults` makes servers 0 and 1 flaky, server 2 is down for good. The sync
/// fails for server 2 alone, with its error and a warning naming it; the two live servers end
/// up exact. The fleet is handed back, its engine still running, for the panel's own checks.
pub async fn faults_converge_and_a_dead_server_fails_alone<P: Panel>(
    backend: Backend,
    accounts: usize,
    config: SyncConfig,
    faults: impl FnOnce(&[P]),
) -> Fleet<P> {
    let mut fleet = Fleet::<P>::new(backend, 3, accounts, &[ServiceStatus::Active]).await;
    faults(&fleet.sims);
    fleet.sims[2].set_down(true);
    fleet.start(config);
    let s = fleet.set_enabled(true).await;
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Failed, "{done:?}");
    let detail = fleet.db.sync_detail(s.id).await.unwrap().unwrap();
    let by_server: BTreeMap<i64, _> = detail.servers.iter().map(|p| (p.server_id, p)).collect();
    assert_eq!(by_server[&fleet.server_ids[0]].state, SyncState::Completed);
    assert_eq!(by_server[&fleet.server_ids[1]].state, SyncState::Completed);
    let dead = by_server[&fleet.server_ids[2]];
    assert_eq!(dead.state, SyncState::Failed);
    assert!(
        dead.last_error.as_deref().is_some_and(|e| !e.is_empty()),
        "{dead:?}"
    );
    // The two live servers are exact; the dead one has nothing.
    fleet.services.retain(|_, (i, _, _)| *i != 2);
    fleet.assert_exact(&defaults());
    let log = fleet.db.log(P::APP).await.unwrap();
    let dead_name = format!("{}2: ", P::SERVER_NAME);
    assert!(
        log.iter()
            .any(|e| e.level == LogLevel::Warning && e.message.starts_with(&dead_name)),
        "{log:#?}"
    );
    fleet
}
