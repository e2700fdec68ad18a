//! Project automation (matklad's xtask pattern): `cargo xtask <task>`.
//!
//! - `build-plugins`: build the plugin components (installing the wasm32-wasip2 target when
//!   missing) and lay them out where the host and the tests look for them.
//! - `test`: build the plugins, then run every test of both workspaces, then the browser tests.
//! - `lint`: `cargo fmt --check` and clippy with `-D warnings` on both workspaces.
//! - `ci`: lint, then test: what `.ci/run` runs.
//! - `bench`: the benchmarks (release build).
//! - `demo`: build everything, start simulated panel servers and `panelink serve` on SQLite.
//! - `browser-test`: the admin console in headless Chromium (Playwright, `tests/browser/`)
//!   against the demo's setup (the same program, started with `--ready-file`).
//! - `screenshots`: the same setup; writes a PNG of each console page to `docs/screenshots/`.
//!
//! The demo and the browser tests run the dev-profile `demo` binary that `cargo test --workspace`
//! builds anyway (it is a binary of the test crate), so after the test command they start at once
//! instead of waiting for a release build.
//! - `new-plugin NAME [--dir DIR]`: a new plugin crate from the vendor template.

mod nested_cargo;
mod new_plugin;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use nested_cargo::cargo;

const WASM_TARGET: &str = "wasm32-wasip2";
/// Plugins that ship: laid out in `target/plugins/`, the host's default plugin directory.
const SHIPPED: &[&str] = &["cpanel", "wpsquared", "plesk"];
/// Purpose-built test components: laid out in `target/test-plugins/`.
const TEST_ONLY: &[&str] = &["misbehave", "sleepy", "specimen"];

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
        "browser-test" => browser_test(rest),
        "screenshots" => screenshots(),
        "new-plugin" => new_plugin::run(&root(), rest).map(drop),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 build-plugins  build the wasm plugins into target/plugins and target/test-plugins\n  \
                 test           build the plugins and run every test (both workspaces)\n  \
                 lint           cargo fmt --check and clippy -D warnings on both workspaces, cargo doc -D warnings\n  \
                 ci             lint, then test\n  \
                 bench          run the benchmarks (release)\n  \
                 demo           run Panelink on SQLite against simulated panel servers\n  \
                 browser-test   the admin console's tests in headless Chromium (Playwright)\n  \
                 screenshots    write a PNG of each admin console page to docs/screenshots\n  \
                 new-plugin     NAME [--dir DIR]: a new plugin crate from the vendor template"
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
    browser_test(&[])
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
    let write = extra.iter().any(|a| a == "--write");
    let names: Vec<&String> = extra.iter().filter(|a| *a != "--write").collect();
    let mut cmd = cargo();
    cmd.current_dir(root())
        .args([
            "run",
            "--release",
            "-p",
            "panelink-tests",
            "--bin",
            "bench",
            "--",
        ])
        .args(&names);
    if !write {
        return run(&mut cmd);
    }
    // Shown as it runs, and kept for docs/benchmarks.md.
    eprintln!("$ {cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {cmd:?}"))?;
    let mut output = String::new();
    if let Some(stdout) = child.stdout.take() {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            output.push_str(&line);
            output.push('\n');
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    let path = root().join("docs/benchmarks.md");
    // The page's hand-written history (figures before and after each change) stays below the
    // run's output.
    let history = std::fs::read_to_string(&path)
        .ok()
        .and_then(|page| page.find(HISTORY).map(|at| page[at..].to_owned()))
        .unwrap_or_default();
    let mut page = benchmarks_page(&names, &output)?;
    if !history.is_empty() {
        page.push('\n');
        page.push_str(&history);
    }
    std::fs::write(&path, page)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// `docs/benchmarks.md`: the machine, the command to measure again, and the figures.
/// The heading of `docs/benchmarks.md`'s hand-written part, which `bench --write` keeps.
const HISTORY: &str = "## History";

fn benchmarks_page(names: &[&String], output: &str) -> Result<String> {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let args: String = names.iter().map(|n| format!(" {n}")).collect();
    Ok(format!(
        "# Benchmarks\n\n\
         Written by `cargo xtask bench --write{args}` on {date}: {cores} cores ({cpu}), release build.\n\
         Measure again with the same command; `cargo xtask bench NAME` runs one benchmark without\n\
         writing this page. What each benchmark does, and its targets, are in the module documentation\n\
         of `tests/src/bin/bench.rs` and `tests/src/bench_*.rs`. Where panel simulators share the\n\
         machine, the host's own CPU is reported apart from theirs.\n\n\
         ```text\n{output}```\n"
    ))
}

fn demo(extra: &[String]) -> Result<()> {
    let demo = build_demo()?;
    run(Command::new(demo).current_dir(root()).args(extra))
}

/// Build the plugins and the `demo` binary the way `cargo test --workspace` does (same profile,
/// same features: after the test command this builds nothing), and return its path.
fn build_demo() -> Result<PathBuf> {
    build_plugins()?;
    let root = root();
    run(cargo()
        .current_dir(&root)
        .args(["test", "--workspace", "--no-run"]))?;
    let demo = target_dir(&root)
        .join("debug")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    if !demo.exists() {
        bail!("{} was not built", demo.display());
    }
    Ok(demo)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Debian's Chromium and the Playwright package of `tests/browser`, installed when missing.
fn browser_tools() -> Result<PathBuf> {
    if !Path::new(CHROMIUM).exists() {
        let root_user = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root_user {
            bail!(
                "the browser tests need Debian's chromium: run `sudo apt-get install -y chromium`"
            );
        }
        run(Command::new("apt-get").arg("update"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let dir = root().join("tests/browser");
    let installed = dir.join("node_modules/.package-lock.json");
    let stale = match (
        std::fs::metadata(&installed).and_then(|m| m.modified()),
        std::fs::metadata(dir.join("package-lock.json")).and_then(|m| m.modified()),
    ) {
        (Ok(installed), Ok(lock)) => installed < lock,
        _ => true,
    };
    if stale {
        run(Command::new("npm")
            .current_dir(&dir)
            .args(["ci", "--no-audit", "--no-fund"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))?;
    }
    Ok(dir)
}

/// A running demo (see `tests/src/bin/demo.rs`), stopped when dropped.
struct RunningDemo {
    child: std::process::Child,
    ready: PathBuf,
    _dir: TempDir,
}

impl RunningDemo {
    /// Start the demo on a free port with fresh data and `latency_ms` of panel latency, and wait
    /// until it has written its ready file (everything seeded).
    fn start(latency_ms: u64) -> Result<Self> {
        let demo = build_demo()?;
        let dir = TempDir::new("panelink-browser")?;
        let ready = dir.path().join("ready.json");
        let log = std::fs::File::create(dir.path().join("demo.log"))?;
        eprintln!("demo log: {}", dir.path().join("demo.log").display());
        let child = Command::new(demo)
            .current_dir(root())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--latency-ms",
                &latency_ms.to_string(),
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--ready-file")
            .arg(&ready)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the demo")?;
        let mut running = RunningDemo {
            child,
            ready,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while !running.ready.exists() {
            if let Some(status) = running.child.try_wait()? {
                bail!("the demo stopped before it was ready ({status}); see its log above");
            }
            if std::time::Instant::now() > deadline {
                bail!("the demo was not ready within 300 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(running)
    }
}

impl Drop for RunningDemo {
    fn drop(&mut self) {
        // SIGTERM lets it shut down in order; it is killed if it has not within 10 s.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run one Playwright project of `tests/browser` against a fresh demo.
fn playwright(project: &str, latency_ms: u64, extra: &[String]) -> Result<()> {
    let dir = browser_tools()?;
    let demo = RunningDemo::start(latency_ms)?;
    run(Command::new("npx")
        .current_dir(&dir)
        .args(["playwright", "test", "--project", project])
        .args(extra)
        .env("PANELINK_DEMO", &demo.ready)
        .env("PANELINK_CHROMIUM", CHROMIUM)
        .env("PANELINK_SCREENSHOTS", root().join("docs/screenshots")))
}

fn browser_test(extra: &[String]) -> Result<()> {
    // Each panel request takes 200 ms: a sync lasts long enough to be seen under way.
    playwright("console", 200, extra)
}

fn screenshots() -> Result<()> {
    playwright("screenshots", 0, &[])
}
