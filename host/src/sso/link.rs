//! Static links (`GET /sso/link/{handle}?scope=…`): the links of `static-link` panels, fixed
//! URLs per service that the panel opens as they are. Such a URL is a bearer credential that
//! ends up in page source, browser history and the panel's own records, so it is safe by
//! default (the threat model is in `docs/plugin-guide.md`, "Static-link sign-in"):
//!
//! - the handle is opaque: the credential's public id and a one-way digest of its secret
//!   ([`crate::sync::link_handle`]), never the secret; it changes whenever the credential
//!   rotates (an admin's `POST /api/v1/services/{id}/credential`), and the old one stops working
//!   at once; it is revoked with the service's links;
//! - following a link signs in only when an admin turned static sign-in on for the application
//!   (`PATCH /api/v1/applications/{id}` with `static_sign_in`, off by default); otherwise, and
//!   for any handle that does not check out, it leads to the client area's own login at the
//!   link's destination (a deep link that asks for the password);
//! - a sign-in is the token endpoint's own path ([`super::token::issue`]: the service's status,
//!   its server and application enabled, the scope provisioned, the per-credential rate limit)
//!   followed by the usual redemption, so every rule of `/oauth/token` and `/oauth/sso` holds;
//! - every answer is a redirect with `Cache-Control: no-store` and `Referrer-Policy:
//!   no-referrer` (the handle must not travel on in a `Referer`), rate limited per address like
//!   the token endpoint.

use std::net::IpAddr;

use subtle::ConstantTimeEq;

use super::Sso;
use super::token::{self, TokenError, TokenRequest};
use crate::catalog::Catalog;
use crate::model::Scope;
use crate::storage::Db;

/// The longest handle read (a subscriber id and a digest are far shorter).
const MAX_HANDLE: usize = 256;

/// Where following a static link leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutcome {
    /// Signed in: redeem a one-time token here (`/oauth/sso?access_token=…`).
    SignIn(String),
    /// Not signed in: the client area's own login, at this URL.
    Login(String),
}

/// Follow a static link. `Err` only when rate limited or storage failed.
pub async fn follow(
    sso: &Sso,
    db: &Db,
    catalog: &Catalog,
    handle: &str,
    scope: Option<&str>,
    source: Option<IpAddr>,
) -> Result<LinkOutcome, TokenError> {
    token::admit(sso, source)?;
    let login_root = || LinkOutcome::Login(format!("{}/", sso.client_area_url()));
    let Some(scope) = scope.and_then(|s| Scope::parse(s).ok()) else {
        return Ok(login_root());
    };
    let Some((subscriber_id, _)) = handle
        .rsplit_once('.')
        .filter(|_| handle.len() <= MAX_HANDLE)
    else {
        return Ok(login_root());
    };
    let Some(credential) = db
        .link_credential(subscriber_id)
        .await
        .map_err(|e| TokenError::server(&e))?
    else {
        return Ok(login_root());
    };
    let expected = crate::sync::link_handle(subscriber_id, &credential.secret);
    if !bool::from(expected.expose().as_bytes().ct_eq(handle.as_bytes())) {
        tracing::info!("static link refused: the handle does not match its credential");
        return Ok(login_root());
    }
    let login = || {
        LinkOutcome::Login(format!(
            "{}{}",
            sso.client_area_url(),
            sso.destination(
                catalog,
                &credential.application,
                scope.as_str(),
                credential.service_id
            )
        ))
    };
    if !credential.static_sign_in {
        return Ok(login());
    }
    let request = TokenRequest::for_link(
        subscriber_id.to_owned(),
        &credential.secret,
        scope.as_str(),
        credential.application.clone(),
    );
    match token::issue(sso, db, catalog, request, source).await {
        Ok(issued) => Ok(LinkOutcome::SignIn(issued.redirect_url)),
        Err(e @ (TokenError::RateLimited(_) | TokenError::ServerError)) => Err(e),
        // Whatever else the token endpoint refuses (a service that may not sign in, a scope
        // it was not given) leads to the login, as for a link that signs nobody in.
        Err(_) => Ok(login()),
    }
}
