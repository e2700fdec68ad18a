//! The benchmarks' databases: a file of SQLite in a temporary directory, or a fresh database on
//! the PostgreSQL server at `PANELINK_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`), dropped again when the benchmark is done with it.

use anyhow::Context as _;
use sqlx::Connection as _;

/// A benchmark's database; `drop_now` removes a PostgreSQL one (SQLite's goes with its
/// directory).
pub struct BenchDb {
    /// The URL the host connects to.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl BenchDb {
    /// A fresh SQLite database.
    pub fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        );
        Ok(Self {
            url,
            _dir: Some(dir),
            postgres: None,
        })
    }

    /// A fresh PostgreSQL database, or `None` when `PANELINK_TEST_POSTGRES=off`. The host talks
    /// to it in the clear (`sslmode=disable`): on loopback, TLS would only measure rustls.
    pub async fn postgres() -> anyhow::Result<Option<Self>> {
        let base = std::env::var("PANELINK_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
        if base == "off" {
            return Ok(None);
        }
        let base = base.trim_end_matches('/').to_owned();
        let name = format!("panelink_bench_{}", hex::encode(rand::random::<[u8; 6]>()));
        let admin_url = format!("{base}/postgres");
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .with_context(|| {
                format!("connecting to {admin_url} (set PANELINK_TEST_POSTGRES=off to skip)")
            })?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        Ok(Some(Self {
            url: format!("{base}/{name}?sslmode=disable"),
            _dir: None,
            postgres: Some((admin_url, name)),
        }))
    }

    /// Remove the database (PostgreSQL; the host's pools must be closed first).
    pub async fn drop_now(self) -> anyhow::Result<()> {
        if let Some((admin_url, name)) = &self.postgres {
            let mut admin = sqlx::PgConnection::connect(admin_url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
            admin.close().await?;
        }
        Ok(())
    }
}

/// CPU time (user + system) of the processes named `name` on this machine, e.g. `postgres`:
/// a database server's share of a benchmark, reported apart from the host's.
pub fn processes_cpu_time(name: &str) -> std::time::Duration {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return std::time::Duration::ZERO;
    };
    procs
        .flatten()
        .filter(|p| {
            p.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|p| std::fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|p| stat_cpu(&std::fs::read_to_string(p.path().join("stat")).unwrap_or_default()))
        .sum()
}

/// User + system time from a `/proc/.../stat` text (clock ticks of 1/100 s).
pub fn stat_cpu(stat: &str) -> std::time::Duration {
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    std::time::Duration::from_millis((ticks(11) + ticks(12)) * 10)
}
