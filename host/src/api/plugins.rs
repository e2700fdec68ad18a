//! Plugin versions (`manage_plugins`): list, upload (signed, staged), activate (with an optional
//! canary server), roll back. The rules are the catalog's ([`crate::catalog`]).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, Authorized, ManagePlugins};
use super::{AppState, rfc3339};
use crate::adapter::AllowedRequest;
use crate::storage::PluginVersion;

/// The header an upload's signature comes in: `ed25519=<base64>`.
pub const SIGNATURE_HEADER: &str = "x-panelink-signature";

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
    /// The contract version it implements, e.g. `0.2.0` (this host runs 0.1.0 and 0.2.0).
    #[schema(example = "0.2.0")]
    pub contract: String,
    /// Whether it is the active version.
    pub active: bool,
    /// `staged` (installed, never activated), `active`, `previous` (active before: a rollback
    /// target) or `failed` (flagged by the failure policy; it may still be the active one).
    #[schema(example = "staged")]
    pub state: String,
    /// The name of the trusted key that verified its signature (`null`: unsigned, not
    /// verified, or from plugin_dir).
    pub signed_by: Option<String>,
    /// `directory` (from plugin_dir) or `upload`.
    pub source: String,
    /// Component size in bytes.
    pub size: i64,
    /// First installed.
    pub installed_at: String,
    /// Last made active (`null`: never).
    pub activated_at: Option<String>,
    /// When the failure policy flagged it (`null`: not flagged).
    pub failed_at: Option<String>,
    /// Why it was flagged: how many calls in a row failed, and the last error.
    pub last_error: Option<String>,
    /// The requests the plugin declares it sends to its panel; the host refuses any other.
    /// `null` when this host has not loaded the version (an inactive upload of an earlier run).
    pub allowed_requests: Option<Vec<AllowedRequestView>>,
    /// How the host presents a server's credentials to its panel, e.g. `scheme-user-token whm`,
    /// `bearer`, `login-headers HTTP_AUTH_LOGIN HTTP_AUTH_PASSWD`. `null` when this host has
    /// not loaded the version.
    pub auth: Option<String>,
    /// How its panel signs customers in: `token-exchange` or `static-link`. `null` when this
    /// host has not loaded the version.
    pub sign_in: Option<String>,
    /// Its limits, which sync batches are sized by. `null` when this host has not loaded the
    /// version.
    pub limits: Option<LimitsView>,
}

/// A plugin's own limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    /// Most accounts per provisioning call.
    pub accounts_per_call: u32,
    /// Most panel operations per request to the panel.
    pub operations_per_request: u32,
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
    let compiled = state.catalog().compiled(&version.digest);
    let d = compiled.as_ref().map(|plugin| &plugin.description);
    PluginView {
        allowed_requests: d.map(|d| d.allowed_requests.iter().map(Into::into).collect()),
        auth: d.map(|d| d.auth.describe()),
        sign_in: d.map(|d| d.sign_in.as_str().to_owned()),
        limits: d.map(|d| LimitsView {
            accounts_per_call: d.limits.accounts_per_call,
            operations_per_request: d.limits.operations_per_request,
        }),
        ..version.into()
    }
}

impl From<PluginVersion> for PluginView {
    fn from(v: PluginVersion) -> Self {
        Self {
            state: v.state().as_str().to_owned(),
            name: v.name,
            application: v.application,
            version: v.version,
            digest: v.digest,
            contract: crate::catalog::contract_of_world(&v.world).to_owned(),
            world: v.world,
            active: v.active,
            signed_by: v.signed_by,
            source: match v.source {
                crate::storage::PluginSource::Directory => "directory",
                crate::storage::PluginSource::Upload => "upload",
            }
            .to_owned(),
            size: v.size,
            installed_at: rfc3339(v.installed_at),
            activated_at: v.activated_at.map(rfc3339),
            failed_at: v.failed_at.map(rfc3339),
            last_error: v.last_error,
            allowed_requests: None,
            auth: None,
            sign_in: None,
            limits: None,
        }
    }
}

/// The plugin versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    /// By name, then installation.
    pub plugins: Vec<PluginView>,
}

/// Every installed plugin version, with its state.
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

/// Upload a component (`application/wasm`), optionally signed with
/// `X-Panelink-Signature: ed25519=<base64>` over the signed message (the component's digest,
/// application and version; see the README). Once the host trusts any key (`trusted_keys`), a
/// component without a signature that one of them made is refused. The component is compiled
/// and must describe itself sensibly before it is recorded; 422 says why a file is refused, and
/// nothing is stored then. A new version is recorded `staged`: an upload never becomes active by
/// itself; `activate` does that. The same bytes again answer 200 with the recorded version.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins",
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    params(("X-Panelink-Signature" = Option<String>, Header,
        description = "ed25519=<base64 of the signature over the signed message>")),
    security(("bearer" = ["manage_plugins"])),
    responses(
        (status = 201, description = "Installed, staged", body = PluginView),
        (status = 200, description = "Already installed", body = PluginView),
        (status = 409, description = "This name and version exist with other content", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "Not a usable plugin, unsigned or not signed by a trusted key", body = ErrorBody),
    ))]
pub async fn upload(
    auth: Authorized<ManagePlugins>,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<PluginView>), ApiError> {
    if !super::extract::content_type_is(&headers, |essence| {
        essence == "application/wasm" || essence == "application/octet-stream"
    }) {
        return Err(ApiError::unsupported_media_type("application/wasm"));
    }
    let signature = match headers.get(SIGNATURE_HEADER) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::unprocessable("The X-Panelink-Signature header is not ASCII text.")
        })?),
    };
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
        .install(&auth.principal.actor(), &bytes, signature)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&state, version))))
}

/// The optional body of `activate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// A server of the plugin's application: the new version's support check of it must pass
    /// before the version is activated.
    pub canary_server_id: Option<i64>,
}

/// Make a version the active one (calls in flight finish on the old version); audited. The
/// version's self-description is checked again (unique scopes, labels, a compatible contract
/// version), an upload's signature against the keys trusted now, and with `canary_server_id`
/// the version must find that server supported. A refusal leaves the active version as it was:
/// 422 when the version itself is unfit (or the canary server is not one of its application's),
/// 409 when the canary check fails or the component is gone. The body may be empty.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/versions/{version}/activate", tag = "plugins",
    params(
        ("name" = String, Path, description = "Plugin name"),
        ("version" = String, Path, description = "Version"),
    ),
    request_body(content = Option<ActivateRequest>, content_type = "application/json",
        description = "Optional"),
    security(("bearer" = ["manage_plugins"])),
    responses(
        (status = 200, body = PluginView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The canary check failed, or the version's component is not available", body = ErrorBody),
        (status = 422, description = "The version fails its checks, or the canary server is not of its application", body = ErrorBody),
    ))]
pub async fn activate(
    auth: Authorized<ManagePlugins>,
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
    super::extract::OptionalJson(request): super::extract::OptionalJson<ActivateRequest>,
) -> Result<Json<PluginView>, ApiError> {
    let version = state
        .catalog()
        .activate(
            &auth.principal.actor(),
            &name,
            &version,
            request.canary_server_id,
        )
        .await?;
    Ok(Json(view(&state, version)))
}

/// Go back to the most recently active version that is not flagged `failed`; audited as
/// `plugin.rollback`. Its checks are the same as `activate`'s, without a canary.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/rollback", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    security(("bearer" = ["manage_plugins"])),
    responses(
        (status = 200, body = PluginView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No earlier good version", body = ErrorBody),
        (status = 422, description = "The earlier version fails its checks", body = ErrorBody),
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
