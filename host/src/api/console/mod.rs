//! The admin console (`/admin`): web pages for everything the admin API lets an admin do, for
//! admins who would rather click than curl.
//!
//! It is a client of the public admin API. The pages are server-rendered skeletons (maud,
//! through [`super::page`]'s frame and security headers): headings, navigation, the forms with
//! their labels. The console's one script (`console.js`, embedded in the binary like the
//! stylesheet, served from `/admin/assets/`) fills them by calling `/api/v1/...` itself, and
//! follows `GET /api/v1/events` (Server-Sent Events) for live state, so every action in the
//! console is an API call an API user can make, checked by the same handlers.
//!
//! Signing in: the admin pastes an API token (`POST /admin/sign-in`); the host opens a console
//! session ([`session`]) and sets the `panelink_console` cookie, which the admin API accepts
//! besides `Authorization: Bearer` (see [`session::api_principal`] for the CSRF rule). Pages follow
//! the admin's permissions: the navigation shows only what the role may use, and a page the role
//! may not use answers 403. `POST /admin/sign-out` ends the session. Both are audited.
//!
//! Routes: `/admin` (to the first page the admin may use, or to sign-in), `/admin/sign-in`,
//! `/admin/sign-out`, `/admin/applications` (+ `/{id}/configure`, `/{id}/log`),
//! `/admin/servers` (+ `/{id}/import`), `/admin/clients`, `/admin/services`, `/admin/plugins`,
//! `/admin/admins`, `/admin/assets/console.js` and `console.css`.

pub mod session;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{Markup, html};

use super::AppState;
use super::extract::header_text;
use super::page::{self, Site, no_store};
use crate::crypto::hash_token;
use crate::model::{ClientPermission, ClientStatus, Permission, ServiceStatus};
use crate::sso::new_token;
use session::Console;

/// The console's pages.
pub const CONSOLE: Site = Site {
    name: "Panelink Admin",
};

/// The console's Content-Security-Policy: its own script and stylesheet, requests to this host.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// A console page's answer: the frame's headers with the console's policy.
fn respond(status: StatusCode, page: Markup) -> Response {
    page::respond_with_policy(status, page, POLICY)
}

const SCRIPT: &str = include_str!("console.js");
const STYLESHEET: &str = include_str!("console.css");

/// `/admin` and everything below it.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/", get(home))
        .route("/admin/sign-in", get(sign_in_page).post(sign_in))
        .route("/admin/sign-out", post(sign_out))
        .route("/admin/applications", get(applications))
        .route("/admin/applications/{id}/configure", get(configure))
        .route("/admin/applications/{id}/log", get(log))
        .route("/admin/servers", get(servers))
        .route("/admin/servers/{id}/import", get(import))
        .route("/admin/clients", get(clients))
        .route("/admin/services", get(services))
        .route("/admin/plugins", get(plugins))
        .route("/admin/admins", get(admins))
        .route("/admin/assets/console.js", get(script))
        .route("/admin/assets/console.css", get(stylesheet))
}

/// The console's pages, in navigation order: path below `/admin`, title, the permission it needs.
const PAGES: &[(&str, &str, Permission)] = &[
    (
        "/applications",
        "Application Links",
        Permission::ConfigureApplicationLinks,
    ),
    ("/servers", "Servers", Permission::ManageServers),
    ("/clients", "Clients", Permission::ManageClients),
    ("/services", "Services", Permission::ManageClients),
    ("/plugins", "Plugins", Permission::ManagePlugins),
    ("/admins", "Admins", Permission::ManageAdmins),
];

/// `public_url`'s path without its trailing `/`: what the console's own links start with.
fn base(state: &AppState) -> String {
    state.sso().base_path().trim_end_matches('/').to_owned()
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    no_store(response.headers_mut());
    response
}

fn internal(e: &crate::storage::Error) -> Response {
    tracing::error!(error = %e, "admin console: storage failed");
    CONSOLE.message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Something went wrong on our side; the details are in the server log.",
        None,
    )
}

/// The signed-in admin of a page request holding `need`; otherwise the answer to send: to the
/// sign-in page when not signed in, 403 when the role lacks the permission.
async fn guard(
    state: &AppState,
    headers: &HeaderMap,
    need: Option<Permission>,
) -> Result<Console, Response> {
    let console = match session::signed_in(state.db(), headers).await {
        Ok(Some(console)) => console,
        Ok(None) => return Err(see_other(&format!("{}/admin/sign-in", base(state)))),
        Err(e) => return Err(internal(&e)),
    };
    if let Some(need) = need
        && !console.principal.may(need)
    {
        let body = html! {
            p.refused role="alert" {
                "Your role (" (console.principal.role) ") does not have the "
                code { (need.as_str()) } " permission, which this page needs."
            }
        };
        return Err(shell(
            state,
            &console,
            StatusCode::FORBIDDEN,
            "Not allowed",
            "",
            body,
        ));
    }
    Ok(console)
}

/// A console page: the navigation the admin's role allows, the signed-in admin and the sign-out
/// form, the CSRF token and the API's base for the script, and `body` in a `#console` element
/// whose `data-page` tells the script what to do.
fn shell(
    state: &AppState,
    console: &Console,
    status: StatusCode,
    title: &str,
    current: &str,
    body: Markup,
) -> Response {
    let base = base(state);
    let head = html! {
        meta name="csrf-token" content=(console.csrf);
        meta name="panelink-base" content=(base);
        link rel="stylesheet" href={ (base) "/admin/assets/console.css" };
        script src={ (base) "/admin/assets/console.js" } defer {}
    };
    let nav = html! {
        nav aria-label="Console" {
            ul {
                @for (path, label, need) in PAGES {
                    @if console.principal.may(*need) {
                        li {
                            @if current == *path {
                                a href={ (base) "/admin" (path) } aria-current="page" { (label) }
                            } @else {
                                a href={ (base) "/admin" (path) } { (label) }
                            }
                        }
                    }
                }
            }
        }
        div.who {
            span { (console.principal.email) " (" (console.principal.role) ")" }
            form.inline method="post" action={ (base) "/admin/sign-out" } {
                input type="hidden" name="csrf" value=(console.csrf);
                button type="submit" { "Sign out" }
            }
        }
    };
    let body = html! {
        div #status-message role="status" aria-live="polite" {}
        (body)
    };
    respond(status, CONSOLE.page_with_nav(title, head, nav, body))
}

/// `GET /admin`: the first page the admin may use, or sign-in.
async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let console = match guard(&state, &headers, None).await {
        Ok(console) => console,
        Err(answer) => return answer,
    };
    let base = base(&state);
    match PAGES
        .iter()
        .find(|(_, _, need)| console.principal.may(*need))
    {
        Some((path, _, _)) => see_other(&format!("{base}/admin{path}")),
        None => shell(
            &state,
            &console,
            StatusCode::OK,
            "Nothing to manage",
            "",
            html! { p { "Your role holds no permission the console offers a page for." } },
        ),
    }
}

fn sign_in_form(state: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let base = base(state);
    let body = html! {
        @if let Some(error) = error {
            p.refused #sign-in-error role="alert" { (error) }
        }
        form.stack method="post" action={ (base) "/admin/sign-in" } {
            label for="token" { "Admin token" }
            input #token name="token" type="password" autocomplete="off" required
                aria-describedby="token-help";
            p #token-help .help {
                "An admin API token: " code { "panelink admin create" } " prints one, and "
                "the Admins page issues more. The console keeps a session cookie instead of the token."
            }
            button type="submit" { "Sign in" }
        }
    };
    let head = html! { link rel="stylesheet" href={ (base) "/admin/assets/console.css" }; };
    respond(status, CONSOLE.page("Sign in", head, body))
}

/// `GET /admin/sign-in`.
async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session::signed_in(state.db(), &headers).await {
        Ok(Some(_)) => see_other(&format!("{}/admin/", base(&state))),
        Ok(None) => sign_in_form(&state, StatusCode::OK, None),
        Err(e) => internal(&e),
    }
}

/// `POST /admin/sign-in` (form: `token`): open a session for the token's admin.
async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let sso = state.sso();
    if !sso.same_origin(
        header_text(&headers, header::ORIGIN),
        header_text(&headers, header::REFERER),
    ) {
        return sign_in_form(
            &state,
            StatusCode::FORBIDDEN,
            Some("Sign in from this host's own sign-in page."),
        );
    }
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let principal = if token.is_empty() || token.len() > 256 {
        None
    } else {
        match state.db().authenticate(&token).await {
            Ok(principal) => principal,
            Err(e) => return internal(&e),
        }
    };
    let Some(principal) = principal else {
        return sign_in_form(
            &state,
            StatusCode::UNAUTHORIZED,
            Some(
                "That token does not sign anyone in: it is unknown, expired or revoked, or its admin is deactivated.",
            ),
        );
    };
    let cookie = new_token();
    let ttl = sso.config().console_session_ttl;
    let expires_at = match state
        .db()
        .open_console_session(&principal, &hash_token(&cookie), ttl)
        .await
    {
        Ok(at) => at,
        Err(e) => return internal(&e),
    };
    tracing::info!(admin = principal.admin_id, "admin console: signed in");
    let max_age = std::time::Duration::from_millis(
        u64::try_from(expires_at - crate::storage::now_ms()).unwrap_or(0),
    );
    let mut response = see_other(&format!("{}/admin/", base(&state)));
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&sso.console_cookie(&cookie, max_age)).expect("a valid header value"),
    );
    response
}

/// `POST /admin/sign-out` (form: `csrf`).
async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let sso = state.sso();
    let console = match session::signed_in(state.db(), &headers).await {
        Ok(console) => console,
        Err(e) => return internal(&e),
    };
    if let Some(console) = console {
        let csrf = url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        if !session::from_console(sso, &console, &headers, csrf.as_deref()) {
            return CONSOLE.message(
                StatusCode::FORBIDDEN,
                "Not signed out",
                "The request did not come from a console page.",
                None,
            );
        }
        if let Err(e) = state
            .db()
            .end_console_session(&console.principal, &console.session_hash)
            .await
        {
            return internal(&e);
        }
        tracing::info!(
            admin = console.principal.admin_id,
            "admin console: signed out"
        );
    }
    let sign_in = format!("{}/admin/sign-in", base(&state));
    let mut response = CONSOLE.message(
        StatusCode::OK,
        "Signed out",
        "You are signed out of the admin console.",
        Some((&sign_in, "Sign in again")),
    );
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&sso.clear_console_cookie()).expect("a valid header value"),
    );
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

/// A labelled form field: `label` names it, `help` (when given) describes it, and an element
/// the script fills with the API's reason when the field is refused.
fn field(id: &str, name: &str, label: &str, input: Markup, help: Option<&str>) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            (input)
            @if let Some(help) = help {
                p.help id={ (id) "-help" } { (help) }
            }
            p.field-error id={ (id) "-error" } data-error-for=(name) {}
        }
    }
}

fn text_input(id: &str, name: &str, kind: &str, required: bool) -> Markup {
    html! {
        input id=(id) name=(name) type=(kind) required[required]
            aria-describedby={ (id) "-error " (id) "-help" };
    }
}

fn select(id: &str, name: &str, options: &[&str], selected: &str) -> Markup {
    html! {
        select id=(id) name=(name) aria-describedby={ (id) "-error" } {
            @for option in options {
                option value=(option) selected[*option == selected] { (option) }
            }
        }
    }
}

fn checkbox(id: &str, name: &str, label: &str, checked: bool) -> Markup {
    html! {
        div.field.check {
            input id=(id) name=(name) type="checkbox" data-type="bool" checked[checked];
            label for=(id) { (label) }
            p.field-error data-error-for=(name) {}
        }
    }
}

/// `GET /admin/applications`.
async fn applications(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let console = match guard(
        &state,
        &headers,
        Some(Permission::ConfigureApplicationLinks),
    )
    .await
    {
        Ok(console) => console,
        Err(answer) => return answer,
    };
    let body = html! {
        div #console data-page="applications" {
            p.help { "Switch Application Links on per application; the status follows the sync live." }
            div #apps aria-busy="true" { p { "Loading…" } }
        }
    };
    shell(
        &state,
        &console,
        StatusCode::OK,
        "Application Links",
        "/applications",
        body,
    )
}

/// The name of an application whose plugin is loaded, or the 404 page.
fn application_name(
    state: &AppState,
    console: &Console,
    id: &str,
) -> Result<String, Box<Response>> {
    state
        .catalog()
        .plugins()
        .get(id)
        .map(|p| p.description.name.clone())
        .ok_or_else(|| {
            Box::new(shell(
                state,
                console,
                StatusCode::NOT_FOUND,
                "Not found",
                "/applications",
                html! { p.refused { "No application " code { (id) } " is installed." } },
            ))
        })
}

/// `GET /admin/applications/{id}/configure`.
async fn configure(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let console = match guard(
        &state,
        &headers,
        Some(Permission::ConfigureApplicationLinks),
    )
    .await
    {
        Ok(console) => console,
        Err(answer) => return answer,
    };
    let name = match application_name(&state, &console, &id) {
        Ok(name) => name,
        Err(answer) => return *answer,
    };
    let base = base(&state);
    let body = html! {
        p { a href={ (base) "/admin/applications" } { "← Application Links" } }
        div #console data-page="configure" data-app=(id) {
            div #app-status {}
            p.help {
                "Choose which links customers see in " (name) ", their names and their order, "
                "then Save Changes: the sync pushes them to every account."
            }
            form #links-form novalidate {
                div #link-groups aria-busy="true" { p { "Loading…" } }
                p.field-error #links-error data-error-for="links" {}
                div.actions {
                    button type="submit" { "Save Changes" }
                    button type="button" #reset-links { "Reset to defaults" }
                }
            }
        }
    };
    shell(
        &state,
        &console,
        StatusCode::OK,
        &format!("Configure {name} Application Links"),
        "/applications",
        body,
    )
}

/// `GET /admin/applications/{id}/log`.
async fn log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let console = match guard(
        &state,
        &headers,
        Some(Permission::ConfigureApplicationLinks),
    )
    .await
    {
        Ok(console) => console,
        Err(answer) => return answer,
    };
    let name = match application_name(&state, &console, &id) {
        Ok(name) => name,
        Err(answer) => return *answer,
    };
    let base = base(&state);
    let body = html! {
        p { a href={ (base) "/admin/applications" } { "← Application Links" } }
        div #console data-page="log" data-app=(id) {
            p.help { "The log of the last provisioning operation (activation, configuration change, deactivation), oldest first." }
            div.field {
                label for="level-filter" { "Level" }
                select #level-filter {
                    option value="" { "All levels" }
                    @for level in ["debug", "info", "notice", "warning"] {
                        option value=(level) { (level) }
                    }
                }
            }
            div #log aria-busy="true" aria-live="polite" { p { "Loading…" } }
        }
    };
    shell(
        &state,
        &console,
        StatusCode::OK,
        &format!("{name} Application Links log"),
        "/applications",
        body,
    )
}

/// The server form's fields (add and edit share them).
fn server_fields(prefix: &str, adding: bool) -> Markup {
    let id = |name: &str| format!("{prefix}-{name}");
    html! {
        (field(&id("name"), "name", "Name", text_input(&id("name"), "name", "text", adding), None))
        (field(&id("module"), "module", "Module",
            text_input(&id("module"), "module", "text", adding),
            Some("The application id of the server's panel: cpanel, wpsquared or an installed plugin's.")))
        (field(&id("hostname"), "hostname", "Hostname", text_input(&id("hostname"), "hostname", "text", adding), None))
        (field(&id("port"), "port", "Port",
            html! { input id=(id("port")) name="port" type="number" min="1" max="65535" data-type="number"
                aria-describedby={ (id("port")) "-error " (id("port")) "-help" }; },
            Some("Empty: 2087 with TLS, 2086 without.")))
        (checkbox(&id("secure"), "secure", "Use TLS (https)", true))
        (field(&id("username"), "username", "API username", text_input(&id("username"), "username", "text", adding), None))
        (field(&id("api_token"), "api_token", "API token",
            html! { input id=(id("api_token")) name="api_token" type="password" autocomplete="new-password"
                required[adding] data-write-only="true"
                aria-describedby={ (id("api_token")) "-error " (id("api_token")) "-help" }; },
            Some(if adding {
                "Write-only: stored encrypted, never shown again."
            } else {
                "Write-only: leave empty to keep the stored token; required when hostname, port or TLS change."
            })))
        (checkbox(&id("enabled"), "enabled", "Enabled", true))
    }
}

/// `GET /admin/servers`.
async fn servers(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let console = match guard(&state, &headers, Some(Permission::ManageServers)).await {
        Ok(console) => console,
        Err(answer) => return answer,
    };
    let can_import = console.principal.may(Permission::ManageClients);
    let body = html! {
        div #console data-page="servers" data-can-import=(can_import) {
            section aria-labelledby="servers-heading" {
                h2 #servers-heading { "All servers" }
                div #servers aria-busy="true" { p { "Loading…" } }
            }
            section #edit-server-section hidden aria-labelledby="edit-server-heading" {
                h2 #edit-server-heading { "Edit server" }
                form #edit-server data-api="PATCH /api/v1/servers/{id}" novalidate {
                    (server_fields("edit-server", false))
                    div.actions {
                        button type="submit" { "Save server" }
                        button type="button" #cancel-edit { "Cancel" }
                    }
                }
            }
            section aria-labelledby="add-server-heading" {
                h2 #add-server-heading { "Add a server" }
                form #add-server data-api="POST /api/v1/servers" novalidate {
                    (server_fields("add-server", true))
                    div.actions { button type="submit" { "Add server" } }
                }
            }
        }
    };
    shell(
        &state,
        &console,
        StatusCode::OK,
        "Servers",
        "/servers",
        body,
    )
}

/// `GET /admin/servers/{id}/import`.
async fn import(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let console = match guard(&state, &headers, Some(Permission::ManageClients)).await {
        Ok(console) => console,
        Err(answer) => return answer,
    };
    let Ok(id) = id.parse::<i64>() else {
        return shell(
            &state,
            &console,
            StatusCode::NOT_FOUND,
            "Not found",
            "/servers",
            html! { p.refused { "No such server." } },
        );
    };
    let base = base(&state);
    let body = html! {
        p { a href={ (base) "/admin/servers" } { "← Servers" } }
        div #console data-page="import" data-server=(id) {
            p.help {
                "Reads the server's accounts and shows what importing would create (a client per owner, "
                "a service per account). Nothing changes until you import."
            }
            div #import aria-busy="true" aria-live="polite" { p { "Reading the server's accounts…" } }
        }
    };
    shell(
        &state,
        &console,
        StatusCode::OK,
        &format!("Import the accounts of server {id}"),
        "/servers",
        body,
    )
}

/// `GET /admin/clients`.
async fn clients(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let console = match guard(&state, &headers, Some(Permission::ManageClients)).await {
        Ok(console) => console,
        Err(answer) => return answer,
    };
    let statuses: Vec<&str> = ClientStatus::ALL.iter().map(|s| s.as_str()).collect();
    let permissions: Vec<&str> = ClientPermission::ALL.iter().map(|p| p.as_str()).collect();
    let body = html! {
        div #console data-page="clients" data-permissions=(permissions.join(",")) data-statuses=(statuses.join(",")) {
            section aria-labelledby="clients-heading" {
                h2 #clients-heading { "Clients" }
                div #clients aria-busy="true" { p { "Loading…" } }
            }
            section #client-detail hidden aria-labelledby="client-detail-heading" {
                h2 #client-detail-heading tabindex="-1" { "Client" }
                div #client-users {}
                form #add-user data-api="POST /api/v1/clients/{id}/users" novalidate {
                    h3 { "Add a user" }
                    (field("add-user-email", "email", "User e-mail", text_input("add-user-email", "email", "email", true), None))
                    fieldset {
                        legend { "Permissions" }
                        @for p in &permissions {
                            (checkbox(&format!("add-user-perm-{p}"), &format!("permissions[]{p}"), p, *p == "sso"))
                        }
                    }
                    div.actions { button type="submit" { "Add user" } }
                }
                h3 { "Activity" }
                div #client-activity {}
            }
            section aria-labelledby="add-client-heading" {
                h2 #add-client-heading { "Add a client" }
                form #add-client data-api="POST /api/v1/clients" novalidate {
                    (field("add-client-name", "name", "Name", text_input("add-client-name", "name", "text", true), None))
                    (field("add-client-email", "email", "E-mail", text_input("add-client-email", "email", "email", true),
                        Some("The owner user gets this e-mail and every client permission.")))
                    (field("add-client-status", "status", "Status", select("add-client-status", "status", &statuses, "active"), None))
                    (checkbox("add-client-allow-sso", "allow_sso", "Allow single sign-on", true))
                    div.actions { button type="submit" { "Add client" } }
                }
            }
        }
    };
    shell(
        &state,
        &console,
        StatusCode::OK,
        "Clients",
        "/clients",
        body,
    )
}

/// `GET /admin/services`.
async fn services(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let console = match guard(&state, &headers, Some(Permission::ManageClients)).await {
        Ok(console) => console,
        Err(answer) => return answer,
    };
    let statuses: Vec<&str> = ServiceStatus::ALL.iter().map(|s| s.as_str()).collect();
    let body = html! {
        div #console data-page="services" data-statuses=(statuses.join(",")) {
            section aria-labelledby="services-heading" {
                h2 #services-heading { "Services" }
                div #services aria-busy="true" { p { "Loading…" } }
            }
            section aria-labelledby="add-service-heading" {
                h2 #add-service-heading { "Add a service" }
                form #add-service data-api="POST /api/v1/services" novalidate {
                    (field("add-service-client", "client_id", "Client",
                        html! { select #add-service-client name="client_id" data-type="number" aria-describedby="add-service-client-error" {} }, None))
                    (field("add-service-server", "server_id", "Server",
                        html! { select #add-service-server name="server_id" data-type="number" aria-describedby="add-service-server-error" {} }, None))
                    (field("add-service-username", "username", "Account user name", html! { input #add-service-username name="username" type="text" data-send-empty
                            aria-describedby="add-service-username-error add-service-username-help"; },
                        Some("Empty when the billing system does not know it yet.")))
                    (field("add-service-domain", "domain", "Domain", text_input("add-service-domain", "domain", "text", true), None))
                    (field("add-service-status", "status", "Status", select("add-service-status", "status", &statuses, "active"), None))
                    div.actions { button type="submit" { "Add service" } }
                }
            }
        }
    };
    shell(
        &state,
        &console,
        StatusCode::OK,
        "Services",
        "/services",
        body,
    )
}

/// `GET /admin/plugins`.
async fn plugins(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let console = match guard(&state, &headers, Some(Permission::ManagePlugins)).await {
        Ok(console) => console,
        Err(answer) => return answer,
    };
    let body = html! {
        div #console data-page="plugins" {
            section aria-labelledby="plugins-heading" {
                h2 #plugins-heading { "Installed versions" }
                div #plugins aria-busy="true" { p { "Loading…" } }
            }
            section aria-labelledby="install-heading" {
                h2 #install-heading { "Install a version" }
                form #install-plugin novalidate {
                    (field("plugin-file", "file", "Component (.wasm)",
                        html! { input #plugin-file name="file" type="file" accept=".wasm,application/wasm" required aria-describedby="plugin-file-error"; }, None))
                    (field("plugin-signature", "signature", "Signature",
                        text_input("plugin-signature", "signature", "text", false),
                        Some("The contents of the .sig file (ed25519=…); needed once trusted_keys are configured.")))
                    p.help { "An installed version is staged: it does nothing until you activate it." }
                    div.actions { button type="submit" { "Install" } }
                }
            }
        }
    };
    shell(
        &state,
        &console,
        StatusCode::OK,
        "Plugins",
        "/plugins",
        body,
    )
}

/// `GET /admin/admins`.
async fn admins(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let console = match guard(&state, &headers, Some(Permission::ManageAdmins)).await {
        Ok(console) => console,
        Err(answer) => return answer,
    };
    let permissions: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
    let body = html! {
        div #console data-page="admins" data-self=(console.principal.admin_id) {
            div #secret-output hidden role="alert" {}
            section aria-labelledby="admins-heading" {
                h2 #admins-heading { "Admins" }
                div #admins aria-busy="true" { p { "Loading…" } }
            }
            section #tokens-section hidden aria-labelledby="tokens-heading" {
                h2 #tokens-heading tabindex="-1" { "API tokens" }
                div #tokens {}
            }
            section aria-labelledby="add-admin-heading" {
                h2 #add-admin-heading { "Add an admin" }
                form #add-admin data-api="POST /api/v1/admins" novalidate {
                    (field("add-admin-email", "email", "E-mail", text_input("add-admin-email", "email", "email", true), None))
                    (field("add-admin-role", "role", "Role",
                        html! { select #add-admin-role name="role" aria-describedby="add-admin-role-error" {} }, None))
                    div.actions { button type="submit" { "Add admin" } }
                }
            }
            section aria-labelledby="roles-heading" {
                h2 #roles-heading { "Roles" }
                div #roles {}
                form #add-role data-api="POST /api/v1/roles" novalidate {
                    h3 { "Add a role" }
                    (field("add-role-name", "name", "Role name", text_input("add-role-name", "name", "text", true), None))
                    fieldset {
                        legend { "Permissions" }
                        @for p in &permissions {
                            (checkbox(&format!("add-role-perm-{p}"), &format!("permissions[]{p}"), p, false))
                        }
                        p.field-error data-error-for="permissions" {}
                    }
                    div.actions { button type="submit" { "Add role" } }
                }
            }
            section aria-labelledby="audit-heading" {
                h2 #audit-heading { "Audit log" }
                div #audit {}
            }
        }
    };
    shell(&state, &console, StatusCode::OK, "Admins", "/admins", body)
}
