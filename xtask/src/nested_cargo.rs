//! `cargo` run from inside another cargo-run process (xtask, a test), as if typed at a shell.
//! Shared by xtask and the tests (`tests/src/lib.rs` includes this file).
//!
//! Cargo gives the process it runs the variables of that process's package (`CARGO_PKG_NAME`,
//! `CARGO_MANIFEST_DIR`, `OUT_DIR`, …). Build scripts rerun when such a variable changes (ring's
//! watches `CARGO_PKG_NAME` and `CARGO_MANIFEST_DIR`), so a nested cargo that kept them rebuilt
//! ring and everything above it, and the next build from a shell rebuilt it all back.

use std::process::Command;

/// A `cargo` command without the variables cargo set for the running package.
#[must_use]
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        if let Some(key) = key.to_str()
            && is_package_variable(key)
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Whether cargo sets `key` for the package it runs (build scripts, binaries and tests).
fn is_package_variable(key: &str) -> bool {
    key == "OUT_DIR"
        || key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_MANIFEST_")
        || key.starts_with("CARGO_BIN_")
        || matches!(
            key,
            "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}
