//! The plugin catalog: which plugin versions are installed, which one is active per application,
//! and keeping [`Plugins`] (the runtime's swappable registry) in step with what storage records.
//!
//! It composes `runtime` (compiling components), `signing` and `storage` (recording versions)
//! and knows neither SQL nor HTTP. Plugins are third-party code: nothing a vendor ships runs for
//! real until an admin has activated it, and a version that keeps failing is flagged.
//!
//! - **Start** ([`Catalog::load_dir`], [`Catalog::adopt`]): the components of `plugin_dir` (the
//!   operator's own files, so no signature needed) are compiled and recorded, and each
//!   application's active version is made live: the one storage marks active when its bytes are
//!   at hand (a loaded file, or an upload's stored bytes), else the directory's.
//! - **Install** ([`Catalog::install`], `POST /api/v1/plugins`, `panelink plugin install`):
//!   the file must be a WebAssembly component (not another file, not a core module); when
//!   trusted keys are configured ([`Policy::trusted_keys`]) it must come with a signature, which
//!   is parsed before anything is compiled. The component is then compiled and describes itself
//!   in the sandbox, the description is checked ([`check_description`]), and the signature must
//!   verify with a trusted key over the signed message of [`crate::signing`] (the digest, the
//!   application and the version it describes). Only then is it recorded, *staged*: an upload
//!   never becomes active by itself, not even the first version of a new application.
//! - **Activate** ([`Catalog::activate`], [`Catalog::rollback`]): an explicit admin action,
//!   audited. The version's self-description is checked again, a stored upload's signature is
//!   checked against the keys trusted now, and when the admin names a canary server the new
//!   version's `check-server` must say that server is supported. Any failure refuses the
//!   activation (audited as `plugin.activate_refused`) and leaves the active version as it was.
//! - **Failure policy**: every loaded version carries a [`runtime::CallObserver`] that counts
//!   its consecutive faulting calls (traps, timeouts, the memory cap, capability violations).
//!   At [`Policy::fault_threshold`] the version is flagged `failed` in storage with its last
//!   error (logged, audited as `plugin.flag`); with [`Policy::auto_rollback`] the application
//!   then goes back to its previous good version (audited as `plugin.rollback` by `system`).
//!   The call path pays one relaxed atomic add and load on success (the call counter of
//!   [`Catalog::call_counts`], `/metrics`) and two more on a fault; the flagging itself runs in
//!   a task of its own.
//!
//! At start the recorded active version is loaded as it is (its signature was checked when it
//! was activated); keys removed from `trusted_keys` since then take effect at the next
//! activation or rollback.
//!
//! Several hosts: activation swaps the plugin in this process, records it in the shared
//! database and tells the other hosts on PostgreSQL ([`Catalog::follow_peers`]), which switch
//! by themselves; on SQLite (one host) an activation made with `panelink plugin activate` is
//! picked up at the next start. Fault and call counts are per process.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::adapter::Description;
use crate::runtime::{self, CallObserver, Plugin, Plugins, Runtime};
use crate::signing::{self, Signature, TrustedKeys};
use crate::storage::{self, Actor, Db, NewPluginVersion, PluginSource, PluginVersion};

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component is not a usable plugin, or not one this host may run (unsigned, badly
    /// signed, a bad self-description).
    #[error("{0}")]
    Invalid(String),
    /// A parameter of the request is not acceptable (e.g. an unknown canary server).
    #[error("{field}: {message}")]
    Field {
        /// The parameter.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// No such plugin version.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The operation conflicts with the installed versions, or the canary check failed.
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

/// The contract version of a world named by [`world`], e.g. `0.2.0`.
pub fn contract_of_world(world: &str) -> &str {
    world.rsplit_once('@').map_or(world, |(_, v)| v)
}

/// What the operator decided about third-party plugins (`trusted_keys`,
/// `plugin_fault_threshold`, `plugin_auto_rollback`; see [`crate::config`]).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Keys an upload must be signed with; empty: signatures are optional.
    pub trusted_keys: TrustedKeys,
    /// Consecutive faulting calls that flag a version; 0: never.
    pub fault_threshold: u32,
    /// Roll back to the previous good version when the active one is flagged.
    pub auto_rollback: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            trusted_keys: TrustedKeys::default(),
            fault_threshold: crate::config::DEFAULT_PLUGIN_FAULT_THRESHOLD,
            auto_rollback: false,
        }
    }
}

impl Policy {
    /// The policy of a configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            trusted_keys: config.trusted_keys.clone(),
            fault_threshold: config.plugin_fault_threshold,
            auto_rollback: config.plugin_auto_rollback,
        }
    }
}

/// Check a self-description beyond what the runtime checks at load: the contract version is
/// one this host runs (same major and minor as one of [`runtime::SUPPORTED_CONTRACTS`]), every
/// link has a non-empty scope of its own and a default label, and the version can name a
/// version (1–64 characters, no whitespace, control characters or `/`). The message says what
/// is wrong.
pub fn check_description(d: &Description) -> Result<(), String> {
    let numbers = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    };
    let supported = runtime::SUPPORTED_CONTRACTS
        .iter()
        .any(|v| numbers(v).is_some() && numbers(v) == numbers(&d.contract_version));
    if !supported {
        return Err(format!(
            "the plugin targets contract version {:?}, which this host does not run (it runs \
             contracts {})",
            d.contract_version,
            runtime::SUPPORTED_CONTRACTS.join(", ")
        ));
    }
    let version_ok = !d.version.is_empty()
        && d.version.chars().count() <= 64
        && !d
            .version
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/');
    if !version_ok {
        return Err(format!(
            "the plugin's version {:?} must be 1-64 characters without spaces, control \
             characters or '/'",
            d.version
        ));
    }
    if d.links.is_empty() {
        return Err("the plugin supports no links".into());
    }
    let mut seen = std::collections::HashSet::new();
    for link in &d.links {
        if link.scope.trim().is_empty() {
            return Err("a link has an empty scope".into());
        }
        if !seen.insert(link.scope.as_str()) {
            return Err(format!(
                "the link scope {:?} is declared more than once: scopes must be unique",
                link.scope
            ));
        }
        if link.default_label.trim().is_empty() {
            return Err(format!("the link {:?} has no default label", link.scope));
        }
    }
    Ok(())
}

/// Refuse what is not a WebAssembly component before anything compiles it, saying what it is.
fn check_format(bytes: &[u8]) -> Result<(), Error> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
    const COMPONENT: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    if bytes.is_empty() {
        return Err(Error::Invalid(
            "the file is empty: send the component's bytes (application/wasm)".into(),
        ));
    }
    if !bytes.starts_with(MAGIC) || bytes.len() < 8 {
        return Err(Error::Invalid(
            "the file is not WebAssembly (it does not start with \\0asm): send the plugin's \
             .wasm component"
                .into(),
        ));
    }
    match <[u8; 4]>::try_from(&bytes[4..8]).expect("four bytes") {
        COMPONENT => Ok(()),
        CORE_MODULE => Err(Error::Invalid(
            "the file is a core WebAssembly module, not a component: plugins are components of \
             the panelink:adapter world (build for wasm32-wasip2, or wrap the module with \
             `wasm-tools component new`)"
                .into(),
        )),
        other => Err(Error::Invalid(format!(
            "the file is WebAssembly of an unknown encoding (version/layer bytes {}), not a \
             component this host reads",
            hex::encode(other)
        ))),
    }
}

/// How a version is being switched to (for the audit log and the refusals).
enum Switch<'a> {
    /// An admin's activation, with an optional canary server.
    Activate { canary: Option<i64> },
    /// Back to the previous good version; `reason` when the failure policy did it.
    Rollback { reason: Option<&'a str> },
}

impl Switch<'_> {
    fn action(&self) -> &'static str {
        match self {
            Switch::Activate { .. } => "plugin.activate",
            Switch::Rollback { .. } => "plugin.rollback",
        }
    }

    fn refused_action(&self) -> &'static str {
        match self {
            Switch::Activate { .. } => "plugin.activate_refused",
            Switch::Rollback { .. } => "plugin.rollback_refused",
        }
    }
}

/// A loaded version and its fault counter.
struct Loaded {
    plugin: Arc<Plugin>,
    health: Arc<Health>,
}

/// The catalog's state, shared with the fault counters (which hold it weakly).
struct Core {
    runtime: Runtime,
    plugins: Arc<Plugins>,
    db: Db,
    policy: Policy,
    /// Compiled versions by digest: activating one of these needs no compilation.
    loaded: Mutex<HashMap<String, Loaded>>,
    /// Held while a version is switched to, so activations, rollbacks and the failure policy
    /// take turns (storage and the registry then change in the same order).
    switching: tokio::sync::Mutex<()>,
}

/// The peer message (see [`Db::tell_peers`]) that says an application's active version changed.
const PEER_ACTIVE: &str = "plugin.active";

/// Installed plugin versions and the active one per application.
pub struct Catalog {
    core: Arc<Core>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("active", &self.core.plugins.all())
            .field("policy", &self.core.policy)
            .finish()
    }
}

/// Counts a version's consecutive faulting calls (see the module docs), and its calls.
struct Health {
    digest: String,
    label: String,
    threshold: u32,
    faults: AtomicU32,
    flagged: AtomicBool,
    core: Weak<Core>,
    /// Calls that ended, and those of them the runtime ended (a trap, a limit, a denial).
    calls: AtomicU64,
    failed: AtomicU64,
}

/// How many calls one loaded version has served in this process ([`Catalog::call_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallCount {
    /// Application id.
    pub plugin: String,
    /// Version.
    pub version: String,
    /// Calls that ended.
    pub calls: u64,
    /// Calls the runtime ended instead of the plugin answering (traps, timeouts, the memory or
    /// host-call cap, a denied request).
    pub failed: u64,
}

impl Health {
    fn reset(&self) {
        self.faults.store(0, Ordering::Relaxed);
        self.flagged.store(false, Ordering::Release);
    }
}

/// Whether a call's end counts against the version: the runtime ended it for misbehaving.
/// A plugin's own error answer (e.g. a panel that is down) is not a fault.
fn is_fault(e: &runtime::Error) -> bool {
    matches!(
        e,
        runtime::Error::Trapped { .. }
            | runtime::Error::Timeout { .. }
            | runtime::Error::MemoryLimit { .. }
            | runtime::Error::CapabilityDenied { .. }
            | runtime::Error::HostCallLimit { .. }
    )
}

impl CallObserver for Health {
    fn call_ended(&self, fault: Option<&runtime::Error>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let Some(e) = fault.filter(|e| is_fault(e)) else {
            // The common case: a read of a line nobody writes while the version behaves.
            if self.faults.load(Ordering::Relaxed) != 0 {
                self.faults.store(0, Ordering::Relaxed);
            }
            return;
        };
        self.failed.fetch_add(1, Ordering::Relaxed);
        let count = self
            .faults
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if self.threshold == 0 || count < self.threshold {
            return;
        }
        if self.flagged.swap(true, Ordering::AcqRel) {
            return;
        }
        let message = format!("{count} calls in a row failed; the last: {e}");
        tracing::warn!(plugin = %self.label, digest = %self.digest, %message, "plugin version keeps failing");
        let Some(core) = self.core.upgrade() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let digest = self.digest.clone();
                handle.spawn(async move { core.flag(&digest, &message).await });
            }
            Err(_) => tracing::error!(
                plugin = %self.label,
                "cannot flag the plugin version: no async runtime on this thread"
            ),
        }
    }
}

impl Catalog {
    /// The compiled version of this digest, when this process has loaded it (every directory
    /// plugin, every active version and every upload since start).
    pub fn compiled(&self, digest: &str) -> Option<Arc<Plugin>> {
        self.core.compiled(digest)
    }

    /// The calls each version this process has loaded has served, by plugin and version.
    pub fn call_counts(&self) -> Vec<CallCount> {
        let loaded = self.core.loaded.lock().expect("catalog lock poisoned");
        let mut counts: Vec<CallCount> = loaded
            .values()
            .map(|l| CallCount {
                plugin: l.plugin.id().to_owned(),
                version: l.plugin.version().to_owned(),
                calls: l.health.calls.load(Ordering::Relaxed),
                failed: l.health.failed.load(Ordering::Relaxed),
            })
            .collect();
        counts.sort_by(|a, b| (&a.plugin, &a.version).cmp(&(&b.plugin, &b.version)));
        counts
    }

    /// Follow the activations other hosts sharing the database make (PostgreSQL; nothing
    /// arrives on SQLite): each switches this host to the version the database now says is
    /// active, within the time it takes to compile it (nothing when it is compiled already).
    /// Runs until `stop` is cancelled.
    pub async fn follow_peers(&self, stop: tokio_util::sync::CancellationToken) {
        let mut heard = self.core.db.peer_messages().await;
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                message = heard.recv() => message,
            };
            match message {
                Ok(message) => {
                    if let Some(application) = message.strip_prefix(&format!("{PEER_ACTIVE} ")) {
                        self.follow(application).await;
                    }
                }
                // Activations were missed: check every application.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let applications: Vec<String> = self
                        .core
                        .plugins
                        .all()
                        .iter()
                        .map(|p| p.id().to_owned())
                        .collect();
                    for application in applications {
                        self.follow(&application).await;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Make this host's active version of `application` the one the database says.
    pub async fn follow(&self, application: &str) {
        let core = &self.core;
        let _one_at_a_time = core.switching.lock().await;
        let versions = match core.db.plugin_versions().await {
            Ok(versions) => versions,
            Err(e) => {
                tracing::warn!(%application, error = %e, "could not read the active plugin version");
                return;
            }
        };
        let Some(active) = versions
            .into_iter()
            .find(|v| v.active && v.application == application)
        else {
            return;
        };
        if core
            .plugins
            .get(application)
            .is_some_and(|p| p.digest == active.digest)
        {
            return;
        }
        match core.compile_version(&active).await {
            Ok(plugin) => {
                if let Some(health) = core.health(&plugin.digest) {
                    health.reset();
                }
                core.plugins.activate(plugin);
                tracing::info!(
                    plugin = %active.name,
                    version = %active.version,
                    "plugin version activated by another host"
                );
            }
            Err(e) => tracing::warn!(
                plugin = %active.name,
                version = %active.version,
                error = %e,
                "another host activated a version this host cannot load"
            ),
        }
    }

    /// A catalog over a runtime, the registry of active plugins and the database, with the
    /// default [`Policy`] (no trusted keys; see [`Catalog::with_policy`]).
    pub fn new(runtime: Runtime, plugins: Arc<Plugins>, db: Db) -> Self {
        Self {
            core: Arc::new(Core {
                runtime,
                plugins,
                db,
                policy: Policy::default(),
                loaded: Mutex::new(HashMap::new()),
                switching: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The same catalog with this policy. Call it before loading anything.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        Arc::get_mut(&mut self.core)
            .expect("Catalog::with_policy is called before the catalog is shared")
            .policy = policy;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.core.policy
    }

    /// The active plugins.
    pub fn plugins(&self) -> &Arc<Plugins> {
        &self.core.plugins
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.core.runtime
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.core.db
    }

    /// Compile every `.wasm` file of a directory, in name order. A file that fails (to compile,
    /// or the checks of [`check_description`]) is logged and skipped (one broken plugin does not
    /// keep the others from serving); a missing directory is a warning and no plugins.
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
            let loaded = self
                .core
                .runtime
                .load_file(&path)
                .await
                .map_err(|e| e.to_string())
                .and_then(|plugin| {
                    check_description(&plugin.description)
                        .map(|()| plugin)
                        .map_err(|why| format!("invalid plugin: {why}"))
                });
            match loaded {
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

    /// Keep compiled plugins at hand (e.g. `plugin_dir`'s, for the command line's `activate`)
    /// without recording or activating anything.
    pub fn know(&self, plugins: &[Arc<Plugin>]) {
        for plugin in plugins {
            self.core.remember(plugin);
        }
    }

    /// Record compiled directory plugins and make each application's active version live (see
    /// the module docs). Ensures an application row for every active plugin.
    pub async fn adopt(&self, from_dir: &[Arc<Plugin>]) -> Result<(), Error> {
        let core = &self.core;
        let actor = Actor::system();
        let mut by_name: HashMap<String, Arc<Plugin>> = HashMap::new();
        for plugin in from_dir {
            core.remember(plugin);
            match core
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
        for version in core.db.plugin_versions().await? {
            if !version.active {
                continue;
            }
            match core.compile_version(&version).await {
                Ok(plugin) => {
                    by_name.remove(&version.name);
                    core.plugins.activate(plugin);
                    core.db.ensure_application(&version.application).await?;
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
            let recorded = core
                .db
                .plugin_version(plugin.id(), plugin.version())
                .await?;
            core.db
                .activate_plugin_version(
                    &actor,
                    recorded.id,
                    "plugin.activate",
                    "source=directory (no version of the application was active)",
                )
                .await?;
            core.db.ensure_application(plugin.id()).await?;
            core.plugins.activate(plugin);
        }
        Ok(())
    }

    /// Install a component, staged (see the module docs): `signature` is the text of the
    /// `X-Panelink-Signature` header or of a signature file (`ed25519=<base64>`). Returns the
    /// version and whether it is new (the same bytes again are the same version). Nothing is
    /// recorded when it is refused.
    pub async fn install(
        &self,
        actor: &Actor,
        bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<(PluginVersion, bool), Error> {
        let core = &self.core;
        let keys = &core.policy.trusted_keys;
        check_format(bytes)?;
        let signature = signature
            .map(|text| {
                Signature::parse(text).map_err(|e| {
                    Error::Invalid(format!(
                        "the signature (X-Panelink-Signature) is refused: {e}"
                    ))
                })
            })
            .transpose()?;
        if signature.is_none() && !keys.is_empty() {
            return Err(Error::Invalid(format!(
                "the component is not signed, and this host only installs components signed by \
                 a trusted key ({}): sign it with `panelink plugin sign` and send the signature \
                 as X-Panelink-Signature: ed25519=<base64>",
                keys.names()
            )));
        }
        let plugin = core.runtime.load(bytes).await?;
        check_description(&plugin.description)
            .map_err(|why| Error::Invalid(format!("invalid plugin: {why}")))?;
        let signed_by = match &signature {
            Some(signature) if !keys.is_empty() => {
                Some(verify(keys, &plugin, signature).ok_or_else(|| {
                    Error::Invalid(format!(
                        "the signature does not verify with any trusted key ({}) for {} {} \
                         ({}): it was made for other bytes, another application or version, or \
                         with a key this host does not trust",
                        keys.names(),
                        plugin.id(),
                        plugin.version(),
                        plugin.digest
                    ))
                })?)
            }
            _ => None,
        };
        let mut new = new_version(&plugin, PluginSource::Upload, Some(bytes.to_vec()));
        new.signature = signature.map(|s| s.to_string());
        new.signed_by = signed_by;
        let (version, created) = core
            .db
            .record_plugin_version(actor, &new)
            .await
            .map_err(|e| match e {
                storage::Error::Conflict(m) => Error::Conflict(m),
                e => Error::Storage(e),
            })?;
        core.remember(&plugin);
        if created {
            tracing::info!(
                plugin = %version.name,
                version = %version.version,
                digest = %version.digest,
                signed_by = ?version.signed_by,
                "plugin version installed (staged)"
            );
        }
        Ok((version, created))
    }

    /// Make a recorded version its application's active plugin, after its checks and, with
    /// `canary` (a server id of the same application), its support check of that server.
    pub async fn activate(
        &self,
        actor: &Actor,
        name: &str,
        version: &str,
        canary: Option<i64>,
    ) -> Result<PluginVersion, Error> {
        let core = &self.core;
        let _turn = core.switching.lock().await;
        let recorded = core
            .db
            .plugin_version(name, version)
            .await
            .map_err(not_found)?;
        core.switch_to(actor, &recorded, Switch::Activate { canary })
            .await
    }

    /// Go back to the most recently active version that is not flagged.
    pub async fn rollback(&self, actor: &Actor, name: &str) -> Result<PluginVersion, Error> {
        let core = &self.core;
        let _turn = core.switching.lock().await;
        let known = core
            .db
            .plugin_versions()
            .await?
            .iter()
            .any(|v| v.name == name);
        if !known {
            return Err(Error::NotFound("plugin"));
        }
        let previous = core
            .db
            .previous_plugin_version(name)
            .await?
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "{name} has no earlier good version to roll back to"
                ))
            })?;
        core.switch_to(actor, &previous, Switch::Rollback { reason: None })
            .await
    }

    /// The version that [`Catalog::rollback`] would go back to.
    pub async fn rollback_target(&self, name: &str) -> Result<Option<PluginVersion>, Error> {
        Ok(self.core.db.previous_plugin_version(name).await?)
    }
}

/// The name of the trusted key that made `signature` over `plugin`'s signed message.
fn verify(keys: &TrustedKeys, plugin: &Plugin, signature: &Signature) -> Option<String> {
    let message = signing::message(plugin.id(), plugin.version(), &plugin.digest);
    keys.verify(message.as_bytes(), signature)
        .map(|k| k.name.clone())
}

impl Core {
    fn remember(self: &Arc<Self>, plugin: &Arc<Plugin>) {
        let mut loaded = self.loaded.lock().expect("catalog lock poisoned");
        if loaded.contains_key(&plugin.digest) {
            return;
        }
        let health = Arc::new(Health {
            digest: plugin.digest.clone(),
            label: format!("{} {}", plugin.id(), plugin.version()),
            threshold: self.policy.fault_threshold,
            faults: AtomicU32::new(0),
            flagged: AtomicBool::new(false),
            core: Arc::downgrade(self),
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        // A plugin reports to the first catalog that knew it (one per process, but the tests
        // share compiled plugins between catalogs).
        plugin.observe(health.clone());
        loaded.insert(
            plugin.digest.clone(),
            Loaded {
                plugin: plugin.clone(),
                health,
            },
        );
    }

    fn compiled(&self, digest: &str) -> Option<Arc<Plugin>> {
        self.loaded
            .lock()
            .expect("catalog lock poisoned")
            .get(digest)
            .map(|l| l.plugin.clone())
    }

    fn health(&self, digest: &str) -> Option<Arc<Health>> {
        self.loaded
            .lock()
            .expect("catalog lock poisoned")
            .get(digest)
            .map(|l| l.health.clone())
    }

    async fn compile_version(
        self: &Arc<Self>,
        version: &PluginVersion,
    ) -> Result<Arc<Plugin>, Error> {
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

    /// Switch the application to `version` (the caller holds `switching`). Refusals that are
    /// about the version are audited.
    async fn switch_to(
        self: &Arc<Self>,
        actor: &Actor,
        version: &PluginVersion,
        how: Switch<'_>,
    ) -> Result<PluginVersion, Error> {
        let plugin = match self.checked(version, &how).await {
            Ok(plugin) => plugin,
            Err(e) => {
                if matches!(e, Error::Invalid(_) | Error::Conflict(_)) {
                    let detail = format!("reason={e}");
                    if let Err(audit) = self
                        .db
                        .audit_plugin_version(actor, version, how.refused_action(), &detail)
                        .await
                    {
                        tracing::error!(error = %audit, "could not audit a refused activation");
                    }
                    tracing::warn!(
                        plugin = %version.name,
                        version = %version.version,
                        reason = %e,
                        "plugin activation refused"
                    );
                }
                return Err(e);
            }
        };
        let current = self.plugins.get(&version.application);
        let mut detail = vec![format!(
            "replaces={}",
            current
                .as_ref()
                .map(|p| p.version().to_owned())
                .unwrap_or_else(|| "(none)".into())
        )];
        match &how {
            Switch::Activate { canary: Some(id) } => detail.push(format!("canary=server:{id}")),
            Switch::Activate { canary: None } => {}
            Switch::Rollback {
                reason: Some(reason),
            } => {
                detail.push(format!("automatic=true reason={reason}"));
            }
            Switch::Rollback { reason: None } => {}
        }
        self.db.ensure_application(&version.application).await?;
        // Recorded, then swapped at once: nothing awaits between the two, so the API's listing
        // and the version calls run on differ for no longer than it takes to return here.
        let recorded = self
            .db
            .activate_plugin_version(actor, version.id, how.action(), &detail.join(" "))
            .await?;
        if let Some(health) = self.health(&plugin.digest) {
            health.reset();
        }
        let replaced = self.plugins.activate(plugin);
        // The other hosts sharing the database switch too (see `Catalog::follow_peers`).
        if let Err(e) = self
            .db
            .tell_peers(&format!("{PEER_ACTIVE} {}", version.application))
            .await
        {
            tracing::warn!(error = %e, "could not tell the other hosts about an activation");
        }
        tracing::info!(
            plugin = %version.name,
            version = %version.version,
            replaced = ?replaced.as_ref().map(|p| p.version().to_owned()),
            action = how.action(),
            actor = %actor.name,
            "plugin version activated"
        );
        Ok(recorded)
    }

    /// The version compiled and checked for activation: its self-description, its signature
    /// (a stored upload, when keys are trusted) and the canary.
    async fn checked(
        self: &Arc<Self>,
        version: &PluginVersion,
        how: &Switch<'_>,
    ) -> Result<Arc<Plugin>, Error> {
        let plugin = self.compile_version(version).await?;
        if plugin.id() != version.application || plugin.version() != version.version {
            return Err(Error::Invalid(format!(
                "the component describes itself as {} {}, not as {} {}",
                plugin.id(),
                plugin.version(),
                version.application,
                version.version
            )));
        }
        check_description(&plugin.description).map_err(|why| {
            Error::Invalid(format!(
                "{} {} fails its self-description checks: {why}",
                version.name, version.version
            ))
        })?;
        let keys = &self.policy.trusted_keys;
        if version.source == PluginSource::Upload && !keys.is_empty() {
            let verified = version
                .signature
                .as_deref()
                .and_then(|text| Signature::parse(text).ok())
                .and_then(|signature| verify(keys, &plugin, &signature));
            if verified.is_none() {
                return Err(Error::Invalid(format!(
                    "{} {} is not signed by a key this host trusts now ({}): upload it again \
                     with a valid signature",
                    version.name,
                    version.version,
                    keys.names()
                )));
            }
        }
        if let Switch::Activate {
            canary: Some(server_id),
        } = how
        {
            self.canary(&plugin, *server_id).await?;
        }
        Ok(plugin)
    }

    /// The new version's support check of a server of its application must pass.
    async fn canary(&self, plugin: &Plugin, server_id: i64) -> Result<(), Error> {
        let field = |message: String| Error::Field {
            field: "canary_server_id",
            message,
        };
        let server = match self.db.server(server_id).await {
            Ok(server) => server,
            Err(storage::Error::NotFound(_)) => {
                return Err(field(format!("no server has id {server_id}")));
            }
            Err(e) => return Err(e.into()),
        };
        if server.module != plugin.id() {
            return Err(field(format!(
                "server {server_id} ({}) is a {} server, not a {} one",
                server.name,
                server.module,
                plugin.id()
            )));
        }
        let target = self.db.server_target(server_id).await?;
        let failed = match plugin.check_server(&target).await {
            Ok(out) if out.value.supported => {
                tracing::info!(
                    plugin = %plugin.id(),
                    version = %plugin.version(),
                    server = server_id,
                    detail = %out.value.detail,
                    "canary check passed"
                );
                return Ok(());
            }
            Ok(out) => format!("the server is not supported: {}", out.value.detail),
            Err(e) => e.to_string(),
        };
        let active = self
            .plugins
            .get(plugin.id())
            .map(|p| format!("{} stays active", p.version()))
            .unwrap_or_else(|| "nothing was activated".into());
        Err(Error::Conflict(format!(
            "the canary check of {} {} on server {server_id} ({}) failed: {failed}; {active}",
            plugin.id(),
            plugin.version(),
            server.name
        )))
    }

    /// The failure policy: flag the version, then roll back if the operator wants that.
    async fn flag(self: Arc<Self>, digest: &str, message: &str) {
        let version = match self.db.flag_plugin_version(digest, message).await {
            Ok(Some(version)) => version,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(%digest, error = %e, "could not flag a failing plugin version");
                return;
            }
        };
        tracing::warn!(
            plugin = %version.name,
            version = %version.version,
            active = version.active,
            %message,
            "plugin version flagged as failed"
        );
        if !self.policy.auto_rollback {
            return;
        }
        let _turn = self.switching.lock().await;
        let serving = self
            .plugins
            .get(&version.application)
            .is_some_and(|p| p.digest == digest);
        if !serving {
            return;
        }
        let reason = format!("{} {} failed: {message}", version.name, version.version);
        // On failure: the error, and whether switch_to audited it already as a refusal.
        let outcome = match self.db.previous_plugin_version(&version.name).await {
            Ok(Some(previous)) => self
                .switch_to(
                    &Actor::system(),
                    &previous,
                    Switch::Rollback {
                        reason: Some(&reason),
                    },
                )
                .await
                .map(|v| format!("rolled back to {}", v.version))
                .map_err(|e| {
                    let audited = matches!(e, Error::Invalid(_) | Error::Conflict(_));
                    (e, audited)
                }),
            Ok(None) => Err((
                Error::Conflict("no earlier good version to roll back to".into()),
                false,
            )),
            Err(e) => Err((e.into(), false)),
        };
        match outcome {
            Ok(what) => tracing::warn!(
                plugin = %version.name,
                failed = %version.version,
                "automatic rollback: {what}"
            ),
            Err((e, audited)) => {
                tracing::error!(
                    plugin = %version.name,
                    version = %version.version,
                    error = %e,
                    "automatic rollback failed; the flagged version keeps serving"
                );
                if audited {
                    return;
                }
                let detail = format!("automatic=true reason={e}");
                if let Err(audit) = self
                    .db
                    .audit_plugin_version(
                        &Actor::system(),
                        &version,
                        "plugin.rollback_failed",
                        &detail,
                    )
                    .await
                {
                    tracing::error!(error = %audit, "could not audit a failed rollback");
                }
            }
        }
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
        signature: None,
        signed_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{LinkGroup, LinkSpec};

    fn description() -> Description {
        let link = |scope: &str, label: &str| LinkSpec {
            scope: scope.into(),
            group: LinkGroup::Account,
            default_label: label.into(),
            implements: None,
            destination: "/x".into(),
            icon: None,
        };
        Description {
            id: "acme".into(),
            name: "Acme".into(),
            version: "1.0.0".into(),
            description: String::new(),
            contract_version: runtime::CONTRACT_VERSION.into(),
            links: vec![link("a:b", "A"), link("c:d", "C")],
            allowed_requests: Vec::new(),
            auth: crate::adapter::PanelAuth::SchemeUserToken("whm".into()),
            sign_in: crate::adapter::SignInStyle::TokenExchange,
            limits: crate::adapter::Limits {
                accounts_per_call: 1,
                operations_per_request: 1,
            },
        }
    }

    #[test]
    fn descriptions_are_checked() {
        assert_eq!(check_description(&description()), Ok(()));
        let refused = |f: &dyn Fn(&mut Description), needle: &str| {
            let mut d = description();
            f(&mut d);
            let why = check_description(&d).unwrap_err();
            assert!(why.contains(needle), "{why}");
        };
        refused(&|d| d.links[1].scope = "a:b".into(), "more than once");
        refused(
            &|d| d.links[0].default_label = "  ".into(),
            "no default label",
        );
        refused(&|d| d.links[0].scope = String::new(), "empty scope");
        refused(&|d| d.links.clear(), "no links");
        refused(&|d| d.contract_version = "1.0.0".into(), "contract");
        refused(&|d| d.contract_version = "0.9.0".into(), "contract");
        refused(&|d| d.contract_version = "zero".into(), "contract");
        refused(&|d| d.version = "1.0\n".into(), "version");
        refused(&|d| d.version = "a/b".into(), "version");
        refused(&|d| d.contract_version = "0.0.9".into(), "contract");
        // Every supported contract is accepted.
        let mut d = description();
        d.contract_version = "0.1.0".into();
        assert_eq!(check_description(&d), Ok(()));
    }

    #[test]
    fn faults_count_in_a_row_and_flag_once() {
        let health = Health {
            digest: "sha256:x".into(),
            label: "acme 1.0.0".into(),
            threshold: 3,
            faults: AtomicU32::new(0),
            flagged: AtomicBool::new(false),
            // No catalog: crossing the threshold only sets the flag.
            core: Weak::new(),
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        };
        let trapped = runtime::Error::Trapped {
            plugin: "acme".into(),
            version: "1.0.0".into(),
            detail: "unreachable".into(),
        };
        let answered = runtime::Error::Plugin {
            plugin: "acme".into(),
            version: "1.0.0".into(),
            error: crate::adapter::PluginError::Transient("panel down".into()),
        };
        health.call_ended(Some(&trapped));
        health.call_ended(Some(&trapped));
        // A call that returns, or a plugin's own error answer, ends the run.
        health.call_ended(None);
        health.call_ended(Some(&answered));
        assert_eq!(health.faults.load(Ordering::Relaxed), 0);
        for _ in 0..2 {
            health.call_ended(Some(&trapped));
        }
        assert!(!health.flagged.load(Ordering::Acquire));
        health.call_ended(Some(&trapped));
        assert!(health.flagged.load(Ordering::Acquire));
        health.call_ended(Some(&trapped));
        assert_eq!(health.faults.load(Ordering::Relaxed), 4);
        health.reset();
        assert!(!health.flagged.load(Ordering::Acquire));
        assert_eq!(health.faults.load(Ordering::Relaxed), 0);
        // Every call counts; only the runtime's endings count as failed.
        assert_eq!(health.calls.load(Ordering::Relaxed), 8);
        assert_eq!(health.failed.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn formats_are_told_apart() {
        let message = |bytes: &[u8]| check_format(bytes).unwrap_err().to_string();
        assert!(message(b"").contains("empty"));
        assert!(message(b"PK\x03\x04 a zip").contains("not WebAssembly"));
        assert!(message(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
        assert!(message(b"\0asm\x02\0\0\0").contains("unknown encoding"));
        assert!(check_format(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
