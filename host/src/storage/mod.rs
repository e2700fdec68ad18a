//! Storage: the only module that writes SQL.
//!
//! [`Db`] is a pool on SQLite (the embedded default: WAL, foreign keys on, a 10 s busy timeout) or on
//! PostgreSQL (several `panelink serve` processes may share one), chosen by the URL's scheme at
//! run time through sqlx's `Any` driver, so every query is written once. Queries stick to the
//! SQL both dialects share: `$1`-style parameters (SQLite reads `$N` as parameter N), `RETURNING`,
//! `CAST(… AS BIGINT)`, `TRUE`/`FALSE`; timestamps are BIGINT milliseconds written by the
//! application, never `now()`; booleans are read with `flag` (INTEGER 0/1 in SQLite).
//!
//! Migrations are one set per backend (`host/migrations/sqlite`, `host/migrations/postgres`):
//! the DDL for identity columns and blobs differs between the two (`INTEGER PRIMARY KEY
//! AUTOINCREMENT` vs `GENERATED … AS IDENTITY`, `BLOB` vs `BYTEA`), and keeping each file plain
//! SQL of its dialect is easier to review than SQL generated from one template. Both sets carry the
//! same numbers and the same tables; a new migration is added to both (`0002_…` and up are free).
//! They are applied by [`Db::migrate`] (`panelink migrate`, and `serve` at start); on PostgreSQL
//! sqlx takes an advisory lock, so nodes starting together do not race.
//!
//! Submodules add query functions to [`Db`] per area: [`admins`] (roles, admins, API tokens, the
//! audit log), [`servers`], [`clients`] (clients, their users, services), [`apps`] (applications,
//! link settings, the application log), [`plugins`] (plugin versions), [`sync`] (the change
//! outbox, syncs and units, leases, the account record: the engine's vocabulary of
//! [`crate::sync_port`], stored), [`credentials`] (per-service single sign-on credentials),
//! [`sso`] (access tokens, portal sessions, the client activity log).
//!
//! A write that needs pushing to the panels stores its [`crate::sync_port::Change`] in the
//! outbox (`sync_changes`) in its own transaction and returns its
//! [`crate::sync_port::ChangeId`]; the caller hands that to the sync engine.
//!
//! Secrets: server API tokens are sealed with [`crate::crypto::SecretBox`] on the way in and only
//! come out as [`Secret`] through [`Db::server_target`]; no storage type holds a plaintext secret.
//! Storage types are plain structs, not `Serialize`: only `api` knows JSON.
//!
//! Every change an admin makes is written with an [`Actor`] and recorded in the audit log in the
//! same transaction. Transactions that write start with `Db::begin_write` (on SQLite
//! `BEGIN IMMEDIATE`, so writers wait for each other instead of failing).

pub mod admins;
pub mod apps;
pub mod clients;
pub mod credentials;
mod peers;
pub mod plugins;
pub mod servers;
pub mod sso;
pub mod sync;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Row};

use crate::adapter::Secret;
use crate::crypto::SecretBox;

pub use admins::{Admin, AdminPatch, AdminToken, AuditEntry, Principal, Role};
pub use apps::{Application, LogEntry, NewLogEntry};
pub use clients::{
    Client, ClientPatch, ClientUser, NewClient, NewService, Service, ServiceFilter, ServicePatch,
};
pub use credentials::CredentialCheck;
pub use plugins::{NewPluginVersion, PluginSource, PluginState, PluginVersion};
pub use servers::{NewServer, Server, ServerCounts, ServerPatch};
pub use sso::{
    AccountState, ActivityEntry, ActivityOutcome, NewActivity, NewPortalSession, NewSsoToken,
    OwnerState, PortalSession, RedeemWrites, SsoSubject, TokenInfo, TokenLookup,
};
pub use sync::{NewSync, PendingChange};

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing (named) does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The acting admin may not do this (a permission they do not hold, their own role).
    #[error("{0}")]
    Forbidden(String),
    /// The change conflicts with stored data (a duplicate, or something still in use).
    #[error("{0}")]
    Conflict(String),
    /// A stored secret could not be decrypted.
    #[error(transparent)]
    Secret(#[from] crate::crypto::Error),
    /// A change of where a server is (hostname, port, TLS) without its API token again.
    #[error(
        "changing a server's hostname, port or TLS setting requires its API token again, in \
         the same change"
    )]
    TokenRequired,
    /// A server's stored API token cannot be used for where the server is now.
    #[error(
        "the stored API token of server {server} cannot be used: {reason}; give the server's \
         API token again"
    )]
    ServerToken {
        /// The server.
        server: i64,
        /// Why.
        reason: String,
    },
    /// The database said no, or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value is not one this version understands.
    #[error("unexpected stored value: {0}")]
    Corrupt(String),
    /// The database URL is not usable.
    #[error("bad database_url: {0}")]
    Url(String),
    /// The group-commit writer stopped (the runtime is shutting down).
    #[error("the database writer stopped")]
    WriterGone,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The database engine behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Who makes a change: recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The admin, when an admin made it.
    pub admin_id: Option<i64>,
    /// The admin's e-mail, `cli` or `system`.
    pub name: String,
}

impl Actor {
    /// An admin through the API.
    pub fn admin(id: i64, email: &str) -> Self {
        Self {
            admin_id: Some(id),
            name: email.to_owned(),
        }
    }

    /// The `panelink` command line.
    pub fn cli() -> Self {
        Self {
            admin_id: None,
            name: "cli".into(),
        }
    }

    /// The host itself (start-up, the sync engine).
    pub fn system() -> Self {
        Self {
            admin_id: None,
            name: "system".into(),
        }
    }
}

/// The database: a connection pool plus the box that seals secrets. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    secrets: Arc<SecretBox>,
    sso_writes: Arc<writer::Writer<sso::SsoWrite>>,
    /// Where write transactions begin (see [`WriteTurn`]).
    write_turn: WriteTurn,
    /// Lifetime of the admin API tokens it issues; `None`: no expiry.
    admin_token_ttl: Option<Duration>,
    /// The other hosts sharing the database (see [`Db::tell_peers`]).
    peers: Arc<peers::Peers>,
}

/// Where this process's write transactions begin. On SQLite: one connection that every write
/// transaction uses, and the fair queue in front of it ([`WriteTx`]); on PostgreSQL, which has
/// concurrent writers: the pool, without a queue.
///
/// One SQLite connection, because SQLite drops a connection's whole page cache when it sees that
/// another connection wrote: with writes spread over the pool, each write transaction began
/// with a cold cache and read the pages it rewrote through system calls. Its own commits keep
/// the writer's cache valid, so a sync's read-change-write of account records stays in memory.
#[derive(Clone)]
pub(crate) struct WriteTurn {
    /// SQLite: a pool of exactly one connection, kept open. PostgreSQL: the pool.
    connection: AnyPool,
    /// SQLite only: the queue of this process's writers.
    turn: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl WriteTurn {
    /// Begin a write transaction. On SQLite: in this process's turn (taken first), then
    /// `BEGIN IMMEDIATE`, so that a read-then-write transaction never fails to upgrade with
    /// "database is locked".
    pub(crate) async fn begin(&self) -> Result<WriteTx> {
        Ok(match &self.turn {
            Some(turn) => {
                let turn = turn.clone().lock_owned().await;
                WriteTx {
                    tx: Some(self.connection.begin_with("BEGIN IMMEDIATE").await?),
                    turn: Some(turn),
                }
            }
            None => WriteTx {
                tx: Some(self.connection.begin().await?),
                turn: None,
            },
        })
    }
}

/// A write transaction ([`Db::begin_write`]): the transaction's connection, and on SQLite this
/// process's turn to write, handed on only after commit or rollback.
///
/// SQLite has one writer at a time; a writer that finds the lock taken sleeps in SQLite's busy
/// handler in steps of 1, 2, 5 … 100 ms, however soon the lock is free again. With many sync
/// workers committing a batch each, those sleeps were a large part of a sync's time. Writers of
/// this process now queue on an async mutex first and are woken the moment the previous one
/// commits; the busy handler only remains for writers outside the process and for single
/// statements outside transactions.
pub(crate) struct WriteTx {
    /// `Some` until committed.
    tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// Commit, then hand the turn on.
    pub(crate) async fn commit(mut self) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
        }
        Ok(())
    }
}

impl Drop for WriteTx {
    /// A transaction given up (an error, or its future dropped mid-way) is rolled back before
    /// the turn goes to the next writer: dropped as it is, sqlx would roll it back only when
    /// the connection is next used, and until then SQLite's lock would stay taken while the
    /// next writer waited for it in the busy handler, holding the turn.
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let turn = self.turn.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = tx.rollback().await {
                        tracing::warn!(error = %e, "rolling back an abandoned write failed");
                    }
                    drop(turn);
                });
            }
            Err(_) => drop((tx, turn)),
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.tx.as_ref().expect("a WriteTx is open until committed")
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.tx.as_mut().expect("a WriteTx is open until committed")
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish()
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The `VALUES` rows of a many-row statement: `rows` groups of `columns` placeholders, numbered
/// from `first` on PostgreSQL. SQLite gets anonymous `?` (bound in order of appearance): with
/// numbered ones sqlx resolves each parameter's name by a linear scan in SQLite, quadratic in
/// the statement's size (a tenth of a full sync's CPU).
pub(crate) fn placeholder_rows(
    backend: Backend,
    first: usize,
    rows: usize,
    columns: usize,
) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ",(" });
        for column in 0..columns {
            if column > 0 {
                sql.push(',');
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(first + row * columns + column).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// SQLite's WAL checkpoints, off the write path: a passive checkpoint (it never blocks readers
/// or the writer) every quarter second, until the pool is closed.
async fn checkpoints(pool: AnyPool) {
    let mut every = tokio::time::interval(Duration::from_millis(250));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "SQLite checkpoint failed");
        }
    }
}

/// The backend of a connection.
pub(crate) fn backend_of(conn: &AnyConnection) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("postgresql") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

/// Milliseconds since the Unix epoch, the stored form of every timestamp.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Db {
    /// Connect (no migration). `sqlite://path?mode=rwc` creates the file.
    pub async fn connect(url: &str, secrets: Arc<SecretBox>) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(Error::Url(
                "expected sqlite://… or postgres://… (scheme not supported)".into(),
            ));
        };
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| Error::Url(e.to_string().replace(url, "<database_url>")))?;
        // sqlx's SQLite connections already enforce foreign keys and wait up to 5 s on a busy
        // database; WAL is a property of the database file, switched on once below.
        let max_connections = match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        };
        let pool_options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Every connection waits on a busy database rather than failing, and
                        // runs in WAL mode (readers never block the one writer).
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        // Checkpoints (the one step that syncs the database file) run in the
                        // background (see `checkpoints`), not in whichever commit crosses the
                        // threshold: that commit's caller would wait for an fsync. This is only
                        // the safety net should the background task fall behind.
                        sqlx::query("PRAGMA wal_autocheckpoint = 16384")
                            .execute(&mut *conn)
                            .await?;
                        // A page cache of up to 64 MiB per connection (the default is 2 MiB):
                        // a sync reads and rewrites the record of every account of a server,
                        // and with the default those pages were read again through system
                        // calls on every batch. Memory is taken only as pages are used.
                        sqlx::query("PRAGMA cache_size = -65536")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            });
        let pool = pool_options
            .clone()
            .max_connections(max_connections)
            .connect_with(options.clone())
            .await?;
        let write_turn = match backend {
            Backend::Sqlite => WriteTurn {
                connection: pool_options
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(options)
                    .await?,
                turn: Some(Arc::default()),
            },
            Backend::Postgres => WriteTurn {
                connection: pool.clone(),
                turn: None,
            },
        };
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
            let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&pool)
                .await?;
            if foreign_keys != 1 {
                return Err(Error::Url(
                    "SQLite foreign keys could not be enabled".into(),
                ));
            }
        }
        if backend == Backend::Sqlite {
            tokio::spawn(checkpoints(pool.clone()));
        }
        Ok(Self {
            pool,
            backend,
            secrets,
            sso_writes: Arc::default(),
            write_turn,
            admin_token_ttl: Some(crate::config::DEFAULT_ADMIN_TOKEN_TTL),
            peers: peers::Peers::new(backend, url),
        })
    }

    /// Apply the migrations this build carries that the database does not have yet.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        // Data the schema migrations cannot convert: secrets sealed the way of earlier versions.
        self.bind_legacy_server_tokens().await?;
        Ok(())
    }

    /// Whether every migration of this build is applied.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn is_migrated(&self) -> Result<bool> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(MAX(version) AS BIGINT) FROM _sqlx_migrations WHERE success = TRUE",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap_or(None);
        Ok(applied.unwrap_or(0) >= latest)
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Start a transaction that writes (see [`WriteTurn::begin`]).
    pub(crate) async fn begin_write(&self) -> Result<WriteTx> {
        self.write_turn.begin().await
    }

    /// The `VALUES` rows of a many-row statement: see [`placeholder_rows`].
    pub(crate) fn placeholder_rows(&self, rows: usize, columns: usize) -> String {
        placeholder_rows(self.backend, 1, rows, columns)
    }

    /// The pool, for query functions of other storage submodules.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Close every connection (tests close before dropping their database).
    pub async fn close(&self) {
        self.pool.close().await;
        self.write_turn.connection.close().await;
    }

    /// Decrypt a sealed value of this purpose.
    pub(crate) fn open_secret(&self, context: &str, sealed: &str) -> Result<Secret> {
        Ok(self.secrets.open(context, sealed)?)
    }

    /// Seal a value for this purpose.
    pub(crate) fn seal_secret(&self, context: &str, plaintext: &Secret) -> String {
        self.secrets.seal(context, plaintext.expose())
    }

    /// The box that seals secrets.
    pub(crate) fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    /// Every row of every table as text, in a stable order: for tests that check a refused
    /// request changed nothing, and for diagnostics. Blobs show as their length.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn snapshot(&self) -> Result<Vec<String>> {
        const TABLES: &[&str] = &[
            "roles",
            "role_permissions",
            "admins",
            "api_tokens",
            "servers",
            "clients",
            "client_users",
            "client_user_permissions",
            "services",
            "applications",
            "link_settings",
            "app_log",
            "plugin_versions",
            "audit_log",
        ];
        let mut out = Vec::new();
        for table in TABLES {
            let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
                .fetch_all(&self.pool)
                .await?;
            for row in rows {
                let cells: Vec<String> = (0..row.len()).map(|i| cell_text(&row, i)).collect();
                out.push(format!("{table}: {}", cells.join(" | ")));
            }
        }
        Ok(out)
    }
}

#[cfg(any(test, feature = "test-support"))]
fn cell_text(row: &AnyRow, i: usize) -> String {
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map_or("NULL".into(), |v| v.to_string());
    }
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v.map_or("NULL".into(), |v| format!("{v:?}"));
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
        return v.map_or("NULL".into(), |v| v.to_string());
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
        return v.map_or("NULL".into(), |v| format!("blob({} bytes)", v.len()));
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return v.map_or("NULL".into(), |v| v.to_string());
    }
    "?".into()
}

/// A boolean column: BOOLEAN in PostgreSQL, INTEGER 0/1 in SQLite (sqlx's `Any` driver cannot
/// read SQLite columns declared BOOLEAN, so the SQLite migrations declare them INTEGER).
pub(crate) fn flag(row: &AnyRow, column: &str) -> Result<bool> {
    match row.try_get::<bool, _>(column) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<i64, _>(column)? != 0),
    }
}

/// A nullable boolean column (see [`flag`]).
pub(crate) fn opt_flag(row: &AnyRow, column: &str) -> Result<Option<bool>> {
    match row.try_get::<Option<bool>, _>(column) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<Option<i64>, _>(column)?.map(|v| v != 0)),
    }
}

/// Parse a stored spelling with a model `parse` function.
pub(crate) fn parsed<T>(
    raw: String,
    what: &str,
    parse: impl Fn(&str) -> std::result::Result<T, String>,
) -> Result<T> {
    parse(&raw).map_err(|why| Error::Corrupt(format!("{what} {raw:?}: {why}")))
}

/// Map a unique or foreign-key violation to a conflict with this message.
pub(crate) fn conflict_on_violation(e: sqlx::Error, message: impl Into<String>) -> Error {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() || db.is_foreign_key_violation() => {
            Error::Conflict(message.into())
        }
        _ => Error::Database(e),
    }
}

/// Record an admin change in the audit log (inside the change's transaction). `detail` must not
/// hold a secret.
pub(crate) async fn audit(
    conn: &mut AnyConnection,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, admin_id, actor, action, target, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now_ms())
    .bind(actor.admin_id)
    .bind(&actor.name)
    .bind(action)
    .bind(target)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every write transaction runs on the one writer connection, not on the pool: it proceeds
    /// while every pooled connection is taken, and what is private to a connection (a temporary
    /// table) made in one write transaction is there in the next and on no pooled connection.
    #[tokio::test]
    async fn write_transactions_share_one_connection_apart_from_the_pool() {
        let dir = std::env::temp_dir().join(format!(
            "panelink-writer-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("w.db").display());
        let secrets = SecretBox::from_material(
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0",
        )
        .unwrap();
        let db = Db::connect(&url, Arc::new(secrets)).await.unwrap();
        let mut pooled = Vec::new();
        while let Some(conn) = db.pool().try_acquire() {
            pooled.push(conn);
        }
        for _ in pooled.len()..db.pool().options().get_max_connections() as usize {
            pooled.push(db.pool().acquire().await.unwrap());
        }

        let write = |sql: &'static str| async {
            let mut tx = db.begin_write().await.unwrap();
            sqlx::query(sql).execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        };
        write("CREATE TEMP TABLE writer_mark (x INTEGER)").await;
        for _ in 0..3 {
            write("INSERT INTO writer_mark VALUES (1)").await;
        }
        for conn in &mut pooled {
            let seen = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM writer_mark")
                .fetch_one(&mut **conn)
                .await;
            assert!(seen.is_err(), "a pooled connection saw the writer's table");
        }
        drop(pooled);
        db.close().await;
        std::fs::remove_dir_all(&dir).ok();
    }
}
