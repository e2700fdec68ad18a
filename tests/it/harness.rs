//! Fresh databases and in-process API apps for the storage and API tests.
//!
//! Every such test runs on SQLite and on PostgreSQL: [`on_both!`] turns `async fn name(backend)`
//! into `name::sqlite` and `name::postgres`. Each run gets its own database: SQLite a file in a
//! temporary directory; PostgreSQL `CREATE DATABASE panelink_t_<random>` on the server named by
//! `PANELINK_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`), dropped when the test
//! ends. An unreachable server fails the PostgreSQL variants with a clear message; set
//! `PANELINK_TEST_POSTGRES=off` to skip them on purpose.
//!
//! [`TestApp`] is the admin API from `panelink::api::app(state)`, called with
//! `tower::ServiceExt::oneshot`, on a fresh database with the real cPanel and WP Squared plugins
//! (compiled once per test process) and a Full Administrator token.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use panelink::api::{self, AppState, Limits};
use panelink::catalog::{Catalog, Policy};
use panelink::crypto::SecretBox;
use panelink::runtime::{Plugin, Plugins, Runtime};
use panelink::storage::{Actor, Db};
use panelink::sync::{SyncError, SyncRequests, work_for};
use panelink::sync_port::{ChangeId, Events, SyncDetail, SyncRequest, SyncState, SyncSummary};
use serde_json::Value;
use sqlx::Connection;
use tower::ServiceExt;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

fn postgres_base() -> Option<String> {
    let value =
        std::env::var("PANELINK_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    (value != "off").then(|| value.trim_end_matches('/').to_owned())
}

/// Run `f` on a fresh current-thread runtime in another thread (for set-up and clean-up that
/// must not depend on the test's runtime).
fn on_own_runtime<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(f)
    })
    .join()
    .expect("helper thread panicked")
}

impl Backend {
    /// `Some(Postgres)` when PostgreSQL tests are on (panics when the server is unreachable),
    /// `None` when `PANELINK_TEST_POSTGRES=off`.
    pub fn postgres() -> Option<Backend> {
        static REACHABLE: OnceLock<Result<(), String>> = OnceLock::new();
        let base = match postgres_base() {
            Some(base) => base,
            None => {
                eprintln!("PANELINK_TEST_POSTGRES=off: skipping the PostgreSQL variant");
                return None;
            }
        };
        let reachable = REACHABLE.get_or_init(|| {
            let url = format!("{base}/postgres");
            on_own_runtime(async move {
                tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    sqlx::PgConnection::connect(&url),
                )
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|r| r.map(drop).map_err(|e| e.to_string()))
            })
        });
        if let Err(e) = reachable {
            panic!(
                "PostgreSQL is not reachable at {base} ({e}). Start it (CI does), point \
                 PANELINK_TEST_POSTGRES at one (postgres://user@host:port), or set \
                 PANELINK_TEST_POSTGRES=off to skip the PostgreSQL variants."
            );
        }
        Some(Backend::Postgres)
    }
}

/// Declare tests that run on both backends: for each `async fn name(backend: Backend)`, a module
/// `name` with `#[tokio::test]`s `sqlite` and `postgres`.
macro_rules! on_both {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                super::$test($crate::harness::Backend::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(backend) = $crate::harness::Backend::postgres() {
                    super::$test(backend).await
                }
            }
        }
    )+};
}
pub(crate) use on_both;

/// A fresh database (empty, or migrated with [`TestDb::migrated`]); dropped with the value.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new database on `backend`.
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
                TestDb {
                    url,
                    postgres: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Self::postgres(None).await,
        }
    }

    /// A new database on `backend` with the migrations applied. On PostgreSQL it is a copy of a
    /// migrated template (see [`postgres_template`]), which saves migrating every test's database.
    pub async fn migrated(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => Self::new(backend).await,
            Backend::Postgres => Self::postgres(Some(postgres_template())).await,
        }
    }

    async fn postgres(template: Option<&str>) -> TestDb {
        let base = postgres_base().expect("PostgreSQL tests are off");
        let name = format!("panelink_t_{}", hex::encode(rand::random::<[u8; 6]>()));
        let admin_url = format!("{base}/postgres");
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {admin_url}: {e}"));
        let template = template
            .map(|t| format!(" TEMPLATE {t}"))
            .unwrap_or_default();
        sqlx::query(&format!("CREATE DATABASE {name}{template}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}{template}: {e}"));
        admin.close().await.ok();
        TestDb {
            // Commits need not wait for the disk in tests (each test's database is thrown
            // away); this keeps the PostgreSQL variants fast on a busy machine.
            url: format!("{base}/{name}?options=-c%20synchronous_commit%3Doff"),
            postgres: Some((admin_url, name)),
            _dir: None,
        }
    }
}

/// The name of a PostgreSQL database holding exactly the current migrations, created once and
/// kept between runs: `panelink_tpl_<hash of host/migrations/postgres>`. It is built under a
/// temporary name and renamed when complete, so a concurrent or interrupted run never sees a
/// half-migrated template; a changed migration set gets a new name.
fn postgres_template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = panelink_tests::repo_root().join("host/migrations/postgres");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("host/migrations/postgres")
            .map(|e| e.expect("migration file").path())
            .collect();
        files.sort();
        let mut hasher = std::hash::DefaultHasher::new();
        for file in &files {
            std::hash::Hash::hash(&file.file_name(), &mut hasher);
            std::hash::Hash::hash(&std::fs::read(file).expect("migration file"), &mut hasher);
        }
        let name = format!("panelink_tpl_{:016x}", std::hash::Hasher::finish(&hasher));
        let template = name.clone();
        on_own_runtime(async move {
            let base = postgres_base().expect("PostgreSQL tests are off");
            let admin_url = format!("{base}/postgres");
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("connect");
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&template)
                    .fetch_optional(&mut admin)
                    .await
                    .expect("pg_database");
            if exists.is_some() {
                return;
            }
            let building = format!("{template}_b{}", hex::encode(rand::random::<[u8; 4]>()));
            sqlx::query(&format!("CREATE DATABASE {building}"))
                .execute(&mut admin)
                .await
                .expect("CREATE DATABASE");
            let secrets = SecretBox::from_material(TEST_SECRET_KEY).expect("secret box");
            let db = Db::connect(&format!("{base}/{building}"), Arc::new(secrets))
                .await
                .expect("connect to the template");
            db.migrate().await.expect("migrate the template");
            db.close().await;
            let renamed = sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {template}"))
                .execute(&mut admin)
                .await;
            if renamed.is_err() {
                // Another run finished its template first.
                let _ = sqlx::query(&format!("DROP DATABASE {building} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        });
        name
    })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            on_own_runtime(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        }
    }
}

/// The key tests seal secrets with (32 random bytes, as hex).
pub const TEST_SECRET_KEY: &str =
    "9c1e5a7f3b2d4c6e8a0f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4e5f607";

/// A migrated database on `backend`.
/// Another connection pool to a test database, as a second host would have.
pub async fn connect(test_db: &TestDb) -> Db {
    let secrets = SecretBox::from_material(TEST_SECRET_KEY).expect("secret box");
    Db::connect(&test_db.url, Arc::new(secrets))
        .await
        .expect("connect")
}

pub async fn database(backend: Backend) -> (Db, TestDb) {
    let test_db = TestDb::migrated(backend).await;
    let secrets = SecretBox::from_material(TEST_SECRET_KEY).expect("secret box");
    let db = Db::connect(&test_db.url, Arc::new(secrets))
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    (db, test_db)
}

/// The plugin runtime and the shipped plugins, compiled once per test process.
pub fn shipped_plugins() -> &'static (Runtime, Vec<Arc<Plugin>>) {
    static PLUGINS: OnceLock<(Runtime, Vec<Arc<Plugin>>)> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        on_own_runtime(async {
            let runtime = Runtime::new(panelink_tests::runtime_config()).expect("plugin runtime");
            let plugins = vec![
                panelink_tests::load(&runtime, "cpanel").await,
                panelink_tests::load(&runtime, "wpsquared").await,
            ];
            (runtime, plugins)
        })
    })
}

/// The syncs a queued change causes, as the engine decides them ([`work_for`]); the change
/// leaves the outbox without any sync being written. For stand-ins of the engine.
async fn drain_as_requests(db: &Db, change: ChangeId) -> Result<Vec<SyncRequest>, SyncError> {
    let storage = |source| SyncError::Storage {
        context: format!("stand-in draining change {}", change.0),
        source,
    };
    let Some(pending) = db.pending_change(change).await.map_err(storage)? else {
        return Ok(Vec::new());
    };
    let requests = work_for(db, &pending.change, pending.requested_by)
        .await
        .map_err(storage)?;
    db.drain_change(change, &[]).await.map_err(storage)?;
    Ok(requests)
}

/// A sync engine stand-in that turns every change into the syncs the real engine would
/// decide on ([`work_for`]), reports each as queued, and runs none, so the API's rendering of
/// syncs can be tested.
pub struct FakeEngine {
    db: Db,
    next: AtomicI64,
    syncs: Mutex<BTreeMap<i64, SyncSummary>>,
    requests: Mutex<Vec<SyncRequest>>,
}

impl FakeEngine {
    /// A stand-in reading changes from `db`.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            next: AtomicI64::new(0),
            syncs: Mutex::default(),
            requests: Mutex::default(),
        }
    }

    /// Every sync asked for so far.
    pub fn requests(&self) -> Vec<SyncRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl SyncRequests for FakeEngine {
    fn request(&self, change: ChangeId) -> BoxFuture<'_, Result<Vec<SyncSummary>, SyncError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for request in drain_as_requests(&self.db, change).await? {
                let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
                let summary = SyncSummary {
                    id,
                    application: request.application.clone(),
                    kind: request.kind,
                    state: SyncState::Queued,
                    done: 0,
                    total: 3,
                    started_at: None,
                    finished_at: None,
                };
                self.syncs.lock().unwrap().insert(id, summary.clone());
                self.requests.lock().unwrap().push(request);
                out.push(summary);
            }
            Ok(out)
        })
    }

    fn latest<'a>(
        &'a self,
        application: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncSummary>, SyncError>> {
        let latest = self
            .syncs
            .lock()
            .unwrap()
            .values()
            .rev()
            .find(|s| s.application == application)
            .cloned();
        Box::pin(async move { Ok(latest) })
    }

    fn get(&self, id: i64) -> BoxFuture<'_, Result<Option<SyncDetail>, SyncError>> {
        let detail = self
            .syncs
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .map(|summary| SyncDetail {
                summary,
                servers: Vec::new(),
            });
        Box::pin(async move { Ok(detail) })
    }

    fn syncing<'a>(&'a self, application: &'a str) -> BoxFuture<'a, Result<bool, SyncError>> {
        let syncing = self
            .syncs
            .lock()
            .unwrap()
            .values()
            .any(|s| s.application == application && s.state.is_pending());
        Box::pin(async move { Ok(syncing) })
    }
}

/// A sync engine stand-in that records the syncs each change would cause and reports none
/// (`sync: null`, unknown sync ids are 404).
pub struct RecordingSyncRequests {
    db: Db,
    requests: Mutex<Vec<SyncRequest>>,
}

impl RecordingSyncRequests {
    /// A recorder reading changes from `db`.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            requests: Mutex::default(),
        }
    }

    /// Every sync asked for so far, in order.
    pub fn requests(&self) -> Vec<SyncRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl SyncRequests for RecordingSyncRequests {
    fn request(&self, change: ChangeId) -> BoxFuture<'_, Result<Vec<SyncSummary>, SyncError>> {
        Box::pin(async move {
            let requests = drain_as_requests(&self.db, change).await?;
            self.requests.lock().unwrap().extend(requests);
            Ok(Vec::new())
        })
    }

    fn latest<'a>(
        &'a self,
        _application: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncSummary>, SyncError>> {
        Box::pin(async { Ok(None) })
    }

    fn get(&self, _id: i64) -> BoxFuture<'_, Result<Option<SyncDetail>, SyncError>> {
        Box::pin(async { Ok(None) })
    }

    fn syncing<'a>(&'a self, _application: &'a str) -> BoxFuture<'a, Result<bool, SyncError>> {
        Box::pin(async { Ok(false) })
    }
}

/// A sync engine stand-in for hosts whose tests push the links themselves: changes stay in the
/// outbox and no sync is reported.
pub struct NoSync;

impl SyncRequests for NoSync {
    fn request(&self, _change: ChangeId) -> BoxFuture<'_, Result<Vec<SyncSummary>, SyncError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn latest<'a>(
        &'a self,
        _application: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncSummary>, SyncError>> {
        Box::pin(async { Ok(None) })
    }

    fn get(&self, _id: i64) -> BoxFuture<'_, Result<Option<SyncDetail>, SyncError>> {
        Box::pin(async { Ok(None) })
    }

    fn syncing<'a>(&'a self, _application: &'a str) -> BoxFuture<'a, Result<bool, SyncError>> {
        Box::pin(async { Ok(false) })
    }
}

/// Which sync engine a [`TestApp`] gets.
pub enum Engine {
    /// [`FakeEngine`]: every request becomes a queued sync.
    Fake,
    /// The host's default: requests are recorded, no syncs reported.
    Recording,
}

/// An answer from the app.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub json: Value,
    /// The body as text.
    pub text: String,
    /// Content type.
    pub content_type: String,
}

impl Answer {
    /// `error.code` of an error body.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

/// The admin API on a fresh database.
pub struct TestApp {
    /// The state behind the router.
    pub state: AppState,
    /// The database.
    pub db: Db,
    /// A Full Administrator's token.
    pub token: String,
    /// The fake engine, when used.
    pub fake: Option<Arc<FakeEngine>>,
    /// The recorder, when used.
    pub recorder: Option<Arc<RecordingSyncRequests>>,
    router: axum::Router,
    _db: TestDb,
}

impl TestApp {
    /// With the fake sync engine.
    pub async fn new(backend: Backend) -> TestApp {
        Self::with(backend, Engine::Fake).await
    }

    /// With the chosen sync engine.
    pub async fn with(backend: Backend, engine: Engine) -> TestApp {
        Self::with_policy(backend, engine, Policy::default(), Limits::default()).await
    }

    /// With the chosen sync engine, plugin policy (trusted keys, failure policy) and limits.
    pub async fn with_policy(
        backend: Backend,
        engine: Engine,
        policy: Policy,
        limits: Limits,
    ) -> TestApp {
        let (db, test_db) = database(backend).await;
        let (runtime, plugins) = shipped_plugins();
        let catalog = Arc::new(
            Catalog::new(runtime.clone(), Arc::new(Plugins::new()), db.clone()).with_policy(policy),
        );
        catalog.adopt(plugins).await.expect("adopting plugins");
        let (sync, fake, recorder): (Arc<dyn SyncRequests>, _, _) = match engine {
            Engine::Fake => {
                let fake = Arc::new(FakeEngine::new(db.clone()));
                (fake.clone(), Some(fake), None)
            }
            Engine::Recording => {
                let recorder = Arc::new(RecordingSyncRequests::new(db.clone()));
                (recorder.clone(), None, Some(recorder))
            }
        };
        let state = AppState::new(db.clone(), catalog, sync, Events::new(), limits);
        state.set_ready(true);
        let email = panelink::model::Email::parse("root@example.com").unwrap();
        let (_, token) = db
            .create_admin(&Actor::cli(), &email, "Full Administrator")
            .await
            .expect("admin");
        TestApp {
            router: api::app(state.clone()),
            state,
            db,
            token: token.expose().to_owned(),
            fake,
            recorder,
            _db: test_db,
        }
    }

    /// Send a request; the response's body is not read (for streams).
    pub async fn router_response(&self, request: Request<Body>) -> axum::response::Response {
        self.router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible")
    }

    /// Send a request.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer {
            status,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
            content_type,
        }
    }

    /// A request with an optional bearer token and raw body (sent as the route's media type).
    pub fn request(
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Request<Body> {
        let mut builder = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            // Plugin uploads are components; everything else the API reads is JSON.
            let content_type = if path == "/api/v1/plugins" {
                "application/wasm"
            } else {
                "application/json"
            };
            builder = builder.header("content-type", content_type);
        }
        builder
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .expect("request")
    }

    /// Call as the Full Administrator with a JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call_as(&self.token.clone(), method, path, body).await
    }

    /// Call with a token and a JSON body.
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        self.send(Self::request(method, path, Some(token), body))
            .await
    }

    /// Create a role with these permissions and an admin holding it; returns the token.
    pub async fn token_with(&self, role: &str, permissions: &[&str]) -> String {
        let created = self
            .call(
                "POST",
                "/api/v1/roles",
                Some(serde_json::json!({"name": role, "permissions": permissions})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let email = format!("{}@example.com", role.to_lowercase().replace(' ', "-"));
        let admin = self
            .call(
                "POST",
                "/api/v1/admins",
                Some(serde_json::json!({"email": email, "role": role})),
            )
            .await;
        assert_eq!(admin.status, StatusCode::CREATED, "{}", admin.text);
        admin.json["token"].as_str().unwrap().to_owned()
    }

    /// Every row of the database.
    pub async fn snapshot(&self) -> Vec<String> {
        self.db.snapshot().await.expect("snapshot")
    }

    /// Create fixtures through the API: a cPanel server, a client, a user, an active service.
    pub async fn fixtures(&self) -> Fixtures {
        let server = self
            .call(
                "POST",
                "/api/v1/servers",
                Some(serde_json::json!({
                    "name": "cp1", "module": "cpanel", "hostname": "127.0.0.1", "port": 9,
                    "secure": false, "username": "root", "api_token": "FIXTURETOKEN"
                })),
            )
            .await;
        assert_eq!(server.status, StatusCode::CREATED, "{}", server.text);
        let client = self
            .call(
                "POST",
                "/api/v1/clients",
                Some(serde_json::json!({"name": "Acme", "email": "owner@acme.example"})),
            )
            .await;
        assert_eq!(client.status, StatusCode::CREATED, "{}", client.text);
        let client_id = client.json["id"].as_i64().unwrap();
        let user = self
            .call(
                "POST",
                &format!("/api/v1/clients/{client_id}/users"),
                Some(serde_json::json!({"email": "dev@acme.example", "permissions": ["sso"]})),
            )
            .await;
        assert_eq!(user.status, StatusCode::CREATED, "{}", user.text);
        let server_id = server.json["id"].as_i64().unwrap();
        let service = self
            .call(
                "POST",
                "/api/v1/services",
                Some(serde_json::json!({
                    "client_id": client_id, "server_id": server_id, "username": "acme",
                    "domain": "acme.example", "status": "active"
                })),
            )
            .await;
        assert_eq!(service.status, StatusCode::CREATED, "{}", service.text);
        Fixtures {
            server_id,
            client_id,
            user_id: user.json["id"].as_i64().unwrap(),
            service_id: service.json["id"].as_i64().unwrap(),
        }
    }
}

/// Ids the fixtures created.
#[derive(Debug, Clone, Copy)]
pub struct Fixtures {
    /// A cPanel server (in use by the service).
    pub server_id: i64,
    /// A client.
    pub client_id: i64,
    /// A non-owner user of the client.
    pub user_id: i64,
    /// An active service on the server.
    pub service_id: i64,
}

/// The routes `docs/api.md` documents for the admin API, with the permission each needs: every
/// `` `METHOD /path` `` between its "Admin API" and "Single sign-on" headings, under the
/// permission its `###` heading names in backticks (none under a heading that names none).
pub fn documented_routes() -> HashMap<(&'static str, &'static str), Option<&'static str>> {
    static ROUTES: OnceLock<HashMap<(&'static str, &'static str), Option<&'static str>>> =
        OnceLock::new();
    ROUTES
        .get_or_init(|| {
            let path = panelink_tests::repo_root().join("docs/api.md");
            let text: &'static str = Box::leak(
                std::fs::read_to_string(&path)
                    .expect("docs/api.md")
                    .into_boxed_str(),
            );
            let start = text.find("\n## Admin API").expect("an Admin API section");
            let end = text
                .find("\n## Single sign-on")
                .expect("a Single sign-on section");
            let mut permission: Option<&'static str> = None;
            let mut routes = HashMap::new();
            for line in text[start..end].lines() {
                if let Some(heading) = line.strip_prefix("### ") {
                    permission = heading
                        .split('`')
                        .nth(1)
                        .filter(|p| p.starts_with("manage_") || p.starts_with("configure_"));
                    continue;
                }
                for (i, chunk) in line.split('`').enumerate() {
                    if i % 2 == 0 {
                        continue;
                    }
                    let Some((method, rest)) = chunk.split_once(' ') else {
                        continue;
                    };
                    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method) {
                        continue;
                    }
                    let path = rest.split([' ', '?']).next().unwrap_or("");
                    if path.starts_with('/') {
                        routes.insert((method, path), permission);
                    }
                }
            }
            routes
        })
        .clone()
}

/// The OpenAPI document's operations: (method, path) → the permission its security names.
pub fn documented_operations(doc: &Value) -> BTreeMap<(String, String), Option<String>> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let permission = op["security"].as_array().and_then(|reqs| {
                reqs.iter()
                    .find_map(|r| r["bearer"].as_array()?.first()?.as_str().map(str::to_owned))
            });
            out.insert((method.to_uppercase(), path.clone()), permission);
        }
    }
    out
}

/// A log capture: every event (all levels) of the whole test process, while installed, written
/// into a buffer.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

/// The capture installed now, if any (captures take turns).
static CAPTURING: Mutex<Option<LogCapture>> = Mutex::new(None);

/// Whether a capture is installed (read by the filter on every event).
static CAPTURE_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl LogCapture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Install until the guard drops. The panel simulator's own lines are left out: it is the
    /// panel, and legitimately knows its token.
    ///
    /// One process-wide subscriber, installed once, writes to whichever capture is installed. A
    /// per-thread subscriber (`set_default`) is not reliable here: tracing caches each
    /// callsite's interest process-wide, so a callsite first hit on another test's thread, with
    /// no subscriber, could stay disabled for the capture (this made a test miss events under
    /// load). The filter here answers "sometimes" for every callsite and decides per event, so
    /// nothing is cached. Events of other tests running meanwhile are captured too, which only
    /// makes "no secret in the logs" checks stricter.
    pub fn install(&self) -> CaptureGuard {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        static SUBSCRIBER: OnceLock<()> = OnceLock::new();
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        SUBSCRIBER.get_or_init(|| {
            use tracing_subscriber::Layer as _;
            use tracing_subscriber::layer::SubscriberExt as _;
            let filter = tracing_subscriber::filter::DynFilterFn::new(|meta, _| {
                CAPTURE_ON.load(std::sync::atomic::Ordering::SeqCst)
                    && !meta.target().starts_with("panel_sim")
            })
            .with_callsite_filter(|_| tracing::subscriber::Interest::sometimes());
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(|| CaptureWriter)
                .with_ansi(false)
                .with_filter(filter);
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("the test process has no other global subscriber");
        });
        *CAPTURING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(self.clone());
        CAPTURE_ON.store(true, std::sync::atomic::Ordering::SeqCst);
        CaptureGuard { _turn: turn }
    }
}

/// Writes to the installed capture, if any.
struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let current = CAPTURING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match current {
            Some(mut capture) => capture.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An installed [`LogCapture`]; dropping it uninstalls the capture.
pub struct CaptureGuard {
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE_ON.store(false, std::sync::atomic::Ordering::SeqCst);
        *CAPTURING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
