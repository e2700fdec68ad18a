//! The `plugins` benchmark: how fast a plugin version takes over, and what the compile cache
//! saves at a restart.
//!
//! - **Activation → first call on the new version.** A catalog over a fresh SQLite database
//!   with the shipped plugins adopted and a second build of the cPanel plugin (version
//!   rewritten: `built_at_version`) installed, both compiled. The versions are activated in
//!   turn; each sample is the time from the start of `Catalog::activate` (its checks, the
//!   database record and audit entry, the swap) to the end of the first call made afterwards
//!   that runs on the new version (a `provision` of an empty batch: instantiation and one guest
//!   call, no panel request). The swap alone (`Plugins::activate` to that call's end) is shown
//!   apart. Target: ≤ 1 ms.
//! - **Restart with the compile cache vs without.** What a start spends on plugins: a new
//!   runtime (engine, linker) loading the two shipped components, each compiled, or each found
//!   in a warm, sealed `plugin_cache_dir` (seal checks included). Target: ≥ 10× faster.

use std::time::{Duration, Instant};

use panelink::adapter::{ServerTarget, Settings};
use panelink::catalog::Catalog;
use panelink::crypto::SecretBox;
use panelink::runtime::{CacheKey, Plugins, Runtime, RuntimeConfig};
use panelink::storage::{Actor, Db};

const ACTIVATIONS: usize = 200;
const RESTARTS: usize = 5;

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let n = samples.len();
    (
        samples.iter().sum::<Duration>() / n as u32,
        samples[n / 2],
        samples[(n * 99 / 100).min(n - 1)],
    )
}

/// Run the benchmark and print its figures.
pub async fn run() -> anyhow::Result<()> {
    activation().await?;
    restart().await
}

async fn activation() -> anyhow::Result<()> {
    println!("== plugins: activation -> first call on the new version (target <= 1 ms) ==");
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let secrets = SecretBox::from_material(
        "8c1f4a7e2b9d6c3f0e5a8b1d4c7f2e9a6b3d0c5f8e1a4b7d2c9f6e3a0b5d8c1f",
    )?;
    let db = Db::connect(&url, std::sync::Arc::new(secrets)).await?;
    db.migrate().await?;
    let runtime = Runtime::new(crate::runtime_config())?;
    let catalog = Catalog::new(runtime, std::sync::Arc::new(Plugins::new()), db);
    let loaded = catalog.load_dir(&crate::plugin_dir()).await;
    catalog.adopt(&loaded).await?;
    let actor = Actor::cli();
    let next = crate::built_at_version("cpanel", "0.1.0", "0.1.1");
    catalog.install(&actor, &next, None).await?;

    let target = ServerTarget {
        hostname: "127.0.0.1".into(),
        port: 9,
        secure: false,
        username: "root".into(),
        api_token: panelink::adapter::Secret::new("unused"),
    };
    let settings = Settings::default();
    let plugins = catalog.plugins().clone();
    // The first call on `version` after an activation: the registry's plugin of the moment.
    let first_call = |version: &'static str| {
        let (plugins, target, settings) = (&plugins, &target, &settings);
        async move {
            let plugin = plugins.get("cpanel").expect("cpanel is active");
            assert_eq!(
                plugin.version(),
                version,
                "the swap is done when activate returns"
            );
            plugin
                .provision(target, settings, Vec::new(), Vec::new())
                .await
                .expect("an empty provisioning call");
        }
    };
    let mut whole = Vec::with_capacity(ACTIVATIONS);
    let mut swap = Vec::with_capacity(ACTIVATIONS);
    for i in 0..ACTIVATIONS + 10 {
        let version = if i % 2 == 0 { "0.1.1" } else { "0.1.0" };
        let t = Instant::now();
        catalog.activate(&actor, "cpanel", version, None).await?;
        first_call(version).await;
        let elapsed = t.elapsed();
        // The swap alone: the registry's atomic replacement, then the first call.
        let other = if version == "0.1.0" { "0.1.1" } else { "0.1.0" };
        let compiled = loaded_version(&catalog, other);
        let t = Instant::now();
        plugins.activate(compiled);
        first_call(other).await;
        let swapped = t.elapsed();
        plugins.activate(loaded_version(&catalog, version));
        if i >= 10 {
            whole.push(elapsed);
            swap.push(swapped);
        }
    }
    let (mean, p50, p99) = percentiles(whole);
    println!(
        "  activate (checks, record, audit, swap) + first call   mean {}  p50 {}  p99 {}",
        ms(mean),
        ms(p50),
        ms(p99)
    );
    let (mean, p50, p99) = percentiles(swap);
    println!(
        "  swap + first call                                      mean {}  p50 {}  p99 {}",
        ms(mean),
        ms(p50),
        ms(p99)
    );
    Ok(())
}

/// The compiled cPanel plugin at `version`.
fn loaded_version(catalog: &Catalog, version: &str) -> std::sync::Arc<panelink::runtime::Plugin> {
    let bytes = if version == "0.1.0" {
        std::fs::read(crate::built_plugin("cpanel")).expect("cpanel.wasm")
    } else {
        crate::built_at_version("cpanel", "0.1.0", version)
    };
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    catalog.compiled(&digest).expect("compiled")
}

async fn restart() -> anyhow::Result<()> {
    println!(
        "\n== plugins: a start's plugin loading (new runtime + 2 shipped components), compile \
         cache vs none (target >= 10x) =="
    );
    let cache = tempfile::tempdir()?;
    let config = |cached: bool| RuntimeConfig {
        cache_dir: cached.then(|| cache.path().to_path_buf()),
        cache_key: cached.then(|| CacheKey::new([7; 32])),
        ..RuntimeConfig::default()
    };
    let start = |config: RuntimeConfig| async move {
        let t = Instant::now();
        let runtime = Runtime::new(config)?;
        for name in ["cpanel", "wpsquared"] {
            runtime.load_file(&crate::built_plugin(name)).await?;
        }
        anyhow::Ok((t.elapsed(), runtime.cache_stats()))
    };
    // Fill the cache.
    start(config(true)).await?;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..RESTARTS {
        cold.push(start(config(false)).await?.0);
        let (elapsed, stats) = start(config(true)).await?;
        let stats = stats.expect("a cache");
        anyhow::ensure!(
            stats.hits == 2 && stats.misses == 0,
            "the warm start compiled: {stats:?}"
        );
        warm.push(elapsed);
    }
    let (cold, ..) = percentiles(cold);
    let (warm, ..) = percentiles(warm);
    println!("  without the cache (compile)   mean {}", ms(cold));
    println!("  with the cache (sealed hits)  mean {}", ms(warm));
    println!(
        "  speed-up                      {:.1}x",
        cold.as_secs_f64() / warm.as_secs_f64()
    );
    Ok(())
}
