//! Hardening (issue 14), each item through the real HTTP server on port 0, on SQLite and
//! PostgreSQL: `/metrics` and the request log under made-up methods and paths; a server's API
//! token bound to where the server is; what an admin may grant; admin tokens (list, rotate,
//! revoke, expiry, last use) and deactivation; header, body and idle timeouts and the connection
//! cap; sign-in destinations that stay in the client area; the secret key's form and its file's
//! mode; the sign-in redemption's rate limit, IPv6 /64 buckets and trusted proxies; every
//! route's statuses against the OpenAPI document.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use panelink::config::{Config, Layer};
use panelink::crypto::SecretBox;
use panelink::storage::Actor;
use panelink::sync_port::{RecordChange, RecordedLink};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{Backend, LogCapture, NoSync, TEST_SECRET_KEY, TestDb, on_both};
use crate::live::{BOUND, Live};

on_both!(
    legacy_server_tokens_are_sealed_for_their_place_once,
    made_up_methods_and_paths_do_not_grow_metrics_or_logs,
    moving_a_server_needs_its_token_again,
    admins_grant_only_what_they_hold,
    admin_tokens_are_listed_rotated_revoked_and_expire,
    slow_clients_are_cut_off,
    connections_beyond_the_cap_are_turned_away,
    sign_in_stays_in_the_client_area,
    the_secret_key_is_32_random_bytes,
    redemptions_are_rate_limited_and_made_up_tokens_cost_no_write,
    per_address_limits_group_ipv6_and_believe_only_trusted_proxies,
    every_route_answers_only_statuses_it_documents,
);

fn random_word(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        hex::encode(rand::random::<[u8; 6]>()).to_uppercase()
    )
}

/// The `panelink_http_*` sample lines of a metrics text.
fn request_series(metrics: &str) -> Vec<&str> {
    metrics
        .lines()
        .filter(|l| l.starts_with("panelink_http_"))
        .collect()
}

async fn made_up_methods_and_paths_do_not_grow_metrics_or_logs(backend: Backend) {
    let capture = LogCapture::default();
    let _guard = capture.install();
    let live = Live::start(backend, |_| {}).await;
    // Every label a first round of ordinary requests makes.
    let warm_up = async || {
        live.metrics().await;
        live.http
            .get(format!("{}/healthz", live.base))
            .send()
            .await
            .unwrap();
        live.http
            .get(format!("{}/no/such/{}", live.base, random_word("p")))
            .send()
            .await
            .unwrap();
        live.http
            .request(
                reqwest::Method::from_bytes(random_word("M").as_bytes()).unwrap(),
                format!("{}/healthz", live.base),
            )
            .send()
            .await
            .unwrap();
    };
    warm_up().await;
    warm_up().await;
    let before = request_series(&live.metrics().await).len();

    let mut words = Vec::new();
    for _ in 0..50 {
        let method = random_word("PROBE");
        let path = random_word("/nothing-here/");
        let answer = live
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/healthz", live.base),
            )
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_client_error(), "{method}: {answer:?}");
        let answer = live
            .http
            .get(format!("{}{path}", live.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        words.push(method);
        words.push(path);
    }
    let metrics = live.metrics().await;
    let after = request_series(&metrics);
    assert_eq!(
        after.len(),
        before,
        "made-up methods and paths added series:\n{}",
        after.join("\n")
    );
    assert!(
        metrics.contains("method=\"OTHER\",route=\"/healthz\""),
        "{metrics}"
    );
    drop(_guard);
    live.stop().await;
    let logs = capture.text();
    assert!(logs.contains("request"), "the capture saw request lines");
    for word in &words {
        assert!(!metrics.contains(word.as_str()), "{word} in\n{metrics}");
        assert!(!logs.contains(word.as_str()), "{word} in the log");
    }
}

/// A listener that answers every request with 401 and keeps each request's head.
async fn recording_listener() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                kept.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    (addr, heads)
}

async fn moving_a_server_needs_its_token_again(backend: Backend) {
    const TOKEN: &str = "MOVINGSERVERTOKEN0123456789";
    let live = Live::start(backend, |_| {}).await;
    let (listener, heads) = recording_listener().await;
    let created = live
        .ok(
            "POST",
            "/api/v1/servers",
            json!({"name": "cp", "module": "cpanel", "hostname": "127.0.0.1", "port": 9,
                   "secure": false, "username": "root", "api_token": TOKEN}),
        )
        .await;
    let id = created["id"].as_i64().unwrap();
    let (_, servers_only) = live.admin_with("Server admins", &["manage_servers"]).await;
    let path = format!("/api/v1/servers/{id}");
    let check = format!("/api/v1/servers/{id}/check");

    // Moving the server without its token is refused, field by field, and changes nothing.
    for (field, body) in [
        ("port", json!({"port": listener.port()})),
        (
            "hostname",
            json!({"hostname": "localhost", "port": listener.port()}),
        ),
        ("secure", json!({"secure": true})),
    ] {
        let (status, answer) = live
            .call(&servers_only, "PATCH", &path, Some(body.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {body} → {answer}"
        );
        assert_eq!(answer["error"]["code"], "validation_failed", "{answer}");
        assert!(
            answer["error"]["fields"]["api_token"].is_string(),
            "{field}: {answer}"
        );
        let (status, _) = live.call(&servers_only, "POST", &check, None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, server) = live.call(&servers_only, "GET", &path, None).await;
    assert_eq!(
        (server["port"].clone(), server["secure"].clone()),
        (json!(9), json!(false))
    );
    // A patch that does not move it needs no token; the same place given again is no move.
    let (status, answer) = live
        .call(
            &servers_only,
            "PATCH",
            &path,
            Some(json!({"name": "renamed", "hostname": "127.0.0.1", "port": 9, "secure": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        heads.lock().unwrap().is_empty(),
        "the token went to a place no admin gave it for: {:?}",
        heads.lock().unwrap()
    );

    // The row moved by SQL: the token cannot be opened for the new place, with a clear error.
    live.raw_sql(&format!(
        "UPDATE servers SET port = {} WHERE id = {id}",
        listener.port()
    ))
    .await;
    let (status, answer) = live.call(&servers_only, "POST", &check, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("API token") && message.contains("again"),
        "{answer}"
    );
    assert!(!answer.to_string().contains(TOKEN));
    assert!(
        heads.lock().unwrap().is_empty(),
        "a moved row's token was sent: {:?}",
        heads.lock().unwrap()
    );

    // Moving it with the token again is allowed, and that token goes there.
    let (status, answer) = live
        .call(
            &servers_only,
            "PATCH",
            &path,
            Some(json!({"port": listener.port(), "api_token": "NEWPLACETOKEN"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = live.call(&servers_only, "POST", &check, None).await;
    assert_eq!(status, StatusCode::OK);
    let seen = heads.lock().unwrap().join("\n");
    assert!(seen.contains("NEWPLACETOKEN"), "{seen}");
    assert!(!seen.contains(TOKEN), "{seen}");
    let doc = live
        .http
        .get(format!("{}/api/v1/openapi.json", live.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        doc.contains("requires `api_token`"),
        "the OpenAPI document says so"
    );
    live.stop().await;
}

async fn legacy_server_tokens_are_sealed_for_their_place_once(backend: Backend) {
    let (db, test_db) = crate::harness::database(backend).await;
    let server = db
        .create_server(
            &Actor::cli(),
            &panelink::storage::NewServer {
                name: panelink::model::Name::parse("old").unwrap(),
                module: panelink::model::ApplicationId::parse("cpanel").unwrap(),
                hostname: panelink::model::Hostname::parse("panel.example.com").unwrap(),
                port: panelink::model::Port::new(2087).unwrap(),
                secure: true,
                username: panelink::model::Username::parse("root").unwrap(),
                api_token: panelink::adapter::Secret::new("IGNORED"),
                enabled: true,
            },
            |_| None,
        )
        .await
        .unwrap()
        .0;
    // As an earlier version stored it: sealed for the purpose alone.
    let legacy = SecretBox::from_material(TEST_SECRET_KEY)
        .unwrap()
        .seal("server_api_token", "LEGACYTOKEN");
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&test_db.url).await.unwrap();
    let set_legacy = async || {
        sqlx::query("UPDATE servers SET api_token_sealed = $1 WHERE id = $2")
            .bind(&legacy)
            .bind(server.id)
            .execute(&raw)
            .await
            .unwrap();
    };
    set_legacy().await;
    let refused = db.server_target(server.id).await.unwrap_err();
    assert!(
        matches!(refused, panelink::storage::Error::ServerToken { .. }),
        "{refused}"
    );
    // Start-up (migrate) seals it for where the server is, once, in the audit log.
    db.migrate().await.unwrap();
    let target = db.server_target(server.id).await.unwrap();
    assert_eq!(target.api_token.expose(), "LEGACYTOKEN");
    let stored: String = sqlx::query_scalar("SELECT api_token_sealed FROM servers WHERE id = $1")
        .bind(server.id)
        .fetch_one(&raw)
        .await
        .unwrap();
    assert!(stored.starts_with("d1:"), "{stored}");
    let audit = db.audit_log(10).await.unwrap();
    assert_eq!(audit[0].action, "server.token_bind");
    assert!(!audit[0].detail.contains("LEGACYTOKEN"));
    db.migrate().await.unwrap();
    assert_eq!(db.audit_log(10).await.unwrap().len(), audit.len(), "once");
    // Moved by SQL: the token does not open for the new place.
    sqlx::query("UPDATE servers SET hostname = 'evil.example' WHERE id = $1")
        .bind(server.id)
        .execute(&raw)
        .await
        .unwrap();
    let refused = db.server_target(server.id).await.unwrap_err().to_string();
    assert!(
        refused.contains("https://evil.example:2087") && refused.contains("again"),
        "{refused}"
    );
    assert!(!refused.contains("LEGACYTOKEN"));
    raw.close().await;
    db.close().await;
}

async fn admins_grant_only_what_they_hold(backend: Backend) {
    let live = Live::start(backend, |_| {}).await;
    let (manager_id, manager) = live.admin_with("Admin managers", &["manage_admins"]).await;
    let (servers_id, _) = live.admin_with("Server admins", &["manage_servers"]).await;
    let forbidden = async |method: &str, path: &str, body: Value| {
        let (status, answer) = live.call(&manager, method, path, Some(body.clone())).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{method} {path} {body}: {answer}"
        );
    };
    // No admin with a role above one's own, no role with permissions one lacks.
    forbidden(
        "POST",
        "/api/v1/admins",
        json!({"email": "boss@example.com", "role": "Full Administrator"}),
    )
    .await;
    forbidden(
        "POST",
        "/api/v1/roles",
        json!({"name": "Bigger", "permissions": ["manage_admins", "manage_servers"]}),
    )
    .await;
    forbidden(
        "POST",
        "/api/v1/admins",
        json!({"email": "servers2@example.com", "role": "Server admins"}),
    )
    .await;
    // Nor a move of oneself or of another admin into a bigger role, nor a token for someone
    // who holds more.
    forbidden(
        "PATCH",
        &format!("/api/v1/admins/{manager_id}"),
        json!({"role": "Full Administrator"}),
    )
    .await;
    forbidden(
        "PATCH",
        &format!("/api/v1/admins/{servers_id}"),
        json!({"role": "Admin managers"}),
    )
    .await;
    forbidden("POST", "/api/v1/admins/1/tokens", json!({})).await;
    forbidden("PATCH", "/api/v1/admins/1", json!({"active": false})).await;
    // What one holds can be granted.
    let (status, answer) = live
        .call(
            &manager,
            "POST",
            "/api/v1/roles",
            Some(json!({"name": "Junior managers", "permissions": ["manage_admins"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = live
        .call(
            &manager,
            "POST",
            "/api/v1/admins",
            Some(json!({"email": "junior@example.com", "role": "Junior managers"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    // Nobody edits their own role, not even a Full Administrator.
    let (status, answer) = live
        .call(
            &live.admin,
            "PATCH",
            "/api/v1/admins/1",
            Some(json!({"role": "Admin managers"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    // The last Full Administrator stays.
    for (method, body) in [("PATCH", Some(json!({"active": false}))), ("DELETE", None)] {
        let (status, answer) = live
            .call(&live.admin, method, "/api/v1/admins/1", body)
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("conflict")),
            "{method}: {answer}"
        );
    }
    // With a second one, the first may go; the second is then the last.
    let second = live
        .ok(
            "POST",
            "/api/v1/admins",
            json!({"email": "second@example.com", "role": "Full Administrator"}),
        )
        .await;
    let second_token = second["token"].as_str().unwrap().to_owned();
    let (status, answer) = live
        .call(
            &second_token,
            "PATCH",
            "/api/v1/admins/1",
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["active"], false);
    let (status, _) = live.call(&live.admin, "GET", "/api/v1/admins", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a deactivated admin is out"
    );
    let second_id = second["id"].as_i64().unwrap();
    let (status, answer) = live
        .call(
            &second_token,
            "DELETE",
            &format!("/api/v1/admins/{second_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (_, audit) = live.call(&second_token, "GET", "/api/v1/audit", None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"admin.deactivate"), "{actions:?}");
    live.stop().await;
}

async fn admin_tokens_are_listed_rotated_revoked_and_expire(backend: Backend) {
    let live = Live::start(backend, |l| l.admin_token_ttl = Some(3600)).await;
    let (id, token) = live.admin_with("Server admins", &["manage_servers"]).await;
    let tokens_path = format!("/api/v1/admins/{id}/tokens");
    let (_, listed) = live.call(&live.admin, "GET", &tokens_path, None).await;
    let first = &listed["tokens"][0];
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1, "{listed}");
    assert!(first["last_used_at"].is_null(), "{listed}");
    assert!(first["expires_at"].is_string(), "{listed}");
    let token_id = first["id"].as_i64().unwrap();
    assert!(
        !listed.to_string().contains(&token),
        "no token is shown again"
    );

    let (status, _) = live.call(&token, "GET", "/api/v1/servers", None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = live.call(&live.admin, "GET", &tokens_path, None).await;
    assert!(listed["tokens"][0]["last_used_at"].is_string(), "{listed}");

    // Rotation: a new token, the old one stops at once.
    let (status, rotated) = live
        .call(
            &live.admin,
            "POST",
            &format!("{tokens_path}/{token_id}/rotate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new_token = rotated["token"].as_str().unwrap().to_owned();
    assert_eq!(
        live.call(&token, "GET", "/api/v1/servers", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        live.call(&new_token, "GET", "/api/v1/servers", None)
            .await
            .0,
        StatusCode::OK
    );
    // Revocation.
    let new_id = rotated["id"].as_i64().unwrap();
    let (status, _) = live
        .call(
            &live.admin,
            "DELETE",
            &format!("{tokens_path}/{new_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        live.call(&new_token, "GET", "/api/v1/servers", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // A fresh one; deactivation shuts it out until reactivation.
    let (status, issued) = live.call(&live.admin, "POST", &tokens_path, None).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let issued = issued["token"].as_str().unwrap().to_owned();
    let admin_path = format!("/api/v1/admins/{id}");
    live.ok("PATCH", &admin_path, json!({"active": false}))
        .await;
    assert_eq!(
        live.call(&issued, "GET", "/api/v1/servers", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    live.ok("PATCH", &admin_path, json!({"active": true})).await;
    assert_eq!(
        live.call(&issued, "GET", "/api/v1/servers", None).await.0,
        StatusCode::OK
    );
    let (_, audit) = live.call(&live.admin, "GET", "/api/v1/audit", None).await;
    let audit_text = audit.to_string();
    for action in [
        "admin_token.rotate",
        "admin_token.revoke",
        "admin_token.create",
        "admin.deactivate",
        "admin.activate",
    ] {
        assert!(audit_text.contains(action), "{action} in {audit_text}");
    }
    for secret in [&token, &new_token, &issued] {
        assert!(!audit_text.contains(secret.as_str()));
    }
    live.stop().await;

    // Tokens expire admin_token_ttl after they are issued.
    let live = Live::start(backend, |l| l.admin_token_ttl = Some(1)).await;
    let (_, short_lived) = live.admin_with("Server admins", &["manage_servers"]).await;
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let (status, _) = live
            .call(&short_lived, "GET", "/api/v1/servers", None)
            .await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token did not expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    live.stop().await;
}

/// Read until the server closes the connection; what it sent, or `None` when it stayed open
/// past the bound.
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed
        .is_ok()
        .then(|| String::from_utf8_lossy(&got).into_owned())
}

async fn slow_clients_are_cut_off(backend: Backend) {
    let live = Live::start(backend, |l| {
        l.http_header_timeout = Some(1);
        l.http_body_timeout = Some(1);
        l.http_idle_timeout = Some(1);
    })
    .await;
    // Half a request header.
    let mut half = TcpStream::connect(live.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = until_closed(&mut half).await;
    assert!(answer.is_some(), "half a header kept the connection open");
    // Half a body.
    let mut slow_body = TcpStream::connect(live.addr).await.unwrap();
    slow_body
        .write_all(
            format!(
                "POST /api/v1/roles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"name\":",
                live.admin
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answer = until_closed(&mut slow_body)
        .await
        .expect("half a body kept the connection open");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // An idle keep-alive connection.
    let mut idle = TcpStream::connect(live.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut idle)
        .await
        .expect("an idle connection stayed open");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Ordinary requests are unaffected (a new connection each).
    let (status, _) = live.call(&live.admin, "GET", "/api/v1/roles", None).await;
    assert_eq!(status, StatusCode::OK);
    live.stop().await;
}

/// A connection that was served a `/healthz` and stays open; `None` when it was turned away.
async fn served_connection(addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
        .await
        .expect("an answer or a close")
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    if head.starts_with("HTTP/1.1 200") {
        return Some(stream);
    }
    assert!(
        n == 0 || head.starts_with("HTTP/1.1 503"),
        "neither served nor turned away: {head}"
    );
    None
}

async fn connections_beyond_the_cap_are_turned_away(backend: Backend) {
    let live = Live::start(backend, |l| l.http_max_connections = Some(2)).await;
    // Two connections held open (a closed one frees its slot a moment after it closes).
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + BOUND;
    while held.len() < 2 {
        match served_connection(live.addr).await {
            Some(stream) => held.push(stream),
            None => assert!(
                tokio::time::Instant::now() < deadline,
                "no free slot for the first two connections"
            ),
        }
    }
    // A third is answered 503 and closed.
    let mut third = TcpStream::connect(live.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = until_closed(&mut third)
        .await
        .expect("the third connection was neither served nor closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // A slot frees up when a connection ends.
    drop(held);
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let ok = live
            .http
            .get(format!("{}/healthz", live.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot freed up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    live.stop().await;
}

async fn sign_in_stays_in_the_client_area(backend: Backend) {
    // A configured destination that is not a path (or a plugin's default) never leaves the
    // client area, even when it got past the configuration's checks …
    let live = Live::start_with(
        backend,
        |l| l.client_area_url = Some("http://client.example".into()),
        |c| {
            c.sso
                .destinations
                .insert("clientarea:invoices".into(), "@evil.example/".into());
        },
    )
    .await;
    let server = live
        .ok(
            "POST",
            "/api/v1/servers",
            json!({"name": "cp", "module": "cpanel", "hostname": "127.0.0.1", "port": 9,
                   "secure": false, "username": "root", "api_token": "T"}),
        )
        .await;
    let server_id = server["id"].as_i64().unwrap();
    live.ok(
        "PATCH",
        "/api/v1/applications/cpanel",
        json!({"enabled": true}),
    )
    .await;
    let client = live
        .ok(
            "POST",
            "/api/v1/clients",
            json!({"name": "Acme", "email": "owner@acme.example"}),
        )
        .await;
    let service = live
        .ok(
            "POST",
            "/api/v1/services",
            json!({"client_id": client["id"], "server_id": server_id, "username": "acme",
                   "domain": "acme.example", "status": "active"}),
        )
        .await;
    let service_id = service["id"].as_i64().unwrap();
    let (subscriber_id, secret) = live.db.mint_sso_credential(service_id).await.unwrap();
    live.db
        .record_changes(
            "cpanel",
            server_id,
            &[RecordChange::Link(RecordedLink {
                service_id,
                username: "acme".into(),
                scope: "clientarea:invoices".into(),
                label: "Invoices".into(),
                position: 1,
                credential_version: 1,
            })],
            None,
            None,
            &[],
        )
        .await
        .unwrap();
    let token = live
        .http
        .post(format!(
            "{}/oauth/token?scope=clientarea%3Asso+clientarea%3Ainvoices&module=cpanel",
            live.base
        ))
        .form(&[
            ("subscriber_unique_id", subscriber_id.as_str()),
            ("token", secret.expose()),
            ("attempt", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let token: Value = token.json().await.unwrap();
    let redirect = live
        .http
        .get(token["redirect_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    let landed = reqwest::Url::parse(&location).unwrap();
    assert_eq!(landed.host_str(), Some("client.example"), "{location}");
    assert!(location.starts_with("http://client.example/"), "{location}");
    live.stop().await;
    // … which refuse it.
    for bad in [
        "@evil.example/",
        "//evil.example/x",
        "evil.example",
        "/\\evil.example",
    ] {
        let refused = Config::resolve([Layer {
            sso_destinations: Some([("clientarea:invoices".to_owned(), bad.to_owned())].into()),
            ..Layer::default()
        }]);
        assert!(refused.is_err(), "{bad} was accepted");
    }
}

/// The host's start-up with this configuration (port 0, the test database, no sync engine).
async fn start_host(
    test_db: &TestDb,
    data_dir: &std::path::Path,
    secret_key: Option<&str>,
) -> anyhow::Result<panelink::boot::Host> {
    let config = Config::resolve([Layer {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(test_db.url.clone()),
        data_dir: Some(data_dir.to_path_buf()),
        secret_key: secret_key.map(str::to_owned),
        plugin_dir: Some(panelink_tests::plugin_dir()),
        ..Layer::default()
    }])
    .unwrap();
    let options = panelink::boot::Options {
        runtime: panelink_tests::runtime_config(),
        sync: Some(Arc::new(NoSync)),
        ..Default::default()
    };
    panelink::boot::Host::start(config, options).await
}

async fn the_secret_key_is_32_random_bytes(backend: Backend) {
    // A passphrase, a short key or a key that is not random is refused at start, saying what
    // to give instead.
    let test_db = TestDb::new(backend).await;
    let data = tempfile::tempdir().unwrap();
    for bad in [
        "a passphrase, long enough for the old rule",
        "short",
        &"0".repeat(64),
    ] {
        let Err(e) = start_host(&test_db, data.path(), Some(bad)).await else {
            panic!("{bad:?} was accepted as secret_key");
        };
        let message = format!("{e:#}");
        assert!(
            message.contains("32 random bytes") && message.contains("openssl rand -hex 32"),
            "{message}"
        );
        assert!(!message.contains(bad), "the key is not repeated: {message}");
    }
    // A key file as every version writes it (32 random bytes, hex) keeps working, but one
    // others can read is warned about at start; a hand-written short one is refused.
    let key_file = data.path().join(panelink::crypto::KEY_FILE);
    std::fs::write(&key_file, "0123").unwrap();
    let Err(e) = start_host(&test_db, data.path(), None).await else {
        panic!("a short key file was accepted");
    };
    let message = format!("{e:#}");
    assert!(
        message.contains("secret.key") && message.contains("32 random bytes"),
        "{message}"
    );
    std::fs::write(&key_file, hex::encode(rand::random::<[u8; 32]>())).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let capture = LogCapture::default();
    let host = {
        let _guard = capture.install();
        start_host(&test_db, data.path(), None)
            .await
            .expect("a key file of 32 random bytes starts")
    };
    #[cfg(unix)]
    {
        let logs = capture.text();
        assert!(
            logs.contains("WARN") && logs.contains("secret.key") && logs.contains("chmod 600"),
            "{logs}"
        );
    }
    drop(host);
}

/// A shaped access token no one issued.
fn made_up_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())[..43].to_owned()
}

/// A connection of its own that holds the database's write lock until dropped or released
/// (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the SSO tokens locked against writes, not reads).
struct WriteLock(sqlx::AnyConnection);

impl WriteLock {
    async fn take(url: &str, backend: Backend) -> WriteLock {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
        let statements: &[&str] = match backend {
            Backend::Sqlite => &["BEGIN IMMEDIATE"],
            Backend::Postgres => &["BEGIN", "LOCK TABLE sso_tokens IN EXCLUSIVE MODE"],
        };
        for statement in statements {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
        WriteLock(conn)
    }

    async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
    }
}

async fn redemptions_are_rate_limited_and_made_up_tokens_cost_no_write(backend: Backend) {
    // Limits of one a minute: a bucket refills only after a minute, whatever the machine's load.
    let live = Live::start(backend, |l| l.sso_redeem_rate_limit_per_address = Some(0)).await;
    let redeem = async |live: &Live, token: &str| {
        let response = tokio::time::timeout(
            BOUND,
            live.http
                .get(format!("{}/oauth/sso?access_token={token}", live.base))
                .send(),
        )
        .await
        .expect("a made-up token is answered without waiting for the database's write lock")
        .unwrap();
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry_after, response.text().await.unwrap())
    };
    // While another connection holds the write lock, made-up tokens are still refused: their
    // refusal needs no write.
    let lock = WriteLock::take(&live.url, backend).await;
    for _ in 0..3 {
        let (status, _, page) = redeem(&live, &made_up_token()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
        assert!(page.contains("not valid"), "{page}");
    }
    lock.release().await;
    live.stop().await;
    // One a minute from one address, then 429 with Retry-After, before any lookup.
    let live = Live::start(backend, |l| l.sso_redeem_rate_limit_per_address = Some(1)).await;
    assert_eq!(
        redeem(&live, &made_up_token()).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, retry_after, page) = redeem(&live, &made_up_token()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&seconds), "{seconds}");
    assert!(page.contains("Too many sign-in attempts"), "{page}");
    live.stop().await;
}

/// A request to `path` (GET, or POST with an empty form when `post`) as if forwarded for
/// `forwarded` (no header when `None`); the status.
async fn from_address(live: &Live, post: bool, path: &str, forwarded: Option<&str>) -> StatusCode {
    let url = format!("{}{path}", live.base);
    let mut request = if post {
        live.http.post(url).form(&[("attempt", "1")])
    } else {
        live.http.get(url)
    };
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.unwrap().status()
}

async fn per_address_limits_group_ipv6_and_believe_only_trusted_proxies(backend: Backend) {
    const LIMITED: StatusCode = StatusCode::TOO_MANY_REQUESTS;
    const REDEEM: &str = "/oauth/sso?access_token=x";
    // Without trusted proxies (the default), X-Forwarded-For is anyone's to write: ignored.
    // Limits of one a minute: a bucket refills only after a minute, whatever the machine's load.
    let live = Live::start(backend, |l| l.sso_redeem_rate_limit_per_address = Some(1)).await;
    assert_eq!(
        from_address(&live, false, REDEEM, Some("2001:db8::1")).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        from_address(&live, false, REDEEM, Some("203.0.113.77")).await,
        LIMITED,
        "a made-up X-Forwarded-For does not buy a fresh bucket"
    );
    live.stop().await;

    // Behind a trusted proxy: the rightmost address that is not a proxy, IPv6 by /64.
    let live = Live::start(backend, |l| {
        l.sso_redeem_rate_limit_per_address = Some(1);
        l.sso_rate_limit_per_address = Some(1);
        l.trusted_proxies = Some(vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()]);
    })
    .await;
    let expect = async |forwarded: &str, token_endpoint: bool, status: StatusCode| {
        let (post, path) = if token_endpoint {
            (
                true,
                "/oauth/token?scope=clientarea%3Asso+clientarea%3Ainvoices&module=cpanel",
            )
        } else {
            (false, REDEEM)
        };
        assert_eq!(
            from_address(&live, post, path, Some(forwarded)).await,
            status,
            "{path} for {forwarded}"
        );
    };
    let fresh = StatusCode::BAD_REQUEST;
    // Two addresses of one /64 share a bucket; the next /64 has its own.
    expect("2001:db8:1:2::1", false, fresh).await;
    expect("2001:db8:1:2:ffff:ffff:ffff:fffe", false, LIMITED).await;
    expect("2001:db8:1:3::1", false, fresh).await;
    // A spoofed left part is not believed: the client is the rightmost untrusted hop.
    expect("6.6.6.6, 198.51.100.7, 10.1.2.3", false, fresh).await;
    expect("7.7.7.7, 198.51.100.7", false, LIMITED).await;
    expect("198.51.100.8", false, fresh).await;
    // The token endpoint's per-address limit follows the same rule.
    expect("203.0.113.1", true, fresh).await;
    expect("9.9.9.9, 203.0.113.1", true, LIMITED).await;
    expect("2001:db8:9:9::1, 203.0.113.2", true, fresh).await;
    expect("::ffff:203.0.113.2", true, LIMITED).await;
    live.stop().await;

    let refused = Config::resolve([Layer {
        trusted_proxies: Some(vec!["proxy.example".into()]),
        ..Layer::default()
    }]);
    assert!(
        refused.is_err(),
        "a trusted proxy must be an address or a block"
    );
}

/// Fill each `{param}` of a documented path with `value`.
fn fill_path(path: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').unwrap();
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// One request of the status check.
struct Probe {
    what: String,
    token: Option<String>,
    path: String,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
}

async fn every_route_answers_only_statuses_it_documents(backend: Backend) {
    const BODY_LIMIT: usize = 2048;
    const PLUGIN_LIMIT: usize = 4096;
    let live = Live::start(backend, |l| {
        l.max_body_bytes = Some(BODY_LIMIT as u64);
        l.max_plugin_bytes = Some(PLUGIN_LIMIT as u64);
    })
    .await;
    let (_, powerless) = live.admin_with("Nobody", &[]).await;
    let doc: Value = live
        .http
        .get(format!("{}/api/v1/openapi.json", live.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let contract = std::fs::read_to_string(panelink_tests::repo_root().join("docs/api.md"))
        .expect("docs/api.md");
    let bad_ids = [
        "0".to_owned(),
        "-1".to_owned(),
        "abc".to_owned(),
        "99999999999999999999999".to_owned(),
        "%20".to_owned(),
        "x".repeat(300),
    ];
    let mut operations = 0;
    let mut probes_sent = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let documented: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            // Every documented error answer is the error body, and the contract names it.
            for status in &documented {
                if status.as_str() < "400" {
                    continue;
                }
                let schema = &op["responses"][status.as_str()]["content"]["application/json"]["schema"]
                    ["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{method} {path} {status}: not the error body"
                );
                assert!(
                    contract.contains(&format!(" {status}")),
                    "docs/api.md never mentions {status} ({method} {path})"
                );
            }
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let parameters = op["parameters"].as_array().cloned().unwrap_or_default();
            let in_path = parameters.iter().any(|p| p["in"] == "path");
            let query: Vec<&str> = parameters
                .iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let body_type = op["requestBody"]["content"]
                .as_object()
                .and_then(|c| c.keys().next().cloned());
            let some_ids = fill_path(path, "1");
            let admin = Some(live.admin.clone());
            let mut probes = vec![
                Probe {
                    what: "no token".into(),
                    token: None,
                    path: some_ids.clone(),
                    content_type: None,
                    body: None,
                },
                Probe {
                    what: "unknown token".into(),
                    token: Some(format!("plk_{}", "0".repeat(64))),
                    path: some_ids.clone(),
                    content_type: None,
                    body: None,
                },
                Probe {
                    what: "not a bearer token".into(),
                    token: Some(String::new()),
                    path: some_ids.clone(),
                    content_type: None,
                    body: None,
                },
            ];
            if secured {
                probes.push(Probe {
                    what: "a token without permissions".into(),
                    token: Some(powerless.clone()),
                    path: some_ids.clone(),
                    content_type: body_type.clone(),
                    body: None,
                });
            }
            // Nothing real is touched: requests that could be served name ids that do not
            // exist, or carry bodies that cannot be read.
            let nowhere = fill_path(path, "987654321");
            if let Some(body_type) = &body_type {
                let json = body_type.contains("json");
                let limit = if json { BODY_LIMIT } else { PLUGIN_LIMIT };
                for (what, content_type, body) in [
                    ("wrong content type", "text/plain", b"{}".to_vec()),
                    (
                        "wrong content type (a form)",
                        "application/x-www-form-urlencoded",
                        b"a=1".to_vec(),
                    ),
                    (
                        "malformed body",
                        body_type.as_str(),
                        b"{\"unterminated".to_vec(),
                    ),
                    ("oversized body", body_type.as_str(), vec![b' '; limit + 1]),
                    ("wrong shape", body_type.as_str(), b"[]".to_vec()),
                    (
                        "unknown field",
                        body_type.as_str(),
                        b"{\"nope\": 1}".to_vec(),
                    ),
                ] {
                    probes.push(Probe {
                        what: what.into(),
                        token: admin.clone(),
                        path: nowhere.clone(),
                        content_type: Some(content_type.into()),
                        body: Some(body),
                    });
                }
            }
            if in_path {
                for id in &bad_ids {
                    probes.push(Probe {
                        what: format!("path id {id:.20}"),
                        token: admin.clone(),
                        path: fill_path(path, id),
                        content_type: body_type.clone(),
                        body: body_type.as_ref().map(|_| b"{}".to_vec()),
                    });
                }
            }
            if !query.is_empty() && method == "get" {
                let bad: Vec<String> = query.iter().map(|q| format!("{q}=-1x")).collect();
                probes.push(Probe {
                    what: "bad query".into(),
                    token: admin.clone(),
                    path: format!("{nowhere}?{}", bad.join("&")),
                    content_type: None,
                    body: None,
                });
            }
            for probe in probes {
                let mut request = live.http.request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{}", live.base, probe.path),
                );
                match probe.token.as_deref() {
                    None => {}
                    Some("") => request = request.header("authorization", "Basic cm9vdDpyb290"),
                    Some(token) => request = request.bearer_auth(token),
                }
                if let Some(content_type) = &probe.content_type {
                    request = request.header("content-type", content_type);
                }
                if let Some(body) = probe.body {
                    request = request.body(body);
                }
                let response = tokio::time::timeout(BOUND, request.send())
                    .await
                    .unwrap_or_else(|_| panic!("{method} {path}, {}: no answer", probe.what))
                    .unwrap();
                probes_sent += 1;
                let status = response.status();
                let is_json = response
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v.to_str().unwrap_or("").starts_with("application/json"));
                let text = response.text().await.unwrap_or_default();
                assert!(
                    documented.iter().any(|d| d.as_str() == status.as_str()),
                    "{} {path}, {} ({}): answered {status}, documented {documented:?}: {text}",
                    method.to_uppercase(),
                    probe.what,
                    probe.path,
                );
                if status.is_client_error() || status.is_server_error() {
                    assert!(
                        is_json,
                        "{method} {path}, {}: {status} not JSON",
                        probe.what
                    );
                    let body: Value = serde_json::from_str(&text).unwrap();
                    assert!(
                        body["error"]["code"].is_string() && body["error"]["message"].is_string(),
                        "{method} {path}, {}: {text}",
                        probe.what
                    );
                }
                if secured && probe.token.is_none() {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
                }
            }
        }
    }
    assert!(operations >= 30, "only {operations} operations documented");
    assert!(probes_sent > operations * 3);
    live.stop().await;
}
