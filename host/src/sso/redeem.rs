//! `GET /oauth/sso?access_token=…`: the browser redeems the one-time token and is signed in to
//! the client area as the owner of the service's client account.
//!
//! One transaction ([`crate::storage::Db::redeem_sso_token`]) consumes the token, reads the
//! account as it is at that moment, and writes the outcome: on success a portal session and an
//! activity entry, on a refusal only the activity entry. Success is a 302 to `client_area_url` +
//! the destination with the session cookie; a refusal is an HTML page (400 for a token that is
//! missing, unknown, used or expired; 403 when the account may not sign in).

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{html, new_token, source_addr, token_shaped};
use crate::api::AppState;
use crate::crypto::hash_token;
use crate::model::ClientStatus;
use crate::storage::{
    ActivityOutcome, NewActivity, NewPortalSession, RedeemWrites, TokenInfo, TokenLookup, now_ms,
};

/// Why a redemption was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `access_token`.
    Missing,
    /// No such token.
    Unknown,
    /// Used before.
    Used,
    /// Expired.
    Expired,
    /// The service (or its client) is gone.
    ServiceGone,
    /// The client account is closed.
    ClientClosed,
    /// The account has single sign-on off.
    SsoDisabled,
    /// The account has no owner.
    NoOwner,
    /// The owner lacks the `sso` permission.
    NoPermission,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::Missing
            | Refusal::Unknown
            | Refusal::Used
            | Refusal::Expired
            | Refusal::ServiceGone => StatusCode::BAD_REQUEST,
            Refusal::ClientClosed
            | Refusal::SsoDisabled
            | Refusal::NoOwner
            | Refusal::NoPermission => StatusCode::FORBIDDEN,
        }
    }

    /// What the customer reads.
    fn page(self) -> (&'static str, &'static str) {
        match self {
            Refusal::Missing | Refusal::Unknown => (
                "This sign-in link is not valid",
                "The link you followed is not a valid sign-in link. Go back to your control panel \
                 and click the link again.",
            ),
            Refusal::Used => (
                "This sign-in link was already used",
                "Each sign-in link works once. Go back to your control panel and click the link \
                 again.",
            ),
            Refusal::Expired => (
                "This sign-in link has expired",
                "Sign-in links work for a short time only. Go back to your control panel and \
                 click the link again.",
            ),
            Refusal::ServiceGone => (
                "Single sign-on is not available",
                "The hosting account this link belongs to is no longer available.",
            ),
            Refusal::ClientClosed => (
                "Your account is closed",
                "Single sign-on is not available for a closed account. Please contact support.",
            ),
            Refusal::SsoDisabled => (
                "Single sign-on is turned off",
                "Single sign-on is turned off for this account. The account owner can turn it \
                 back on under Security Settings in the client area; sign in there with your \
                 e-mail and password.",
            ),
            Refusal::NoOwner | Refusal::NoPermission => (
                "Single sign-on is not allowed for your user",
                "Your user does not have the Single Sign-On permission. Sign in to the client \
                 area with your e-mail and password, or ask the account owner.",
            ),
        }
    }

    /// What the activity log says.
    fn detail(self) -> &'static str {
        match self {
            Refusal::Missing | Refusal::Unknown => "unknown access token",
            Refusal::Used => "access token already used",
            Refusal::Expired => "access token expired",
            Refusal::ServiceGone => "the service no longer exists",
            Refusal::ClientClosed => "the account is closed",
            Refusal::SsoDisabled => "single sign-on is turned off for the account",
            Refusal::NoOwner => "the account has no owner",
            Refusal::NoPermission => "the owner lacks the sso permission",
        }
    }

    /// A stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing_token",
            Refusal::Unknown => "unknown_token",
            Refusal::Used => "token_used",
            Refusal::Expired => "token_expired",
            Refusal::ServiceGone => "service_gone",
            Refusal::ClientClosed => "client_closed",
            Refusal::SsoDisabled => "sso_disabled",
            Refusal::NoOwner => "no_owner",
            Refusal::NoPermission => "no_sso_permission",
        }
    }
}

/// What a lookup means: who signs in, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    SignIn {
        client_id: i64,
        user_id: i64,
        email: String,
    },
    Refuse {
        refusal: Refusal,
        client_id: Option<i64>,
        user_id: Option<i64>,
    },
}

fn verdict(lookup: &TokenLookup) -> Verdict {
    let refuse = |refusal, info: Option<&TokenInfo>| Verdict::Refuse {
        refusal,
        client_id: info.and_then(|i| i.account.as_ref()).map(|a| a.client_id),
        user_id: info
            .and_then(|i| i.account.as_ref())
            .and_then(|a| a.owner.as_ref())
            .map(|o| o.user_id),
    };
    let info = match lookup {
        TokenLookup::Unknown => return refuse(Refusal::Unknown, None),
        TokenLookup::Used(info) => return refuse(Refusal::Used, Some(info)),
        TokenLookup::Expired(info) => return refuse(Refusal::Expired, Some(info)),
        TokenLookup::Redeemed(info) => info,
    };
    let Some(account) = &info.account else {
        return refuse(Refusal::ServiceGone, Some(info));
    };
    let refusal = if account.client_status == ClientStatus::Closed {
        Refusal::ClientClosed
    } else if !account.allow_sso {
        Refusal::SsoDisabled
    } else {
        match &account.owner {
            None => Refusal::NoOwner,
            Some(owner) if !owner.has_sso => Refusal::NoPermission,
            Some(owner) => {
                return Verdict::SignIn {
                    client_id: account.client_id,
                    user_id: owner.user_id,
                    email: owner.email.clone(),
                };
            }
        }
    };
    refuse(refusal, Some(info))
}

/// The writes of a verdict: a session for a sign-in, an activity entry whenever the account is
/// known.
fn writes(
    session_ttl: Duration,
    lookup: &TokenLookup,
    session_token: &str,
    source: Option<IpAddr>,
) -> RedeemWrites {
    let info = lookup.info();
    let service_id = info.map(|i| i.service_id);
    let scope = info.map_or("", |i| i.scope.as_str());
    let source = source.map(|a| a.to_string());
    match verdict(lookup) {
        Verdict::SignIn {
            client_id,
            user_id,
            email,
        } => RedeemWrites {
            session: Some(NewPortalSession {
                token_hash: hash_token(session_token),
                client_id,
                user_id,
                service_id,
                expires_at: now_ms()
                    .saturating_add(i64::try_from(session_ttl.as_millis()).unwrap_or(i64::MAX)),
            }),
            activity: Some(NewActivity {
                client_id,
                event: "sso_login",
                outcome: ActivityOutcome::Success,
                user_id: Some(user_id),
                service_id,
                actor: "sso".into(),
                source,
                detail: format!("{email} signed in through the {scope} link"),
            }),
        },
        Verdict::Refuse {
            refusal,
            client_id: Some(client_id),
            user_id,
        } => RedeemWrites {
            session: None,
            activity: Some(NewActivity {
                client_id,
                event: "sso_login",
                outcome: ActivityOutcome::Refused,
                user_id,
                service_id,
                actor: "sso".into(),
                source,
                detail: format!(
                    "single sign-on through the {scope} link refused: {}",
                    refusal.detail()
                ),
            }),
        },
        Verdict::Refuse { .. } => RedeemWrites::default(),
    }
}

fn refused(refusal: Refusal) -> Response {
    let (title, text) = refusal.page();
    html::message(refusal.status(), title, text, None)
}

/// `GET /oauth/sso`.
pub async fn redeem(State(state): State<AppState>, request: Request) -> Response {
    let source = source_addr(request.extensions());
    let token = url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return refused(Refusal::Missing);
    };
    if !token_shaped(&token) {
        tracing::info!(reason = Refusal::Unknown.as_str(), "single sign-on refused");
        return refused(Refusal::Unknown);
    }
    let sso = state.sso();
    let session_token = new_token();
    let session_ttl = sso.config().session_ttl;
    let cookie_value = session_token.clone();
    let lookup = match state
        .db()
        .redeem_sso_token(&hash_token(&token), move |lookup| {
            writes(session_ttl, lookup, &cookie_value, source)
        })
        .await
    {
        Ok(lookup) => lookup,
        Err(e) => {
            tracing::error!(error = %e, "single sign-on redemption failed");
            return html::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Signing you in failed on our side. Please try again from your control panel.",
                None,
            );
        }
    };
    let service_id = lookup.info().map(|i| i.service_id);
    match verdict(&lookup) {
        Verdict::SignIn {
            client_id, user_id, ..
        } => {
            let destination = lookup.info().map_or("/", |i| i.destination.as_str());
            tracing::info!(client_id, user_id, service_id, "single sign-on: signed in");
            let location = format!("{}{destination}", sso.client_area_url());
            let mut response = StatusCode::FOUND.into_response();
            let headers = response.headers_mut();
            match HeaderValue::from_str(&location) {
                Ok(value) => {
                    headers.insert(header::LOCATION, value);
                }
                Err(_) => {
                    tracing::error!(client_id, "single sign-on destination is not a valid URL");
                    return refused(Refusal::ServiceGone);
                }
            }
            headers.insert(header::SET_COOKIE, sso.session_cookie(&session_token));
            html::no_store(headers);
            response
        }
        Verdict::Refuse {
            refusal, client_id, ..
        } => {
            tracing::info!(
                reason = refusal.as_str(),
                client_id,
                service_id,
                "single sign-on refused"
            );
            refused(refusal)
        }
    }
}
