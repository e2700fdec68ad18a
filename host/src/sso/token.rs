//! The token request's rules (`POST /oauth/token`, served by `api::oauth`): the panel's server
//! trades a link's credential for a one-time access token.
//!
//! Parameters as cPanel sends them ([`TokenRequest::parse`]): the link's fields in the form body
//! (`subscriber_unique_id`, `token`, …, `attempt`), and `scope=clientarea:sso <scope>` and
//! `module=<application>` in the query of the `autologin_token_url` (also accepted in the body,
//! the query winning; the credential is only read from the body).
//!
//! Checks, in order: the per-address rate limit ([`admit`], before the body is read); the
//! parameters present and well-formed; the per-credential rate limit; the credential (constant
//! time, in storage); then that the service may sign in: active or suspended, on a server of the
//! requested application, that server enabled, Application Links on for the application, and a
//! link of the scope provisioned. A refusal is a [`TokenError`], one of RFC 6749 §5's errors.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::{SSO_SCOPE, Sso, new_token};
use crate::adapter::Secret;
use crate::catalog::Catalog;
use crate::crypto::hash_token;
use crate::model::{ApplicationId, Scope};
use crate::storage::{CredentialCheck, Db, NewSsoToken, SsoSubject, now_ms};

/// The longest subscriber id considered (ours are 36 characters).
const MAX_SUBSCRIBER_ID: usize = 128;

/// An issued access token and where the browser redeems it.
#[derive(Debug)]
pub struct IssuedToken {
    /// The one-time token (only its hash is stored).
    pub access_token: String,
    /// Seconds until it expires (at least 1).
    pub expires_in: u64,
    /// The granted scope: `clientarea:sso <link scope>`.
    pub scope: String,
    /// `<public_url>/oauth/sso?access_token=…`.
    pub redirect_url: String,
}

/// Why a token request is refused: the RFC 6749 §5 error, with a sentence for the panel's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// A parameter is missing, repeated or malformed, or the body is unreadable.
    InvalidRequest(String),
    /// The scope parameter is malformed, or the service has no link of that scope.
    InvalidScope(String),
    /// The credential is unknown or its secret is wrong.
    InvalidClient,
    /// The credential is right, but the service may not sign in now.
    AccessDenied(String),
    /// Too many requests from the address or for the credential; the next is allowed after
    /// this long.
    RateLimited(Duration),
    /// Storage failed; the cause is in the server log, never in the answer.
    ServerError,
}

impl TokenError {
    /// Log the cause of a failure on our side and refuse with `server_error`.
    pub(crate) fn server(cause: &dyn fmt::Display) -> Self {
        tracing::error!(error = %cause, "single sign-on token request failed");
        TokenError::ServerError
    }

    /// The RFC 6749 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::InvalidClient => "invalid_client",
            TokenError::AccessDenied(_) => "access_denied",
            TokenError::RateLimited(_) => "rate_limited",
            TokenError::ServerError => "server_error",
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> &str {
        match self {
            TokenError::InvalidRequest(why)
            | TokenError::InvalidScope(why)
            | TokenError::AccessDenied(why) => why,
            TokenError::InvalidClient => "The link's credential is not valid.",
            TokenError::RateLimited(_) => "Too many sign-in requests; try again shortly.",
            TokenError::ServerError => {
                "Something went wrong on our side; the details are in the server log."
            }
        }
    }
}

/// The parameters of a token request that matter.
#[derive(Debug, Default)]
pub struct TokenRequest {
    subscriber_id: Option<String>,
    secret: Option<String>,
    scope: Option<String>,
    module: Option<String>,
    attempt: Option<String>,
}

impl TokenRequest {
    /// The request a static link stands for, once its handle has been checked: the credential
    /// it names, the link's scope and the credential's application.
    pub fn for_link(subscriber_id: String, secret: &Secret, scope: &str, module: String) -> Self {
        Self {
            subscriber_id: Some(subscriber_id),
            secret: Some(secret.expose().to_owned()),
            scope: Some(format!("{SSO_SCOPE} {scope}")),
            module: Some(module),
            attempt: None,
        }
    }

    /// Read the URL's query and the form body (both `application/x-www-form-urlencoded`).
    ///
    /// The query gives `scope` and `module` (the plugin put them in the `autologin_token_url`);
    /// the body gives the credential and may give `scope` and `module` too, the query's winning.
    /// Credentials in the query are ignored (URLs end up in logs), and a parameter given twice
    /// in one place is refused: which value counts would be ambiguous.
    pub fn parse(query: &str, body: &[u8]) -> Result<Self, TokenError> {
        let twice = |key: &str| {
            TokenError::InvalidRequest(format!("The {key} parameter is given more than once."))
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
fn link_scope(raw: &str) -> Result<Scope, TokenError> {
    let malformed = |why: &str| TokenError::InvalidScope(why.to_owned());
    let mut sso = false;
    let mut link = None;
    for part in raw.split_whitespace() {
        if part == SSO_SCOPE {
            sso = true;
            continue;
        }
        let scope =
            Scope::parse(part).map_err(|_| malformed("The scope parameter is malformed."))?;
        if link.replace(scope).is_some() {
            return Err(malformed(
                "The scope parameter names more than one link scope.",
            ));
        }
    }
    if !sso {
        return Err(TokenError::InvalidScope(format!(
            "The scope parameter must include {SSO_SCOPE}."
        )));
    }
    link.ok_or_else(|| malformed("The scope parameter names no link scope."))
}

/// The per-address rate limit, checked before anything of the request is read (`None`: the
/// address is unknown, and only the per-credential limit applies).
pub fn admit(sso: &Sso, source: Option<IpAddr>) -> Result<(), TokenError> {
    let Some(addr) = source else {
        return Ok(());
    };
    sso.per_address
        .check(&crate::net::rate_key(addr))
        .map_err(|wait| {
            tracing::debug!(%addr, "single sign-on token requests rate limited (address)");
            TokenError::RateLimited(wait)
        })
}

/// Whether a valid credential's subject may have a token of `scope` for `application`: the
/// service active or suspended, on a server of the application, that server enabled, Application
/// Links on for the application, and a link of the scope provisioned. A refusal comes with the
/// reason for the log.
fn judge(
    subject: &SsoSubject,
    application: &ApplicationId,
    scope: &Scope,
) -> Result<(), (&'static str, TokenError)> {
    let not_provisioned = || {
        TokenError::InvalidScope(format!(
            "The service has no {scope} link for {application}."
        ))
    };
    if !subject.service_status.gets_links() {
        return Err((
            "service status",
            TokenError::AccessDenied(format!(
                "The service is {}; only active and suspended services can sign in.",
                subject.service_status
            )),
        ));
    }
    if subject.server_module != application.as_str() {
        return Err(("another application", not_provisioned()));
    }
    if !subject.server_enabled {
        return Err((
            "server disabled",
            TokenError::AccessDenied("The service's server is disabled.".to_owned()),
        ));
    }
    if !subject.application_enabled {
        return Err((
            "application disabled",
            TokenError::AccessDenied(format!(
                "Application Links are turned off for {application}."
            )),
        ));
    }
    if !subject.scope_provisioned {
        return Err(("scope not provisioned", not_provisioned()));
    }
    Ok(())
}

/// Check a token request (after [`admit`]) and issue its access token.
pub async fn issue(
    sso: &Sso,
    db: &Db,
    catalog: &Catalog,
    params: TokenRequest,
    source: Option<IpAddr>,
) -> Result<IssuedToken, TokenError> {
    let missing =
        |name: &str| TokenError::InvalidRequest(format!("The {name} parameter is missing."));
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
        TokenError::InvalidRequest("The module parameter is not an application id.".to_owned())
    })?;
    if subscriber_id.len() > MAX_SUBSCRIBER_ID {
        return Err(TokenError::InvalidClient);
    }
    sso.per_credential
        .check(subscriber_id.as_str())
        .map_err(|wait| {
            tracing::debug!("single sign-on token requests rate limited (credential)");
            TokenError::RateLimited(wait)
        })?;

    // The credential is checked, and the token stored, in one write: `judge` decides there
    // whether the subject may have one, and again here (it is a plain function of the subject)
    // for the answer and the log.
    let access_token = new_token();
    let token_hash = hash_token(&access_token);
    let issued_hash = token_hash.clone();
    let ttl_ms = i64::try_from(sso.config().token_ttl.as_millis()).unwrap_or(i64::MAX);
    let template = sso.destination_template(catalog, application.as_str(), scope.as_str());
    let check = CredentialCheck {
        subscriber_id,
        presented: Secret::new(secret),
        application: application.as_str().to_owned(),
        scope: scope.as_str().to_owned(),
    };
    let (app, link) = (application.clone(), scope.clone());
    let from = source.map(|a| a.to_string());
    let subject = db
        .issue_sso_token(check, move |subject| {
            judge(subject, &app, &link).ok()?;
            Some(NewSsoToken {
                token_hash: token_hash.clone(),
                service_id: subject.service_id,
                application: app.as_str().to_owned(),
                scope: link.as_str().to_owned(),
                destination: crate::model::fill_destination(&template, subject.service_id),
                source: from.clone(),
                expires_at: now_ms().saturating_add(ttl_ms),
            })
        })
        .await
        .map_err(|e| TokenError::server(&e))?
        .ok_or_else(|| {
            tracing::info!(
                application = application.as_str(),
                "single sign-on refused: invalid link credential"
            );
            TokenError::InvalidClient
        })?;
    if let Err((reason, error)) = judge(&subject, &application, &scope) {
        tracing::info!(
            service_id = subject.service_id,
            application = application.as_str(),
            scope = scope.as_str(),
            reason,
            "single sign-on token refused"
        );
        return Err(error);
    }
    sso.remember_issued(&issued_hash);
    let config = sso.config();
    sso.purge_when_due(db);
    tracing::info!(
        service_id = subject.service_id,
        client_id = subject.client_id,
        application = application.as_str(),
        scope = scope.as_str(),
        attempt = params.attempt.as_deref().unwrap_or(""),
        "single sign-on token issued"
    );
    Ok(IssuedToken {
        redirect_url: format!("{}/oauth/sso?access_token={access_token}", sso.public_url()),
        access_token,
        expires_in: config.token_ttl.as_secs().max(1),
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
