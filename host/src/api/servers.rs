//! Panel servers (`manage_servers`). The API token is write-only: accepted on create and patch,
//! never returned.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, Check, ErrorBody};
use super::extract::{ApiJson, ApiPath, Authorized, ManageClients, ManageServers};
use super::{AppState, rfc3339};
use crate::adapter::{Secret, Support};
use crate::model::{ApplicationId, Hostname, Name, Port, Username};
use crate::storage::{NewServer, Server, ServerPatch};
use crate::sync;

/// A server to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServer {
    /// Display name, 1–100 characters.
    pub name: String,
    /// Application id of an installed plugin (`cpanel`, `wpsquared`, …).
    pub module: String,
    /// Host name or IP address.
    pub hostname: String,
    /// API port (default 2087 when secure, 2086 when not).
    pub port: Option<i64>,
    /// TLS (default true).
    pub secure: Option<bool>,
    /// API user (e.g. `root`).
    pub username: String,
    /// API token: write-only, stored encrypted.
    #[schema(write_only)]
    pub api_token: String,
    /// Enabled (default true).
    pub enabled: Option<bool>,
}

/// A change to a server; absent fields stay as they are. Changing where the server is
/// (`hostname`, `port` or `secure`) requires `api_token` in the same request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServer {
    /// Display name.
    pub name: Option<String>,
    /// Application id.
    pub module: Option<String>,
    /// Host name or IP address; a change requires `api_token`.
    pub hostname: Option<String>,
    /// API port; a change requires `api_token`.
    pub port: Option<i64>,
    /// TLS; a change requires `api_token`. Changing it without a port moves a default port
    /// along (2087 ↔ 2086).
    pub secure: Option<bool>,
    /// API user.
    pub username: Option<String>,
    /// A new API token (write-only). Required when `hostname`, `port` or `secure` change: the
    /// stored token was given for the old place only, and is sealed for the server's place.
    #[schema(write_only)]
    pub api_token: Option<String>,
    pub enabled: Option<bool>,
}

/// A server (never with its API token).
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerView {
    pub id: i64,
    pub name: String,
    /// Application id.
    pub module: String,
    pub hostname: String,
    pub port: u16,
    /// TLS.
    pub secure: bool,
    /// API user.
    pub username: String,
    pub enabled: bool,
    /// The last support check's answer (null: never checked).
    pub supported: Option<bool>,
    /// The last support check's detail.
    pub support_detail: Option<String>,
    /// When it was last checked.
    pub checked_at: Option<String>,
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
}

impl From<Server> for ServerView {
    fn from(s: Server) -> Self {
        Self {
            id: s.id,
            name: s.name,
            module: s.module,
            hostname: s.hostname,
            port: s.port,
            secure: s.secure,
            username: s.username,
            enabled: s.enabled,
            supported: s.supported,
            support_detail: s.support_detail,
            checked_at: s.checked_at.map(rfc3339),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// The servers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerList {
    /// By id.
    pub servers: Vec<ServerView>,
}

/// A support check's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckView {
    /// Whether Application Links can be provisioned on the server.
    pub supported: bool,
    /// Why, for admins.
    pub detail: String,
}

fn api_token(raw: &str) -> Result<Secret, String> {
    let token = raw.trim();
    if token.is_empty() {
        return Err("must not be empty".into());
    }
    if token.len() > 1024 || token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must be at most 1024 characters without spaces or control characters".into());
    }
    Ok(Secret::new(token))
}

/// A module must name an application a loaded plugin serves.
fn module(state: &AppState, raw: &str) -> Result<ApplicationId, String> {
    let id = ApplicationId::parse(raw)?;
    if state.catalog().plugins().get(id.as_str()).is_none() {
        return Err("no installed plugin serves this application".into());
    }
    Ok(id)
}

/// Add a server.
#[utoipa::path(post, path = "/api/v1/servers", tag = "servers", request_body = CreateServer,
    security(("bearer" = ["manage_servers"])),
    responses((status = 201, body = ServerView), (status = 422, body = ErrorBody)))]
pub async fn create(
    auth: Authorized<ManageServers>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateServer>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    let mut check = Check::new();
    let secure = body.secure.unwrap_or(true);
    let new = {
        let name = check.field("name", Name::parse(&body.name));
        let module = check.field("module", module(&state, &body.module));
        let hostname = check.field("hostname", Hostname::parse(&body.hostname));
        let port = check.optional("port", body.port, Port::new);
        let username = check.field("username", Username::parse(&body.username));
        let api_token = check.field("api_token", api_token(&body.api_token));
        check.finish(|| {
            Some(NewServer {
                name: name?,
                module: module?,
                hostname: hostname?,
                port: port?.unwrap_or(Port::default_for(secure)),
                secure,
                username: username?,
                api_token: api_token?,
                enabled: body.enabled.unwrap_or(true),
            })
        })?
    };
    let (server, change) = state
        .db()
        .create_server(&auth.principal.actor(), &new, sync::server_added)
        .await?;
    if let Some(change) = change {
        state.sync().request(change).await?;
    }
    Ok((StatusCode::CREATED, Json(server.into())))
}

/// List servers.
#[utoipa::path(get, path = "/api/v1/servers", tag = "servers",
    security(("bearer" = ["manage_servers"])),
    responses((status = 200, body = ServerList)))]
pub async fn list(
    _auth: Authorized<ManageServers>,
    State(state): State<AppState>,
) -> Result<Json<ServerList>, ApiError> {
    let servers = state.db().servers().await?;
    Ok(Json(ServerList {
        servers: servers.into_iter().map(Into::into).collect(),
    }))
}

/// One server.
#[utoipa::path(get, path = "/api/v1/servers/{id}", tag = "servers",
    params(("id" = i64, Path, description = "Server id")),
    security(("bearer" = ["manage_servers"])),
    responses((status = 200, body = ServerView), (status = 404, body = ErrorBody)))]
pub async fn get(
    _auth: Authorized<ManageServers>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ServerView>, ApiError> {
    Ok(Json(state.db().server(id).await?.into()))
}

/// Change a server.
///
/// Changing where the server is (`hostname`, `port` or `secure`, to a value other than the
/// current one) requires `api_token` in the same request: without it the answer is 422 with a
/// field error on `api_token`, and nothing changes. The API token is sealed for the server's
/// place (id, scheme, host, port), so a token never goes anywhere an admin did not give it for.
#[utoipa::path(patch, path = "/api/v1/servers/{id}", tag = "servers", request_body = UpdateServer,
    params(("id" = i64, Path, description = "Server id")),
    security(("bearer" = ["manage_servers"])),
    responses(
        (status = 200, body = ServerView),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Invalid fields, or a change of hostname, port or secure \
            without api_token (field error on api_token)", body = ErrorBody),
    ))]
pub async fn update(
    auth: Authorized<ManageServers>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateServer>,
) -> Result<Json<ServerView>, ApiError> {
    let mut check = Check::new();
    let name = check.optional("name", body.name, |v| Name::parse(&v));
    let module = check.optional("module", body.module, |v| module(&state, &v));
    let hostname = check.optional("hostname", body.hostname, |v| Hostname::parse(&v));
    let port = check.optional("port", body.port, Port::new);
    let username = check.optional("username", body.username, |v| Username::parse(&v));
    let token = check.optional("api_token", body.api_token, |v| api_token(&v));
    let patch = check.finish(|| {
        Some(ServerPatch {
            name: name?,
            module: module?,
            hostname: hostname?,
            port: port?,
            secure: body.secure,
            username: username?,
            api_token: token?,
            enabled: body.enabled,
        })
    })?;
    let (server, change) = state
        .db()
        .update_server(&auth.principal.actor(), id, &patch, sync::server_updated)
        .await?;
    if let Some(change) = change {
        state.sync().request(change).await?;
    }
    Ok(Json(server.into()))
}

/// Delete a server (409 while services use it).
#[utoipa::path(delete, path = "/api/v1/servers/{id}", tag = "servers",
    params(("id" = i64, Path, description = "Server id")),
    security(("bearer" = ["manage_servers"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Services use the server", body = ErrorBody),
    ))]
pub async fn delete(
    auth: Authorized<ManageServers>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    state
        .db()
        .delete_server(&auth.principal.actor(), id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ask the server's plugin whether the server supports Application Links; the answer is kept
/// for the application's server counts.
#[utoipa::path(post, path = "/api/v1/servers/{id}/check", tag = "servers",
    params(("id" = i64, Path, description = "Server id")),
    security(("bearer" = ["manage_servers"])),
    responses(
        (status = 200, body = CheckView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The stored API token cannot be used where the server is \
            now (changed outside Panelink): give it again", body = ErrorBody),
    ))]
pub async fn check(
    _auth: Authorized<ManageServers>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CheckView>, ApiError> {
    let server = state.db().server(id).await?;
    let Some(plugin) = state.catalog().plugins().get(&server.module) else {
        return Ok(Json(CheckView {
            supported: false,
            detail: format!(
                "No installed plugin serves the {} application.",
                server.module
            ),
        }));
    };
    let target = state.db().server_target(id).await?;
    let support = match plugin.check_server(&target).await {
        Ok(out) => out.value,
        // Unreachable or timing out: no verdict worth keeping.
        Err(e) if e.is_transient() => {
            return Ok(Json(CheckView {
                supported: false,
                detail: e.to_string(),
            }));
        }
        // The plugin's answer: e.g. the wrong profile or a panel too old.
        Err(e @ crate::runtime::Error::Plugin { .. }) => Support {
            supported: false,
            detail: e.to_string(),
        },
        Err(e) => {
            tracing::warn!(server = id, error = %e, "support check failed in the plugin");
            return Ok(Json(CheckView {
                supported: false,
                detail: format!("The check failed: {e}"),
            }));
        }
    };
    let server = state.db().record_support(id, &support).await?;
    Ok(Json(CheckView {
        supported: server.supported.unwrap_or(false),
        detail: server.support_detail.unwrap_or_default(),
    }))
}

/// What to import.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// Create the missing clients and services (default `false`: a dry run that only says what
    /// would be created).
    #[serde(default)]
    pub apply: bool,
}

/// One account the panel listed, and what the import did (or would do) with it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedAccountView {
    /// The panel's user name (empty when the panel listed none).
    pub username: String,
    /// The panel's main domain.
    pub domain: String,
    /// Suspended on the panel (imported as a suspended service).
    pub suspended: bool,
    /// The owning panel user (a reseller); `null` when the panel has none.
    pub owner: Option<String>,
    /// `create` (created, or would be on a dry run), `exists` (a service on this server has the
    /// user name) or `error`.
    #[schema(example = "create")]
    pub action: String,
    /// Why the account cannot be imported (`action` is `error`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportView {
    /// The server.
    pub server_id: i64,
    /// Whether anything was written (`false`: a dry run).
    pub applied: bool,
    /// Services created (0 on a dry run).
    pub created: u64,
    /// Every account the panel listed, in the panel's order.
    pub accounts: Vec<ImportedAccountView>,
}

impl From<&crate::import::Report> for ImportView {
    fn from(r: &crate::import::Report) -> Self {
        Self {
            server_id: r.server_id,
            applied: r.applied,
            created: r.created,
            accounts: r
                .accounts
                .iter()
                .map(|a| ImportedAccountView {
                    username: a.username.clone(),
                    domain: a.domain.clone(),
                    suspended: a.suspended,
                    owner: a.owner.clone(),
                    action: a.action.as_str().to_owned(),
                    error: a.error.clone(),
                })
                .collect(),
        }
    }
}

/// Import the hosting accounts the server's panel lists as clients and services: a dry run by
/// default, listing what would be created; with `"apply": true` it creates a client and a
/// service for every account no service on this server has the user name of (an owned
/// account joins its owner's client), and pushes their links. Idempotent: importing again
/// creates nothing new. Bad or partial entries are reported per account.
#[utoipa::path(post, path = "/api/v1/servers/{id}/import", tag = "servers",
    params(("id" = i64, Path, description = "Server id")),
    request_body(content = ImportRequest, description = "Optional; `{}` or no body is a dry run"),
    security(("bearer" = ["manage_clients"])),
    responses(
        (status = 200, body = ImportView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No installed plugin serves the server's application, or \
            its plugin cannot list accounts (contract 0.1.0)", body = ErrorBody),
        (status = 503, description = "The panel could not be asked or refused the listing",
            body = ErrorBody),
    ))]
pub async fn import(
    auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    super::extract::OptionalJson(request): super::extract::OptionalJson<ImportRequest>,
) -> Result<Json<ImportView>, ApiError> {
    let report = crate::import::import(
        state.db(),
        state.catalog().plugins(),
        &auth.principal.actor(),
        id,
        request.apply,
    )
    .await
    .map_err(|e| match e {
        crate::import::Error::NotFound => ApiError::not_found("server"),
        e @ (crate::import::Error::NoPlugin(_) | crate::import::Error::Unsupported(_)) => {
            ApiError::conflict(e.to_string())
        }
        e @ crate::import::Error::Panel(_) => ApiError::unavailable(e.to_string()),
        crate::import::Error::Storage(e) => e.into(),
    })?;
    if let Some(change) = report.change {
        state.sync().request(change).await?;
    }
    Ok(Json((&report).into()))
}
