//! Plugin versions: every component the host has seen, which one is active per plugin, and the
//! bytes of uploaded ones (so every node and every restart can load them), with each upload's
//! signature and the failure policy's flag.
//!
//! A version's [`PluginState`] is derived from its columns: `failed` when flagged, else `active`,
//! else `previous` (it was active once: a rollback target), else `staged` (never activated).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Actor, Db, Error, Result, audit, flag, now_ms};

/// Where a plugin version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginSource {
    /// A `.wasm` file in `plugin_dir` (the file is the copy; no bytes stored).
    Directory,
    /// Uploaded through the API (bytes stored).
    Upload,
}

impl PluginSource {
    fn as_str(self) -> &'static str {
        match self {
            PluginSource::Directory => "directory",
            PluginSource::Upload => "upload",
        }
    }

    fn parse(raw: &str) -> Result<Self> {
        match raw {
            "directory" => Ok(PluginSource::Directory),
            "upload" => Ok(PluginSource::Upload),
            _ => Err(Error::Corrupt(format!("plugin source {raw:?}"))),
        }
    }
}

/// Where a version stands (derived; see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginState {
    /// Installed, never activated.
    Staged,
    /// Its application's active version.
    Active,
    /// Active before; a rollback target.
    Previous,
    /// Flagged by the failure policy (it may still be the active one).
    Failed,
}

impl PluginState {
    /// `staged`, `active`, `previous` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Staged => "staged",
            PluginState::Active => "active",
            PluginState::Previous => "previous",
            PluginState::Failed => "failed",
        }
    }
}

/// A recorded plugin version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginVersion {
    /// Id.
    pub id: i64,
    /// Plugin name (the application id it serves).
    pub name: String,
    /// The application it serves.
    pub application: String,
    /// The plugin's version.
    pub version: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// The contract world it targets, e.g. `panelink:adapter/adapter@0.1.0`.
    pub world: String,
    /// Component size in bytes.
    pub size: i64,
    /// Where it came from.
    pub source: PluginSource,
    /// Whether it is the plugin's active version.
    pub active: bool,
    /// First seen (ms).
    pub installed_at: i64,
    /// Last made active (ms).
    pub activated_at: Option<i64>,
    /// The upload's signature as sent (`ed25519=<base64>`), when it had one.
    pub signature: Option<String>,
    /// The trusted key that verified the signature at install.
    pub signed_by: Option<String>,
    /// When the failure policy flagged it (ms).
    pub failed_at: Option<i64>,
    /// Why it was flagged.
    pub last_error: Option<String>,
}

impl PluginVersion {
    /// Where it stands.
    pub fn state(&self) -> PluginState {
        if self.failed_at.is_some() {
            PluginState::Failed
        } else if self.active {
            PluginState::Active
        } else if self.activated_at.is_some() {
            PluginState::Previous
        } else {
            PluginState::Staged
        }
    }

    /// `plugin:<name>@<version>`, the audit log's target.
    pub fn audit_target(&self) -> String {
        format!("plugin:{}@{}", self.name, self.version)
    }
}

/// A plugin version to record.
#[derive(Debug, Clone)]
pub struct NewPluginVersion {
    /// Plugin name.
    pub name: String,
    /// Application.
    pub application: String,
    /// Version.
    pub version: String,
    /// Digest.
    pub digest: String,
    /// World.
    pub world: String,
    /// Size.
    pub size: i64,
    /// Source.
    pub source: PluginSource,
    /// The bytes (uploads only).
    pub component: Option<Vec<u8>>,
    /// The signature sent with it.
    pub signature: Option<String>,
    /// The trusted key that verified it.
    pub signed_by: Option<String>,
}

const COLUMNS: &str = "id, name, application, version, digest, world, size, source, active, \
                       installed_at, activated_at, signature, signed_by, failed_at, last_error";

fn version_from(row: &AnyRow) -> Result<PluginVersion> {
    Ok(PluginVersion {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        application: row.try_get("application")?,
        version: row.try_get("version")?,
        digest: row.try_get("digest")?,
        world: row.try_get("world")?,
        size: row.try_get("size")?,
        source: PluginSource::parse(&row.try_get::<String, _>("source")?)?,
        active: flag(row, "active")?,
        installed_at: row.try_get("installed_at")?,
        activated_at: row.try_get("activated_at")?,
        signature: row.try_get("signature")?,
        signed_by: row.try_get("signed_by")?,
        failed_at: row.try_get("failed_at")?,
        last_error: row.try_get("last_error")?,
    })
}

impl Db {
    /// Record a plugin version; returns it and whether it is new.
    ///
    /// The same digest again is the same version (not new); if it was recorded without a
    /// verified signature and now comes with one, the signature is recorded (audited as
    /// `plugin.sign`). The same name and version with other content: a directory plugin rebuilt
    /// in place replaces the record of the old build; any other case is a conflict (a version
    /// number names one component). A new version is recorded staged.
    pub async fn record_plugin_version(
        &self,
        actor: &Actor,
        new: &NewPluginVersion,
    ) -> Result<(PluginVersion, bool)> {
        let mut tx = self.begin_write().await?;
        if let Some(row) = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugin_versions WHERE digest = $1"
        ))
        .bind(&new.digest)
        .fetch_optional(&mut *tx)
        .await?
        {
            let known = version_from(&row)?;
            let better = known.signed_by.is_none()
                && (new.signed_by.is_some()
                    || (known.signature.is_none() && new.signature.is_some()));
            if !better {
                return Ok((known, false));
            }
            let row = sqlx::query(&format!(
                "UPDATE plugin_versions SET signature = $2, signed_by = $3 WHERE id = $1 \
                 RETURNING {COLUMNS}"
            ))
            .bind(known.id)
            .bind(&new.signature)
            .bind(&new.signed_by)
            .fetch_one(&mut *tx)
            .await?;
            let version = version_from(&row)?;
            audit(
                &mut tx,
                actor,
                "plugin.sign",
                &version.audit_target(),
                &format!(
                    "digest={} signed_by={}",
                    version.digest,
                    version.signed_by.as_deref().unwrap_or("(not verified)")
                ),
            )
            .await?;
            tx.commit().await?;
            return Ok((version, false));
        }
        let same_version = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugin_versions WHERE name = $1 AND version = $2"
        ))
        .bind(&new.name)
        .bind(&new.version)
        .fetch_optional(&mut *tx)
        .await?;
        let now = now_ms();
        let row = match same_version {
            Some(row) => {
                let old = version_from(&row)?;
                if old.source != PluginSource::Directory || new.source != PluginSource::Directory {
                    return Err(Error::Conflict(format!(
                        "{} {} is already installed with other content ({}); give the new \
                         build another version",
                        new.name, new.version, old.digest
                    )));
                }
                sqlx::query(&format!(
                    "UPDATE plugin_versions SET digest = $2, world = $3, size = $4, \
                     installed_at = $5, failed_at = NULL, last_error = NULL \
                     WHERE id = $1 RETURNING {COLUMNS}"
                ))
                .bind(old.id)
                .bind(&new.digest)
                .bind(&new.world)
                .bind(new.size)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
            }
            None => sqlx::query(&format!(
                "INSERT INTO plugin_versions (name, application, version, digest, world, size, \
                 source, component, active, installed_at, signature, signed_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9, $10, $11) RETURNING {COLUMNS}"
            ))
            .bind(&new.name)
            .bind(&new.application)
            .bind(&new.version)
            .bind(&new.digest)
            .bind(&new.world)
            .bind(new.size)
            .bind(new.source.as_str())
            .bind(new.component.clone())
            .bind(now)
            .bind(&new.signature)
            .bind(&new.signed_by)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| super::conflict_on_violation(e, "this plugin version already exists"))?,
        };
        let version = version_from(&row)?;
        audit(
            &mut tx,
            actor,
            "plugin.install",
            &version.audit_target(),
            &format!(
                "digest={} source={} signed_by={}",
                version.digest,
                new.source.as_str(),
                match (&version.signed_by, &version.signature) {
                    (Some(key), _) => key.as_str(),
                    (None, Some(_)) => "(signature not verified: no trusted keys)",
                    (None, None) => "(unsigned)",
                }
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((version, true))
    }

    /// Every recorded version, by name then installation.
    pub async fn plugin_versions(&self) -> Result<Vec<PluginVersion>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugin_versions ORDER BY name, installed_at, id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(version_from).collect()
    }

    /// One version of a plugin.
    pub async fn plugin_version(&self, name: &str, version: &str) -> Result<PluginVersion> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugin_versions WHERE name = $1 AND version = $2"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(self.pool())
        .await?
        .ok_or(Error::NotFound("plugin version"))?;
        version_from(&row)
    }

    /// The stored bytes of an uploaded version (`None` for directory plugins).
    pub async fn plugin_component(&self, id: i64) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT component FROM plugin_versions WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?
                .flatten(),
        )
    }

    /// Make a version its plugin's active one, clearing a failure flag; audited as `action`
    /// (`plugin.activate`, `plugin.rollback`) with `detail` after the digest.
    pub async fn activate_plugin_version(
        &self,
        actor: &Actor,
        id: i64,
        action: &str,
        detail: &str,
    ) -> Result<PluginVersion> {
        let mut tx = self.begin_write().await?;
        let name: String = sqlx::query_scalar("SELECT name FROM plugin_versions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::NotFound("plugin version"))?;
        sqlx::query("UPDATE plugin_versions SET active = FALSE WHERE name = $1 AND id <> $2")
            .bind(&name)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "UPDATE plugin_versions SET active = TRUE, activated_at = $2, failed_at = NULL, \
             last_error = NULL WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let version = version_from(&row)?;
        let detail = if detail.is_empty() {
            format!("digest={}", version.digest)
        } else {
            format!("digest={} {detail}", version.digest)
        };
        audit(&mut tx, actor, action, &version.audit_target(), &detail).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// The version of a plugin to roll back to: the most recently activated inactive version
    /// that is not flagged.
    pub async fn previous_plugin_version(&self, name: &str) -> Result<Option<PluginVersion>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugin_versions \
             WHERE name = $1 AND active = FALSE AND activated_at IS NOT NULL \
             AND failed_at IS NULL \
             ORDER BY activated_at DESC, id DESC LIMIT 1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(version_from).transpose()
    }

    /// Flag a version as failed (the failure policy), audited as `plugin.flag` by the system.
    /// `None` when it is unknown or flagged already.
    pub async fn flag_plugin_version(
        &self,
        digest: &str,
        error: &str,
    ) -> Result<Option<PluginVersion>> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(&format!(
            "UPDATE plugin_versions SET failed_at = $2, last_error = $3 \
             WHERE digest = $1 AND failed_at IS NULL RETURNING {COLUMNS}"
        ))
        .bind(digest)
        .bind(now_ms())
        .bind(error)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let version = version_from(&row)?;
        audit(
            &mut tx,
            &Actor::system(),
            "plugin.flag",
            &version.audit_target(),
            &format!(
                "digest={} active={} error={error}",
                version.digest, version.active
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(version))
    }

    /// Record something that happened to a version without changing it (a refused activation),
    /// in the audit log.
    pub async fn audit_plugin_version(
        &self,
        actor: &Actor,
        version: &PluginVersion,
        action: &str,
        detail: &str,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        audit(
            &mut tx,
            actor,
            action,
            &version.audit_target(),
            &format!("digest={} {detail}", version.digest),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
