//! Panel servers. The API token is sealed on the way in and only leaves as a [`ServerTarget`].
//!
//! A token is sealed for its destination: the associated data of the ciphertext names the
//! server's id, scheme, host and port (`token_context`), so a token opens only for the place an
//! admin gave it for. A row whose hostname, port or TLS was changed behind Panelink's back (by
//! SQL) cannot be used: opening fails with [`Error::ServerToken`] and nothing is sent. Changing
//! where a server is through [`Db::update_server`] needs the token again
//! ([`Error::TokenRequired`]), which is then sealed for the new place.
//!
//! Stored form: `d1:` followed by [`crate::crypto::SecretBox`]'s text. Tokens of earlier versions
//! (sealed for the purpose alone, stored without the prefix) are re-sealed for the row's
//! destination once, by [`Db::migrate`] ([`Db::bind_legacy_server_tokens`]); a value still in the
//! old form afterwards (written by an older node) is refused like a moved one.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Actor, Db, Error, Result, audit, flag, now_ms, opt_flag};
use crate::adapter::{Secret, ServerTarget, Support};
use crate::model::{ApplicationId, Hostname, Name, Port, Username};
use crate::sync_port::{Change, ChangeId};

/// The sealing context of server API tokens of earlier versions (purpose only).
const LEGACY_TOKEN_CONTEXT: &str = "server_api_token";

/// The prefix of a token sealed for its destination.
const BOUND_PREFIX: &str = "d1:";

/// The sealing context of a server's API token: its purpose, the server's id, scheme, host and
/// port, NUL-separated (the host is the only free text, so no two destinations share one).
fn token_context(id: i64, secure: bool, hostname: &str, port: u16) -> String {
    let scheme = if secure { "https" } else { "http" };
    format!("server_api_token/v2\0{id}\0{scheme}\0{hostname}\0{port}")
}

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
        // The token is sealed for the server's id, known once the row exists.
        let row = sqlx::query(&format!(
            "INSERT INTO servers (name, module, hostname, port, secure, username, \
             api_token_sealed, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, '', $7, $8, $8) RETURNING {COLUMNS}"
        ))
        .bind(new.name.as_str())
        .bind(new.module.as_str())
        .bind(new.hostname.as_str())
        .bind(i64::from(new.port.get()))
        .bind(new.secure)
        .bind(new.username.as_str())
        .bind(new.enabled)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let server = server_from(&row)?;
        sqlx::query("UPDATE servers SET api_token_sealed = $2 WHERE id = $1")
            .bind(server.id)
            .bind(self.seal_server_token(&server, &new.api_token))
            .execute(&mut *tx)
            .await?;
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
        let queued = super::sync::enqueue_some(&mut tx, change(&server), actor.admin_id).await?;
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
    ///
    /// A change of where the server is (hostname, port or TLS, including a port that follows
    /// TLS to its new default) needs a new API token in the same patch, else
    /// [`Error::TokenRequired`] and nothing changes: the stored token was given for the old
    /// place only.
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
        let hostname = patch
            .hostname
            .as_ref()
            .map_or(old.hostname.as_str(), |v| v.as_str());
        let moved = hostname != old.hostname || port != old.port || secure != old.secure;
        let sealed = match &patch.api_token {
            Some(token) => Some(
                self.secrets()
                    .seal(&token_context(id, secure, hostname, port), token.expose()),
            ),
            None if moved => return Err(Error::TokenRequired),
            None => None,
        }
        .map(|sealed| format!("{BOUND_PREFIX}{sealed}"));
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
        .bind(hostname)
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
        let queued = super::sync::enqueue_some(
            &mut tx,
            change(&old, &server, patch.api_token.is_some()),
            actor.admin_id,
        )
        .await?;
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
    /// [`Error::ServerToken`] when the token was not sealed for where the row says the server is.
    pub async fn server_target(&self, id: i64) -> Result<ServerTarget> {
        let row = sqlx::query(
            "SELECT hostname, port, secure, username, api_token_sealed FROM servers WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(Error::NotFound("server"))?;
        let port: i64 = row.try_get("port")?;
        let port = u16::try_from(port).map_err(|_| Error::Corrupt(format!("port {port}")))?;
        let stored: String = row.try_get("api_token_sealed")?;
        let hostname: String = row.try_get("hostname")?;
        let secure = flag(&row, "secure")?;
        let refused = |reason: &str| Error::ServerToken {
            server: id,
            reason: format!(
                "{reason} (it opens only for the place it was given for, and the server is now \
                 at {}://{hostname}:{port})",
                if secure { "https" } else { "http" }
            ),
        };
        let api_token = match stored.strip_prefix(BOUND_PREFIX) {
            Some(sealed) => self
                .secrets()
                .open(&token_context(id, secure, &hostname, port), sealed)
                .map_err(|_| {
                    refused(
                        "it was sealed for another hostname, port or TLS setting (the row was \
                         changed outside Panelink), with another secret_key, or is damaged",
                    )
                })?,
            None => {
                return Err(refused(
                    "it is in the form of an earlier version, which is re-sealed only when \
                     migrations run at start",
                ));
            }
        };
        Ok(ServerTarget {
            hostname,
            port,
            secure,
            username: row.try_get("username")?,
            api_token,
        })
    }

    /// A server's API token sealed for where it is.
    fn seal_server_token(&self, server: &Server, token: &Secret) -> String {
        let context = token_context(server.id, server.secure, &server.hostname, server.port);
        format!(
            "{BOUND_PREFIX}{}",
            self.secrets().seal(&context, token.expose())
        )
    }

    /// Re-seal the API tokens stored by earlier versions (sealed for their purpose only) for
    /// where each server is now, once: run by [`Db::migrate`]. A token that cannot be opened
    /// (another `secret_key`) is left as it is and logged; the server's checks and syncs then
    /// fail with [`Error::ServerToken`] until an admin gives the token again. Each re-seal is in
    /// the audit log (`server.token_bind`). Returns how many were re-sealed.
    pub async fn bind_legacy_server_tokens(&self) -> Result<usize> {
        let rows = sqlx::query(
            "SELECT id, hostname, port, secure, api_token_sealed FROM servers \
             WHERE api_token_sealed NOT LIKE 'd1:%' ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut bound = 0;
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let hostname: String = row.try_get("hostname")?;
            let port: i64 = row.try_get("port")?;
            let port = u16::try_from(port).map_err(|_| Error::Corrupt(format!("port {port}")))?;
            let secure = flag(row, "secure")?;
            let stored: String = row.try_get("api_token_sealed")?;
            let token = match self.open_secret(LEGACY_TOKEN_CONTEXT, &stored) {
                Ok(token) => token,
                Err(e) => {
                    tracing::warn!(
                        server = id,
                        error = %e,
                        "a server's API token of an earlier version cannot be re-sealed; give \
                         the server's API token again"
                    );
                    continue;
                }
            };
            let sealed = format!(
                "{BOUND_PREFIX}{}",
                self.secrets()
                    .seal(&token_context(id, secure, &hostname, port), token.expose())
            );
            // Only if the row is still as read (another node may be doing the same).
            let done = sqlx::query(
                "UPDATE servers SET api_token_sealed = $2 WHERE id = $1 \
                 AND api_token_sealed = $3 AND hostname = $4 AND port = $5 AND secure = $6",
            )
            .bind(id)
            .bind(&sealed)
            .bind(&stored)
            .bind(&hostname)
            .bind(i64::from(port))
            .bind(secure)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 1 {
                let scheme = if secure { "https" } else { "http" };
                audit(
                    &mut tx,
                    &Actor::system(),
                    "server.token_bind",
                    &format!("server:{id}"),
                    &format!("api_token sealed for {scheme}://{hostname}:{port}"),
                )
                .await?;
                bound += 1;
            }
        }
        tx.commit().await?;
        if bound > 0 {
            tracing::info!(
                servers = bound,
                "re-sealed server API tokens of an earlier version for their destinations"
            );
        }
        Ok(bound)
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
