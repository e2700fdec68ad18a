//! The built-in client area over HTTP (`/portal`), where single sign-on lands when no external
//! client area is configured. Its rules (sessions, CSRF, who may change what) are
//! [`crate::sso::portal`]; this module reads requests and renders pages and JSON.
//!
//! - `GET /portal`, `GET /portal/<anything>`: who is signed in and which destination was reached
//!   (the path below `/portal` and the query), with links to the security settings and user
//!   management.
//! - `GET /portal/security`: "Allow Single Sign-On" (the owner can turn it on and off with the
//!   form, `POST /portal/security`) and the account's recent activity.
//! - `GET /portal/users`: the account's users and their permissions; the owner can grant or
//!   revoke their own `sso` permission, which decides whether links in the control panel sign
//!   in (`POST /portal/users/{id}`; a click always signs in as the owner, so the page offers
//!   the control on the owner's row only: see [`crate::sso::portal`]).
//! - `POST /portal/logout`.
//! - JSON, per `api.md`: `PATCH /portal/api/v1/account {"allow_sso": bool}` and
//!   `PATCH /portal/api/v1/users/{id} {"permissions": [...]}`; errors are the admin API's error
//!   body (`{"error": {"code", "message", "fields"?}}`).
//!
//! The session is the [`SESSION_COOKIE`] cookie; the CSRF token comes in the [`CSRF_HEADER`]
//! header for JSON and the `csrf` form field for forms, and every signed-in page embeds it
//! (`<meta name="csrf-token">` and the forms' hidden fields). Pages are [`CLIENT_AREA`] pages.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use bytes::Bytes;
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::extract::{Source, cookie, header_text, parse_json};
use super::page::{self, Site, no_store};
use super::{AppState, rfc3339};
use crate::model::{ClientPermission, parse_set};
use crate::sso::portal::{self as rules, Denied, Presented, SignedIn};
use crate::sso::{SESSION_COOKIE, Sso};
use crate::storage;

/// The client area's pages, and the single sign-on refusals shown on the way in.
pub const CLIENT_AREA: Site = Site {
    name: "Client Area",
};

/// The header of the JSON API that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// `/portal` and everything below it.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal", get(landing))
        .route("/portal/", get(landing))
        .route("/portal/security", get(security).post(security_form))
        .route("/portal/users", get(users))
        .route("/portal/users/{id}", post(user_form))
        .route("/portal/logout", post(logout))
        .route("/portal/api/v1/account", patch(patch_account))
        .route("/portal/api/v1/users/{id}", patch(patch_user))
        .route("/portal/{*rest}", get(landing))
}

/// The session cookie's value, from the `Cookie` headers.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}

/// What a state-changing request presents: its cookie, `Origin` and `Referer`, and `csrf`.
fn presented<'a>(headers: &'a HeaderMap, csrf: Option<&'a str>) -> Presented<'a> {
    Presented {
        session: session_cookie(headers),
        csrf,
        origin: header_text(headers, header::ORIGIN),
        referer: header_text(headers, header::REFERER),
    }
}

/// Why a request was refused, as an answer: a page for the forms, the error body for JSON.
#[derive(Debug)]
enum Refused {
    NotSignedIn,
    Forbidden(&'static str),
    Api(ApiError),
}

impl From<Denied> for Refused {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::NotSignedIn => Refused::NotSignedIn,
            Denied::Forbidden(why) => Refused::Forbidden(why),
            Denied::Storage(e) => Refused::Api(e.into()),
        }
    }
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
        no_store(response.headers_mut());
        response
    }

    fn page(self, sso: &Sso) -> Response {
        match self {
            Refused::NotSignedIn => not_signed_in(),
            Refused::Forbidden(message) => CLIENT_AREA.message(
                StatusCode::FORBIDDEN,
                "Not allowed",
                message,
                Some((
                    &format!("{}/", sso.portal_path()),
                    "Back to the client area",
                )),
            ),
            Refused::Api(e) => {
                let status = e.status();
                let text = if status.is_server_error() {
                    "Something went wrong on our side. Please try again."
                } else {
                    "That change could not be made."
                };
                CLIENT_AREA.message(status, "Not changed", text, None)
            }
        }
    }
}

fn not_signed_in() -> Response {
    CLIENT_AREA.message(
        StatusCode::UNAUTHORIZED,
        "You are not signed in",
        "Open the client area from your control panel's Billing & Support links to sign in.",
        None,
    )
}

fn internal(e: &storage::Error) -> Response {
    tracing::error!(error = %e, "portal request failed");
    CLIENT_AREA.message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Something went wrong on our side. Please try again.",
        None,
    )
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    no_store(response.headers_mut());
    response
}

fn form_fields(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// An `on`/`off` form field.
fn on_off(fields: &BTreeMap<String, String>, field: &str) -> Result<bool, Refused> {
    match fields.get(field).map(String::as_str) {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        _ => Err(Refused::Api(ApiError::invalid_field(
            field,
            "must be on or off",
        ))),
    }
}

/// The signed-in user of a page request; the answer to send instead when there is none.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<SignedIn, Response> {
    match rules::signed_in(state.db(), session_cookie(headers)).await {
        Ok(Some(signed)) => Ok(signed),
        Ok(None) => Err(not_signed_in()),
        Err(e) => Err(internal(&e)),
    }
}

/// A signed-in page: navigation, the CSRF meta tag, the sign-out form, who is signed in.
fn signed_page(sso: &Sso, signed: &SignedIn, title: &str, body: Markup) -> Response {
    let base = sso.portal_path();
    let session = &signed.session;
    let head = html! { meta name="csrf-token" content=(signed.csrf); };
    let body = html! {
        nav {
            a href={ (base) "/" } { "Home" }
            a href={ (base) "/security" } { "Security settings" }
            a href={ (base) "/users" } { "User management" }
            form.inline method="post" action={ (base) "/logout" } {
                input type="hidden" name="csrf" value=(signed.csrf);
                button { "Sign out" }
            }
        }
        p {
            "Signed in as " strong { (session.email) }
            @if session.owner { " (account owner)" }
            " for " strong { (session.client_name) } "."
        }
        (body)
    };
    page::respond(StatusCode::OK, CLIENT_AREA.page(title, head, body))
}

/// `GET /portal`, `GET /portal/<anything>`.
async fn landing(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(signed) => signed,
        Err(answer) => return answer,
    };
    let path = uri.path().strip_prefix("/portal").unwrap_or(uri.path());
    let path = if path.is_empty() { "/" } else { path };
    let reached = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let body = html! {
        p { "You reached " code id="destination" { (reached) } "." }
        p { "This is the built-in client area: the page you asked for would show here." }
    };
    signed_page(state.sso(), &signed, "Client Area", body)
}

/// `GET /portal/security`.
async fn security(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(signed) => signed,
        Err(answer) => return answer,
    };
    let activity = match state
        .db()
        .client_activity(signed.session.client_id, 20)
        .await
    {
        Ok(activity) => activity,
        Err(e) => return internal(&e),
    };
    let base = state.sso().portal_path();
    let on = signed.session.allow_sso;
    let switch_to = if on { "off" } else { "on" };
    let body = html! {
        h2 { "Single Sign-On" }
        p {
            "Allow Single Sign-On from your control panels: "
            strong id="allow-sso" { (if on { "On" } else { "Off" }) } "."
        }
        @if signed.session.owner {
            form method="post" action={ (base) "/security" } {
                input type="hidden" name="csrf" value=(signed.csrf);
                input type="hidden" name="allow_sso" value=(switch_to);
                button { "Turn Single Sign-On " (switch_to) }
            }
        } @else {
            p { "Only the account owner can change this." }
        }
        h2 { "Recent activity" }
        table {
            tr { th { "When" } th { "What" } th { "Outcome" } th { "Detail" } }
            @for entry in &activity {
                tr {
                    td { (rfc3339(entry.at)) }
                    td { (entry.event) }
                    td class=(entry.outcome.as_str()) { (entry.outcome.as_str()) }
                    td { (entry.detail) }
                }
            }
        }
    };
    signed_page(state.sso(), &signed, "Security settings", body)
}

/// `POST /portal/security` (form: `csrf`, `allow_sso=on|off`).
async fn security_form(
    State(state): State<AppState>,
    Source(source): Source,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sso = state.sso();
    let fields = form_fields(&body);
    let result = async {
        let presented = presented(&headers, fields.get("csrf").map(String::as_str));
        let signed = rules::owner_change(sso, state.db(), &presented).await?;
        let allow = on_off(&fields, "allow_sso")?;
        Ok::<_, Refused>(rules::set_allow_sso(state.db(), &signed, allow, source).await?)
    }
    .await;
    match result {
        Ok(_) => see_other(&format!("{}/security", sso.portal_path())),
        Err(refused) => refused.page(sso),
    }
}

/// `GET /portal/users`.
async fn users(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(signed) => signed,
        Err(answer) => return answer,
    };
    let users = match state.db().client_users(signed.session.client_id).await {
        Ok(users) => users,
        Err(e) => return internal(&e),
    };
    let sso = state.sso();
    let base = sso.portal_path();
    let body = html! {
        p {
            "Links in your control panel sign in as the account owner, so the owner's Single \
             Sign-On permission decides whether they work. Revoking it turns them off for this \
             account until it is granted again."
        }
        table {
            tr { th { "User" } th { "Permissions" } th { "Single Sign-On from the control panel" } }
            @for user in &users {
                @let has_sso = user.permissions.contains(&ClientPermission::Sso);
                @let list = user.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>();
                tr id={ "user-" (user.id) } {
                    td { (user.email) @if user.owner { " (owner)" } }
                    td { (list.join(", ")) }
                    td {
                        @if !user.owner {
                            "not applicable: panel links sign in as the owner"
                        } @else {
                            (if has_sso { "allowed" } else { "not allowed" })
                        }
                        @if signed.session.owner && user.owner {
                            " "
                            form.inline method="post" action={ (base) "/users/" (user.id) } {
                                input type="hidden" name="csrf" value=(signed.csrf);
                                input type="hidden" name="sso"
                                    value=(if has_sso { "off" } else { "on" });
                                button { (if has_sso { "Revoke" } else { "Grant" }) }
                            }
                        }
                    }
                }
            }
        }
    };
    signed_page(sso, &signed, "User management", body)
}

/// `POST /portal/users/{id}` (form: `csrf`, `sso=on|off`): grant or revoke one user's `sso`
/// permission, keeping the others.
async fn user_form(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    Source(source): Source,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sso = state.sso();
    let fields = form_fields(&body);
    let result = async {
        let presented = presented(&headers, fields.get("csrf").map(String::as_str));
        let signed = rules::owner_change(sso, state.db(), &presented).await?;
        let Ok(Path(user_id)) = id else {
            return Err(Refused::Api(ApiError::not_found("user")));
        };
        let grant = on_off(&fields, "sso")?;
        Ok(rules::set_sso_permission(state.db(), &signed, user_id, grant, source).await?)
    }
    .await;
    match result {
        Ok(_) => see_other(&format!("{}/users", sso.portal_path())),
        Err(refused) => refused.page(sso),
    }
}

/// `POST /portal/logout` (form: `csrf`).
async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let sso = state.sso();
    let fields = form_fields(&body);
    let presented = presented(&headers, fields.get("csrf").map(String::as_str));
    match rules::sign_out(sso, state.db(), &presented).await {
        Ok(()) => {}
        Err(Denied::Storage(e)) => return internal(&e),
        Err(denied) => return Refused::from(denied).page(sso),
    }
    let mut response = CLIENT_AREA.message(
        StatusCode::OK,
        "You are signed out",
        "You have been signed out of the client area.",
        None,
    );
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&sso.clear_cookie()).expect("a valid header value"),
    );
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
    no_store(response.headers_mut());
    response
}

/// `PATCH /portal/api/v1/account` `{"allow_sso": bool}`.
async fn patch_account(
    State(state): State<AppState>,
    Source(source): Source,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let presented = presented(&headers, header_csrf(&headers));
        let signed = rules::owner_change(state.sso(), state.db(), &presented).await?;
        let patch: AccountPatch = parse_json(&body).map_err(Refused::Api)?;
        let allow_sso = rules::set_allow_sso(state.db(), &signed, patch.allow_sso, source).await?;
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
async fn patch_user(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    Source(source): Source,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let presented = presented(&headers, header_csrf(&headers));
        let signed = rules::owner_change(state.sso(), state.db(), &presented).await?;
        let Ok(Path(user_id)) = id else {
            return Err(Refused::Api(ApiError::not_found("user")));
        };
        let patch: UserPatch = parse_json(&body).map_err(Refused::Api)?;
        let permissions = parse_set(&patch.permissions, ClientPermission::parse)
            .map_err(|why| Refused::Api(ApiError::invalid_field("permissions", why)))?;
        let user =
            rules::set_permissions(state.db(), &signed, user_id, &permissions, source).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_and_headers_of_a_change() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; panelink_session=xyz"),
        );
        headers.insert(header::ORIGIN, HeaderValue::from_bytes(b"\xff").unwrap());
        let presented = presented(&headers, Some("t"));
        assert_eq!(presented.session, Some("xyz"));
        assert_eq!(presented.csrf, Some("t"));
        assert_eq!(
            presented.origin,
            Some(""),
            "an unreadable Origin is still sent"
        );
        assert_eq!(presented.referer, None);
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }
}
