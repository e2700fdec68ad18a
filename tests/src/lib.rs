//! Shared helpers of the integration tests and of the benchmark and demo binaries: where the
//! built plugins are, and a runtime with them loaded; [`bench_sso`] and
//! [`bench_sync`] are the `sso` and `sync` benchmarks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod bench_sso;
pub mod bench_sync;

use panelink::runtime::{Plugin, Runtime, RuntimeConfig};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives one level below the repository root")
        .to_path_buf()
}

/// The directory of the shipped plugins (`target/plugins`), the host's default plugin directory.
pub fn plugin_dir() -> PathBuf {
    repo_root().join("target/plugins")
}

/// The path of a built component: a shipped plugin (`cpanel`, `wpsquared`) or a test component
/// (`misbehave`). Panics with the command to run when it has not been built.
pub fn built_plugin(name: &str) -> PathBuf {
    let root = repo_root();
    for dir in ["target/plugins", "target/test-plugins"] {
        let path = root.join(dir).join(format!("{name}.wasm"));
        if path.exists() {
            return path;
        }
    }
    panic!("plugin component {name}.wasm is not built: run `cargo xtask build-plugins`");
}

/// The runtime configuration tests use: the defaults, with compiled components cached in
/// `target/wasm-cache` so that each test does not compile the plugins again.
pub fn runtime_config() -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(repo_root().join("target/wasm-cache")),
        ..RuntimeConfig::default()
    }
}

/// Load one built component into `runtime`.
pub async fn load(runtime: &Runtime, name: &str) -> Arc<Plugin> {
    runtime
        .load_file(&built_plugin(name))
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}
