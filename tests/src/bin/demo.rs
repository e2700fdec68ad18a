//! `cargo xtask demo`: Panelink on SQLite against three simulated panel servers, with sample data.
//!
//! Starts two cPanel (`STANDARD`) and one WP Squared (`WP2`) panel-sim servers with sample
//! accounts, starts `panelink serve` in-process (data in a fresh temporary directory unless
//! `--data-dir` is given), creates an admin, then adds the servers, clients and services through
//! the real admin API — including a service whose account the panel does not know and one with no
//! user name, so the application log has warnings to show once links are enabled. Prints the URL
//! and the admin token, then runs until Ctrl-C.

/// The same allocator as the `panelink` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use panel_sim::{PanelSim, Profile, SimConfig, SimHandle};
use panelink::boot::{Host, Options};
use panelink::config::{Config, Layer};
use panelink::model::Email;
use panelink::runtime::RuntimeConfig;
use panelink::storage::Actor;
use serde_json::{Value, json};

/// Run Panelink against simulated panel servers.
#[derive(Debug, Parser)]
struct Args {
    /// Address Panelink listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Directory for the database and the key file (default: a fresh temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Accounts per simulated server.
    #[arg(long, default_value_t = 4)]
    accounts: usize,
}

struct Sim {
    name: &'static str,
    module: &'static str,
    handle: SimHandle,
}

async fn start_sims(accounts: usize) -> Result<Vec<Sim>> {
    let mut sims = Vec::new();
    for (name, module, prefix, profile) in [
        ("cPanel One", "cpanel", "alpha", Profile::Standard),
        ("cPanel Two", "cpanel", "bravo", Profile::Standard),
        ("WP Squared One", "wpsquared", "wp", Profile::Wp2),
    ] {
        let config = SimConfig::new().profile(profile).accounts(
            (1..=accounts).map(|i| (format!("{prefix}{i}"), format!("{prefix}{i}.example.test"))),
        );
        let handle = PanelSim::start(config)
            .await
            .with_context(|| format!("starting the {name} simulator"))?;
        sims.push(Sim {
            name,
            module,
            handle,
        });
    }
    Ok(sims)
}

/// A small client of the admin API.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path}: {status} {value}");
        }
        Ok(value)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

async fn wait_ready(base: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("Panelink did not become ready within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn seed(api: &Api, sims: &[Sim]) -> Result<()> {
    let mut server_ids = Vec::new();
    for sim in sims {
        let server = api
            .post(
                "/api/v1/servers",
                json!({
                    "name": sim.name,
                    "module": sim.module,
                    "hostname": sim.handle.addr().ip().to_string(),
                    "port": sim.handle.addr().port(),
                    "secure": false,
                    "username": sim.handle.api_user(),
                    "api_token": sim.handle.api_token(),
                }),
            )
            .await?;
        let id = server["id"].as_i64().context("server id")?;
        let check = api
            .post(&format!("/api/v1/servers/{id}/check"), json!({}))
            .await;
        match check {
            Ok(check) => println!(
                "  server {id} {:<15} {}  supported: {} ({})",
                sim.name,
                sim.handle.base_url(),
                check["supported"],
                check["detail"].as_str().unwrap_or("")
            ),
            Err(e) => println!("  server {id} {:<15} check failed: {e}", sim.name),
        }
        server_ids.push(id);
    }

    let clients = [
        ("Acme Hosting Ltd", "owner@acme.example", true),
        ("Globex Corporation", "it@globex.example", true),
        ("Initech", "billing@initech.example", false),
    ];
    let mut client_ids = Vec::new();
    for (name, email, allow_sso) in clients {
        let client = api
            .post(
                "/api/v1/clients",
                json!({"name": name, "email": email, "allow_sso": allow_sso}),
            )
            .await?;
        client_ids.push(client["id"].as_i64().context("client id")?);
    }
    api.post(
        &format!("/api/v1/clients/{}/users", client_ids[0]),
        json!({"email": "developer@acme.example", "permissions": ["sso", "tickets"]}),
    )
    .await?;

    let mut services = 0;
    for (s, sim) in sims.iter().enumerate() {
        for (i, (user, domain)) in sim.handle.accounts().into_iter().enumerate() {
            let status = if i % 4 == 3 { "suspended" } else { "active" };
            api.post(
                "/api/v1/services",
                json!({
                    "client_id": client_ids[(s + i) % client_ids.len()],
                    "server_id": server_ids[s],
                    "username": user,
                    "domain": domain,
                    "status": status,
                }),
            )
            .await?;
            services += 1;
        }
    }
    // Billing data a real fleet has: an account the panel does not know, one without a user
    // name, one terminated.
    for (username, domain, status) in [
        ("bob", "bob.example.test", "active"),
        ("", "no-user.example.test", "active"),
        ("gone1", "gone.example.test", "terminated"),
    ] {
        api.post(
            "/api/v1/services",
            json!({"client_id": client_ids[0], "server_id": server_ids[0],
                   "username": username, "domain": domain, "status": status}),
        )
        .await?;
        services += 1;
    }
    println!("  {} clients, {services} services", client_ids.len());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&data_dir)?;
    let config = Config::resolve([
        Layer::from_env(std::env::vars())?,
        Layer {
            listen: Some(args.listen.clone()),
            database_url: Some(format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("panelink.db").display()
            )),
            data_dir: Some(data_dir.clone()),
            plugin_dir: Some(panelink_tests::plugin_dir()),
            log_level: Some("info,sqlx=warn,panel_sim=warn".into()),
            ..Layer::default()
        },
    ])?;
    panelink::cli::init_logging(&config)?;
    if !panelink_tests::plugin_dir().join("cpanel.wasm").exists() {
        bail!("the plugins are not built: run `cargo xtask build-plugins` (or `cargo xtask demo`)");
    }

    let sims = start_sims(args.accounts).await?;
    let options = Options {
        runtime: RuntimeConfig {
            cache_dir: Some(data_dir.join("wasm-cache")),
            ..RuntimeConfig::default()
        },
        ..Options::default()
    };
    let host = Host::start(config, options).await?;
    let base = format!("http://{}", host.local_addr());
    let email = Email::parse(&format!(
        "demo+{}@panelink.example",
        host.state().db().admins().await?.len() + 1
    ))
    .map_err(anyhow::Error::msg)?;
    let (_, token) = host
        .state()
        .db()
        .create_admin(&Actor::cli(), &email, "Full Administrator")
        .await?;
    let running = tokio::spawn(host.run(panelink::cli::shutdown_signal()));
    wait_ready(&base).await?;

    println!("\nSeeding through the admin API:");
    let api = Api {
        base: base.clone(),
        token: token.expose().to_owned(),
        http: reqwest::Client::new(),
    };
    if let Err(e) = seed(&api, &sims).await {
        eprintln!("seeding failed: {e:#}");
    }

    println!(
        "\nPanelink is running.\n\
         \n  Admin API:     {base}/api/v1\
         \n  OpenAPI:       {base}/api/v1/openapi.json\
         \n  Data:          {}\
         \n  Admin:         {email}\
         \n  Admin token:   {}\
         \n\nTry:\
         \n  curl -H 'Authorization: Bearer {1}' {base}/api/v1/applications\
         \n  curl -X PATCH -H 'Authorization: Bearer {1}' -d '{{\"enabled\": true}}' {base}/api/v1/applications/cpanel\
         \n\nCtrl-C stops everything.",
        data_dir.display(),
        token.expose(),
    );
    running.await??;
    for sim in sims {
        sim.handle.shutdown().await;
    }
    Ok(())
}
