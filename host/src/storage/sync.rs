//! The sync engine's durable state: the change outbox, syncs and their per-server units of
//! work, server leases, and the record of what each account has been given. The types are the
//! engine's ([`crate::sync_port`]); this file only stores them.
//!
//! Every state change the engine makes is one statement or one transaction here, so a crash at
//! any point leaves a state the engine resumes from: a change still in the outbox is drained at
//! the next start; units that were running are still `queued`/`running` and are picked up again
//! once their lease expires; the account record lags the panel by at most one batch, whose
//! operations are idempotent and simply repeated.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Db, Error, NewLogEntry, Result, now_ms};
use crate::sync_port::{
    Change, ChangeId, RecordChange, RecordedGroup, RecordedLink, ServerProgress, SyncDetail,
    SyncKind, SyncRequest, SyncState, SyncSummary, Unit,
};

fn kind_from(raw: &str) -> Result<SyncKind> {
    SyncKind::parse(raw).ok_or_else(|| Error::Corrupt(format!("sync kind {raw:?}")))
}

fn state_from(raw: &str) -> Result<SyncState> {
    SyncState::parse(raw).ok_or_else(|| Error::Corrupt(format!("sync state {raw:?}")))
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

    /// The `scopes` column (see [`scopes_text`]).
    fn scopes_text(&self) -> String {
        scopes_text(self.links.keys().map(String::as_str))
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

/// Scopes as stored in `account_records.scopes` and `sync_servers.pushing`: each between
/// single spaces, so that `LIKE '% <scope> %'` finds it (scopes hold no spaces).
fn scopes_text<'a>(scopes: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = String::from(" ");
    let mut empty = true;
    for scope in scopes {
        text.push_str(scope);
        text.push(' ');
        empty = false;
    }
    if empty {
        text.push(' ');
    }
    text
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
        kind: kind_from(&row.try_get::<String, _>("kind")?)?,
        state: state_from(&row.try_get::<String, _>("state")?)?,
        done: u64::try_from(done).unwrap_or(0),
        total: u64::try_from(total).unwrap_or(0),
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

impl Db {
    /// Put a change in the outbox by itself (a change that writes nothing else, such as an
    /// admin's repair request).
    pub async fn enqueue_change(
        &self,
        change: &Change,
        requested_by: Option<i64>,
    ) -> Result<ChangeId> {
        let mut tx = self.begin_write().await?;
        let id = enqueue(&mut tx, change, requested_by).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// A change still waiting in the outbox (`None` once drained).
    pub async fn pending_change(&self, id: ChangeId) -> Result<Option<PendingChange>> {
        let row = sqlx::query(
            "SELECT id, kind, applications, service_id, server_ids, requested_by \
             FROM sync_changes WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(pending_from).transpose()
    }

    /// The changes waiting in the outbox since before `before_ms`, oldest first.
    pub async fn pending_changes(&self, before_ms: i64) -> Result<Vec<ChangeId>> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM sync_changes WHERE created_at < $1 ORDER BY id")
                .bind(before_ms)
                .fetch_all(self.pool())
                .await?;
        Ok(ids.into_iter().map(ChangeId).collect())
    }

    /// Drain one change from the outbox into the syncs it causes, in one transaction: the
    /// change leaves the outbox, each sync's opening log entries are written (after clearing
    /// the application's log for a fresh operation), and each sync is written with one queued
    /// unit per server (a sync with no server is completed at once, with its closing entries).
    /// Returns `None`, writing nothing, when the change was drained already (by another worker
    /// or host).
    pub async fn drain_change(
        &self,
        id: ChangeId,
        syncs: &[NewSync],
    ) -> Result<Option<Vec<SyncSummary>>> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("DELETE FROM sync_changes WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if taken == 0 {
            return Ok(None);
        }
        let mut ids = Vec::with_capacity(syncs.len());
        for sync in syncs {
            let request = &sync.request;
            if sync.fresh_log {
                super::apps::clear_log(&mut tx, &request.application).await?;
            }
            super::apps::insert_log(&mut tx, &request.application, &sync.opening).await?;
            let (state, finished) = if sync.servers.is_empty() {
                ("completed", Some(now))
            } else {
                ("queued", None)
            };
            let sync_id: i64 = sqlx::query_scalar(
                "INSERT INTO syncs (application, kind, state, service_id, requested_by, \
                 created_at, started_at, finished_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(&request.application)
            .bind(request.kind.as_str())
            .bind(state)
            .bind(request.service_id)
            .bind(request.requested_by)
            .bind(now)
            .bind(finished)
            .bind(finished)
            .fetch_one(&mut *tx)
            .await?;
            for server_id in &sync.servers {
                sqlx::query(
                    "INSERT INTO sync_servers (sync_id, server_id, state) \
                     VALUES ($1, $2, 'queued')",
                )
                .bind(sync_id)
                .bind(server_id)
                .execute(&mut *tx)
                .await?;
            }
            if sync.servers.is_empty() {
                let closing: Vec<NewLogEntry> = sync
                    .closing
                    .iter()
                    .map(|e| NewLogEntry {
                        sync_id: Some(sync_id),
                        ..e.clone()
                    })
                    .collect();
                super::apps::insert_log(&mut tx, &request.application, &closing).await?;
            }
            ids.push(sync_id);
        }
        tx.commit().await?;
        let mut summaries = Vec::with_capacity(ids.len());
        for sync_id in ids {
            summaries.push(
                self.sync_summary(sync_id)
                    .await?
                    .ok_or(Error::NotFound("sync"))?,
            );
        }
        Ok(Some(summaries))
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
            "SELECT server_id, state, done, total, last_error, attempts, not_before \
             FROM sync_servers WHERE sync_id = $1 ORDER BY server_id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let servers = rows
            .iter()
            .map(|row| {
                let done: i64 = row.try_get("done")?;
                let total: i64 = row.try_get("total")?;
                let state = state_from(&row.try_get::<String, _>("state")?)?;
                let attempts: i64 = row.try_get("attempts")?;
                let not_before: i64 = row.try_get("not_before")?;
                Ok(ServerProgress {
                    server_id: row.try_get("server_id")?,
                    state,
                    done: u64::try_from(done).unwrap_or(0),
                    total: u64::try_from(total).unwrap_or(0),
                    last_error: row.try_get("last_error")?,
                    attempts,
                    next_attempt_at: (state == SyncState::Queued && attempts > 0)
                        .then_some(not_before),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(SyncDetail { summary, servers }))
    }

    /// Try to take the lease of a server that has work due, for `owner`, until `until_ms`.
    /// A host takes at most its fair share: the servers with open work divided by the hosts
    /// whose heartbeat is newer than `live_since` (rounded up), so that work queued through one
    /// host is spread over all of them. Returns the server taken, if any.
    pub async fn claim_server(
        &self,
        owner: &str,
        until_ms: i64,
        live_since: i64,
    ) -> Result<Option<i64>> {
        let now = now_ms();
        let (open, hosts, mine): (i64, i64, i64) = {
            let row = sqlx::query(
                "SELECT \
                 (SELECT COUNT(DISTINCT server_id) FROM sync_servers \
                  WHERE state IN ('queued', 'running')) AS open, \
                 (SELECT COUNT(*) FROM sync_hosts WHERE seen_at >= $1) AS hosts, \
                 (SELECT COUNT(*) FROM server_leases WHERE owner = $2 AND until_ms >= $3) \
                   AS mine",
            )
            .bind(live_since)
            .bind(owner)
            .bind(now)
            .fetch_one(self.pool())
            .await?;
            (
                row.try_get("open")?,
                row.try_get("hosts")?,
                row.try_get("mine")?,
            )
        };
        let share = (open + hosts.max(1) - 1) / hosts.max(1);
        if mine >= share.max(1) {
            return Ok(None);
        }
        tracing::debug!(
            owner,
            open,
            hosts,
            mine,
            share,
            "looking for a server to work"
        );
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
            if self.take_lease(server_id, owner, until_ms).await? {
                tracing::debug!(owner, server_id, "took the lease of a server");
                return Ok(Some(server_id));
            }
        }
        Ok(None)
    }

    /// The enabled servers of enabled applications whose last sync failed and that have no
    /// open work, with their application: the engine tries them again (see [`Change::ServerRetry`]).
    pub async fn failed_servers(&self) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT v.id, v.module FROM servers v \
             WHERE v.sync_state = 'failed' AND v.enabled = TRUE \
             AND EXISTS (SELECT 1 FROM applications a WHERE a.id = v.module AND a.enabled = TRUE) \
             AND NOT EXISTS \
             (SELECT 1 FROM sync_servers u WHERE u.server_id = v.id \
              AND u.state IN ('queued', 'running')) ORDER BY v.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("module")?)))
            .collect()
    }

    /// Renew this host's heartbeat (see [`Db::claim_server`]).
    pub async fn heartbeat(&self, node_id: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO sync_hosts (node_id, seen_at) VALUES ($1, $2) \
             ON CONFLICT (node_id) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(node_id)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// How many hosts' heartbeats are newer than `since`.
    pub async fn live_hosts(&self, since: i64) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM sync_hosts WHERE seen_at >= $1")
                .bind(since)
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// This host stops working on the database: it no longer counts among the live hosts.
    pub async fn leave(&self, node_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sync_hosts WHERE node_id = $1")
            .bind(node_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forget every lease and every host's heartbeat. Only for SQLite, where one process is
    /// the only host: what an earlier run of this process (killed mid-sync) left need not be
    /// waited out.
    pub async fn clear_leases(&self) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM server_leases")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sync_hosts")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Extend a lease `owner` holds until `until_ms`. Returns whether it was still held.
    pub async fn renew_lease(&self, server_id: i64, owner: &str, until_ms: i64) -> Result<bool> {
        let held = sqlx::query(
            "UPDATE server_leases SET until_ms = $1 WHERE server_id = $2 AND owner = $3",
        )
        .bind(until_ms)
        .bind(server_id)
        .bind(owner)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(held == 1)
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
            "SELECT u.sync_id, u.server_id, u.attempts, u.progress_at, s.application, s.kind \
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
                kind: kind_from(&row.try_get::<String, _>("kind")?)?,
                attempts: row.try_get("attempts")?,
                progress_at: row.try_get("progress_at")?,
            })
        })
        .transpose()
    }

    /// Mark a unit running with its total and the scopes it pushes (see
    /// [`Db::check_sso_credential`]); the sync becomes running too.
    pub async fn start_unit(
        &self,
        sync_id: i64,
        server_id: i64,
        total: u64,
        pushing: &[&str],
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE sync_servers SET state = 'running', total = $1, done = 0, \
             progress_at = COALESCE(progress_at, $4), pushing = $5 \
             WHERE sync_id = $2 AND server_id = $3",
        )
        .bind(i64::try_from(total).unwrap_or(i64::MAX))
        .bind(sync_id)
        .bind(server_id)
        .bind(now)
        .bind(scopes_text(pushing.iter().copied()))
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
             last_error = $2, progress_at = COALESCE(progress_at, $5) \
             WHERE sync_id = $3 AND server_id = $4",
        )
        .bind(not_before)
        .bind(error)
        .bind(sync_id)
        .bind(server_id)
        .bind(now_ms())
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
    /// one write transaction, with the batch's entries of the application log (`log`). Returns
    /// whether the lease is still held (always `true` without one). The record is written either
    /// way: it says what the panel confirmed.
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
        log: &[NewLogEntry],
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        super::apps::insert_log(&mut tx, application, log).await?;
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
            // Progress: the retry window starts again, and so does the backoff.
            sqlx::query(
                "UPDATE sync_servers SET done = done + $1, warnings = warnings + $2, \
                 progress_at = $5, attempts = 0 WHERE sync_id = $3 AND server_id = $4",
            )
            .bind(i64::try_from(done).unwrap_or(i64::MAX))
            .bind(i64::try_from(warnings).unwrap_or(i64::MAX))
            .bind(sync_id)
            .bind(server_id)
            .bind(now_ms())
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

    /// The servers a service has recorded links or a group on.
    pub async fn servers_with_records_of_service(&self, service_id: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT server_id FROM account_records WHERE service_id = $1",
        )
        .bind(service_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Forget what some accounts of one server were given (the drift check found their panel
    /// differs from the record) and queue the change that pushes them again, in one
    /// transaction: a record is never forgotten without its repair being due.
    pub async fn forget_drifted(
        &self,
        application: &str,
        server_id: i64,
        service_ids: &[i64],
    ) -> Result<ChangeId> {
        let mut tx = self.begin_write().await?;
        for service_id in service_ids {
            sqlx::query(
                "DELETE FROM account_records \
                 WHERE service_id = $1 AND application = $2 AND server_id = $3",
            )
            .bind(service_id)
            .bind(application)
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        }
        let change = Change::DriftFound {
            application: application.to_owned(),
            server_id,
        };
        let id = enqueue(&mut tx, &change, None).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Take the lease of one server for `owner` until `until_ms`, when nobody holds it (or the
    /// holder's lease expired). Returns whether it is now held.
    pub async fn take_lease(&self, server_id: i64, owner: &str, until_ms: i64) -> Result<bool> {
        let taken = sqlx::query(
            "INSERT INTO server_leases (server_id, owner, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (server_id) DO UPDATE SET owner = excluded.owner, \
             until_ms = excluded.until_ms \
             WHERE server_leases.until_ms < $4",
        )
        .bind(server_id)
        .bind(owner)
        .bind(until_ms)
        .bind(now_ms())
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(taken == 1)
    }
}

/// A change waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChange {
    pub id: ChangeId,
    pub change: Change,
    /// The admin who caused it.
    pub requested_by: Option<i64>,
}

/// One sync to write when a change is drained ([`Db::drain_change`]).
#[derive(Debug, Clone)]
pub struct NewSync {
    /// What the sync does.
    pub request: SyncRequest,
    /// One unit each; none: the sync is completed at once.
    pub servers: Vec<i64>,
    /// Clear the application's log first (a new operation; a service's sync appends).
    pub fresh_log: bool,
    /// Log entries written before the sync (so that they come first whatever the workers do).
    pub opening: Vec<NewLogEntry>,
    /// Log entries of a sync with no server (their `sync_id` is filled in).
    pub closing: Vec<NewLogEntry>,
}

/// Stores `change` in the outbox within the caller's transaction when there is one: the writes
/// whose change depends on what they changed (a service or server update) call this.
pub(crate) async fn enqueue_some(
    conn: &mut AnyConnection,
    change: Option<Change>,
    requested_by: Option<i64>,
) -> Result<Option<ChangeId>> {
    match change {
        Some(change) => Ok(Some(enqueue(conn, &change, requested_by).await?)),
        None => Ok(None),
    }
}

/// Put a change in the outbox, inside the caller's transaction (the write that causes it).
pub(crate) async fn enqueue(
    conn: &mut AnyConnection,
    change: &Change,
    requested_by: Option<i64>,
) -> Result<ChangeId> {
    let join = |items: &[String]| items.join(" ");
    let (kind, applications, service_id, servers): (&str, String, Option<i64>, Vec<i64>) =
        match change {
            Change::Enabled { application } => ("enabled", application.clone(), None, vec![]),
            Change::Disabled { application } => ("disabled", application.clone(), None, vec![]),
            Change::LinksSaved { application } => {
                ("links_saved", application.clone(), None, vec![])
            }
            Change::RepairRequested { application } => {
                ("repair_requested", application.clone(), None, vec![])
            }
            Change::ServerChanged {
                server_id,
                applications,
            } => ("server_changed", join(applications), None, vec![*server_id]),
            Change::ServiceChanged {
                service_id,
                servers,
            } => (
                "service_changed",
                String::new(),
                Some(*service_id),
                servers.clone(),
            ),
            Change::CredentialRotated { service_id } => (
                "credential_rotated",
                String::new(),
                Some(*service_id),
                vec![],
            ),
            Change::DriftFound {
                application,
                server_id,
            } => ("drift_found", application.clone(), None, vec![*server_id]),
            Change::ServerRetry {
                application,
                server_id,
            } => ("server_retry", application.clone(), None, vec![*server_id]),
        };
    let server_ids = servers
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO sync_changes (kind, applications, service_id, server_ids, requested_by, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(kind)
    .bind(applications)
    .bind(service_id)
    .bind(server_ids)
    .bind(requested_by)
    .bind(now_ms())
    .fetch_one(&mut *conn)
    .await?;
    Ok(ChangeId(id))
}

fn pending_from(row: &AnyRow) -> Result<PendingChange> {
    let kind: String = row.try_get("kind")?;
    let applications: String = row.try_get("applications")?;
    let service_id: Option<i64> = row.try_get("service_id")?;
    let server_ids: String = row.try_get("server_ids")?;
    let corrupt = |what: &str| Error::Corrupt(format!("sync_changes {kind}: {what}"));
    let servers = server_ids
        .split_whitespace()
        .map(|id| id.parse::<i64>().map_err(|_| corrupt("server_ids")))
        .collect::<Result<Vec<i64>>>()?;
    let mut apps = applications.split_whitespace().map(str::to_owned);
    let mut application = || apps.next().ok_or_else(|| corrupt("no application"));
    let service = || service_id.ok_or_else(|| corrupt("no service"));
    let server = || servers.first().copied().ok_or_else(|| corrupt("no server"));
    let change = match kind.as_str() {
        "enabled" => Change::Enabled {
            application: application()?,
        },
        "disabled" => Change::Disabled {
            application: application()?,
        },
        "links_saved" => Change::LinksSaved {
            application: application()?,
        },
        "repair_requested" => Change::RepairRequested {
            application: application()?,
        },
        "server_changed" => Change::ServerChanged {
            server_id: server()?,
            applications: applications.split_whitespace().map(str::to_owned).collect(),
        },
        "service_changed" => Change::ServiceChanged {
            service_id: service()?,
            servers: servers.clone(),
        },
        "credential_rotated" => Change::CredentialRotated {
            service_id: service()?,
        },
        "drift_found" => Change::DriftFound {
            application: application()?,
            server_id: server()?,
        },
        "server_retry" => Change::ServerRetry {
            application: application()?,
            server_id: server()?,
        },
        _ => return Err(corrupt("unknown kind")),
    };
    Ok(PendingChange {
        id: ChangeId(row.try_get("id")?),
        change,
        requested_by: row.try_get("requested_by")?,
    })
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
