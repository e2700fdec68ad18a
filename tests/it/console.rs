//! The admin console over HTTP (`/admin`): signing in with an admin token, the session cookie the
//! admin API accepts, its CSRF rule, signing out, expiry, and pages that follow permissions. The
//! pages themselves, in a browser, are `tests/browser` (`cargo xtask browser-test`).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;

use crate::harness::{Backend, TestApp, on_both};

/// The default configuration's origin (`public_url` http://127.0.0.1:8080).
const ORIGIN: &str = "http://127.0.0.1:8080";

on_both!(
    console_session_is_accepted_by_the_api_with_its_csrf_rule,
    console_refuses_bad_tokens_and_cross_site_sign_in,
    console_pages_follow_permissions,
    console_session_ends_with_its_token,
    console_session_expires,
);

/// A response's status, `Set-Cookie` and body text.
struct Answer {
    status: StatusCode,
    cookie: Option<String>,
    location: Option<String>,
    policy: Option<String>,
    text: String,
}

async fn send(app: &TestApp, request: Request<Body>) -> Answer {
    let response = app.router_response(request).await;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cookie = header(header::SET_COOKIE);
    let location = header(header::LOCATION);
    let policy = header(header::CONTENT_SECURITY_POLICY);
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        cookie,
        location,
        policy,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn sign_in(app: &TestApp, token: &str, origin: &str) -> Answer {
    // Tokens are URL-safe text.
    let body = format!("token={token}");
    send(
        app,
        Request::post("/admin/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, origin)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

/// Sign in; the `name=value` of the session cookie.
async fn session(app: &TestApp, token: &str) -> String {
    let answer = sign_in(app, token, ORIGIN).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let cookie = answer.cookie.expect("a session cookie");
    assert!(cookie.starts_with("panelink_console="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(
        !cookie.contains("Secure"),
        "http: no Secure attribute: {cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

fn with_cookie(method: &str, path: &str, cookie: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::COOKIE, cookie)
}

/// The CSRF token a console page embeds.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf-token\" content=\"")
        .expect("a csrf meta tag");
    let rest = &page[at + "name=\"csrf-token\" content=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    let audit = app.call("GET", "/api/v1/audit", None).await;
    audit.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn console_session_is_accepted_by_the_api_with_its_csrf_rule(backend: Backend) {
    let app = TestApp::new(backend).await;
    let cookie = session(&app, &app.token.clone()).await;

    let list = send(
        &app,
        with_cookie("GET", "/api/v1/applications", &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);

    let page = send(
        &app,
        with_cookie("GET", "/admin/applications", &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let policy = page.policy.unwrap();
    assert!(
        policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    assert!(page.text.contains("/admin/assets/console.js"));
    let csrf = csrf_of(&page.text);

    let patch = |csrf: Option<&str>, origin: Option<&str>| {
        let mut request = with_cookie("PATCH", "/api/v1/applications/cpanel", &cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        request
            .body(Body::from(json!({"enabled": true}).to_string()))
            .unwrap()
    };
    for (csrf, origin) in [
        (None, Some(ORIGIN)),
        (Some("forged"), Some(ORIGIN)),
        (Some(csrf.as_str()), Some("https://evil.example")),
    ] {
        let refused = send(&app, patch(csrf, origin)).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{csrf:?} {origin:?}: {}",
            refused.text
        );
    }
    let enabled = app.call("GET", "/api/v1/applications/cpanel", None).await;
    assert_eq!(
        enabled.json["enabled"], false,
        "a refused request changed nothing"
    );
    let accepted = send(&app, patch(Some(&csrf), Some(ORIGIN))).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);

    // Sign out: needs the CSRF token too, then the cookie works nowhere.
    let sign_out = |csrf: &str| {
        with_cookie("POST", "/admin/sign-out", &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, ORIGIN)
            .body(Body::from(format!("csrf={csrf}")))
            .unwrap()
    };
    assert_eq!(
        send(&app, sign_out("forged")).await.status,
        StatusCode::FORBIDDEN
    );
    let out = send(&app, sign_out(&csrf)).await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    assert!(out.cookie.unwrap().contains("Max-Age=0"));
    let after = send(
        &app,
        with_cookie("GET", "/api/v1/applications", &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    let page = send(
        &app,
        with_cookie("GET", "/admin/applications", &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/admin/sign-in"));

    let actions = audit_actions(&app).await;
    assert!(
        actions.contains(&"console.sign_in".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"console.sign_out".to_owned()),
        "{actions:?}"
    );
}

async fn console_refuses_bad_tokens_and_cross_site_sign_in(backend: Backend) {
    let app = TestApp::new(backend).await;
    let wrong = sign_in(&app, "pnl_not_a_token", ORIGIN).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.cookie.is_none());
    assert!(wrong.text.contains("does not sign anyone in"));
    let cross = sign_in(&app, &app.token.clone(), "https://evil.example").await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(cross.cookie.is_none());
    // Not signed in: pages send to sign-in, the API answers 401.
    let page = send(
        &app,
        Request::get("/admin/servers").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let forged = send(
        &app,
        with_cookie(
            "GET",
            "/api/v1/servers",
            "panelink_console=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .body(Body::empty())
        .unwrap(),
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let script = send(
        &app,
        Request::get("/admin/assets/console.js")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.text.contains("EventSource"));
}

async fn console_pages_follow_permissions(backend: Backend) {
    let app = TestApp::new(backend).await;
    let desk = app.token_with("Desk", &["manage_clients"]).await;
    let cookie = session(&app, &desk).await;
    let get = |path: &'static str| {
        with_cookie("GET", path, &cookie)
            .body(Body::empty())
            .unwrap()
    };

    let home = send(&app, get("/admin")).await;
    assert_eq!(home.location.as_deref(), Some("/admin/clients"));
    let clients = send(&app, get("/admin/clients")).await;
    assert_eq!(clients.status, StatusCode::OK);
    assert!(clients.text.contains("href=\"/admin/services\""));
    assert!(
        !clients.text.contains("href=\"/admin/applications\""),
        "no Application Links page offered"
    );
    for path in [
        "/admin/applications",
        "/admin/applications/cpanel/configure",
        "/admin/applications/cpanel/log",
        "/admin/servers",
        "/admin/admins",
    ] {
        let refused = send(
            &app,
            with_cookie("GET", path, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    let api = send(&app, get("/api/v1/applications")).await;
    assert_eq!(api.status, StatusCode::FORBIDDEN);

    // A server's API token is write-only: no page shows it.
    let server = app
        .call(
            "POST",
            "/api/v1/servers",
            Some(json!({"name": "s", "module": "cpanel", "hostname": "127.0.0.1", "port": 9,
                        "secure": false, "username": "root", "api_token": "TOKEN-never-shown-0123"})),
        )
        .await;
    assert_eq!(server.status, StatusCode::CREATED, "{}", server.text);
    let root = session(&app, &app.token.clone()).await;
    for path in ["/admin/servers", "/admin/services", "/api/v1/servers"] {
        let page = send(
            &app,
            with_cookie("GET", path, &root).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.text.contains("TOKEN-never-shown"), "{path}");
    }
}

async fn console_session_ends_with_its_token(backend: Backend) {
    let app = TestApp::new(backend).await;
    let desk = app.token_with("Desk", &["manage_clients"]).await;
    let cookie = session(&app, &desk).await;
    let get = || {
        with_cookie("GET", "/api/v1/clients", &cookie)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&app, get()).await.status, StatusCode::OK);
    let admins = app.call("GET", "/api/v1/admins", None).await;
    let id = admins.json["admins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["role"] == "Desk")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let tokens = app
        .call("GET", &format!("/api/v1/admins/{id}/tokens"), None)
        .await;
    let token_id = tokens.json["tokens"][0]["id"].as_i64().unwrap();
    let revoked = app
        .call(
            "DELETE",
            &format!("/api/v1/admins/{id}/tokens/{token_id}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    assert_eq!(send(&app, get()).await.status, StatusCode::UNAUTHORIZED);
}

async fn console_session_expires(backend: Backend) {
    let app = TestApp::new(backend).await;
    let principal = app.db.authenticate(&app.token).await.unwrap().unwrap();
    app.db
        .open_console_session(&principal, "hash-live", Duration::from_secs(60))
        .await
        .unwrap();
    app.db
        .open_console_session(&principal, "hash-expired", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        app.db
            .console_principal("hash-live")
            .await
            .unwrap()
            .as_ref(),
        Some(&principal)
    );
    assert_eq!(
        app.db.console_principal("hash-expired").await.unwrap(),
        None
    );
}
