//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`, `/api/v1/openapi.json`, and the
//! JSON answers for unknown routes and methods.

use std::sync::LazyLock;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// A status answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    /// `ok` or `ready`.
    pub status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = StatusView)))]
pub async fn healthz() -> Json<StatusView> {
    Json(StatusView {
        status: "ok".into(),
    })
}

/// Ready: migrations applied, plugins loaded, database reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = StatusView),
        (status = 503, description = "Starting, or the database is unreachable", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<StatusView>, ApiError> {
    if !state.is_ready() {
        return Err(ApiError::unavailable(
            "Panelink is starting: migrations or plugins are not ready yet.",
        ));
    }
    if let Err(e) = state.db().ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return Err(ApiError::unavailable("The database is unreachable."));
    }
    Ok(Json(StatusView {
        status: "ready".into(),
    }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let plugins: Vec<(String, String)> = state
        .catalog()
        .plugins()
        .all()
        .iter()
        .map(|p| (p.id().to_owned(), p.version().to_owned()))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(
            state.is_ready(),
            &plugins,
            &state.catalog().call_counts(),
            state.catalog().runtime().cache_stats(),
        ),
    )
        .into_response()
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    super::openapi()
        .to_json()
        .expect("the OpenAPI document serializes")
});

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// Unknown routes.
pub async fn fallback() -> ApiError {
    ApiError::not_found("route")
}

/// Known routes, wrong method.
pub async fn method_not_allowed() -> Response {
    let mut response = ApiError::method_not_allowed().into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}
