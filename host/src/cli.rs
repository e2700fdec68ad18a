//! The `panelink` command line: `serve`, `migrate`, `admin create`.
//!
//! Every command reads the same configuration (see [`crate::config`]): `--config FILE`, then
//! `PANELINK_*` variables, then the flags below. Logs go to standard error, so standard output
//! carries only what a command prints for scripts (`admin create` prints the new token alone on
//! its last line).

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
