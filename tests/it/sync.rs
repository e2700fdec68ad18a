//! The sync engine against panel-sim, with the real plugins, on SQLite and PostgreSQL: exact
//! final states, minimal panel calls, crash and restart, two hosts, faults.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use panel_sim::{FaultKind, PanelSim, SimConfig, SimHandle};
use panelink::model::{Email, ServiceStatus};
use panelink::storage::{Actor, ServicePatch};
use panelink::sync::SyncConfig;
use panelink::sync_port::{Change, ChangeId, Event, Events, SyncKind, SyncState, SyncSummary};

use crate::fleet::{self, PUBLIC_URL, Panel, config, defaults};
use crate::harness::{Backend, on_both};

type Fleet = fleet::Fleet<SimHandle>;

/// cPanel & WHM, simulated by panel-sim, provisioned by the cPanel plugin (the WP Squared one
/// is loaded too, with no server).
impl Panel for SimHandle {
    const APP: &'static str = "cpanel";
    const PLUGINS: &'static [&'static str] = &["cpanel", "wpsquared"];
    const SERVER_NAME: &'static str = "sim";

    async fn start(accounts: usize) -> SimHandle {
        PanelSim::start(
            SimConfig::new()
                .sample_accounts(accounts)
                .hang_for(Duration::from_secs(10)),
        )
        .await
        .expect("panel-sim")
    }

    fn addr(&self) -> std::net::SocketAddr {
        SimHandle::addr(self)
    }

    fn credentials(&self) -> (String, String) {
        (self.api_user(), self.api_token())
    }

    fn accounts(&self) -> Vec<(String, String)> {
        SimHandle::accounts(self).into_iter().collect()
    }

    fn calls(&self, function: &str) -> u64 {
        SimHandle::calls(self, function)
    }

    fn reset_counters(&self) {
        SimHandle::reset_counters(self)
    }

    fn set_request_latency(&self, latency: Duration) {
        SimHandle::set_request_latency(self, latency)
    }

    fn set_down(&self, down: bool) {
        SimHandle::set_down(self, down)
    }

    /// One integration group and exactly the expected links, in this order, each pointing at
    /// the client area with its placeholders filled in; no group and no link when none expected.
    fn assert_links(&self, user: &str, expected: &[(&str, &str)]) {
        let links = self.links(user);
        let groups = self.groups(user);
        if expected.is_empty() {
            assert!(links.is_empty(), "{user} has links {links:?}");
            assert!(groups.is_empty(), "{user} has a group");
            return;
        }
        assert_eq!(groups.len(), 1, "{user}: groups {groups:?}");
        let want: Vec<String> = expected
            .iter()
            .map(|(s, _)| format!("PANELINK_{}", s.replace(':', "_")))
            .collect();
        let mut have: Vec<&String> = links.keys().collect();
        have.sort();
        let mut want_sorted: Vec<&String> = want.iter().collect();
        want_sorted.sort();
        assert_eq!(have, want_sorted, "{user}: links");
        for (pos, ((scope, label), app)) in expected.iter().zip(&want).enumerate() {
            let link = &links[app];
            assert_eq!(link.get("label"), Some(*label), "{user} {scope}");
            assert_eq!(
                link.get("order"),
                Some((pos + 1).to_string().as_str()),
                "{user} {scope}"
            );
            assert!(
                link.get("url")
                    .is_some_and(|u| u.starts_with(&format!("{PUBLIC_URL}/portal/"))),
                "{user} {scope}: {:?}",
                link.get("url")
            );
            assert!(
                link.get("url").is_some_and(|u| !u.contains("{service_id}")),
                "{user} {scope}: {:?}",
                link.get("url")
            );
        }
    }
}

/// Accounts whose service gets links.
fn accounts_with_links(fleet: &Fleet) -> usize {
    fleet
        .services
        .values()
        .filter(|(_, _, st)| st.gets_links())
        .count()
}

const ALL_STATUSES: &[ServiceStatus] = &[
    ServiceStatus::Active,
    ServiceStatus::Suspended,
    ServiceStatus::Pending,
    ServiceStatus::Terminated,
    ServiceStatus::Cancelled,
    ServiceStatus::Active,
];

on_both!(
    enable_gives_exactly_the_configured_links,
    changes_cost_exactly_the_difference,
    disable_removes_links_and_group_and_revokes_credentials,
    service_changes_follow_by_themselves,
    stopped_mid_sync_resumes_exactly,
    transient_faults_converge_and_a_dead_server_fails_alone,
    panel_errors_are_warnings_and_do_not_stop_the_rest,
    drift_is_found_and_repaired,
    drift_check_leaves_a_server_another_host_holds_alone,
    a_change_saved_before_a_crash_is_pushed_after_restart,
    a_steadily_flaky_panel_converges,
    a_failed_server_is_retried_by_itself,
    the_log_has_every_level_the_plugins_lines_and_each_warning_once,
    an_application_is_syncing_while_any_of_its_syncs_is_open,
    contract_0_2_plugins_leave_the_panel_state_of_0_1_with_icons_added,
    enabling_with_no_supported_server_leaves_links_off,
);

async fn enable_gives_exactly_the_configured_links(backend: Backend) {
    let mut fleet = Fleet::new(backend, 2, 6, ALL_STATUSES).await;
    fleet.start(config());
    let sync = fleet.set_enabled(true).await;
    assert!(matches!(sync.state, SyncState::Queued | SyncState::Running));
    let done = fleet.finished(sync.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    assert_eq!(done.done, done.total);
    assert_eq!(done.total as usize, accounts_with_links(&fleet));
    assert!(!fleet.db.application_syncing("cpanel").await.unwrap());
    fleet.assert_exact(&defaults());

    let log = fleet.db.log("cpanel").await.unwrap();
    assert_eq!(
        log.first().map(|e| e.message.as_str()),
        Some("Attempting to enable Application Links for cPanel")
    );
    assert_eq!(
        log.last().map(|e| e.message.as_str()),
        Some("Process completed")
    );
    let detail = fleet.db.sync_detail(sync.id).await.unwrap().unwrap();
    assert_eq!(detail.servers.len(), 2);
    assert!(
        detail
            .servers
            .iter()
            .all(|s| s.state == SyncState::Completed && s.done == s.total)
    );

    // Nothing changed: a repair costs no link calls at all.
    fleet.reset_counters();
    let repair = fleet.repair().await;
    fleet.finished(repair.id).await;
    assert_eq!(fleet.calls("create_integration_link"), 0);
    assert_eq!(fleet.calls("remove_integration_link"), 0);
    fleet.stop().await;
}

async fn changes_cost_exactly_the_difference(backend: Backend) {
    let mut fleet = Fleet::new(backend, 2, 4, &[ServiceStatus::Active]).await;
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    fleet.finished(s.id).await;
    let n = accounts_with_links(&fleet) as u64;
    let mut links = defaults();
    let as_settings = |links: &[(&'static str, &'static str)], hidden: &[&str]| {
        links
            .iter()
            .map(|(s, l)| (*s, *l, !hidden.contains(s)))
            .collect::<Vec<_>>()
    };

    // Rename one link: one create_integration_link per account.
    links[13].1 = "Invoices";
    fleet.reset_counters();
    let s = fleet.configure(&as_settings(&links, &[])).await;
    fleet.finished(s.id).await;
    assert_eq!(fleet.calls("create_integration_link"), n);
    assert_eq!(fleet.calls("remove_integration_link"), 0);
    assert_eq!(fleet.calls("create_integration_group"), 0);
    fleet.assert_exact(&links);

    // Swap two links: two per account.
    links.swap(0, 1);
    fleet.reset_counters();
    let s = fleet.configure(&as_settings(&links, &[])).await;
    fleet.finished(s.id).await;
    assert_eq!(fleet.calls("create_integration_link"), 2 * n);
    fleet.assert_exact(&links);

    // Disable the last link: one removal per account.
    fleet.reset_counters();
    let s = fleet
        .configure(&as_settings(&links, &["clientarea:invoices"]))
        .await;
    fleet.finished(s.id).await;
    assert_eq!(fleet.calls("remove_integration_link"), n);
    assert_eq!(fleet.calls("create_integration_link"), 0);
    fleet.assert_exact(&links[..13]);

    // Re-enable it: one creation per account.
    fleet.reset_counters();
    let s = fleet.configure(&as_settings(&links, &[])).await;
    fleet.finished(s.id).await;
    assert_eq!(fleet.calls("create_integration_link"), n);
    assert_eq!(fleet.calls("remove_integration_link"), 0);
    fleet.assert_exact(&links);
    fleet.stop().await;
}

async fn disable_removes_links_and_group_and_revokes_credentials(backend: Backend) {
    let mut fleet = Fleet::new(backend, 1, 4, &[ServiceStatus::Active]).await;
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    fleet.finished(s.id).await;
    let server = fleet.server_ids[0];
    assert_eq!(
        fleet.db.credentials_on_server(server).await.unwrap().len(),
        4
    );

    let s = fleet.set_enabled(false).await;
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    fleet.assert_exact(&[]);
    assert!(
        fleet
            .db
            .credentials_on_server(server)
            .await
            .unwrap()
            .is_empty()
    );
    let log = fleet.db.log("cpanel").await.unwrap();
    assert_eq!(
        log.first().map(|e| e.message.as_str()),
        Some("Attempting to disable Application Links for cPanel")
    );

    // Re-enabling mints fresh credentials and pushes everything again.
    let s = fleet.set_enabled(true).await;
    fleet.finished(s.id).await;
    fleet.assert_exact(&defaults());
    assert_eq!(
        fleet.db.credentials_on_server(server).await.unwrap().len(),
        4
    );
    fleet.stop().await;
}

async fn service_changes_follow_by_themselves(backend: Backend) {
    let mut fleet = Fleet::new(backend, 2, 3, &[ServiceStatus::Active]).await;
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    fleet.finished(s.id).await;
    let (&service_id, (i, user, _)) = fleet.services.iter().next().unwrap();
    let user = user.clone();
    let i = *i;

    // Terminate: its links go, its credential is revoked.
    let (_, change) = fleet
        .db
        .update_service(
            &Actor::system(),
            service_id,
            &ServicePatch {
                status: Some(ServiceStatus::Terminated),
                ..ServicePatch::default()
            },
            panelink::sync::service_updated,
        )
        .await
        .unwrap();
    fleet.reset_counters();
    let s = fleet
        .request(change.expect("a change its panel sees"))
        .await;
    assert_eq!(s.kind, SyncKind::Service);
    fleet.finished(s.id).await;
    fleet.services.get_mut(&service_id).unwrap().2 = ServiceStatus::Terminated;
    fleet.assert_exact(&defaults());
    assert!(fleet.sims[i].links(&user).is_empty());
    // Only that account was touched.
    assert_eq!(fleet.calls("remove_integration_link"), 14);
    assert_eq!(fleet.calls("create_integration_link"), 0);
    fleet.stop().await;
}

async fn stopped_mid_sync_resumes_exactly(backend: Backend) {
    fleet::stopped_mid_sync_resumes_exactly::<SimHandle>(backend, 12).await;
}

async fn transient_faults_converge_and_a_dead_server_fails_alone(backend: Backend) {
    // Server 0: 20% HTTP 500s and timeouts.
    let mut fleet = fleet::faults_converge_and_a_dead_server_fails_alone::<SimHandle>(
        backend,
        5,
        SyncConfig {
            retry_window: Duration::from_secs(5),
            ..config()
        },
        |sims| {
            sims[0].set_fault_kinds([FaultKind::Http500, FaultKind::Timeout]);
            sims[0].reseed(Some(7));
            sims[0].set_fault_rate(0.2);
        },
    )
    .await;
    assert!(fleet.sims[0].faults_injected() > 0);
    fleet.stop().await;
}

async fn panel_errors_are_warnings_and_do_not_stop_the_rest(backend: Backend) {
    let mut fleet = Fleet::new(backend, 1, 4, &[ServiceStatus::Active]).await;
    // The billing side knows an account the server does not.
    let (&gone, (_, user, _)) = fleet.services.iter().next().unwrap();
    let user = user.clone();
    assert!(fleet.sims[0].remove_account(&user));
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::CompletedWithWarnings, "{done:?}");
    let log = fleet.db.log("cpanel").await.unwrap();
    let warnings: Vec<_> = log
        .iter()
        .filter(|e| e.level == panelink::adapter::LogLevel::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        warnings[0].message,
        format!("You do not have a user named “{user}”.")
    );
    assert_eq!(warnings[0].service_id, Some(gone));
    assert_eq!(fleet.db.warning_count("cpanel").await.unwrap(), 1);
    fleet.services.remove(&gone);
    fleet.assert_exact(&defaults());
    fleet.stop().await;
}

/// Two hosts on one PostgreSQL: both take part, each server is worked by one at a time, and
/// when one dies mid-sync (its task aborted, leases left behind) the other finishes its work.
#[tokio::test]
async fn two_hosts_share_the_work_and_survive_one_dying() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let mut fleet = Fleet::new(backend, 4, 6, &[ServiceStatus::Active]).await;
    for sim in &fleet.sims {
        sim.set_request_latency(Duration::from_millis(20));
    }
    let mut c = config();
    c.workers = 2;
    c.batch_accounts = 1;
    c.per_server_concurrency = 1;
    let hosts = fleet
        .start_two_hosts(|name| SyncConfig {
            node_id: name.into(),
            ..c.clone()
        })
        .await;
    let (a, b) = (hosts.a.engine.clone(), hosts.b.clone());
    let s = fleet.set_enabled(true).await;
    // Let both work a little, then kill A without a clean stop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while a.batches_pushed() == 0 || b.batches_pushed() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both hosts should get work"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hosts.a.task.abort();
    let _ = hosts.a.task.await;
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    fleet.assert_exact(&defaults());
    // No account got its links twice over: every account's creations equal its link count,
    // except the at most one batch per server A was in when it died.
    let total: u64 = fleet.calls("create_integration_link");
    assert!((24 * 14..=24 * 14 + 4 * 14).contains(&total), "{total}");
    fleet.stop().await;
}

/// A batch whose panel answers slower than a lease lasts: the host working the server keeps
/// its lease renewed while the call runs, so the other host never takes the server over
/// mid-call and pushes the same batch again (each link is created exactly once).
#[tokio::test]
async fn a_call_longer_than_the_lease_keeps_the_server_with_its_host() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let mut fleet = Fleet::new(backend, 2, 2, &[ServiceStatus::Active]).await;
    // Every panel request takes more than three leases. (A lease of a second leaves the
    // renewals two thirds of a second of slack on a loaded machine.) The plugin waits for
    // them longer than the fleet's usual 2 s.
    let mut slow = panelink_tests::runtime_config();
    slow.http.request_timeout = Duration::from_secs(20);
    let runtime = panelink::runtime::Runtime::new(slow).expect("runtime");
    fleet
        .plugins
        .activate(panelink_tests::load(&runtime, "cpanel").await);
    for sim in &fleet.sims {
        sim.set_request_latency(Duration::from_millis(3500));
    }
    let host = |name: &str| SyncConfig {
        batch_accounts: 1,
        per_server_concurrency: 1,
        lease: Duration::from_secs(1),
        node_id: name.to_owned(),
        ..config()
    };
    let hosts = fleet.start_two_hosts(host).await;
    let s = fleet.set_enabled(true).await;
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    fleet.assert_exact(&defaults());
    assert_eq!(fleet.calls("create_integration_link"), 4 * 14);
    assert_eq!(
        hosts.a.engine.batches_pushed() + hosts.b.batches_pushed(),
        4
    );
    hosts.stop_a().await;
    fleet.stop().await;
}

#[tokio::test]
async fn work_queued_through_one_host_is_shared_with_the_other() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let mut fleet = Fleet::new(backend, 4, 6, &[ServiceStatus::Active]).await;
    for sim in &fleet.sims {
        sim.set_request_latency(Duration::from_millis(20));
    }
    // Idle hosts would look for work only every minute: host A can only learn of the work
    // host B queues by being told.
    let host = |name: &str| SyncConfig {
        batch_accounts: 1,
        per_server_concurrency: 1,
        poll_interval: Duration::from_secs(60),
        lease: Duration::from_secs(30),
        node_id: name.to_owned(),
        ..config()
    };
    // Both hosts are counted before the work is queued.
    let hosts = fleet.start_two_hosts(host).await;
    let (a, b) = (hosts.a.engine.clone(), hosts.b.clone());
    let mut a_events = a.events().subscribe();
    let s = fleet.set_enabled(true).await; // through B
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    fleet.assert_exact(&defaults());
    // Each host worked on its share of the four servers.
    assert!(
        a.batches_pushed() >= 6,
        "host A pushed {}",
        a.batches_pushed()
    );
    assert!(
        b.batches_pushed() >= 6,
        "host B pushed {}",
        b.batches_pushed()
    );
    assert_eq!(a.batches_pushed() + b.batches_pushed(), 24);
    // Host A's event stream carried the sync to its end, whichever host finished it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, a_events.recv()).await {
            Ok(Ok(Event::Sync(summary))) if summary.id == s.id && summary.finished_at.is_some() => {
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("host A's events: {e}"),
            Err(_) => panic!("host A never saw the sync finish"),
        }
    }
    hosts.stop_a().await;
    fleet.stop().await;
}

/// When work arrives, all of a host's workers wake at once and each looks for a server: however
/// their claims interleave, the host never holds more servers at once than its fair share (two
/// servers, two live hosts: one each), so the other host is not left idle. (Seen first in the
/// hot-swap test: the 16 workers of one host all read "none held yet" before any took a lease,
/// two took one each, and the other host never made a call.)
#[tokio::test]
async fn a_host_holds_no_more_than_its_share_of_the_servers() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let mut fleet = Fleet::new(backend, 2, 3, &[ServiceStatus::Active]).await;
    for sim in &fleet.sims {
        sim.set_request_latency(Duration::from_millis(150));
    }
    let host = |name: &str| SyncConfig {
        // As many workers as a host has by default.
        workers: SyncConfig::default().workers,
        batch_accounts: 1,
        per_server_concurrency: 1,
        poll_interval: Duration::from_secs(60),
        lease: Duration::from_secs(30),
        node_id: name.to_owned(),
        ..config()
    };
    let hosts = fleet.start_two_hosts(host).await;

    // The servers each host holds, sampled until the sync ends.
    let pool = sqlx::PgPool::connect(&fleet.test_db.url).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut most = BTreeMap::<String, i64>::new();
            while !stop.is_cancelled() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                let held: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT owner, COUNT(*) FROM server_leases WHERE until_ms >= $1 \
                     GROUP BY owner",
                )
                .bind(now)
                .fetch_all(&pool)
                .await
                .unwrap();
                for (owner, n) in held {
                    let top = most.entry(owner).or_default();
                    *top = (*top).max(n);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    let s = fleet.set_enabled(true).await; // through B
    let done = fleet.finished(s.id).await;
    stop.cancel();
    let most = watcher.await.unwrap();
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    fleet.assert_exact(&defaults());
    for (owner, n) in &most {
        assert!(
            *n <= 1,
            "{owner} held {n} of the 2 servers at once: {most:?}"
        );
    }
    hosts.stop_a().await;
    fleet.stop().await;
}

/// Someone removes one of `user`'s links on the panel through WHM, as an admin of the panel would.
async fn remove_link_behind_our_back(sim: &SimHandle, user: &str) {
    let before = sim.links(user).len();
    let answer: serde_json::Value = reqwest::Client::new()
        .post(sim.url("remove_integration_link"))
        .header("Authorization", sim.auth_header())
        .form(&[
            ("api.version", "1"),
            ("user", user),
            ("app", "PANELINK_clientarea_emails"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["metadata"]["result"], 1, "{answer}");
    assert_eq!(sim.links(user).len(), before - 1);
}

async fn drift_is_found_and_repaired(backend: Backend) {
    let mut fleet = Fleet::new(backend, 1, 3, &[ServiceStatus::Active]).await;
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    fleet.finished(s.id).await;
    // A server still leased by the worker that synced it would be skipped, not checked.
    fleet.servers_let_go().await;
    assert_eq!(fleet.engine().check_drift().await.unwrap(), 0);

    // Someone removes a link on the panel behind Panelink's back.
    let sim = &fleet.sims[0];
    let user = sim.accounts().keys().next().unwrap().clone();
    remove_link_behind_our_back(sim, &user).await;

    assert_eq!(fleet.engine().check_drift().await.unwrap(), 1);
    let repair = fleet.db.latest_sync("cpanel").await.unwrap().unwrap();
    assert_eq!(repair.kind, SyncKind::Repair);
    fleet.finished(repair.id).await;
    fleet.assert_exact(&defaults());
    fleet.stop().await;
}

async fn drift_check_leaves_a_server_another_host_holds_alone(backend: Backend) {
    let mut fleet = Fleet::new(backend, 1, 3, &[ServiceStatus::Active]).await;
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    fleet.finished(s.id).await;
    // The panel drifts: a link is removed behind Panelink's back.
    let sim = &fleet.sims[0];
    let user = sim.accounts().keys().next().unwrap().clone();
    remove_link_behind_our_back(sim, &user).await;
    let server_id = fleet.server_ids[0];
    let (groups, links) = fleet.db.recorded_state(server_id, "cpanel").await.unwrap();

    // Another host holds the server's lease (it is syncing it): the drift check neither asks
    // the panel nor touches the record, and schedules nothing.
    fleet.servers_let_go().await;
    let until = panelink::storage::now_ms() + 60_000;
    assert!(
        fleet
            .db
            .take_lease(server_id, "other-host", until)
            .await
            .unwrap()
    );
    let latest = fleet.db.latest_sync("cpanel").await.unwrap().unwrap().id;
    fleet.reset_counters();
    assert_eq!(fleet.engine().check_drift().await.unwrap(), 0);
    assert_eq!(fleet.sims[0].http_requests(), 0, "the panel was asked");
    assert_eq!(
        fleet.db.recorded_state(server_id, "cpanel").await.unwrap(),
        (groups, links),
        "the record was touched"
    );
    assert_eq!(
        fleet.db.latest_sync("cpanel").await.unwrap().unwrap().id,
        latest
    );

    // Once the other host lets go, the next check finds the drift and repairs it.
    fleet
        .db
        .release_lease(server_id, "other-host")
        .await
        .unwrap();
    assert_eq!(fleet.engine().check_drift().await.unwrap(), 1);
    let repair = fleet.db.latest_sync("cpanel").await.unwrap().unwrap();
    assert_eq!(repair.kind, SyncKind::Repair);
    fleet.finished(repair.id).await;
    fleet.assert_exact(&defaults());
    fleet.stop().await;
}

/// Stands in for a host that dies right after the admin's write committed: the change it was
/// about to schedule is never handed to an engine. `reached` is told when the write is done.
struct DiesBeforeScheduling {
    reached: tokio::sync::Notify,
}

impl panelink::sync::SyncRequests for DiesBeforeScheduling {
    fn request(
        &self,
        _change: ChangeId,
    ) -> futures::future::BoxFuture<'_, Result<Vec<SyncSummary>, panelink::sync::SyncError>> {
        self.reached.notify_one();
        Box::pin(futures::future::pending())
    }

    fn latest<'a>(
        &'a self,
        _application: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<SyncSummary>, panelink::sync::SyncError>>
    {
        Box::pin(async { Ok(None) })
    }

    fn get(
        &self,
        _id: i64,
    ) -> futures::future::BoxFuture<
        '_,
        Result<Option<panelink::sync_port::SyncDetail>, panelink::sync::SyncError>,
    > {
        Box::pin(async { Ok(None) })
    }

    fn syncing<'a>(
        &'a self,
        _application: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<bool, panelink::sync::SyncError>> {
        Box::pin(async { Ok(false) })
    }
}

async fn a_change_saved_before_a_crash_is_pushed_after_restart(backend: Backend) {
    use panelink::api::{self, AppState, Limits};
    use panelink::catalog::Catalog;
    use tower::ServiceExt;

    let mut fleet = Fleet::new(backend, 2, 3, &[ServiceStatus::Active]).await;
    // A host whose process dies between "intent saved" and "work scheduled": the admin's
    // request to turn Application Links on reaches the real API and storage, and the host
    // is gone before the change reaches a sync engine (its request never answers).
    let (runtime, _) = crate::harness::shipped_plugins();
    let catalog = Arc::new(Catalog::new(
        runtime.clone(),
        fleet.plugins.clone(),
        fleet.db.clone(),
    ));
    let dying = Arc::new(DiesBeforeScheduling {
        reached: tokio::sync::Notify::new(),
    });
    let state = AppState::new(
        fleet.db.clone(),
        catalog,
        dying.clone(),
        Events::new(),
        Limits::default(),
    );
    state.set_ready(true);
    let email = Email::parse("root@example.com").unwrap();
    let (_, token) = fleet
        .db
        .create_admin(&Actor::cli(), &email, "Full Administrator")
        .await
        .unwrap();
    let request = axum::http::Request::patch("/api/v1/applications/cpanel")
        .header("authorization", format!("Bearer {}", token.expose()))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"enabled": true}"#))
        .unwrap();
    let call = tokio::spawn(api::app(state).oneshot(request));
    tokio::time::timeout(Duration::from_secs(60), dying.reached.notified())
        .await
        .expect("the write never finished");
    call.abort();
    assert!(
        call.await.unwrap_err().is_cancelled(),
        "the dying host answered"
    );
    // Saved, not pushed.
    assert!(fleet.db.application("cpanel").await.unwrap().enabled);
    assert!(fleet.db.latest_sync("cpanel").await.unwrap().is_none());
    assert!(fleet.sims.iter().all(|s| s.link_count() == 0));

    // The restarted host's engine finds the change and pushes it.
    fleet.start(config());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let sync = loop {
        if let Some(sync) = fleet.db.latest_sync("cpanel").await.unwrap() {
            break sync;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the saved change was never scheduled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sync.kind, SyncKind::Enable);
    let done = fleet.finished(sync.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    fleet.assert_exact(&defaults());
    // The outbox is empty: nothing is pushed twice.
    assert!(fleet.db.pending_changes(i64::MAX).await.unwrap().is_empty());
    fleet.stop().await;
}

async fn a_steadily_flaky_panel_converges(backend: Backend) {
    // One panel answers about one request in five with a fault of every kind (HTTP 500 before
    // and after doing the work, a hang, a dropped connection), for the whole push.
    let mut fleet = Fleet::new(backend, 1, 40, &[ServiceStatus::Active]).await;
    let sim = &fleet.sims[0];
    sim.set_fault_kinds(FaultKind::ALL);
    sim.set_hang_for(Duration::from_millis(200));
    sim.reseed(Some(11));
    sim.set_fault_rate(0.2);
    fleet.start(SyncConfig {
        retry_window: Duration::from_secs(60),
        batch_accounts: 1,
        ..config()
    });
    let s = fleet.set_enabled(true).await;
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    let faults = fleet.sims[0].faults_injected();
    assert!(faults >= 4, "only {faults} faults");
    fleet.assert_exact(&defaults());
    fleet.stop().await;
}

async fn a_failed_server_is_retried_by_itself(backend: Backend) {
    let mut fleet = Fleet::new(backend, 2, 3, &[ServiceStatus::Active]).await;
    fleet.sims[1].set_down(true);
    fleet.start(SyncConfig {
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_millis(100),
        retry_window: Duration::from_secs(2),
        failed_retry_interval: Some(Duration::from_millis(200)),
        ..config()
    });
    let s = fleet.set_enabled(true).await;
    // While it retries, the server shows as retrying: its attempts, the next one's time and
    // the last error.
    let down = fleet.server_ids[1];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let detail = fleet.db.sync_detail(s.id).await.unwrap().unwrap();
        let p = detail.servers.iter().find(|p| p.server_id == down).unwrap();
        if p.attempts > 0 && p.next_attempt_at.is_some() {
            assert_eq!(p.state, SyncState::Queued);
            assert!(p.last_error.is_some(), "{p:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{p:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Given up after the retry window.
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Failed, "{done:?}");
    // The panel comes back; nobody asks for anything, and it converges.
    fleet.sims[1].set_down(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while fleet.sims[1].link_count() < 3 * 14 {
        assert!(tokio::time::Instant::now() < deadline, "never retried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let retry = fleet.db.latest_sync("cpanel").await.unwrap().unwrap();
    assert_eq!(retry.kind, SyncKind::Repair);
    fleet.finished(retry.id).await;
    fleet.assert_exact(&defaults());
    assert_eq!(
        fleet.db.server(down).await.unwrap().sync_state.as_deref(),
        Some("synced")
    );
    fleet.stop().await;
}

async fn the_log_has_every_level_the_plugins_lines_and_each_warning_once(backend: Backend) {
    use panelink::adapter::LogLevel;
    let mut fleet = Fleet::new(backend, 2, 2, &[ServiceStatus::Active]).await;
    // Server 1 runs a cPanel too old for integration links.
    fleet.sims[1].set_version("11.50.0.1");
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    fleet.finished(s.id).await;
    let log = fleet.db.log("cpanel").await.unwrap();
    let has = |level: LogLevel, text: &str| {
        log.iter()
            .any(|e| e.level == level && e.message.contains(text))
    };
    assert!(has(LogLevel::Debug, "Attempting to enable"), "{log:#?}");
    // The plugin's own `log.write` line about its WHM batch.
    assert!(has(LogLevel::Debug, "sending WHM batch"), "{log:#?}");
    assert!(
        has(LogLevel::Info, "does not support Application Links"),
        "{log:#?}"
    );
    assert!(has(LogLevel::Debug, "Process completed"), "{log:#?}");

    // With no server left that supports them: the notice.
    fleet.sims[0].set_version("11.50.0.1");
    let repair = fleet.repair().await;
    fleet.finished(repair.id).await;
    let log = fleet.db.log("cpanel").await.unwrap();
    assert!(
        log.iter().any(
            |e| e.level == LogLevel::Notice && e.message.contains("supports Application Links")
        ),
        "{log:#?}"
    );

    // An account that keeps failing the same way is logged once per operation, however many
    // service syncs meet it.
    fleet.sims[0].set_version(panel_sim::DEFAULT_VERSION);
    let s = fleet.repair().await;
    fleet.finished(s.id).await;
    let (&service_id, (i, user, _)) = fleet
        .services
        .iter()
        .find(|(_, (i, _, _))| *i == 0)
        .unwrap();
    assert!(fleet.sims[*i].remove_account(user));
    // Each rotation of its credential re-pushes its links, and each meets the missing account.
    for _ in 0..2 {
        let (_, change) = fleet
            .db
            .rotate_live_credential(&Actor::system(), service_id)
            .await
            .unwrap();
        let s = fleet.request(change).await;
        let done = fleet.finished(s.id).await;
        assert_eq!(done.state, SyncState::CompletedWithWarnings, "{done:?}");
    }
    let log = fleet.db.log("cpanel").await.unwrap();
    let warnings = log
        .iter()
        .filter(|e| e.level == LogLevel::Warning && e.service_id == Some(service_id))
        .count();
    assert_eq!(warnings, 1, "{log:#?}");
    fleet.stop().await;
}

async fn an_application_is_syncing_while_any_of_its_syncs_is_open(backend: Backend) {
    use panelink::sync::SyncRequests;
    let mut fleet = Fleet::new(backend, 1, 3, &[ServiceStatus::Active]).await;
    fleet.sims[0].set_command_latency(Duration::from_millis(200));
    fleet.start(config());
    let enable = fleet.set_enabled(true).await;
    // A later sync that finishes at once (it has no server) becomes the latest one.
    let change = fleet
        .db
        .enqueue_change(
            &Change::RepairRequested {
                application: "cpanel".into(),
            },
            None,
        )
        .await
        .unwrap();
    let later = panelink::storage::NewSync {
        request: panelink::sync_port::SyncRequest {
            application: "cpanel".into(),
            kind: SyncKind::Repair,
            service_id: None,
            servers: Some(Vec::new()),
            requested_by: None,
        },
        servers: Vec::new(),
        fresh_log: false,
        opening: Vec::new(),
        closing: Vec::new(),
    };
    let done = fleet
        .db
        .drain_change(change, &[later])
        .await
        .unwrap()
        .unwrap();
    assert!(done[0].finished_at.is_some());
    let latest = fleet.db.latest_sync("cpanel").await.unwrap().unwrap();
    assert_eq!(latest.id, done[0].id);
    assert!(
        fleet.engine().syncing("cpanel").await.unwrap(),
        "the enable is still open"
    );
    fleet.finished(enable.id).await;
    assert!(!fleet.engine().syncing("cpanel").await.unwrap());
    fleet.stop().await;
}

/// What the panels hold, per (server index, user): the groups, and per link app every field
/// as given, the account's credential replaced by placeholders once checked against the record.
type PanelState = BTreeMap<
    (usize, String),
    (
        Vec<panel_sim::Group>,
        BTreeMap<String, BTreeMap<String, String>>,
    ),
>;

async fn panel_state(fleet: &Fleet) -> PanelState {
    let mut out = BTreeMap::new();
    for (service_id, (i, user, _)) in &fleet.services {
        let sim = &fleet.sims[*i];
        let groups: Vec<_> = sim.groups(user).into_values().collect();
        let links = sim.links(user);
        let mut fields = BTreeMap::new();
        if !links.is_empty() {
            let (subscriber, secret) = fleet
                .db
                .mint_sso_credential(*service_id)
                .await
                .expect("credential");
            for (app, link) in links {
                let mut f: BTreeMap<String, String> = link
                    .fields()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                assert_eq!(f.remove("subscriber_unique_id"), Some(subscriber.clone()));
                assert_eq!(f.remove("token").as_deref(), Some(secret.expose()));
                assert!(link.ignored().is_empty(), "{app}: {:?}", link.ignored());
                fields.insert(app, f);
            }
        }
        out.insert((*i, user.clone()), (groups, fields));
    }
    out
}

/// The same fleet, the same syncs (enable, then a rename, a reorder and a hidden link) with
/// the cPanel plugin built against contract 0.1.0 and with today's 0.2.0 build: the panels end
/// up with exactly the same groups and links, field for field, except the icon 0.2 adds
/// (`base64_png_image`, each link's own PNG).
async fn contract_0_2_plugins_leave_the_panel_state_of_0_1_with_icons_added(backend: Backend) {
    use base64::Engine as _;

    let mut states = Vec::new();
    let mut icons = BTreeMap::new();
    for contract in ["0.1.0", "0.2.0"] {
        let mut fleet = Fleet::new(backend, 2, 4, ALL_STATUSES).await;
        if contract == "0.1.0" {
            let old = panelink_tests::load(&fleet.runtime, "cpanel-contract-0.1").await;
            fleet.plugins.activate(old);
        } else {
            for l in &fleet.plugins.get("cpanel").unwrap().description.links {
                icons.insert(
                    format!("PANELINK_{}", l.scope.replace(':', "_")),
                    base64::engine::general_purpose::STANDARD.encode(l.icon.as_deref().unwrap()),
                );
            }
        }
        assert_eq!(fleet.plugins.get("cpanel").unwrap().contract(), contract);
        fleet.start(config());
        let mut rounds = Vec::new();
        let sync = fleet.set_enabled(true).await;
        assert_eq!(fleet.finished(sync.id).await.state, SyncState::Completed);
        rounds.push(panel_state(&fleet).await);
        let mut links: Vec<(&str, &str, bool)> =
            defaults().into_iter().map(|(s, l)| (s, l, true)).collect();
        links.swap(0, 3);
        links[1].1 = "Renamed";
        links[5].2 = false;
        let sync = fleet.configure(&links).await;
        assert_eq!(fleet.finished(sync.id).await.state, SyncState::Completed);
        rounds.push(panel_state(&fleet).await);
        fleet.stop().await;
        states.push(rounds);
    }
    let (old, new) = (&states[0], &states[1]);
    for (round, (old, new)) in old.iter().zip(new).enumerate() {
        assert!(
            old.values().any(|(_, links)| links.len() >= 13),
            "round {round}"
        );
        assert_eq!(
            old.keys().collect::<Vec<_>>(),
            new.keys().collect::<Vec<_>>()
        );
        for (key, (old_groups, old_links)) in old {
            let (new_groups, new_links) = &new[key];
            assert_eq!(old_groups, new_groups, "round {round} {key:?}");
            assert_eq!(
                old_links.keys().collect::<Vec<_>>(),
                new_links.keys().collect::<Vec<_>>(),
                "round {round} {key:?}"
            );
            for (app, old_fields) in old_links {
                let mut new_fields = new_links[app].clone();
                assert!(!old_fields.contains_key("base64_png_image"));
                assert_eq!(
                    new_fields.remove("base64_png_image").as_ref(),
                    Some(&icons[app]),
                    "round {round} {key:?} {app}: the icon"
                );
                assert_eq!(old_fields, &new_fields, "round {round} {key:?} {app}");
            }
        }
    }
}

/// Whether the application's links are on, waited for until it is `expected` (the engine
/// settles the application right after the sync it decides on).
async fn wait_enabled(fleet: &Fleet, application: &str, expected: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let app = fleet.db.application(application).await.unwrap();
        if app.enabled == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{application}: enabled stayed {}",
            app.enabled
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn enabling_with_no_supported_server_leaves_links_off(backend: Backend) {
    use panelink::adapter::LogLevel;
    // The only cPanel server runs a version too old for integration links: enabling finds no
    // server that supports them, so they stay off, with the notice saying why (the seed: a
    // supported server must exist first), instead of the application showing active.
    let mut fleet = Fleet::new(backend, 1, 2, &[ServiceStatus::Active]).await;
    fleet.sims[0].set_version("11.50.0.1");
    fleet.start(config());
    let s = fleet.set_enabled(true).await;
    let done = fleet.finished(s.id).await;
    assert_ne!(done.state, SyncState::Failed, "{done:?}");
    wait_enabled(&fleet, "cpanel", false).await;
    let log = fleet.db.log("cpanel").await.unwrap();
    assert!(
        log.iter().any(|e| e.level == LogLevel::Notice
            && e.message
                .contains("No server of cPanel supports Application Links")
            && e.message.contains("stay off")),
        "{log:#?}"
    );
    assert_eq!(fleet.sims[0].link_count(), 0);
    let audit = fleet.db.audit_log(50).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "application.disable" && a.actor == "system"),
        "{audit:#?}"
    );

    // An application with no server at all: the same.
    let (_, change) = fleet
        .db
        .set_application_enabled(&Actor::system(), "wpsquared", true)
        .await
        .unwrap();
    let s = fleet.request(change).await;
    fleet.finished(s.id).await;
    wait_enabled(&fleet, "wpsquared", false).await;

    // Once a server supports them, enabling keeps them on and pushes the links.
    fleet.sims[0].set_version(panel_sim::DEFAULT_VERSION);
    let s = fleet.set_enabled(true).await;
    let done = fleet.finished(s.id).await;
    assert_eq!(done.state, SyncState::Completed, "{done:?}");
    assert!(fleet.db.application("cpanel").await.unwrap().enabled);
    assert_eq!(fleet.sims[0].link_count(), 2 * 14);
    fleet.stop().await;
}
