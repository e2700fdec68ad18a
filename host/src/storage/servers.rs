//! Panel servers. The API token is sealed on the way in and only leaves as a [`ServerTarget`].

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Actor, Db, Error, Result, audit, flag, now_ms, opt_flag};
use crate::adapter::{Secret, ServerTarget, Support};
use crate::model::{ApplicationId, Hostname, Name, Port, Username};
use crate::sync_port::{Change, ChangeId};

/// The sealing context of server API tokens.
const TOKEN_CONTEXT: &str = "server_api_token";

/// A server, without its API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Application id of the plugin that serves it (`cpanel`, `wpsquared`, …).
    pub module: String,
    /// Host name or IP.
    pub hostname: String,
    /// API port.
    pub port: u16,
    /// TLS.
    pub secure: bool,
    /// API user.
    pub username: String,
    /// Whether the server takes part.
    pub enabled: bool,
    /// The last support check's answer (`None`: never checked).
    pub supported: Option<bool>,
    /// The last support check's detail.
    pub support_detail: Option<String>,
    /// When it was last checked (ms).
    pub checked_at: Option<i64>,
    /// The last sync outcome on it: `synced`, `failed`, or `None`.
    pub sync_state: Option<String>,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
}

/// A server to create.
#[derive(Debug, Clone)]
pub struct NewServer {
    /// Display name.
    pub name: Name,
    /// Application id.
    pub module: ApplicationId,
    pub hostname: Hostname,
    pub port: Port,
    /// TLS.
    pub secure: bool,
    /// API user.
    pub username: Username,
    /// API token (sealed before it is stored).
    pub api_token: Secret,
    pub enabled: bool,
}

/// A change to a server; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ServerPatch {
    /// Display name.
    pub name: Option<Name>,
    /// Application id.
    pub module: Option<ApplicationId>,
    pub hostname: Option<Hostname>,
    /// Port. When `secure` changes and no port is given, a port that was the old default follows
    /// to the new default (2087 ↔ 2086).
    pub port: Option<Port>,
    /// TLS.
    pub secure: Option<bool>,
    /// API user.
    pub username: Option<Username>,
    /// A new API token.
    pub api_token: Option<Secret>,
    pub enabled: Option<bool>,
}

/// The server counts of an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerCounts {
    /// Servers of the application.
    pub total: i64,
    /// Of which the last check said they support links.
    pub supported: i64,
    /// Of which the last sync succeeded.
    pub synced: i64,
    /// Of which the last sync failed.
    pub failed: i64,
}

const COLUMNS: &str = "id, name, module, hostname, port, secure, username, enabled, supported, \
                       support_detail, checked_at, sync_state, created_at, updated_at";

fn server_from(row: &AnyRow) -> Result<Server> {
    let port: i64 = row.try_get("port")?;
    Ok(Server {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        module: row.try_get("module")?,
        hostname: row.try_get("hostname")?,
        port: u16::try_from(port).map_err(|_| Error::Corrupt(format!("port {port}")))?,
        secure: flag(row, "secure")?,
        username: row.try_get("username")?,
        enabled: flag(row, "enabled")?,
        supported: opt_flag(row, "supported")?,
        support_detail: row.try_get("support_detail")?,
        checked_at: row.try_get("checked_at")?,
        sync_state: row.try_get("sync_state")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Db {
    /// Create a server. The change `change` returns for it
    /// ([`crate::sync::server_added`]) is queued in the same transaction.
    pub async fn create_server(
        &self,
        actor: &Actor,
        new: &NewServer,
        change: impl FnOnce(&Server) -> Option<Change> + Send,
    ) -> Result<(Server, Option<ChangeId>)> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO servers (name, module, hostname, port, secure, username, \
             api_token_sealed, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {COLUMNS}"
        ))
        .bind(new.name.as_str())
        .bind(new.module.as_str())
        .bind(new.hostname.as_str())
        .bind(i64::from(new.port.get()))
        .bind(new.secure)
        .bind(new.username.as_str())
        .bind(self.seal_secret(TOKEN_CONTEXT, &new.api_token))
        .bind(new.enabled)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let server = server_from(&row)?;
        audit(
            &mut tx,
            actor,
            "server.create",
            &format!("server:{}", server.id),
            &format!(
                "name={} module={} hostname={} port={} secure={} username={} enabled={}",
                server.name,
                server.module,
                server.hostname,
                server.port,
                server.secure,
                server.username,
                server.enabled
            ),
        )
        .await?;
        let queued = match change(&server) {
            Some(change) => Some(super::sync::enqueue(&mut tx, &change, actor.admin_id).await?),
            None => None,
        };
        tx.commit().await?;
        Ok((server, queued))
    }

    /// One server.
    pub async fn server(&self, id: i64) -> Result<Server> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM servers WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(Error::NotFound("server"))?;
        server_from(&row)
    }

    /// Every server, by id.
    pub async fn servers(&self) -> Result<Vec<Server>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM servers ORDER BY id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(server_from).collect()
    }

    /// The servers of one application (`module`), by id; with `enabled_only`, the enabled ones.
    pub async fn servers_of(&self, application: &str, enabled_only: bool) -> Result<Vec<Server>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM servers WHERE module = $1 AND (enabled = TRUE OR $2 = FALSE) \
             ORDER BY id"
        ))
        .bind(application)
        .bind(enabled_only)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(server_from).collect()
    }

    /// Change a server. `change` is given the server before and after and whether its API
    /// token was replaced; the change it returns ([`crate::sync::server_updated`]) is queued in
    /// the same transaction.
    pub async fn update_server(
        &self,
        actor: &Actor,
        id: i64,
        patch: &ServerPatch,
        change: impl FnOnce(&Server, &Server, bool) -> Option<Change> + Send,
    ) -> Result<(Server, Option<ChangeId>)> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM servers WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::NotFound("server"))?;
        let old = server_from(&row)?;
        let secure = patch.secure.unwrap_or(old.secure);
        let port = match patch.port {
            Some(port) => port.get(),
            None if old.port == Port::default_for(old.secure).get() => {
                Port::default_for(secure).get()
            }
            None => old.port,
        };
        let sealed = patch
            .api_token
            .as_ref()
            .map(|t| self.seal_secret(TOKEN_CONTEXT, t));
        let row = sqlx::query(&format!(
            "UPDATE servers SET name = $2, module = $3, hostname = $4, port = $5, secure = $6, \
             username = $7, api_token_sealed = COALESCE($8, api_token_sealed), enabled = $9, \
             updated_at = $10 WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(
            patch
                .name
                .as_ref()
                .map_or(old.name.as_str(), |v| v.as_str()),
        )
        .bind(
            patch
                .module
                .as_ref()
                .map_or(old.module.as_str(), |v| v.as_str()),
        )
        .bind(
            patch
                .hostname
                .as_ref()
                .map_or(old.hostname.as_str(), |v| v.as_str()),
        )
        .bind(i64::from(port))
        .bind(secure)
        .bind(
            patch
                .username
                .as_ref()
                .map_or(old.username.as_str(), |v| v.as_str()),
        )
        .bind(sealed)
        .bind(patch.enabled.unwrap_or(old.enabled))
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let server = server_from(&row)?;
        let mut changed = Vec::new();
        for (field, before, after) in [
            ("name", old.name.clone(), server.name.clone()),
            ("module", old.module.clone(), server.module.clone()),
            ("hostname", old.hostname.clone(), server.hostname.clone()),
            ("port", old.port.to_string(), server.port.to_string()),
            ("secure", old.secure.to_string(), server.secure.to_string()),
            ("username", old.username.clone(), server.username.clone()),
            (
                "enabled",
                old.enabled.to_string(),
                server.enabled.to_string(),
            ),
        ] {
            if before != after {
                changed.push(format!("{field}={after}"));
            }
        }
        if patch.api_token.is_some() {
            changed.push("api_token=(replaced)".into());
        }
        audit(
            &mut tx,
            actor,
            "server.update",
            &format!("server:{id}"),
            &changed.join(" "),
        )
        .await?;
        let queued = match change(&old, &server, patch.api_token.is_some()) {
            Some(change) => Some(super::sync::enqueue(&mut tx, &change, actor.admin_id).await?),
            None => None,
        };
        tx.commit().await?;
        Ok((server, queued))
    }

    /// Delete a server; a conflict while services use it.
    pub async fn delete_server(&self, actor: &Actor, id: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let name: String = sqlx::query_scalar("SELECT name FROM servers WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::NotFound("server"))?;
        let services: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM services WHERE server_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if services > 0 {
            return Err(Error::Conflict(format!(
                "the server is used by {services} service(s); move or delete them first"
            )));
        }
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| super::conflict_on_violation(e, "the server is still in use"))?;
        audit(
            &mut tx,
            actor,
            "server.delete",
            &format!("server:{id}"),
            &format!("name={name}"),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Where and how to reach a server, with its decrypted API token, for plugin calls.
    pub async fn server_target(&self, id: i64) -> Result<ServerTarget> {
        let row = sqlx::query(
            "SELECT hostname, port, secure, username, api_token_sealed FROM servers WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(Error::NotFound("server"))?;
        let port: i64 = row.try_get("port")?;
        let sealed: String = row.try_get("api_token_sealed")?;
        Ok(ServerTarget {
            hostname: row.try_get("hostname")?,
            port: u16::try_from(port).map_err(|_| Error::Corrupt(format!("port {port}")))?,
            secure: flag(&row, "secure")?,
            username: row.try_get("username")?,
            api_token: self.open_secret(TOKEN_CONTEXT, &sealed)?,
        })
    }

    /// Remember a support check's answer.
    pub async fn record_support(&self, id: i64, support: &Support) -> Result<Server> {
        let row = sqlx::query(&format!(
            "UPDATE servers SET supported = $2, support_detail = $3, checked_at = $4 \
             WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(support.supported)
        .bind(&support.detail)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?
        .ok_or(Error::NotFound("server"))?;
        server_from(&row)
    }

    /// The server counts of an application.
    pub async fn server_counts(&self, application: &str) -> Result<ServerCounts> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, \
                    COUNT(CASE WHEN supported = TRUE THEN 1 END) AS supported, \
                    COUNT(CASE WHEN sync_state = 'synced' THEN 1 END) AS synced, \
                    COUNT(CASE WHEN sync_state = 'failed' THEN 1 END) AS failed \
             FROM servers WHERE module = $1",
        )
        .bind(application)
        .fetch_one(self.pool())
        .await?;
        Ok(ServerCounts {
            total: row.try_get("total")?,
            supported: row.try_get("supported")?,
            synced: row.try_get("synced")?,
            failed: row.try_get("failed")?,
        })
    }
}
