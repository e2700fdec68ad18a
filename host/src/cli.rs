//! The `panelink` command line: `serve`, `migrate`, `admin create`, `plugin …`, and `server
//! import`.
//!
//! Every command reads the same configuration (see [`crate::config`]): `--config FILE`, then
//! `PANELINK_*` variables, then the flags below. Logs go to standard error, so standard output
//! carries only what a command prints for scripts (`admin create` prints the new token alone on
//! its last line, `plugin keygen` the public key, `plugin sign` the signature).
//!
//! `plugin keygen | sign | verify` are for vendors and need no database; `plugin install | list
//! | activate | rollback` work on the configured database like the admin API does (same checks,
//! audited as the `cli` actor). A running `panelink serve` picks up an activation made here at
//! its next start, as another node would.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, Layer, LogFormat};
use crate::model::Email;
use crate::storage::Actor;
use crate::storage::admins::FULL_ADMINISTRATOR;

/// Panelink: Application Links for cPanel and WP Squared, with single sign-on into the client
/// area.
#[derive(Debug, Parser)]
#[command(name = "panelink", version, about)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (`listen`).
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Base URL panels and browsers use (`public_url`).
    #[arg(long, global = true, value_name = "URL")]
    pub public_url: Option<String>,
    /// Where SSO lands the customer (`client_area_url`).
    #[arg(long, global = true, value_name = "URL")]
    pub client_area_url: Option<String>,
    /// `sqlite://…` or `postgres://…` (`database_url`).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Directory of the generated secret key file (`data_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of `.wasm` plugins (`plugin_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// `pretty` or `json` (`log_format`).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Tracing filter, e.g. `info` or `panelink=debug,info` (`log_level`).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host: admin API, SSO, portal, sync (applies migrations first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage admins.
    Admin {
        /// What to do.
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Plugins: signing keys and signatures (vendors); install, list, activate, roll back
    /// (operators).
    Plugin {
        /// What to do.
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Panel servers: import their hosting accounts.
    Server {
        /// What to do.
        #[command(subcommand)]
        command: ServerCommand,
    },
}

/// Server commands.
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// List the hosting accounts the server's panel has and what importing them would create
    /// (a dry run), or create them with `--apply`: the same rules as `POST
    /// /api/v1/servers/{id}/import`. A running host pushes the new services' links.
    Import {
        /// The server's id.
        id: i64,
        /// Create the missing clients and services (default: only say what would be created).
        #[arg(long)]
        apply: bool,
    },
}

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Generate a signing key: write the private key (PKCS#8 PEM, mode 0600, never over an
    /// existing file) and print the public key, alone on the last line.
    Keygen {
        /// The private key file to create.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The name operators give the key in `trusted_keys` (for the printed snippet).
        #[arg(long, default_value = "vendor")]
        name: String,
    },
    /// Sign a component: print the signature (`ed25519=…`) alone on the last line, or write it
    /// to a file.
    Sign {
        /// The private key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The component (`.wasm`).
        component: PathBuf,
        /// Write the signature here (e.g. `plugin.wasm.sig`) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check a component's signature with the configured `trusted_keys` (or `--public-key`).
    Verify {
        /// The component (`.wasm`).
        component: PathBuf,
        /// The signature file (default: `<component>.sig`).
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// A public key (`ed25519:…`) to verify with instead of `trusted_keys`; repeatable.
        #[arg(long = "public-key", value_name = "KEY")]
        public_keys: Vec<String>,
    },
    /// Install a component into the database, staged (the same checks as an upload).
    Install {
        /// The component (`.wasm`).
        component: PathBuf,
        /// The signature file (default: `<component>.sig` when it exists).
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
    },
    /// List the installed plugin versions and their states.
    List,
    /// Activate an installed version (the same checks as the admin API's activate).
    Activate {
        /// Plugin name (its application id).
        name: String,
        /// Version.
        version: String,
        /// A server of the application the new version's support check must pass on first.
        #[arg(long, value_name = "SERVER_ID")]
        canary_server: Option<i64>,
    },
    /// Go back to the most recently active version that is not flagged failed.
    Rollback {
        /// Plugin name.
        name: String,
    },
}

/// Admin commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin and print their API token (once, alone on the last line).
    Create {
        /// The admin's e-mail.
        #[arg(long)]
        email: String,
        /// The role's name.
        #[arg(long, default_value = FULL_ADMINISTRATOR)]
        role: String,
    },
}

impl Cli {
    /// The configuration: file, then environment, then flags.
    pub fn configuration(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let file = match &self.config {
            Some(path) => Layer::from_file(path)?,
            None => Layer::default(),
        };
        let flags = Layer {
            listen: self.listen.clone(),
            public_url: self.public_url.clone(),
            client_area_url: self.client_area_url.clone(),
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            plugin_dir: self.plugin_dir.clone(),
            log_format: self.log_format.clone(),
            log_level: self.log_level.clone(),
            ..Layer::default()
        };
        Ok(Config::resolve([file, Layer::from_env(env)?, flags])?)
    }
}

/// Install the process's log subscriber (standard error).
pub fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("log_level {:?} is not a valid filter", config.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// Run a command with a resolved configuration (logging already set up).
pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            tracing::info!(config = ?config, "starting");
            crate::boot::serve(config, shutdown_signal()).await
        }
        Command::Migrate => {
            crate::boot::open_database(&config).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Create { email, role },
        } => {
            let email =
                Email::parse(&email).map_err(|why| anyhow::anyhow!("--email {email:?}: {why}"))?;
            let db = crate::boot::open_database(&config).await?;
            let (admin, token) = db
                .create_admin(&Actor::cli(), &email, &role)
                .await
                .map_err(|e| match e {
                    crate::storage::Error::NotFound(_) => {
                        anyhow::anyhow!("no role is named {role:?}")
                    }
                    e => e.into(),
                })?;
            db.close().await;
            println!(
                "Created admin {} (id {}, role {}). Their API token, shown this once:",
                admin.email, admin.id, admin.role
            );
            println!("{}", token.expose());
            Ok(())
        }
        Command::Plugin { command } => plugin(command, &config).await,
        Command::Server {
            command: ServerCommand::Import { id, apply },
        } => import(id, apply, &config).await,
    }
}

/// `server import`: the application's active plugin as `serve` would load it, then the import.
async fn import(id: i64, apply: bool, config: &Config) -> anyhow::Result<()> {
    let catalog = cli_catalog(config).await?;
    let loaded = catalog.load_dir(&config.plugin_dir).await;
    catalog.adopt(&loaded).await?;
    let report =
        crate::import::import(catalog.db(), catalog.plugins(), &Actor::cli(), id, apply).await;
    catalog.db().close().await;
    let report = report?;
    println!(
        "{:<24} {:<32} {:<9} {:<16} {:<7} ERROR",
        "USER", "DOMAIN", "SUSPENDED", "OWNER", "ACTION"
    );
    for a in &report.accounts {
        println!(
            "{:<24} {:<32} {:<9} {:<16} {:<7} {}",
            if a.username.is_empty() {
                "-"
            } else {
                &a.username
            },
            a.domain,
            if a.suspended { "yes" } else { "no" },
            a.owner.as_deref().unwrap_or("-"),
            a.action.as_str(),
            a.error.as_deref().unwrap_or("")
        );
    }
    let count = |action| {
        report
            .accounts
            .iter()
            .filter(|a| a.action == action)
            .count()
    };
    let (create, exists, errors) = (
        count(crate::import::Action::Create),
        count(crate::import::Action::Exists),
        count(crate::import::Action::Error),
    );
    if report.applied {
        println!(
            "Imported server {id}: {} service(s) created, {exists} already there, {errors} \
             error(s). A running host pushes their links.",
            report.created
        );
    } else {
        println!(
            "Dry run for server {id}: {create} service(s) would be created, {exists} already \
             there, {errors} error(s). Run again with --apply to create them."
        );
    }
    Ok(())
}

/// A plugin runtime for the command line: instances allocated on demand (a command runs a few
/// calls), compiled components cached in `data_dir` when `cache` (as `serve` does).
fn cli_runtime(config: &Config, cache: bool) -> anyhow::Result<crate::runtime::Runtime> {
    let runtime = crate::runtime::RuntimeConfig {
        allocator: crate::runtime::AllocatorChoice::OnDemand,
        cache_dir: if cache {
            std::path::absolute(config.data_dir.join("wasm-cache")).ok()
        } else {
            None
        },
        ..Default::default()
    };
    crate::runtime::Runtime::new(runtime).context("starting the plugin runtime")
}

/// The catalog over the configured database, with the configured policy.
async fn cli_catalog(config: &Config) -> anyhow::Result<crate::catalog::Catalog> {
    let db = crate::boot::open_database(config).await?;
    let runtime = cli_runtime(config, true)?;
    Ok(crate::catalog::Catalog::new(
        runtime,
        std::sync::Arc::new(crate::runtime::Plugins::new()),
        db,
    )
    .with_policy(crate::catalog::Policy::from_config(config)))
}

/// A signature file's text: the given file, else `<component>.sig` (when `required`, it must
/// exist; otherwise a missing default means no signature).
fn signature_text(
    component: &std::path::Path,
    given: Option<&std::path::Path>,
    required: bool,
) -> anyhow::Result<Option<String>> {
    let default = {
        let mut name = component.as_os_str().to_owned();
        name.push(".sig");
        PathBuf::from(name)
    };
    let path = match given {
        Some(path) => path.to_path_buf(),
        None if required || default.exists() => default,
        None => return Ok(None),
    };
    std::fs::read_to_string(&path)
        .map(|text| Some(text.trim().to_owned()))
        .with_context(|| format!("reading the signature file {}", path.display()))
}

/// A compiled component that passes the catalog's description checks.
async fn described(
    runtime: &crate::runtime::Runtime,
    component: &std::path::Path,
) -> anyhow::Result<std::sync::Arc<crate::runtime::Plugin>> {
    let plugin = runtime
        .load_file(component)
        .await
        .with_context(|| format!("{}", component.display()))?;
    crate::catalog::check_description(&plugin.description)
        .map_err(|why| anyhow::anyhow!("{}: invalid plugin: {why}", component.display()))?;
    Ok(plugin)
}

fn state_line(v: &crate::storage::PluginVersion) -> String {
    format!(
        "{} {} ({}), {}, {}",
        v.name,
        v.version,
        v.digest,
        v.state().as_str(),
        match (&v.signed_by, &v.signature) {
            (Some(key), _) => format!("signed by {key}"),
            (None, Some(_)) => "signature not verified".to_owned(),
            (None, None) => "unsigned".to_owned(),
        }
    )
}

async fn plugin(command: PluginCommand, config: &Config) -> anyhow::Result<()> {
    use crate::signing::{PrivateKey, PublicKey, Signature, TrustedKey, TrustedKeys};
    match command {
        PluginCommand::Keygen { key, name } => {
            TrustedKey::new(&name, PrivateKey::generate().public())
                .map_err(|why| anyhow::anyhow!("--name: {why}"))?;
            let private = PrivateKey::generate();
            private.write_new(&key)?;
            let public = private.public();
            println!(
                "Wrote a new private key to {} (mode 0600): keep it secret. Sign with \
                 `panelink plugin sign --key {} COMPONENT`.",
                key.display(),
                key.display()
            );
            println!(
                "Operators trust it with: trusted_keys = [{{ name = \"{name}\", public_key = \"{public}\" }}]"
            );
            println!("{public}");
            Ok(())
        }
        PluginCommand::Sign {
            key,
            component,
            out,
        } => {
            let private = PrivateKey::read(&key)?;
            let plugin = described(&cli_runtime(config, false)?, &component).await?;
            let message = crate::signing::message(plugin.id(), plugin.version(), &plugin.digest);
            let signature = private.sign(message.as_bytes());
            let what = format!("{} {} ({})", plugin.id(), plugin.version(), plugin.digest);
            match out {
                Some(out) => {
                    std::fs::write(&out, format!("{signature}\n"))
                        .with_context(|| format!("writing {}", out.display()))?;
                    println!(
                        "Signed {what} with {}; the signature is in {}.",
                        private.public(),
                        out.display()
                    );
                }
                None => {
                    println!("Signed {what} with {}:", private.public());
                    println!("{signature}");
                }
            }
            Ok(())
        }
        PluginCommand::Verify {
            component,
            signature,
            public_keys,
        } => {
            let keys = if public_keys.is_empty() {
                config.trusted_keys.clone()
            } else {
                let keys = public_keys
                    .iter()
                    .enumerate()
                    .map(|(i, text)| {
                        let key = PublicKey::parse(text)
                            .map_err(|e| anyhow::anyhow!("--public-key {text:?}: {e}"))?;
                        TrustedKey::new(&format!("public-key-{}", i + 1), key)
                            .map_err(|e| anyhow::anyhow!(e))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                TrustedKeys::new(keys).map_err(|e| anyhow::anyhow!(e))?
            };
            if keys.is_empty() {
                anyhow::bail!(
                    "no key to verify with: configure trusted_keys or pass --public-key ed25519:…"
                );
            }
            let text = signature_text(&component, signature.as_deref(), true)?
                .expect("a required signature is read or fails");
            let signature = Signature::parse(&text)?;
            let plugin = described(&cli_runtime(config, false)?, &component).await?;
            let message = crate::signing::message(plugin.id(), plugin.version(), &plugin.digest);
            let what = format!("{} {} ({})", plugin.id(), plugin.version(), plugin.digest);
            match keys.verify(message.as_bytes(), &signature) {
                Some(key) => {
                    println!("Good signature: {what} is signed by {}.", key.name);
                    Ok(())
                }
                None => anyhow::bail!(
                    "BAD signature: it does not verify for {what} with any of {}",
                    keys.names()
                ),
            }
        }
        PluginCommand::Install {
            component,
            signature,
        } => {
            let signature = signature_text(&component, signature.as_deref(), false)?;
            let bytes = std::fs::read(&component)
                .with_context(|| format!("reading {}", component.display()))?;
            let catalog = cli_catalog(config).await?;
            let installed = catalog
                .install(&Actor::cli(), &bytes, signature.as_deref())
                .await;
            catalog.db().close().await;
            let (version, created) = installed?;
            if created {
                println!("Installed {}.", state_line(&version));
            } else {
                println!("Already installed: {}.", state_line(&version));
            }
            println!(
                "Activate it with: panelink plugin activate {} {}",
                version.name, version.version
            );
            Ok(())
        }
        PluginCommand::List => {
            let db = crate::boot::open_database(config).await?;
            let versions = db.plugin_versions().await?;
            db.close().await;
            println!(
                "{:<16} {:<12} {:<8} {:<9} {:<16} {:<9} {:<24} DIGEST",
                "NAME", "VERSION", "CONTRACT", "STATE", "SIGNED_BY", "SOURCE", "INSTALLED"
            );
            for v in versions {
                println!(
                    "{:<16} {:<12} {:<8} {:<9} {:<16} {:<9} {:<24} {}",
                    v.name,
                    v.version,
                    crate::catalog::contract_of_world(&v.world),
                    v.state().as_str(),
                    v.signed_by.as_deref().unwrap_or("-"),
                    match v.source {
                        crate::storage::PluginSource::Directory => "directory",
                        crate::storage::PluginSource::Upload => "upload",
                    },
                    crate::api::rfc3339(v.installed_at),
                    v.digest
                );
            }
            Ok(())
        }
        PluginCommand::Activate {
            name,
            version,
            canary_server,
        } => {
            let catalog = cli_catalog(config).await?;
            let target = catalog.db().plugin_version(&name, &version).await;
            if target
                .as_ref()
                .is_ok_and(|v| v.source == crate::storage::PluginSource::Directory)
            {
                catalog.know(&catalog.load_dir(&config.plugin_dir).await);
            }
            let activated = catalog
                .activate(&Actor::cli(), &name, &version, canary_server)
                .await;
            catalog.db().close().await;
            let activated = activated?;
            println!(
                "Activated {}. A running host picks it up at its next start.",
                state_line(&activated)
            );
            Ok(())
        }
        PluginCommand::Rollback { name } => {
            let catalog = cli_catalog(config).await?;
            if catalog
                .rollback_target(&name)
                .await?
                .is_some_and(|v| v.source == crate::storage::PluginSource::Directory)
            {
                catalog.know(&catalog.load_dir(&config.plugin_dir).await);
            }
            let active = catalog.rollback(&Actor::cli(), &name).await;
            catalog.db().close().await;
            let active = active?;
            println!(
                "Rolled back to {}. A running host picks it up at its next start.",
                state_line(&active)
            );
            Ok(())
        }
    }
}

/// The binary's whole `main`: errors are printed as one line (with their causes), exit code 1.
pub fn main() -> std::process::ExitCode {
    let result = (|| {
        let cli = Cli::parse();
        let config = cli.configuration(std::env::vars())?;
        init_logging(&config)?;
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(run(cli.command, config))
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
