//! The plugin catalog: which plugin versions are installed, which one is active per application,
//! and keeping [`Plugins`] (the runtime's swappable registry) in step with what storage records.
//!
//! It composes `runtime` (compiling components) and `storage` (recording versions) and knows
//! neither SQL nor HTTP. At start, [`Catalog::load_dir`] compiles the components of `plugin_dir`
//! and [`Catalog::adopt`] records them and picks each application's active version: the one
//! storage marks active when its bytes are at hand (a loaded file, or an upload's stored bytes),
//! else the directory's. Uploads ([`Catalog::install`]) are compiled and checked by the runtime
//! first, so only a valid component is ever recorded; an upload for an application no plugin
//! serves yet becomes active at once, any other waits for [`Catalog::activate`].
//!
//! Multi-node note: activation swaps the plugin in this process and records it in the shared
//! database; other nodes pick the recorded active version up at their next start.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::adapter::Description;
use crate::runtime::{self, Plugin, Plugins, Runtime};
use crate::storage::{self, Actor, Db, NewPluginVersion, PluginSource, PluginVersion};

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component is not a usable plugin (the runtime's message).
    #[error("{0}")]
    Invalid(String),
    /// No such plugin version.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The operation conflicts with the installed versions.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

impl From<runtime::Error> for Error {
    fn from(e: runtime::Error) -> Self {
        Error::Invalid(e.to_string())
    }
}

/// The contract world a plugin targets, as the plugins API reports it.
pub fn world(description: &Description) -> String {
    format!("panelink:adapter/adapter@{}", description.contract_version)
}

/// Installed plugin versions and the active one per application.
pub struct Catalog {
    runtime: Runtime,
    plugins: Arc<Plugins>,
    db: Db,
    /// Compiled versions by digest: activating one of these needs no compilation.
    loaded: Mutex<HashMap<String, Arc<Plugin>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("active", &self.plugins.all())
            .finish()
    }
}

impl Catalog {
    /// A catalog over a runtime, the registry of active plugins and the database.
    pub fn new(runtime: Runtime, plugins: Arc<Plugins>, db: Db) -> Self {
        Self {
            runtime,
            plugins,
            db,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The active plugins.
    pub fn plugins(&self) -> &Arc<Plugins> {
        &self.plugins
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn remember(&self, plugin: &Arc<Plugin>) {
        self.loaded
            .lock()
            .expect("catalog lock poisoned")
            .insert(plugin.digest.clone(), plugin.clone());
    }

    /// The compiled version of this digest, when this process has loaded it (every directory
    /// plugin, every active version and every upload since start).
    pub fn compiled(&self, digest: &str) -> Option<Arc<Plugin>> {
        self.loaded
            .lock()
            .expect("catalog lock poisoned")
            .get(digest)
            .cloned()
    }

    /// Compile every `.wasm` file of a directory, in name order. A file that fails is logged and
    /// skipped (one broken plugin does not keep the others from serving); a missing directory is
    /// a warning and no plugins.
    pub async fn load_dir(&self, dir: &Path) -> Vec<Arc<Plugin>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the plugin directory; no plugins loaded");
                return Vec::new();
            }
        };
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        paths.sort();
        let mut plugins = Vec::new();
        for path in paths {
            match self.runtime.load_file(&path).await {
                Ok(plugin) => {
                    tracing::info!(
                        file = %path.display(),
                        plugin = %plugin.id(),
                        version = %plugin.version(),
                        digest = %plugin.digest,
                        "loaded plugin"
                    );
                    plugins.push(plugin);
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "plugin not loaded");
                }
            }
        }
        plugins
    }

    /// Record compiled directory plugins and make each application's active version live (see
    /// the module docs). Ensures an application row for every active plugin.
    pub async fn adopt(&self, from_dir: &[Arc<Plugin>]) -> Result<(), Error> {
        let actor = Actor::system();
        let mut by_name: HashMap<String, Arc<Plugin>> = HashMap::new();
        for plugin in from_dir {
            self.remember(plugin);
            match self
                .db
                .record_plugin_version(&actor, &new_version(plugin, PluginSource::Directory, None))
                .await
            {
                Ok(_) => {}
                Err(storage::Error::Conflict(message)) => {
                    tracing::warn!(plugin = %plugin.id(), %message, "directory plugin not recorded");
                }
                Err(e) => return Err(e.into()),
            }
            // In name order: a later file of the same application wins.
            by_name.insert(plugin.id().to_owned(), plugin.clone());
        }
        for version in self.db.plugin_versions().await? {
            if !version.active {
                continue;
            }
            match self.compile_version(&version).await {
                Ok(plugin) => {
                    by_name.remove(&version.name);
                    self.plugins.activate(plugin);
                    self.db.ensure_application(&version.application).await?;
                }
                Err(e) => tracing::warn!(
                    plugin = %version.name,
                    version = %version.version,
                    error = %e,
                    "the recorded active version cannot be loaded; using the plugin directory's"
                ),
            }
        }
        for plugin in by_name.into_values() {
            let recorded = self
                .db
                .plugin_version(plugin.id(), plugin.version())
                .await?;
            self.db.activate_plugin_version(&actor, recorded.id).await?;
            self.db.ensure_application(plugin.id()).await?;
            self.plugins.activate(plugin);
        }
        Ok(())
    }

    async fn compile_version(&self, version: &PluginVersion) -> Result<Arc<Plugin>, Error> {
        if let Some(plugin) = self.compiled(&version.digest) {
            return Ok(plugin);
        }
        let bytes = self.db.plugin_component(version.id).await?.ok_or_else(|| {
            Error::Conflict(format!(
                "the component of {} {} is not available any more (its plugin_dir file is gone)",
                version.name, version.version
            ))
        })?;
        let plugin = self.runtime.load(&bytes).await?;
        if plugin.digest != version.digest {
            return Err(Error::Conflict(format!(
                "the stored component of {} {} does not match its digest",
                version.name, version.version
            )));
        }
        self.remember(&plugin);
        Ok(plugin)
    }

    /// Install an uploaded component. Returns the version and whether it is new (the same bytes
    /// again are the same version). The first version of an application becomes active.
    pub async fn install(
        &self,
        actor: &Actor,
        bytes: &[u8],
    ) -> Result<(PluginVersion, bool), Error> {
        let plugin = self.runtime.load(bytes).await?;
        let (version, created) = self
            .db
            .record_plugin_version(
                actor,
                &new_version(&plugin, PluginSource::Upload, Some(bytes.to_vec())),
            )
            .await
            .map_err(|e| match e {
                storage::Error::Conflict(m) => Error::Conflict(m),
                e => Error::Storage(e),
            })?;
        self.remember(&plugin);
        if self.plugins.get(plugin.id()).is_some() {
            return Ok((version, created));
        }
        let version = self.db.activate_plugin_version(actor, version.id).await?;
        self.db.ensure_application(plugin.id()).await?;
        self.plugins.activate(plugin);
        Ok((version, created))
    }

    /// Make a recorded version its application's active plugin.
    pub async fn activate(
        &self,
        actor: &Actor,
        name: &str,
        version: &str,
    ) -> Result<PluginVersion, Error> {
        let recorded = self
            .db
            .plugin_version(name, version)
            .await
            .map_err(not_found)?;
        self.switch_to(actor, &recorded).await
    }

    /// Go back to the version that was active before the current one.
    pub async fn rollback(&self, actor: &Actor, name: &str) -> Result<PluginVersion, Error> {
        let known = self
            .db
            .plugin_versions()
            .await?
            .iter()
            .any(|v| v.name == name);
        if !known {
            return Err(Error::NotFound("plugin"));
        }
        let previous = self
            .db
            .previous_plugin_version(name)
            .await?
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "{name} has no earlier active version to roll back to"
                ))
            })?;
        self.switch_to(actor, &previous).await
    }

    async fn switch_to(
        &self,
        actor: &Actor,
        version: &PluginVersion,
    ) -> Result<PluginVersion, Error> {
        let plugin = self.compile_version(version).await?;
        let recorded = self.db.activate_plugin_version(actor, version.id).await?;
        self.db.ensure_application(&version.application).await?;
        let replaced = self.plugins.activate(plugin);
        tracing::info!(
            plugin = %version.name,
            version = %version.version,
            replaced = ?replaced.as_ref().map(|p| p.version().to_owned()),
            "plugin version activated"
        );
        Ok(recorded)
    }
}

fn not_found(e: storage::Error) -> Error {
    match e {
        storage::Error::NotFound(what) => Error::NotFound(what),
        e => Error::Storage(e),
    }
}

fn new_version(
    plugin: &Plugin,
    source: PluginSource,
    component: Option<Vec<u8>>,
) -> NewPluginVersion {
    NewPluginVersion {
        name: plugin.id().to_owned(),
        application: plugin.id().to_owned(),
        version: plugin.version().to_owned(),
        digest: plugin.digest.clone(),
        world: world(&plugin.description),
        size: i64::try_from(plugin.size).unwrap_or(i64::MAX),
        source,
        component,
    }
}
