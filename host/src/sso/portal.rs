//! The built-in client area's rules (`/portal`, served by `api::portal`): who is signed in, who
//! may change what, and what a change records.
//!
//! - Sessions: the session cookie names a portal session ([`signed_in`]); one that is expired,
//!   ended, or of a closed account no longer works.
//! - Changes ([`owner_change`]): a state-changing request must carry the session's CSRF token
//!   (derived from the cookie, so a cross-site page cannot know it) and, when the browser says
//!   where it comes from, come from this host; and only the account owner may change anything.
//!   Signing out ([`sign_out`]) needs the first two, not ownership.
//! - What the owner can change: whether the account allows single sign-on ([`set_allow_sso`]),
//!   another user's permissions ([`set_permissions`]), and their own `sso` permission
//!   ([`set_sso_permission`]; the owner keeps every other permission). Changes go through the
//!   same storage functions as the admin API, recorded in the audit log as `portal:<e-mail>` and
//!   in the client's activity log.
//!
//! Whose `sso` permission a panel click is judged by: the owner's. A hosting account belongs to
//! one client account and a click carries only the service's link credential, no user, so
//! single sign-on always signs in as the owner (`panel-protocol.md`, "Who may sign in": refused
//! when "the user being signed in lacks the `sso` permission"); revoking the owner's `sso`
//! permission (the owner in the portal, an admin through the user) refuses every click of the
//! account with that reason. Another user's `sso` permission is kept, and shown by the API, for
//! a client area that signs users in itself; no panel click ever signs that user in, so the
//! portal's page offers the control on the owner's row only and says so.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::{Sso, csrf_token, token_shaped};
use crate::crypto::hash_token;
use crate::model::{ClientPermission, ClientStatus};
use crate::storage::{
    self, ActivityOutcome, Actor, ClientPatch, ClientUser, Db, NewActivity, PortalSession,
};

/// A live session and the CSRF token its pages embed.
#[derive(Debug)]
pub struct SignedIn {
    /// The session, with its user and account as they are now.
    pub session: PortalSession,
    /// The session's CSRF token.
    pub csrf: String,
}

/// What a state-changing request presents, as the browser sent it (`None`: not sent).
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The session cookie's value.
    pub session: Option<&'a str>,
    /// The CSRF token (a form field or a header).
    pub csrf: Option<&'a str>,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The `Referer` header.
    pub referer: Option<&'a str>,
}

/// Why a portal request was refused.
#[derive(Debug)]
pub enum Denied {
    /// No live session.
    NotSignedIn,
    /// Signed in, but the request may not do this; the sentence says why.
    Forbidden(&'static str),
    /// Storage failed, or the thing to change does not exist ([`storage::Error::NotFound`]).
    Storage(storage::Error),
}

impl From<storage::Error> for Denied {
    fn from(e: storage::Error) -> Self {
        Denied::Storage(e)
    }
}

/// The session behind a cookie value, when it is live and its account is not closed.
pub async fn signed_in(db: &Db, session: Option<&str>) -> Result<Option<SignedIn>, storage::Error> {
    let Some(token) = session.filter(|t| token_shaped(t)) else {
        return Ok(None);
    };
    let session = db.portal_session(&hash_token(token)).await?;
    Ok(session
        .filter(|s| s.client_status != ClientStatus::Closed)
        .map(|session| SignedIn {
            session,
            csrf: csrf_token(token),
        }))
}

/// Whether the request carries the session's CSRF token (compared in constant time) and comes
/// from this host's pages.
fn from_our_pages(sso: &Sso, signed: &SignedIn, presented: &Presented<'_>) -> bool {
    sso.comes_from_our_pages(
        &signed.csrf,
        presented.csrf,
        presented.origin,
        presented.referer,
    )
}

/// Who may make a change: someone signed in, from our pages (see [`Presented`]), who owns the
/// account.
pub async fn owner_change(
    sso: &Sso,
    db: &Db,
    presented: &Presented<'_>,
) -> Result<SignedIn, Denied> {
    let signed = signed_in(db, presented.session)
        .await?
        .ok_or(Denied::NotSignedIn)?;
    if !from_our_pages(sso, &signed, presented) {
        return Err(Denied::Forbidden(
            "The request did not come from a client area page (missing or wrong CSRF token, or \
             another origin).",
        ));
    }
    if !signed.session.owner {
        return Err(Denied::Forbidden("Only the account owner can change this."));
    }
    Ok(signed)
}

/// End the session of a sign-out request from our pages.
pub async fn sign_out(sso: &Sso, db: &Db, presented: &Presented<'_>) -> Result<(), Denied> {
    let signed = signed_in(db, presented.session)
        .await?
        .ok_or(Denied::NotSignedIn)?;
    if !from_our_pages(sso, &signed, presented) {
        return Err(Denied::Forbidden(
            "The request did not come from a client area page.",
        ));
    }
    if let Some(token) = presented.session {
        db.end_portal_session(&hash_token(token)).await?;
    }
    Ok(())
}

/// The audit log's actor for the signed-in user's changes.
fn portal_actor(signed: &SignedIn) -> Actor {
    Actor {
        admin_id: None,
        name: format!("portal:{}", signed.session.email),
    }
}

/// Turn single sign-on on or off for the signed-in owner's account; the setting as it now is.
pub async fn set_allow_sso(
    db: &Db,
    signed: &SignedIn,
    allow: bool,
    source: Option<IpAddr>,
) -> Result<bool, storage::Error> {
    let client = db
        .update_client(
            &portal_actor(signed),
            signed.session.client_id,
            &ClientPatch {
                allow_sso: Some(allow),
                ..ClientPatch::default()
            },
        )
        .await?;
    db.record_client_activity(&NewActivity {
        client_id: client.id,
        event: "security_change",
        outcome: ActivityOutcome::Success,
        user_id: Some(signed.session.user_id),
        service_id: None,
        actor: signed.session.email.clone(),
        source: source.map(|a| a.to_string()),
        detail: format!(
            "single sign-on turned {} by {}",
            if client.allow_sso { "on" } else { "off" },
            signed.session.email
        ),
    })
    .await?;
    tracing::info!(
        client_id = client.id,
        allow_sso = client.allow_sso,
        "portal: security setting changed"
    );
    Ok(client.allow_sso)
}

/// Replace the permissions of a user of the signed-in owner's account. The owner's own may only
/// lose (or regain) `sso`: the owner holds every other permission.
pub async fn set_permissions(
    db: &Db,
    signed: &SignedIn,
    user_id: i64,
    permissions: &BTreeSet<ClientPermission>,
    source: Option<IpAddr>,
) -> Result<ClientUser, Denied> {
    let client_id = signed.session.client_id;
    let before = db.client_user(client_id, user_id).await?;
    if before.owner
        && ClientPermission::ALL
            .iter()
            .any(|p| *p != ClientPermission::Sso && !permissions.contains(p))
    {
        return Err(Denied::Forbidden(
            "The account owner holds every permission; only their Single Sign-On permission can \
             be revoked.",
        ));
    }
    let user = db
        .set_client_user_permissions(&portal_actor(signed), client_id, user_id, permissions)
        .await?;
    let sso_change = match (
        before.permissions.contains(&ClientPermission::Sso),
        user.permissions.contains(&ClientPermission::Sso),
    ) {
        (true, false) => " (sso revoked)",
        (false, true) => " (sso granted)",
        _ => "",
    };
    let list: Vec<&str> = user.permissions.iter().map(|p| p.as_str()).collect();
    db.record_client_activity(&NewActivity {
        client_id,
        event: "user_permissions",
        outcome: ActivityOutcome::Success,
        user_id: Some(user.id),
        service_id: None,
        actor: signed.session.email.clone(),
        source: source.map(|a| a.to_string()),
        detail: format!(
            "permissions of {} set to [{}] by {}{sso_change}",
            user.email,
            list.join(", "),
            signed.session.email
        ),
    })
    .await?;
    tracing::info!(client_id, user_id, "portal: user permissions changed");
    Ok(user)
}

/// Grant or revoke one user's `sso` permission, keeping the others (the owner's own included:
/// it decides whether panel clicks sign in).
pub async fn set_sso_permission(
    db: &Db,
    signed: &SignedIn,
    user_id: i64,
    grant: bool,
    source: Option<IpAddr>,
) -> Result<ClientUser, Denied> {
    let mut permissions = db
        .client_user(signed.session.client_id, user_id)
        .await?
        .permissions;
    if grant {
        permissions.insert(ClientPermission::Sso);
    } else {
        permissions.remove(&ClientPermission::Sso);
    }
    set_permissions(db, signed, user_id, &permissions, source).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SsoConfig;

    #[test]
    fn a_change_needs_the_sessions_csrf_token_and_our_origin() {
        let sso = Sso::new(
            "https://billing.example",
            "https://billing.example/portal",
            SsoConfig::default(),
        );
        let cookie = crate::sso::new_token();
        let signed = SignedIn {
            session: PortalSession {
                client_id: 1,
                client_name: "Acme".into(),
                client_status: ClientStatus::Active,
                allow_sso: true,
                user_id: 2,
                email: "owner@example.com".into(),
                owner: true,
                service_id: None,
                created_at: 0,
                expires_at: 1,
            },
            csrf: csrf_token(&cookie),
        };
        let good = Presented {
            session: Some(&cookie),
            csrf: Some(&signed.csrf),
            origin: Some("https://billing.example"),
            referer: None,
        };
        assert!(from_our_pages(&sso, &signed, &good));
        assert!(from_our_pages(
            &sso,
            &signed,
            &Presented {
                origin: None,
                ..good
            }
        ));
        for bad in [
            Presented { csrf: None, ..good },
            Presented {
                csrf: Some("forged"),
                ..good
            },
            Presented {
                origin: Some("https://evil.example"),
                ..good
            },
        ] {
            assert!(!from_our_pages(&sso, &signed, &bad), "{bad:?}");
        }
    }
}
