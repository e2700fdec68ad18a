//! The `panel-sim` binary: runs one or more simulated WHM servers until Ctrl-C.
//!
//! Prints one line per server on stdout, `server <i> http://127.0.0.1:<port>` (i from 1), once
//! every server listens; the API credentials go to stderr.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use panel_sim::{FaultKind, PanelSim, Profile, SimConfig, SimHandle};

/// Simulated cPanel & WHM servers (WHM API 1 integration links) for Panelink tests and demos.
#[derive(Debug, Parser)]
#[command(name = "panel-sim")]
struct Args {
    /// Address to listen on. With --servers N and a non-zero port, servers take consecutive ports
    /// from it; with port 0 each server gets a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// How many servers to start.
    #[arg(long, default_value_t = 1)]
    servers: u16,

    /// How many sample accounts each server has (user1 … userN, domains user<i>.example.test).
    #[arg(long, default_value_t = 5)]
    accounts: usize,

    /// Server profile: STANDARD, WP2 or another code.
    #[arg(long, default_value = "STANDARD")]
    profile: Profile,

    /// cPanel & WHM version string (older than 11.54 has no integration functions).
    #[arg(long, default_value = panel_sim::DEFAULT_VERSION)]
    version: String,

    /// API username.
    #[arg(long, default_value = panel_sim::DEFAULT_API_USER)]
    api_user: String,

    /// API token.
    #[arg(long, default_value = panel_sim::DEFAULT_API_TOKEN)]
    api_token: String,

    /// Latency added to every HTTP request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,

    /// Latency added to every command (each batch command too), in milliseconds.
    #[arg(long, default_value_t = 0)]
    command_latency_ms: u64,

    /// Probability (0.0–1.0) that a request gets a fault.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,

    /// Fault kinds to draw from, comma-separated: 500, timeout, drop.
    #[arg(long, value_delimiter = ',', default_value = "500,timeout,drop")]
    fault_kinds: Vec<FaultKind>,

    /// How long a timeout fault hangs, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    hang_for_ms: u64,

    /// Seed of the fault RNG (server i uses seed + i - 1).
    #[arg(long)]
    seed: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.servers == 0 {
        bail!("--servers must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.fault_rate) {
        bail!("--fault-rate must be between 0.0 and 1.0");
    }

    let mut handles: Vec<SimHandle> = Vec::with_capacity(usize::from(args.servers));
    for i in 0..args.servers {
        let mut listen = args.listen;
        if listen.port() != 0 {
            let port = listen
                .port()
                .checked_add(i)
                .context("--listen port + --servers overflows the port range")?;
            listen.set_port(port);
        }
        let mut config = SimConfig::new()
            .listen(listen)
            .version(args.version.clone())
            .profile(args.profile.clone())
            .sample_accounts(args.accounts)
            .api_credentials(args.api_user.clone(), args.api_token.clone())
            .request_latency(Duration::from_millis(args.latency_ms))
            .command_latency(Duration::from_millis(args.command_latency_ms))
            .fault_rate(args.fault_rate)
            .fault_kinds(args.fault_kinds.iter().copied())
            .hang_for(Duration::from_millis(args.hang_for_ms));
        if let Some(seed) = args.seed {
            config = config.seed(seed.wrapping_add(u64::from(i)));
        }
        let handle = PanelSim::start(config)
            .await
            .with_context(|| format!("starting server {} on {listen}", i + 1))?;
        handles.push(handle);
    }

    for (i, handle) in handles.iter().enumerate() {
        println!("server {} {}", i + 1, handle.base_url());
    }
    eprintln!(
        "panel-sim: {} server(s), profile {}, version {}, {} account(s) each; Authorization: whm {}:{}",
        handles.len(),
        args.profile,
        args.version,
        args.accounts,
        args.api_user,
        args.api_token
    );
    eprintln!("panel-sim: press Ctrl-C to stop");

    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    for handle in handles {
        handle.shutdown().await;
    }
    Ok(())
}
