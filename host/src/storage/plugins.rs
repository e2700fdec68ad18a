//! Plugin versions: every component the host has seen, which one is active per plugin, and the
//! bytes of uploaded ones (so every node and every restart can load them).

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
}

const COLUMNS: &str = "id, name, application, version, digest, world, size, source, active, \
                       installed_at, activated_at";

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
    })
}

impl Db {
    /// Record a plugin version; returns it and whether it is new.
    ///
    /// The same digest again is the same version (not new). The same name and version with other
    /// content: a directory plugin rebuilt in place replaces the record of the old build; any
    /// other case is a conflict (a version number names one component).
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
            return Ok((version_from(&row)?, false));
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
                     installed_at = $5 WHERE id = $1 RETURNING {COLUMNS}"
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
                 source, component, active, installed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9) RETURNING {COLUMNS}"
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
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| super::conflict_on_violation(e, "this plugin version already exists"))?,
        };
        let version = version_from(&row)?;
        audit(
            &mut tx,
            actor,
            "plugin.install",
            &format!("plugin:{}@{}", version.name, version.version),
            &format!("digest={} source={}", version.digest, new.source.as_str()),
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

    /// Make a version its plugin's active one.
    pub async fn activate_plugin_version(&self, actor: &Actor, id: i64) -> Result<PluginVersion> {
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
            "UPDATE plugin_versions SET active = TRUE, activated_at = $2 WHERE id = $1 \
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let version = version_from(&row)?;
        audit(
            &mut tx,
            actor,
            "plugin.activate",
            &format!("plugin:{}@{}", version.name, version.version),
            &format!("digest={}", version.digest),
        )
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// The version of a plugin that was active before the current one: the most recently
    /// activated inactive version.
    pub async fn previous_plugin_version(&self, name: &str) -> Result<Option<PluginVersion>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugin_versions \
             WHERE name = $1 AND active = FALSE AND activated_at IS NOT NULL \
             ORDER BY activated_at DESC, id DESC LIMIT 1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(version_from).transpose()
    }
}
