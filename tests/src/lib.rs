//! Shared helpers of the integration tests and of the benchmark and demo binaries: where the
//! built plugins are, and a runtime with them loaded; [`bench_sso`], [`bench_sync`] and
//! [`bench_plugins`] are the `sso`, `sync` and `plugins` benchmarks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[path = "../../xtask/src/nested_cargo.rs"]
mod nested_cargo;
pub use nested_cargo::cargo;

pub mod bench_db;
pub mod bench_plugins;
pub mod bench_sso;
pub mod bench_sync;
pub mod example_panel;

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

/// The path of a component: a shipped plugin (`cpanel`, `wpsquared`), a test component
/// (`misbehave`) or a pinned binary fixture (`cpanel-contract-0.1`, see `tests/fixtures`).
/// Panics with the command to run when it has not been built.
pub fn built_plugin(name: &str) -> PathBuf {
    let root = repo_root();
    for dir in ["target/plugins", "target/test-plugins", "tests/fixtures"] {
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

/// A built component rewritten to describe itself as `to` instead of `from` (same length; the
/// version must occur exactly once in its bytes, as the shipped plugins' does): another build
/// of the same plugin, e.g. `built_at_version("cpanel", "0.1.0", "0.1.1")`, with its own digest.
pub fn built_at_version(name: &str, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "a version is rewritten in place");
    let mut bytes = std::fs::read(built_plugin(name)).expect("the built component");
    let at: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "{name}.wasm holds {from:?} exactly once");
    bytes[at[0]..at[0] + to.len()].copy_from_slice(to.as_bytes());
    bytes
}

/// Load one built component into `runtime`.
pub async fn load(runtime: &Runtime, name: &str) -> Arc<Plugin> {
    runtime
        .load_file(&built_plugin(name))
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// The `panelink` binary (`target/debug/panelink`), built first so that it is current.
pub fn panelink_binary() -> PathBuf {
    let root = repo_root();
    let status = cargo()
        .current_dir(&root)
        .args(["build", "-q", "-p", "panelink", "--bin", "panelink"])
        .status()
        .expect("cargo build");
    assert!(status.success(), "building panelink failed");
    root.join("target/debug/panelink")
}

/// The first bytes of the `specimen` component's configuration region (see
/// `plugins/specimen/src/lib.rs`, which the tests cannot link: it is a component).
const SPECIMEN_MARKER: &[u8] = b"PANELINK-SPECIMEN-CONFIG\n";
/// The region's size, marker included.
const SPECIMEN_REGION: usize = 2048;

/// A `specimen` component: the built test component with its configuration region rewritten,
/// so it describes itself and behaves as set here. Every distinct configuration is a distinct
/// component (its own digest).
#[derive(Debug, Clone)]
pub struct Specimen {
    /// Application id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Contract version it claims.
    pub contract: String,
    /// `check-server`: `supported`, `unsupported`, `trap` or `loop`.
    pub check: String,
    /// `provision`: `ok`, `trap` or `loop`.
    pub provision: String,
    /// Links: `(scope, group, default label, destination)`.
    pub links: Vec<(String, String, String, String)>,
}

impl Default for Specimen {
    fn default() -> Self {
        let link = |scope: &str, group: &str, label: &str, destination: &str| {
            (
                scope.to_owned(),
                group.to_owned(),
                label.to_owned(),
                destination.to_owned(),
            )
        };
        Self {
            id: "specimen".into(),
            name: "Specimen".into(),
            version: "1.0.0".into(),
            contract: panelink::runtime::CONTRACT_VERSION.into(),
            check: "supported".into(),
            provision: "ok".into(),
            links: vec![
                link(
                    "clientarea:invoices",
                    "account",
                    "View Invoice History",
                    "/clientarea.php?action=invoices",
                ),
                link(
                    "clientarea:tickets",
                    "support",
                    "Open Ticket",
                    "/supporttickets.php",
                ),
            ],
        }
    }
}

impl Specimen {
    /// The default specimen at `version`.
    pub fn version(version: &str) -> Self {
        Self {
            version: version.into(),
            ..Self::default()
        }
    }

    /// The component's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes = std::fs::read(built_plugin("specimen")).expect("specimen.wasm");
        let at: Vec<usize> = bytes
            .windows(SPECIMEN_MARKER.len())
            .enumerate()
            .filter(|(_, w)| *w == SPECIMEN_MARKER)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at.len(), 1, "specimen.wasm holds its marker exactly once");
        let mut text = String::from_utf8(SPECIMEN_MARKER.to_vec()).unwrap();
        for (key, value) in [
            ("id", &self.id),
            ("name", &self.name),
            ("version", &self.version),
            ("contract", &self.contract),
            ("check", &self.check),
            ("provision", &self.provision),
        ] {
            text.push_str(&format!("{key}={value}\n"));
        }
        text.push_str("description=A specimen for the tests.\n");
        for (scope, group, label, destination) in &self.links {
            text.push_str(&format!("link={scope}|{group}|{label}|{destination}\n"));
        }
        assert!(
            text.len() <= SPECIMEN_REGION,
            "the specimen's configuration is too long"
        );
        let region = &mut bytes[at[0]..at[0] + SPECIMEN_REGION];
        region.fill(b' ');
        region[..text.len()].copy_from_slice(text.as_bytes());
        bytes
    }
}
