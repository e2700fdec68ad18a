//! Applications (one per plugin-served panel type), their link settings and the application log.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Actor, Db, Error, Result, audit, flag, now_ms, parsed};
use crate::adapter::LogLevel;
use crate::model::{DisplayName, LinkSetting, Scope};
use crate::sync_port::{Change, ChangeId};

/// An application's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// Id (`cpanel`, …).
    pub id: String,
    /// Whether Application Links are on.
    pub enabled: bool,
    /// Whether a static link (`static-link` panels) signs the customer in; off by default, when
    /// such a link only leads to the client area's login.
    pub static_sign_in: bool,
    /// Last changed (ms).
    pub updated_at: i64,
}

/// One application log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Id (increasing).
    pub id: i64,
    pub application: String,
    /// The sync that wrote it.
    pub sync_id: Option<i64>,
    /// When (ms).
    pub at: i64,
    pub level: LogLevel,
    pub message: String,
    /// The server it is about.
    pub server_id: Option<i64>,
    /// The service it is about.
    pub service_id: Option<i64>,
}

/// An entry to append to an application's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogEntry {
    /// The sync writing it.
    pub sync_id: Option<i64>,
    pub level: LogLevel,
    pub message: String,
    /// The server it is about.
    pub server_id: Option<i64>,
    /// The service it is about.
    pub service_id: Option<i64>,
}

fn level_from(raw: &str) -> Result<LogLevel, String> {
    match raw {
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "notice" => Ok(LogLevel::Notice),
        "warning" => Ok(LogLevel::Warning),
        _ => Err("not a log level".into()),
    }
}

fn application_from(row: &AnyRow) -> Result<Application> {
    Ok(Application {
        id: row.try_get("id")?,
        enabled: flag(row, "enabled")?,
        static_sign_in: flag(row, "static_sign_in")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Db {
    /// Make sure an application row exists (disabled when new); returns it.
    pub async fn ensure_application(&self, id: &str) -> Result<Application> {
        sqlx::query(
            "INSERT INTO applications (id, enabled, updated_at) VALUES ($1, FALSE, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        self.application(id).await
    }

    /// One application.
    pub async fn application(&self, id: &str) -> Result<Application> {
        let row = sqlx::query(
            "SELECT id, enabled, static_sign_in, updated_at FROM applications WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(Error::NotFound("application"))?;
        application_from(&row)
    }

    /// Every application, by id.
    pub async fn applications(&self) -> Result<Vec<Application>> {
        let rows = sqlx::query(
            "SELECT id, enabled, static_sign_in, updated_at FROM applications ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(application_from).collect()
    }

    /// Turn Application Links on or off for an application, and queue the change (see
    /// [`crate::sync_port::Change`]) in the same transaction.
    pub async fn set_application_enabled(
        &self,
        actor: &Actor,
        id: &str,
        enabled: bool,
    ) -> Result<(Application, ChangeId)> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE applications SET enabled = $2, updated_at = $3 WHERE id = $1 \
             RETURNING id, enabled, static_sign_in, updated_at",
        )
        .bind(id)
        .bind(enabled)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound("application"))?;
        audit(
            &mut tx,
            actor,
            if enabled {
                "application.enable"
            } else {
                "application.disable"
            },
            &format!("application:{id}"),
            "",
        )
        .await?;
        let application = id.to_owned();
        let change = if enabled {
            Change::Enabled { application }
        } else {
            Change::Disabled { application }
        };
        let queued = super::sync::enqueue(&mut tx, &change, actor.admin_id).await?;
        tx.commit().await?;
        Ok((application_from(&row)?, queued))
    }

    /// Leave Application Links off after an enable found no server that supports them (the
    /// seed's rule: a supported server must exist first). Only while the links are on and no
    /// other sync of the application is open (an admin's later change decides then); audited
    /// as the `system` actor, and no change is queued (nothing was pushed). Whether it was
    /// turned off.
    pub async fn keep_links_off(&self, application: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let turned = sqlx::query(
            "UPDATE applications SET enabled = $2, updated_at = $3 \
             WHERE id = $1 AND enabled = $4 AND NOT EXISTS (SELECT 1 FROM syncs \
             WHERE application = $1 AND state IN ('queued', 'running'))",
        )
        .bind(application)
        .bind(false)
        .bind(now_ms())
        .bind(true)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if turned {
            audit(
                &mut tx,
                &Actor::system(),
                "application.disable",
                &format!("application:{application}"),
                "no server supports Application Links",
            )
            .await?;
        }
        tx.commit().await?;
        Ok(turned)
    }

    /// Turn static-link sign-in on or off for an application (audited). Nothing is pushed: the
    /// links stay as they are, only what following one does changes.
    pub async fn set_application_static_sign_in(
        &self,
        actor: &Actor,
        id: &str,
        on: bool,
    ) -> Result<Application> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE applications SET static_sign_in = $2, updated_at = $3 WHERE id = $1 \
             RETURNING id, enabled, static_sign_in, updated_at",
        )
        .bind(id)
        .bind(on)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound("application"))?;
        audit(
            &mut tx,
            actor,
            if on {
                "application.static_sign_in.on"
            } else {
                "application.static_sign_in.off"
            },
            &format!("application:{id}"),
            "",
        )
        .await?;
        tx.commit().await?;
        application_from(&row)
    }

    /// The saved link settings of an application in display order (empty: never saved).
    pub async fn link_settings(&self, application: &str) -> Result<Vec<LinkSetting>> {
        let rows = sqlx::query(
            "SELECT scope, display_name, enabled FROM link_settings WHERE application = $1 \
             ORDER BY position",
        )
        .bind(application)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LinkSetting {
                    scope: parsed(row.try_get("scope")?, "scope", Scope::parse)?,
                    display_name: parsed(
                        row.try_get("display_name")?,
                        "display name",
                        DisplayName::parse,
                    )?,
                    enabled: flag(row, "enabled")?,
                })
            })
            .collect()
    }

    /// Replace an application's link settings at once (the slice order is the display order),
    /// and queue the change in the same transaction.
    pub async fn save_link_settings(
        &self,
        actor: &Actor,
        application: &str,
        links: &[LinkSetting],
    ) -> Result<ChangeId> {
        let mut tx = self.begin_write().await?;
        let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM applications WHERE id = $1")
            .bind(application)
            .fetch_one(&mut *tx)
            .await?;
        if found == 0 {
            return Err(Error::NotFound("application"));
        }
        sqlx::query("DELETE FROM link_settings WHERE application = $1")
            .bind(application)
            .execute(&mut *tx)
            .await?;
        for (i, link) in links.iter().enumerate() {
            sqlx::query(
                "INSERT INTO link_settings (application, scope, display_name, enabled, position) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(application)
            .bind(link.scope.as_str())
            .bind(link.display_name.as_str())
            .bind(link.enabled)
            .bind(i64::try_from(i + 1).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        let summary = links
            .iter()
            .map(|l| {
                format!(
                    "{}={:?}{}",
                    l.scope,
                    l.display_name.as_str(),
                    if l.enabled { "" } else { "(hidden)" }
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        audit(
            &mut tx,
            actor,
            "application.links",
            &format!("application:{application}"),
            &summary,
        )
        .await?;
        let change = Change::LinksSaved {
            application: application.to_owned(),
        };
        let queued = super::sync::enqueue(&mut tx, &change, actor.admin_id).await?;
        tx.commit().await?;
        Ok(queued)
    }

    /// Start a fresh log for an application: the entries of the previous operation are dropped
    /// (the log holds the last operation only). The sync engine does this when it drains a
    /// change into a new operation ([`Db::drain_change`]).
    #[cfg(any(test, feature = "test-support"))]
    pub async fn start_log(&self, application: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        clear_log(&mut tx, application).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Append entries to an application's log, in order, in one transaction.
    pub async fn append_log(&self, application: &str, entries: &[NewLogEntry]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_log(&mut tx, application, entries).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An application's log, oldest first.
    pub async fn log(&self, application: &str) -> Result<Vec<LogEntry>> {
        let rows = sqlx::query(
            "SELECT id, application, sync_id, at, level, message, server_id, service_id \
             FROM app_log WHERE application = $1 ORDER BY id",
        )
        .bind(application)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LogEntry {
                    id: row.try_get("id")?,
                    application: row.try_get("application")?,
                    sync_id: row.try_get("sync_id")?,
                    at: row.try_get("at")?,
                    level: parsed(row.try_get("level")?, "log level", level_from)?,
                    message: row.try_get("message")?,
                    server_id: row.try_get("server_id")?,
                    service_id: row.try_get("service_id")?,
                })
            })
            .collect()
    }

    /// How many warning entries an application's log holds.
    pub async fn warning_count(&self, application: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM app_log WHERE application = $1 AND level = 'warning'",
        )
        .bind(application)
        .fetch_one(self.pool())
        .await?)
    }
}

/// Drop an application's log (inside the caller's transaction).
pub(crate) async fn clear_log(conn: &mut sqlx::AnyConnection, application: &str) -> Result<()> {
    sqlx::query("DELETE FROM app_log WHERE application = $1")
        .bind(application)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Insert log entries on a connection (inside the caller's transaction). A warning about a
/// service that the log already holds word for word (the same account failing the same way on
/// every sync of the operation) is not written again.
pub(crate) async fn insert_log(
    conn: &mut sqlx::AnyConnection,
    application: &str,
    entries: &[NewLogEntry],
) -> Result<()> {
    let now = now_ms();
    for e in entries {
        if e.level == LogLevel::Warning && e.service_id.is_some() {
            let seen: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM app_log WHERE application = $1 AND service_id = $2 \
                 AND level = 'warning' AND message = $3",
            )
            .bind(application)
            .bind(e.service_id)
            .bind(&e.message)
            .fetch_one(&mut *conn)
            .await?;
            if seen > 0 {
                continue;
            }
        }
        sqlx::query(
            "INSERT INTO app_log (application, sync_id, at, level, message, server_id, \
             service_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(application)
        .bind(e.sync_id)
        .bind(now)
        .bind(e.level.as_str())
        .bind(&e.message)
        .bind(e.server_id)
        .bind(e.service_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
