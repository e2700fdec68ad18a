//! The sync engine's vocabulary: what a change is, what work it causes, what the record of the
//! panels holds, and how a sync is reported. Plain types with no I/O, shared by [`crate::api`]
//! (which renders them), [`crate::storage`] (which stores them) and [`crate::sync`] (which
//! decides and carries out the work). This module depends on nothing else of the host, so the
//! dependencies point one way: `api` → `sync` → `storage` → `sync_port`.
//!
//! The flow of a change: an admin's write (saved links, a service changed, …) is stored by
//! `storage` together with the [`Change`] it causes, in one transaction (the change outbox).
//! [`crate::sync::SyncEngine::request`] then turns the change into syncs: one per application
//! that needs work, each with one unit per server. A process that dies in between leaves the
//! change in the outbox, and the engine drains it when it starts: a saved change is always
//! pushed.

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
    /// Re-push everything (an admin asked, a server changed, or the drift check found a
    /// difference).
    Repair,
}

impl SyncKind {
    const ALL: [SyncKind; 5] = [
        SyncKind::Enable,
        SyncKind::Configure,
        SyncKind::Disable,
        SyncKind::Service,
        SyncKind::Repair,
    ];

    /// The API's and the database's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Enable => "enable",
            SyncKind::Configure => "configure",
            SyncKind::Disable => "disable",
            SyncKind::Service => "service",
            SyncKind::Repair => "repair",
        }
    }

    /// The kind spelled `raw`, if any.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// Where a sync (or one server's part of it) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncState {
    /// Waiting to run.
    Queued,
    Running,
    /// Done, no warnings.
    Completed,
    /// Done, with warnings in the log.
    CompletedWithWarnings,
    /// Could not be done.
    Failed,
}

impl SyncState {
    const ALL: [SyncState; 5] = [
        SyncState::Queued,
        SyncState::Running,
        SyncState::Completed,
        SyncState::CompletedWithWarnings,
        SyncState::Failed,
    ];

    /// The API's and the database's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Queued => "queued",
            SyncState::Running => "running",
            SyncState::Completed => "completed",
            SyncState::CompletedWithWarnings => "completed_with_warnings",
            SyncState::Failed => "failed",
        }
    }

    /// The state spelled `raw`, if any.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Queued or running (the application shows `syncing`).
    pub fn is_pending(self) -> bool {
        matches!(self, SyncState::Queued | SyncState::Running)
    }
}

/// Something an admin (or the engine itself) did that may need pushing to the panels. Stored in
/// the change outbox in the same transaction as the write that caused it; which syncs it causes
/// is decided in one place, [`crate::sync::work_for`], when it is drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Application Links of an application were turned on.
    Enabled {
        /// The application.
        application: String,
    },
    /// Application Links of an application were turned off.
    Disabled {
        /// The application.
        application: String,
    },
    /// An application's link configuration was saved.
    LinksSaved {
        /// The application.
        application: String,
    },
    /// An admin asked for everything of an application to be pushed again.
    RepairRequested {
        /// The application.
        application: String,
    },
    /// A server was added, or changed in a way its panel sees (module, address, credentials,
    /// enabled): the applications it served before and serves now are pushed again.
    ServerChanged {
        /// The server.
        server_id: i64,
        /// The applications concerned (its old and new module).
        applications: Vec<String>,
    },
    /// A service was created or changed in a way its panel sees.
    ServiceChanged {
        /// The service.
        service_id: i64,
        /// The servers it was on and is on now.
        servers: Vec<i64>,
    },
    /// A service's single sign-on credential was rotated: its links need the new one.
    CredentialRotated {
        /// The service.
        service_id: i64,
    },
    /// The drift check found accounts of a server whose panel differs from the record, and
    /// forgot their record: that server is pushed again.
    DriftFound {
        /// The application.
        application: String,
        /// The server.
        server_id: i64,
    },
    /// A server's last sync failed: it is tried again (the engine does this by itself, every
    /// `failed_retry_interval`, so a panel that comes back converges without an admin).
    ServerRetry {
        /// The application.
        application: String,
        /// The server.
        server_id: i64,
    },
}

/// A change waiting in the outbox; hand it to [`crate::sync::SyncRequests::request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChangeId(pub i64);

/// One sync a change causes: what [`crate::sync::work_for`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The application.
    pub application: String,
    /// Why.
    pub kind: SyncKind,
    /// The service, for [`SyncKind::Service`].
    pub service_id: Option<i64>,
    /// Only these servers (a drift repair); `None`: every server that may need work.
    pub servers: Option<Vec<i64>>,
    /// The admin who caused it.
    pub requested_by: Option<i64>,
}

/// A sync operation as the application view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSummary {
    pub id: i64,
    pub application: String,
    pub kind: SyncKind,
    pub state: SyncState,
    /// Accounts done, over every server.
    pub done: u64,
    /// Accounts to do, over every server (known once each server's plan is made).
    pub total: u64,
    /// When it started running (ms since the epoch).
    pub started_at: Option<i64>,
    /// When it ended (ms since the epoch).
    pub finished_at: Option<i64>,
}

/// One server's part of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerProgress {
    pub server_id: i64,
    pub state: SyncState,
    /// Accounts done on this server.
    pub done: u64,
    /// Accounts to do on this server.
    pub total: u64,
    /// The last error on that server (kept after a retry succeeds, for the record).
    pub last_error: Option<String>,
    /// Transient failures since the server's part last made progress.
    pub attempts: i64,
    /// While it waits to be retried: when the next attempt is due (ms since the epoch).
    pub next_attempt_at: Option<i64>,
}

/// A sync with its per-server progress (`GET /syncs/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDetail {
    pub summary: SyncSummary,
    pub servers: Vec<ServerProgress>,
}

/// A unit of work: one sync's part on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub sync_id: i64,
    pub server_id: i64,
    /// The sync's application.
    pub application: String,
    /// Why the sync runs.
    pub kind: SyncKind,
    /// Transient failures since the unit last made progress.
    pub attempts: i64,
    /// When the unit last made progress (or first failed); the engine's retry window counts
    /// from here.
    pub progress_at: Option<i64>,
}

/// A link the record says an account has on its panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedLink {
    pub service_id: i64,
    /// The panel user it was pushed to.
    pub username: String,
    pub scope: String,
    /// The label pushed.
    pub label: String,
    /// The position pushed.
    pub position: i64,
    /// The credential version pushed.
    pub credential_version: i64,
}

/// The record says this account has the group on its panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedGroup {
    pub service_id: i64,
    /// The panel user it was pushed to.
    pub username: String,
}

/// One change to the record that a panel confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordChange {
    /// The group exists on the account.
    Group {
        service_id: i64,
        /// The panel user.
        username: String,
    },
    /// The group is gone.
    GroupRemoved { service_id: i64 },
    /// The link exists with these values.
    Link(RecordedLink),
    /// The link is gone.
    LinkRemoved { service_id: i64, scope: String },
}

impl RecordChange {
    /// The service the change is about.
    pub fn service_id(&self) -> i64 {
        match self {
            Self::Group { service_id, .. }
            | Self::GroupRemoved { service_id }
            | Self::LinkRemoved { service_id, .. } => *service_id,
            Self::Link(link) => link.service_id,
        }
    }
}

/// A service's live single sign-on credential, as the engine pushes it into the service's links.
#[derive(Debug, Clone)]
pub struct StoredCredential {
    /// `subscriber_unique_id`.
    pub subscriber_id: String,
    /// `token`.
    pub secret: crate::adapter::Secret,
    /// Bumped on every rotation; the record holds the version each link was pushed with.
    pub version: i64,
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

/// The process's event bus: the sync engine publishes, each `GET /events` subscribes.
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
