//! A host served on port 0 as `panelink serve` runs it, for tests that go through the real HTTP
//! server: with the sync engine or with sync requests only recorded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use panelink::config::{Config, Layer};
use panelink::crypto::SecretBox;
use panelink::storage::{Actor, Db};
use panelink::sync::SyncRequests;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, NoSync, TEST_SECRET_KEY, TestDb};

/// A generous bound for anything that should happen within a few seconds.
pub const BOUND: Duration = Duration::from_secs(20);

/// The host served on port 0, with a Full Administrator.
pub struct Live {
    pub base: String,
    pub addr: SocketAddr,
    pub db: Db,
    pub url: String,
    pub http: reqwest::Client,
    pub admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _data: tempfile::TempDir,
    _db: TestDb,
}

impl Live {
    /// Sync requests only recorded (the engine does not run).
    pub async fn start(backend: Backend, configure: impl FnOnce(&mut Layer)) -> Live {
        Self::start_with(backend, configure, |_| {}).await
    }

    /// With the real sync engine, as `panelink serve` runs it.
    pub async fn with_engine(backend: Backend, configure: impl FnOnce(&mut Layer)) -> Live {
        Self::launch(backend, configure, |_| {}, None).await
    }

    /// `configure` sets keys as a file would; `adjust` changes the resolved configuration (as
    /// code embedding the host could, bypassing the checks of `Config::resolve`).
    pub async fn start_with(
        backend: Backend,
        configure: impl FnOnce(&mut Layer),
        adjust: impl FnOnce(&mut Config),
    ) -> Live {
        Self::launch(backend, configure, adjust, Some(Arc::new(NoSync))).await
    }

    async fn launch(
        backend: Backend,
        configure: impl FnOnce(&mut Layer),
        adjust: impl FnOnce(&mut Config),
        sync: Option<Arc<dyn SyncRequests>>,
    ) -> Live {
        let test_db = TestDb::new(backend).await;
        let data = tempfile::tempdir().unwrap();
        let mut layer = Layer {
            listen: Some("127.0.0.1:0".into()),
            database_url: Some(test_db.url.clone()),
            data_dir: Some(data.path().to_path_buf()),
            secret_key: Some(TEST_SECRET_KEY.into()),
            plugin_dir: Some(panelink_tests::plugin_dir()),
            ..Layer::default()
        };
        configure(&mut layer);
        let mut config = Config::resolve([layer]).unwrap();
        adjust(&mut config);
        let options = panelink::boot::Options {
            runtime: panelink_tests::runtime_config(),
            sync,
            ..Default::default()
        };
        let host = panelink::boot::Host::start(config, options).await.unwrap();
        let addr = host.local_addr();
        let base = format!("http://{addr}");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(host.run(async {
            let _ = stopped.await;
        }));
        // No idle connections kept: the connection tests count the host's connections, and
        // the host closes idle ones on its own schedule.
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http.get(format!("{base}/readyz")).send().await;
            if ready.as_ref().is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready in 30 s: {ready:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secrets = SecretBox::from_material(TEST_SECRET_KEY).unwrap();
        let db = Db::connect(&test_db.url, Arc::new(secrets)).await.unwrap();
        let (_, admin) = db
            .create_admin(
                &Actor::cli(),
                &panelink::model::Email::parse("root@example.com").unwrap(),
                "Full Administrator",
            )
            .await
            .unwrap();
        Live {
            base,
            addr,
            db,
            url: test_db.url.clone(),
            http,
            admin: admin.expose().to_owned(),
            stop: Some(stop),
            running: Some(running),
            _data: data,
            _db: test_db,
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(BOUND, self.running.take().unwrap())
            .await
            .expect("the host stops")
            .unwrap()
            .unwrap();
        self.db.close().await;
    }

    /// A call with a token; the status and the JSON answer (`Null` when not JSON).
    pub async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A call as the Full Administrator that must succeed.
    pub async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(&self.admin, method, path, Some(body)).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer
    }

    /// A role with these permissions and an admin holding it: (admin id, token).
    pub async fn admin_with(&self, role: &str, permissions: &[&str]) -> (i64, String) {
        self.ok(
            "POST",
            "/api/v1/roles",
            json!({"name": role, "permissions": permissions}),
        )
        .await;
        let email = format!("{}@example.com", role.to_lowercase().replace(' ', "-"));
        let admin = self
            .ok(
                "POST",
                "/api/v1/admins",
                json!({"email": email, "role": role}),
            )
            .await;
        (
            admin["id"].as_i64().unwrap(),
            admin["token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// A SQL statement run behind the host's back.
    pub async fn raw_sql(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
}
