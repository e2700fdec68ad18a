//! The Plesk plugin, the real component in the real runtime and sync engine, against plesk-sim,
//! on SQLite and PostgreSQL: the end-to-end flows (enable, configure, disable, a stop mid-sync,
//! faults) end in exact button states, one customer's error never stops the others, and a server
//! too old for custom buttons is refused.

use std::sync::Arc;
use std::time::Duration;

use panelink::adapter::LogLevel;
use panelink::model::{Email, ServiceStatus};
use panelink::runtime::Plugins;
use panelink::storage::Actor;
use panelink::sync::SyncConfig;
use panelink::sync_port::{Events, SyncState};
use plesk_sim::{Button, ButtonProps, FaultKind, Owner, PleskConfig, PleskHandle, PleskSim};

use crate::fleet::{self, PUBLIC_URL, Panel, defaults};
use crate::harness::{Backend, NoSync, on_both};

const APP: &str = "plesk";

type Fleet = fleet::Fleet<PleskHandle>;

/// Plesk, simulated by plesk-sim, provisioned by the Plesk plugin; an account is a customer
/// (username = login), and calls are counted per XML API operation (`packet`: per request).
impl Panel for PleskHandle {
    const APP: &'static str = APP;
    const PLUGINS: &'static [&'static str] = &[APP];
    const SERVER_NAME: &'static str = "plesk";

    async fn start(customers: usize) -> PleskHandle {
        PleskSim::start(
            PleskConfig::new()
                .sample_customers(customers)
                .hang_for(Duration::from_secs(10)),
        )
        .await
        .expect("plesk-sim")
    }

    fn addr(&self) -> std::net::SocketAddr {
        PleskHandle::addr(self)
    }

    fn credentials(&self) -> (String, String) {
        self.admin()
    }

    fn accounts(&self) -> Vec<(String, String)> {
        self.customers()
            .into_iter()
            .map(|c| {
                let domain = format!("{}.example.test", c.login);
                (c.login, domain)
            })
            .collect()
    }

    fn calls(&self, operation: &str) -> u64 {
        self.counters().calls(operation)
    }

    fn reset_counters(&self) {
        PleskHandle::reset_counters(self)
    }

    fn set_request_latency(&self, latency: Duration) {
        PleskHandle::set_request_latency(self, latency)
    }

    fn set_down(&self, down: bool) {
        PleskHandle::set_down(self, down)
    }

    /// The customer has exactly `expected` (scope, label) as buttons of ours, in display order,
    /// each a static link carrying that service's handle.
    fn assert_links(&self, login: &str, expected: &[(&str, &str)]) {
        let customer = self.customer_id(login).expect("customer");
        let mut buttons = ours(self, login);
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

/// Panelink's buttons of one customer, by id (its marker in the context help).
fn ours(sim: &PleskHandle, login: &str) -> Vec<Button> {
    sim.buttons_of(login)
        .into_iter()
        .filter(|b| {
            b.props
                .conhelp
                .as_deref()
                .is_some_and(|h| h.ends_with(')') && h.contains("(PANELINK_"))
        })
        .collect()
}

fn config() -> SyncConfig {
    SyncConfig {
        retry_window: Duration::from_secs(3),
        ..fleet::config()
    }
}

/// `servers` plesk-sim servers with customers `user1…user<customers>`; every customer an
/// active service of one client.
async fn new_fleet(backend: Backend, servers: usize, customers: usize) -> Fleet {
    Fleet::new(backend, servers, customers, &[ServiceStatus::Active]).await
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
    let mut fleet = new_fleet(backend, 2, 5).await;
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
    fleet.reset_counters();
    let settings: Vec<_> = links.iter().map(|&(s, l)| (s, l, true)).collect();
    let s = fleet.configure(&settings).await;
    fleet.finished(s.id).await;
    fleet.assert_exact(&links);
    assert_eq!(fleet.calls("ui/create-custombutton"), 10);
    assert_eq!(fleet.calls("ui/delete-custombutton"), 10);

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
    let mut fleet = new_fleet(backend, 1, 4).await;
    let (&gone, (_, login, _)) = fleet.services.iter().next().unwrap();
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
    let mut fleet = new_fleet(backend, 2, 2).await;
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
    fleet.services.retain(|_, (i, _, _)| *i == 0);
    fleet.assert_exact(&defaults());
    fleet.stop().await;
}

async fn stopped_mid_sync_resumes_exactly(backend: Backend) {
    fleet::stopped_mid_sync_resumes_exactly::<PleskHandle>(backend, 8).await;
}

async fn faults_converge_and_a_dead_server_fails_alone(backend: Backend) {
    // A 500 after the work left buttons the record does not know: the retry replaced them, so
    // each customer still has exactly one of each.
    let mut fleet = fleet::faults_converge_and_a_dead_server_fails_alone::<PleskHandle>(
        backend,
        4,
        config(),
        |sims| {
            sims[0].set_fault_kinds([FaultKind::Http500, FaultKind::Http500AfterWork]);
            sims[0].set_fault_rate(0.25);
            sims[1].inject_faults(FaultKind::DropConnection, 2);
        },
    )
    .await;
    fleet.stop().await;
}

async fn static_links_sign_in_only_when_the_admin_allows_it(backend: Backend) {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use panelink::api::{self, AppState, Limits};
    use panelink::catalog::Catalog;
    use tower::ServiceExt;

    let mut fleet = new_fleet(backend, 1, 2).await;
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
    let invoices = ours(&fleet.sims[0], "user1")
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
        .find(|(_, (_, login, _))| login == "user1")
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
