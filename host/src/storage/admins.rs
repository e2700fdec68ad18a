//! Roles and their permissions, admins, their API tokens (stored as SHA-256), and the audit log.
//!
//! What an admin may do to other admins, enforced here inside each change's transaction (the
//! `held` argument: the acting admin's permissions; `None` for the command line):
//! - grant only permissions they hold: an admin created with, or moved to, a role whose
//!   permissions they do not all hold is [`Error::Forbidden`] (roles are checked by the API);
//! - act only on admins whose permissions they hold all of (change, deactivate, remove, issue,
//!   rotate or revoke tokens), so that a token of a more powerful admin is never theirs to mint;
//! - never change their own role;
//! - never remove, deactivate or move out of the role the last active Full Administrator
//!   ([`Error::Conflict`]).
//!
//! API tokens expire `admin_token_ttl` after they are issued ([`Db::with_admin_token_ttl`]);
//! a deactivated admin's tokens do not authenticate. Each token's last use is kept, written at
//! most once a minute ([`LAST_USED_PRECISION_MS`]), so that authentication stays a read.
//!
//! Admin console sessions (`console_sessions`, stored hashed) are opened with an API token and
//! authenticate as that token ([`Db::console_principal`]): the same checks, and they end with it.

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{
    Actor, Backend, Db, Error, Result, WriteTx, audit, conflict_on_violation, flag, now_ms, parsed,
};
use crate::adapter::Secret;
use crate::crypto;
use crate::model::{Email, Name, Permission};

/// The built-in role that holds every permission.
pub const FULL_ADMINISTRATOR: &str = "Full Administrator";

/// A token's last use is written when the stored one is older than this.
pub const LAST_USED_PRECISION_MS: i64 = 60_000;

/// A role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Created by the migrations (Full Administrator).
    pub builtin: bool,
    /// What holders may do.
    pub permissions: BTreeSet<Permission>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// An admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub id: i64,
    /// Unique e-mail.
    pub email: String,
    /// The role's id.
    pub role_id: i64,
    /// The role's name.
    pub role: String,
    /// Whether the admin's tokens authenticate.
    pub active: bool,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// A change to an admin; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminPatch {
    /// The name of the role to hold.
    pub role: Option<String>,
    /// Active or deactivated.
    pub active: Option<bool>,
}

/// An admin API token (never the token itself: only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub id: i64,
    /// The admin it belongs to.
    pub admin_id: i64,
    /// Issued (ms).
    pub created_at: i64,
    /// When it stops working (ms); `None`: never.
    pub expires_at: Option<i64>,
    /// Last used (ms, to the minute); `None`: never.
    pub last_used_at: Option<i64>,
}

impl AdminToken {
    /// Whether it has expired at `now` (ms).
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The admin a request's token belongs to, with what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub admin_id: i64,
    /// The token the request came with.
    pub token_id: i64,
    /// Admin e-mail.
    pub email: String,
    pub role: String,
    /// The role's permissions.
    pub permissions: BTreeSet<Permission>,
}

impl Principal {
    /// Whether the admin may do this.
    pub fn may(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// The actor for audit entries.
    pub fn actor(&self) -> Actor {
        Actor::admin(self.admin_id, &self.email)
    }
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Id (increasing).
    pub id: i64,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// The admin, when an admin did it.
    pub admin_id: Option<i64>,
    /// E-mail, `cli` or `system`.
    pub actor: String,
    /// What, e.g. `server.create`.
    pub action: String,
    /// On what, e.g. `server:3`.
    pub target: String,
    /// Non-secret details.
    pub detail: String,
}

fn permission_list(set: &BTreeSet<Permission>) -> String {
    set.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
}

fn parse_permissions(joined: Option<String>) -> Result<BTreeSet<Permission>> {
    joined
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| parsed(p.to_owned(), "permission", Permission::parse))
        .collect()
}

/// The permissions `wanted` has that `held` lacks, joined for a message; `None` when `held`
/// holds them all (or is `None`: the command line).
fn lacking(held: Option<&BTreeSet<Permission>>, wanted: &BTreeSet<Permission>) -> Option<String> {
    let held = held?;
    let missing: Vec<&str> = wanted.difference(held).map(|p| p.as_str()).collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// A role as the admin checks need it.
struct RoleRow {
    id: i64,
    name: String,
    builtin: bool,
    permissions: BTreeSet<Permission>,
}

/// An admin as the admin checks need it.
struct Target {
    admin: Admin,
    builtin: bool,
    permissions: BTreeSet<Permission>,
}

const TOKEN_COLUMNS: &str = "id, admin_id, created_at, expires_at, last_used_at";

fn token_from(row: &AnyRow) -> Result<AdminToken> {
    Ok(AdminToken {
        id: row.try_get("id")?,
        admin_id: row.try_get("admin_id")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

fn admin_from(row: &AnyRow) -> Result<Admin> {
    Ok(Admin {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        role_id: row.try_get("role_id")?,
        role: row.try_get("role")?,
        active: flag(row, "active")?,
        created_at: row.try_get("created_at")?,
    })
}

async fn role_by_name(tx: &mut WriteTx, name: &str) -> Result<Option<RoleRow>> {
    let row = sqlx::query(
        "SELECT r.id, r.name, r.builtin, \
                (SELECT STRING_AGG(permission, ',') FROM role_permissions p \
                 WHERE p.role_id = r.id) AS permissions \
         FROM roles r WHERE r.name = $1",
    )
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| {
        Ok(RoleRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            builtin: flag(&row, "builtin")?,
            permissions: parse_permissions(row.try_get("permissions")?)?,
        })
    })
    .transpose()
}

/// The admin `id` with their role, or `NotFound("admin")`.
async fn target(tx: &mut WriteTx, id: i64) -> Result<Target> {
    let row = sqlx::query(
        "SELECT a.id, a.email, a.role_id, r.name AS role, a.active, a.created_at, r.builtin, \
                (SELECT STRING_AGG(permission, ',') FROM role_permissions p \
                 WHERE p.role_id = r.id) AS permissions \
         FROM admins a JOIN roles r ON r.id = a.role_id WHERE a.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(Error::NotFound("admin"))?;
    Ok(Target {
        admin: admin_from(&row)?,
        builtin: flag(&row, "builtin")?,
        permissions: parse_permissions(row.try_get("permissions")?)?,
    })
}

/// Refuse acting on an admin who holds permissions the actor does not.
fn may_act_on(held: Option<&BTreeSet<Permission>>, target: &Target) -> Result<()> {
    match lacking(held, &target.permissions) {
        None => Ok(()),
        Some(missing) => Err(Error::Forbidden(format!(
            "{} holds permissions you do not hold ({missing}); only an admin who holds them \
             may change them or their tokens",
            target.admin.email
        ))),
    }
}

/// Serialize the changes that could leave no active Full Administrator: on PostgreSQL a lock
/// on the built-in role's row (SQLite's write transactions already take turns).
async fn lock_full_administrators(tx: &mut WriteTx) -> Result<()> {
    if super::backend_of(tx) == Backend::Postgres {
        sqlx::query("SELECT id FROM roles WHERE builtin = TRUE FOR UPDATE")
            .fetch_all(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Refuse when `target` is the last active Full Administrator.
async fn keep_a_full_administrator(tx: &mut WriteTx, target: &Target, what: &str) -> Result<()> {
    if !(target.builtin && target.admin.active) {
        return Ok(());
    }
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM admins a JOIN roles r ON r.id = a.role_id \
         WHERE r.builtin = TRUE AND a.active = TRUE AND a.id <> $1",
    )
    .bind(target.admin.id)
    .fetch_one(&mut **tx)
    .await?;
    if others == 0 {
        return Err(Error::Conflict(format!(
            "{} is the last active {FULL_ADMINISTRATOR}; {what} would leave nobody able to \
             manage everything (make another admin a {FULL_ADMINISTRATOR} first)",
            target.admin.email
        )));
    }
    Ok(())
}

impl Db {
    /// Create a role. A taken name is a conflict.
    pub async fn create_role(
        &self,
        actor: &Actor,
        name: &Name,
        permissions: &BTreeSet<Permission>,
    ) -> Result<Role> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO roles (name, builtin, created_at) VALUES ($1, FALSE, $2) RETURNING id",
        )
        .bind(name.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_violation(e, format!("a role named {name:?} exists")))?;
        for p in permissions {
            sqlx::query("INSERT INTO role_permissions (role_id, permission) VALUES ($1, $2)")
                .bind(id)
                .bind(p.as_str())
                .execute(&mut *tx)
                .await?;
        }
        audit(
            &mut tx,
            actor,
            "role.create",
            &format!("role:{id}"),
            &format!("name={name} permissions={}", permission_list(permissions)),
        )
        .await?;
        tx.commit().await?;
        Ok(Role {
            id,
            name: name.to_string(),
            builtin: false,
            permissions: permissions.clone(),
            created_at: now,
        })
    }

    /// Every role, by id.
    pub async fn roles(&self) -> Result<Vec<Role>> {
        let rows = sqlx::query("SELECT id, name, builtin, created_at FROM roles ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        let mut roles = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            roles.push(Role {
                id,
                name: row.try_get("name")?,
                builtin: flag(&row, "builtin")?,
                permissions: self.role_permissions(id).await?,
                created_at: row.try_get("created_at")?,
            });
        }
        Ok(roles)
    }

    async fn role_permissions(&self, role_id: i64) -> Result<BTreeSet<Permission>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT permission FROM role_permissions WHERE role_id = $1 ORDER BY permission",
        )
        .bind(role_id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|p| parsed(p, "permission", Permission::parse))
            .collect()
    }

    /// Create an admin holding the named role, with a fresh API token (shown once: only its
    /// hash is kept). An unknown role is `NotFound("role")`; a taken e-mail a conflict.
    pub async fn create_admin(
        &self,
        actor: &Actor,
        email: &Email,
        role: &str,
    ) -> Result<(Admin, Secret)> {
        self.create_admin_within(actor, email, role, None)
            .await
            .map(|(admin, _, token)| (admin, token))
    }

    /// [`Db::create_admin`] by an actor holding `held` (`None`: the command line): a role with a
    /// permission outside `held` is [`Error::Forbidden`]. Also returns the token's record.
    pub async fn create_admin_within(
        &self,
        actor: &Actor,
        email: &Email,
        role: &str,
        held: Option<&BTreeSet<Permission>>,
    ) -> Result<(Admin, AdminToken, Secret)> {
        let mut tx = self.begin_write().await?;
        let role = role_by_name(&mut tx, role)
            .await?
            .ok_or(Error::NotFound("role"))?;
        if let Some(missing) = lacking(held, &role.permissions) {
            return Err(Error::Forbidden(format!(
                "you can only grant permissions you hold; the role {} has {missing}",
                role.name
            )));
        }
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO admins (email, role_id, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(email.as_str())
        .bind(role.id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_violation(e, format!("an admin with e-mail {email} exists")))?;
        let (record, token) = self.insert_token(&mut tx, id, now).await?;
        audit(
            &mut tx,
            actor,
            "admin.create",
            &format!("admin:{id}"),
            &format!("email={email} role={}", role.name),
        )
        .await?;
        tx.commit().await?;
        Ok((
            Admin {
                id,
                email: email.to_string(),
                role_id: role.id,
                role: role.name,
                active: true,
                created_at: now,
            },
            record,
            token,
        ))
    }

    /// The same database, issuing admin API tokens valid for `ttl` (`None`: no expiry). The
    /// default is the configuration's default, 90 days.
    pub fn with_admin_token_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.admin_token_ttl = ttl;
        self
    }

    async fn insert_token(
        &self,
        tx: &mut WriteTx,
        admin_id: i64,
        now: i64,
    ) -> Result<(AdminToken, Secret)> {
        let (token, hash) = crypto::new_api_token();
        let expires_at = self
            .admin_token_ttl
            .map(|ttl| now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)));
        let row = sqlx::query(&format!(
            "INSERT INTO api_tokens (admin_id, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4) RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(admin_id)
        .bind(&hash)
        .bind(now)
        .bind(expires_at)
        .fetch_one(&mut **tx)
        .await?;
        Ok((token_from(&row)?, token))
    }

    /// Change an admin's role or whether they are active, as an actor holding `held` (`None`:
    /// the command line). See the module's rules; each change is audited (`admin.role`,
    /// `admin.deactivate`, `admin.activate`).
    pub async fn update_admin(
        &self,
        actor: &Actor,
        id: i64,
        patch: &AdminPatch,
        held: Option<&BTreeSet<Permission>>,
    ) -> Result<Admin> {
        let mut tx = self.begin_write().await?;
        lock_full_administrators(&mut tx).await?;
        let target = target(&mut tx, id).await?;
        let new_role = match &patch.role {
            Some(name) => Some(
                role_by_name(&mut tx, name)
                    .await?
                    .ok_or(Error::NotFound("role"))?,
            ),
            None => None,
        }
        .filter(|role| role.id != target.admin.role_id);
        if new_role.is_some() && actor.admin_id == Some(id) {
            return Err(Error::Forbidden("you cannot change your own role".into()));
        }
        may_act_on(held, &target)?;
        if let Some(role) = &new_role
            && let Some(missing) = lacking(held, &role.permissions)
        {
            return Err(Error::Forbidden(format!(
                "you can only grant permissions you hold; the role {} has {missing}",
                role.name
            )));
        }
        let deactivate = patch.active == Some(false) && target.admin.active;
        let activate = patch.active == Some(true) && !target.admin.active;
        if deactivate {
            keep_a_full_administrator(&mut tx, &target, "deactivating them").await?;
        } else if new_role.as_ref().is_some_and(|role| !role.builtin) {
            keep_a_full_administrator(&mut tx, &target, "moving them to another role").await?;
        }
        let mut admin = target.admin;
        if let Some(role) = new_role {
            sqlx::query("UPDATE admins SET role_id = $2 WHERE id = $1")
                .bind(id)
                .bind(role.id)
                .execute(&mut *tx)
                .await?;
            audit(
                &mut tx,
                actor,
                "admin.role",
                &format!("admin:{id}"),
                &format!("role={} (was {})", role.name, admin.role),
            )
            .await?;
            admin.role_id = role.id;
            admin.role = role.name;
        }
        if deactivate || activate {
            sqlx::query("UPDATE admins SET active = $2 WHERE id = $1")
                .bind(id)
                .bind(activate)
                .execute(&mut *tx)
                .await?;
            audit(
                &mut tx,
                actor,
                if activate {
                    "admin.activate"
                } else {
                    "admin.deactivate"
                },
                &format!("admin:{id}"),
                &format!("email={}", admin.email),
            )
            .await?;
            admin.active = activate;
        }
        tx.commit().await?;
        Ok(admin)
    }

    /// Remove an admin and their tokens, as an actor holding `held`; audited (`admin.delete`).
    /// The audit log keeps what they did.
    pub async fn delete_admin(
        &self,
        actor: &Actor,
        id: i64,
        held: Option<&BTreeSet<Permission>>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        lock_full_administrators(&mut tx).await?;
        let target = target(&mut tx, id).await?;
        may_act_on(held, &target)?;
        keep_a_full_administrator(&mut tx, &target, "removing them").await?;
        sqlx::query("DELETE FROM admins WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            actor,
            "admin.delete",
            &format!("admin:{id}"),
            &format!("email={} role={}", target.admin.email, target.admin.role),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// An admin's API tokens, oldest first; `NotFound("admin")` for an unknown admin.
    pub async fn admin_tokens(&self, admin_id: i64) -> Result<Vec<AdminToken>> {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM admins WHERE id = $1")
            .bind(admin_id)
            .fetch_optional(self.pool())
            .await?;
        exists.ok_or(Error::NotFound("admin"))?;
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE admin_id = $1 ORDER BY id"
        ))
        .bind(admin_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(token_from).collect()
    }

    /// Issue another API token for an admin (shown once), as an actor holding `held`; audited
    /// (`admin_token.create`).
    pub async fn issue_admin_token(
        &self,
        actor: &Actor,
        admin_id: i64,
        held: Option<&BTreeSet<Permission>>,
    ) -> Result<(AdminToken, Secret)> {
        let mut tx = self.begin_write().await?;
        let target = target(&mut tx, admin_id).await?;
        may_act_on(held, &target)?;
        let (record, token) = self.insert_token(&mut tx, admin_id, now_ms()).await?;
        audit(
            &mut tx,
            actor,
            "admin_token.create",
            &format!("admin:{admin_id}"),
            &format!("token={}", record.id),
        )
        .await?;
        tx.commit().await?;
        Ok((record, token))
    }

    /// Replace one of an admin's API tokens with a new one (shown once): the old one stops
    /// working at once. As an actor holding `held`; audited (`admin_token.rotate`).
    pub async fn rotate_admin_token(
        &self,
        actor: &Actor,
        admin_id: i64,
        token_id: i64,
        held: Option<&BTreeSet<Permission>>,
    ) -> Result<(AdminToken, Secret)> {
        let mut tx = self.begin_write().await?;
        let target = target(&mut tx, admin_id).await?;
        may_act_on(held, &target)?;
        Self::remove_token(&mut tx, admin_id, token_id).await?;
        let (record, token) = self.insert_token(&mut tx, admin_id, now_ms()).await?;
        audit(
            &mut tx,
            actor,
            "admin_token.rotate",
            &format!("admin:{admin_id}"),
            &format!("token={token_id} replaced_by={}", record.id),
        )
        .await?;
        tx.commit().await?;
        Ok((record, token))
    }

    /// Revoke one of an admin's API tokens, as an actor holding `held`; audited
    /// (`admin_token.revoke`).
    pub async fn revoke_admin_token(
        &self,
        actor: &Actor,
        admin_id: i64,
        token_id: i64,
        held: Option<&BTreeSet<Permission>>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let target = target(&mut tx, admin_id).await?;
        may_act_on(held, &target)?;
        Self::remove_token(&mut tx, admin_id, token_id).await?;
        audit(
            &mut tx,
            actor,
            "admin_token.revoke",
            &format!("admin:{admin_id}"),
            &format!("token={token_id}"),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_token(tx: &mut WriteTx, admin_id: i64, token_id: i64) -> Result<()> {
        let removed = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND admin_id = $2")
            .bind(token_id)
            .bind(admin_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if removed == 0 {
            return Err(Error::NotFound("token"));
        }
        Ok(())
    }

    /// Every admin, by id.
    pub async fn admins(&self) -> Result<Vec<Admin>> {
        let rows = sqlx::query(
            "SELECT a.id, a.email, a.role_id, r.name AS role, a.active, a.created_at \
             FROM admins a JOIN roles r ON r.id = a.role_id ORDER BY a.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(admin_from).collect()
    }

    /// The admin holding this API token, if any: an unexpired token of an active admin. Notes
    /// the token's use (at most once a minute: see [`LAST_USED_PRECISION_MS`]).
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        self.principal_by("t.token_hash = $1", &crypto::hash_token(token))
            .await
    }

    /// The admin signed in to the console with this session, if any: a live session
    /// ([`Db::open_console_session`]) whose API token still works (unexpired, not revoked or
    /// rotated, its admin active). Notes the token's use like [`Db::authenticate`].
    pub async fn console_principal(&self, session_hash: &str) -> Result<Option<Principal>> {
        self.principal_by(
            "t.id = (SELECT s.token_id FROM console_sessions s \
                     WHERE s.token_hash = $1 AND s.expires_at > $2)",
            session_hash,
        )
        .await
    }

    /// The principal of the one API token `condition` selects (`$1`: `key`, `$2`: now).
    async fn principal_by(&self, condition: &str, key: &str) -> Result<Option<Principal>> {
        let now = now_ms();
        // One round trip: the admin and the role's permissions, folded into one text column.
        let row: Option<AnyRow> = sqlx::query(&format!(
            "SELECT a.id, a.email, r.name AS role, t.id AS token_id, t.last_used_at, \
                    (SELECT STRING_AGG(permission, ',') FROM role_permissions p \
                     WHERE p.role_id = r.id) AS permissions \
             FROM api_tokens t JOIN admins a ON a.id = t.admin_id JOIN roles r ON r.id = a.role_id \
             WHERE {condition} AND a.active = TRUE \
               AND (t.expires_at IS NULL OR t.expires_at > $2)"
        ))
        .bind(key)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let principal = Principal {
            admin_id: row.try_get("id")?,
            token_id: row.try_get("token_id")?,
            email: row.try_get("email")?,
            role: row.try_get("role")?,
            permissions: parse_permissions(row.try_get("permissions")?)?,
        };
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        if last_used.is_none_or(|at| now - at >= LAST_USED_PRECISION_MS) {
            // Bookkeeping: a failure here does not refuse the request.
            if let Err(e) = self.note_token_use(principal.token_id, now).await {
                tracing::warn!(error = %e, token = principal.token_id, "could not note a token's use");
            }
        }
        Ok(Some(principal))
    }

    /// Open a console session for the admin signed in with `principal`'s token: stored as the
    /// hash of its cookie, lasting `ttl` but never beyond the token's own expiry, ended with the
    /// token. Audited (`console.sign_in`). Expired sessions are deleted on the way. Returns when
    /// the session ends (ms).
    pub async fn open_console_session(
        &self,
        principal: &Principal,
        session_hash: &str,
        ttl: Duration,
    ) -> Result<i64> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let token_expiry: Option<i64> =
            sqlx::query_scalar("SELECT expires_at FROM api_tokens WHERE id = $1")
                .bind(principal.token_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(Error::NotFound("token"))?;
        let until = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let expires_at = token_expiry.map_or(until, |at| at.min(until));
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, admin_id, token_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session_hash)
        .bind(principal.admin_id)
        .bind(principal.token_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            &principal.actor(),
            "console.sign_in",
            &format!("admin:{}", principal.admin_id),
            &format!("token={}", principal.token_id),
        )
        .await?;
        tx.commit().await?;
        Ok(expires_at)
    }

    /// End a console session (signing out); audited (`console.sign_out`). Ending one that is
    /// gone already changes nothing.
    pub async fn end_console_session(
        &self,
        principal: &Principal,
        session_hash: &str,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let ended = sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
            .bind(session_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if ended > 0 {
            audit(
                &mut tx,
                &principal.actor(),
                "console.sign_out",
                &format!("admin:{}", principal.admin_id),
                &format!("token={}", principal.token_id),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn note_token_use(&self, token_id: i64, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(token_id)
        .bind(now)
        .bind(now - LAST_USED_PRECISION_MS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// The newest audit entries, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, admin_id, actor, action, target, detail FROM audit_log \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    admin_id: row.try_get("admin_id")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}
