//! The Plesk plugin, the real component in the real runtime and sync engine, against plesk-sim,
//! on SQLite and PostgreSQL: the end-to-end flows (enable, configure, disable, a stop mid-sync,
//! faults) end in exact button states, one customer's error never stops the others, and a server
//! too old for custom buttons is refused.

use std::collections::BTreeMap;
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
use panelink::sync_port::{ChangeId, Events, SyncState, SyncSummary};
use plesk_sim::{Button, ButtonProps, FaultKind, Owner, PleskConfig, PleskHandle, PleskSim};
use tokio::sync::oneshot;

use crate::harness::{Backend, NoSync, TestDb, database, on_both};

const PUBLIC_URL: &str = "https://billing.example";
const APP: &str = "plesk";

struct Fleet {
    db: Db,
    _test_db: TestDb,
    runtime: Runtime,
    plugins: Arc<Plugins>,
    sims: Vec<PleskHandle>,
    server_ids: Vec<i64>,
    /// service id → (server index, customer login)
    services: BTreeMap<i64, (usize, String)>,
    engine: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    engine_handle: Option<Arc<SyncEngine>>,
}

fn config() -> SyncConfig {
    SyncConfig {
        workers: 4,
        batch_accounts: 3,
        per_server_concurrency: 2,
        lease: Duration::from_secs(2),
        poll_interval: Duration::from_millis(50),
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        retry_window: Duration::from_secs(3),
        public_url: PUBLIC_URL.into(),
        client_area_url: format!("{PUBLIC_URL}/portal"),
        ..SyncConfig::default()
    }
}

impl Fleet {
    /// `servers` plesk-sim servers with customers `user1…user<customers>`; every customer a
    /// service (username = login) of one client.
    async fn new(backend: Backend, servers: usize, customers: usize) -> Fleet {
        let (db, test_db) = database(backend).await;
        let mut c = panelink_tests::runtime_config();
        c.http.request_timeout = Duration::from_secs(2);
        let runtime = Runtime::new(c).expect("runtime");
        let plugins = Arc::new(Plugins::new());
        plugins.activate(panelink_tests::load(&runtime, APP).await);
        db.ensure_application(APP).await.expect("application");
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
            _test_db: test_db,
            runtime,
            plugins,
            sims: Vec::new(),
            server_ids: Vec::new(),
            services: BTreeMap::new(),
            engine: None,
            engine_handle: None,
        };
        for i in 0..servers {
            let sim = PleskSim::start(
                PleskConfig::new()
                    .sample_customers(customers)
                    .hang_for(Duration::from_secs(10)),
            )
            .await
            .expect("plesk-sim");
            let (login, password) = sim.admin();
            let server = fleet
                .db
                .create_server(
                    &actor,
                    &NewServer {
                        name: Name::parse(&format!("plesk{i}")).unwrap(),
                        module: ApplicationId::parse(APP).unwrap(),
                        hostname: Hostname::parse("127.0.0.1").unwrap(),
                        port: Port::new(i64::from(sim.addr().port())).unwrap(),
                        secure: false,
                        username: Username::parse(&login).unwrap(),
                        api_token: Secret::new(password),
                        enabled: true,
                    },
                    |_| None,
                )
                .await
                .expect("server")
                .0;
            for customer in sim.customers() {
                let domain = format!("{}.example.test", customer.login);
                let service = fleet
                    .db
                    .create_service(
                        &actor,
                        &NewService {
                            client_id: client.id,
                            server_id: server.id,
                            username: Username::parse(&customer.login).unwrap(),
                            domain: Hostname::parse(&domain).unwrap(),
                            status: ServiceStatus::Active,
                        },
                        |_| None,
                    )
                    .await
                    .expect("service")
                    .0;
                fleet.services.insert(service.id, (i, customer.login));
            }
            fleet.sims.push(sim);
            fleet.server_ids.push(server.id);
        }
        fleet
    }

    fn start(&mut self, config: SyncConfig) {
        let engine = Arc::new(SyncEngine::new(
            self.db.clone(),
            self.plugins.clone(),
            Events::new(),
            config,
        ));
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(engine.clone().run(async move {
            let _ = rx.await;
        }));
        self.engine = Some((stop, task));
        self.engine_handle = Some(engine);
    }

    async fn stop(&mut self) {
        if let Some((stop, task)) = self.engine.take() {
            let _ = stop.send(());
            task.await.expect("engine task");
        }
    }

    async fn request(&self, change: ChangeId) -> SyncSummary {
        let engine = self.engine_handle.as_ref().expect("engine");
        let mut syncs = engine.request(change).await.expect("request");
        assert_eq!(syncs.len(), 1, "{syncs:?}");
        syncs.remove(0)
    }

    async fn set_enabled(&self, enabled: bool) -> SyncSummary {
        let (_, change) = self
            .db
            .set_application_enabled(&Actor::system(), APP, enabled)
            .await
            .expect("enable");
        self.request(change).await
    }

    async fn configure(&self, links: &[(&str, &str)]) -> SyncSummary {
        let settings: Vec<LinkSetting> = links
            .iter()
            .map(|(scope, name)| LinkSetting {
                scope: Scope::parse(scope).unwrap(),
                display_name: DisplayName::parse(name).unwrap(),
                enabled: true,
            })
            .collect();
        let change = self
            .db
            .save_link_settings(&Actor::system(), APP, &settings)
            .await
            .expect("save links");
        self.request(change).await
    }

    async fn finished(&self, id: i64) -> SyncSummary {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.db.sync_summary(id).await.unwrap().unwrap();
            if s.finished_at.is_some() {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "sync {id}: {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Panelink's buttons of one customer, by id (its marker in the context help).
    fn ours(&self, i: usize, login: &str) -> Vec<Button> {
        self.sims[i]
            .buttons_of(login)
            .into_iter()
            .filter(|b| {
                b.props
                    .conhelp
                    .as_deref()
                    .is_some_and(|h| h.ends_with(')') && h.contains("(PANELINK_"))
            })
            .collect()
    }

    /// Every service's customer has exactly `expected` (scope, label) as buttons of its own,
    /// in display order, each a static link carrying that service's handle.
    fn assert_exact(&self, expected: &[(&str, &str)]) {
        for (i, login) in self.services.values() {
            let customer = self.sims[*i].customer_id(login).expect("customer");
            let mut buttons = self.ours(*i, login);
            buttons.sort_by_key(|b| b.props.sort_key);
            let have: Vec<(String, String)> = buttons
                .iter()
                .map(|b| {
                    let scope = b
                        .props
                        .url
                        .split_once("?scope=")
                        .map(|(_, s)| s.replace("%3A", ":"))
                        .unwrap_or_default();
                    (scope, b.props.text.clone())
                })
                .collect();
            let want: Vec<(String, String)> = expected
                .iter()
                .map(|(s, l)| ((*s).to_owned(), (*l).to_owned()))
                .collect();
            assert_eq!(have, want, "{login}");
            let handles: Vec<&str> = buttons
                .iter()
                .map(|b| {
                    b.props
                        .url
                        .strip_prefix(&format!("{PUBLIC_URL}/sso/link/"))
                        .and_then(|rest| rest.split('?').next())
                        .expect("a static link")
                })
                .collect();
            assert!(
                handles.windows(2).all(|w| w[0] == w[1]),
                "{login}: {handles:?}"
            );
            for (pos, b) in buttons.iter().enumerate() {
                assert_eq!(b.owner, Owner::Customer(customer), "{login}");
                assert_eq!(b.props.sort_key, Some(pos as i64 + 1), "{login}");
                assert_eq!(b.props.public, Some(false), "{login}");
                assert_eq!(b.props.place, "client", "{login}");
            }
        }
    }
}

fn defaults() -> Vec<(&'static str, &'static str)> {
    panelink_whm::links::LINKS
        .iter()
        .map(|l| (l.scope, l.default_label))
        .collect()
}

fn foreign() -> ButtonProps {
    ButtonProps {
        conhelp: Some("My own".into()),
        place: "client".into(),
        url: "https://example.com/".into(),
        text: "Mine".into(),
        ..ButtonProps::default()
    }
}

on_both!(
    static_links_sign_in_only_when_the_admin_allows_it,
    enable_configure_disable_give_exact_buttons,
    an_unknown_customer_is_that_accounts_warning,
    a_server_too_old_for_custom_buttons_is_refused,
    stopped_mid_sync_resumes_exactly,
    faults_converge_and_a_dead_server_fails_alone,
);

async fn enable_configure_disable_give_exact_buttons(backend: Backend) {
    let mut fleet = Fleet::new(backend, 2, 5).await;
    let user1 = fleet.sims[0].customer_id("user1").unwrap();
    let mine = fleet.sims[0].add_button(Owner::Customer(user1), foreign());
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    assert_eq!(done.total, 10);
    fleet.assert_exact(&defaults());
    // Three packets per batch of three accounts (two batches of five customers per server).
    assert_eq!(fleet.sims[0].counters().calls("packet") - 1, 2 * 3);

    // Rename one link: that button is deleted and created again on every account, nothing else.
    let mut links = defaults();
    links[13].1 = "Invoices";
    for sim in &fleet.sims {
        sim.reset_counters();
    }
    let s = fleet.configure(&links).await;
    fleet.finished(s.id).await;
    fleet.assert_exact(&links);
    let calls = |op: &str| {
        fleet
            .sims
            .iter()
            .map(|s| s.counters().calls(op))
            .sum::<u64>()
    };
    assert_eq!(calls("ui/create-custombutton"), 10);
    assert_eq!(calls("ui/delete-custombutton"), 10);

    // Disable: every button of ours goes, the customer's own stays.
    let s = fleet.set_enabled(false).await;
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    fleet.assert_exact(&[]);
    let left = fleet.sims[0].buttons_of("user1");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, mine);
    fleet.stop().await;
}

async fn an_unknown_customer_is_that_accounts_warning(backend: Backend) {
    let mut fleet = Fleet::new(backend, 1, 4).await;
    let (&gone, (_, login)) = fleet.services.iter().next().unwrap();
    let login = login.clone();
    assert!(fleet.sims[0].remove_customer(&login));
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::CompletedWithWarnings, "{done:?}");
    let warnings: Vec<_> = fleet
        .db
        .log(APP)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.level == LogLevel::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].message, "customer does not exist");
    assert_eq!(warnings[0].service_id, Some(gone));
    fleet.services.remove(&gone);
    fleet.assert_exact(&defaults());
    fleet.stop().await;
}

async fn a_server_too_old_for_custom_buttons_is_refused(backend: Backend) {
    let mut fleet = Fleet::new(backend, 2, 2).await;
    fleet.sims[1].set_version(plesk_sim::OLD_VERSION, ["1.6.3.4", "1.6.3.0"]);
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    fleet.finished(s.id).await;
    let log = fleet.db.log(APP).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.level == LogLevel::Info && e.message.contains("11.0")),
        "{log:?}"
    );
    assert!(fleet.sims[1].buttons().is_empty());
    assert_eq!(fleet.sims[1].counters().calls("ui/create-custombutton"), 0);
    fleet.services.retain(|_, (i, _)| *i == 0);
    fleet.assert_exact(&defaults());
    fleet.stop().await;
}

async fn stopped_mid_sync_resumes_exactly(backend: Backend) {
    let mut fleet = Fleet::new(backend, 2, 8).await;
    for sim in &fleet.sims {
        sim.set_request_latency(Duration::from_millis(30));
    }
    let mut c = config();
    c.per_server_concurrency = 1;
    c.batch_accounts = 1;
    fleet.start(c.clone());
    let s = fleet.set_enabled(true).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fleet.db.sync_summary(s.id).await.unwrap().unwrap().done < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fleet.stop().await;
    let stopped = fleet.db.sync_summary(s.id).await.unwrap().unwrap();
    assert!(stopped.finished_at.is_none(), "{stopped:?}");
    fleet.start(c);
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    fleet.assert_exact(&defaults());
    fleet.stop().await;
}

async fn faults_converge_and_a_dead_server_fails_alone(backend: Backend) {
    let mut fleet = Fleet::new(backend, 3, 4).await;
    fleet.sims[0].set_fault_kinds([FaultKind::Http500, FaultKind::Http500AfterWork]);
    fleet.sims[0].set_fault_rate(0.25);
    fleet.sims[1].inject_faults(FaultKind::DropConnection, 2);
    fleet.sims[2].set_down(true);
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Failed, "{done:?}");
    let detail = fleet.db.sync_detail(s.id).await.unwrap().unwrap();
    let by_server: BTreeMap<i64, _> = detail.servers.iter().map(|p| (p.server_id, p)).collect();
    assert_eq!(by_server[&fleet.server_ids[0]].state, SyncState::Completed);
    assert_eq!(by_server[&fleet.server_ids[1]].state, SyncState::Completed);
    assert_eq!(by_server[&fleet.server_ids[2]].state, SyncState::Failed);
    fleet.services.retain(|_, (i, _)| *i != 2);
    // A 500 after the work left buttons the record does not know: the retry replaced them, so
    // each customer still has exactly one of each.
    fleet.assert_exact(&defaults());
    fleet.stop().await;
}

async fn static_links_sign_in_only_when_the_admin_allows_it(backend: Backend) {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use panelink::api::{self, AppState, Limits};
    use panelink::catalog::Catalog;
    use tower::ServiceExt;

    let mut fleet = Fleet::new(backend, 1, 2).await;
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    fleet.finished(s.id).await;
    fleet.stop().await;

    // The host's HTTP side on the same database, with the same plugin.
    let catalog = Arc::new(Catalog::new(
        fleet.runtime.clone(),
        Arc::new(Plugins::new()),
        fleet.db.clone(),
    ));
    catalog.adopt(&fleet.plugins.all()).await.expect("adopt");
    let state = AppState::new(
        fleet.db.clone(),
        catalog,
        Arc::new(NoSync),
        Events::new(),
        Limits::default(),
    );
    state.set_ready(true);
    let client_area = state.sso().client_area_url().to_owned();
    let public = state.sso().public_url().to_owned();
    let router = api::app(state);
    let (_, token) = fleet
        .db
        .create_admin(
            &Actor::cli(),
            &Email::parse("root@example.com").unwrap(),
            "Full Administrator",
        )
        .await
        .expect("admin");
    let send = |request: Request<Body>| {
        let router = router.clone();
        async move { router.oneshot(request).await.expect("answer") }
    };
    let get = |path: String| send(Request::get(path).body(Body::empty()).unwrap());
    let location = |r: &axum::response::Response| {
        r.headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let invoices = fleet
        .ours(0, "user1")
        .into_iter()
        .find(|b| b.props.text == "View Invoice History")
        .expect("the invoices button");
    let path = invoices
        .props
        .url
        .strip_prefix(PUBLIC_URL)
        .expect("a link to this host")
        .to_owned();

    // Off by default: the client area's own login, at the link's destination.
    let r = get(path.clone()).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        location(&r),
        format!("{client_area}/clientarea.php?action=invoices")
    );
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
    assert!(r.headers().get(header::SET_COOKIE).is_none());

    // The admin turns static sign-in on for the application.
    let patch = Request::patch("/api/v1/applications/plesk")
        .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"static_sign_in": true}"#))
        .unwrap();
    let r = send(patch).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    let view: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(view["static_sign_in"], true);
    assert_eq!(view["sign_in"], "static-link");
    assert_eq!(view["enabled"], true);

    // Now the link signs in: a one-time token, redeemed as the token endpoint's are.
    let r = get(path.clone()).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let redeem = location(&r);
    assert!(
        redeem.starts_with(&format!("{public}/oauth/sso?access_token=")),
        "{redeem}"
    );
    assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
    let r = get(redeem.strip_prefix(&public).unwrap().to_owned()).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(r.headers().get(header::SET_COOKIE).is_some());
    assert_eq!(
        location(&r),
        format!("{client_area}/clientarea.php?action=invoices")
    );

    // A forged handle, another's scope syntax or none: the login, never a token.
    let (prefix, query) = path.split_once('?').unwrap();
    let last = prefix.chars().last().unwrap();
    let forged = format!(
        "{}{}?{query}",
        &prefix[..prefix.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    for bad in [forged, format!("{prefix}?scope=nope"), prefix.to_owned()] {
        let r = get(bad.clone()).await;
        assert_eq!(r.status(), StatusCode::FOUND, "{bad}");
        assert!(!location(&r).contains("access_token"), "{bad}");
    }

    // Rotating the service's credential retires the handle at once.
    let (service_id, _) = fleet
        .services
        .iter()
        .find(|(_, (_, login))| login == "user1")
        .unwrap();
    fleet
        .db
        .rotate_live_credential(&Actor::system(), *service_id)
        .await
        .expect("rotate");
    let r = get(path).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(!location(&r).contains("access_token"), "{}", location(&r));
}
