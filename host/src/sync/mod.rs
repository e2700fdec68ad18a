//! The sync engine: makes the desired state (enabled applications, their link configuration,
//! the services) true on every panel, and keeps it true.
//!
//! Every change becomes durable work first, then workers carry it out ([`SyncEngine::run`]).
//! An admin's write is stored with the [`Change`] it causes in one transaction (the outbox,
//! see [`crate::sync_port`]); [`SyncEngine::request`], the one entry point for "this change
//! happened", asks [`work_for`] which syncs the change causes and drains it into them (a sync and
//! one unit per server) in one transaction. Changes a crash left in the outbox are drained when
//! the engine starts, and any a request missed, by a background pass. A worker takes a server's lease
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
use crate::storage::{self, Db, NewLogEntry, NewSync, Server, Service, ServiceFilter, now_ms};
use crate::sync_port::{
    Change, ChangeId, Event, Events, SyncDetail, SyncKind, SyncRequest, SyncState, SyncSummary,
    Unit,
};
pub use plan::{AccountPlan, Desired, DesiredLink, LinkContext, link_handle, plan_server};

/// Why the sync engine could not take or answer a request.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The database failed while the engine was doing `context`.
    #[error("{context}: {source}")]
    Storage {
        /// What the engine was doing, e.g. "draining change 12 (links_saved of cpanel)".
        context: String,
        #[source]
        source: storage::Error,
    },
}

/// Adds what the engine was doing to a storage error.
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, SyncError>;
}

impl<T> Context<T> for Result<T, storage::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, SyncError> {
        self.map_err(|source| SyncError::Storage {
            context: what(),
            source,
        })
    }
}

/// What the sync engine offers the API. The engine implements it; tests bring stand-ins.
pub trait SyncRequests: Send + Sync + 'static {
    /// "This change happened": drain the queued change into the syncs it causes (see
    /// [`work_for`]) and return them (none when nothing needs doing, e.g. a service change on
    /// a disabled application, or when another worker drained it first).
    fn request(&self, change: ChangeId) -> BoxFuture<'_, Result<Vec<SyncSummary>, SyncError>>;

    /// The latest sync of an application, if any.
    fn latest<'a>(
        &'a self,
        application: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncSummary>, SyncError>>;

    /// One sync with its per-server progress.
    fn get(&self, id: i64) -> BoxFuture<'_, Result<Option<SyncDetail>, SyncError>>;

    /// Whether any sync of the application is queued or running (its badge shows `syncing`,
    /// whichever sync is the latest).
    fn syncing<'a>(&'a self, application: &'a str) -> BoxFuture<'a, Result<bool, SyncError>>;
}

/// Which syncs a change causes: the one place that decides it. A change on an application
/// whose links are disabled causes nothing (its panels hold nothing to keep in step), except
/// turning them off, which removes what is there.
pub async fn work_for(
    db: &Db,
    change: &Change,
    requested_by: Option<i64>,
) -> Result<Vec<SyncRequest>, storage::Error> {
    let work = |application: &str, kind: SyncKind, service_id: Option<i64>| SyncRequest {
        application: application.to_owned(),
        kind,
        service_id,
        servers: None,
        requested_by,
    };
    let mut out = Vec::new();
    match change {
        Change::Enabled { application } => out.push(work(application, SyncKind::Enable, None)),
        Change::Disabled { application } => out.push(work(application, SyncKind::Disable, None)),
        Change::LinksSaved { application } => {
            if enabled(db, application).await? {
                out.push(work(application, SyncKind::Configure, None));
            }
        }
        Change::RepairRequested { application } => {
            if enabled(db, application).await? {
                out.push(work(application, SyncKind::Repair, None));
            }
        }
        Change::DriftFound {
            application,
            server_id,
        }
        | Change::ServerRetry {
            application,
            server_id,
        } => {
            if enabled(db, application).await? {
                out.push(SyncRequest {
                    servers: Some(vec![*server_id]),
                    ..work(application, SyncKind::Repair, None)
                });
            }
        }
        Change::ServerChanged { applications, .. } => {
            for application in applications {
                if enabled(db, application).await? {
                    out.push(work(application, SyncKind::Repair, None));
                }
            }
        }
        Change::ServiceChanged {
            service_id,
            servers,
        } => {
            let mut applications: Vec<String> = Vec::new();
            for server in servers {
                let module = db.server(*server).await?.module;
                if !applications.contains(&module) {
                    applications.push(module);
                }
            }
            for application in applications {
                if enabled(db, &application).await? {
                    out.push(work(&application, SyncKind::Service, Some(*service_id)));
                }
            }
        }
        Change::CredentialRotated { service_id } => {
            let server = db.service(*service_id).await?.server_id;
            let application = db.server(server).await?.module;
            if enabled(db, &application).await? {
                out.push(work(&application, SyncKind::Service, Some(*service_id)));
            }
        }
    }
    Ok(out)
}

async fn enabled(db: &Db, application: &str) -> Result<bool, storage::Error> {
    match db.application(application).await {
        Ok(app) => Ok(app.enabled),
        Err(storage::Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The change a new service causes: it is pushed to its server.
pub fn service_added(service: &Service) -> Option<Change> {
    Some(Change::ServiceChanged {
        service_id: service.id,
        servers: vec![service.server_id],
    })
}

/// The change a service's update causes: one when anything its panel sees changed (owner,
/// server, user name, domain, status), on the server it was on and the one it is on now.
pub fn service_updated(before: &Service, after: &Service) -> Option<Change> {
    let seen = |s: &Service| {
        (
            s.client_id,
            s.server_id,
            s.username.clone(),
            s.domain.clone(),
            s.status,
        )
    };
    (seen(before) != seen(after)).then(|| Change::ServiceChanged {
        service_id: after.id,
        servers: if before.server_id == after.server_id {
            vec![after.server_id]
        } else {
            vec![before.server_id, after.server_id]
        },
    })
}

/// The change a new server causes: its application is pushed again when it is enabled.
pub fn server_added(server: &Server) -> Option<Change> {
    server.enabled.then(|| Change::ServerChanged {
        server_id: server.id,
        applications: vec![server.module.clone()],
    })
}

/// The change a server's update causes: the application it left is pushed again (its accounts
/// there are removed), and its application now is pushed again when anything that reaches the
/// panel changed (module, address, user, token, enabled).
pub fn server_updated(before: &Server, after: &Server, token_replaced: bool) -> Option<Change> {
    let reach = |s: &Server| {
        (
            s.module.clone(),
            s.hostname.clone(),
            s.port,
            s.secure,
            s.username.clone(),
            s.enabled,
        )
    };
    let mut applications = Vec::new();
    if before.module != after.module {
        applications.push(before.module.clone());
    }
    if reach(before) != reach(after) || token_replaced {
        applications.push(after.module.clone());
    }
    (!applications.is_empty()).then_some(Change::ServerChanged {
        server_id: after.id,
        applications,
    })
}

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
    /// Most accounts per plugin call, on this host's side; the plugin's own
    /// `limits.accounts-per-call` caps it further. A call also carries at most the plugin's
    /// `limits.operations-per-request` panel operations (one request's worth), so a small
    /// change packs many accounts into one request.
    pub batch_accounts: usize,
    /// How long a server's lease lasts without renewal.
    pub lease: Duration,
    /// How often idle workers look for work other hosts queued.
    pub poll_interval: Duration,
    /// First retry delay after a transient failure; doubles each time, with jitter.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How long a server's unit may go on failing transiently without progress before it
    /// fails (a batch pushed starts the window again).
    pub retry_window: Duration,
    /// Retries of a failed panel call within one attempt, after `retry_base`, then twice
    /// that, … (the calls are idempotent: reads, upserts and removals).
    pub in_attempt_retries: u32,
    /// How often servers whose last sync failed are tried again, by themselves; `None`: only
    /// when an admin asks.
    pub failed_retry_interval: Option<Duration>,
    /// A support check younger than this is trusted (enable and repair always check again).
    pub support_ttl: Duration,
    /// Interval of the drift check; `None` disables it.
    pub drift_interval: Option<Duration>,
    /// A change still in the outbox this long after it was queued is drained by the engine's
    /// background pass (normally the request that queued it drains it at once).
    pub outbox_grace: Duration,
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
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(2),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            retry_window: Duration::from_secs(15 * 60),
            in_attempt_retries: 2,
            failed_retry_interval: Some(Duration::from_secs(10 * 60)),
            support_ttl: Duration::from_secs(600),
            drift_interval: None,
            outbox_grace: Duration::from_secs(10),
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
    /// Held by a worker while it looks for a server: the share check counts this host's leases,
    /// so two of its workers must not both count before either has taken one (all of them wake
    /// at once when work arrives, and would take more than this host's share).
    claiming: tokio::sync::Mutex<()>,
    batches: std::sync::atomic::AtomicU64,
    /// When the engine was built: the outbox drain at start takes the changes older than this.
    created_ms: i64,
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

impl SyncEngine {
    /// A new engine.
    pub fn new(db: Db, plugins: Arc<Plugins>, events: Events, config: SyncConfig) -> Self {
        Self {
            db,
            plugins,
            events,
            config,
            wake: Notify::new(),
            claiming: tokio::sync::Mutex::new(()),
            batches: std::sync::atomic::AtomicU64::new(0),
            created_ms: now_ms(),
        }
    }

    /// The event bus the engine publishes on (with what other hosts tell it).
    pub fn events(&self) -> &Events {
        &self.events
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

    /// The log's notice that no server of the application supports Application Links; after
    /// an enable, they stay off ([`SyncEngine::keep_off_when_unsupported`]).
    fn none_supported(sync_id: i64, name: &str, kind: SyncKind) -> NewLogEntry {
        let message = if kind == SyncKind::Enable {
            format!(
                "No server of {name} supports Application Links; they stay off until a server \
                 that supports them is added and they are enabled again"
            )
        } else {
            format!("No server of {name} supports Application Links")
        };
        Self::entry(sync_id, LogLevel::Notice, message, None, None)
    }

    /// How many enabled servers of the application passed their last support check.
    async fn supported_servers(&self, application: &str) -> usize {
        self.db
            .servers_of(application, true)
            .await
            .map(|s| s.iter().filter(|s| s.supported == Some(true)).count())
            .unwrap_or(0)
    }

    /// After an enable has ended with no server that supports Application Links, they stay
    /// off (`panel-protocol.md`: a supported server must exist first), so the application is
    /// never shown active with nothing to serve; the notice in the log says why.
    async fn keep_off_when_unsupported(&self, summary: &SyncSummary) {
        if summary.kind != SyncKind::Enable
            || matches!(summary.state, SyncState::Queued | SyncState::Running)
            || self.supported_servers(&summary.application).await > 0
        {
            return;
        }
        match self.db.keep_links_off(&summary.application).await {
            Ok(true) => tracing::info!(
                application = %summary.application,
                "no server supports Application Links: they stay off"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not leave Application Links off"),
        }
    }

    /// "This change happened": the one entry point, used by every API handler and by the
    /// engine itself (the drift check, and the outbox drain at start). Reads the queued change,
    /// asks [`work_for`] which syncs it causes, and drains it into them in one transaction;
    /// publishes the events and wakes the workers. A change drained already (by another worker
    /// or host) causes nothing more here.
    pub async fn request(&self, id: ChangeId) -> Result<Vec<SyncSummary>, SyncError> {
        let Some(pending) = self
            .db
            .pending_change(id)
            .await
            .context(|| format!("reading change {}", id.0))?
        else {
            return Ok(Vec::new());
        };
        let what = || format!("draining change {} ({:?})", id.0, pending.change);
        let requests = work_for(&self.db, &pending.change, pending.requested_by)
            .await
            .context(what)?;
        let mut syncs = Vec::with_capacity(requests.len());
        for request in requests {
            syncs.push(self.new_sync(request).await.context(what)?);
        }
        let Some(summaries) = self.db.drain_change(id, &syncs).await.context(what)? else {
            return Ok(Vec::new());
        };
        let mut applications: Vec<&str> = match &pending.change {
            Change::Enabled { application }
            | Change::Disabled { application }
            | Change::LinksSaved { application }
            | Change::RepairRequested { application }
            | Change::DriftFound { application, .. }
            | Change::ServerRetry { application, .. } => vec![application.as_str()],
            Change::ServerChanged { applications, .. } => {
                applications.iter().map(String::as_str).collect()
            }
            Change::ServiceChanged { .. } | Change::CredentialRotated { .. } => Vec::new(),
        };
        for summary in &summaries {
            applications.push(&summary.application);
        }
        applications.sort_unstable();
        applications.dedup();
        let applications: Vec<String> = applications.into_iter().map(str::to_owned).collect();
        for summary in &summaries {
            self.keep_off_when_unsupported(summary).await;
            self.announce(Event::Sync(summary.clone())).await;
        }
        for id in applications {
            self.announce(Event::Application { id }).await;
        }
        if !summaries.is_empty() {
            self.wake.notify_waiters();
            // Other hosts' workers take their share at once instead of at their next poll.
            self.tell_peers(Peer::Work).await;
        }
        Ok(summaries)
    }

    /// Drain every change left in the outbox since before `before_ms` (by a crash, or a request
    /// whose caller went away). Returns how many syncs that caused.
    pub async fn drain_outbox(&self, before_ms: i64) -> Result<usize, SyncError> {
        let pending = self
            .db
            .pending_changes(before_ms)
            .await
            .context(|| "listing the change outbox".to_owned())?;
        let mut syncs = 0;
        for id in pending {
            syncs += self.request(id).await?.len();
        }
        Ok(syncs)
    }

    /// A sync for one request: the servers that may need work (a service's: the server it is
    /// on and those it has a record on; an application's: its enabled servers and those with a
    /// record), and its log entries.
    async fn new_sync(&self, request: SyncRequest) -> Result<NewSync, storage::Error> {
        let app = &request.application;
        let mut servers: Vec<i64> = Vec::new();
        match (&request.servers, request.kind, request.service_id) {
            (Some(only), _, _) => servers.clone_from(only),
            (None, SyncKind::Service, Some(service_id)) => {
                // work_for asks for a service's sync only while its application is enabled.
                let service = self.db.service(service_id).await?;
                let server = self.db.server(service.server_id).await?;
                if server.enabled && server.module == *app {
                    servers.push(service.server_id);
                }
                servers.extend(self.db.servers_with_records_of_service(service_id).await?);
            }
            (None, SyncKind::Service, None) => {}
            (None, _, _) => {
                servers.extend(self.db.servers_of(app, true).await?.iter().map(|s| s.id));
                servers.extend(self.db.servers_with_records(app).await?);
            }
        }
        servers.sort_unstable();
        servers.dedup();

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
        let opening = vec![NewLogEntry {
            sync_id: None,
            level: LogLevel::Debug,
            message: what,
            server_id: None,
            service_id: request.service_id,
        }];
        let closing = if servers.is_empty() {
            vec![
                Self::none_supported(0, &name, request.kind),
                Self::entry(0, LogLevel::Debug, "Process completed", None, None),
            ]
        } else {
            Vec::new()
        };
        Ok(NewSync {
            // A service's sync and a drift repair of one server add to the log of the last
            // operation; everything else starts a fresh one.
            fresh_log: request.kind != SyncKind::Service && request.servers.is_none(),
            request,
            servers,
            opening,
            closing,
        })
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
        // Changes a crash left between "saved" and "scheduled" (changes queued since this engine
        // exists are drained by whoever queued them).
        match self.drain_outbox(self.created_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(syncs = n, "drained changes left in the outbox"),
            Err(e) => tracing::warn!(error = %e, "could not drain the change outbox"),
        }
        let token = tokio_util::sync::CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        {
            let engine = self.clone();
            let token = token.clone();
            tasks.spawn(async move { engine.outbox_loop(token).await });
        }
        {
            // Listening before this host counts among the live ones: once it does, other hosts
            // leave it a share of their work, and tell it so.
            let heard = self.db.peer_messages().await;
            let engine = self.clone();
            let token = token.clone();
            tasks.spawn(async move { engine.hear_peers(heard, token).await });
        }
        // Counted among the live hosts before the first claim.
        if let Err(e) = self.db.heartbeat(&self.config.node_id, now_ms()).await {
            tracing::warn!(error = %e, "could not register this host");
        }
        {
            let engine = self.clone();
            let token = token.clone();
            tasks.spawn(async move { engine.heartbeat(token).await });
        }
        for _ in 0..self.config.workers.max(1) {
            let engine = self.clone();
            let token = token.clone();
            tasks.spawn(async move { engine.worker(token).await });
        }
        if let Some(interval) = self.config.failed_retry_interval {
            let engine = self.clone();
            let token = token.clone();
            tasks.spawn(async move { engine.failed_retry_loop(interval, token).await });
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

    async fn outbox_loop(&self, token: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
            let before = now_ms() - self.config.outbox_grace.as_millis() as i64;
            if let Err(e) = self.drain_outbox(before).await {
                tracing::warn!(error = %e, "could not drain the change outbox");
            }
        }
    }

    async fn worker(&self, token: tokio_util::sync::CancellationToken) {
        while !token.is_cancelled() {
            let claimed = {
                let _turn = self.claiming.lock().await;
                let now = now_ms();
                let until = now + self.config.lease.as_millis() as i64;
                // A host whose heartbeat is older than a lease is gone.
                let live_since = now - self.config.lease.as_millis() as i64;
                self.db
                    .claim_server(&self.config.node_id, until, live_since)
                    .await
            };
            match claimed {
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
        // The lease is renewed for as long as this host works the server, not only when a batch
        // is recorded: one plugin call may take longer than a lease (a slow panel, up to the
        // runtime's wall deadline), and another host must not take the server over mid-call
        // and push the same batch again. A lost lease stops the work at the next batch.
        let keeper = LeaseKeeper::start(
            self.db.clone(),
            server_id,
            owner.clone(),
            self.config.lease,
            token.child_token(),
        );
        let token = &keeper.token;
        loop {
            if keeper.lost() {
                return;
            }
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
                UnitEnd::Stopped if keeper.lost() => return,
                UnitEnd::Stopped => break,
                UnitEnd::Done | UnitEnd::Retry | UnitEnd::Failed => {}
            }
        }
        drop(keeper);
        if let Err(e) = self.db.release_lease(server_id, owner).await {
            tracing::warn!(server_id, error = %e, "could not release a lease");
        }
        // Work that is due later (a retry) or that arrived meanwhile is found by the next poll.
        self.wake.notify_waiters();
    }

    /// A plugin call, repeated up to `in_attempt_retries` times after a transient failure (with
    /// a short, doubling pause). Only for idempotent calls: every plugin call is (reads, upserts
    /// and removals), so a panel that failed after doing the work is simply asked again.
    async fn retrying<T, F>(&self, mut call: impl FnMut() -> F) -> Result<T, crate::runtime::Error>
    where
        F: Future<Output = Result<T, crate::runtime::Error>>,
    {
        let mut pause = self.config.retry_base;
        let mut retries = self.config.in_attempt_retries;
        loop {
            match call().await {
                Err(e) if e.is_transient() && retries > 0 => {
                    retries -= 1;
                    tracing::debug!(error = %e, "transient failure; asking again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.config.retry_max);
                }
                result => return result,
            }
        }
    }

    /// Every `interval`, queue a retry of each server whose last sync failed (and that has no
    /// open work), so that a panel that comes back converges without an admin.
    async fn failed_retry_loop(
        &self,
        interval: Duration,
        token: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(e) = self.retry_failed().await {
                tracing::warn!(error = %e, "could not retry failed servers");
            }
        }
    }

    /// Queue and request a retry of each server whose last sync failed. Returns how many syncs
    /// that started.
    pub async fn retry_failed(&self) -> Result<usize, SyncError> {
        let failed = self
            .db
            .failed_servers()
            .await
            .context(|| "listing failed servers".to_owned())?;
        let mut started = 0;
        for (server_id, application) in failed {
            let change = Change::ServerRetry {
                application,
                server_id,
            };
            let queued = self
                .db
                .enqueue_change(&change, None)
                .await
                .context(|| format!("queueing {change:?}"))?;
            started += self.request(queued).await?.len();
        }
        Ok(started)
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
            self.announce(Event::Sync(summary)).await;
            self.announce(Event::Application { id: app }).await;
        }
    }

    /// Publish an event on this host's bus and tell the other hosts, whose buses carry it to
    /// their admins too.
    async fn announce(&self, event: Event) {
        let peer = match &event {
            Event::Sync(summary) => Peer::Sync(summary.id),
            Event::Application { id } => Peer::Application(id.clone()),
        };
        self.events.publish(event);
        self.tell_peers(peer).await;
    }

    async fn tell_peers(&self, message: Peer) {
        if let Err(e) = self.db.tell_peers(&message.to_string()).await {
            tracing::debug!(error = %e, "could not tell the other hosts");
        }
    }

    /// What other hosts tell this one: wake the workers, carry their events to this host's bus.
    async fn hear_peers(
        &self,
        mut heard: tokio::sync::broadcast::Receiver<String>,
        token: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let message = tokio::select! {
                () = token.cancelled() => return,
                message = heard.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Hints were lost: look for work now rather than at the next poll.
                    self.wake.notify_waiters();
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            match Peer::parse(&message) {
                Some(Peer::Work) => self.wake.notify_waiters(),
                Some(Peer::Sync(id)) => {
                    if let Ok(Some(summary)) = self.db.sync_summary(id).await {
                        self.events.publish(Event::Sync(summary));
                    }
                }
                Some(Peer::Application(id)) => self.events.publish(Event::Application { id }),
                None => {}
            }
        }
    }

    /// This host's heartbeat, which counts it among the hosts sharing the work.
    async fn heartbeat(&self, token: tokio_util::sync::CancellationToken) {
        let every = (self.config.lease / 3).max(Duration::from_millis(10));
        loop {
            if let Err(e) = self.db.heartbeat(&self.config.node_id, now_ms()).await {
                tracing::warn!(error = %e, "could not renew this host's heartbeat");
            }
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
        if let Err(e) = self.db.leave(&self.config.node_id).await {
            tracing::debug!(error = %e, "could not sign this host off");
        }
    }

    async fn finish(&self, unit: &Unit, failed_with: Option<&str>) {
        // What the log says if this unit closes the sync.
        let mut closing = Vec::new();
        let supported = self.supported_servers(&unit.application).await;
        if supported == 0 && unit.kind != SyncKind::Disable {
            closing.push(Self::none_supported(
                unit.sync_id,
                &self.app_name(&unit.application),
                unit.kind,
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
                self.keep_off_when_unsupported(&summary).await;
                self.announce(Event::Sync(summary)).await;
                self.announce(Event::Application { id: app }).await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(sync_id = unit.sync_id, error = %e, "could not finish a unit"),
        }
    }

    /// Carry out one unit: one sync's work on one server.
    async fn run_unit(&self, unit: &Unit, token: &tokio_util::sync::CancellationToken) -> UnitEnd {
        match self.try_unit(unit, token).await {
            Ok(end) => end,
            Err(UnitError::Transient(e)) => {
                let message = e.to_string();
                let attempts = unit.attempts + 1;
                let now = now_ms();
                let stalled_for = now - unit.progress_at.unwrap_or(now);
                if stalled_for >= self.config.retry_window.as_millis() as i64 {
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
            Err(e @ (UnitError::Plugin(_) | UnitError::NoPlugin(_))) => {
                self.fail_unit(unit, &e.to_string()).await;
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
        if let Err(e) = self.db.set_server_sync_state(unit.server_id, true).await {
            tracing::warn!(server_id = unit.server_id, error = %e, "could not mark the server failed");
        }
        self.finish(unit, Some(message)).await;
    }

    async fn try_unit(
        &self,
        unit: &Unit,
        token: &tokio_util::sync::CancellationToken,
    ) -> Result<UnitEnd, UnitError> {
        let app = &unit.application;
        let Some(plugin) = self.plugins.get(app) else {
            return Err(UnitError::NoPlugin(app.clone()));
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
                match self.retrying(|| plugin.check_server(&target)).await {
                    Ok(out) => {
                        self.log(app, self.plugin_lines(unit, out.logs).collect())
                            .await;
                        self.db.record_support(unit.server_id, &out.value).await?;
                        if !out.value.supported {
                            self.db
                                .start_unit(unit.sync_id, unit.server_id, 0, &[])
                                .await?;
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
                    Err(e) => return Err(UnitError::from(e)),
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
            &plan::LinkContext {
                public_url: &self.config.public_url,
                client_area_url: &self.config.client_area_url,
                application: app,
                sign_in: plugin.description.sign_in,
            },
        );
        self.db
            .start_unit(
                unit.sync_id,
                unit.server_id,
                plans.len() as u64,
                &links.iter().map(|l| l.scope.as_str()).collect::<Vec<_>>(),
            )
            .await?;
        self.publish_sync(unit.sync_id).await;

        // Removals first (a renamed account's old record must be gone before the new one is
        // written), then pushes; each phase in batches, a few in flight per server.
        let settings = self.config.settings();
        let (removals, pushes): (Vec<_>, Vec<_>) = plans.into_iter().partition(|p| p.deprovision);
        for phase in [removals, pushes] {
            let removal_cost = plugin.description.links.len() + 1;
            // Batches sized by the plugin's own limits (and this host's cap on accounts).
            let limits = plugin.description.limits;
            let batches = pack(
                phase,
                self.config
                    .batch_accounts
                    .min(limits.accounts_per_call as usize),
                limits.operations_per_request as usize,
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
                let (target, settings) = (&target, &settings);
                async move {
                    // The application's active version now: an activation during a sync takes
                    // over from the next batch, and a batch in flight ends on its own version.
                    let plugin = self
                        .plugins
                        .get(&unit.application)
                        .ok_or_else(|| UnitError::NoPlugin(unit.application.clone()))?;
                    self.push_batch(&plugin, target, settings, unit, batch, revocable)
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

    /// A plugin's `log.write` lines as entries of the application log (the contract's promise),
    /// attributed to the unit's sync and server.
    fn plugin_lines(
        &self,
        unit: &Unit,
        logs: Vec<crate::adapter::PluginLog>,
    ) -> impl Iterator<Item = NewLogEntry> + use<'_> {
        let (sync_id, server_id) = (unit.sync_id, unit.server_id);
        logs.into_iter()
            .map(move |l| Self::entry(sync_id, l.level, l.message, Some(server_id), None))
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
            self.retrying(|| plugin.deprovision(target, settings, &usernames))
                .await
        } else {
            // The server's link templates once per call; each account carries its own values.
            let templates = batch
                .first()
                .map(|p| p.templates().to_vec())
                .unwrap_or_default();
            self.retrying(|| {
                let work: Vec<_> = batch.iter().map(AccountPlan::work).collect();
                plugin.provision(target, settings, templates.clone(), work)
            })
            .await
        }
        .map_err(UnitError::from)?;
        // The plugin's own lines come first, as it wrote them.
        entries.extend(self.plugin_lines(unit, outcomes.logs));
        let outcomes = outcomes.value;
        let mut warnings = 0;
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
            warnings += errors.len() as u64;
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
        let until = now_ms() + self.config.lease.as_millis() as i64;
        let held = self
            .db
            .record_changes(
                &unit.application,
                unit.server_id,
                &changes,
                Some((unit.sync_id, batch.len() as u64, warnings)),
                Some((&self.config.node_id, until)),
                &entries,
            )
            .await?;
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
    /// record, forget those accounts' record and push them again (a repair of that server).
    /// Each server is checked under its lease, like every other writer of its record: a server
    /// another host (or a worker of this one) is working on is skipped this round. Returns how
    /// many accounts drifted.
    pub async fn check_drift(&self) -> Result<usize, SyncError> {
        let settings = self.config.settings();
        // An owner of its own: a lease the drift check holds is never mistaken for a worker's.
        let owner = format!("{}/drift", self.config.node_id);
        let mut drifted = 0;
        for plugin in self.plugins.all() {
            let app = plugin.id().to_owned();
            let servers = self
                .db
                .servers_with_records(&app)
                .await
                .context(|| format!("listing the servers with records of {app}"))?;
            for server_id in servers {
                let until = now_ms() + self.config.lease.as_millis() as i64;
                let taken = self
                    .db
                    .take_lease(server_id, &owner, until)
                    .await
                    .context(|| format!("taking the lease of server {server_id}"))?;
                if !taken {
                    tracing::debug!(server_id, "drift check: server busy, skipped this round");
                    continue;
                }
                let found = self
                    .drift_of_server(&plugin, &settings, server_id, &owner)
                    .await;
                let queued = match &found {
                    Ok(accounts) if !accounts.is_empty() => Some(
                        self.db
                            .forget_drifted(&app, server_id, accounts)
                            .await
                            .context(|| {
                                format!("forgetting drifted accounts of server {server_id}")
                            }),
                    ),
                    _ => None,
                };
                if let Err(e) = self.db.release_lease(server_id, &owner).await {
                    tracing::warn!(server_id, error = %e, "could not release a lease");
                }
                let accounts = found?;
                if let Some(queued) = queued {
                    drifted += accounts.len();
                    self.request(queued?).await?;
                }
            }
        }
        self.wake.notify_waiters();
        Ok(drifted)
    }

    /// The accounts of one server (whose lease `owner` holds) whose links on the panel differ
    /// from the record. An account whose panel cannot be read is left for the next round. Stops
    /// early, with what it found so far, when the lease is lost.
    async fn drift_of_server(
        &self,
        plugin: &Plugin,
        settings: &Settings,
        server_id: i64,
        owner: &str,
    ) -> Result<Vec<i64>, SyncError> {
        let app = plugin.id();
        let target = match self.db.server_target(server_id).await {
            Ok(target) => target,
            Err(storage::Error::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).context(|| format!("reading server {server_id}"));
            }
        };
        let (groups, links) = self
            .db
            .recorded_state(server_id, app)
            .await
            .context(|| format!("reading the record of server {server_id}"))?;
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
        let mut drifted = Vec::new();
        for (checked, ((service_id, username), mut recorded)) in by_account.into_iter().enumerate()
        {
            if checked > 0 && checked % 50 == 0 {
                let until = now_ms() + self.config.lease.as_millis() as i64;
                let held = self
                    .db
                    .renew_lease(server_id, owner, until)
                    .await
                    .context(|| format!("renewing the lease of server {server_id}"))?;
                if !held {
                    break;
                }
            }
            let Ok(out) = plugin.list_links(&target, settings, &username).await else {
                continue;
            };
            let mut actual: Vec<String> = out.value.into_iter().filter_map(|l| l.scope).collect();
            actual.sort();
            recorded.sort();
            if actual != recorded {
                drifted.push(service_id);
            }
        }
        Ok(drifted)
    }
}

/// What the sync engines of the hosts sharing a database tell each other (see
/// [`Db::tell_peers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Peer {
    /// Work was queued: look for it now.
    Work,
    /// A sync progressed: re-read it and publish it.
    Sync(i64),
    /// An application's state changed.
    Application(String),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Work => f.write_str("sync.work"),
            Peer::Sync(id) => write!(f, "sync.progress {id}"),
            Peer::Application(id) => write!(f, "sync.application {id}"),
        }
    }
}

impl Peer {
    fn parse(message: &str) -> Option<Self> {
        let (kind, rest) = message.split_once(' ').unwrap_or((message, ""));
        match kind {
            "sync.work" => Some(Peer::Work),
            "sync.progress" => rest.parse().ok().map(Peer::Sync),
            "sync.application" if !rest.is_empty() => Some(Peer::Application(rest.to_owned())),
            _ => None,
        }
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
#[derive(Debug, thiserror::Error)]
enum UnitError {
    /// The plugin failed in a way worth retrying later (a timeout, a 5xx, a refused connection).
    #[error(transparent)]
    Transient(crate::runtime::Error),
    /// The plugin failed in a way a retry would not mend.
    #[error(transparent)]
    Plugin(crate::runtime::Error),
    /// No plugin serves the unit's application.
    #[error("no plugin is installed for the application {0}")]
    NoPlugin(String),
    /// The database failed: the unit is left as it is and taken up again after the lease
    /// expires.
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

impl From<crate::runtime::Error> for UnitError {
    fn from(e: crate::runtime::Error) -> Self {
        if e.is_transient() {
            UnitError::Transient(e)
        } else {
            UnitError::Plugin(e)
        }
    }
}

impl SyncRequests for SyncEngine {
    fn request(&self, change: ChangeId) -> BoxFuture<'_, Result<Vec<SyncSummary>, SyncError>> {
        Box::pin(SyncEngine::request(self, change))
    }

    fn latest<'a>(
        &'a self,
        application: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncSummary>, SyncError>> {
        Box::pin(async move {
            self.db
                .latest_sync(application)
                .await
                .context(|| format!("reading the latest sync of {application}"))
        })
    }

    fn get(&self, id: i64) -> BoxFuture<'_, Result<Option<SyncDetail>, SyncError>> {
        Box::pin(async move {
            self.db
                .sync_detail(id)
                .await
                .context(|| format!("reading sync {id}"))
        })
    }

    fn syncing<'a>(&'a self, application: &'a str) -> BoxFuture<'a, Result<bool, SyncError>> {
        Box::pin(async move {
            self.db
                .application_syncing(application)
                .await
                .context(|| format!("reading whether {application} is syncing"))
        })
    }
}

/// Renews a server's lease in the background while a worker holds it (every third of a lease),
/// on a task of its own: it never waits on the worker's futures, so a batch suspended inside a
/// SQLite transaction cannot hold it up. When the lease turns out lost (another host took the
/// server after this one stalled), `token` is cancelled and the worker stops at its next batch.
/// Dropping it stops the renewals.
struct LeaseKeeper {
    token: tokio_util::sync::CancellationToken,
    lost: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    fn start(
        db: Db,
        server_id: i64,
        owner: String,
        lease: Duration,
        token: tokio_util::sync::CancellationToken,
    ) -> Self {
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let every = (lease / 3).max(Duration::from_millis(10));
        let task = tokio::spawn({
            let (token, lost) = (token.clone(), lost.clone());
            async move {
                loop {
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    let until = now_ms() + lease.as_millis() as i64;
                    match db.renew_lease(server_id, &owner, until).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(server_id, "lost the lease of a server mid-work");
                            lost.store(true, std::sync::atomic::Ordering::Relaxed);
                            token.cancel();
                            return;
                        }
                        // The database is unreachable: try again at the next tick; a lease that
                        // expires meanwhile is found lost then (or by the batch's own record).
                        Err(e) => {
                            tracing::warn!(server_id, error = %e, "could not renew a lease");
                        }
                    }
                }
            }
        });
        Self { token, lost, task }
    }

    fn lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
