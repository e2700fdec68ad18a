//! `POST /oauth/token`: the panel's server trades a link's credential for a one-time access
//! token.
//!
//! Input as cPanel sends it: a form body with the link's fields (`subscriber_unique_id`,
//! `token`, `url`, `app`, `user`, …, `attempt`), and `scope=clientarea:sso <scope>` and
//! `module=<application>` in the query of the `autologin_token_url` (also accepted in the body,
//! the query winning; the credential is only read from the body). Answers and errors follow RFC 6749 §5: `200 {"access_token",
//! "expires_in", "token_type": "Bearer", "scope", "redirect_url"}`, or `{"error",
//! "error_description"}` with 400 `invalid_request` / `invalid_scope`, 401 `invalid_client`,
//! 403 `access_denied`, 429 `rate_limited` (with `Retry-After`), 500 `server_error`; always
//! `Cache-Control: no-store`.

use std::time::Duration;

use axum::Json;
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{SSO_SCOPE, html, new_token, source_addr};
use crate::api::AppState;
use crate::crypto::hash_token;
use crate::model::{ApplicationId, Scope};
use crate::storage::{NewSsoToken, now_ms};

/// The largest form body read (cPanel's is well under 2 KiB).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The longest subscriber id considered (ours are 36 characters).
const MAX_SUBSCRIBER_ID: usize = 128;

/// The token answer.
#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
    token_type: &'static str,
    scope: String,
    redirect_url: String,
}

#[derive(Debug, Serialize)]
struct OAuthErrorBody {
    error: &'static str,
    error_description: String,
}

/// An RFC 6749 error answer.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    retry_after: Option<Duration>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            retry_after: None,
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    fn invalid_client() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The link's credential is not valid.",
        )
    }

    fn access_denied(description: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "access_denied", description)
    }

    fn rate_limited(wait: Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many sign-in requests; try again shortly.",
        );
        e.retry_after = Some(wait);
        e
    }

    fn server_error(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "single sign-on token request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Something went wrong on our side; the details are in the server log.",
        )
    }

    /// The `error` code.
    pub fn code(&self) -> &'static str {
        self.error
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(OAuthErrorBody {
                error: self.error,
                error_description: self.description,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        html::no_store(headers);
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

/// The request's parameters that matter.
#[derive(Debug, Default)]
struct TokenRequest {
    subscriber_id: Option<String>,
    secret: Option<String>,
    scope: Option<String>,
    module: Option<String>,
    attempt: Option<String>,
}

impl TokenRequest {
    /// The query gives `scope` and `module` (the plugin put them in the `autologin_token_url`);
    /// the body gives the credential and may give `scope` and `module` too, the query's winning.
    /// Credentials in the query are ignored (URLs end up in logs), and a parameter given twice
    /// in one place is refused: which value counts would be ambiguous.
    fn parse(query: &str, body: &[u8]) -> Result<Self, OAuthError> {
        let twice = |key: &str| {
            OAuthError::invalid_request(format!("The {key} parameter is given more than once."))
        };
        let mut request = TokenRequest::default();
        let mut in_query = (false, false);
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let (slot, seen) = match key.as_ref() {
                "scope" => (&mut request.scope, &mut in_query.0),
                "module" => (&mut request.module, &mut in_query.1),
                _ => continue,
            };
            if *seen {
                return Err(twice(&key));
            }
            *seen = true;
            *slot = Some(value.into_owned());
        }
        let mut in_body = [false; 5];
        for (key, value) in url::form_urlencoded::parse(body) {
            let (index, slot, query_wins) = match key.as_ref() {
                "subscriber_unique_id" => (0, &mut request.subscriber_id, false),
                "token" => (1, &mut request.secret, false),
                "attempt" => (2, &mut request.attempt, false),
                "scope" => (3, &mut request.scope, in_query.0),
                "module" => (4, &mut request.module, in_query.1),
                _ => continue,
            };
            if std::mem::replace(&mut in_body[index], true) {
                return Err(twice(&key));
            }
            if !query_wins {
                *slot = Some(value.into_owned());
            }
        }
        Ok(request)
    }
}

/// The one link scope of a `scope` parameter: `clientarea:sso` plus exactly one other.
fn link_scope(raw: &str) -> Result<Scope, OAuthError> {
    let mut sso = false;
    let mut link = None;
    for part in raw.split_whitespace() {
        if part == SSO_SCOPE {
            sso = true;
            continue;
        }
        let scope = Scope::parse(part)
            .map_err(|_| OAuthError::invalid_scope("The scope parameter is malformed."))?;
        if link.replace(scope).is_some() {
            return Err(OAuthError::invalid_scope(
                "The scope parameter names more than one link scope.",
            ));
        }
    }
    if !sso {
        return Err(OAuthError::invalid_scope(format!(
            "The scope parameter must include {SSO_SCOPE}."
        )));
    }
    link.ok_or_else(|| OAuthError::invalid_scope("The scope parameter names no link scope."))
}

/// `POST /oauth/token`.
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    match issue(&state, request).await {
        Ok(answer) => {
            let mut response = Json(answer).into_response();
            html::no_store(response.headers_mut());
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn issue(state: &AppState, request: Request) -> Result<TokenResponse, OAuthError> {
    let sso = state.sso();
    let source = source_addr(request.extensions());
    if let Some(addr) = source {
        sso.per_address.check(&addr).map_err(|wait| {
            tracing::debug!(%addr, "single sign-on token requests rate limited (address)");
            OAuthError::rate_limited(wait)
        })?;
    }
    let query = request.uri().query().unwrap_or("").to_owned();
    let body = to_bytes(request.into_body(), MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            OAuthError::invalid_request(format!(
                "The request body is unreadable or larger than {MAX_FORM_BYTES} bytes."
            ))
        })?;
    let params = TokenRequest::parse(&query, &body)?;
    let missing =
        |name: &str| OAuthError::invalid_request(format!("The {name} parameter is missing."));
    let subscriber_id = params
        .subscriber_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("subscriber_unique_id"))?;
    let secret = params
        .secret
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("token"))?;
    let scope = link_scope(&params.scope.ok_or_else(|| missing("scope"))?)?;
    let module = params.module.ok_or_else(|| missing("module"))?;
    let application = ApplicationId::parse(&module).map_err(|_| {
        OAuthError::invalid_request("The module parameter is not an application id.")
    })?;
    if subscriber_id.len() > MAX_SUBSCRIBER_ID {
        return Err(OAuthError::invalid_client());
    }
    sso.per_credential
        .check(subscriber_id.as_str())
        .map_err(|wait| {
            tracing::debug!("single sign-on token requests rate limited (credential)");
            OAuthError::rate_limited(wait)
        })?;

    let subject = state
        .db()
        .check_sso_credential(
            &subscriber_id,
            &secret,
            application.as_str(),
            scope.as_str(),
        )
        .await
        .map_err(|e| OAuthError::server_error(&e))?
        .ok_or_else(|| {
            tracing::info!(
                application = application.as_str(),
                "single sign-on refused: invalid link credential"
            );
            OAuthError::invalid_client()
        })?;
    let refuse = |reason: &str, error: OAuthError| {
        tracing::info!(
            service_id = subject.service_id,
            application = application.as_str(),
            scope = scope.as_str(),
            reason,
            "single sign-on token refused"
        );
        error
    };
    if !subject.service_status.gets_links() {
        return Err(refuse(
            "service status",
            OAuthError::access_denied(format!(
                "The service is {}; only active and suspended services can sign in.",
                subject.service_status
            )),
        ));
    }
    let not_provisioned = || {
        OAuthError::invalid_scope(format!(
            "The service has no {scope} link for {application}."
        ))
    };
    if subject.server_module != application.as_str() {
        return Err(refuse("another application", not_provisioned()));
    }
    if !subject.server_enabled {
        return Err(refuse(
            "server disabled",
            OAuthError::access_denied("The service's server is disabled."),
        ));
    }
    if !subject.application_enabled {
        return Err(refuse(
            "application disabled",
            OAuthError::access_denied(format!(
                "Application Links are turned off for {application}."
            )),
        ));
    }
    if !subject.scope_provisioned {
        return Err(refuse("scope not provisioned", not_provisioned()));
    }

    let config = sso.config();
    let destination = sso.destination(
        state.catalog(),
        application.as_str(),
        scope.as_str(),
        subject.service_id,
    );
    let access_token = new_token();
    let ttl_ms = i64::try_from(config.token_ttl.as_millis()).unwrap_or(i64::MAX);
    state
        .db()
        .create_sso_token(NewSsoToken {
            token_hash: hash_token(&access_token),
            service_id: subject.service_id,
            application: application.as_str().to_owned(),
            scope: scope.as_str().to_owned(),
            destination,
            source: source.map(|a| a.to_string()),
            expires_at: now_ms().saturating_add(ttl_ms),
        })
        .await
        .map_err(|e| OAuthError::server_error(&e))?;
    sso.purge_when_due(state.db());
    tracing::info!(
        service_id = subject.service_id,
        client_id = subject.client_id,
        application = application.as_str(),
        scope = scope.as_str(),
        attempt = params.attempt.as_deref().unwrap_or(""),
        "single sign-on token issued"
    );
    Ok(TokenResponse {
        redirect_url: format!("{}/oauth/sso?access_token={access_token}", sso.public_url()),
        access_token,
        expires_in: config.token_ttl.as_secs().max(1),
        token_type: "Bearer",
        scope: format!("{SSO_SCOPE} {scope}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parameter() {
        assert_eq!(
            link_scope("clientarea:sso clientarea:invoices")
                .unwrap()
                .as_str(),
            "clientarea:invoices"
        );
        assert_eq!(
            link_scope("  clientarea:tickets   clientarea:sso ")
                .unwrap()
                .as_str(),
            "clientarea:tickets"
        );
        for bad in [
            "",
            "clientarea:sso",
            "clientarea:invoices",
            "clientarea:sso clientarea:a clientarea:b",
            "clientarea:sso <script>",
        ] {
            assert_eq!(
                link_scope(bad).unwrap_err().code(),
                "invalid_scope",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn form_parsing() {
        let r = TokenRequest::parse(
            "scope=clientarea%3Asso+clientarea%3Ainvoices&module=cpanel",
            b"subscriber_unique_id=svc_1&token=s3cr%2Bt&attempt=2&url=x&scope=other",
        )
        .unwrap();
        assert_eq!(r.subscriber_id.as_deref(), Some("svc_1"));
        assert_eq!(r.secret.as_deref(), Some("s3cr+t"));
        assert_eq!(
            r.scope.as_deref(),
            Some("clientarea:sso clientarea:invoices")
        );
        assert_eq!(r.module.as_deref(), Some("cpanel"));
        assert_eq!(r.attempt.as_deref(), Some("2"));
        let body_only = TokenRequest::parse("", b"scope=a&module=b").unwrap();
        assert_eq!(body_only.module.as_deref(), Some("b"));
        let in_query = TokenRequest::parse("token=a&subscriber_unique_id=b", b"").unwrap();
        assert_eq!(
            (in_query.secret, in_query.subscriber_id),
            (None, None),
            "never from a URL"
        );
        assert!(TokenRequest::parse("", b"token=a&token=b").is_err());
        assert!(TokenRequest::parse("", b"module=a&module=b").is_err());
        assert!(TokenRequest::parse("scope=a&scope=b", b"").is_err());
    }
}
