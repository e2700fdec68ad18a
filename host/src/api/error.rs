//! The API's one error type: every 4xx/5xx of the JSON API is
//! `{"error": {"code", "message", "fields"?}}`, and a 500 never carries internal details (they go
//! to the log instead).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::catalog;
use crate::storage;
use crate::sync::SyncError;

/// An API error, rendered as the contract's error body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Option<BTreeMap<String, String>>,
}

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `unauthorized`, `forbidden`, `not_found`, `conflict`, `validation_failed`,
    /// `payload_too_large`, `unsupported_media_type`, `bad_request`, `method_not_allowed`,
    /// `request_timeout`, `unavailable`, `internal`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// For validation errors: why each field was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: None,
        }
    }

    /// 401: no or bad token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "A valid API token is required (Authorization: Bearer <token>).",
        )
    }

    /// 403: the role lacks a permission.
    pub fn forbidden(permission: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("Your role does not have the {permission} permission."),
        )
    }

    /// 403: the admin may not do this, for the reason given.
    pub fn forbidden_because(reason: &str) -> Self {
        let mut message = reason.to_owned();
        if let Some(first) = message.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        Self::new(StatusCode::FORBIDDEN, "forbidden", format!("{message}."))
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        let mut what = what.to_owned();
        if let Some(first) = what.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found."),
        )
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422 with per-field reasons.
    pub fn validation(fields: BTreeMap<String, String>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Some fields are not valid.",
        );
        e.fields = Some(fields);
        e
    }

    /// 422 about one field.
    pub fn invalid_field(field: &str, why: impl Into<String>) -> Self {
        Self::validation(BTreeMap::from([(field.to_owned(), why.into())]))
    }

    /// 422 without fields (e.g. an unusable plugin component).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }

    /// 400: the request cannot be read.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 413.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    /// 415: the body is not of the media type the operation reads.
    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("The request body must be sent as Content-Type: {expected}."),
        )
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "This method is not allowed on this path.",
        )
    }

    /// 408: the request's body did not arrive in time.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "The request body did not arrive in time.",
        )
    }

    /// 503 while starting.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500; the cause is logged here, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side; the details are in the server log.",
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                fields: self.fields,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<storage::Error> for ApiError {
    fn from(e: storage::Error) -> Self {
        match e {
            storage::Error::NotFound(what) => ApiError::not_found(what),
            storage::Error::Conflict(message) => ApiError::conflict(message),
            storage::Error::Forbidden(reason) => ApiError::forbidden_because(&reason),
            storage::Error::TokenRequired => ApiError::invalid_field(
                "api_token",
                "required when hostname, port or secure change: the stored token was given for \
                 the old place only",
            ),
            e @ storage::Error::ServerToken { .. } => {
                let mut message = e.to_string();
                if let Some(first) = message.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                ApiError::conflict(format!("{message}."))
            }
            e => ApiError::internal(&e),
        }
    }
}

impl From<catalog::Error> for ApiError {
    fn from(e: catalog::Error) -> Self {
        match e {
            catalog::Error::Invalid(message) => ApiError::unprocessable(message),
            catalog::Error::Field { field, message } => ApiError::invalid_field(field, message),
            catalog::Error::NotFound(what) => ApiError::not_found(what),
            catalog::Error::Conflict(message) => ApiError::conflict(message),
            catalog::Error::Storage(e) => e.into(),
        }
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        ApiError::internal(&e)
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        // A path segment that does not parse (e.g. a non-numeric id) names nothing that exists.
        ApiError::not_found("resource")
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::invalid_field("query", e.body_text())
    }
}

/// Complete every operation of the document with the error answers it can give, each with the
/// error body ([`ErrorBody`]); statuses an operation already documents keep their own
/// description. Derived from the operation's shape, so every route, including ones added
/// later, is covered by the same rule:
/// - with a security requirement: 401 (no, bad, expired or revoked token), 403 (the role lacks
///   the permission, or the admin may not act on that), 500;
/// - with a path parameter: 404 (a value that does not parse or names nothing);
/// - with a query parameter: 422;
/// - with a request body: 400 (unreadable), 408 (`http_body_timeout`), 413 (over the limit),
///   415 (another `Content-Type`), 422 (a refused field);
/// - every operation: 503 (`http_max_connections` reached).
pub(crate) fn document_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let answer = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let has = |place: ParameterIn| {
                operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == place)
            };
            let (path, query) = (has(ParameterIn::Path), has(ParameterIn::Query));
            let body = operation.request_body.is_some();
            let statuses: [(bool, &str, &str); 10] = [
                (
                    body,
                    "400",
                    "The request body cannot be read (not valid JSON): `bad_request`",
                ),
                (
                    secured,
                    "401",
                    "No API token, or one that is unknown, expired or revoked: `unauthorized`",
                ),
                (
                    secured,
                    "403",
                    "The role lacks the operation's permission, or the admin may not act on this: `forbidden`",
                ),
                (
                    path,
                    "404",
                    "A path parameter does not parse or names nothing that exists: `not_found`",
                ),
                (
                    body,
                    "408",
                    "The body did not arrive within `http_body_timeout`: `request_timeout`",
                ),
                (
                    body,
                    "413",
                    "The body is larger than the limit (`max_body_bytes`; plugins: `max_plugin_bytes`): `payload_too_large`",
                ),
                (
                    body,
                    "415",
                    "The body's `Content-Type` is not the one the operation reads: `unsupported_media_type`",
                ),
                (
                    body || query,
                    "422",
                    "A field, query parameter or header is refused; `fields` names each: `validation_failed`",
                ),
                (
                    secured,
                    "500",
                    "Something failed on our side; the details are only in the server log: `internal`",
                ),
                (
                    true,
                    "503",
                    "Starting, or `http_max_connections` connections are being served: `unavailable`",
                ),
            ];
            for (applies, status, description) in statuses {
                if applies && !operation.responses.responses.contains_key(status) {
                    operation
                        .responses
                        .responses
                        .insert(status.to_owned(), answer(description).into());
                }
            }
        }
    }
}

/// Collects per-field validation failures, then builds the value or answers 422.
#[derive(Debug, Default)]
pub struct Check {
    fields: BTreeMap<String, String>,
}

impl Check {
    /// A new, empty check.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep the value, or note why `field` failed.
    pub fn field<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(why) => {
                self.fields.entry(field.to_owned()).or_insert(why);
                None
            }
        }
    }

    /// An optional field: `None` stays `Some(None)`; a present one is checked.
    pub fn optional<T, R>(
        &mut self,
        field: &str,
        raw: Option<R>,
        parse: impl FnOnce(R) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match raw {
            None => Some(None),
            Some(raw) => self.field(field, parse(raw)).map(Some),
        }
    }

    /// Note a failure.
    pub fn fail(&mut self, field: &str, why: impl Into<String>) {
        self.fields
            .entry(field.to_owned())
            .or_insert_with(|| why.into());
    }

    /// Whether anything failed so far.
    pub fn failed(&self) -> bool {
        !self.fields.is_empty()
    }

    /// 422 with every failure, or the value `build` makes from the checked parts.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        if !self.fields.is_empty() {
            return Err(ApiError::validation(self.fields));
        }
        build().ok_or_else(|| ApiError::internal(&"a checked field had no value"))
    }
}
