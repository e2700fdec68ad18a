//! The sync engine's durable state: syncs and their per-server units of work, server leases,
//! and the record of what each account has been given.
//!
//! Every state change the engine makes is one statement or one transaction here, so a crash at
//! any point leaves a state the engine resumes from: units that were running are still
//! `queued`/`running` and are picked up again once their lease expires; the account record lags
//! the panel by at most one batch, whose operations are idempotent and simply repeated.

use std::collections::{BTreeMap, HashMap};

use rand::RngCore;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, Result, now_ms};
use crate::adapter::Secret;
use crate::sync_port::{ServerProgress, SyncDetail, SyncKind, SyncState, SyncSummary};

fn kind_from(raw: &str) -> SyncKind {
    match raw {
        "enable" => SyncKind::Enable,
        "configure" => SyncKind::Configure,
        "disable" => SyncKind::Disable,
        "service" => SyncKind::Service,
        _ => SyncKind::Repair,
    }
}

/// Parse a stored state (the CHECK constraint keeps it one of these).
pub fn state_from(raw: &str) -> SyncState {
    match raw {
        "queued" => SyncState::Queued,
        "running" => SyncState::Running,
        "completed" => SyncState::Completed,
        "completed_with_warnings" => SyncState::CompletedWithWarnings,
        _ => SyncState::Failed,
    }
}

/// A unit of work: one sync's part on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The sync.
    pub sync_id: i64,
    /// The server.
    pub server_id: i64,
    /// The sync's application.
    pub application: String,
    /// Why the sync runs.
    pub kind: SyncKind,
    /// Transient failures so far.
    pub attempts: i64,
}

/// What the record says one account has on its panel for one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedLink {
    /// The service.
    pub service_id: i64,
    /// The panel user it was pushed to.
    pub username: String,
    /// Scope.
    pub scope: String,
    /// Label pushed.
    pub label: String,
    /// Position pushed.
    pub position: i64,
    /// Credential version pushed.
    pub credential_version: i64,
}

/// A group on an account, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedGroup {
    /// The service.
    pub service_id: i64,
    /// The panel user it was pushed to.
    pub username: String,
}

/// One confirmed change to the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordChange {
    /// The group exists on the account.
    Group {
        /// Service.
        service_id: i64,
        /// Panel user.
        username: String,
    },
    /// The group is gone.
    GroupRemoved {
        /// Service.
        service_id: i64,
    },
    /// The link exists with these values.
    Link(RecordedLink),
    /// The link is gone.
    LinkRemoved {
        /// Service.
        service_id: i64,
        /// Scope.
        scope: String,
    },
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

/// Rows a statement when the record is read or written many accounts at a time.
const RECORD_ROWS_PER_STATEMENT: usize = 100;

/// One link as the record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PushedLink {
    label: String,
    position: i64,
    credential_version: i64,
}

/// One row of `account_records`: what one account has on one server for one application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AccountRecord {
    username: String,
    has_group: bool,
    links: BTreeMap<String, PushedLink>,
}

impl AccountRecord {
    fn from_row(row: &AnyRow) -> Result<Self> {
        let text: String = row.try_get("links")?;
        let links: Vec<(String, String, i64, i64)> = serde_json::from_str(&text)
            .map_err(|e| super::Error::Corrupt(format!("account_records.links: {e}")))?;
        Ok(Self {
            username: row.try_get("username")?,
            has_group: super::flag(row, "has_group")?,
            links: links
                .into_iter()
                .map(|(scope, label, position, credential_version)| {
                    (
                        scope,
                        PushedLink {
                            label,
                            position,
                            credential_version,
                        },
                    )
                })
                .collect(),
        })
    }

    /// The `scopes` column: each scope between single spaces, so that `LIKE '% <scope> %'`
    /// finds it (scopes hold no spaces).
    fn scopes_text(&self) -> String {
        let mut text = String::from(" ");
        for scope in self.links.keys() {
            text.push_str(scope);
            text.push(' ');
        }
        if self.links.is_empty() {
            text.push(' ');
        }
        text
    }

    /// The `links` column: `[[scope, label, position, credential_version], ...]`.
    fn links_json(&self) -> String {
        let rows: Vec<(&str, &str, i64, i64)> = self
            .links
            .iter()
            .map(|(scope, l)| {
                (
                    scope.as_str(),
                    l.label.as_str(),
                    l.position,
                    l.credential_version,
                )
            })
            .collect();
        serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// The `LIKE` pattern that finds `scope` in the `scopes` column of `account_records` (with
/// `ESCAPE '\\'`; `_` is a wildcard otherwise).
pub(crate) fn scope_pattern(scope: &str) -> String {
    let mut pattern = String::from("% ");
    for c in scope.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str(" %");
    pattern
}

/// The sealing context of per-service SSO credential secrets.
pub const CREDENTIAL_CONTEXT: &str = "sso_credential";

/// A service's live SSO credential.
#[derive(Debug, Clone)]
pub struct StoredCredential {
    /// `subscriber_unique_id`.
    pub subscriber_id: String,
    /// `token`.
    pub secret: Secret,
    /// Bumped on every rotation.
    pub version: i64,
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

const SUMMARY_SQL: &str = "SELECT s.id, s.application, s.kind, s.state, s.created_at, s.started_at, \
     s.finished_at, \
     CAST(COALESCE((SELECT SUM(done) FROM sync_servers u WHERE u.sync_id = s.id), 0) AS BIGINT) AS done, \
     CAST(COALESCE((SELECT SUM(total) FROM sync_servers u WHERE u.sync_id = s.id), 0) AS BIGINT) AS total \
     FROM syncs s";

fn summary_from(row: &AnyRow) -> Result<SyncSummary> {
    let done: i64 = row.try_get("done")?;
    let total: i64 = row.try_get("total")?;
    Ok(SyncSummary {
        id: row.try_get("id")?,
        application: row.try_get("application")?,
        kind: kind_from(&row.try_get::<String, _>("kind")?),
        state: state_from(&row.try_get::<String, _>("state")?),
        done: u64::try_from(done).unwrap_or(0),
        total: u64::try_from(total).unwrap_or(0),
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

impl Db {
    /// Record a new sync with one queued unit per server. With no server it is completed at once.
    pub async fn create_sync(
        &self,
        application: &str,
        kind: SyncKind,
        service_id: Option<i64>,
        requested_by: Option<i64>,
        server_ids: &[i64],
    ) -> Result<SyncSummary> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let (state, finished) = if server_ids.is_empty() {
            ("completed", Some(now))
        } else {
            ("queued", None)
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO syncs (application, kind, state, service_id, requested_by, created_at, \
             started_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(application)
        .bind(kind.as_str())
        .bind(state)
        .bind(service_id)
        .bind(requested_by)
        .bind(now)
        .bind(finished)
        .bind(finished)
        .fetch_one(&mut *tx)
        .await?;
        for server_id in server_ids {
            sqlx::query(
                "INSERT INTO sync_servers (sync_id, server_id, state) VALUES ($1, $2, 'queued')",
            )
            .bind(id)
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.sync_summary(id)
            .await?
            .ok_or(super::Error::NotFound("sync"))
    }

    /// One sync's summary.
    pub async fn sync_summary(&self, id: i64) -> Result<Option<SyncSummary>> {
        let row = sqlx::query(&format!("{SUMMARY_SQL} WHERE s.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(summary_from).transpose()
    }

    /// The latest sync of an application.
    pub async fn latest_sync(&self, application: &str) -> Result<Option<SyncSummary>> {
        let row = sqlx::query(&format!(
            "{SUMMARY_SQL} WHERE s.application = $1 ORDER BY s.id DESC LIMIT 1"
        ))
        .bind(application)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(summary_from).transpose()
    }

    /// Whether any sync of the application is queued or running.
    pub async fn application_syncing(&self, application: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM syncs WHERE application = $1 AND state IN ('queued', 'running')",
        )
        .bind(application)
        .fetch_one(self.pool())
        .await?;
        Ok(n > 0)
    }

    /// A sync with its per-server progress.
    pub async fn sync_detail(&self, id: i64) -> Result<Option<SyncDetail>> {
        let Some(summary) = self.sync_summary(id).await? else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT server_id, state, done, total, last_error FROM sync_servers WHERE sync_id = $1 \
             ORDER BY server_id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let servers = rows
            .iter()
            .map(|row| {
                let done: i64 = row.try_get("done")?;
                let total: i64 = row.try_get("total")?;
                Ok(ServerProgress {
                    server_id: row.try_get("server_id")?,
                    state: state_from(&row.try_get::<String, _>("state")?),
                    done: u64::try_from(done).unwrap_or(0),
                    total: u64::try_from(total).unwrap_or(0),
                    last_error: row.try_get("last_error")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(SyncDetail { summary, servers }))
    }

    /// Try to take the lease of a server that has work due, for `owner`, until `until_ms`.
    /// Returns the server taken, if any.
    pub async fn claim_server(&self, owner: &str, until_ms: i64) -> Result<Option<i64>> {
        let now = now_ms();
        let candidates: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT u.server_id FROM sync_servers u \
             LEFT JOIN server_leases l ON l.server_id = u.server_id \
             WHERE u.state IN ('queued', 'running') AND u.not_before <= $1 \
               AND (l.server_id IS NULL OR l.until_ms < $1) \
             ORDER BY u.server_id LIMIT 16",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        for server_id in candidates {
            let taken = sqlx::query(
                "INSERT INTO server_leases (server_id, owner, until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (server_id) DO UPDATE SET owner = excluded.owner, \
                 until_ms = excluded.until_ms WHERE server_leases.until_ms < $4",
            )
            .bind(server_id)
            .bind(owner)
            .bind(until_ms)
            .bind(now)
            .execute(self.pool())
            .await?
            .rows_affected();
            if taken == 1 {
                return Ok(Some(server_id));
            }
        }
        Ok(None)
    }

    /// Forget every lease. Only for SQLite, where one process is the only host: leases left by
    /// an earlier run of this process (killed mid-sync) need not be waited out.
    pub async fn clear_leases(&self) -> Result<()> {
        sqlx::query("DELETE FROM server_leases")
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Give a lease back.
    pub async fn release_lease(&self, server_id: i64, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM server_leases WHERE server_id = $1 AND owner = $2")
            .bind(server_id)
            .bind(owner)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The oldest unit of a server that is due.
    pub async fn next_unit(&self, server_id: i64) -> Result<Option<Unit>> {
        let row = sqlx::query(
            "SELECT u.sync_id, u.server_id, u.attempts, s.application, s.kind \
             FROM sync_servers u JOIN syncs s ON s.id = u.sync_id \
             WHERE u.server_id = $1 AND u.state IN ('queued', 'running') AND u.not_before <= $2 \
             ORDER BY u.sync_id LIMIT 1",
        )
        .bind(server_id)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(Unit {
                sync_id: row.try_get("sync_id")?,
                server_id: row.try_get("server_id")?,
                application: row.try_get("application")?,
                kind: kind_from(&row.try_get::<String, _>("kind")?),
                attempts: row.try_get("attempts")?,
            })
        })
        .transpose()
    }

    /// Mark a unit running with its total; the sync becomes running too.
    pub async fn start_unit(&self, sync_id: i64, server_id: i64, total: u64) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE sync_servers SET state = 'running', total = $1, done = 0 \
             WHERE sync_id = $2 AND server_id = $3",
        )
        .bind(i64::try_from(total).unwrap_or(i64::MAX))
        .bind(sync_id)
        .bind(server_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE syncs SET state = 'running', started_at = COALESCE(started_at, $1) \
             WHERE id = $2 AND state = 'queued'",
        )
        .bind(now)
        .bind(sync_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Put a unit back in the queue after a transient failure, due again at `not_before`.
    pub async fn retry_unit(
        &self,
        sync_id: i64,
        server_id: i64,
        not_before: i64,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sync_servers SET state = 'queued', attempts = attempts + 1, not_before = $1, \
             last_error = $2 WHERE sync_id = $3 AND server_id = $4",
        )
        .bind(not_before)
        .bind(error)
        .bind(sync_id)
        .bind(server_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Finish a unit; when it was the sync's last, finish the sync with the overall state.
    /// Returns the sync's summary after the change.
    /// `closing` is appended to the application log in the same transaction when this unit
    /// closes the sync, so a finished sync's log is always complete.
    pub async fn finish_unit(
        &self,
        application: &str,
        sync_id: i64,
        server_id: i64,
        failed_with: Option<&str>,
        closing: &[super::NewLogEntry],
    ) -> Result<Option<SyncSummary>> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        // Lock the sync's row first: units of one sync finishing at once on several hosts or
        // workers are serialised here, so exactly one of them sees none left open and closes it.
        sqlx::query("UPDATE syncs SET state = state WHERE id = $1")
            .bind(sync_id)
            .execute(&mut *tx)
            .await?;
        let state = if failed_with.is_some() {
            "failed"
        } else {
            let warnings: i64 = sqlx::query_scalar(
                "SELECT warnings FROM sync_servers WHERE sync_id = $1 AND server_id = $2",
            )
            .bind(sync_id)
            .bind(server_id)
            .fetch_one(&mut *tx)
            .await?;
            if warnings > 0 {
                "completed_with_warnings"
            } else {
                "completed"
            }
        };
        sqlx::query(
            "UPDATE sync_servers SET state = $1, last_error = COALESCE($2, last_error) \
             WHERE sync_id = $3 AND server_id = $4",
        )
        .bind(state)
        .bind(failed_with)
        .bind(sync_id)
        .bind(server_id)
        .execute(&mut *tx)
        .await?;
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sync_servers WHERE sync_id = $1 \
             AND state IN ('queued', 'running')",
        )
        .bind(sync_id)
        .fetch_one(&mut *tx)
        .await?;
        if open == 0 {
            let failed: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sync_servers WHERE sync_id = $1 AND state = 'failed'",
            )
            .bind(sync_id)
            .fetch_one(&mut *tx)
            .await?;
            let warned: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sync_servers WHERE sync_id = $1 \
                 AND state = 'completed_with_warnings'",
            )
            .bind(sync_id)
            .fetch_one(&mut *tx)
            .await?;
            let overall = if failed > 0 {
                "failed"
            } else if warned > 0 {
                "completed_with_warnings"
            } else {
                "completed"
            };
            sqlx::query(
                "UPDATE syncs SET state = $1, finished_at = $2, \
                 started_at = COALESCE(started_at, $2) WHERE id = $3",
            )
            .bind(overall)
            .bind(now)
            .bind(sync_id)
            .execute(&mut *tx)
            .await?;
            super::apps::insert_log(&mut tx, application, closing).await?;
        }
        tx.commit().await?;
        self.sync_summary(sync_id).await
    }

    /// Mark a server's last sync outcome (`synced` or `failed`) for the application view.
    pub async fn set_server_sync_state(&self, server_id: i64, failed: bool) -> Result<()> {
        sqlx::query("UPDATE servers SET sync_state = $1 WHERE id = $2")
            .bind(if failed { "failed" } else { "synced" })
            .bind(server_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// What the record says the accounts of a server have for an application.
    pub async fn recorded_state(
        &self,
        server_id: i64,
        application: &str,
    ) -> Result<(Vec<RecordedGroup>, Vec<RecordedLink>)> {
        let rows = sqlx::query(
            "SELECT service_id, username, has_group, links FROM account_records \
             WHERE server_id = $1 AND application = $2",
        )
        .bind(server_id)
        .bind(application)
        .fetch_all(self.pool())
        .await?;
        let (mut groups, mut links) = (Vec::new(), Vec::new());
        for row in &rows {
            let service_id: i64 = row.try_get("service_id")?;
            let record = AccountRecord::from_row(row)?;
            if record.has_group {
                groups.push(RecordedGroup {
                    service_id,
                    username: record.username.clone(),
                });
            }
            links.extend(
                record
                    .links
                    .into_iter()
                    .map(|(scope, pushed)| RecordedLink {
                        service_id,
                        username: record.username.clone(),
                        scope,
                        label: pushed.label,
                        position: pushed.position,
                        credential_version: pushed.credential_version,
                    }),
            );
        }
        Ok((groups, links))
    }

    /// Apply confirmed changes to the record, at once, together with the unit's progress and,
    /// when given, the renewal of the server's lease (`owner`, until `until_ms`): a batch costs
    /// one write transaction. Returns whether the lease is still held (always `true` without
    /// one). The record is written either way: it says what the panel confirmed.
    ///
    /// The record is one row per account (see `account_records`): the rows of the accounts the
    /// changes touch are read, changed and written back, many rows a statement.
    pub async fn record_changes(
        &self,
        application: &str,
        server_id: i64,
        changes: &[RecordChange],
        progress: Option<(i64, u64, u64)>,
        lease: Option<(&str, i64)>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let mut touched: Vec<i64> = changes.iter().map(RecordChange::service_id).collect();
        touched.sort_unstable();
        touched.dedup();
        let mut records: BTreeMap<i64, AccountRecord> = BTreeMap::new();
        for chunk in touched.chunks(RECORD_ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT service_id, username, has_group, links FROM account_records \
                 WHERE {} AND service_id IN ({})",
                self.account_of_server(),
                super::placeholder_rows(self.backend, 3, chunk.len(), 1)
            );
            let mut query = sqlx::query(&sql).bind(application).bind(server_id);
            for service_id in chunk {
                query = query.bind(*service_id);
            }
            for row in query.fetch_all(&mut *tx).await? {
                records.insert(row.try_get("service_id")?, AccountRecord::from_row(&row)?);
            }
        }
        for change in changes {
            let service_id = change.service_id();
            match change {
                RecordChange::Group { username, .. } => {
                    let record = records.entry(service_id).or_default();
                    record.has_group = true;
                    username.clone_into(&mut record.username);
                }
                RecordChange::Link(link) => {
                    let record = records.entry(service_id).or_default();
                    link.username.clone_into(&mut record.username);
                    record.links.insert(
                        link.scope.clone(),
                        PushedLink {
                            label: link.label.clone(),
                            position: link.position,
                            credential_version: link.credential_version,
                        },
                    );
                }
                RecordChange::GroupRemoved { .. } => {
                    if let Some(record) = records.get_mut(&service_id) {
                        record.has_group = false;
                    }
                }
                RecordChange::LinkRemoved { scope, .. } => {
                    if let Some(record) = records.get_mut(&service_id) {
                        record.links.remove(scope);
                    }
                }
            }
        }
        let (kept, emptied): (Vec<_>, Vec<_>) = records
            .iter()
            .partition(|(_, r)| r.has_group || !r.links.is_empty());
        for chunk in emptied.chunks(RECORD_ROWS_PER_STATEMENT) {
            let sql = format!(
                "DELETE FROM account_records WHERE {} AND service_id IN ({})",
                self.account_of_server(),
                super::placeholder_rows(self.backend, 3, chunk.len(), 1)
            );
            let mut query = sqlx::query(&sql).bind(application).bind(server_id);
            for (service_id, _) in chunk {
                query = query.bind(**service_id);
            }
            query.execute(&mut *tx).await?;
        }
        for chunk in kept.chunks(RECORD_ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO account_records (service_id, application, server_id, username, \
                 has_group, scopes, links) VALUES {} \
                 ON CONFLICT (service_id, application, server_id) DO UPDATE SET \
                 username = excluded.username, has_group = excluded.has_group, \
                 scopes = excluded.scopes, links = excluded.links",
                self.placeholder_rows(chunk.len(), 7)
            );
            let mut query = sqlx::query(&sql);
            for (service_id, record) in chunk {
                query = query
                    .bind(**service_id)
                    .bind(application)
                    .bind(server_id)
                    .bind(record.username.as_str())
                    .bind(record.has_group)
                    .bind(record.scopes_text())
                    .bind(record.links_json());
            }
            query.execute(&mut *tx).await?;
        }
        if let Some((sync_id, done, warnings)) = progress {
            sqlx::query(
                "UPDATE sync_servers SET done = done + $1, warnings = warnings + $2 \
                 WHERE sync_id = $3 AND server_id = $4",
            )
            .bind(i64::try_from(done).unwrap_or(i64::MAX))
            .bind(i64::try_from(warnings).unwrap_or(i64::MAX))
            .bind(sync_id)
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        }
        let mut held = true;
        if let Some((owner, until_ms)) = lease {
            held = sqlx::query(
                "UPDATE server_leases SET until_ms = $1 WHERE server_id = $2 AND owner = $3",
            )
            .bind(until_ms)
            .bind(server_id)
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        }
        tx.commit().await?;
        Ok(held)
    }

    /// `application = $1 AND server_id = $2`, in the placeholders of the statements that go on
    /// with [`super::placeholder_rows`] from `$3` (SQLite's anonymous `?` are numbered by
    /// position, and sqlx cannot mix them with `$N`).
    fn account_of_server(&self) -> String {
        format!(
            "application = {} AND server_id = {}",
            super::placeholder_rows(self.backend, 1, 1, 1),
            super::placeholder_rows(self.backend, 2, 1, 1)
        )
    }

    /// Servers with recorded links of an application (some may no longer be its servers).
    pub async fn servers_with_records(&self, application: &str) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT server_id FROM account_records WHERE application = $1",
        )
        .bind(application)
        .fetch_all(self.pool())
        .await?)
    }

    /// The live (not revoked) SSO credentials of the services on a server, by service id.
    pub async fn credentials_on_server(
        &self,
        server_id: i64,
    ) -> Result<HashMap<i64, StoredCredential>> {
        let rows = sqlx::query(
            "SELECT c.service_id, c.subscriber_id, c.secret_sealed, c.version \
             FROM sso_credentials c JOIN services s ON s.id = c.service_id \
             WHERE s.server_id = $1 AND c.revoked_at IS NULL",
        )
        .bind(server_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let sealed: String = row.try_get("secret_sealed")?;
                Ok((
                    row.try_get("service_id")?,
                    StoredCredential {
                        subscriber_id: row.try_get("subscriber_id")?,
                        secret: self.open_secret(CREDENTIAL_CONTEXT, &sealed)?,
                        version: row.try_get("version")?,
                    },
                ))
            })
            .collect()
    }

    /// Mint the SSO credentials of services that have no live one, in one transaction: a new
    /// random subscriber id and secret each, the version bumped over any revoked earlier one. A
    /// service that already has a live credential keeps it (rotation is
    /// [`Db::rotate_live_credential`]).
    pub async fn mint_credentials(
        &self,
        service_ids: &[i64],
    ) -> Result<HashMap<i64, StoredCredential>> {
        let now = now_ms();
        let mut out = HashMap::with_capacity(service_ids.len());
        // Generated and sealed before the write turn is taken: sealing is the costly part, and
        // SQLite's writer (shared with every other sync) waits while a transaction is open.
        let minted: Vec<(i64, String, Secret, String)> = service_ids
            .iter()
            .map(|&service_id| {
                let (subscriber_id, secret, sealed) = self.new_credential(service_id);
                (service_id, subscriber_id, secret, sealed)
            })
            .collect();
        // On conflict the earlier credential is replaced only when it was revoked;
        // `rotated_at` takes the new row's `created_at` (now).
        let mut tx = self.begin_write().await?;
        for chunk in minted.chunks(200) {
            let mut fresh: HashMap<i64, (&str, &Secret)> = HashMap::with_capacity(chunk.len());
            let sql = format!(
                "INSERT INTO sso_credentials (service_id, subscriber_id, secret_sealed, version, \
                 created_at) VALUES {} \
                 ON CONFLICT (service_id) DO UPDATE SET subscriber_id = excluded.subscriber_id, \
                 secret_sealed = excluded.secret_sealed, version = sso_credentials.version + 1, \
                 rotated_at = excluded.created_at, revoked_at = NULL \
                 WHERE sso_credentials.revoked_at IS NOT NULL \
                 RETURNING service_id, version",
                self.placeholder_rows(chunk.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for (service_id, subscriber_id, secret, sealed) in chunk {
                query = query
                    .bind(*service_id)
                    .bind(subscriber_id.as_str())
                    .bind(sealed.as_str())
                    .bind(1_i64)
                    .bind(now);
                fresh.insert(*service_id, (subscriber_id, secret));
            }
            for row in query.fetch_all(&mut *tx).await? {
                let service_id: i64 = row.try_get("service_id")?;
                let version: i64 = row.try_get("version")?;
                if let Some((subscriber_id, secret)) = fresh.remove(&service_id) {
                    out.insert(
                        service_id,
                        StoredCredential {
                            subscriber_id: subscriber_id.to_owned(),
                            secret: secret.clone(),
                            version,
                        },
                    );
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// A fresh credential for a service: subscriber id, secret, and the secret sealed.
    fn new_credential(&self, service_id: i64) -> (String, Secret, String) {
        let subscriber_id = format!("svc{service_id}_{}", random_hex(8));
        let secret = Secret::new(random_hex(32));
        let sealed = self.seal_secret(CREDENTIAL_CONTEXT, &secret);
        (subscriber_id, secret, sealed)
    }

    /// An admin's rotation of a service's live credential: a new subscriber id and secret
    /// replace the old ones at once (the old stop working), the version goes up so that the sync
    /// engine pushes the new ones, and the audit log says who did it. Returns the new version.
    /// A service without a live credential (it has no links) has nothing to rotate: `Conflict`.
    pub async fn rotate_live_credential(
        &self,
        actor: &super::Actor,
        service_id: i64,
    ) -> Result<i64> {
        let (subscriber_id, _secret, sealed) = self.new_credential(service_id);
        let mut tx = self.begin_write().await?;
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE sso_credentials SET subscriber_id = $2, secret_sealed = $3, \
             version = version + 1, rotated_at = $4 \
             WHERE service_id = $1 AND revoked_at IS NULL RETURNING version",
        )
        .bind(service_id)
        .bind(&subscriber_id)
        .bind(&sealed)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version) = version else {
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM services WHERE id = $1")
                .bind(service_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                None => super::Error::NotFound("service"),
                Some(_) => super::Error::Conflict(
                    "the service has no live single sign-on credential (it has no links)".into(),
                ),
            });
        };
        super::audit(
            &mut tx,
            actor,
            "rotate_credential",
            &format!("service:{service_id}"),
            &format!("credential version {version}"),
        )
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Revoke the SSO credentials of services (their links are gone or going).
    pub async fn revoke_credentials(&self, service_ids: &[i64]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        for service_id in service_ids {
            sqlx::query(
                "UPDATE sso_credentials SET revoked_at = $1 \
                 WHERE service_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(service_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The servers a service has recorded links or a group on.
    pub async fn servers_with_records_of_service(&self, service_id: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT server_id FROM account_records WHERE service_id = $1",
        )
        .bind(service_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Forget what one account was given (a drift check found the panel differs), so that the
    /// next sync pushes it whole.
    pub async fn forget_account(&self, application: &str, service_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM account_records WHERE service_id = $1 AND application = $2")
            .bind(service_id)
            .bind(application)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_columns_round_trip_and_scope_patterns_are_exact() {
        let mut record = AccountRecord::default();
        assert_eq!(record.scopes_text(), "  ");
        assert_eq!(record.links_json(), "[]");
        for (scope, label) in [
            ("clientarea:b_c", "Bills \"&\" more"),
            ("clientarea:a", "A"),
        ] {
            record.links.insert(
                scope.to_owned(),
                PushedLink {
                    label: label.to_owned(),
                    position: 2,
                    credential_version: 7,
                },
            );
        }
        assert_eq!(record.scopes_text(), " clientarea:a clientarea:b_c ");
        let parsed: Vec<(String, String, i64, i64)> =
            serde_json::from_str(&record.links_json()).unwrap();
        assert_eq!(parsed[1].1, "Bills \"&\" more");
        assert_eq!(scope_pattern("clientarea:b_c"), "% clientarea:b\\_c %");
        assert_eq!(scope_pattern("a%b\\"), "% a\\%b\\\\ %");
    }
}
