//! The seam between the admin API and the sync engine.
//!
//! The API never provisions anything itself: when an admin enables or disables an application,
//! saves its links, asks for a repair, or creates or changes a service, it hands a
//! [`SyncRequest`] to the [`SyncRequests`] it was given, and shows whatever that reports
//! ([`SyncSummary`], [`SyncDetail`]) in the `sync` fields, the application `status`,
//! `GET /syncs/{id}` and the event stream. The sync engine (`host/src/sync/`) implements
//! [`SyncRequests`] and publishes progress on [`Events`]; until it is plugged in,
//! [`RecordingSyncRequests`] records the requests and reports no sync (`sync: null`, unknown sync
//! ids are 404).
//!
//! Plain types, no JSON: `api` renders them.

use std::sync::Mutex;

use futures::future::BoxFuture;
use tokio::sync::broadcast;

/// Why a sync operation was started (`kind` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncKind {
    /// Application Links were turned on: push everything.
    Enable,
    /// The link configuration changed: push it.
    Configure,
    /// Application Links were turned off: remove everything.
    Disable,
    /// One service was created or changed.
    Service,
    /// An admin asked to re-push everything (repair drift).
    Repair,
}

impl SyncKind {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Enable => "enable",
            SyncKind::Configure => "configure",
            SyncKind::Disable => "disable",
            SyncKind::Service => "service",
            SyncKind::Repair => "repair",
        }
    }
}

/// Where a sync (or one server's part of it) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncState {
    /// Waiting to run.
    Queued,
    /// Running.
    Running,
    /// Done, no warnings.
    Completed,
    /// Done, with warnings in the log.
    CompletedWithWarnings,
    /// Could not be done.
    Failed,
}

impl SyncState {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Queued => "queued",
            SyncState::Running => "running",
            SyncState::Completed => "completed",
            SyncState::CompletedWithWarnings => "completed_with_warnings",
            SyncState::Failed => "failed",
        }
    }

    /// Queued or running (the application shows `syncing`).
    pub fn is_pending(self) -> bool {
        matches!(self, SyncState::Queued | SyncState::Running)
    }
}

/// What the API asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The application.
    pub application: String,
    /// Why.
    pub kind: SyncKind,
    /// The service, for [`SyncKind::Service`].
    pub service_id: Option<i64>,
    /// The admin who caused it.
    pub requested_by: Option<i64>,
}

/// A sync operation as the application view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSummary {
    /// Id.
    pub id: i64,
    /// Application.
    pub application: String,
    /// Why it runs.
    pub kind: SyncKind,
    /// Where it stands.
    pub state: SyncState,
    /// Units of work done.
    pub done: u64,
    /// Units of work in total.
    pub total: u64,
    /// Started (ms), once running.
    pub started_at: Option<i64>,
    /// Finished (ms), once done.
    pub finished_at: Option<i64>,
}

/// One server's part of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerProgress {
    /// The server.
    pub server_id: i64,
    /// Where it stands.
    pub state: SyncState,
    /// Done.
    pub done: u64,
    /// Total.
    pub total: u64,
    /// The last error on that server.
    pub last_error: Option<String>,
}

/// A sync with its per-server progress (`GET /syncs/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDetail {
    /// The summary.
    pub summary: SyncSummary,
    /// Per server.
    pub servers: Vec<ServerProgress>,
}

/// Why the sync engine could not take or answer a request.
#[derive(Debug, thiserror::Error)]
#[error("sync engine: {0}")]
pub struct SyncError(pub String);

/// What the sync engine offers the API.
pub trait SyncRequests: Send + Sync + 'static {
    /// Schedule the work for a request; returns the sync that will do it, or `None` when nothing
    /// needs doing (e.g. a service change on a disabled application).
    fn request(
        &self,
        request: SyncRequest,
    ) -> BoxFuture<'_, Result<Option<SyncSummary>, SyncError>>;

    /// The latest sync of an application, if any.
    fn latest<'a>(
        &'a self,
        application: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncSummary>, SyncError>>;

    /// One sync with its per-server progress.
    fn get(&self, id: i64) -> BoxFuture<'_, Result<Option<SyncDetail>, SyncError>>;
}

/// Stand-in until the sync engine is plugged in: records every request, reports no syncs.
#[derive(Debug, Default)]
pub struct RecordingSyncRequests {
    requests: Mutex<Vec<SyncRequest>>,
}

impl RecordingSyncRequests {
    /// A new, empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<SyncRequest> {
        self.requests
            .lock()
            .expect("recorder lock poisoned")
            .clone()
    }
}

impl SyncRequests for RecordingSyncRequests {
    fn request(
        &self,
        request: SyncRequest,
    ) -> BoxFuture<'_, Result<Option<SyncSummary>, SyncError>> {
        tracing::info!(
            application = %request.application,
            kind = request.kind.as_str(),
            service_id = request.service_id,
            "sync requested (no sync engine attached: recorded only)"
        );
        self.requests
            .lock()
            .expect("recorder lock poisoned")
            .push(request);
        Box::pin(async { Ok(None) })
    }

    fn latest<'a>(
        &'a self,
        _application: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncSummary>, SyncError>> {
        Box::pin(async { Ok(None) })
    }

    fn get(&self, _id: i64) -> BoxFuture<'_, Result<Option<SyncDetail>, SyncError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Something the event stream (`GET /api/v1/events`) tells admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An application's state changed (enabled, links, status): clients re-read it.
    Application {
        /// The application.
        id: String,
    },
    /// A sync progressed.
    Sync(SyncSummary),
}

/// The process's event bus: the API and the sync engine publish, each `GET /events` subscribes.
#[derive(Debug, Clone)]
pub struct Events {
    sender: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    /// A bus keeping the last 1024 events for slow subscribers.
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
        }
    }

    /// Publish (dropped when nobody listens).
    pub fn publish(&self, event: Event) {
        let _ = self.sender.send(event);
    }

    /// Listen from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
