//! The admin API in-process (`app(state)` + `oneshot`) on SQLite and PostgreSQL: the route list
//! and its OpenAPI document, the permission matrix, refused input, the applications and their
//! links, servers, clients and services, plugins, operations, and the server token's secrecy.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::http::StatusCode;
use panel_sim::{PanelSim, Profile, SimConfig};
use panelink::sync_port::SyncKind;
use serde_json::{Value, json};

use crate::harness::{
    Answer, Backend, Engine, Fixtures, LogCapture, TestApp, documented_operations,
    documented_routes, on_both,
};

on_both!(
    openapi_names_every_route_served,
    permission_matrix,
    bad_input_is_refused_and_changes_nothing,
    applications_come_from_the_plugins,
    links_default_save_and_validate,
    servers_crud_and_check,
    clients_users_and_services,
    plugins_list_upload_activate,
    operations_endpoints,
    server_token_never_leaks,
    serve_in_process_until_shutdown,
);

async fn openapi_doc(app: &TestApp) -> Value {
    let doc = app
        .send(TestApp::request("GET", "/api/v1/openapi.json", None, None))
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.content_type.starts_with("application/json"));
    assert!(
        doc.json["openapi"].as_str().unwrap_or("").starts_with("3."),
        "{}",
        doc.text
    );
    doc.json
}

/// Substitute a documented path's parameters.
fn concrete(path: &str, ids: &Ids) -> String {
    path.replace(
        "{id}/users/{user_id}",
        &format!("{}/users/{}", ids.client, ids.user),
    )
    .replace("/servers/{id}", &format!("/servers/{}", ids.server))
    .replace("/clients/{id}", &format!("/clients/{}", ids.client))
    .replace("/services/{id}", &format!("/services/{}", ids.service))
    .replace(
        "/admins/{id}/tokens/{token_id}",
        &format!("/admins/{}/tokens/{}", ids.admin, ids.token),
    )
    .replace("/admins/{id}", &format!("/admins/{}", ids.admin))
    .replace("/applications/{id}", "/applications/cpanel")
    .replace("/syncs/{id}", &format!("/syncs/{}", ids.sync))
    .replace(
        "{name}/versions/{version}",
        &format!("cpanel/versions/{}", ids.cpanel_version),
    )
    .replace("{name}", "cpanel")
}

struct Ids {
    server: i64,
    deletable_server: i64,
    /// An admin to change and whose tokens to manage, with a token to rotate and one to revoke.
    admin: i64,
    token: i64,
    deletable_token: i64,
    /// An admin to remove.
    deletable_admin: i64,
    client: i64,
    user: i64,
    service: i64,
    sync: i64,
    cpanel_version: String,
}

async fn ids(app: &TestApp) -> Ids {
    let Fixtures {
        server_id,
        client_id,
        user_id,
        service_id,
    } = app.fixtures().await;
    let enabled = app
        .call(
            "PATCH",
            "/api/v1/applications/cpanel",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(enabled.status, StatusCode::ACCEPTED, "{}", enabled.text);
    let sync = enabled.json["sync"]["id"]
        .as_i64()
        .expect("the fake engine reports a sync");
    let spare = app
        .call(
            "POST",
            "/api/v1/servers",
            Some(
                json!({"name": "spare", "module": "wpsquared", "hostname": "127.0.0.1", "port": 9,
                        "secure": false, "username": "root", "api_token": "SPARE"}),
            ),
        )
        .await;
    let plugin = app.state.catalog().plugins().get("cpanel").unwrap();
    let mut admins = Vec::new();
    for email in ["changed@example.com", "removed@example.com"] {
        let admin = app
            .call(
                "POST",
                "/api/v1/admins",
                Some(json!({"email": email, "role": "Full Administrator"})),
            )
            .await;
        assert_eq!(admin.status, StatusCode::CREATED, "{}", admin.text);
        admins.push((
            admin.json["id"].as_i64().unwrap(),
            admin.json["token_id"].as_i64().unwrap(),
        ));
    }
    let second = app
        .call(
            "POST",
            &format!("/api/v1/admins/{}/tokens", admins[0].0),
            None,
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    Ids {
        server: server_id,
        deletable_server: spare.json["id"].as_i64().unwrap(),
        admin: admins[0].0,
        token: admins[0].1,
        deletable_token: second.json["id"].as_i64().unwrap(),
        deletable_admin: admins[1].0,
        client: client_id,
        user: user_id,
        service: service_id,
        sync,
        cpanel_version: plugin.version().to_owned(),
    }
}

async fn openapi_names_every_route_served(backend: Backend) {
    let app = TestApp::new(backend).await;
    let doc = openapi_doc(&app).await;
    let operations = documented_operations(&doc);
    let documented: BTreeSet<(String, String)> = operations.keys().cloned().collect();
    let expected: BTreeSet<(String, String)> = documented_routes()
        .keys()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, expected,
        "the OpenAPI document and the contract's route list differ"
    );
    for ((method, path), permission) in &operations {
        assert_eq!(
            permission.as_deref(),
            documented_routes()[&(method.as_str(), path.as_str())],
            "{method} {path}: documented permission"
        );
    }
    // Every documented operation is served: protected ones answer 401 without a token (an
    // unserved path would be 404, a wrong method 405), public ones 200.
    let ids = Ids {
        server: 1,
        deletable_server: 1,
        admin: 1,
        token: 1,
        deletable_token: 1,
        deletable_admin: 1,
        client: 1,
        user: 1,
        service: 1,
        sync: 1,
        cpanel_version: "0".into(),
    };
    for ((method, path), permission) in &operations {
        let answer = app
            .send(TestApp::request(method, &concrete(path, &ids), None, None))
            .await;
        let expected = if permission.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        assert_eq!(answer.status, expected, "{method} {path}: {}", answer.text);
    }
    // And nothing else is: an unknown path is the JSON 404, a wrong method the JSON 405.
    let unknown = app
        .send(TestApp::request("GET", "/api/v1/nope", None, None))
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let wrong = app
        .send(TestApp::request(
            "DELETE",
            "/api/v1/clients",
            Some(&app.token),
            None,
        ))
        .await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

/// A body that succeeds for each write route (the fixtures' ids filled in).
fn success_body(method: &str, path: &str, ids: &Ids, n: usize) -> Option<Value> {
    Some(match (method, path) {
        ("POST", "/api/v1/roles") => json!({"name": format!("Role {n}"), "permissions": []}),
        ("POST", "/api/v1/admins") => {
            json!({"email": format!("admin{n}@example.com"), "role": "Full Administrator"})
        }
        ("POST", "/api/v1/servers") => json!({"name": "s", "module": "cpanel",
            "hostname": "panel.example.com", "username": "root", "api_token": "T"}),
        ("PATCH", "/api/v1/servers/{id}") => json!({"name": "renamed"}),
        ("PATCH", "/api/v1/admins/{id}") => json!({"active": true}),
        ("POST", "/api/v1/clients") => json!({"name": "C", "email": format!("c{n}@example.com")}),
        ("PATCH", "/api/v1/clients/{id}") => json!({"allow_sso": false}),
        ("POST", "/api/v1/clients/{id}/users") => {
            json!({"email": format!("u{n}@example.com"), "permissions": ["sso"]})
        }
        ("PATCH", "/api/v1/clients/{id}/users/{user_id}") => json!({"permissions": ["tickets"]}),
        ("POST", "/api/v1/services") => json!({"client_id": ids.client, "server_id": ids.server,
            "username": format!("user{n}"), "domain": "example.com"}),
        ("PATCH", "/api/v1/services/{id}") => json!({"status": "suspended"}),
        ("PATCH", "/api/v1/applications/{id}") => json!({"enabled": true}),
        ("PUT", "/api/v1/applications/{id}/links") => return None,
        _ => return None,
    })
}

/// What Full Administrator gets on each route in the matrix's state.
fn success_status(method: &str, path: &str) -> StatusCode {
    match (method, path) {
        ("DELETE", _) => StatusCode::NO_CONTENT,
        ("PATCH", "/api/v1/applications/{id}")
        | ("PUT", "/api/v1/applications/{id}/links")
        | ("POST", "/api/v1/applications/{id}/sync") => StatusCode::ACCEPTED,
        // Re-uploading an installed component answers the recorded version.
        ("POST", "/api/v1/plugins") => StatusCode::OK,
        // The only cPanel version is active: nothing earlier to roll back to.
        ("POST", "/api/v1/plugins/{name}/rollback") => StatusCode::CONFLICT,
        // The matrix's service has no links, so no credential to rotate.
        ("POST", "/api/v1/services/{id}/credential") => StatusCode::CONFLICT,
        // The matrix's server (port 9) cannot be asked for its accounts.
        ("POST", "/api/v1/servers/{id}/import") => StatusCode::SERVICE_UNAVAILABLE,
        ("POST", p) if !p.ends_with("/check") && !p.ends_with("/activate") => StatusCode::CREATED,
        _ => StatusCode::OK,
    }
}

async fn permission_matrix(backend: Backend) {
    let app = TestApp::new(backend).await;
    let ids = ids(&app).await;
    let doc = openapi_doc(&app).await;
    let operations = documented_operations(&doc);
    // One token per permission: a role holding every other permission.
    let all = [
        "configure_application_links",
        "manage_servers",
        "manage_clients",
        "manage_plugins",
        "manage_admins",
    ];
    let mut lacking = BTreeMap::new();
    for (i, permission) in all.iter().enumerate() {
        let others: Vec<&str> = all.iter().copied().filter(|p| p != permission).collect();
        lacking.insert(
            *permission,
            app.token_with(&format!("Without {i}"), &others).await,
        );
    }
    let links = app
        .call("GET", "/api/v1/applications/cpanel/links", None)
        .await;
    let links_body = json!({"links": links.json["links"].as_array().unwrap().iter().map(|l| json!({
        "scope": l["scope"], "display_name": l["display_name"], "enabled": l["enabled"]})).collect::<Vec<_>>()});
    let wasm = std::fs::read(panelink_tests::built_plugin("cpanel")).unwrap();

    let mut checked = 0;
    for (n, ((method, path), permission)) in operations.iter().enumerate() {
        let Some(permission) = permission else {
            continue;
        };
        let uri = if method == "DELETE" {
            // Removals act on spares: another server, a token the rotation does not need, an
            // admin of their own.
            let uri = concrete(path, &ids).replace(
                &format!("/servers/{}", ids.server),
                &format!("/servers/{}", ids.deletable_server),
            );
            if path.contains("{token_id}") {
                uri.replace(
                    &format!("/tokens/{}", ids.token),
                    &format!("/tokens/{}", ids.deletable_token),
                )
            } else {
                uri.replace(
                    &format!("/admins/{}", ids.admin),
                    &format!("/admins/{}", ids.deletable_admin),
                )
            }
        } else {
            concrete(path, &ids)
        };
        let body = if path == "/api/v1/plugins" && method == "POST" {
            Some(wasm.clone())
        } else if path.ends_with("/links") && method == "PUT" {
            Some(serde_json::to_vec(&links_body).unwrap())
        } else {
            success_body(method, path, &ids, n).map(|b| serde_json::to_vec(&b).unwrap())
        };
        let call = |token: Option<String>| {
            let body = body.clone();
            let uri = uri.clone();
            let method = method.clone();
            let app = &app;
            async move {
                app.send(TestApp::request(&method, &uri, token.as_deref(), body))
                    .await
            }
        };
        let none = call(None).await;
        assert_eq!(
            (none.status, none.code()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{method} {uri} without a token"
        );
        let bad = call(Some("plk_0000".into())).await;
        assert_eq!(
            (bad.status, bad.code()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{method} {uri} with a bad token"
        );
        let without = call(Some(lacking[permission.as_str()].clone())).await;
        assert_eq!(
            (without.status, without.code()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{method} {uri} without {permission}: {}",
            without.text
        );
        if path == "/api/v1/events" {
            // An event stream: only its head is read.
            let stream = app
                .router_response(TestApp::request(method, &uri, Some(&app.token), None))
                .await;
            assert_eq!(
                stream.status(),
                StatusCode::OK,
                "{method} {uri} as Full Administrator"
            );
            checked += 1;
            continue;
        }
        let full = call(Some(app.token.clone())).await;
        assert_eq!(
            full.status,
            success_status(method, path),
            "{method} {uri} as Full Administrator: {}",
            full.text
        );
        checked += 1;
    }
    assert_eq!(checked, 44, "every protected route was checked");
}

/// (method, path, raw body, status, code, field named in `fields`)
type BadCase = (
    &'static str,
    String,
    Option<Vec<u8>>,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

fn j(v: Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&v).unwrap())
}

fn raw(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let app = TestApp::new(backend).await;
    let f = app.fixtures().await;
    let links = app
        .call("GET", "/api/v1/applications/cpanel/links", None)
        .await;
    let good_links: Vec<Value> = links.json["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| json!({"scope": l["scope"], "display_name": l["display_name"], "enabled": true}))
        .collect();
    let with_link = |i: usize, link: Value| {
        let mut links = good_links.clone();
        links[i] = link;
        j(json!({ "links": links }))
    };
    let server = |extra: Value| {
        let mut body = json!({"name": "s", "module": "cpanel", "hostname": "panel.example.com",
                              "username": "root", "api_token": "T"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        j(body)
    };
    let long = "x".repeat(10_000);
    let (s, c, u, v) = (f.server_id, f.client_id, f.user_id, f.service_id);
    use StatusCode as S;
    let unprocessable = S::UNPROCESSABLE_ENTITY;
    let cases: Vec<BadCase> = vec![
        // Servers.
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"name": 5})),
            unprocessable,
            "validation_failed",
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"api_token": null})),
            unprocessable,
            "validation_failed",
            Some("api_token"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"colour": "red"})),
            unprocessable,
            "validation_failed",
            Some("colour"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"name": long})),
            unprocessable,
            "validation_failed",
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"name": "a\u{7}b"})),
            unprocessable,
            "validation_failed",
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"name": "   "})),
            unprocessable,
            "validation_failed",
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"module": "nope"})),
            unprocessable,
            "validation_failed",
            Some("module"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"port": 0})),
            unprocessable,
            "validation_failed",
            Some("port"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"port": 70000})),
            unprocessable,
            "validation_failed",
            Some("port"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"port": "2087"})),
            unprocessable,
            "validation_failed",
            Some("port"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"hostname": "bad host"})),
            unprocessable,
            "validation_failed",
            Some("hostname"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"username": "ro ot"})),
            unprocessable,
            "validation_failed",
            Some("username"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"api_token": ""})),
            unprocessable,
            "validation_failed",
            Some("api_token"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            server(json!({"secure": "yes"})),
            unprocessable,
            "validation_failed",
            Some("secure"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            raw("{\"name\": "),
            S::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            raw("{} trailing"),
            S::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            raw(""),
            S::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            raw("[]"),
            unprocessable,
            "validation_failed",
            Some("body"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            raw("null"),
            unprocessable,
            "validation_failed",
            Some("body"),
        ),
        (
            "POST",
            "/api/v1/servers".into(),
            Some(vec![b' '; 2 * 1024 * 1024]),
            S::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
        ),
        (
            "PATCH",
            "/api/v1/servers/999999".into(),
            j(json!({"name": "x"})),
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/servers/{s}"),
            j(json!({"port": -1})),
            unprocessable,
            "validation_failed",
            Some("port"),
        ),
        (
            "PATCH",
            format!("/api/v1/servers/{s}"),
            j(json!({"enabled": 1})),
            unprocessable,
            "validation_failed",
            Some("enabled"),
        ),
        (
            "PATCH",
            "/api/v1/servers/abc".into(),
            j(json!({"name": "x"})),
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "GET",
            "/api/v1/servers/999999".into(),
            None,
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "DELETE",
            format!("/api/v1/servers/{s}"),
            None,
            S::CONFLICT,
            "conflict",
            None,
        ),
        (
            "DELETE",
            "/api/v1/servers/999999".into(),
            None,
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "POST",
            "/api/v1/servers/999999/check".into(),
            None,
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        // Clients and users.
        (
            "POST",
            "/api/v1/clients".into(),
            j(json!({"name": "C", "email": "not-an-email"})),
            unprocessable,
            "validation_failed",
            Some("email"),
        ),
        (
            "POST",
            "/api/v1/clients".into(),
            j(json!({"name": "C", "email": "c@example.com", "status": "deleted"})),
            unprocessable,
            "validation_failed",
            Some("status"),
        ),
        (
            "POST",
            "/api/v1/clients".into(),
            j(json!({"name": "C\nD", "email": "c@example.com"})),
            unprocessable,
            "validation_failed",
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/clients".into(),
            j(json!({"email": "c@example.com"})),
            unprocessable,
            "validation_failed",
            Some("name"),
        ),
        (
            "PATCH",
            "/api/v1/clients/999999".into(),
            j(json!({"allow_sso": false})),
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/clients/{c}"),
            j(json!({"allow_sso": "no"})),
            unprocessable,
            "validation_failed",
            Some("allow_sso"),
        ),
        (
            "POST",
            format!("/api/v1/clients/{c}/users"),
            j(json!({"email": "x@example.com", "permissions": ["sso", "fly"]})),
            unprocessable,
            "validation_failed",
            Some("permissions"),
        ),
        (
            "POST",
            format!("/api/v1/clients/{c}/users"),
            j(json!({"email": "dev@acme.example", "permissions": []})),
            S::CONFLICT,
            "conflict",
            None,
        ),
        (
            "POST",
            "/api/v1/clients/999999/users".into(),
            j(json!({"email": "x@example.com", "permissions": []})),
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/clients/{c}/users/999999"),
            j(json!({"permissions": []})),
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/clients/{c}/users/{u}"),
            j(json!({"permissions": "sso"})),
            unprocessable,
            "validation_failed",
            Some("permissions"),
        ),
        // Services.
        (
            "POST",
            "/api/v1/services".into(),
            j(json!({"client_id": 999999, "server_id": s, "username": "x", "domain": "x.example"})),
            unprocessable,
            "validation_failed",
            Some("client_id"),
        ),
        (
            "POST",
            "/api/v1/services".into(),
            j(json!({"client_id": c, "server_id": 999999, "username": "x", "domain": "x.example"})),
            unprocessable,
            "validation_failed",
            Some("server_id"),
        ),
        (
            "POST",
            "/api/v1/services".into(),
            j(
                json!({"client_id": c, "server_id": s, "username": "x", "domain": "x.example", "status": "deleted"}),
            ),
            unprocessable,
            "validation_failed",
            Some("status"),
        ),
        (
            "POST",
            "/api/v1/services".into(),
            j(json!({"client_id": "abc", "server_id": s, "username": "x", "domain": "x.example"})),
            unprocessable,
            "validation_failed",
            Some("client_id"),
        ),
        (
            "POST",
            "/api/v1/services".into(),
            j(json!({"client_id": c, "server_id": s, "username": "x", "domain": "not a domain"})),
            unprocessable,
            "validation_failed",
            Some("domain"),
        ),
        (
            "GET",
            "/api/v1/services?server_id=abc".into(),
            None,
            unprocessable,
            "validation_failed",
            Some("query"),
        ),
        (
            "PATCH",
            "/api/v1/services/999999".into(),
            j(json!({"status": "active"})),
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/services/{v}"),
            j(json!({"server_id": 999999})),
            unprocessable,
            "validation_failed",
            Some("server_id"),
        ),
        // Application links.
        (
            "PUT",
            "/api/v1/applications/cpanel/links".into(),
            with_link(
                0,
                json!({"scope": "clientarea:nope", "display_name": "X", "enabled": true}),
            ),
            unprocessable,
            "validation_failed",
            Some("links[0].scope"),
        ),
        (
            "PUT",
            "/api/v1/applications/cpanel/links".into(),
            with_link(1, good_links[0].clone()),
            unprocessable,
            "validation_failed",
            Some("links[1].scope"),
        ),
        (
            "PUT",
            "/api/v1/applications/cpanel/links".into(),
            j(json!({"links": good_links[1..].to_vec()})),
            unprocessable,
            "validation_failed",
            Some("links"),
        ),
        (
            "PUT",
            "/api/v1/applications/cpanel/links".into(),
            with_link(
                2,
                json!({"scope": good_links[2]["scope"], "display_name": long, "enabled": true}),
            ),
            unprocessable,
            "validation_failed",
            Some("links[2].display_name"),
        ),
        (
            "PUT",
            "/api/v1/applications/cpanel/links".into(),
            with_link(
                2,
                json!({"scope": good_links[2]["scope"], "display_name": "a\u{0}b", "enabled": true}),
            ),
            unprocessable,
            "validation_failed",
            Some("links[2].display_name"),
        ),
        (
            "PUT",
            "/api/v1/applications/cpanel/links".into(),
            with_link(
                2,
                json!({"scope": good_links[2]["scope"], "display_name": " \t ", "enabled": true}),
            ),
            unprocessable,
            "validation_failed",
            Some("links[2].display_name"),
        ),
        (
            "PUT",
            "/api/v1/applications/cpanel/links".into(),
            with_link(
                3,
                json!({"scope": good_links[3]["scope"], "display_name": "X", "enabled": "yes"}),
            ),
            unprocessable,
            "validation_failed",
            Some("links[3].enabled"),
        ),
        (
            "PUT",
            "/api/v1/applications/cpanel/links".into(),
            with_link(3, json!({"scope": good_links[3]["scope"], "enabled": true})),
            unprocessable,
            "validation_failed",
            Some("links[3].display_name"),
        ),
        (
            "PUT",
            "/api/v1/applications/cpanel/links".into(),
            j(json!({"links": "all"})),
            unprocessable,
            "validation_failed",
            Some("links"),
        ),
        (
            "PUT",
            "/api/v1/applications/nope/links".into(),
            j(json!({"links": good_links})),
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "PATCH",
            "/api/v1/applications/cpanel".into(),
            j(json!({"enabled": "yes"})),
            unprocessable,
            "validation_failed",
            Some("enabled"),
        ),
        (
            "PATCH",
            "/api/v1/applications/cpanel".into(),
            j(json!({})),
            unprocessable,
            "validation_failed",
            Some("enabled"),
        ),
        (
            "PATCH",
            "/api/v1/applications/nope".into(),
            j(json!({"enabled": true})),
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "GET",
            "/api/v1/applications/nope/links".into(),
            None,
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "POST",
            "/api/v1/applications/cpanel/sync".into(),
            None,
            S::CONFLICT,
            "conflict",
            None,
        ),
        (
            "GET",
            "/api/v1/syncs/999999".into(),
            None,
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "GET",
            "/api/v1/syncs/abc".into(),
            None,
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        // Plugins.
        (
            "POST",
            "/api/v1/plugins".into(),
            raw("not a component"),
            unprocessable,
            "validation_failed",
            None,
        ),
        (
            "POST",
            "/api/v1/plugins".into(),
            Some(b"\0asm\x01\0\0\0".to_vec()),
            unprocessable,
            "validation_failed",
            None,
        ),
        (
            "POST",
            "/api/v1/plugins".into(),
            None,
            unprocessable,
            "validation_failed",
            None,
        ),
        (
            "POST",
            "/api/v1/plugins/nope/versions/1.0.0/activate".into(),
            None,
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "POST",
            "/api/v1/plugins/nope/rollback".into(),
            None,
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "POST",
            "/api/v1/plugins/cpanel/rollback".into(),
            None,
            S::CONFLICT,
            "conflict",
            None,
        ),
        // Admins and roles.
        (
            "POST",
            "/api/v1/roles".into(),
            j(json!({"name": "R", "permissions": ["root"]})),
            unprocessable,
            "validation_failed",
            Some("permissions"),
        ),
        (
            "POST",
            "/api/v1/roles".into(),
            j(json!({"name": "Full Administrator", "permissions": []})),
            S::CONFLICT,
            "conflict",
            None,
        ),
        (
            "POST",
            "/api/v1/admins".into(),
            j(json!({"email": "x@example.com", "role": "Nope"})),
            unprocessable,
            "validation_failed",
            Some("role"),
        ),
        (
            "POST",
            "/api/v1/admins".into(),
            j(json!({"email": "root@example.com", "role": "Full Administrator"})),
            S::CONFLICT,
            "conflict",
            None,
        ),
        (
            "POST",
            "/api/v1/admins".into(),
            j(json!({"email": "nope", "role": "Full Administrator"})),
            unprocessable,
            "validation_failed",
            Some("email"),
        ),
        (
            "GET",
            "/api/v1/audit?limit=0".into(),
            None,
            unprocessable,
            "validation_failed",
            Some("limit"),
        ),
        // Routing.
        (
            "GET",
            "/api/v1/nope".into(),
            None,
            S::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "DELETE",
            "/api/v1/clients".into(),
            None,
            S::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        ),
    ];
    let before = app.snapshot().await;
    for (method, path, body, status, code, field) in cases {
        let shown = body
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned());
        let answer: Answer = app
            .send(TestApp::request(method, &path, Some(&app.token), body))
            .await;
        assert_eq!(
            answer.status, status,
            "{method} {path} {shown:?}: {}",
            answer.text
        );
        assert!(answer.status.as_u16() < 500);
        assert_eq!(
            answer.code(),
            code,
            "{method} {path} {shown:?}: {}",
            answer.text
        );
        assert!(
            answer.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{method} {path}: {}",
            answer.text
        );
        if let Some(field) = field {
            let fields = &answer.json["error"]["fields"];
            assert!(
                fields.get(field).is_some(),
                "{method} {path} {shown:?}: expected field {field}: {}",
                answer.text
            );
        }
    }
    let after = app.snapshot().await;
    assert_eq!(before, after, "a refused request changed the database");
}

async fn applications_come_from_the_plugins(backend: Backend) {
    let app = TestApp::with(backend, Engine::Recording).await;
    let list = app.call("GET", "/api/v1/applications", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let apps = list.json["applications"].as_array().unwrap();
    let ids: Vec<&str> = apps.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["cpanel", "wpsquared"]);
    let cpanel = &apps[0];
    assert_eq!(cpanel["name"], "cPanel");
    assert_eq!(apps[1]["name"], "WP Squared");
    assert_eq!(cpanel["enabled"], false);
    assert_eq!(cpanel["status"], "disabled");
    assert_eq!(cpanel["warnings"], 0);
    assert!(
        cpanel["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert!(
        cpanel["plugin"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(cpanel["plugin"]["name"], "cpanel");
    assert_eq!(
        cpanel["servers"],
        json!({"total": 0, "supported": 0, "synced": 0, "failed": 0})
    );
    assert!(cpanel.get("sync").is_some_and(Value::is_null), "{cpanel}");

    app.fixtures().await;
    let enabled = app
        .call(
            "PATCH",
            "/api/v1/applications/cpanel",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(enabled.status, StatusCode::ACCEPTED, "{}", enabled.text);
    assert_eq!(enabled.json["enabled"], true);
    assert_eq!(enabled.json["status"], "active");
    assert!(enabled.json["sync"].is_null());
    assert_eq!(enabled.json["servers"]["total"], 1);
    let requests = app.recorder.as_ref().unwrap().requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].application, "cpanel");
    assert_eq!(requests[0].kind, SyncKind::Enable);
    // The same state again schedules nothing more.
    app.call(
        "PATCH",
        "/api/v1/applications/cpanel",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(app.recorder.as_ref().unwrap().requests().len(), 1);
    let repair = app
        .call("POST", "/api/v1/applications/cpanel/sync", None)
        .await;
    assert_eq!(repair.status, StatusCode::ACCEPTED);
    assert_eq!(repair.json, json!({"sync": null}));
    assert_eq!(
        app.recorder.as_ref().unwrap().requests()[1].kind,
        SyncKind::Repair
    );

    // With an engine that reports syncs: `syncing` while one is queued, and /syncs/{id}.
    let app = TestApp::new(backend).await;
    let enabled = app
        .call(
            "PATCH",
            "/api/v1/applications/wpsquared",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(enabled.json["status"], "syncing", "{}", enabled.text);
    let sync = &enabled.json["sync"];
    assert_eq!(sync["kind"], "enable");
    assert_eq!(sync["state"], "queued");
    let detail = app
        .call("GET", &format!("/api/v1/syncs/{}", sync["id"]), None)
        .await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.json["application"], "wpsquared");
    assert_eq!(detail.json["servers"], json!([]));

    // The log is the storage's, oldest first.
    app.db.start_log("cpanel").await.unwrap();
    app.db
        .append_log(
            "cpanel",
            &[panelink::storage::NewLogEntry {
                sync_id: Some(1),
                level: panelink::adapter::LogLevel::Warning,
                message: "You do not have a user named “bob”.".into(),
                server_id: Some(3),
                service_id: None,
            }],
        )
        .await
        .unwrap();
    let log = app
        .call("GET", "/api/v1/applications/cpanel/log", None)
        .await;
    assert_eq!(log.status, StatusCode::OK);
    let entry = &log.json["entries"][0];
    assert_eq!(entry["level"], "warning");
    assert_eq!(entry["server_id"], 3);
    assert!(entry.get("service_id").is_none());
    assert!(entry["at"].as_str().unwrap().ends_with('Z'));
    let cpanel = app.call("GET", "/api/v1/applications/cpanel", None).await;
    assert_eq!(cpanel.json["warnings"], 1);
}

async fn links_default_save_and_validate(backend: Backend) {
    let app = TestApp::new(backend).await;
    let links = app
        .call("GET", "/api/v1/applications/cpanel/links", None)
        .await;
    assert_eq!(links.status, StatusCode::OK);
    let links = links.json["links"].as_array().unwrap().clone();
    assert_eq!(links.len(), 14);
    let groups: Vec<&str> = links.iter().map(|l| l["group"].as_str().unwrap()).collect();
    assert_eq!(groups.iter().filter(|g| **g == "ordering").count(), 3);
    assert_eq!(groups.iter().filter(|g| **g == "support").count(), 6);
    assert_eq!(groups.iter().filter(|g| **g == "account").count(), 5);
    assert_eq!(links[0]["scope"], "clientarea:upgrade");
    assert_eq!(links[0]["default_label"], "Upgrade/Downgrade");
    assert_eq!(links[13]["scope"], "clientarea:invoices");
    for (i, link) in links.iter().enumerate() {
        assert_eq!(link["order"], i + 1);
        assert_eq!(link["enabled"], true);
        assert_eq!(link["display_name"], link["default_label"]);
    }

    // Save: reversed, one renamed (with spaces to trim), one hidden.
    let mut input: Vec<Value> = links
        .iter()
        .rev()
        .map(|l| json!({"scope": l["scope"], "display_name": l["default_label"], "enabled": true}))
        .collect();
    input[0]["display_name"] = json!("  My invoices  ");
    input[1]["enabled"] = json!(false);
    let saved = app
        .call(
            "PUT",
            "/api/v1/applications/cpanel/links",
            Some(json!({"links": input})),
        )
        .await;
    assert_eq!(saved.status, StatusCode::ACCEPTED, "{}", saved.text);
    assert!(saved.json["sync"].is_null(), "disabled: stored, not pushed");
    let again = app
        .call("GET", "/api/v1/applications/cpanel/links", None)
        .await;
    assert_eq!(again.json["links"], saved.json["links"]);
    let first = &again.json["links"][0];
    assert_eq!(first["scope"], "clientarea:invoices");
    assert_eq!(first["display_name"], "My invoices");
    assert_eq!(first["default_label"], "View Invoice History");
    assert_eq!(first["order"], 1);
    assert_eq!(again.json["links"][1]["enabled"], false);
    assert!(app.fake.as_ref().unwrap().requests().is_empty());

    // While enabled, saving asks for a configure sync.
    app.call(
        "PATCH",
        "/api/v1/applications/cpanel",
        Some(json!({"enabled": true})),
    )
    .await;
    let saved = app
        .call(
            "PUT",
            "/api/v1/applications/cpanel/links",
            Some(json!({"links": input})),
        )
        .await;
    assert_eq!(saved.json["sync"]["kind"], "configure", "{}", saved.text);
    let kinds: Vec<SyncKind> = app
        .fake
        .as_ref()
        .unwrap()
        .requests()
        .iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, [SyncKind::Enable, SyncKind::Configure]);

    // WP Squared has its own (default) configuration.
    let wp = app
        .call("GET", "/api/v1/applications/wpsquared/links", None)
        .await;
    assert_eq!(wp.json["links"][0]["scope"], "clientarea:upgrade");
}

async fn servers_crud_and_check(backend: Backend) {
    let app = TestApp::new(backend).await;
    let created = app
        .call(
            "POST",
            "/api/v1/servers",
            Some(
                json!({"name": " Main ", "module": "cpanel", "hostname": "Panel.Example.com",
                        "username": "root", "api_token": "CRUDTOKEN"}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.json["id"].as_i64().unwrap();
    for (key, value) in [
        ("name", json!("Main")),
        ("module", json!("cpanel")),
        ("hostname", json!("panel.example.com")),
        ("port", json!(2087)),
        ("secure", json!(true)),
        ("username", json!("root")),
        ("enabled", json!(true)),
    ] {
        assert_eq!(created.json[key], value, "{key}: {}", created.text);
    }
    assert!(created.json.get("api_token").is_none());
    let patched = app
        .call(
            "PATCH",
            &format!("/api/v1/servers/{id}"),
            // Moving a server needs its token again.
            Some(json!({"secure": false, "api_token": "CRUDTOKEN2"})),
        )
        .await;
    assert_eq!(
        (patched.json["secure"].clone(), patched.json["port"].clone()),
        (json!(false), json!(2086))
    );
    let list = app.call("GET", "/api/v1/servers", None).await;
    assert_eq!(list.json["servers"].as_array().unwrap().len(), 1);
    // Unreachable server: the check answers, unsupported, with a reason.
    let check = app
        .call("POST", &format!("/api/v1/servers/{id}/check"), None)
        .await;
    assert_eq!(check.status, StatusCode::OK, "{}", check.text);
    assert_eq!(check.json["supported"], false);
    assert!(!check.json["detail"].as_str().unwrap().is_empty());
    let deleted = app
        .call("DELETE", &format!("/api/v1/servers/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app
        .call("GET", &format!("/api/v1/servers/{id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let audit = app.call("GET", "/api/v1/audit", None).await;
    let actions: Vec<&str> = audit.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..3],
        ["server.delete", "server.update", "server.create"]
    );
    assert!(!audit.text.contains("CRUDTOKEN"));
}

async fn clients_users_and_services(backend: Backend) {
    let app = TestApp::new(backend).await;
    let f = app.fixtures().await;
    let client = app
        .call("GET", &format!("/api/v1/clients/{}", f.client_id), None)
        .await;
    assert_eq!(client.json["status"], "active");
    assert_eq!(client.json["allow_sso"], true);
    let users = app
        .call(
            "GET",
            &format!("/api/v1/clients/{}/users", f.client_id),
            None,
        )
        .await;
    let owner = &users.json["users"][0];
    assert_eq!(owner["id"], client.json["owner_user_id"]);
    assert_eq!(owner["owner"], true);
    assert_eq!(owner["email"], "owner@acme.example");
    assert!(
        owner["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("sso"))
    );
    let revoked = app
        .call(
            "PATCH",
            &format!("/api/v1/clients/{}/users/{}", f.client_id, f.user_id),
            Some(json!({"permissions": []})),
        )
        .await;
    assert_eq!(revoked.json["permissions"], json!([]));
    let closed = app
        .call(
            "PATCH",
            &format!("/api/v1/clients/{}", f.client_id),
            Some(json!({"status": "closed", "allow_sso": false})),
        )
        .await;
    assert_eq!(
        (
            closed.json["status"].clone(),
            closed.json["allow_sso"].clone()
        ),
        (json!("closed"), json!(false))
    );

    // Service changes of a disabled application schedule nothing; of an enabled one, a
    // service sync.
    let svc = format!("/api/v1/services/{}", f.service_id);
    app.call("PATCH", &svc, Some(json!({"status": "suspended"})))
        .await;
    assert!(app.fake.as_ref().unwrap().requests().is_empty());
    app.call(
        "PATCH",
        "/api/v1/applications/cpanel",
        Some(json!({"enabled": true})),
    )
    .await;
    let terminated = app
        .call("PATCH", &svc, Some(json!({"status": "terminated"})))
        .await;
    assert_eq!(terminated.json["status"], "terminated");
    let requests = app.fake.as_ref().unwrap().requests();
    assert_eq!(requests.last().unwrap().kind, SyncKind::Service);
    assert_eq!(requests.last().unwrap().service_id, Some(f.service_id));

    let by_server = app
        .call(
            "GET",
            &format!("/api/v1/services?server_id={}", f.server_id),
            None,
        )
        .await;
    assert_eq!(by_server.json["services"].as_array().unwrap().len(), 1);
    let none = app
        .call("GET", "/api/v1/services?client_id=999", None)
        .await;
    assert_eq!(none.json["services"], json!([]));
    let created = app
        .call(
            "POST",
            "/api/v1/services",
            Some(
                json!({"client_id": f.client_id, "server_id": f.server_id, "username": "",
                        "domain": "second.example"}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["status"], "pending");
    assert_eq!(created.json["username"], "");
}

async fn plugins_list_upload_activate(backend: Backend) {
    let app = TestApp::new(backend).await;
    let list = app.call("GET", "/api/v1/plugins", None).await;
    let plugins = list.json["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 2);
    for p in plugins {
        assert_eq!(p["active"], true);
        assert_eq!(p["state"], "active");
        assert_eq!(p["name"], p["application"]);
        assert!(
            p["world"]
                .as_str()
                .unwrap()
                .starts_with("panelink:adapter/adapter@")
        );
        assert!(p["installed_at"].as_str().unwrap().ends_with('Z'));
    }
    // A new application's first upload is installed, staged: nothing activates by itself.
    let misbehave = std::fs::read(panelink_tests::built_plugin("misbehave")).unwrap();
    let upload = app
        .send(TestApp::request(
            "POST",
            "/api/v1/plugins",
            Some(&app.token),
            Some(misbehave.clone()),
        ))
        .await;
    assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.text);
    assert_eq!(upload.json["application"], "misbehave");
    assert_eq!(upload.json["active"], false);
    assert_eq!(upload.json["state"], "staged");
    assert_eq!(upload.json["source"], "upload");
    let again = app
        .send(TestApp::request(
            "POST",
            "/api/v1/plugins",
            Some(&app.token),
            Some(misbehave),
        ))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let apps = app.call("GET", "/api/v1/applications", None).await;
    assert_eq!(apps.json["applications"].as_array().unwrap().len(), 2);
    let activated = app
        .call(
            "POST",
            &format!(
                "/api/v1/plugins/misbehave/versions/{}/activate",
                upload.json["version"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(activated.status, StatusCode::OK, "{}", activated.text);
    assert_eq!(activated.json["state"], "active");
    let apps = app.call("GET", "/api/v1/applications", None).await;
    assert_eq!(apps.json["applications"].as_array().unwrap().len(), 3);
    let version = app
        .state
        .catalog()
        .plugins()
        .get("cpanel")
        .unwrap()
        .version()
        .to_owned();
    let activated = app
        .call(
            "POST",
            &format!("/api/v1/plugins/cpanel/versions/{version}/activate"),
            None,
        )
        .await;
    assert_eq!(activated.status, StatusCode::OK, "{}", activated.text);
    assert_eq!(activated.json["active"], true);
    let garbage = app
        .send(TestApp::request(
            "POST",
            "/api/v1/plugins",
            Some(&app.token),
            Some(b"\0asm\x0d\0\x01\0junk".to_vec()),
        ))
        .await;
    assert_eq!(garbage.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        garbage.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("compile"),
        "{}",
        garbage.text
    );
}

async fn operations_endpoints(backend: Backend) {
    let app = TestApp::new(backend).await;
    let health = app
        .send(TestApp::request("GET", "/healthz", None, None))
        .await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = app
        .send(TestApp::request("GET", "/readyz", None, None))
        .await;
    assert_eq!(ready.status, StatusCode::OK);
    app.state.set_ready(false);
    let starting = app
        .send(TestApp::request("GET", "/readyz", None, None))
        .await;
    assert_eq!(
        (starting.status, starting.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    let api = app.call("GET", "/api/v1/servers", None).await;
    assert_eq!(
        api.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the API waits for readiness"
    );
    app.state.set_ready(true);
    app.send(TestApp::request("GET", "/api/v1/servers", None, None))
        .await;
    let metrics = app
        .send(TestApp::request("GET", "/metrics", None, None))
        .await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.content_type.starts_with("text/plain"));
    for needle in [
        "panelink_build_info{version=\"",
        "panelink_ready 1",
        "panelink_plugin_active{plugin=\"cpanel\"",
        "panelink_http_requests_total{method=\"GET\",route=\"/api/v1/servers\",status=\"401\"} 1",
        "panelink_http_requests_total{method=\"GET\",route=\"/api/v1/servers\",status=\"503\"} 1",
        "panelink_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1",
    ] {
        assert!(
            metrics.text.contains(needle),
            "missing {needle} in\n{}",
            metrics.text
        );
    }
    // The event stream opens (its body never ends; only the head is read here).
    let events = app
        .router_response(TestApp::request(
            "GET",
            "/api/v1/events",
            Some(&app.token),
            None,
        ))
        .await;
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
}

async fn server_token_never_leaks(backend: Backend) {
    const TOKEN: &str = "LEAKCHECKTOKEN0123456789ABCDEFGH";
    const NEW_TOKEN: &str = "LEAKCHECKTOKEN2XYZ";
    let app = TestApp::new(backend).await;
    let sim = PanelSim::start(
        SimConfig::new()
            .sample_accounts(2)
            .profile(Profile::Standard),
    )
    .await
    .unwrap();
    sim.set_api_credentials("root", TOKEN);
    let capture = LogCapture::default();
    let _guard = capture.install();
    let mut bodies = Vec::new();
    let created = app
        .call(
            "POST",
            "/api/v1/servers",
            Some(
                json!({"name": "sim", "module": "cpanel", "hostname": sim.addr().ip().to_string(),
                        "port": sim.addr().port(), "secure": false, "username": "root",
                        "api_token": TOKEN}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.json["id"].as_i64().unwrap();
    bodies.push(created.text);
    let check = app
        .call("POST", &format!("/api/v1/servers/{id}/check"), None)
        .await;
    assert_eq!(check.json["supported"], true, "{}", check.text);
    bodies.push(check.text);
    for path in [
        format!("/api/v1/servers/{id}"),
        "/api/v1/servers".into(),
        "/api/v1/audit".into(),
        "/api/v1/applications".into(),
    ] {
        bodies.push(app.call("GET", &path, None).await.text);
    }
    let patched = app
        .call(
            "PATCH",
            &format!("/api/v1/servers/{id}"),
            Some(json!({"api_token": NEW_TOKEN})),
        )
        .await;
    bodies.push(patched.text);
    let refused = app
        .call(
            "PATCH",
            &format!("/api/v1/servers/{id}"),
            Some(json!({"api_token": NEW_TOKEN, "port": 0})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    bodies.push(refused.text);
    let snapshot = app.snapshot().await.join("\n");
    drop(_guard);
    sim.shutdown().await;
    let logs = capture.text();
    assert!(
        logs.contains("request"),
        "the capture saw the request log lines:\n{logs}"
    );
    for secret in [TOKEN, NEW_TOKEN] {
        for body in &bodies {
            assert!(
                !body.contains(secret),
                "a response carries the token: {body}"
            );
        }
        assert!(
            !logs.contains(secret),
            "a log line carries the token:\n{logs}"
        );
        assert!(
            !snapshot.contains(secret),
            "the database holds the token in plaintext"
        );
    }
}

async fn serve_in_process_until_shutdown(backend: Backend) {
    let test_db = crate::harness::TestDb::new(backend).await;
    let data = tempfile::tempdir().unwrap();
    let config = panelink::config::Config::resolve([panelink::config::Layer {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(test_db.url.clone()),
        data_dir: Some(data.path().to_path_buf()),
        plugin_dir: Some(panelink_tests::plugin_dir()),
        ..Default::default()
    }])
    .unwrap();
    let options = panelink::boot::Options {
        runtime: panelink_tests::runtime_config(),
        ..Default::default()
    };
    let host = panelink::boot::Host::start(config, options).await.unwrap();
    let base = format!("http://{}", host.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(host.run(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready in 30 s: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        data.path().join("secret.key").exists(),
        "the key file was generated"
    );
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let unauthorized = client
        .get(format!("{base}/api/v1/applications"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    // An open event stream does not hold shutdown up.
    let db = panelink::storage::Db::connect(
        &test_db.url,
        std::sync::Arc::new(panelink::crypto::SecretBox::from_config(None, data.path()).unwrap()),
    )
    .await
    .unwrap();
    let (_, token) = db
        .create_admin(
            &panelink::storage::Actor::cli(),
            &panelink::model::Email::parse("ops@example.com").unwrap(),
            "Full Administrator",
        )
        .await
        .unwrap();
    db.close().await;
    let apps = client
        .get(format!("{base}/api/v1/applications"))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap();
    let apps: Value = apps.json().await.unwrap();
    assert_eq!(apps["applications"].as_array().unwrap().len(), 3, "{apps}");
    let events = client
        .get(format!("{base}/api/v1/events"))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("shut down within 10 s")
        .unwrap()
        .unwrap();
    drop(events);
}
