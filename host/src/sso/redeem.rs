//! The redemption's rules (`GET /oauth/sso?access_token=…`, served by `api::oauth`): the
//! browser presents the one-time token and is signed in to the client area as the owner of the
//! service's client account, or refused and told why.
//!
//! The source address is rate limited first ([`admit`]), and a token that was never issued is
//! refused after one read, so made-up tokens cost no write (a token this process issued and
//! nobody presented yet is known to exist and skips that read). Then one transaction
//! ([`crate::storage::Db::redeem_sso_token`]) consumes the token, reads the
//! account as it is at that moment, and writes the outcome: on a sign-in a portal session and an
//! activity entry, on a refusal only the activity entry (when the account is known). Who signs
//! in is decided from that read alone (`verdict`).

use std::net::IpAddr;
use std::time::Duration;

use super::{Sso, new_token, token_shaped};
use crate::crypto::hash_token;
use crate::model::ClientStatus;
use crate::storage::{
    self, ActivityOutcome, Db, NewActivity, NewPortalSession, RedeemWrites, TokenInfo, TokenLookup,
    now_ms,
};

/// Why a redemption was refused. The first five are about the token (or the service it was
/// issued for); the rest are the account's own settings, which let nobody in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request carries no `access_token`.
    Missing,
    /// No token of that value was issued (or it was purged).
    Unknown,
    /// The token was redeemed before: each works once.
    Used,
    /// The token's lifetime ([`crate::config::SsoConfig::token_ttl`]) is over.
    Expired,
    /// The service the token was issued for, or its client, no longer exists.
    ServiceGone,
    /// The client account is closed.
    ClientClosed,
    /// The account has single sign-on turned off.
    SsoDisabled,
    /// The account has no owner to sign in as.
    NoOwner,
    /// The owner lacks the `sso` permission.
    NoPermission,
    /// The source address made too many redemptions; the next is allowed after this long.
    RateLimited(Duration),
}

impl Refusal {
    /// What the client's activity log says.
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
            Refusal::RateLimited(_) => "too many sign-in attempts from the address",
        }
    }

    /// A stable name for the server log.
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
            Refusal::RateLimited(_) => "rate_limited",
        }
    }
}

/// What a token lookup means: who signs in, or why not (with whom the refusal concerns, for the
/// activity log).
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

/// Who a token signs in: the account's owner, when the token was live and the account is open,
/// allows single sign-on and its owner holds the `sso` permission.
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

/// How a redemption ended.
#[derive(Debug)]
pub enum Redemption {
    /// Signed in: send the browser to `location` with [`Sso::session_cookie`] of
    /// `session_token`.
    SignedIn {
        /// The account signed in to.
        client_id: i64,
        /// `client_area_url` + the token's destination.
        location: String,
        /// The new session's cookie value (only its hash is stored).
        session_token: String,
    },
    /// Nobody is signed in.
    Refused(Refusal),
}

/// Take one redemption from the source address's bucket (`sso_redeem_rate_limit_per_address`,
/// IPv6 by /64), before anything is looked up.
pub fn admit(sso: &Sso, source: Option<IpAddr>) -> Result<(), Refusal> {
    let Some(addr) = source else {
        return Ok(());
    };
    sso.redeem_per_address
        .check(&crate::net::rate_key(addr))
        .map_err(|wait| {
            tracing::debug!(%addr, "single sign-on redemptions rate limited (address)");
            Refusal::RateLimited(wait)
        })
}

/// Redeem a presented access token (`None`: the request has none), after [`admit`].
pub async fn redeem(
    sso: &Sso,
    db: &Db,
    access_token: Option<&str>,
    source: Option<IpAddr>,
) -> Result<Redemption, storage::Error> {
    let Some(token) = access_token.filter(|t| !t.is_empty()) else {
        return Ok(Redemption::Refused(Refusal::Missing));
    };
    if !token_shaped(token) {
        tracing::info!(reason = Refusal::Unknown.as_str(), "single sign-on refused");
        return Ok(Redemption::Refused(Refusal::Unknown));
    }
    let token_hash = hash_token(token);
    // A token this process issued is known to exist; any other is looked up first.
    if !sso.take_issued(&token_hash) && !db.sso_token_issued(&token_hash).await? {
        tracing::info!(reason = Refusal::Unknown.as_str(), "single sign-on refused");
        return Ok(Redemption::Refused(Refusal::Unknown));
    }
    let session_token = new_token();
    let session_ttl = sso.config().session_ttl;
    let cookie_value = session_token.clone();
    let lookup = db
        .redeem_sso_token(&token_hash, move |lookup| {
            writes(session_ttl, lookup, &cookie_value, source)
        })
        .await?;
    let service_id = lookup.info().map(|i| i.service_id);
    Ok(match verdict(&lookup) {
        Verdict::SignIn {
            client_id, user_id, ..
        } => {
            let destination = lookup.info().map_or("/", |i| i.destination.as_str());
            tracing::info!(client_id, user_id, service_id, "single sign-on: signed in");
            Redemption::SignedIn {
                client_id,
                location: format!("{}{destination}", sso.client_area_url()),
                session_token,
            }
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
            Redemption::Refused(refusal)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{AccountState, OwnerState};

    fn redeemed(account: Option<AccountState>) -> TokenLookup {
        TokenLookup::Redeemed(TokenInfo {
            service_id: 7,
            application: "cpanel".into(),
            scope: "clientarea:tickets".into(),
            destination: "/tickets".into(),
            account,
        })
    }

    fn open_account() -> AccountState {
        AccountState {
            client_id: 3,
            client_status: ClientStatus::Active,
            allow_sso: true,
            owner: Some(OwnerState {
                user_id: 5,
                email: "owner@example.com".into(),
                has_sso: true,
            }),
        }
    }

    fn refusal(lookup: &TokenLookup) -> Option<Refusal> {
        match verdict(lookup) {
            Verdict::SignIn { .. } => None,
            Verdict::Refuse { refusal, .. } => Some(refusal),
        }
    }

    #[test]
    fn only_a_live_token_of_an_open_account_signs_its_owner_in() {
        assert_eq!(
            verdict(&redeemed(Some(open_account()))),
            Verdict::SignIn {
                client_id: 3,
                user_id: 5,
                email: "owner@example.com".into()
            }
        );
        assert_eq!(refusal(&TokenLookup::Unknown), Some(Refusal::Unknown));
        let TokenLookup::Redeemed(info) = redeemed(Some(open_account())) else {
            unreachable!()
        };
        assert_eq!(
            refusal(&TokenLookup::Used(info.clone())),
            Some(Refusal::Used)
        );
        assert_eq!(refusal(&TokenLookup::Expired(info)), Some(Refusal::Expired));
        assert_eq!(refusal(&redeemed(None)), Some(Refusal::ServiceGone));

        let closed = AccountState {
            client_status: ClientStatus::Closed,
            allow_sso: false,
            ..open_account()
        };
        assert_eq!(
            refusal(&redeemed(Some(closed))),
            Some(Refusal::ClientClosed),
            "a closed account is the first reason"
        );
        let off = AccountState {
            allow_sso: false,
            ..open_account()
        };
        assert_eq!(refusal(&redeemed(Some(off))), Some(Refusal::SsoDisabled));
        let ownerless = AccountState {
            owner: None,
            ..open_account()
        };
        assert_eq!(refusal(&redeemed(Some(ownerless))), Some(Refusal::NoOwner));
        let mut no_permission = open_account();
        no_permission.owner.as_mut().unwrap().has_sso = false;
        assert_eq!(
            refusal(&redeemed(Some(no_permission))),
            Some(Refusal::NoPermission)
        );
    }

    #[test]
    fn writes_record_every_outcome_with_a_known_account() {
        let ttl = Duration::from_secs(60);
        let signed_in = writes(ttl, &redeemed(Some(open_account())), "cookie", None);
        let session = signed_in.session.expect("a session");
        assert_eq!((session.client_id, session.user_id), (3, 5));
        assert_eq!(session.token_hash, hash_token("cookie"));
        let activity = signed_in.activity.expect("an activity entry");
        assert_eq!(activity.outcome, ActivityOutcome::Success);
        assert_eq!(
            activity.detail,
            "owner@example.com signed in through the clientarea:tickets link"
        );

        let off = AccountState {
            allow_sso: false,
            ..open_account()
        };
        let refused = writes(ttl, &redeemed(Some(off)), "cookie", None);
        assert!(refused.session.is_none());
        let activity = refused.activity.expect("the refusal is recorded");
        assert_eq!(activity.outcome, ActivityOutcome::Refused);
        assert!(
            activity
                .detail
                .ends_with("single sign-on is turned off for the account")
        );

        let unknown = writes(ttl, &TokenLookup::Unknown, "cookie", None);
        assert!(unknown.session.is_none() && unknown.activity.is_none());
    }
}
