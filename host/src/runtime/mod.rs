//! The sandboxed plugin runtime: the only module that names wasmtime types.
//!
//! One [`Runtime`] per process owns one `Engine` and one `Linker`; every loaded [`Plugin`] is a
//! compiled component with its pre-instance and its checked request policy (the requests its
//! description declares); every call gets a fresh `Store` with a memory cap, a deadline of guest
//! time (epoch interruption), a wall-clock deadline that counts host I/O too (WASI clocks and
//! polls included), a cap on calls into the host, and an outbound HTTP grant for exactly one
//! server, within that policy. Traps, timeouts, the memory cap, the host-call cap and capability
//! violations come back as one typed [`Error`] naming the plugin and its version; nothing a
//! plugin does can take the host down or hold it up past its deadline.
//!
//! Plugins are shared as `Arc<Plugin>`; [`Plugins`] maps application ids to the active one and
//! swaps it atomically, so calls in flight finish on the version they started with.

mod bindings;
mod cache;
pub mod http;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::adapter::{
    AccountOutcome, AccountWork, Description, LinkTemplate, ListedLink, PanelAccount, PluginError,
    PluginLog, ServerTarget, Settings, Support,
};
use bindings::{Instance, Pre, ProvisionInput};
pub use cache::{CacheKey, CacheStats};
pub use http::HttpLimits;

/// The newest contract version this host implements (`wit/0.2/adapter.wit`).
pub const CONTRACT_VERSION: &str = bindings::v0_2::VERSION;

/// Every contract version this host runs plugins of, newest first (`wit/<major.minor>/`).
pub const SUPPORTED_CONTRACTS: [&str; 2] = bindings::SUPPORTED;

/// The requests a contract 0.1.0 plugin is granted (it declares none).
pub fn contract_0_1_grants() -> Vec<crate::adapter::AllowedRequest> {
    bindings::v0_1::granted_requests()
}

/// How instance memory is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorChoice {
    /// The pooling allocator, falling back to on-demand (loudly) when it cannot be reserved.
    Auto,
    /// The pooling allocator or nothing.
    Pooling,
    /// Allocate each instance's memory on demand.
    OnDemand,
}

/// The allocator the runtime ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots.
    Pooling,
    /// Allocated per instance.
    OnDemand,
}

/// Runtime limits and knobs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Guest time one call may use; time spent waiting on host imports does not count.
    pub call_deadline: Duration,
    /// Wall-clock time one call may take from instantiation to its answer, host I/O (panel
    /// requests, WASI clocks and polls) included. The default, 5 minutes, fits the slowest
    /// legitimate call: a sync batch of 300 commands whose one request may wait for the
    /// server's other batch to be answered first (`max_in_flight_per_server`), then be answered
    /// itself, each within the 120 s `HttpLimits::request_timeout`.
    pub wall_deadline: Duration,
    /// Wall-clock time instantiating a component and its `describe` may take at load (where it
    /// holds up start-up or an upload); `describe` calls nothing, so this is short. The smaller
    /// of this and `wall_deadline` applies.
    pub describe_deadline: Duration,
    /// Calls into the host one plugin call may make: the contract's imports (`http.send`,
    /// `log.write`) and WASI functions alike. The WHM plugins make two per panel request (send
    /// and log) and no WASI calls: a sync batch of 300 commands sent one command per request,
    /// the most requests a call makes, takes 600; the default, 5000, is eight times that.
    pub max_host_calls: u32,
    /// Linear memory one instance may grow to, in bytes.
    pub memory_limit: usize,
    /// How often the epoch ticks (the deadline's resolution).
    pub epoch_tick: Duration,
    /// Instance allocation strategy.
    pub allocator: AllocatorChoice,
    /// With pooling: how many instances may live at once.
    pub max_instances: u32,
    /// With pooling: bytes at the start of a finished instance's linear memory that are zeroed
    /// in place for the next instance instead of being handed back to the kernel (with Linux's
    /// `PAGEMAP_SCAN`, 6.7+, only the pages the instance dirtied; without it, all of them). A sync batch of 300 commands grows the `whm` plugin's
    /// memory to about 1.7 MiB (1 MiB of stack and data, then its request body, the answer and
    /// the allocator's heap); handed back, every page faults again in the next call, which
    /// costs more than the zeroing.
    pub memory_keep_resident: usize,
    /// Outbound HTTP limits.
    pub http: HttpLimits,
    /// Where compiled components are cached, keyed by their content and the engine's settings;
    /// `None` compiles every time. Only entries this host sealed are used (see `cache.rs`).
    pub cache_dir: Option<PathBuf>,
    /// The key of the cache's seals (`serve` derives it from the secret key); `None` seals
    /// without a key, which detects damage but not forgery.
    pub cache_key: Option<CacheKey>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            call_deadline: Duration::from_secs(30),
            wall_deadline: Duration::from_secs(300),
            describe_deadline: Duration::from_secs(10),
            max_host_calls: 5000,
            memory_limit: 64 * 1024 * 1024,
            epoch_tick: Duration::from_millis(10),
            allocator: AllocatorChoice::Auto,
            max_instances: 256,
            memory_keep_resident: 2 * 1024 * 1024,
            http: HttpLimits::default(),
            cache_dir: None,
            cache_key: None,
        }
    }
}

/// Why a plugin call (or load) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The call used up its deadline of guest time or of wall-clock time.
    #[error("plugin {plugin} {version} exceeded its deadline of {limit:?} of {clock}")]
    Timeout {
        /// Plugin (application id).
        plugin: String,
        /// Plugin version.
        version: String,
        /// The deadline.
        limit: Duration,
        /// Which deadline.
        clock: Clock,
    },
    /// The call made more calls into the host than a call may.
    #[error("plugin {plugin} {version} exceeded its limit of {limit} host calls in one call")]
    HostCallLimit {
        /// Plugin.
        plugin: String,
        /// Version.
        version: String,
        /// The cap.
        limit: u32,
    },
    /// The instance tried to grow past its memory cap.
    #[error("plugin {plugin} {version} exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// Plugin.
        plugin: String,
        /// Version.
        version: String,
        /// The cap in bytes.
        limit: usize,
    },
    /// The guest trapped (panic, unreachable, bad memory access, ...).
    #[error("plugin {plugin} {version} trapped: {detail}")]
    Trapped {
        /// Plugin.
        plugin: String,
        /// Version.
        version: String,
        /// What wasmtime said.
        detail: String,
    },
    /// The guest asked for something outside its grant; the call was ended.
    #[error("plugin {plugin} {version} was denied: {detail}")]
    CapabilityDenied {
        /// Plugin.
        plugin: String,
        /// Version.
        version: String,
        /// What it asked for.
        detail: String,
    },
    /// The plugin ran and answered with an error of the contract.
    #[error("plugin {plugin} {version}: {error}")]
    Plugin {
        /// Plugin.
        plugin: String,
        /// Version.
        version: String,
        /// The plugin's error.
        error: PluginError,
    },
    /// The file is not a usable plugin.
    #[error("invalid plugin: {0}")]
    Invalid(String),
}

/// Which deadline a call ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Time the guest ran ([`RuntimeConfig::call_deadline`]).
    Guest,
    /// Wall-clock time, host I/O included ([`RuntimeConfig::wall_deadline`]).
    Wall,
}

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Clock::Guest => "guest time",
            Clock::Wall => "wall-clock time",
        })
    }
}

impl Error {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Plugin {
                error: PluginError::Transient(_),
                ..
            }
        )
    }
}

/// A call's result together with the lines the plugin logged.
#[derive(Debug)]
pub struct Output<T> {
    /// What the plugin returned.
    pub value: T,
    /// What it logged, in order.
    pub logs: Vec<PluginLog>,
}

struct Inner {
    engine: Engine,
    linker: Linker<CallState>,
    client: reqwest::Client,
    config: RuntimeConfig,
    allocator: Allocator,
    /// Per panel server, its share of `config.http.max_in_flight_per_server`.
    gates: std::sync::Mutex<HashMap<http::ServerKey, Arc<tokio::sync::Semaphore>>>,
    /// One compilation at a time, on a blocking thread: compiling a large component takes
    /// hundreds of milliseconds of CPU that must not stall the async workers (sync batches,
    /// sign-ins) or run many at once.
    compiling: tokio::sync::Semaphore,
    /// The on-disk cache of compiled components, when configured.
    cache: Option<Arc<cache::CodeCache>>,
}

/// The process's plugin runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("allocator", &self.inner.allocator)
            .field("config", &self.inner.config)
            .finish()
    }
}

fn engine_config(
    config: &RuntimeConfig,
    pooling: bool,
    cache: Option<&cache::CodeCache>,
) -> anyhow::Result<wasmtime::Config> {
    let mut c = wasmtime::Config::new();
    c.epoch_interruption(true);
    c.wasm_component_model(true);
    // No plugin uses the component model's async ABI (the contract is synchronous; the host
    // calls each export with `call_async` on its own fiber). With concurrency support on, every
    // store dropped at a call's end resumed a worker fiber with a freshly formatted error (and a
    // captured backtrace when RUST_BACKTRACE is set): a third of an instantiate + call.
    c.concurrency_support(false);
    c.cache(cache.map(cache::CodeCache::wasmtime));
    // For profiling with `perf`: the plugins' compiled functions by name in /tmp/perf-<pid>.map.
    if std::env::var_os("PANELINK_WASM_PERFMAP").is_some() {
        c.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if pooling {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 2)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances * 2)
            .max_memory_size(config.memory_limit);
        pool.linear_memory_keep_resident(config.memory_keep_resident);
        // Where the kernel has `PAGEMAP_SCAN` (Linux 6.7+), only the pages an instance
        // dirtied are reset for the next one; without it the first `memory_keep_resident` bytes
        // of the memory are reset whole (a 1–2 MiB copy per call, most of an instantiation).
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    Ok(c)
}

impl Runtime {
    /// The gate a server's requests take turns at, if requests in flight per server are limited.
    fn gate(&self, target: &ServerTarget) -> Option<Arc<tokio::sync::Semaphore>> {
        let limit = self.inner.config.http.max_in_flight_per_server?;
        let mut gates = self
            .inner
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(
            gates
                .entry(http::Grant::server_key(target))
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(limit.max(1))))
                .clone(),
        )
    }

    /// Build the runtime: the engine, the linker with the host's imports, the epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let cache = config
            .cache_dir
            .as_deref()
            .map(|dir| cache::CodeCache::open(dir, config.cache_key.as_ref()).map(Arc::new))
            .transpose()?;
        let engine_config = |pooling| engine_config(&config, pooling, cache.as_deref());
        let (engine, allocator) = match config.allocator {
            AllocatorChoice::OnDemand => {
                (Engine::new(&engine_config(false)?)?, Allocator::OnDemand)
            }
            AllocatorChoice::Pooling => (Engine::new(&engine_config(true)?)?, Allocator::Pooling),
            AllocatorChoice::Auto => match Engine::new(&engine_config(true)?) {
                Ok(engine) => (engine, Allocator::Pooling),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "could not reserve the pooling allocator; FALLING BACK to on-demand \
                         instance allocation (slower instantiation)"
                    );
                    (Engine::new(&engine_config(false)?)?, Allocator::OnDemand)
                }
            },
        };
        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::add_to_linker(&mut linker)?;

        // The epoch ticker: one thread that lives as long as the engine does.
        let weak = engine.weak();
        let tick = config.epoch_tick;
        std::thread::Builder::new()
            .name("panelink-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(tick);
                }
            })?;

        let client = http::client(&config.http);
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                client,
                config,
                allocator,
                gates: std::sync::Mutex::default(),
                compiling: tokio::sync::Semaphore::new(1),
                cache,
            }),
        })
    }

    /// The allocator in use.
    pub fn allocator(&self) -> Allocator {
        self.inner.allocator
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// How the compile cache has fared; `None` without one.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.inner.cache.as_ref().map(|c| c.stats())
    }

    /// Compile and check a component: it must link against this host's contract and describe
    /// itself sensibly.
    pub async fn load(&self, bytes: &[u8]) -> Result<Arc<Plugin>, Error> {
        if !bytes.starts_with(&[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]) {
            return Err(Error::Invalid(
                "the file is not a WebAssembly component (core modules and other files are refused)"
                    .into(),
            ));
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let component = {
            let _turn = self
                .inner
                .compiling
                .acquire()
                .await
                .map_err(|_| Error::Invalid("the runtime is shutting down".into()))?;
            let engine = self.inner.engine.clone();
            let cache = self.inner.cache.clone();
            let owned = bytes.to_vec();
            let compiled = tokio::task::spawn_blocking(move || {
                let compile = || Component::new(&engine, &owned);
                match &cache {
                    Some(cache) => cache.compile(compile).map(|(component, outcome)| {
                        tracing::debug!(?outcome, "plugin compiled");
                        component
                    }),
                    None => Ok(compile()),
                }
            })
            .await
            .map_err(|e| Error::Invalid(format!("compiling the component stopped: {e}")))?
            .map_err(Error::Invalid)?;
            compiled.map_err(|e| Error::Invalid(format!("the component does not compile: {e}")))?
        };
        let instance_pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            Error::Invalid(format!(
                "the component does not fit a panelink:adapter contract this host runs ({}): {e}",
                SUPPORTED_CONTRACTS.join(", ")
            ))
        })?;
        let pre = Pre::new(instance_pre).map_err(Error::Invalid)?;
        let mut plugin = Plugin {
            description: Description {
                id: "(loading)".into(),
                name: String::new(),
                version: "?".into(),
                description: String::new(),
                contract_version: String::new(),
                links: Vec::new(),
                allowed_requests: Vec::new(),
                auth: crate::adapter::PanelAuth::Bearer,
                sign_in: crate::adapter::SignInStyle::TokenExchange,
                limits: bindings::v0_1::LIMITS,
            },
            digest,
            size: bytes.len(),
            pre,
            policy: Arc::default(),
            runtime: self.clone(),
            observer: std::sync::OnceLock::new(),
        };
        let config = &self.inner.config;
        let deadline = config.describe_deadline.min(config.wall_deadline);
        let description: Description = plugin
            .call(None, deadline, |instance, store| {
                Box::pin(async move { instance.describe(store).await })
            })
            .await
            .map_err(|e| Error::Invalid(format!("self-description failed: {e}")))?
            .value;
        plugin.policy = Arc::new(
            validate_description(&description, plugin.pre.version()).map_err(Error::Invalid)?,
        );
        plugin.description = description;
        Ok(Arc::new(plugin))
    }

    /// Load a component from a file.
    pub async fn load_file(&self, path: &Path) -> Result<Arc<Plugin>, Error> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", path.display())))?;
        self.load(&bytes).await
    }

    /// Load every `.wasm` file of a directory, in name order.
    pub async fn load_dir(&self, dir: &Path) -> anyhow::Result<Vec<Arc<Plugin>>> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot read plugin directory {}: {e}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        paths.sort();
        let mut plugins = Vec::new();
        for path in paths {
            let plugin = self
                .load_file(&path)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            tracing::info!(
                plugin = %plugin.description.id,
                version = %plugin.description.version,
                digest = %plugin.digest,
                "loaded plugin"
            );
            plugins.push(plugin);
        }
        Ok(plugins)
    }
}

/// Largest icon a link may carry, in bytes.
pub const MAX_ICON_BYTES: usize = 64 * 1024;

/// Check a self-description of a component bound to contract `bound`; the compiled request
/// policy when it is sound.
fn validate_description(d: &Description, bound: &str) -> Result<http::Policy, String> {
    let id_ok = !d.id.is_empty()
        && d.id.len() <= 64
        && d.id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !id_ok {
        return Err(format!(
            "application id {:?} must be 1-64 characters of a-z, 0-9, '-' and '_'",
            d.id
        ));
    }
    if d.name.trim().is_empty() {
        return Err("the application name is empty".into());
    }
    let major_minor = |v: &str| {
        let mut parts = v.split('.');
        (
            parts.next().map(str::to_owned),
            parts.next().map(str::to_owned),
        )
    };
    if major_minor(&d.contract_version) != major_minor(bound) {
        return Err(format!(
            "the plugin says it was built for contract {} but implements contract {bound}",
            d.contract_version
        ));
    }
    if d.limits.accounts_per_call == 0 || d.limits.operations_per_request == 0 {
        return Err(
            "the plugin's limits must be at least 1 account per call and 1 operation per request"
                .into(),
        );
    }
    if d.links.is_empty() {
        return Err("the plugin supports no links".into());
    }
    let mut seen = std::collections::HashSet::new();
    for link in &d.links {
        if link.scope.is_empty() || !seen.insert(link.scope.as_str()) {
            return Err(format!("link scope {:?} is empty or repeated", link.scope));
        }
        if let Some(icon) = &link.icon {
            const PNG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
            if icon.len() > MAX_ICON_BYTES || !icon.starts_with(&PNG) {
                return Err(format!(
                    "the icon of link {:?} must be a PNG image of at most {MAX_ICON_BYTES} bytes",
                    link.scope
                ));
            }
        }
    }
    d.auth.check()?;
    http::Policy::new(&d.allowed_requests)
}

/// Told how each call of a plugin ended ([`Plugin::observe`]). It runs on every call, so it
/// must be cheap and must not block.
pub trait CallObserver: Send + Sync {
    /// A call ended: `None` when the guest returned (whatever it answered), else why the
    /// runtime ended it.
    fn call_ended(&self, fault: Option<&Error>);
}

/// One loaded plugin version: the compiled component, its pre-instance and its description.
pub struct Plugin {
    /// The self-description, checked at load.
    pub description: Description,
    /// `sha256:<hex>` of the component's bytes.
    pub digest: String,
    /// The component's size in bytes.
    pub size: usize,
    /// Bound to the contract version the component implements.
    pre: Pre,
    /// The requests the description declares, compiled: what the HTTP gate lets through.
    policy: Arc<http::Policy>,
    runtime: Runtime,
    observer: std::sync::OnceLock<Arc<dyn CallObserver>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.description.id)
            .field("version", &self.description.version)
            .field("digest", &self.digest)
            .finish()
    }
}

type GuestFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>;

impl Plugin {
    /// Application id.
    pub fn id(&self) -> &str {
        &self.description.id
    }

    /// Plugin version.
    pub fn version(&self) -> &str {
        &self.description.version
    }

    /// The contract version the component implements (one of [`SUPPORTED_CONTRACTS`]).
    pub fn contract(&self) -> &'static str {
        self.pre.version()
    }

    /// Report the end of every later call to `observer`; `false` if one was set already.
    pub fn observe(&self, observer: Arc<dyn CallObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// Ask a server whether it supports links for this application.
    pub async fn check_server(&self, target: &ServerTarget) -> Result<Output<Support>, Error> {
        let server = target.clone();
        self.call_plugin(Some(target), move |instance, store| {
            Box::pin(async move { instance.check_server(store, &server).await })
        })
        .await
    }

    /// Provision a batch of accounts on one server: `templates` once, each account naming the
    /// ones it gets.
    pub async fn provision(
        &self,
        target: &ServerTarget,
        settings: &Settings,
        templates: Vec<LinkTemplate>,
        accounts: impl IntoIterator<Item = AccountWork>,
    ) -> Result<Output<Vec<AccountOutcome>>, Error> {
        let input = ProvisionInput {
            server: target.clone(),
            settings: settings.clone(),
            templates,
            accounts: accounts.into_iter().collect(),
        };
        self.call_plugin(Some(target), move |instance, store| {
            Box::pin(async move { instance.provision(store, input).await })
        })
        .await
    }

    /// Remove the group and every link from a batch of accounts on one server.
    pub async fn deprovision(
        &self,
        target: &ServerTarget,
        settings: &Settings,
        usernames: &[String],
    ) -> Result<Output<Vec<AccountOutcome>>, Error> {
        let (server, settings, usernames) = (target.clone(), settings.clone(), usernames.to_vec());
        self.call_plugin(Some(target), move |instance, store| {
            Box::pin(async move {
                instance
                    .deprovision(store, &server, &settings, &usernames)
                    .await
            })
        })
        .await
    }

    /// The links an account has now.
    pub async fn list_links(
        &self,
        target: &ServerTarget,
        settings: &Settings,
        username: &str,
    ) -> Result<Output<Vec<ListedLink>>, Error> {
        let (server, settings, username) = (target.clone(), settings.clone(), username.to_owned());
        self.call_plugin(Some(target), move |instance, store| {
            Box::pin(async move {
                instance
                    .list_links(store, &server, &settings, &username)
                    .await
            })
        })
        .await
    }

    /// The hosting accounts on a server (`unsupported` for contract 0.1.0 plugins).
    pub async fn list_accounts(
        &self,
        target: &ServerTarget,
    ) -> Result<Output<Vec<PanelAccount>>, Error> {
        let server = target.clone();
        self.call_plugin(Some(target), move |instance, store| {
            Box::pin(async move { instance.list_accounts(store, &server).await })
        })
        .await
    }

    /// Run an export whose WIT result is `result<T, plugin-error>`.
    async fn call_plugin<T, F>(
        &self,
        target: Option<&ServerTarget>,
        f: F,
    ) -> Result<Output<T>, Error>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(
                &'a Instance,
                &'a mut Store<CallState>,
            ) -> GuestFuture<'a, Result<T, PluginError>>
            + Send,
    {
        let out = self
            .call(target, self.runtime.inner.config.wall_deadline, f)
            .await?;
        match out.value {
            Ok(value) => Ok(Output {
                value,
                logs: out.logs,
            }),
            Err(e) => Err(Error::Plugin {
                plugin: self.id().to_owned(),
                version: self.version().to_owned(),
                error: e,
            }),
        }
    }

    /// Run one export on a fresh store with this runtime's limits and a wall-clock deadline.
    async fn call<T, F>(
        &self,
        target: Option<&ServerTarget>,
        wall_deadline: Duration,
        f: F,
    ) -> Result<Output<T>, Error>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a Instance, &'a mut Store<CallState>) -> GuestFuture<'a, T> + Send,
    {
        let rt = &self.runtime.inner;
        let tick_ms = rt.config.epoch_tick.as_millis().max(1);
        let max_ticks = (rt.config.call_deadline.as_millis() / tick_ms).max(1) as u64;
        let state = CallState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_limit: rt.config.memory_limit,
                hit: false,
            },
            grant: target.map(|t| {
                http::Grant::for_server(t, &self.description.auth).with_gate(self.runtime.gate(t))
            }),
            policy: self.policy.clone(),
            client: rt.client.clone(),
            http_limits: rt.config.http.clone(),
            plugin: self.description.id.clone(),
            logs: Vec::new(),
            violation: None,
            guest_ticks: 0,
            max_ticks,
            timed_out: false,
            host_calls: 0,
            max_host_calls: rt.config.max_host_calls,
            host_call_limit_hit: false,
        };
        let mut store = Store::new(&rt.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            // WASI calls are counted without being able to fail (see `WasiView::ctx`): a guest
            // past the cap stops at the latest here, one tick later.
            s.check_host_calls()?;
            s.guest_ticks += 1;
            if s.guest_ticks >= s.max_ticks {
                s.timed_out = true;
                Err(wasmtime::Error::msg("deadline of guest time exceeded"))
            } else {
                // Yield so that a busy guest never holds an executor thread for long.
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let started = Instant::now();
        // The wall-clock deadline: dropping the call's future abandons the guest wherever it
        // waits (a panel request, a WASI poll) or runs (it yields every epoch tick); the store
        // is dropped with it and never runs again.
        let result = tokio::time::timeout(wall_deadline, async {
            let instance = self.pre.instantiate(&mut store).await?;
            f(&instance, &mut store).await
        })
        .await;
        let mut state = store.into_data();
        tracing::debug!(
            plugin = %self.description.id,
            elapsed_us = started.elapsed().as_micros() as u64,
            ok = matches!(result, Ok(Ok(_))),
            host_calls = state.host_calls,
            "plugin call"
        );
        let out = match result {
            Err(_elapsed) => Err(Error::Timeout {
                plugin: self.description.id.clone(),
                version: self.description.version.clone(),
                limit: wall_deadline,
                clock: Clock::Wall,
            }),
            // WASI calls made after the last check still count.
            Ok(Ok(_)) if state.check_host_calls().is_err() => Err(self.limit_error(&state)),
            Ok(Ok(value)) => Ok(Output {
                value,
                logs: state.logs,
            }),
            Ok(Err(e)) => Err(self.classify(e, &state)),
        };
        if let Some(observer) = self.observer.get() {
            observer.call_ended(out.as_ref().err());
        }
        out
    }

    fn limit_error(&self, state: &CallState) -> Error {
        Error::HostCallLimit {
            plugin: self.description.id.clone(),
            version: self.description.version.clone(),
            limit: state.max_host_calls,
        }
    }

    fn classify(&self, e: wasmtime::Error, state: &CallState) -> Error {
        let plugin = self.description.id.clone();
        let version = self.description.version.clone();
        if let Some(detail) = &state.violation {
            Error::CapabilityDenied {
                plugin,
                version,
                detail: detail.clone(),
            }
        } else if state.host_call_limit_hit {
            self.limit_error(state)
        } else if state.timed_out {
            Error::Timeout {
                plugin,
                version,
                limit: self.runtime.inner.config.call_deadline,
                clock: Clock::Guest,
            }
        } else if state.limiter.hit {
            Error::MemoryLimit {
                plugin,
                version,
                limit: state.limiter.memory_limit,
            }
        } else {
            Error::Trapped {
                plugin,
                version,
                detail: format!("{e:#}"),
            }
        }
    }
}

/// The state of one call's store.
struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    grant: Option<http::Grant>,
    policy: Arc<http::Policy>,
    client: reqwest::Client,
    http_limits: HttpLimits,
    plugin: String,
    logs: Vec<PluginLog>,
    violation: Option<String>,
    guest_ticks: u64,
    max_ticks: u64,
    timed_out: bool,
    /// Calls into the host so far, WASI's included.
    host_calls: u32,
    max_host_calls: u32,
    host_call_limit_hit: bool,
}

impl CallState {
    /// `Err` (which ends the call) once more host calls were made than allowed.
    fn check_host_calls(&mut self) -> wasmtime::Result<()> {
        if self.host_calls > self.max_host_calls {
            self.host_call_limit_hit = true;
            return Err(wasmtime::Error::msg("host call limit exceeded"));
        }
        Ok(())
    }

    /// Count one call of the contract's imports, refusing it past the cap before it does
    /// anything.
    fn enter_host(&mut self) -> wasmtime::Result<()> {
        self.host_calls = self.host_calls.saturating_add(1);
        self.check_host_calls()
    }
}

impl WasiView for CallState {
    /// Every WASI function reaches its state through here, once per call: this counts WASI
    /// calls against the host-call cap (enforced at the next import, epoch tick or the end of
    /// the call, as this cannot fail).
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.host_calls = self.host_calls.saturating_add(1);
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The memory cap, remembering whether the guest ran into it.
struct Limiter {
    memory_limit: usize,
    hit: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Most log lines one call may write, and the longest line kept.
const MAX_LOG_LINES: usize = 10_000;
const MAX_LOG_LINE: usize = 4096;

impl bindings::types::Host for CallState {}

impl bindings::log::Host for CallState {
    async fn write(
        &mut self,
        level: bindings::log::Level,
        mut message: String,
    ) -> wasmtime::Result<()> {
        self.enter_host()?;
        if self.logs.len() >= MAX_LOG_LINES {
            return Ok(());
        }
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        tracing::debug!(plugin = %self.plugin, level = ?level, %message, "plugin log");
        self.logs.push(PluginLog {
            level: level.into(),
            message,
        });
        Ok(())
    }
}

impl bindings::http::Host for CallState {
    async fn send(
        &mut self,
        req: bindings::http::Request,
    ) -> wasmtime::Result<Result<bindings::http::Response, bindings::http::Error>> {
        self.enter_host()?;
        match http::send(
            &self.client,
            &self.http_limits,
            self.grant.as_ref(),
            &self.policy,
            req,
        )
        .await
        {
            http::Sent::Answer(answer) => Ok(answer),
            http::Sent::Violation(detail) => {
                tracing::warn!(plugin = %self.plugin, %detail, "plugin capability violation");
                self.violation = Some(detail.clone());
                Err(wasmtime::Error::msg(detail))
            }
        }
    }
}

/// The active plugin of each application, swappable while calls run.
#[derive(Default)]
pub struct Plugins {
    active: RwLock<BTreeMap<String, Arc<Plugin>>>,
}

impl Plugins {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make `plugin` the active one of its application; returns the one it replaced. Calls in
    /// flight keep the `Arc` they hold and finish on the old version.
    pub fn activate(&self, plugin: Arc<Plugin>) -> Option<Arc<Plugin>> {
        let mut active = self.active.write().expect("plugin set lock poisoned");
        active.insert(plugin.id().to_owned(), plugin)
    }

    /// The active plugin of an application.
    pub fn get(&self, application: &str) -> Option<Arc<Plugin>> {
        self.active
            .read()
            .expect("plugin set lock poisoned")
            .get(application)
            .cloned()
    }

    /// Every active plugin, by application id.
    pub fn all(&self) -> Vec<Arc<Plugin>> {
        self.active
            .read()
            .expect("plugin set lock poisoned")
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{AllowedRequest, HttpMethod, LinkGroup, LinkSpec, Tunnel};

    #[test]
    fn the_contract_versions_are_the_wit_package_versions() {
        for (wit, version) in [
            (
                include_str!("../../../wit/0.2/adapter.wit"),
                CONTRACT_VERSION,
            ),
            (
                include_str!("../../../wit/0.1/adapter.wit"),
                bindings::v0_1::VERSION,
            ),
        ] {
            let package = format!("package panelink:adapter@{version};");
            assert!(wit.lines().any(|l| l.trim() == package), "{package}");
        }
        assert_eq!(SUPPORTED_CONTRACTS[0], CONTRACT_VERSION);
    }

    fn description() -> Description {
        Description {
            id: "panel".into(),
            name: "Panel".into(),
            version: "1.0.0".into(),
            description: String::new(),
            contract_version: CONTRACT_VERSION.into(),
            links: vec![LinkSpec {
                scope: "clientarea:invoices".into(),
                group: LinkGroup::Account,
                default_label: "Invoices".into(),
                implements: None,
                destination: "/invoices".into(),
                icon: None,
            }],
            allowed_requests: vec![AllowedRequest {
                method: HttpMethod::Post,
                path: "/json-api/batch".into(),
                calls: Some(Tunnel::WhmBatch(vec!["create_integration_link".into()])),
            }],
            auth: crate::adapter::PanelAuth::SchemeUserToken("whm".into()),
            sign_in: crate::adapter::SignInStyle::TokenExchange,
            limits: bindings::v0_1::LIMITS,
        }
    }

    #[test]
    fn a_malformed_declaration_is_a_load_error() {
        let v = CONTRACT_VERSION;
        assert!(validate_description(&description(), v).is_ok());
        let mut d = description();
        d.allowed_requests[0].path = "/json-api/*".into();
        assert!(validate_description(&d, v).unwrap_err().contains("path"));
        let mut d = description();
        d.allowed_requests[0].calls = Some(Tunnel::WhmBatch(vec!["batch".into()]));
        assert!(validate_description(&d, v).is_err());
        let mut d = description();
        d.contract_version = "0.1.0".into();
        assert!(
            validate_description(&d, v)
                .unwrap_err()
                .contains("contract")
        );
        assert!(validate_description(&d, bindings::v0_1::VERSION).is_ok());
        let mut d = description();
        d.limits.operations_per_request = 0;
        assert!(validate_description(&d, v).unwrap_err().contains("limits"));
        let mut d = description();
        d.links[0].icon = Some(b"GIF89a".to_vec());
        assert!(validate_description(&d, v).unwrap_err().contains("PNG"));
        d.links[0].icon = Some(b"\x89PNG\r\n\x1a\n rest".to_vec());
        assert!(validate_description(&d, v).is_ok());
    }
}
