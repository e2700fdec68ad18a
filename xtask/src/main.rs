//! Project automation (matklad's xtask pattern): `cargo xtask <task>`.
//!
//! - `build-plugins`: build the plugin components (installing the wasm32-wasip2 target when
//!   missing) and lay them out where the host and the tests look for them.
//! - `test`: build the plugins, then run every test of both workspaces.
//! - `lint`: `cargo fmt --check` and clippy with `-D warnings` on both workspaces.
//! - `ci`: lint, then test: what `.ci/run` runs.
//! - `bench`: the benchmarks (release build).
//! - `demo`: build everything, start simulated panel servers and `panelink serve` on SQLite.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const WASM_TARGET: &str = "wasm32-wasip2";
/// Plugins that ship: laid out in `target/plugins/`, the host's default plugin directory.
const SHIPPED: &[&str] = &["cpanel", "wpsquared", "plesk"];
/// Purpose-built test components: laid out in `target/test-plugins/`.
const TEST_ONLY: &[&str] = &["misbehave", "sleepy", "specimen", "whm01"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    match task {
        "build-plugins" => build_plugins(),
        "test" => test(rest),
        "lint" => lint(),
        "ci" => {
            lint()?;
            test(rest)
        }
        "bench" => bench(rest),
        "demo" => demo(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 build-plugins  build the wasm plugins into target/plugins and target/test-plugins\n  \
                 test           build the plugins and run every test (both workspaces)\n  \
                 lint           cargo fmt --check and clippy -D warnings on both workspaces, cargo doc -D warnings\n  \
                 ci             lint, then test\n  \
                 bench          run the benchmarks (release)\n  \
                 demo           run Panelink on SQLite against simulated panel servers"
            );
            if task == "help" {
                Ok(())
            } else {
                bail!("unknown task {task:?}")
            }
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to install the wasm32-wasip2 target")?;
    if !String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    Ok(())
}

fn build_plugins() -> Result<()> {
    ensure_wasm_target()?;
    let root = root();
    run(cargo().current_dir(root.join("plugins")).args([
        "build",
        "--release",
        "--target",
        WASM_TARGET,
    ]))?;
    let built = root
        .join("plugins/target")
        .join(WASM_TARGET)
        .join("release");
    for (names, dir) in [(SHIPPED, "plugins"), (TEST_ONLY, "test-plugins")] {
        let out = root.join("target").join(dir);
        std::fs::create_dir_all(&out)?;
        for name in names {
            let from = built.join(format!("{name}.wasm"));
            std::fs::copy(&from, out.join(format!("{name}.wasm")))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    eprintln!(
        "plugins in {} and {}",
        root.join("target/plugins").display(),
        root.join("target/test-plugins").display()
    );
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    build_plugins()?;
    let root = root();
    // The plugins' logic, natively: the shared WHM logic, the XML reader, Plesk.
    run(cargo().current_dir(root.join("plugins")).args([
        "test",
        "-p",
        "panelink-whm",
        "-p",
        "panelink-xml",
        "-p",
        "panelink-plesk",
        "--target",
        &host_triple()?,
    ]))?;
    run(cargo()
        .current_dir(&root)
        .args(["test", "--workspace"])
        .args(extra))?;
    Ok(())
}

fn lint() -> Result<()> {
    ensure_wasm_target()?;
    let root = root();
    run(cargo().current_dir(&root).args(["fmt", "--all", "--check"]))?;
    run(cargo()
        .current_dir(root.join("plugins"))
        .args(["fmt", "--all", "--check"]))?;
    run(cargo().current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().current_dir(root.join("plugins")).args([
        "clippy",
        "--workspace",
        "--release",
        "--target",
        WASM_TARGET,
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().current_dir(root.join("plugins")).args([
        "clippy",
        "-p",
        "panelink-whm",
        "-p",
        "panelink-xml",
        "-p",
        "panelink-plesk",
        "--all-targets",
        "--target",
        &host_triple()?,
        "--",
        "-D",
        "warnings",
    ]))?;
    // The API docs build without broken links.
    run(cargo()
        .current_dir(&root)
        .env("RUSTDOCFLAGS", "-D warnings")
        .args(["doc", "--workspace", "--no-deps"]))?;
    Ok(())
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV did not name the host triple")
}

fn bench(extra: &[String]) -> Result<()> {
    build_plugins()?;
    run(cargo()
        .current_dir(root())
        .args([
            "run",
            "--release",
            "-p",
            "panelink-tests",
            "--bin",
            "bench",
            "--",
        ])
        .args(extra))
}

fn demo(extra: &[String]) -> Result<()> {
    build_plugins()?;
    run(cargo()
        .current_dir(root())
        .args([
            "run",
            "--release",
            "-p",
            "panelink-tests",
            "--bin",
            "demo",
            "--",
        ])
        .args(extra))
}
