//! The sync engine: makes the desired state (enabled applications, their link configuration,
//! the services) true on every panel, and keeps it true.
//!
//! Every change becomes durable work first ([`SyncEngine::request`] writes a sync and one unit
//! per server), then workers carry it out ([`SyncEngine::run`]). A worker takes a server's lease
//! (so one host works on a server at a time, and a dead host's servers are taken over when its
//! lease expires), computes the difference between what each account should have and what the
//! record says it has, pushes only that difference through the plugin in batches, and records
//! what the panel confirmed batch by batch. A crash loses at most one batch's record, whose
//! operations are idempotent and are simply pushed again.
//!
//! Failures: a transient error (timeout, 5xx, connection) puts the unit back with exponential
//! backoff and jitter, up to a budget, after which the server's unit fails with its error while
//! other servers go on. A panel's per-account error is a warning in the application log and is
//! not retried. An unsupported server is logged at info and skipped.

mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use rand::Rng;
use tokio::sync::Notify;

use crate::adapter::{LogLevel, ServerTarget, Settings};
use crate::model::effective_links;
use crate::runtime::{Plugin, Plugins};
use crate::storage::sync::Unit;
use crate::storage::{self, Db, NewLogEntry, ServiceFilter, now_ms};
use crate::sync_port::{
    Event, Events, SyncDetail, SyncError, SyncKind, SyncRequest, SyncRequests, SyncSummary,
};
pub use plan::{AccountPlan, Desired, DesiredLink, plan_server};

/// Knobs of the sync engine.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Servers worked on at once by this host.
    pub workers: usize,
    /// Plugin calls (batches) under way for one server at once. How many of their requests are
    /// in flight to the server at once is the runtime's limit
    /// ([`crate::runtime::HttpLimits::max_in_flight_per_server`], off by default): with 2 here
    /// and 1 there, the host prepares and records one batch while the panel answers the other.
    pub per_server_concurrency: usize,
    /// Most accounts per plugin call. A call also carries at most `max_commands_per_request`
    /// panel operations, so a small change packs many accounts into one request.
    pub batch_accounts: usize,
    /// Panel calls per HTTP request (a WHM `batch`).
    pub max_commands_per_request: u32,
    /// How long a server's lease lasts without renewal.
    pub lease: Duration,
    /// How often idle workers look for work other hosts queued.
    pub poll_interval: Duration,
    /// First retry delay after a transient failure; doubles each time, with jitter.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Transient failures a server's unit may have before it fails.
    pub retry_budget: u32,
    /// A support check younger than this is trusted (enable and repair always check again).
    pub support_ttl: Duration,
    /// Interval of the drift check; `None` disables it.
    pub drift_interval: Option<Duration>,
    /// Base URL panels and browsers reach this host at.
    pub public_url: String,
    /// Where SSO lands customers.
    pub client_area_url: String,
    /// Client-area paths per scope overriding the plugins' defaults (`sso_destinations`).
    pub destinations: std::collections::BTreeMap<String, String>,
    /// Panel-side names (app prefix, group id and label).
    pub app_prefix: String,
    /// Panel-side group id.
    pub group_id: String,
    /// Panel-side group label.
    pub group_label: String,
    /// This host's name in leases.
    pub node_id: String,
}

impl Default for SyncConfig {
    fn default() -> Self {
        let mut raw = [0u8; 6];
        rand::rng().fill(&mut raw);
        Self {
            workers: 16,
            per_server_concurrency: 2,
            batch_accounts: 300,
            max_commands_per_request: 300,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(2),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            retry_budget: 8,
            support_ttl: Duration::from_secs(600),
            drift_interval: None,
            public_url: "http://127.0.0.1:8080".into(),
            client_area_url: "http://127.0.0.1:8080/portal".into(),
            destinations: std::collections::BTreeMap::new(),
            app_prefix: "PANELINK".into(),
            group_id: "panelink".into(),
            group_label: "Billing & Support".into(),
            node_id: format!("node-{}", hex::encode(raw)),
        }
    }
}

impl SyncConfig {
    fn settings(&self) -> Settings {
        Settings {
            app_prefix: self.app_prefix.clone(),
            group_id: self.group_id.clone(),
            group_label: self.group_label.clone(),
            max_commands_per_request: self.max_commands_per_request,
        }
    }
}

/// The sync engine. Share it as `Arc<SyncEngine>`: the API holds it as its [`SyncRequests`], and
/// [`SyncEngine::run`] drives the workers.
pub struct SyncEngine {
    db: Db,
    plugins: Arc<Plugins>,
    events: Events,
    config: SyncConfig,
    wake: Notify,
    batches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("config", &self.config)
            .finish()
    }
}

/// How a unit ended.
enum UnitEnd {
    /// Done (possibly with warnings, or skipped as unsupported).
    Done,
    /// Put back for a retry.
    Retry,
    /// Failed for good.
    Failed,
    /// The lease was lost: another host owns the server now.
    LeaseLost,
    /// Shutting down: the unit stays open and is resumed at the next start.
    Stopped,
}

fn err(e: impl std::fmt::Display) -> SyncError {
    SyncError(e.to_string())
}

impl SyncEngine {
    /// A new engine.
    pub fn new(db: Db, plugins: Arc<Plugins>, events: Events, config: SyncConfig) -> Self {
        Self {
            db,
            plugins,
            events,
            config,
            wake: Notify::new(),
            batches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The engine's configuration.
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// How many batches this engine (this host) has pushed since it was built.
    pub fn batches_pushed(&self) -> u64 {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn app_name(&self, application: &str) -> String {
        self.plugins
            .get(application)
            .map(|p| p.description.name.clone())
            .unwrap_or_else(|| application.to_owned())
    }

    async fn log(&self, application: &str, entries: Vec<NewLogEntry>) {
        if entries.is_empty() {
            return;
        }
        if let Err(e) = self.db.append_log(application, &entries).await {
            tracing::error!(%application, error = %e, "could not write the application log");
        }
    }

    fn entry(
        sync_id: i64,
        level: LogLevel,
        message: impl Into<String>,
        server_id: Option<i64>,
        service_id: Option<i64>,
    ) -> NewLogEntry {
        NewLogEntry {
            sync_id: Some(sync_id),
            level,
            message: message.into(),
            server_id,
            service_id,
        }
    }

    /// Schedule the work for a request: a sync with one unit per server that may need work.
    pub async fn schedule(&self, request: SyncRequest) -> Result<Option<SyncSummary>, SyncError> {
        let app = &request.application;
        let enabled = self.db.application(app).await.map_err(err)?.enabled;
        let mut servers: Vec<i64> = Vec::new();
        match request.kind {
            SyncKind::Service => {
                let service_id = request
                    .service_id
                    .ok_or_else(|| SyncError("a service sync needs a service".into()))?;
                let service = self.db.service(service_id).await.map_err(err)?;
                let recorded = self
                    .db
                    .servers_with_records_of_service(service_id)
                    .await
                    .map_err(err)?;
                let server = self.db.server(service.server_id).await.map_err(err)?;
                if enabled && server.enabled && server.module == *app {
                    servers.push(service.server_id);
                }
                servers.extend(recorded);
                if servers.is_empty() {
                    return Ok(None);
                }
            }
            _ => {
                servers.extend(
                    self.db
                        .servers_of(app, true)
                        .await
                        .map_err(err)?
                        .iter()
                        .map(|s| s.id),
                );
                servers.extend(self.db.servers_with_records(app).await.map_err(err)?);
            }
        }
        servers.sort_unstable();
        servers.dedup();

        let fresh_log = request.kind != SyncKind::Service;
        if fresh_log {
            self.db.start_log(app).await.map_err(err)?;
        }
        // Written before the sync exists, so that it is first in the log whatever the workers do.
        let name = self.app_name(app);
        let what = match request.kind {
            SyncKind::Enable => format!("Attempting to enable Application Links for {name}"),
            SyncKind::Disable => format!("Attempting to disable Application Links for {name}"),
            SyncKind::Configure => {
                format!("Attempting to apply the link configuration of {name}")
            }
            SyncKind::Repair => {
                format!("Attempting to re-synchronise Application Links for {name}")
            }
            SyncKind::Service => format!(
                "Attempting to update Application Links of service {}",
                request.service_id.unwrap_or_default()
            ),
        };
        self.log(
            app,
            vec![NewLogEntry {
                sync_id: None,
                level: LogLevel::Debug,
                message: what,
                server_id: None,
                service_id: request.service_id,
            }],
        )
        .await;
        let summary = self
            .db
            .create_sync(
                app,
                request.kind,
                request.service_id,
                request.requested_by,
                &servers,
            )
            .await
            .map_err(err)?;
        if servers.is_empty() {
            let entries = vec![
                Self::entry(
                    summary.id,
                    LogLevel::Notice,
                    format!("No server of {name} supports Application Links"),
                    None,
                    None,
                ),
                Self::entry(summary.id, LogLevel::Debug, "Process completed", None, None),
            ];
            self.log(app, entries).await;
        }
        self.events.publish(Event::Sync(summary.clone()));
        self.events.publish(Event::Application { id: app.clone() });
        self.wake.notify_waiters();
        Ok(Some(summary))
    }

    /// Run the workers until `shutdown` resolves. Work in flight stops at the next batch
    /// boundary; what is unfinished stays queued in the database for the next start (or another
    /// host, once the lease expires).
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        if self.db.backend() == storage::Backend::Sqlite {
            // SQLite has one host; leases of an earlier run of it (killed mid-sync) are stale.
            if let Err(e) = self.db.clear_leases().await {
                tracing::warn!(error = %e, "could not clear stale leases");
            }
        }
        let token = tokio_util::sync::CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.config.workers.max(1) {
            let engine = self.clone();
            let token = token.clone();
            tasks.spawn(async move { engine.worker(token).await });
        }
        if let Some(interval) = self.config.drift_interval {
            let engine = self.clone();
            let token = token.clone();
            tasks.spawn(async move { engine.drift_loop(interval, token).await });
        }
        shutdown.await;
        token.cancel();
        while tasks.join_next().await.is_some() {}
    }

    async fn worker(&self, token: tokio_util::sync::CancellationToken) {
        while !token.is_cancelled() {
            let until = now_ms() + self.config.lease.as_millis() as i64;
            match self.db.claim_server(&self.config.node_id, until).await {
                Ok(Some(server_id)) => self.work_server(server_id, &token).await,
                Ok(None) => {
                    let notified = self.wake.notified();
                    tokio::select! {
                        () = token.cancelled() => {}
                        () = notified => {}
                        () = tokio::time::sleep(self.config.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sync worker could not look for work");
                    tokio::select! {
                        () = token.cancelled() => {}
                        () = tokio::time::sleep(self.config.poll_interval) => {}
                    }
                }
            }
        }
    }

    async fn work_server(&self, server_id: i64, token: &tokio_util::sync::CancellationToken) {
        let owner = &self.config.node_id;
        loop {
            if token.is_cancelled() {
                break;
            }
            let unit = match self.db.next_unit(server_id).await {
                Ok(Some(unit)) => unit,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(server_id, error = %e, "could not read the next unit");
                    break;
                }
            };
            match self.run_unit(&unit, token).await {
                UnitEnd::LeaseLost => return,
                UnitEnd::Stopped => break,
                UnitEnd::Done | UnitEnd::Retry | UnitEnd::Failed => {}
            }
        }
        if let Err(e) = self.db.release_lease(server_id, owner).await {
            tracing::warn!(server_id, error = %e, "could not release a lease");
        }
        // Work that is due later (a retry) or that arrived meanwhile is found by the next poll.
        self.wake.notify_waiters();
    }

    fn backoff(&self, attempts: i64) -> Duration {
        let exp = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
        let base = self.config.retry_base.saturating_mul(1 << exp);
        let capped = base.min(self.config.retry_max);
        // Full jitter in [capped/2, capped].
        let half = capped / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    async fn publish_sync(&self, sync_id: i64) {
        if let Ok(Some(summary)) = self.db.sync_summary(sync_id).await {
            let app = summary.application.clone();
            self.events.publish(Event::Sync(summary));
            self.events.publish(Event::Application { id: app });
        }
    }

    async fn finish(&self, unit: &Unit, failed_with: Option<&str>) {
        // What the log says if this unit closes the sync.
        let mut closing = Vec::new();
        let supported = self
            .db
            .servers_of(&unit.application, true)
            .await
            .map(|s| s.iter().filter(|s| s.supported == Some(true)).count())
            .unwrap_or(0);
        if supported == 0 && unit.kind != SyncKind::Disable {
            closing.push(Self::entry(
                unit.sync_id,
                LogLevel::Notice,
                format!(
                    "No server of {} supports Application Links",
                    self.app_name(&unit.application)
                ),
                None,
                None,
            ));
        }
        closing.push(Self::entry(
            unit.sync_id,
            LogLevel::Debug,
            "Process completed",
            None,
            None,
        ));
        match self
            .db
            .finish_unit(
                &unit.application,
                unit.sync_id,
                unit.server_id,
                failed_with,
                &closing,
            )
            .await
        {
            Ok(Some(summary)) => {
                let app = summary.application.clone();
                self.events.publish(Event::Sync(summary));
                self.events.publish(Event::Application { id: app });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(sync_id = unit.sync_id, error = %e, "could not finish a unit"),
        }
    }

    /// Carry out one unit: one sync's work on one server.
    async fn run_unit(&self, unit: &Unit, token: &tokio_util::sync::CancellationToken) -> UnitEnd {
        match self.try_unit(unit, token).await {
            Ok(end) => end,
            Err(UnitError::Transient(message)) => {
                let attempts = unit.attempts + 1;
                if attempts > i64::from(self.config.retry_budget) {
                    self.fail_unit(unit, &message).await;
                    UnitEnd::Failed
                } else {
                    let not_before = now_ms() + self.backoff(unit.attempts).as_millis() as i64;
                    tracing::info!(
                        server_id = unit.server_id,
                        attempts,
                        error = %message,
                        "transient failure; retrying later"
                    );
                    if let Err(e) = self
                        .db
                        .retry_unit(unit.sync_id, unit.server_id, not_before, &message)
                        .await
                    {
                        tracing::warn!(error = %e, "could not requeue a unit");
                    }
                    self.publish_sync(unit.sync_id).await;
                    UnitEnd::Retry
                }
            }
            Err(UnitError::Fatal(message)) => {
                self.fail_unit(unit, &message).await;
                UnitEnd::Failed
            }
            Err(UnitError::Storage(e)) => {
                // The database is unreachable or refused: leave the unit as it is; it is taken
                // up again after the lease expires.
                tracing::error!(server_id = unit.server_id, error = %e, "storage failed mid-unit");
                UnitEnd::LeaseLost
            }
        }
    }

    async fn fail_unit(&self, unit: &Unit, message: &str) {
        let server_name = self
            .db
            .server(unit.server_id)
            .await
            .map(|s| s.name)
            .unwrap_or_else(|_| format!("server {}", unit.server_id));
        self.log(
            &unit.application,
            vec![Self::entry(
                unit.sync_id,
                LogLevel::Warning,
                format!("{server_name}: {message}"),
                Some(unit.server_id),
                None,
            )],
        )
        .await;
        let _ = self.db.set_server_sync_state(unit.server_id, true).await;
        self.finish(unit, Some(message)).await;
    }

    async fn try_unit(
        &self,
        unit: &Unit,
        token: &tokio_util::sync::CancellationToken,
    ) -> Result<UnitEnd, UnitError> {
        let app = &unit.application;
        let Some(plugin) = self.plugins.get(app) else {
            return Err(UnitError::Fatal(format!(
                "no plugin is installed for the application {app}"
            )));
        };
        let server = self.db.server(unit.server_id).await?;
        let target = self.db.server_target(unit.server_id).await?;
        let application = self.db.application(app).await?;

        // Desired state of this server for this application.
        let serves = application.enabled && server.enabled && server.module == *app;
        if serves {
            let fresh = server.supported == Some(true)
                && server
                    .checked_at
                    .is_some_and(|at| now_ms() - at < self.config.support_ttl.as_millis() as i64)
                && !matches!(unit.kind, SyncKind::Enable | SyncKind::Repair);
            if !fresh {
                match plugin.check_server(&target).await {
                    Ok(out) => {
                        self.db.record_support(unit.server_id, &out.value).await?;
                        if !out.value.supported {
                            self.db.start_unit(unit.sync_id, unit.server_id, 0).await?;
                            self.log(
                                app,
                                vec![Self::entry(
                                    unit.sync_id,
                                    LogLevel::Info,
                                    format!(
                                        "{}: does not support Application Links: {}",
                                        server.name, out.value.detail
                                    ),
                                    Some(unit.server_id),
                                    None,
                                )],
                            )
                            .await;
                            self.finish(unit, None).await;
                            return Ok(UnitEnd::Done);
                        }
                    }
                    Err(e) if e.is_transient() => return Err(UnitError::Transient(e.to_string())),
                    Err(e) => return Err(UnitError::Fatal(e.to_string())),
                }
            }
        }

        let services = self
            .db
            .services(ServiceFilter {
                server_id: Some(unit.server_id),
                client_id: None,
            })
            .await?;
        // Accounts removed from this server whose credential goes too: all of them when the
        // server no longer serves the application, else those whose service stopped getting
        // links (a service that moved keeps its credential for its new server).
        let revocable: HashSet<i64> = services
            .iter()
            .filter(|s| !serves || !s.status.gets_links())
            .map(|s| s.id)
            .collect();
        let (links, accounts) = if serves {
            self.desired(&plugin, unit, &services).await?
        } else {
            Default::default()
        };
        let (groups, recorded) = self.db.recorded_state(unit.server_id, app).await?;
        let plans = plan_server(
            &links,
            &accounts,
            &groups,
            &recorded,
            &self.config.public_url,
            &self.config.client_area_url,
            app,
        );
        self.db
            .start_unit(unit.sync_id, unit.server_id, plans.len() as u64)
            .await?;
        self.publish_sync(unit.sync_id).await;

        // Removals first (a renamed account's old record must be gone before the new one is
        // written), then pushes; each phase in batches, a few in flight per server.
        let settings = self.config.settings();
        let (removals, pushes): (Vec<_>, Vec<_>) = plans.into_iter().partition(|p| p.deprovision);
        for phase in [removals, pushes] {
            let removal_cost = plugin.description.links.len() + 1;
            let batches = pack(
                phase,
                self.config.batch_accounts,
                self.config.max_commands_per_request as usize,
                |p| {
                    if p.deprovision {
                        removal_cost
                    } else {
                        p.operations()
                    }
                },
            );
            let revocable = &revocable;
            let mut results = stream::iter(batches.into_iter().map(|batch| {
                let (plugin, target, settings) = (&plugin, &target, &settings);
                async move {
                    self.push_batch(plugin, target, settings, unit, batch, revocable)
                        .await
                }
            }))
            .buffer_unordered(self.config.per_server_concurrency.max(1));
            // The loop body touches no database: a batch future suspended inside its
            // transaction must never wait on a statement issued here (SQLite has one writer).
            while let Some(result) = results.next().await {
                if !result? {
                    return Ok(UnitEnd::LeaseLost);
                }
                if token.is_cancelled() {
                    return Ok(UnitEnd::Stopped);
                }
            }
        }
        self.db.set_server_sync_state(unit.server_id, false).await?;
        self.finish(unit, None).await;
        Ok(UnitEnd::Done)
    }

    /// The application's enabled links and the accounts of a server that should have them,
    /// with their credentials (minted for those that have none yet).
    async fn desired(
        &self,
        plugin: &Plugin,
        unit: &Unit,
        services: &[crate::storage::Service],
    ) -> Result<(Vec<DesiredLink>, Vec<Desired>), UnitError> {
        let saved = self.db.link_settings(&unit.application).await?;
        let links: Vec<DesiredLink> = effective_links(&plugin.description.links, &saved)
            .into_iter()
            .filter(|l| l.enabled)
            .map(|l| DesiredLink {
                destination: crate::model::destination_template(
                    &self.config.destinations,
                    &l.scope,
                    Some(&l.destination),
                )
                .to_owned(),
                scope: l.scope,
                label: l.display_name,
                order: l.order,
            })
            .collect();
        if links.is_empty() {
            return Ok(Default::default());
        }
        let wanted: Vec<_> = services.iter().filter(|s| s.status.gets_links()).collect();
        let mut live = self.db.credentials_on_server(unit.server_id).await?;
        let missing: Vec<i64> = wanted
            .iter()
            .filter(|s| !live.contains_key(&s.id))
            .map(|s| s.id)
            .collect();
        if !missing.is_empty() {
            live.extend(self.db.mint_credentials(&missing).await?);
        }
        let accounts = wanted
            .into_iter()
            .filter_map(|s| {
                live.remove(&s.id).map(|credential| Desired {
                    service_id: s.id,
                    username: s.username.clone(),
                    domain: s.domain.clone(),
                    credential,
                })
            })
            .collect();
        Ok((links, accounts))
    }

    /// Push one batch of account plans (all removals or all pushes), record what the panel
    /// confirmed with the unit's progress in one transaction, revoke the credentials of removed
    /// services in `revocable`, and renew the server's lease. Returns whether the lease is still
    /// held (stop at a batch boundary when it is not: stopping at a batch boundary keeps the
    /// record exact).
    async fn push_batch(
        &self,
        plugin: &Plugin,
        target: &ServerTarget,
        settings: &Settings,
        unit: &Unit,
        batch: Vec<AccountPlan>,
        revocable: &HashSet<i64>,
    ) -> Result<bool, UnitError> {
        let mut changes = Vec::new();
        let mut entries = Vec::new();
        let mut removed = Vec::new();
        let deprovision = batch.first().is_some_and(|p| p.deprovision);
        let outcomes = if deprovision {
            let usernames: Vec<String> = batch.iter().map(|p| p.username.clone()).collect();
            plugin.deprovision(target, settings, &usernames).await
        } else {
            let work: Vec<_> = batch.iter().map(AccountPlan::work).collect();
            plugin.provision(target, settings, work).await
        }
        .map_err(UnitError::from_runtime)?
        .value;
        for (plan, outcome) in batch.iter().zip(&outcomes) {
            let errors = if deprovision {
                // The account is going away from this panel: its record goes too, whatever the
                // panel said (an account the panel no longer has is the common case); errors
                // are warnings, and a drift check repairs anything left behind.
                changes.extend(plan.forget());
                removed.push(plan.service_id);
                let mut errors: Vec<String> = Vec::new();
                for e in outcome.errors() {
                    if !errors.iter().any(|x| x == e) {
                        errors.push(e.to_owned());
                    }
                }
                errors
            } else {
                let (confirmed, errors) = plan.confirmed(outcome);
                changes.extend(confirmed);
                errors
            };
            entries.extend(errors.into_iter().map(|e| {
                Self::entry(
                    unit.sync_id,
                    LogLevel::Warning,
                    e,
                    Some(unit.server_id),
                    Some(plan.service_id),
                )
            }));
        }
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let warnings = entries.len() as u64;
        let until = now_ms() + self.config.lease.as_millis() as i64;
        let held = self
            .db
            .record_changes(
                &unit.application,
                unit.server_id,
                &changes,
                Some((unit.sync_id, batch.len() as u64, warnings)),
                Some((&self.config.node_id, until)),
            )
            .await?;
        self.log(&unit.application, entries).await;
        let revoke: Vec<i64> = removed
            .into_iter()
            .filter(|id| revocable.contains(id))
            .collect();
        if !revoke.is_empty() {
            self.db.revoke_credentials(&revoke).await?;
        }
        self.publish_sync(unit.sync_id).await;
        Ok(held)
    }

    async fn drift_loop(&self, interval: Duration, token: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(e) = self.check_drift().await {
                tracing::warn!(error = %e, "drift check failed");
            }
        }
    }

    /// List every recorded account's links through its plugin; where the panel differs from the
    /// record, forget the record and schedule a repair of that application.
    pub async fn check_drift(&self) -> Result<usize, SyncError> {
        let settings = self.config.settings();
        let mut drifted = 0;
        for plugin in self.plugins.all() {
            let app = plugin.id().to_owned();
            let mut app_drifted = 0;
            for server_id in self.db.servers_with_records(&app).await.map_err(err)? {
                let Ok(target) = self.db.server_target(server_id).await else {
                    continue;
                };
                let (groups, links) = self.db.recorded_state(server_id, &app).await.map_err(err)?;
                let mut by_account: HashMap<(i64, String), Vec<String>> = HashMap::new();
                for g in &groups {
                    by_account
                        .entry((g.service_id, g.username.clone()))
                        .or_default();
                }
                for l in &links {
                    by_account
                        .entry((l.service_id, l.username.clone()))
                        .or_default()
                        .push(l.scope.clone());
                }
                for ((service_id, username), mut recorded) in by_account {
                    let Ok(out) = plugin.list_links(&target, &settings, &username).await else {
                        continue;
                    };
                    let mut actual: Vec<String> =
                        out.value.into_iter().filter_map(|l| l.scope).collect();
                    actual.sort();
                    recorded.sort();
                    if actual != recorded {
                        self.db
                            .forget_account(&app, service_id)
                            .await
                            .map_err(err)?;
                        app_drifted += 1;
                    }
                }
            }
            if app_drifted > 0 {
                drifted += app_drifted;
                self.schedule(SyncRequest {
                    application: app,
                    kind: SyncKind::Repair,
                    service_id: None,
                    requested_by: None,
                })
                .await?;
            }
        }
        Ok(drifted)
    }
}

/// Pack plans into batches of at most `max_accounts` accounts and about `max_operations`
/// operations (an account is never split; one larger than the cap goes alone).
fn pack(
    plans: Vec<AccountPlan>,
    max_accounts: usize,
    max_operations: usize,
    cost: impl Fn(&AccountPlan) -> usize,
) -> Vec<Vec<AccountPlan>> {
    let mut batches = Vec::new();
    let mut current: Vec<AccountPlan> = Vec::new();
    let mut operations = 0;
    for plan in plans {
        let c = cost(&plan);
        if !current.is_empty()
            && (current.len() >= max_accounts.max(1) || operations + c > max_operations.max(1))
        {
            batches.push(std::mem::take(&mut current));
            operations = 0;
        }
        operations += c;
        current.push(plan);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Why a unit stopped early.
enum UnitError {
    /// Worth retrying later.
    Transient(String),
    /// Not worth retrying.
    Fatal(String),
    /// The database failed.
    Storage(storage::Error),
}

impl From<storage::Error> for UnitError {
    fn from(e: storage::Error) -> Self {
        UnitError::Storage(e)
    }
}

impl UnitError {
    fn from_runtime(e: crate::runtime::Error) -> Self {
        if e.is_transient() {
            UnitError::Transient(e.to_string())
        } else {
            UnitError::Fatal(e.to_string())
        }
    }
}

impl SyncRequests for SyncEngine {
    fn request(
        &self,
        request: SyncRequest,
    ) -> BoxFuture<'_, Result<Option<SyncSummary>, SyncError>> {
        Box::pin(self.schedule(request))
    }

    fn latest<'a>(
        &'a self,
        application: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncSummary>, SyncError>> {
        Box::pin(async move { self.db.latest_sync(application).await.map_err(err) })
    }

    fn get(&self, id: i64) -> BoxFuture<'_, Result<Option<SyncDetail>, SyncError>> {
        Box::pin(async move { self.db.sync_detail(id).await.map_err(err) })
    }
}
