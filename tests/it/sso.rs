//! Single sign-on end to end: the real host served on port 0, panel-sim's links provisioned by
//! the real cPanel plugin, panel-sim's click against `/oauth/token`, the browser's redemption
//! at `/oauth/sso` (a client that does not follow redirects), and the portal with the session
//! cookie; on SQLite and PostgreSQL.
//!
//! Set-up per account: client and service through the admin API. With [`Provisioning::Engine`]
//! the host's real sync engine then mints the service's credential and pushes its links to
//! panel-sim (the test waits until the panel and the record have them); with
//! [`Provisioning::Manual`] the host only records sync requests, and the test mints the
//! credential with `Db::mint_sso_credential`, pushes the links with the real cPanel plugin and
//! records them itself, so that later changes (status, server, application) reach the token
//! endpoint without the engine reacting to them first.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use http_body_util::BodyExt;
use panel_sim::{ClickOutcome, PanelSim, RedirectSource, SimConfig, SimHandle};
use panelink::adapter::{
    AccountWork, Credential, LinkSpec, LinkTemplate, Secret, ServerTarget, Settings,
};
use panelink::api::{self, AppState, Limits};
use panelink::catalog::Catalog;
use panelink::config::{Config, Layer, SsoConfig};
use panelink::crypto::{SecretBox, hash_token};
use panelink::runtime::Plugins;
use panelink::sso::Sso;
use panelink::storage::{ActivityOutcome, Db, NewPortalSession, now_ms};
use panelink::sync_port::Events;
use panelink::sync_port::{RecordChange, RecordedLink};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::harness::{Backend, LogCapture, TEST_SECRET_KEY, TestDb, on_both, shipped_plugins};

on_both!(
    every_link_signs_in_and_lands_on_its_destination,
    token_endpoint_refusals,
    links_the_engine_removes_stop_signing_in,
    an_admin_rotates_a_service_credential,
    redemption_refusals_sign_nobody_in,
    one_of_fifty_parallel_redemptions_wins,
    portal_owner_settings_and_users,
    token_endpoint_rate_limits,
    a_link_signs_in_from_its_first_click,
    the_token_endpoint_answers_oauth_errors_to_any_method,
    the_owners_sso_permission_decides_panel_clicks,
);

/// Who puts the links on the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provisioning {
    /// The host's sync engine.
    Engine,
    /// The test, with the real plugin; the host's sync requests are only recorded.
    Manual,
}

/// The running host, panel-sim, and a handle on the same database.
struct World {
    provisioning: Provisioning,
    base: String,
    db: Db,
    sim: SimHandle,
    http: reqwest::Client,
    admin: String,
    server_id: i64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _data: tempfile::TempDir,
    _db: TestDb,
}

/// A client with an active service whose 14 links are on panel-sim.
struct Account {
    client_id: i64,
    owner_id: i64,
    service_id: i64,
    user: String,
    subscriber_id: String,
    secret: Secret,
    links: Vec<LinkSpec>,
}

fn app_name(scope: &str) -> String {
    format!("PANELINK_{}", scope.replace(':', "_"))
}

/// The cPanel plugin's links, but those of `skip`.
fn cpanel_links(skip: &[&str]) -> Vec<LinkSpec> {
    let (_, plugins) = shipped_plugins();
    let plugin = plugins.iter().find(|p| p.id() == "cpanel").unwrap();
    plugin
        .description
        .links
        .iter()
        .filter(|l| !skip.contains(&l.scope.as_str()))
        .cloned()
        .collect()
}

impl World {
    async fn start(
        backend: Backend,
        provisioning: Provisioning,
        sso: impl FnOnce(&mut SsoConfig),
    ) -> World {
        let test_db = TestDb::new(backend).await;
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::resolve([Layer {
            listen: Some("127.0.0.1:0".into()),
            database_url: Some(test_db.url.clone()),
            data_dir: Some(data.path().to_path_buf()),
            secret_key: Some(TEST_SECRET_KEY.into()),
            plugin_dir: Some(panelink_tests::plugin_dir()),
            ..Layer::default()
        }])
        .unwrap();
        sso(&mut config.sso);
        let options = panelink::boot::Options {
            runtime: panelink_tests::runtime_config(),
            sync: (provisioning == Provisioning::Manual)
                .then(|| Arc::new(crate::harness::NoSync) as Arc<dyn panelink::sync::SyncRequests>),
            ..Default::default()
        };
        let host = panelink::boot::Host::start(config, options).await.unwrap();
        let base = format!("http://{}", host.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(host.run(async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
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
                &panelink::storage::Actor::cli(),
                &panelink::model::Email::parse("root@example.com").unwrap(),
                "Full Administrator",
            )
            .await
            .unwrap();
        let sim = PanelSim::start(SimConfig::new()).await.unwrap();
        let mut world = World {
            provisioning,
            base,
            db,
            sim,
            http,
            admin: admin.expose().to_owned(),
            server_id: 0,
            stop: Some(stop),
            running: Some(running),
            _data: data,
            _db: test_db,
        };
        let server = world
            .admin_call(
                "POST",
                "/api/v1/servers",
                json!({"name": "sim", "module": "cpanel",
                       "hostname": world.sim.addr().ip().to_string(),
                       "port": world.sim.addr().port(), "secure": false,
                       "username": world.sim.api_user(), "api_token": world.sim.api_token()}),
            )
            .await;
        world.server_id = server["id"].as_i64().unwrap();
        world
            .admin_call(
                "PATCH",
                "/api/v1/applications/cpanel",
                json!({"enabled": true}),
            )
            .await;
        world
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.running.take().unwrap().await.unwrap().unwrap();
        self.db.close().await;
    }

    /// An admin API call that must succeed; its JSON answer.
    async fn admin_call(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, value) = self.admin_try(method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    async fn admin_try(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A client (owner `<user>@example.com`) with an active service `user` whose links —
    /// every scope but `skip` — are on panel-sim and on record.
    async fn account(&self, user: &str, skip: &[&str]) -> Account {
        self.sim.add_account(user, format!("{user}.example"));
        let client = self
            .admin_call(
                "POST",
                "/api/v1/clients",
                json!({"name": format!("{user} Ltd"), "email": format!("{user}@example.com")}),
            )
            .await;
        let client_id = client["id"].as_i64().unwrap();
        let owner_id = client["owner_user_id"].as_i64().unwrap();
        let service = self
            .admin_call(
                "POST",
                "/api/v1/services",
                json!({"client_id": client_id, "server_id": self.server_id, "username": user,
                       "domain": format!("{user}.example"), "status": "active"}),
            )
            .await;
        let service_id = service["id"].as_i64().unwrap();
        match self.provisioning {
            Provisioning::Engine => {
                self.provisioned_by_engine(user, client_id, owner_id, service_id, skip)
                    .await
            }
            Provisioning::Manual => {
                self.provision(user, client_id, owner_id, service_id, skip)
                    .await
            }
        }
    }

    /// Wait (bounded) until the sync engine has put the service's links on panel-sim and on
    /// record; the credential it minted.
    async fn provisioned_by_engine(
        &self,
        user: &str,
        client_id: i64,
        owner_id: i64,
        service_id: i64,
        skip: &[&str],
    ) -> Account {
        let links = cpanel_links(skip);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let on_panel = self.sim.links(user).len();
            let (_, recorded) = self
                .db
                .recorded_state(self.server_id, "cpanel")
                .await
                .unwrap();
            let on_record = recorded
                .iter()
                .filter(|l| l.service_id == service_id)
                .count();
            if on_panel == links.len() && on_record == links.len() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sync engine did not provision {user} in 20 s ({on_panel} on the panel, \
                 {on_record} on record)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (subscriber_id, secret, _) = self
            .db
            .sso_credential(service_id)
            .await
            .unwrap()
            .expect("the engine minted a credential");
        let link = self.sim.link(user, &app_name(&links[0].scope)).unwrap();
        assert_eq!(link.subscriber_unique_id(), Some(subscriber_id.as_str()));
        Account {
            client_id,
            owner_id,
            service_id,
            user: user.into(),
            subscriber_id,
            secret,
            links,
        }
    }

    /// Mint the credential, push the links with the real plugin, record them.
    async fn provision(
        &self,
        user: &str,
        client_id: i64,
        owner_id: i64,
        service_id: i64,
        skip: &[&str],
    ) -> Account {
        let (subscriber_id, secret) = self.db.mint_sso_credential(service_id).await.unwrap();
        let again = self.db.mint_sso_credential(service_id).await.unwrap();
        assert_eq!(again.0, subscriber_id, "minting is idempotent");
        let links = cpanel_links(skip);
        let (_, plugins) = shipped_plugins();
        let plugin = plugins.iter().find(|p| p.id() == "cpanel").unwrap();
        let pushes: Vec<LinkTemplate> = links
            .iter()
            .enumerate()
            .map(|(i, l)| LinkTemplate {
                scope: l.scope.clone(),
                label: l.default_label.clone(),
                order: u32::try_from(i + 1).unwrap(),
                token_url: format!(
                    "{}/oauth/token?scope=clientarea%3Asso+{}&module=cpanel",
                    self.base,
                    l.scope.replace(':', "%3A")
                ),
                url: format!(
                    "{}/portal{}",
                    self.base,
                    l.destination.replace("{service_id}", "{service-id}")
                ),
            })
            .collect();
        let target = ServerTarget {
            hostname: self.sim.addr().ip().to_string(),
            port: self.sim.addr().port(),
            secure: false,
            username: self.sim.api_user(),
            api_token: Secret::new(self.sim.api_token()),
        };
        let work = AccountWork {
            username: user.into(),
            domain: format!("{user}.example"),
            service_id: service_id.to_string(),
            credential: Credential::Token {
                subscriber_id: subscriber_id.clone(),
                secret: secret.clone(),
            },
            ensure_group: true,
            links: pushes.iter().map(|p| p.scope.clone()).collect(),
            remove: vec![],
        };
        let out = plugin
            .provision(&target, &Settings::default(), pushes.clone(), [work])
            .await
            .unwrap();
        assert_eq!(out.value[0].errors().count(), 0, "{:?}", out.value);
        let changes: Vec<RecordChange> = pushes
            .iter()
            .map(|p| {
                RecordChange::Link(RecordedLink {
                    service_id,
                    username: user.into(),
                    scope: p.scope.clone(),
                    label: p.label.clone(),
                    position: i64::from(p.order),
                    credential_version: 1,
                })
            })
            .collect();
        self.db
            .record_changes("cpanel", self.server_id, &changes, None, None, &[])
            .await
            .unwrap();
        Account {
            client_id,
            owner_id,
            service_id,
            user: user.into(),
            subscriber_id,
            secret,
            links,
        }
    }

    /// panel-sim's click on the account's link of `scope`.
    async fn click(&self, account: &Account, scope: &str) -> ClickOutcome {
        self.sim
            .click(&account.user, &app_name(scope))
            .await
            .unwrap()
    }

    /// A click that must get a token; the `redirect_url`.
    async fn token_url(&self, account: &Account, scope: &str) -> String {
        let outcome = self.click(account, scope).await;
        assert_eq!(
            outcome.source,
            RedirectSource::TokenEndpoint,
            "{scope}: {:?}",
            outcome.token_error
        );
        outcome.redirect_url
    }

    /// The browser following a `redirect_url` (no redirects followed).
    async fn redeem(&self, url: &str) -> (StatusCode, Option<String>, Option<String>, String) {
        let response = self.http.get(url).send().await.unwrap();
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let location = header("location");
        let cookie = header("set-cookie");
        (status, location, cookie, response.text().await.unwrap())
    }

    /// A direct token request with a form body.
    async fn token_request(
        &self,
        query: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let response = self
            .http
            .post(format!("{}/oauth/token?{query}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            headers,
        )
    }

    async fn get_with_cookie(&self, path_or_url: &str, cookie: &str) -> (StatusCode, String) {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let response = self
            .http
            .get(url)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn sessions(&self, account: &Account) -> i64 {
        self.db
            .portal_session_count(account.client_id)
            .await
            .unwrap()
    }

    /// The account's activity log, oldest first: (outcome, detail).
    async fn activity(&self, account: &Account) -> Vec<(ActivityOutcome, String)> {
        let mut entries = self
            .db
            .client_activity(account.client_id, 1000)
            .await
            .unwrap();
        entries.reverse();
        entries.into_iter().map(|e| (e.outcome, e.detail)).collect()
    }
}

const QUERY_INVOICES: &str = "scope=clientarea%3Asso+clientarea%3Ainvoices&module=cpanel";

/// `name=value` of a `Set-Cookie`.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn html_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
}

fn csrf_of(page: &str) -> String {
    let start = page
        .find("name=\"csrf-token\" content=\"")
        .expect("the page embeds a CSRF token")
        + "name=\"csrf-token\" content=\"".len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

async fn every_link_signs_in_and_lands_on_its_destination(backend: Backend) {
    let capture = LogCapture::default();
    let _guard = capture.install();
    let world = World::start(backend, Provisioning::Engine, |_| {}).await;
    let account = world.account("acme", &[]).await;
    assert_eq!(account.links.len(), 14);
    let mut bodies = Vec::new();
    let mut tokens = Vec::new();
    let mut cookies = Vec::new();
    for link in &account.links {
        let outcome = world.click(&account, &link.scope).await;
        assert_eq!(
            outcome.source,
            RedirectSource::TokenEndpoint,
            "{:?}",
            outcome.token_error
        );
        assert_eq!(outcome.attempts, 1);
        let answer = &outcome.response;
        assert_eq!(answer["token_type"], "Bearer");
        assert_eq!(answer["expires_in"], 60);
        assert_eq!(answer["scope"], format!("clientarea:sso {}", link.scope));
        let access_token = answer["access_token"].as_str().unwrap().to_owned();
        assert_eq!(
            outcome.redirect_url,
            format!("{}/oauth/sso?access_token={access_token}", world.base)
        );
        tokens.push(access_token);

        let (status, location, set_cookie, body) = world.redeem(&outcome.redirect_url).await;
        assert_eq!(status, StatusCode::FOUND, "{}: {body}", link.scope);
        let destination = link
            .destination
            .replace("{service_id}", &account.service_id.to_string());
        let location = location.unwrap();
        assert_eq!(
            location,
            format!("{}/portal{destination}", world.base),
            "{}",
            link.scope
        );
        let set_cookie = set_cookie.expect("a session cookie");
        assert!(set_cookie.starts_with("panelink_session="), "{set_cookie}");
        assert!(set_cookie.contains("; HttpOnly") && set_cookie.contains("; SameSite=Lax"));
        assert!(set_cookie.contains("; Path=/portal"), "{set_cookie}");
        assert!(
            !set_cookie.contains("Secure"),
            "plain http public_url: no Secure"
        );
        let cookie = cookie_pair(&set_cookie);
        cookies.push(cookie.trim_start_matches("panelink_session=").to_owned());

        let (status, page) = world.get_with_cookie(&location, &cookie).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("acme@example.com"), "{page}");
        assert!(page.contains("(account owner)"));
        assert!(
            page.contains(&format!(
                "<code id=\"destination\">{}</code>",
                html_escaped(&destination)
            )),
            "{}: {page}",
            link.scope
        );
        assert!(page.contains("/portal/security") && page.contains("/portal/users"));
        bodies.push(body);
        bodies.push(page);
    }
    // The portal's own pages.
    let (status, security) = world
        .get_with_cookie(
            "/portal/security",
            &format!("panelink_session={}", cookies[0]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(security.contains("id=\"allow-sso\">On<"), "{security}");
    bodies.push(security);

    assert_eq!(world.sessions(&account).await, 14);
    let activity = world.activity(&account).await;
    assert_eq!(activity.len(), 14);
    assert!(activity.iter().all(|(o, d)| *o == ActivityOutcome::Success
        && d.starts_with("acme@example.com signed in through the clientarea:")));
    // Admins read the same log through the API, newest first.
    let (status, log) = world
        .admin_try(
            "GET",
            &format!("/api/v1/clients/{}/activity?limit=5", account.client_id),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    let last_scope = &account.links.last().unwrap().scope;
    assert!(
        entries[0]["detail"]
            .as_str()
            .unwrap()
            .ends_with(&format!("through the {last_scope} link")),
        "{log}"
    );
    assert!(
        entries
            .windows(2)
            .all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64())
    );
    assert!(entries.iter().all(|e| e["event"] == "sso_login"
        && e["outcome"] == "success"
        && e["service_id"] == account.service_id
        && e["at"].as_str().is_some_and(|t| t.ends_with('Z'))));
    for (query, want) in [
        (
            format!("{}/activity?limit=0", account.client_id),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{}/activity?limit=x", account.client_id),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("999999/activity".to_owned(), StatusCode::NOT_FOUND),
    ] {
        let (status, body) = world
            .admin_try("GET", &format!("/api/v1/clients/{query}"), Value::Null)
            .await;
        assert_eq!(status, want, "{query}: {body}");
    }

    // A second account's links carry its own credential: no crossing over.
    let other = world.account("globex", &[]).await;
    let url = world.token_url(&other, "clientarea:tickets").await;
    let (status, _, _, _) = world.redeem(&url).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(world.sessions(&other).await, 1);
    assert_eq!(world.sessions(&account).await, 14);

    world.stop().await;
    drop(_guard);
    let logs = capture.text();
    assert!(
        logs.contains("single sign-on token issued"),
        "the capture works"
    );
    for secret in [account.secret.expose(), other.secret.expose()] {
        assert!(!logs.contains(secret), "a link secret was logged");
        assert!(
            bodies.iter().all(|b| !b.contains(secret)),
            "a link secret was answered"
        );
    }
    for token in tokens.iter().chain(&cookies) {
        assert!(
            !logs.contains(token.as_str()),
            "a token or session was logged"
        );
        assert!(
            bodies.iter().all(|b| !b.contains(token.as_str())),
            "a token was answered again"
        );
    }
}

async fn token_endpoint_refusals(backend: Backend) {
    let world = World::start(backend, Provisioning::Manual, |_| {}).await;
    let account = world.account("acme", &["clientarea:downloads"]).await;
    let good = [
        ("subscriber_unique_id", account.subscriber_id.as_str()),
        ("token", account.secret.expose()),
        ("attempt", "1"),
    ];
    let expect_ok = async |form: &[(&str, &str)]| {
        let (status, answer, headers) = world.token_request(QUERY_INVOICES, form).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(answer["access_token"].is_string());
        assert_eq!(headers["cache-control"], "no-store");
    };
    expect_ok(&good).await;

    let expect = async |query: &str, form: &[(&str, &str)], status: StatusCode, error: &str| {
        let (got, answer, headers) = world.token_request(query, form).await;
        assert_eq!(
            (got, answer["error"].as_str().unwrap_or("")),
            (status, error),
            "{query} {answer}"
        );
        assert!(
            answer["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        assert!(answer.get("access_token").is_none());
        assert_eq!(headers["cache-control"], "no-store");
    };
    let wrong_secret = [
        ("subscriber_unique_id", account.subscriber_id.as_str()),
        (
            "token",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
    ];
    expect(
        QUERY_INVOICES,
        &wrong_secret,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    let unknown = [
        ("subscriber_unique_id", "svc_nobody"),
        ("token", account.secret.expose()),
    ];
    expect(
        QUERY_INVOICES,
        &unknown,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    expect(
        QUERY_INVOICES,
        &good[..1],
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect(
        QUERY_INVOICES,
        &good[1..],
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect(
        "module=cpanel",
        &good,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect(
        "scope=clientarea%3Asso+clientarea%3Ainvoices",
        &good,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect(
        "scope=clientarea%3Ainvoices&module=cpanel",
        &good,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    )
    .await;
    expect(
        "scope=clientarea%3Asso&module=cpanel",
        &good,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    )
    .await;
    expect(
        "scope=clientarea%3Asso+Bad!&module=cpanel",
        &good,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    )
    .await;
    // A scope this service's links do not have, a scope nobody has, another application.
    expect(
        "scope=clientarea%3Asso+clientarea%3Adownloads&module=cpanel",
        &good,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    )
    .await;
    expect(
        "scope=clientarea%3Asso+clientarea%3Anope&module=cpanel",
        &good,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    )
    .await;
    expect(
        "scope=clientarea%3Asso+clientarea%3Ainvoices&module=wpsquared",
        &good,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    )
    .await;
    // The credential in the URL does not count.
    let in_query = format!(
        "{QUERY_INVOICES}&subscriber_unique_id={}&token={}",
        account.subscriber_id,
        account.secret.expose()
    );
    expect(&in_query, &[], StatusCode::BAD_REQUEST, "invalid_request").await;

    // Through panel-sim: the click falls back to the link's url when the endpoint refuses.
    let sim_link = world
        .sim
        .link("acme", &app_name("clientarea:invoices"))
        .unwrap();
    world
        .admin_call(
            "PATCH",
            "/api/v1/applications/cpanel",
            json!({"enabled": false}),
        )
        .await;
    expect(
        QUERY_INVOICES,
        &good,
        StatusCode::FORBIDDEN,
        "access_denied",
    )
    .await;
    let fallback = world.click(&account, "clientarea:invoices").await;
    assert_eq!(fallback.source, RedirectSource::FallbackUrl);
    assert_eq!(Some(fallback.redirect_url.as_str()), sim_link.url());
    assert!(fallback.token_error.unwrap().contains("403"));
    world
        .admin_call(
            "PATCH",
            "/api/v1/applications/cpanel",
            json!({"enabled": true}),
        )
        .await;

    // Suspended services still sign in; terminated ones do not.
    let service = format!("/api/v1/services/{}", account.service_id);
    world
        .admin_call("PATCH", &service, json!({"status": "suspended"}))
        .await;
    expect_ok(&good).await;
    world
        .admin_call("PATCH", &service, json!({"status": "terminated"}))
        .await;
    expect(
        QUERY_INVOICES,
        &good,
        StatusCode::FORBIDDEN,
        "access_denied",
    )
    .await;
    world
        .admin_call("PATCH", &service, json!({"status": "active"}))
        .await;

    // A disabled server.
    world
        .admin_call(
            "PATCH",
            &format!("/api/v1/servers/{}", world.server_id),
            json!({"enabled": false}),
        )
        .await;
    expect(
        QUERY_INVOICES,
        &good,
        StatusCode::FORBIDDEN,
        "access_denied",
    )
    .await;
    world
        .admin_call(
            "PATCH",
            &format!("/api/v1/servers/{}", world.server_id),
            json!({"enabled": true}),
        )
        .await;

    // Revoked (the sync engine revokes on termination), then rotated credentials.
    world
        .db
        .revoke_sso_credential(account.service_id)
        .await
        .unwrap();
    expect(
        QUERY_INVOICES,
        &good,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    assert!(
        world
            .db
            .sso_credential(account.service_id)
            .await
            .unwrap()
            .is_none()
    );
    let (subscriber, secret) = world
        .db
        .mint_sso_credential(account.service_id)
        .await
        .unwrap();
    let (_, _, version) = world
        .db
        .sso_credential(account.service_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        version, 2,
        "re-minting after a revocation bumps the version"
    );
    let fresh = [
        ("subscriber_unique_id", subscriber.as_str()),
        ("token", secret.expose()),
    ];
    expect_ok(&fresh).await;
    let version = world
        .db
        .rotate_live_credential(&panelink::storage::Actor::cli(), account.service_id)
        .await
        .unwrap()
        .0;
    assert_eq!(version, 3);
    let (rotated_subscriber, rotated_secret, _) = world
        .db
        .sso_credential(account.service_id)
        .await
        .unwrap()
        .unwrap();
    expect(
        QUERY_INVOICES,
        &fresh,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    let rotated = [
        ("subscriber_unique_id", rotated_subscriber.as_str()),
        ("token", rotated_secret.expose()),
    ];
    expect_ok(&rotated).await;
    assert!(matches!(
        world.db.mint_sso_credential(999_999).await,
        Err(panelink::storage::Error::NotFound("service"))
    ));

    assert_eq!(world.sessions(&account).await, 0, "nobody signed in");
    world.stop().await;
}

/// With the real sync engine: a link the admin hides is not on the panel and its scope is
/// refused; terminating the service removes its links and revokes its credential.
async fn links_the_engine_removes_stop_signing_in(backend: Backend) {
    let world = World::start(backend, Provisioning::Engine, |_| {}).await;
    let hidden = "clientarea:downloads";
    let saved = world
        .admin_call("GET", "/api/v1/applications/cpanel/links", Value::Null)
        .await;
    let links: Vec<Value> = saved["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            json!({"scope": l["scope"], "display_name": l["display_name"],
                   "enabled": l["scope"] != hidden})
        })
        .collect();
    world
        .admin_call(
            "PUT",
            "/api/v1/applications/cpanel/links",
            json!({"links": links}),
        )
        .await;
    let account = world.account("acme", &[hidden]).await;
    assert!(world.sim.link("acme", &app_name(hidden)).is_none());
    let credential = [
        ("subscriber_unique_id", account.subscriber_id.as_str()),
        ("token", account.secret.expose()),
    ];
    let query = format!(
        "scope=clientarea%3Asso+{}&module=cpanel",
        hidden.replace(':', "%3A")
    );
    let (status, answer, _) = world.token_request(&query, &credential).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    let url = world.token_url(&account, "clientarea:invoices").await;
    assert_eq!(world.redeem(&url).await.0, StatusCode::FOUND);

    world
        .admin_call(
            "PATCH",
            &format!("/api/v1/services/{}", account.service_id),
            json!({"status": "terminated"}),
        )
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !world.sim.links("acme").is_empty()
        || world
            .db
            .sso_credential(account.service_id)
            .await
            .unwrap()
            .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine did not remove the links and revoke the credential in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, answer, _) = world.token_request(QUERY_INVOICES, &credential).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    assert!(matches!(
        world
            .sim
            .click("acme", &app_name("clientarea:invoices"))
            .await,
        Err(panel_sim::ClickError::NoSuchLink { .. })
    ));
    assert_eq!(world.sessions(&account).await, 1);
    world.stop().await;
}

/// `POST /api/v1/services/{id}/credential`: the old credential stops working at once, the sync
/// engine pushes the new one to every link of the service, and a click signs in again; the
/// answer holds no secret; nothing to rotate without links.
async fn an_admin_rotates_a_service_credential(backend: Backend) {
    let world = World::start(backend, Provisioning::Engine, |_| {}).await;
    let account = world.account("acme", &[]).await;
    let old = [
        ("subscriber_unique_id", account.subscriber_id.as_str()),
        ("token", account.secret.expose()),
    ];
    let (status, answer) = world
        .admin_try(
            "POST",
            &format!("/api/v1/services/{}/credential", account.service_id),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["service_id"], account.service_id);
    assert_eq!(answer["credential_version"], 2);
    assert!(answer["sync"]["id"].is_i64(), "{answer}");
    let (subscriber_id, secret, version) = world
        .db
        .sso_credential(account.service_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version, 2);
    assert_ne!(subscriber_id, account.subscriber_id);
    let text = answer.to_string();
    assert!(!text.contains(secret.expose()) && !text.contains(&subscriber_id));

    // The old credential is refused at once.
    let (status, refused, _) = world.token_request(QUERY_INVOICES, &old).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    // The engine pushes the new one to every link.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let on_panel = account
            .links
            .iter()
            .filter(|l| {
                world
                    .sim
                    .link("acme", &app_name(&l.scope))
                    .is_some_and(|p| p.subscriber_unique_id() == Some(subscriber_id.as_str()))
            })
            .count();
        if on_panel == account.links.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine did not push the rotated credential in 20 s ({on_panel} links have it)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = world.token_url(&account, "clientarea:invoices").await;
    assert_eq!(world.redeem(&url).await.0, StatusCode::FOUND);
    assert!(
        world
            .db
            .audit_log(50)
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "rotate_credential"
                && e.target == format!("service:{}", account.service_id)
                && !e.detail.contains(secret.expose()))
    );

    // A service without links has no credential to rotate; an unknown one is not found.
    let client = world
        .admin_call(
            "POST",
            "/api/v1/clients",
            json!({"name": "Pending Ltd", "email": "pending@example.com"}),
        )
        .await;
    let pending = world
        .admin_call(
            "POST",
            "/api/v1/services",
            json!({"client_id": client["id"], "server_id": world.server_id,
                   "username": "pending", "domain": "pending.example", "status": "pending"}),
        )
        .await;
    let (status, body) = world
        .admin_try(
            "POST",
            &format!("/api/v1/services/{}/credential", pending["id"]),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = world
        .admin_try("POST", "/api/v1/services/999999/credential", Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    world.stop().await;
}

async fn redemption_refusals_sign_nobody_in(backend: Backend) {
    let world = World::start(backend, Provisioning::Engine, |sso| {
        sso.token_ttl = Duration::from_secs(1)
    })
    .await;
    let account = world.account("acme", &[]).await;
    let scope = "clientarea:tickets";
    let refused = async |url: &str, status: StatusCode, title: &str| {
        let (got, location, cookie, page) = world.redeem(url).await;
        assert_eq!(got, status, "{page}");
        assert!(
            location.is_none() && cookie.is_none(),
            "nobody is signed in"
        );
        assert!(page.contains(title), "{title}: {page}");
        assert!(page.starts_with("<!doctype html>"));
    };

    // Replayed.
    let url = world.token_url(&account, scope).await;
    assert_eq!(world.redeem(&url).await.0, StatusCode::FOUND);
    refused(&url, StatusCode::BAD_REQUEST, "already used").await;
    assert_eq!(world.sessions(&account).await, 1);

    // Unknown, malformed, missing.
    refused(
        &format!(
            "{}/oauth/sso?access_token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            world.base
        ),
        StatusCode::BAD_REQUEST,
        "not valid",
    )
    .await;
    refused(
        &format!("{}/oauth/sso?access_token=%3Cx%3E", world.base),
        StatusCode::BAD_REQUEST,
        "not valid",
    )
    .await;
    refused(
        &format!("{}/oauth/sso", world.base),
        StatusCode::BAD_REQUEST,
        "not valid",
    )
    .await;

    // Expired (the token lives 1 s here).
    let url = world.token_url(&account, scope).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refused(&url, StatusCode::BAD_REQUEST, "expired").await;

    // Closed account, through the admin API: refused at once.
    let client = format!("/api/v1/clients/{}", account.client_id);
    world
        .admin_call("PATCH", &client, json!({"status": "closed"}))
        .await;
    let url = world.token_url(&account, scope).await;
    refused(&url, StatusCode::FORBIDDEN, "account is closed").await;
    world
        .admin_call("PATCH", &client, json!({"status": "active"}))
        .await;

    // Single sign-on off for the account.
    world
        .admin_call("PATCH", &client, json!({"allow_sso": false}))
        .await;
    let url = world.token_url(&account, scope).await;
    refused(&url, StatusCode::FORBIDDEN, "turned off").await;
    world
        .admin_call("PATCH", &client, json!({"allow_sso": true}))
        .await;

    // The owner's sso permission revoked.
    let owner = format!(
        "/api/v1/clients/{}/users/{}",
        account.client_id, account.owner_id
    );
    world
        .admin_call(
            "PATCH",
            &owner,
            json!({"permissions": ["profile", "invoices"]}),
        )
        .await;
    let url = world.token_url(&account, scope).await;
    refused(&url, StatusCode::FORBIDDEN, "permission").await;
    world
        .admin_call(
            "PATCH",
            &owner,
            json!({"permissions": ["sso", "profile", "invoices"]}),
        )
        .await;
    let url = world.token_url(&account, scope).await;
    assert_eq!(
        world.redeem(&url).await.0,
        StatusCode::FOUND,
        "allowed again at once"
    );

    assert_eq!(
        world.sessions(&account).await,
        2,
        "only the two successes signed in"
    );
    let activity = world.activity(&account).await;
    let details: Vec<&str> = activity.iter().map(|(_, d)| d.as_str()).collect();
    let outcomes: Vec<ActivityOutcome> = activity.iter().map(|(o, _)| *o).collect();
    use ActivityOutcome::{Refused, Success};
    assert_eq!(
        outcomes,
        [
            Success, Refused, Refused, Refused, Refused, Refused, Success
        ],
        "{details:?}"
    );
    for (detail, why) in details[1..6].iter().zip([
        "already used",
        "expired",
        "account is closed",
        "turned off",
        "lacks the sso permission",
    ]) {
        assert!(detail.contains(why), "{detail}");
        assert!(detail.contains(scope), "{detail}");
    }
    world.stop().await;
}

async fn one_of_fifty_parallel_redemptions_wins(backend: Backend) {
    let world = World::start(backend, Provisioning::Engine, |_| {}).await;
    let account = world.account("acme", &[]).await;
    let url = world.token_url(&account, "clientarea:invoices").await;
    let redemptions = (0..50).map(|_| world.redeem(&url));
    let results = futures::future::join_all(redemptions).await;
    let wins = results.iter().filter(|r| r.0 == StatusCode::FOUND).count();
    let used = results
        .iter()
        .filter(|r| r.0 == StatusCode::BAD_REQUEST && r.3.contains("already used"))
        .count();
    assert_eq!((wins, used), (1, 49));
    assert_eq!(
        results.iter().filter(|r| r.2.is_some()).count(),
        1,
        "one cookie"
    );
    assert_eq!(world.sessions(&account).await, 1);
    let activity = world.activity(&account).await;
    assert_eq!(
        activity
            .iter()
            .filter(|(o, _)| *o == ActivityOutcome::Success)
            .count(),
        1
    );
    assert_eq!(activity.len(), 50);
    world.stop().await;
}

async fn portal_owner_settings_and_users(backend: Backend) {
    let world = World::start(backend, Provisioning::Engine, |_| {}).await;
    let account = world.account("acme", &[]).await;
    let dev = world
        .admin_call(
            "POST",
            &format!("/api/v1/clients/{}/users", account.client_id),
            json!({"email": "dev@example.com", "permissions": ["sso", "tickets"]}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let stranger = world.account("globex", &[]).await;

    // Not signed in.
    let (status, page) = world
        .get_with_cookie("/portal/invoices", "panelink_session=nope")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("not signed in"), "{page}");
    let anonymous = world
        .http
        .patch(format!("{}/portal/api/v1/account", world.base))
        .json(&json!({"allow_sso": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );

    // Sign in.
    let url = world.token_url(&account, "clientarea:profile").await;
    let (_, _, set_cookie, _) = world.redeem(&url).await;
    let cookie = cookie_pair(&set_cookie.unwrap());
    let (status, page) = world.get_with_cookie("/portal/security", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&page);
    let origin = world.base.clone();
    let patch =
        async |path: &str, body: Value, csrf: Option<&str>, origin: Option<&str>, cookie: &str| {
            let mut request = world
                .http
                .patch(format!("{}{path}", world.base))
                .header("cookie", cookie)
                .json(&body);
            if let Some(csrf) = csrf {
                request = request.header("x-csrf-token", csrf);
            }
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            let response = request.send().await.unwrap();
            (
                response.status(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        };
    let off = json!({"allow_sso": false});
    let account_path = "/portal/api/v1/account";
    let (status, body) = patch(account_path, off.clone(), None, Some(&origin), &cookie).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _) = patch(
        account_path,
        off.clone(),
        Some("wrong"),
        Some(&origin),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = patch(
        account_path,
        off.clone(),
        Some(&csrf),
        Some("https://evil.example"),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = patch(
        account_path,
        json!({"allow_sso": "no"}),
        Some(&csrf),
        Some(&origin),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let client = format!("/api/v1/clients/{}", account.client_id);
    assert_eq!(
        world.admin_call("GET", &client, Value::Null).await["allow_sso"],
        true,
        "refusals change nothing"
    );

    let (status, body) = patch(
        account_path,
        off.clone(),
        Some(&csrf),
        Some(&origin),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["allow_sso"], false);
    assert_eq!(
        world.admin_call("GET", &client, Value::Null).await["allow_sso"],
        false
    );
    let url = world.token_url(&account, "clientarea:profile").await;
    assert_eq!(
        world.redeem(&url).await.0,
        StatusCode::FORBIDDEN,
        "SSO is off now"
    );
    let (status, page) = world.get_with_cookie("/portal/security", &cookie).await;
    assert_eq!(status, StatusCode::OK, "the open session keeps working");
    assert!(page.contains("id=\"allow-sso\">Off<"));
    assert!(
        page.contains("single sign-on turned off by acme@example.com"),
        "{page}"
    );

    // The HTML form turns it back on.
    let form = world
        .http
        .post(format!("{}/portal/security", world.base))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .form(&[("csrf", csrf.as_str()), ("allow_sso", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        world.admin_call("GET", &client, Value::Null).await["allow_sso"],
        true
    );
    let forged = world
        .http
        .post(format!("{}/portal/security", world.base))
        .header("cookie", &cookie)
        .form(&[("csrf", "forged"), ("allow_sso", "off")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        world.admin_call("GET", &client, Value::Null).await["allow_sso"],
        true
    );

    // User management: revoke dev's sso, refuse the owner, strangers and bad permissions.
    let dev_path = format!("/portal/api/v1/users/{dev}");
    let (status, body) = patch(
        &dev_path,
        json!({"permissions": ["tickets"]}),
        Some(&csrf),
        Some(&origin),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["permissions"], json!(["tickets"]));
    let users = world
        .admin_call(
            "GET",
            &format!("/api/v1/clients/{}/users", account.client_id),
            Value::Null,
        )
        .await;
    let dev_view = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == dev)
        .unwrap()
        .clone();
    assert_eq!(dev_view["permissions"], json!(["tickets"]), "{users}");
    let owner_path = format!("/portal/api/v1/users/{}", account.owner_id);
    let (status, _) = patch(
        &owner_path,
        json!({"permissions": []}),
        Some(&csrf),
        Some(&origin),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = patch(
        &format!("/portal/api/v1/users/{}", stranger.owner_id),
        json!({"permissions": []}),
        Some(&csrf),
        Some(&origin),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = patch(
        &dev_path,
        json!({"permissions": ["fly"]}),
        Some(&csrf),
        Some(&origin),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["permissions"].is_string(), "{body}");
    let (status, _) = patch(
        "/portal/api/v1/users/abc",
        json!({"permissions": []}),
        Some(&csrf),
        Some(&origin),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The form grants it back.
    let form = world
        .http
        .post(format!("{}/portal/users/{dev}", world.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("sso", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::SEE_OTHER);
    let (_, page) = world.get_with_cookie("/portal/users", &cookie).await;
    assert!(page.contains("dev@example.com"), "{page}");
    assert!(page.contains("sso, tickets"), "{page}");
    let audit = world
        .admin_call("GET", "/api/v1/audit", Value::Null)
        .await
        .to_string();
    assert!(
        audit.contains("portal:acme@example.com"),
        "portal changes are audited: {audit}"
    );

    // A user who is not the owner can look but not change.
    let dev_token = "DEVSESSIONDEVSESSIONDEVSESSIONDEVSESSION123";
    world
        .db
        .open_portal_session(&NewPortalSession {
            token_hash: hash_token(dev_token),
            client_id: account.client_id,
            user_id: dev,
            service_id: None,
            expires_at: now_ms() + 60_000,
        })
        .await
        .unwrap();
    let dev_cookie = format!("panelink_session={dev_token}");
    let (status, page) = world.get_with_cookie("/portal/security", &dev_cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Only the account owner"));
    let dev_csrf = csrf_of(&page);
    let (status, body) = patch(
        account_path,
        off.clone(),
        Some(&dev_csrf),
        Some(&origin),
        &dev_cookie,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = patch(
        account_path,
        off.clone(),
        Some(&csrf),
        Some(&origin),
        &dev_cookie,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "another session's CSRF token does not fit"
    );

    // Sign out; a closed account's sessions stop working.
    let logout = world
        .http
        .post(format!("{}/portal/logout", world.base))
        .header("cookie", &dev_cookie)
        .form(&[("csrf", dev_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::OK);
    assert!(
        logout.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        world.get_with_cookie("/portal", &dev_cookie).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        world.get_with_cookie("/portal", &cookie).await.0,
        StatusCode::OK
    );
    world
        .admin_call("PATCH", &client, json!({"status": "closed"}))
        .await;
    assert_eq!(
        world.get_with_cookie("/portal", &cookie).await.0,
        StatusCode::UNAUTHORIZED
    );
    world.stop().await;
}

async fn token_endpoint_rate_limits(backend: Backend) {
    let (db, _test_db) = crate::harness::database(backend).await;
    let (runtime, plugins) = shipped_plugins();
    let catalog = Arc::new(Catalog::new(
        runtime.clone(),
        Arc::new(Plugins::new()),
        db.clone(),
    ));
    catalog.adopt(plugins).await.unwrap();
    let sso = Sso::new(
        "https://billing.example",
        "https://billing.example/portal",
        SsoConfig {
            rate_limit_per_address: 5,
            rate_limit_per_credential: 2,
            ..SsoConfig::default()
        },
    );
    let state = AppState::new(
        db.clone(),
        catalog,
        Arc::new(crate::harness::NoSync),
        Events::new(),
        Limits::default(),
    )
    .with_sso(sso);
    let app = api::app(state);
    let call = async |from: [u8; 4], subscriber: &str| {
        let mut request = Request::post(format!("/oauth/token?{QUERY_INVOICES}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "subscriber_unique_id={subscriber}&token=x"
            )))
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((from, 40_000))));
        let response = app.clone().oneshot(request).await.unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        (body["error"].as_str().unwrap().to_owned(), retry_after)
    };
    let a = [10, 0, 0, 1];
    assert_eq!(call(a, "svc_one").await.0, "invalid_client");
    assert_eq!(call(a, "svc_one").await.0, "invalid_client");
    let (error, retry_after) = call(a, "svc_one").await;
    assert_eq!(error, "rate_limited", "per credential");
    assert!(
        retry_after.is_some_and(|s| (1..=30).contains(&s)),
        "{retry_after:?}"
    );
    let mut seen = BTreeSet::new();
    for n in 0..3 {
        seen.insert(call(a, &format!("svc_other{n}")).await.0);
    }
    assert_eq!(
        seen,
        BTreeSet::from(["invalid_client".to_owned(), "rate_limited".to_owned()])
    );
    let (error, retry_after) = call(a, "svc_fresh").await;
    assert_eq!(error, "rate_limited", "per address: 5 a minute");
    assert!(
        retry_after.is_some_and(|s| (1..=12).contains(&s)),
        "{retry_after:?}"
    );
    assert_eq!(
        call([10, 0, 0, 2], "svc_fresh").await.0,
        "invalid_client",
        "another address"
    );
    db.close().await;
}

/// A customer clicks a link the panel already shows while the batch that creates it is still
/// being written (so before the engine records it): the click signs them in.
async fn a_link_signs_in_from_its_first_click(backend: Backend) {
    let world = World::start(backend, Provisioning::Engine, |_| {}).await;
    // Every panel command takes a while: a batch's first links are on the panel seconds before
    // the batch answers and is recorded.
    world.sim.set_command_latency(Duration::from_millis(300));
    let links = cpanel_links(&[]);
    let settings: Vec<Value> = links
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({"scope": l.scope, "display_name": l.default_label,
                             "enabled": i + 1 < links.len()})
        })
        .collect();
    world
        .admin_call(
            "PUT",
            "/api/v1/applications/cpanel/links",
            json!({ "links": settings }),
        )
        .await;
    let user = "early";
    world.sim.add_account(user, "early.example");
    let client = world
        .admin_call(
            "POST",
            "/api/v1/clients",
            json!({"name": "Early Ltd", "email": "early@example.com"}),
        )
        .await;
    let service = world
        .admin_call(
            "POST",
            "/api/v1/services",
            json!({"client_id": client["id"], "server_id": world.server_id, "username": user,
                   "domain": "early.example", "status": "active"}),
        )
        .await;
    let service_id = service["id"].as_i64().unwrap();
    let first = app_name(&links[0].scope);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while world.sim.link(user, &first).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no link appeared");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recorded = |db: Db| async move {
        let (_, links) = db.recorded_state(world.server_id, "cpanel").await.unwrap();
        links.iter().filter(|l| l.service_id == service_id).count()
    };
    assert_eq!(recorded(world.db.clone()).await, 0, "already recorded");
    let outcome = world.sim.click(user, &first).await.unwrap();
    assert_eq!(
        outcome.source,
        RedirectSource::TokenEndpoint,
        "{:?}",
        outcome.token_error
    );
    // A scope this push does not carry is still refused with the same credential: the admin
    // hid it before the push started.
    let link = world.sim.link(user, &first).unwrap();
    let hidden = &links[links.len() - 1].scope;
    let query = format!(
        "scope=clientarea%3Asso+{}&module=cpanel",
        hidden.replace(':', "%3A")
    );
    let (status, body, _) = world
        .token_request(
            &query,
            &[
                ("subscriber_unique_id", link.subscriber_unique_id().unwrap()),
                ("token", link.token().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    world.stop().await;
}

/// The token endpoint speaks OAuth to whatever reaches it: a GET (or any method but POST) is a
/// 405 with the OAuth error body and `Allow: POST`, not the admin API's error body.
async fn the_token_endpoint_answers_oauth_errors_to_any_method(backend: Backend) {
    let world = World::start(backend, Provisioning::Manual, |_| {}).await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = world
            .http
            .request(
                method.clone(),
                format!("{}/oauth/token?{QUERY_INVOICES}", world.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
        assert_eq!(
            response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok()),
            Some("POST")
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{method}: {body}");
        assert!(body["error_description"].is_string(), "{body}");
        assert!(body.get("message").is_none(), "{body}");
    }
    world.stop().await;
}

async fn the_owners_sso_permission_decides_panel_clicks(backend: Backend) {
    // A click signs in as the account owner (it carries the service's credential, no user), so
    // the owner's `sso` permission is the one it is judged by: the owner revokes it in the
    // portal and clicks are refused, grants it back and they sign in again. Another user's
    // permission cannot make a click sign in or not, so the portal offers no control for it.
    let world = World::start(backend, Provisioning::Engine, |_| {}).await;
    let account = world.account("acme", &[]).await;
    let dev = world
        .admin_call(
            "POST",
            &format!("/api/v1/clients/{}/users", account.client_id),
            json!({"email": "dev@example.com", "permissions": ["sso", "tickets"]}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let url = world.token_url(&account, "clientarea:profile").await;
    let (status, _, set_cookie, _) = world.redeem(&url).await;
    assert_eq!(status, StatusCode::FOUND);
    let cookie = cookie_pair(&set_cookie.unwrap());
    let (status, page) = world.get_with_cookie("/portal/users", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let owner_form = format!("action=\"/portal/users/{}\"", account.owner_id);
    assert!(
        page.contains(&owner_form),
        "the owner's row has the control: {page}"
    );
    assert!(
        !page.contains(&format!("action=\"/portal/users/{dev}\"")),
        "no control that could not change anything: {page}"
    );
    assert!(page.contains("sign in as the account owner"), "{page}");
    let csrf = csrf_of(&page);
    let owner_sso = async |grant: &str| {
        world
            .http
            .post(format!("{}/portal/users/{}", world.base, account.owner_id))
            .header("cookie", &cookie)
            .header("origin", &world.base)
            .form(&[("csrf", csrf.as_str()), ("sso", grant)])
            .send()
            .await
            .unwrap()
            .status()
    };
    let users_path = format!("/api/v1/clients/{}/users", account.client_id);
    let owner_permissions = async || {
        let users = world.admin_call("GET", &users_path, Value::Null).await;
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == account.owner_id)
            .unwrap()["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let all = owner_permissions().await;
    assert!(all.contains(&"sso".to_owned()), "{all:?}");

    // Revoked: the next click is refused with that reason, and recorded.
    assert_eq!(owner_sso("off").await, StatusCode::SEE_OTHER);
    let without: Vec<String> = all.iter().filter(|p| *p != "sso").cloned().collect();
    assert_eq!(owner_permissions().await, without, "only sso is revoked");
    let url = world.token_url(&account, "clientarea:profile").await;
    let (status, _, set_cookie, page) = world.redeem(&url).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(set_cookie.is_none());
    assert!(page.contains("Single Sign-On permission"), "{page}");
    let activity = world.activity(&account).await;
    assert!(
        activity
            .iter()
            .any(|(o, d)| *o == ActivityOutcome::Refused && d.contains("lacks the sso permission")),
        "{activity:?}"
    );
    // Another user's permission decides nothing: granting dev everything changes no click.
    let (status, _) = world
        .admin_try(
            "PATCH",
            &format!("{users_path}/{dev}"),
            json!({"permissions": ["sso", "tickets", "profile"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let url = world.token_url(&account, "clientarea:profile").await;
    assert_eq!(world.redeem(&url).await.0, StatusCode::FORBIDDEN);

    // The owner may not drop their other permissions, in the JSON API either.
    let (status, page) = world.get_with_cookie("/portal/users", &cookie).await;
    assert_eq!(status, StatusCode::OK, "the open session keeps working");
    assert!(page.contains("not allowed"), "{page}");
    let partial = world
        .http
        .patch(format!(
            "{}/portal/api/v1/users/{}",
            world.base, account.owner_id
        ))
        .header("cookie", &cookie)
        .header("origin", &world.base)
        .header("x-csrf-token", &csrf)
        .json(&json!({"permissions": ["sso"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        owner_permissions().await,
        without,
        "refused: nothing changed"
    );

    // Granted back: clicks sign in again.
    assert_eq!(owner_sso("on").await, StatusCode::SEE_OTHER);
    assert_eq!(owner_permissions().await, all);
    let url = world.token_url(&account, "clientarea:profile").await;
    assert_eq!(world.redeem(&url).await.0, StatusCode::FOUND);
    world.stop().await;
}
