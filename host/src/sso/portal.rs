//! The built-in client area (`/portal`), where single sign-on lands when no external client
//! area is configured.
//!
//! - `GET /portal`, `GET /portal/<anything>`: who is signed in and which destination was reached
//!   (the path below `/portal` and the query), with links to the security settings and user
//!   management.
//! - `GET /portal/security`: "Allow Single Sign-On" (the owner can turn it on and off with the
//!   form, `POST /portal/security`) and the account's recent activity.
//! - `GET /portal/users`: the account's users and their permissions; the owner can grant or
//!   revoke a user's `sso` permission (`POST /portal/users/{id}`).
//! - `POST /portal/logout`.
//! - JSON, per `api.md`: `PATCH /portal/api/v1/account {"allow_sso": bool}` and
//!   `PATCH /portal/api/v1/users/{id} {"permissions": [...]}`; errors are the admin API's error
//!   body (`{"error": {"code", "message", "fields"?}}`).
//!
//! Authentication is the session cookie; a session of a closed account no longer works. Every
//! change needs the session's CSRF token (the `X-CSRF-Token` header for JSON, the `csrf` form
//! field for forms; pages embed it) and an `Origin`/`Referer` of this host when the browser sends
//! one, and only the account owner may change anything. Changes go through the same storage
//! functions as the admin API (recorded in the audit log as `portal:<e-mail>`) and into the
//! client's activity log.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::html::{self, esc};
use super::{SESSION_COOKIE, Source, Sso, cookie, csrf_token};
use crate::api::error::{ApiError, ErrorBody, ErrorDetail};
use crate::api::extract::parse_json;
use crate::api::{AppState, rfc3339};
use crate::crypto::hash_token;
use crate::model::{ClientPermission, ClientStatus, parse_set};
use crate::storage::{
    self, ActivityOutcome, Actor, ClientPatch, ClientUser, NewActivity, PortalSession,
};

/// The CSRF header of the JSON API.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in request.
struct Signed {
    session: PortalSession,
    csrf: String,
}

/// The session behind the request's cookie, when it is live and its account is not closed.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Signed>, storage::Error> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| super::token_shaped(t)) else {
        return Ok(None);
    };
    let session = state.db().portal_session(&hash_token(token)).await?;
    Ok(session
        .filter(|s| s.client_status != ClientStatus::Closed)
        .map(|session| Signed {
            session,
            csrf: csrf_token(token),
        }))
}

/// Why a change was refused.
#[derive(Debug)]
enum Refused {
    NotSignedIn,
    Forbidden(&'static str),
    Api(ApiError),
}

impl From<storage::Error> for Refused {
    fn from(e: storage::Error) -> Self {
        Refused::Api(e.into())
    }
}

impl Refused {
    fn json(self) -> Response {
        let (status, code, message) = match self {
            Refused::Api(e) => return e.into_response(),
            Refused::NotSignedIn => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Sign in to the client area first.",
            ),
            Refused::Forbidden(message) => (StatusCode::FORBIDDEN, "forbidden", message),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: code.to_owned(),
                    message: message.to_owned(),
                    fields: None,
                },
            }),
        )
            .into_response();
        html::no_store(response.headers_mut());
        response
    }

    fn page(self, sso: &Sso) -> Response {
        match self {
            Refused::NotSignedIn => not_signed_in(),
            Refused::Forbidden(message) => html::message(
                StatusCode::FORBIDDEN,
                "Not allowed",
                message,
                Some((&format!("{}/", sso.cookie_path), "Back to the client area")),
            ),
            Refused::Api(e) => {
                let status = e.status();
                let text = if status.is_server_error() {
                    "Something went wrong on our side. Please try again."
                } else {
                    "That change could not be made."
                };
                html::message(status, "Not changed", text, None)
            }
        }
    }
}

fn not_signed_in() -> Response {
    html::message(
        StatusCode::UNAUTHORIZED,
        "You are not signed in",
        "Open the client area from your control panel's Billing & Support links to sign in.",
        None,
    )
}

/// Who may make a state-changing request: someone signed in, carrying the session's CSRF token
/// and, when the browser says where it comes from, coming from this host; and only the owner.
async fn owner_change(
    state: &AppState,
    headers: &HeaderMap,
    presented: Option<&str>,
) -> Result<Signed, Refused> {
    let sso = state.sso();
    let signed = signed_in(state, headers)
        .await?
        .ok_or(Refused::NotSignedIn)?;
    let csrf_ok = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(signed.csrf.as_bytes())));
    if !csrf_ok || !sso.same_origin(headers) {
        return Err(Refused::Forbidden(
            "The request did not come from a client area page (missing or wrong CSRF token, or \
             another origin).",
        ));
    }
    if !signed.session.owner {
        return Err(Refused::Forbidden(
            "Only the account owner can change this.",
        ));
    }
    Ok(signed)
}

fn portal_actor(signed: &Signed) -> Actor {
    Actor {
        admin_id: None,
        name: format!("portal:{}", signed.session.email),
    }
}

/// Turn single sign-on on or off for the signed-in owner's account.
async fn set_allow_sso(
    state: &AppState,
    signed: &Signed,
    allow: bool,
    source: Option<IpAddr>,
) -> Result<bool, Refused> {
    let client = state
        .db()
        .update_client(
            &portal_actor(signed),
            signed.session.client_id,
            &ClientPatch {
                allow_sso: Some(allow),
                ..ClientPatch::default()
            },
        )
        .await?;
    state
        .db()
        .record_client_activity(&NewActivity {
            client_id: client.id,
            event: "security_change",
            outcome: ActivityOutcome::Success,
            user_id: Some(signed.session.user_id),
            service_id: None,
            actor: signed.session.email.clone(),
            source: source.map(|a| a.to_string()),
            detail: format!(
                "single sign-on turned {} by {}",
                if client.allow_sso { "on" } else { "off" },
                signed.session.email
            ),
        })
        .await?;
    tracing::info!(
        client_id = client.id,
        allow_sso = client.allow_sso,
        "portal: security setting changed"
    );
    Ok(client.allow_sso)
}

/// Replace the permissions of another user of the signed-in owner's account.
async fn set_permissions(
    state: &AppState,
    signed: &Signed,
    user_id: i64,
    permissions: &BTreeSet<ClientPermission>,
    source: Option<IpAddr>,
) -> Result<ClientUser, Refused> {
    let client_id = signed.session.client_id;
    let before = state.db().client_user(client_id, user_id).await?;
    if before.owner {
        return Err(Refused::Forbidden(
            "The account owner's permissions cannot be changed; the owner holds every permission.",
        ));
    }
    let user = state
        .db()
        .set_client_user_permissions(&portal_actor(signed), client_id, user_id, permissions)
        .await?;
    let sso_change = match (
        before.permissions.contains(&ClientPermission::Sso),
        user.permissions.contains(&ClientPermission::Sso),
    ) {
        (true, false) => " (sso revoked)",
        (false, true) => " (sso granted)",
        _ => "",
    };
    let list: Vec<&str> = user.permissions.iter().map(|p| p.as_str()).collect();
    state
        .db()
        .record_client_activity(&NewActivity {
            client_id,
            event: "user_permissions",
            outcome: ActivityOutcome::Success,
            user_id: Some(user.id),
            service_id: None,
            actor: signed.session.email.clone(),
            source: source.map(|a| a.to_string()),
            detail: format!(
                "permissions of {} set to [{}] by {}{sso_change}",
                user.email,
                list.join(", "),
                signed.session.email
            ),
        })
        .await?;
    tracing::info!(client_id, user_id, "portal: user permissions changed");
    Ok(user)
}

fn form_fields(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    html::no_store(response.headers_mut());
    response
}

fn internal(e: &storage::Error) -> Response {
    tracing::error!(error = %e, "portal request failed");
    html::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Something went wrong on our side. Please try again.",
        None,
    )
}

/// A signed-in page: navigation, the CSRF meta tag, the sign-out form.
fn signed_page(sso: &Sso, signed: &Signed, title: &str, body: &str) -> Response {
    let base = &sso.cookie_path;
    let csrf = esc(&signed.csrf);
    let head = format!("<meta name=\"csrf-token\" content=\"{csrf}\">");
    let nav = format!(
        "<nav><a href=\"{base}/\">Home</a><a href=\"{base}/security\">Security settings</a>\
         <a href=\"{base}/users\">User management</a>\
         <form class=\"inline\" method=\"post\" action=\"{base}/logout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button>Sign out</button></form></nav>\
         <p>Signed in as <strong>{email}</strong>{role} for <strong>{client}</strong>.</p>",
        base = esc(base),
        email = esc(&signed.session.email),
        role = if signed.session.owner {
            " (account owner)"
        } else {
            ""
        },
        client = esc(&signed.session.client_name),
    );
    html::respond(
        StatusCode::OK,
        html::page(title, &head, &format!("{nav}\n{body}")),
    )
}

/// `GET /portal`, `GET /portal/<anything>`.
pub async fn landing(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return not_signed_in(),
        Err(e) => return internal(&e),
    };
    let path = uri.path().strip_prefix("/portal").unwrap_or(uri.path());
    let path = if path.is_empty() { "/" } else { path };
    let reached = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let body = format!(
        "<p>You reached <code id=\"destination\">{}</code>.</p>\
         <p>This is the built-in client area: the page you asked for would show here.</p>",
        esc(&reached)
    );
    signed_page(state.sso(), &signed, "Client Area", &body)
}

/// `GET /portal/security`.
pub async fn security(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return not_signed_in(),
        Err(e) => return internal(&e),
    };
    let activity = match state
        .db()
        .client_activity(signed.session.client_id, 20)
        .await
    {
        Ok(activity) => activity,
        Err(e) => return internal(&e),
    };
    let on = signed.session.allow_sso;
    let mut body = format!(
        "<h2>Single Sign-On</h2><p>Allow Single Sign-On from your control panels: \
         <strong id=\"allow-sso\">{}</strong>.</p>",
        if on { "On" } else { "Off" }
    );
    if signed.session.owner {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"{}/security\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"allow_sso\" value=\"{}\">\
             <button>Turn Single Sign-On {}</button></form>",
            esc(&state.sso().cookie_path),
            esc(&signed.csrf),
            if on { "off" } else { "on" },
            if on { "off" } else { "on" },
        );
    } else {
        body.push_str("<p>Only the account owner can change this.</p>");
    }
    body.push_str(
        "<h2>Recent activity</h2><table><tr><th>When</th><th>What</th><th>Outcome</th>\
         <th>Detail</th></tr>",
    );
    for entry in &activity {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            esc(&rfc3339(entry.at)),
            esc(&entry.event),
            entry.outcome.as_str(),
            entry.outcome.as_str(),
            esc(&entry.detail)
        );
    }
    body.push_str("</table>");
    signed_page(state.sso(), &signed, "Security settings", &body)
}

/// `POST /portal/security` (form: `csrf`, `allow_sso=on|off`).
pub async fn security_form(
    State(state): State<AppState>,
    Source(source): Source,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sso = state.sso();
    let fields = form_fields(&body);
    let result = async {
        let signed = owner_change(&state, &headers, fields.get("csrf").map(String::as_str)).await?;
        let allow = match fields.get("allow_sso").map(String::as_str) {
            Some("on") => true,
            Some("off") => false,
            _ => {
                return Err(Refused::Api(ApiError::invalid_field(
                    "allow_sso",
                    "must be on or off",
                )));
            }
        };
        set_allow_sso(&state, &signed, allow, source).await
    }
    .await;
    match result {
        Ok(_) => see_other(&format!("{}/security", sso.cookie_path)),
        Err(refused) => refused.page(sso),
    }
}

/// `GET /portal/users`.
pub async fn users(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return not_signed_in(),
        Err(e) => return internal(&e),
    };
    let users = match state.db().client_users(signed.session.client_id).await {
        Ok(users) => users,
        Err(e) => return internal(&e),
    };
    let sso = state.sso();
    let mut body =
        String::from("<table><tr><th>User</th><th>Permissions</th><th>Single Sign-On</th></tr>");
    for user in &users {
        let has_sso = user.permissions.contains(&ClientPermission::Sso);
        let list: Vec<&str> = user.permissions.iter().map(|p| p.as_str()).collect();
        let action = if user.owner || !signed.session.owner {
            String::new()
        } else {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"{}/users/{}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"sso\" value=\"{}\"><button>{}</button></form>",
                esc(&sso.cookie_path),
                user.id,
                esc(&signed.csrf),
                if has_sso { "off" } else { "on" },
                if has_sso { "Revoke" } else { "Grant" },
            )
        };
        let _ = write!(
            body,
            "<tr id=\"user-{}\"><td>{}{}</td><td>{}</td><td>{} {action}</td></tr>",
            user.id,
            esc(&user.email),
            if user.owner { " (owner)" } else { "" },
            esc(&list.join(", ")),
            if has_sso { "allowed" } else { "not allowed" },
        );
    }
    body.push_str("</table>");
    signed_page(sso, &signed, "User management", &body)
}

/// `POST /portal/users/{id}` (form: `csrf`, `sso=on|off`): grant or revoke one user's `sso`
/// permission, keeping the others.
pub async fn user_form(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    Source(source): Source,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sso = state.sso();
    let fields = form_fields(&body);
    let result = async {
        let signed = owner_change(&state, &headers, fields.get("csrf").map(String::as_str)).await?;
        let Ok(Path(user_id)) = id else {
            return Err(Refused::Api(ApiError::not_found("user")));
        };
        let grant = match fields.get("sso").map(String::as_str) {
            Some("on") => true,
            Some("off") => false,
            _ => {
                return Err(Refused::Api(ApiError::invalid_field(
                    "sso",
                    "must be on or off",
                )));
            }
        };
        let mut permissions = state
            .db()
            .client_user(signed.session.client_id, user_id)
            .await?
            .permissions;
        if grant {
            permissions.insert(ClientPermission::Sso);
        } else {
            permissions.remove(&ClientPermission::Sso);
        }
        set_permissions(&state, &signed, user_id, &permissions, source).await
    }
    .await;
    match result {
        Ok(_) => see_other(&format!("{}/users", sso.cookie_path)),
        Err(refused) => refused.page(sso),
    }
}

/// `POST /portal/logout` (form: `csrf`).
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let sso = state.sso();
    let fields = form_fields(&body);
    let signed = match signed_in(&state, &headers).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return not_signed_in(),
        Err(e) => return internal(&e),
    };
    let csrf_ok = fields
        .get("csrf")
        .is_some_and(|p| bool::from(p.as_bytes().ct_eq(signed.csrf.as_bytes())));
    if !csrf_ok || !sso.same_origin(&headers) {
        return Refused::Forbidden("The request did not come from a client area page.").page(sso);
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.db().end_portal_session(&hash_token(token)).await
    {
        return internal(&e);
    }
    let mut response = html::message(
        StatusCode::OK,
        "You are signed out",
        "You have been signed out of the client area.",
        None,
    );
    response
        .headers_mut()
        .insert(header::SET_COOKIE, sso.clear_cookie());
    response
}

/// `PATCH /portal/api/v1/account` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountPatch {
    allow_sso: bool,
}

/// The account as the portal API shows it.
#[derive(Debug, Serialize)]
struct AccountView {
    id: i64,
    name: String,
    allow_sso: bool,
}

/// `PATCH /portal/api/v1/users/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    permissions: Vec<String>,
}

/// A user as the portal API shows it.
#[derive(Debug, Serialize)]
struct UserView {
    id: i64,
    email: String,
    owner: bool,
    permissions: Vec<String>,
}

fn header_csrf(headers: &HeaderMap) -> Option<&str> {
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok())
}

fn json_ok<T: Serialize>(value: T) -> Response {
    let mut response = Json(value).into_response();
    html::no_store(response.headers_mut());
    response
}

/// `PATCH /portal/api/v1/account` `{"allow_sso": bool}`.
pub async fn patch_account(
    State(state): State<AppState>,
    Source(source): Source,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let signed = owner_change(&state, &headers, header_csrf(&headers)).await?;
        let patch: AccountPatch = parse_json(&body).map_err(Refused::Api)?;
        let allow_sso = set_allow_sso(&state, &signed, patch.allow_sso, source).await?;
        Ok::<_, Refused>(AccountView {
            id: signed.session.client_id,
            name: signed.session.client_name.clone(),
            allow_sso,
        })
    }
    .await;
    match result {
        Ok(view) => json_ok(view),
        Err(refused) => refused.json(),
    }
}

/// `PATCH /portal/api/v1/users/{id}` `{"permissions": [...]}`.
pub async fn patch_user(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    Source(source): Source,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let signed = owner_change(&state, &headers, header_csrf(&headers)).await?;
        let Ok(Path(user_id)) = id else {
            return Err(Refused::Api(ApiError::not_found("user")));
        };
        let patch: UserPatch = parse_json(&body).map_err(Refused::Api)?;
        let permissions = parse_set(&patch.permissions, ClientPermission::parse)
            .map_err(|why| Refused::Api(ApiError::invalid_field("permissions", why)))?;
        let user = set_permissions(&state, &signed, user_id, &permissions, source).await?;
        Ok(UserView {
            id: user.id,
            email: user.email,
            owner: user.owner,
            permissions: user
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        })
    }
    .await;
    match result {
        Ok(view) => json_ok(view),
        Err(refused) => refused.json(),
    }
}
