//! The admin console's session: who a request's `panelink_console` cookie signs in, and whether
//! a request that changes something comes from the console's own pages.
//!
//! A session is opened by signing in with an admin API token ([`crate::storage::Db::open_console_session`])
//! and authenticates as that token, so it has exactly the token's admin and permissions and
//! ends with it. The cookie is `HttpOnly` and `SameSite=Strict`
//! ([`crate::sso::Sso::console_cookie`]); its CSRF token is derived from it
//! (`sso::csrf_token`), embedded in every console page, and required in the
//! [`CSRF_HEADER`] header (or the sign-out form's `csrf` field) of every request with an unsafe
//! method, which must also come from this host (`Origin`/`Referer`, the portal's rule).

use axum::http::{HeaderMap, Method, header};

use crate::api::error::ApiError;
use crate::api::extract::{cookie, header_text};
use crate::crypto::hash_token;
use crate::sso::{CONSOLE_COOKIE, Sso, csrf_token, token_shaped};
use crate::storage::{self, Principal};

/// The header that carries the session's CSRF token (the portal's name).
pub use crate::api::portal::CSRF_HEADER;

/// A signed-in admin, with the CSRF token the console's pages carry.
#[derive(Debug)]
pub struct Console {
    /// The admin, as their token authenticates now.
    pub principal: Principal,
    /// The session's CSRF token.
    pub csrf: String,
    /// The stored hash of the session cookie.
    pub session_hash: String,
}

/// The live console session behind the request's cookie, if any.
pub async fn signed_in(
    db: &storage::Db,
    headers: &HeaderMap,
) -> Result<Option<Console>, storage::Error> {
    let Some(token) = cookie(headers, CONSOLE_COOKIE).filter(|t| token_shaped(t)) else {
        return Ok(None);
    };
    let session_hash = hash_token(token);
    Ok(db
        .console_principal(&session_hash)
        .await?
        .map(|principal| Console {
            principal,
            csrf: csrf_token(token),
            session_hash,
        }))
}

/// Whether a request that changes something, presenting `csrf`, comes from the console's pages.
pub fn from_console(sso: &Sso, console: &Console, headers: &HeaderMap, csrf: Option<&str>) -> bool {
    sso.comes_from_our_pages(
        &console.csrf,
        csrf,
        header_text(headers, header::ORIGIN),
        header_text(headers, header::REFERER),
    )
}

/// The admin API's second way in, after `Authorization: Bearer`: the console session's admin.
/// `None` without a live session; 403 when a request with an unsafe method lacks the session's
/// CSRF token or comes from another origin.
pub async fn api_principal(
    state: &crate::api::AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let Some(console) = signed_in(state.db(), headers).await? else {
        return Ok(None);
    };
    if !method.is_safe() {
        let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !from_console(state.sso(), &console, headers, csrf) {
            return Err(ApiError::forbidden_because(
                "a console request that changes something must come from this host's console \
                 pages with the session's CSRF token (X-CSRF-Token)",
            ));
        }
    }
    Ok(Some(console.principal))
}
