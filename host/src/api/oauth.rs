//! The single sign-on endpoints over HTTP; their rules are [`crate::sso::token`] and
//! [`crate::sso::redeem`].
//!
//! - `POST /oauth/token`: a form body, with `scope` and `module` in the query too (at most
//!   [`MAX_FORM_BYTES`] read). Answers follow RFC 6749 §5: `200 {"access_token", "expires_in",
//!   "token_type": "Bearer", "scope", "redirect_url"}`, or `{"error", "error_description"}` with
//!   400 `invalid_request` / `invalid_scope`, 401 `invalid_client`, 403 `access_denied`, 429
//!   `rate_limited` (with `Retry-After`), 500 `server_error`; always `Cache-Control: no-store`.
//! - `GET /oauth/sso?access_token=…`: a sign-in is a 302 to the destination with the session
//!   cookie; a refusal is an HTML page, 400 when the token is missing, unknown, used or expired
//!   (or its service is gone), 403 when the account may not sign in, 429 (with `Retry-After`)
//!   when the source address opened too many, 500 when storage failed.
//! - `GET /sso/link/{handle}?scope=…`: a static link ([`crate::sso::link`]): always a 302, to
//!   `/oauth/sso?access_token=…` when the application lets static links sign in and the handle
//!   checks out, else to the client area's login at the destination; 429 when rate limited;
//!   `Cache-Control: no-store` and `Referrer-Policy: no-referrer` on every answer.

use axum::Json;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::AppState;
use super::extract::Source;
use super::page::no_store;
use super::portal::CLIENT_AREA;
use crate::sso::link::{self, LinkOutcome};
use crate::sso::redeem::{self, Redemption, Refusal};
use crate::sso::token::{self, IssuedToken, TokenError, TokenRequest};

/// The largest token request body read (cPanel's is well under 2 KiB).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// `/oauth/token` and `/oauth/sso`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/oauth/token",
            post(token).fallback(token_method_not_allowed),
        )
        .route("/oauth/sso", get(sso))
        .route("/sso/link/{handle}", get(static_link))
}

/// `GET /sso/link/{handle}`.
async fn static_link(
    State(state): State<AppState>,
    Source(source): Source,
    axum::extract::Path(handle): axum::extract::Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let scope = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned());
    let outcome = link::follow(
        state.sso(),
        state.db(),
        state.catalog(),
        &handle,
        scope.as_deref(),
        source,
    )
    .await;
    let location = match outcome {
        Ok(LinkOutcome::SignIn(url) | LinkOutcome::Login(url)) => url,
        Err(TokenError::RateLimited(wait)) => {
            let mut response = CLIENT_AREA.message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-in attempts",
                "Please wait a moment, then click the link in your control panel again.",
                None,
            );
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            no_store(response.headers_mut());
            return response;
        }
        Err(_) => {
            return CLIENT_AREA.message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Signing you in failed on our side. Please try again from your control panel.",
                None,
            );
        }
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return refused(Refusal::ServiceGone);
    };
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    no_store(headers);
    response
}

/// A successful token answer (RFC 6749 §5.1, plus where to redeem the token).
#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
    token_type: &'static str,
    scope: String,
    redirect_url: String,
}

impl From<IssuedToken> for TokenResponse {
    fn from(issued: IssuedToken) -> Self {
        Self {
            access_token: issued.access_token,
            expires_in: issued.expires_in,
            token_type: "Bearer",
            scope: issued.scope,
            redirect_url: issued.redirect_url,
        }
    }
}

/// An RFC 6749 §5.2 error body.
#[derive(Debug, Serialize)]
struct OAuthErrorBody<'a> {
    error: &'static str,
    error_description: &'a str,
}

/// A refused token request: its status, the error body, `no-store`, and `Retry-After` (whole
/// seconds, rounded up) when rate limited.
fn token_error(e: &TokenError) -> Response {
    let status = match e {
        TokenError::InvalidRequest(_) | TokenError::InvalidScope(_) => StatusCode::BAD_REQUEST,
        TokenError::InvalidClient => StatusCode::UNAUTHORIZED,
        TokenError::AccessDenied(_) => StatusCode::FORBIDDEN,
        TokenError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        TokenError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = (
        status,
        Json(OAuthErrorBody {
            error: e.code(),
            error_description: e.description(),
        }),
    )
        .into_response();
    let headers = response.headers_mut();
    no_store(headers);
    if let TokenError::RateLimited(wait) = e {
        headers.insert(header::RETRY_AFTER, retry_after(*wait));
    }
    response
}

/// A `Retry-After` value: whole seconds, rounded up, at least 1.
fn retry_after(wait: std::time::Duration) -> HeaderValue {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
}

/// Any other method on `/oauth/token`: the token endpoint always answers the OAuth error body
/// (RFC 6749 §5.2), here with 405 and `Allow: POST`.
async fn token_method_not_allowed() -> Response {
    let mut response = (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(OAuthErrorBody {
            error: "invalid_request",
            error_description: "the token endpoint takes POST requests only",
        }),
    )
        .into_response();
    let headers = response.headers_mut();
    no_store(headers);
    headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// `POST /oauth/token`.
async fn token(
    State(state): State<AppState>,
    Source(source): Source,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    match issue(
        &state,
        source,
        query.as_deref().unwrap_or(""),
        request.into_body(),
    )
    .await
    {
        Ok(issued) => {
            let mut response = Json(TokenResponse::from(issued)).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(e) => token_error(&e),
    }
}

async fn issue(
    state: &AppState,
    source: Option<std::net::IpAddr>,
    query: &str,
    body: Body,
) -> Result<IssuedToken, TokenError> {
    let sso = state.sso();
    token::admit(sso, source)?;
    let body = to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
        TokenError::InvalidRequest(format!(
            "The request body is unreadable or larger than {MAX_FORM_BYTES} bytes."
        ))
    })?;
    let params = TokenRequest::parse(query, &body)?;
    token::issue(sso, state.db(), state.catalog(), params, source).await
}

/// `GET /oauth/sso`.
async fn sso(
    State(state): State<AppState>,
    Source(source): Source,
    RawQuery(query): RawQuery,
) -> Response {
    let access_token = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned());
    let sso = state.sso();
    if let Err(refusal) = redeem::admit(sso, source) {
        return refused(refusal);
    }
    let redemption = match redeem::redeem(sso, state.db(), access_token.as_deref(), source).await {
        Ok(redemption) => redemption,
        Err(e) => {
            tracing::error!(error = %e, "single sign-on redemption failed");
            return CLIENT_AREA.message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Signing you in failed on our side. Please try again from your control panel.",
                None,
            );
        }
    };
    match redemption {
        Redemption::SignedIn {
            client_id,
            location,
            session_token,
        } => {
            let Ok(location) = HeaderValue::from_str(&location) else {
                tracing::error!(client_id, "single sign-on destination is not a valid URL");
                return refused(Refusal::ServiceGone);
            };
            let cookie = HeaderValue::from_str(&sso.session_cookie(&session_token))
                .expect("a cookie of URL-safe characters is a valid header value");
            let mut response = StatusCode::FOUND.into_response();
            let headers = response.headers_mut();
            headers.insert(header::LOCATION, location);
            headers.insert(header::SET_COOKIE, cookie);
            no_store(headers);
            response
        }
        Redemption::Refused(refusal) => refused(refusal),
    }
}

/// The page of a refusal: what the customer reads, and what to do.
fn refused(refusal: Refusal) -> Response {
    let (status, title, text) = match refusal {
        Refusal::Missing | Refusal::Unknown => (
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "The link you followed is not a valid sign-in link. Go back to your control panel \
             and click the link again.",
        ),
        Refusal::Used => (
            StatusCode::BAD_REQUEST,
            "This sign-in link was already used",
            "Each sign-in link works once. Go back to your control panel and click the link \
             again.",
        ),
        Refusal::Expired => (
            StatusCode::BAD_REQUEST,
            "This sign-in link has expired",
            "Sign-in links work for a short time only. Go back to your control panel and click \
             the link again.",
        ),
        Refusal::ServiceGone => (
            StatusCode::BAD_REQUEST,
            "Single sign-on is not available",
            "The hosting account this link belongs to is no longer available.",
        ),
        Refusal::ClientClosed => (
            StatusCode::FORBIDDEN,
            "Your account is closed",
            "Single sign-on is not available for a closed account. Please contact support.",
        ),
        Refusal::SsoDisabled => (
            StatusCode::FORBIDDEN,
            "Single sign-on is turned off",
            "Single sign-on is turned off for this account. The account owner can turn it back \
             on under Security Settings in the client area; sign in there with your e-mail and \
             password.",
        ),
        Refusal::NoOwner | Refusal::NoPermission => (
            StatusCode::FORBIDDEN,
            "Single sign-on is not allowed for your user",
            "Your user does not have the Single Sign-On permission. Sign in to the client area \
             with your e-mail and password, or ask the account owner.",
        ),
        Refusal::RateLimited(wait) => {
            let mut response = CLIENT_AREA.message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-in attempts",
                "Too many sign-in links were opened from your network. Wait a minute, then \
                 click the link in your control panel again.",
                None,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after(wait));
            return response;
        }
    };
    CLIENT_AREA.message(status, title, text, None)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn token_errors_follow_rfc_6749() {
        let limited = token_error(&TokenError::RateLimited(Duration::from_millis(1500)));
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "2");
        assert_eq!(limited.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            token_error(&TokenError::InvalidClient).status(),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn refusals_about_the_account_are_forbidden() {
        assert_eq!(refused(Refusal::Used).status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            refused(Refusal::NoPermission).status(),
            StatusCode::FORBIDDEN
        );
    }
}
