//! Real `panelink serve` processes, for the tests that need the binary (crash, hot swap, the
//! compile cache across restarts).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One host's configuration: its own port and data directory, the given database, the shipped
/// plugins, and any more `PANELINK_*` variables.
#[derive(Debug, Clone)]
pub struct Process {
    bin: PathBuf,
    data_dir: PathBuf,
    /// The port it listens on.
    pub port: u16,
    env: Vec<(String, String)>,
}

/// A running `panelink serve`, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Serve {
    child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// A host of `bin` keeping its files in `data_dir`, on `database_url`.
    pub fn new(bin: &Path, data_dir: &Path, database_url: &str) -> Self {
        Self {
            bin: bin.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            port: free_port(),
            env: vec![("PANELINK_DATABASE_URL".into(), database_url.into())],
        }
    }

    /// The same with `PANELINK_<key>` set.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((format!("PANELINK_{key}"), value.into()));
        self
    }

    /// Its base URL.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `panelink` with this host's configuration.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("PANELINK_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("PANELINK_DATA_DIR", &self.data_dir)
            .env("PANELINK_PLUGIN_DIR", panelink_tests::plugin_dir())
            .env("PANELINK_LOG_LEVEL", "warn")
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null());
        cmd
    }

    /// `panelink admin create`: a Full Administrator's API token.
    pub fn admin_token(&self, email: &str) -> String {
        let out = self
            .command()
            .args(["admin", "create", "--email", email])
            .output()
            .expect("admin create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("token line")
            .trim()
            .to_owned()
    }

    /// Start `panelink serve` and wait (up to 60 s) until `/readyz` answers 200. Its log goes
    /// to `serve.log` in the data directory.
    pub async fn start(&self) -> Serve {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("serve.log"))
            .expect("log file");
        let child = self
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn panelink serve");
        let serve = Serve { child };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.base())).send().await
                && r.status() == 200
            {
                return serve;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "panelink never got ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of one `/metrics` sample (`name{labels}` exactly as rendered), 0 when absent.
    pub async fn metric(&self, sample: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.base()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0, |value| value.trim().parse().expect("a whole number"))
    }
}
