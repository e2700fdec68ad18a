//! `cargo xtask demo`: Panelink on SQLite against three simulated panel servers, with sample data.
//!
//! Starts two cPanel (`STANDARD`) and one WP Squared (`WP2`) panel-sim servers with sample
//! accounts, starts `panelink serve` in-process (data in a fresh temporary directory unless
//! `--data-dir` is given), creates an admin, then adds the servers, clients and services through
//! the real admin API — including a service whose account the panel does not know and one with no
//! user name, so the application log has warnings to show once links are enabled. Prints the admin
//! console's URL, the admin token to paste into it, and the URL that clicks a link as a customer
//! would (panel-sim's click, ending in the client portal), then runs until Ctrl-C.
//!
//! The browser tests and the screenshots (`cargo xtask browser-test`, `cargo xtask screenshots`)
//! run this same program with `--ready-file`: once everything is seeded it writes the URLs, the
//! admin token and the simulated servers (with their WHM credentials, which the tests use to read
//! the panels' state) there as JSON.

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
    /// Latency every simulated panel adds to each request, in milliseconds (the browser tests
    /// watch a sync under way).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Once seeded, write the URLs, the admin token and the simulated servers here as JSON.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

/// The link the printed customer click follows: View Invoice History (`clientarea:invoices`),
/// as the plugins name it on the panel.
const CLICK_APP: &str = "PANELINK_clientarea_invoices";

struct Sim {
    name: &'static str,
    module: &'static str,
    handle: SimHandle,
}

async fn start_sims(accounts: usize, latency: Duration) -> Result<Vec<Sim>> {
    let mut sims = Vec::new();
    for (name, module, prefix, profile) in [
        ("cPanel One", "cpanel", "alpha", Profile::Standard),
        ("cPanel Two", "cpanel", "bravo", Profile::Standard),
        ("WP Squared One", "wpsquared", "wp", Profile::Wp2),
    ] {
        let config = SimConfig::new()
            .profile(profile)
            .request_latency(latency)
            .accounts(
                (1..=accounts)
                    .map(|i| (format!("{prefix}{i}"), format!("{prefix}{i}.example.test"))),
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

/// Adds the servers, clients and services; returns the servers' ids.
async fn seed(api: &Api, sims: &[Sim]) -> Result<Vec<i64>> {
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
    Ok(server_ids)
}

/// What `--ready-file` holds: everything a browser test needs to drive the console and read the
/// panels. Written whole, then renamed into place, so a reader never sees half of it.
fn write_ready_file(
    path: &std::path::Path,
    base: &str,
    email: &Email,
    token: &str,
    sims: &[Sim],
    server_ids: &[i64],
) -> Result<()> {
    let servers: Vec<Value> = sims
        .iter()
        .zip(server_ids)
        .map(|(sim, id)| {
            json!({
                "id": id,
                "name": sim.name,
                "module": sim.module,
                "url": sim.handle.base_url(),
                "api_user": sim.handle.api_user(),
                "api_token": sim.handle.api_token(),
                "accounts": sim.handle.accounts().keys().collect::<Vec<_>>(),
            })
        })
        .collect();
    let ready = json!({
        "url": base,
        "console": format!("{base}/admin"),
        "admin_email": email.as_str(),
        "token": token,
        "servers": servers,
        "click_app": CLICK_APP,
    });
    let partial = path.with_extension("partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(&ready)?)?;
    std::fs::rename(&partial, path)?;
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

    let sims = start_sims(args.accounts, Duration::from_millis(args.latency_ms)).await?;
    let options = Options {
        runtime: RuntimeConfig {
            // Kept between runs (keyed by the components' bytes and the engine's settings), so
            // only the first demo compiles the plugins.
            cache_dir: Some(panelink_tests::plugin_dir().with_file_name("wasm-cache")),
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
    let server_ids = match seed(&api, &sims).await {
        Ok(ids) => ids,
        Err(e) if args.ready_file.is_some() => return Err(e.context("seeding failed")),
        Err(e) => {
            eprintln!("seeding failed: {e:#}");
            Vec::new()
        }
    };
    let click = sims[0].handle.click_url("alpha1", CLICK_APP);

    println!(
        "\nPanelink is running.\n\
         \n  Admin console: {base}/admin\
         \n  Admin token:   {}\
         \n                 (paste it into \"Admin token\" and press \"Sign in\")\
         \n  Admin:         {email}\
         \n  Data:          {}\
         \n\nIn the console, switch \"cPanel Application Links\" on and watch the badge go from\
         \nSYNCING to ACTIVE; Configure renames, reorders and hides links; View Log shows the sync.\
         \n\nThen click a link as a customer would: open\
         \n  {click}\
         \nin a browser. The simulated cPanel server clicks alpha1's \"View Invoice History\" link the\
         \nway cPanel does (it posts the link's credential to {base}/oauth/token) and sends your\
         \nbrowser to the one-time URL it gets back: you land signed in, in the client portal.\
         \n\nThe same as API calls:\
         \n  curl -H 'Authorization: Bearer {0}' {base}/api/v1/applications\
         \n  curl -X PATCH -H 'Authorization: Bearer {0}' -d '{{\"enabled\": true}}' {base}/api/v1/applications/cpanel\
         \n  OpenAPI: {base}/api/v1/openapi.json\
         \n\nCtrl-C stops everything.",
        token.expose(),
        data_dir.display(),
    );
    if let Some(path) = &args.ready_file {
        write_ready_file(path, &base, &email, token.expose(), &sims, &server_ids)?;
    }
    running.await??;
    for sim in sims {
        sim.handle.shutdown().await;
    }
    Ok(())
}
