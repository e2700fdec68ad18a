//! Plugin versions (`manage_plugins`): list, upload, activate, roll back.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, Authorized, ManagePlugins};
use super::{AppState, rfc3339};
use crate::adapter::AllowedRequest;
use crate::storage::PluginVersion;

/// A plugin version.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginView {
    /// Plugin name.
    pub name: String,
    /// The application it serves.
    pub application: String,
    /// Version.
    pub version: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// The contract world it targets.
    pub world: String,
    /// Whether it is the active version.
    pub active: bool,
    /// `directory` (from plugin_dir) or `upload`.
    pub source: String,
    /// Component size in bytes.
    pub size: i64,
    /// First installed.
    pub installed_at: String,
    /// The requests the plugin declares it sends to its panel; the host refuses any other.
    /// `null` when this host has not loaded the version (an inactive upload of an earlier run).
    pub allowed_requests: Option<Vec<AllowedRequestView>>,
}

/// One kind of request a plugin may send to its panel.
#[derive(Debug, Serialize, ToSchema)]
pub struct AllowedRequestView {
    /// `GET` or `POST`.
    pub method: String,
    /// The exact URL path, e.g. `/json-api/applist`.
    pub path: String,
    /// The calls the request may carry when it tunnels several (a WHM `batch`); `null` when
    /// the path names the one call.
    pub calls: Option<TunnelView>,
}

/// The calls one tunnelling request may carry.
#[derive(Debug, Serialize, ToSchema)]
pub struct TunnelView {
    /// `whm-batch` (or `xml-packet`).
    pub protocol: String,
    /// The functions (operations) allowed inside.
    pub names: Vec<String>,
}

impl From<&AllowedRequest> for AllowedRequestView {
    fn from(r: &AllowedRequest) -> Self {
        Self {
            method: r.method.as_str().to_owned(),
            path: r.path.clone(),
            calls: r.calls.as_ref().map(|t| TunnelView {
                protocol: t.protocol().to_owned(),
                names: t.calls().to_vec(),
            }),
        }
    }
}

/// A version's view, with its declared requests when this host has it compiled.
fn view(state: &AppState, version: PluginVersion) -> PluginView {
    let allowed_requests = state.catalog().compiled(&version.digest).map(|plugin| {
        plugin
            .description
            .allowed_requests
            .iter()
            .map(Into::into)
            .collect()
    });
    PluginView {
        allowed_requests,
        ..version.into()
    }
}

impl From<PluginVersion> for PluginView {
    fn from(v: PluginVersion) -> Self {
        Self {
            name: v.name,
            application: v.application,
            version: v.version,
            digest: v.digest,
            world: v.world,
            active: v.active,
            source: match v.source {
                crate::storage::PluginSource::Directory => "directory",
                crate::storage::PluginSource::Upload => "upload",
            }
            .to_owned(),
            size: v.size,
            installed_at: rfc3339(v.installed_at),
            allowed_requests: None,
        }
    }
}

/// The plugin versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    /// By name, then installation.
    pub plugins: Vec<PluginView>,
}

/// Every installed plugin version, with the active one marked.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins",
    security(("bearer" = ["manage_plugins"])),
    responses((status = 200, body = PluginList)))]
pub async fn list(
    _auth: Authorized<ManagePlugins>,
    State(state): State<AppState>,
) -> Result<Json<PluginList>, ApiError> {
    let versions = state.db().plugin_versions().await?;
    Ok(Json(PluginList {
        plugins: versions.into_iter().map(|v| view(&state, v)).collect(),
    }))
}

/// Upload a component (`application/wasm`). It is compiled and must describe itself before it is
/// recorded; 422 says why a file is refused. The first version of an application becomes active;
/// later ones wait for `activate`. The same bytes again answer 200 with the recorded version.
/// (`X-Panelink-Signature` is accepted but not verified yet.)
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins",
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    security(("bearer" = ["manage_plugins"])),
    responses(
        (status = 201, description = "Installed", body = PluginView),
        (status = 200, description = "Already installed", body = PluginView),
        (status = 409, description = "This name and version exist with other content", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "Not a usable plugin", body = ErrorBody),
    ))]
pub async fn upload(
    auth: Authorized<ManagePlugins>,
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<PluginView>), ApiError> {
    let limit = state.limits().max_plugin_bytes;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::payload_too_large(limit))?;
    if bytes.is_empty() {
        return Err(ApiError::unprocessable(
            "The request body is empty: send the component's bytes (application/wasm).",
        ));
    }
    let (version, created) = state
        .catalog()
        .install(&auth.principal.actor(), &bytes)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&state, version))))
}

/// Make a version the active one; calls in flight finish on the old version.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/versions/{version}/activate", tag = "plugins",
    params(
        ("name" = String, Path, description = "Plugin name"),
        ("version" = String, Path, description = "Version"),
    ),
    security(("bearer" = ["manage_plugins"])),
    responses(
        (status = 200, body = PluginView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The version's component is not available", body = ErrorBody),
    ))]
pub async fn activate(
    auth: Authorized<ManagePlugins>,
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<Json<PluginView>, ApiError> {
    let version = state
        .catalog()
        .activate(&auth.principal.actor(), &name, &version)
        .await?;
    Ok(Json(view(&state, version)))
}

/// Go back to the version that was active before the current one.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/rollback", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    security(("bearer" = ["manage_plugins"])),
    responses(
        (status = 200, body = PluginView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No earlier version", body = ErrorBody),
    ))]
pub async fn rollback(
    auth: Authorized<ManagePlugins>,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PluginView>, ApiError> {
    let version = state
        .catalog()
        .rollback(&auth.principal.actor(), &name)
        .await?;
    Ok(Json(view(&state, version)))
}
