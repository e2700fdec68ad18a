//! Roles and their permissions, admins, their API tokens (stored as SHA-256), and the audit log.

use std::collections::BTreeSet;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Actor, Db, Error, Result, audit, conflict_on_violation, flag, now_ms, parsed};
use crate::adapter::Secret;
use crate::crypto;
use crate::model::{Email, Name, Permission};

/// The built-in role that holds every permission.
pub const FULL_ADMINISTRATOR: &str = "Full Administrator";

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
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// The admin a request's token belongs to, with what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub admin_id: i64,
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
        let mut tx = self.begin_write().await?;
        let role_row = sqlx::query("SELECT id, name FROM roles WHERE name = $1")
            .bind(role)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::NotFound("role"))?;
        let role_id: i64 = role_row.try_get("id")?;
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO admins (email, role_id, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(email.as_str())
        .bind(role_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_violation(e, format!("an admin with e-mail {email} exists")))?;
        let (token, hash) = crypto::new_api_token();
        sqlx::query(
            "INSERT INTO api_tokens (admin_id, token_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(&hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            actor,
            "admin.create",
            &format!("admin:{id}"),
            &format!("email={email} role={role}"),
        )
        .await?;
        tx.commit().await?;
        Ok((
            Admin {
                id,
                email: email.to_string(),
                role_id,
                role: role_row.try_get("name")?,
                created_at: now,
            },
            token,
        ))
    }

    /// Every admin, by id.
    pub async fn admins(&self) -> Result<Vec<Admin>> {
        let rows = sqlx::query(
            "SELECT a.id, a.email, a.role_id, r.name AS role, a.created_at \
             FROM admins a JOIN roles r ON r.id = a.role_id ORDER BY a.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Admin {
                    id: row.try_get("id")?,
                    email: row.try_get("email")?,
                    role_id: row.try_get("role_id")?,
                    role: row.try_get("role")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The admin holding this API token, if any.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        let hash = crypto::hash_token(token);
        // One round trip: the admin and the role's permissions, folded into one text column.
        let row: Option<AnyRow> = sqlx::query(
            "SELECT a.id, a.email, r.name AS role, \
                    (SELECT STRING_AGG(permission, ',') FROM role_permissions p \
                     WHERE p.role_id = r.id) AS permissions \
             FROM api_tokens t JOIN admins a ON a.id = t.admin_id JOIN roles r ON r.id = a.role_id \
             WHERE t.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Principal {
            admin_id: row.try_get("id")?,
            email: row.try_get("email")?,
            role: row.try_get("role")?,
            permissions: parse_permissions(row.try_get("permissions")?)?,
        }))
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
