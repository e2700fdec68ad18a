//! The `plesk-sim` binary: runs one simulated Plesk server until Ctrl-C.
//!
//! Prints `server 1 http://127.0.0.1:<port>` on stdout once it listens; the credentials go to
//! stderr.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use plesk_sim::{FaultKind, PleskConfig, PleskSim};

/// A simulated Plesk server (XML API: customers, subscriptions, custom buttons) for Panelink
/// tests and demos.
#[derive(Debug, Parser)]
#[command(name = "plesk-sim")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// How many sample customers (user1 … userN, each with subscription user<i>.example.test).
    #[arg(long, default_value_t = 5)]
    customers: usize,

    /// Run Plesk 10.4 (protocols up to 1.6.3.4: no custom buttons).
    #[arg(long)]
    old: bool,

    /// Administrator login.
    #[arg(long, default_value = plesk_sim::DEFAULT_ADMIN_LOGIN)]
    admin_login: String,

    /// Administrator password.
    #[arg(long, default_value = plesk_sim::DEFAULT_ADMIN_PASSWORD)]
    admin_password: String,

    /// A secret key also accepted in the `KEY` header.
    #[arg(long)]
    secret_key: Option<String>,

    /// Latency added to every HTTP request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,

    /// Latency added to every operation, in milliseconds.
    #[arg(long, default_value_t = 0)]
    operation_latency_ms: u64,

    /// Probability (0.0–1.0) that a request gets a fault.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,

    /// Fault kinds to draw from, comma-separated: 500, timeout, drop, 500-after-work.
    #[arg(long, value_delimiter = ',', default_value = "500,timeout,drop")]
    fault_kinds: Vec<FaultKind>,

    /// Seed of the fault RNG.
    #[arg(long)]
    seed: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fault_rate) {
        bail!("--fault-rate must be between 0.0 and 1.0");
    }
    let mut config = PleskConfig::new()
        .listen(args.listen)
        .sample_customers(args.customers)
        .admin(args.admin_login.clone(), args.admin_password.clone())
        .request_latency(Duration::from_millis(args.latency_ms))
        .operation_latency(Duration::from_millis(args.operation_latency_ms))
        .fault_rate(args.fault_rate)
        .fault_kinds(args.fault_kinds.iter().copied());
    if args.old {
        config = config.old_version();
    }
    if let Some(key) = args.secret_key {
        config = config.secret_key(key);
    }
    if let Some(seed) = args.seed {
        config = config.seed(seed);
    }
    let handle = PleskSim::start(config)
        .await
        .with_context(|| format!("starting plesk-sim on {}", args.listen))?;
    println!("server 1 {}", handle.base_url());
    eprintln!(
        "plesk-sim: {} customer(s); HTTP_AUTH_LOGIN: {} HTTP_AUTH_PASSWD: {}",
        args.customers, args.admin_login, args.admin_password
    );
    eprintln!("plesk-sim: press Ctrl-C to stop");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    handle.shutdown().await;
    Ok(())
}
