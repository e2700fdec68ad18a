//! Extractors whose rejections are the contract's error body: [`ApiJson`], [`ApiPath`],
//! [`ApiQuery`], and [`Authorized`], which authenticates the bearer token (or the admin
//! console's session cookie, see [`super::console::session`]) and checks one permission before
//! anything else of the request is looked at; and [`Source`], the address a request comes from,
//! which never rejects.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::model::Permission;
use crate::storage::Principal;

/// A JSON body. A `Content-Type` other than JSON (`application/json` or `…+json`) is 415
/// before anything is read (so a page of another site cannot send a body as a plain form or
/// text); none at all is read as JSON. Then reads the body under the configured limit (413
/// beyond it) and parses it: unreadable JSON is 400 `bad_request`; wrong types, missing or
/// unknown fields are 422 `validation_failed` naming the field.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T> FromRequest<AppState> for ApiJson<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !content_type_is(req.headers(), |essence| {
            essence == "application/json" || essence.ends_with("+json")
        }) {
            return Err(ApiError::unsupported_media_type("application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(state.limits().max_body_bytes)
            } else {
                ApiError::bad_request("The request body could not be read.")
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be left out: an empty (or all-whitespace) body is `T::default()`,
/// anything else is read and checked as [`ApiJson`] does (415, 413, 400, 422).
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<T> FromRequest<AppState> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !content_type_is(req.headers(), |essence| {
            essence == "application/json" || essence.ends_with("+json")
        }) {
            return Err(ApiError::unsupported_media_type("application/json"));
        }
        let limit = state.limits().max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| ApiError::payload_too_large(limit))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Whether a request's `Content-Type`, if it has one, is one `accepts` takes (given the media
/// type without parameters, in lower case). A request without one passes.
pub fn content_type_is(headers: &axum::http::HeaderMap, accepts: impl Fn(&str) -> bool) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    value.to_str().is_ok_and(|v| {
        let essence = v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        accepts(&essence)
    })
}

/// Parse a JSON document into `T` with the API's error mapping: first the syntax of the whole
/// document (400), then its shape (422 naming the field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let document: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "The request body is not valid JSON: {}",
            strip_position(&e.to_string())
        ))
    })?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        let message = strip_position(&e.into_inner().to_string());
        // A missing field is reported at its parent; name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_owned(),
            (_, Some(name)) => format!("{path}.{name}"),
            (".", None) => "body".to_owned(),
            (_, None) => path,
        };
        ApiError::invalid_field(&field, message)
    })
}

/// serde_json appends " at line L column C"; keep the message readable for humans.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Path parameters; a segment that does not parse is 404.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query parameters; bad ones are 422.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// A permission an endpoint needs, as a type (see [`Authorized`]).
pub trait Need: Send + Sync + 'static {
    /// The permission the endpoint needs.
    const PERMISSION: Permission;
}

macro_rules! needs {
    ($($(#[$doc:meta])* $name:ident => $permission:ident),+ $(,)?) => {
        $(
            $(#[$doc])*
            #[derive(Debug)]
            pub struct $name;

            impl Need for $name {
                const PERMISSION: Permission = Permission::$permission;
            }
        )+
    };
}

needs! {
    /// `configure_application_links`.
    ConfigureLinks => ConfigureApplicationLinks,
    /// `manage_servers`.
    ManageServers => ManageServers,
    /// `manage_clients`.
    ManageClients => ManageClients,
    /// `manage_plugins`.
    ManagePlugins => ManagePlugins,
    /// `manage_admins`.
    ManageAdmins => ManageAdmins,
}

/// The authenticated admin, holding permission `N`: 401 without a valid bearer token or console
/// session, 403 when the role lacks the permission (or a console request that changes something
/// lacks its CSRF token or comes from another origin).
#[derive(Debug)]
pub struct Authorized<N: Need> {
    /// The admin the bearer token belongs to, with their role's permissions.
    pub principal: Principal,
    need: PhantomData<N>,
}

impl<N: Need> FromRequestParts<AppState> for Authorized<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = match parts.headers.get(header::AUTHORIZATION) {
            Some(value) => {
                let token = value
                    .to_str()
                    .ok()
                    .and_then(|v| {
                        let (scheme, token) = v.split_once(' ')?;
                        scheme
                            .eq_ignore_ascii_case("bearer")
                            .then(|| token.trim())
                            .filter(|t| !t.is_empty() && t.len() <= 256)
                    })
                    .ok_or_else(ApiError::unauthorized)?;
                state
                    .db()
                    .authenticate(token)
                    .await?
                    .ok_or_else(ApiError::unauthorized)?
            }
            // No bearer token: the admin console's session, if any.
            None => super::console::session::api_principal(state, &parts.method, &parts.headers)
                .await?
                .ok_or_else(ApiError::unauthorized)?,
        };
        if !principal.may(N::PERMISSION) {
            return Err(ApiError::forbidden(N::PERMISSION.as_str()));
        }
        Ok(Self {
            principal,
            need: PhantomData,
        })
    }
}

/// The address a request comes from: the connecting address, or behind a trusted proxy
/// (`trusted_proxies`) the client its `X-Forwarded-For` names ([`crate::net::TrustedProxies`]).
/// `None` unless the server records the connecting address (`api::serve` does; an app driven
/// without a listener, as in tests, does not). It feeds every per-address rate limit and the
/// client activity log.
#[derive(Debug, Clone, Copy)]
pub struct Source(pub Option<IpAddr>);

impl FromRequestParts<AppState> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(Source(None));
        };
        let proxies = &state.sso().config().trusted_proxies;
        if proxies.is_empty() {
            return Ok(Source(Some(peer.ip().to_canonical())));
        }
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(Source(Some(proxies.client(peer.ip(), &forwarded))))
    }
}

/// A cookie's value from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A header as sent. A value that is not text is passed as `""`: it was sent, so it still
/// decides an origin check, and it names no origin.
pub fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}
