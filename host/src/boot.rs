//! Start-up and shutdown: turns a [`Config`] into a running host.
//!
//! [`Host::start`] sets up the secret key, connects to the database and applies migrations,
//! builds the plugin runtime and binds the listener; [`Host::run`] serves HTTP at once (so
//! `/healthz` answers), loads the plugins, then marks the host ready (`/readyz` 200) and serves
//! until the shutdown future resolves. [`serve`] is both in one call: what `panelink serve` runs
//! and what tests can run in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::api::{self, AppState, Limits};
use crate::catalog::{Catalog, Policy};
use crate::config::{Config, redact_url};
use crate::crypto::SecretBox;
use crate::runtime::{CacheKey, Plugins, Runtime, RuntimeConfig};
use crate::storage::Db;
use crate::sync::SyncRequests;
use crate::sync::{SyncConfig, SyncEngine};
use crate::sync_port::Events;

/// What a host is built with besides its configuration.
#[derive(Default)]
pub struct Options {
    /// Plugin runtime limits ([`serve`] takes them from the configuration: [`runtime_config`]).
    pub runtime: RuntimeConfig,
    /// A stand-in for the sync engine (tests); `None`: the real engine, started with the host.
    pub sync: Option<Arc<dyn SyncRequests>>,
    /// The event bus (give one to publish from outside).
    pub events: Events,
}

/// The secret box and the migrated database of a configuration.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let secrets = SecretBox::from_config(config.secret_key.as_ref(), &config.data_dir)
        .context("setting up the secret key")?;
    let db = Db::connect(&config.database_url, Arc::new(secrets))
        .await
        .with_context(|| format!("connecting to {}", redact_url(&config.database_url)))?
        .with_admin_token_ttl(config.admin_token_ttl);
    db.migrate().await.context("applying migrations")?;
    Ok(db)
}

/// A host that is bound and migrated, not yet serving.
pub struct Host {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    plugin_dir: std::path::PathBuf,
    engine: Option<Arc<SyncEngine>>,
    http: crate::config::HttpConfig,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("addr", &self.addr).finish()
    }
}

impl Host {
    /// Set up everything but the plugins and bind the listener.
    pub async fn start(config: Config, options: Options) -> anyhow::Result<Self> {
        let db = open_database(&config).await?;
        let runtime = Runtime::new(options.runtime).context("starting the plugin runtime")?;
        let catalog = Arc::new(
            Catalog::new(runtime, Arc::new(Plugins::new()), db.clone())
                .with_policy(Policy::from_config(&config)),
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        // The URLs panels and browsers reach this host at, as actually bound.
        let sso = crate::sso::Sso::from_config(&config, addr);
        // The real sync engine unless the caller brought its own stand-in.
        let (sync, engine): (Arc<dyn SyncRequests>, _) = match options.sync {
            Some(sync) => (sync, None),
            None => {
                let engine = Arc::new(SyncEngine::new(
                    db.clone(),
                    catalog.plugins().clone(),
                    options.events.clone(),
                    SyncConfig {
                        public_url: sso.public_url().to_owned(),
                        client_area_url: sso.client_area_url().to_owned(),
                        destinations: config.sso.destinations.clone(),
                        workers: config.sync_workers,
                        drift_interval: config.sync_drift_interval,
                        retry_window: config.sync_retry_window,
                        failed_retry_interval: config.sync_failed_retry_interval,
                        ..SyncConfig::default()
                    },
                ));
                (engine.clone(), Some(engine))
            }
        };
        let state = AppState::new(
            db,
            catalog,
            sync,
            options.events,
            Limits {
                max_body_bytes: config.max_body_bytes,
                max_plugin_bytes: config.max_plugin_bytes,
            },
        );
        let state = state.with_sso(sso);
        Ok(Self {
            listener,
            addr,
            state,
            plugin_dir: config.plugin_dir,
            engine,
            http: config.http,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (the database, the catalog, …).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` resolves; plugins load while `/healthz` already answers.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Host {
            listener,
            addr,
            state,
            plugin_dir,
            engine,
            http,
        } = self;
        // One stop signal for the HTTP server and the sync workers.
        let stop = tokio_util::sync::CancellationToken::new();
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                shutdown.await;
                stop.cancel();
            });
        }
        tracing::info!(%addr, "listening");
        let loader = {
            let state = state.clone();
            let stop = stop.clone();
            async move {
                let catalog = state.catalog();
                let loaded = catalog.load_dir(&plugin_dir).await;
                match catalog.adopt(&loaded).await {
                    Ok(()) => {
                        // The sync workers start once the plugins they drive are loaded; work
                        // left queued by an earlier run (or a crash) is picked up from here.
                        let workers = engine
                            .map(|engine| tokio::spawn(engine.run(stop.clone().cancelled_owned())));
                        // Activations made through another host sharing the database.
                        {
                            let catalog = catalog.clone();
                            let stop = stop.clone();
                            tokio::spawn(async move { catalog.follow_peers(stop).await });
                        }
                        state.set_ready(true);
                        tracing::info!(plugins = catalog.plugins().all().len(), "ready");
                        workers
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "plugins could not be set up; not ready");
                        None
                    }
                }
            }
        };
        let server = api::serve(listener, state, http, stop.clone().cancelled_owned());
        let (served, workers) = tokio::join!(server, loader);
        if let Some(workers) = workers {
            // The workers stop at their next batch boundary; what is unfinished stays queued.
            stop.cancel();
            if let Err(e) = workers.await {
                tracing::error!(error = %e, "the sync workers ended abnormally");
            }
        }
        served.context("serving HTTP")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The plugin runtime a configuration asks for: its plugin call limits
/// (`plugin_call_timeout`, `plugin_max_host_calls`), compiled components cached in
/// `plugin_cache_dir` (so restarts skip compilation; the seals' key is [`cache_key`]'s, set by
/// [`serve`]), the other limits at their defaults.
pub fn runtime_config(config: &Config) -> RuntimeConfig {
    RuntimeConfig {
        wall_deadline: config.plugin_call_timeout,
        max_host_calls: config.plugin_max_host_calls,
        cache_dir: config.plugin_cache_dir.clone(),
        ..RuntimeConfig::default()
    }
}

/// The key the plugin cache's entries are sealed with: derived from the secret key (the
/// configured `secret_key`, else the key file in `data_dir`, created if missing), so an entry
/// another host or anyone without the key wrote is never loaded.
pub fn cache_key(config: &Config) -> anyhow::Result<CacheKey> {
    let secrets = SecretBox::from_config(config.secret_key.as_ref(), &config.data_dir)
        .context("setting up the secret key")?;
    Ok(CacheKey::new(
        secrets.derive_key("panelink plugin cache seals v1"),
    ))
}

/// Run the host with this configuration until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let options = Options {
        runtime: RuntimeConfig {
            cache_key: Some(cache_key(&config)?),
            ..runtime_config(&config)
        },
        ..Options::default()
    };
    Host::start(config, options).await?.run(shutdown).await
}
