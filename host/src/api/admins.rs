//! Roles, admins, their API tokens and the audit log (`manage_admins`).
//!
//! An admin grants only what they hold: a role they create, and the role of an admin they
//! create or change, must hold no permission they lack (403). They act only on admins whose
//! permissions they all hold, never change their own role, and the last active Full
//! Administrator stays (409). The rules live in `storage::admins`, inside each change's
//! transaction.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Check, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, Authorized, ManageAdmins};
use super::{AppState, rfc3339};
use crate::model::{Email, Name, Permission, parse_set};
use crate::storage::{self, Admin, AdminPatch, AdminToken, AuditEntry, Role, now_ms};

/// A role to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    /// Unique name, 1–100 characters.
    pub name: String,
    /// Permissions: `configure_application_links`, `manage_servers`, `manage_clients`,
    /// `manage_plugins`, `manage_admins`.
    pub permissions: Vec<String>,
}

/// A role.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleView {
    pub id: i64,
    pub name: String,
    /// Built in (Full Administrator).
    pub builtin: bool,
    pub permissions: Vec<String>,
    pub created_at: String,
}

impl From<Role> for RoleView {
    fn from(r: Role) -> Self {
        Self {
            id: r.id,
            name: r.name,
            builtin: r.builtin,
            permissions: r
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            created_at: rfc3339(r.created_at),
        }
    }
}

/// The roles.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleList {
    /// By id.
    pub roles: Vec<RoleView>,
}

/// Create a role. Only with permissions the caller holds.
#[utoipa::path(post, path = "/api/v1/roles", tag = "admins", request_body = CreateRole,
    security(("bearer" = ["manage_admins"])),
    responses(
        (status = 201, body = RoleView),
        (status = 403, description = "A permission the caller does not hold", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn create_role(
    auth: Authorized<ManageAdmins>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateRole>,
) -> Result<(StatusCode, Json<RoleView>), ApiError> {
    let mut check = Check::new();
    let name = check.field("name", Name::parse(&body.name));
    let permissions = check.field(
        "permissions",
        parse_set(&body.permissions, Permission::parse),
    );
    let (name, permissions) = check.finish(|| Some((name?, permissions?)))?;
    let lacking: Vec<&str> = permissions
        .difference(&auth.principal.permissions)
        .map(|p| p.as_str())
        .collect();
    if !lacking.is_empty() {
        return Err(ApiError::forbidden_because(&format!(
            "you can only grant permissions you hold; you do not hold {}",
            lacking.join(", ")
        )));
    }
    let role = state
        .db()
        .create_role(&auth.principal.actor(), &name, &permissions)
        .await?;
    Ok((StatusCode::CREATED, Json(role.into())))
}

/// List roles.
#[utoipa::path(get, path = "/api/v1/roles", tag = "admins",
    security(("bearer" = ["manage_admins"])),
    responses((status = 200, body = RoleList)))]
pub async fn list_roles(
    _auth: Authorized<ManageAdmins>,
    State(state): State<AppState>,
) -> Result<Json<RoleList>, ApiError> {
    let roles = state.db().roles().await?;
    Ok(Json(RoleList {
        roles: roles.into_iter().map(Into::into).collect(),
    }))
}

/// An admin to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdmin {
    /// Unique e-mail.
    pub email: String,
    /// The role's name, e.g. `Full Administrator`.
    pub role: String,
}

/// A created admin, with their API token (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedAdmin {
    pub id: i64,
    /// E-mail.
    pub email: String,
    pub role: String,
    /// The API token: store it now, it cannot be shown again.
    pub token: String,
    /// The token's id (for rotating or revoking it).
    pub token_id: i64,
    /// When the token stops working (null: never; see `admin_token_ttl`).
    pub token_expires_at: Option<String>,
}

/// An admin.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminView {
    pub id: i64,
    /// E-mail.
    pub email: String,
    pub role: String,
    /// Whether the admin's tokens work (false: deactivated).
    pub active: bool,
    pub created_at: String,
}

impl From<Admin> for AdminView {
    fn from(a: Admin) -> Self {
        Self {
            id: a.id,
            email: a.email,
            role: a.role,
            active: a.active,
            created_at: rfc3339(a.created_at),
        }
    }
}

/// A change to an admin; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAdmin {
    /// The name of the role to hold: one whose permissions the caller all holds, never the
    /// caller's own role.
    pub role: Option<String>,
    /// false deactivates the admin (their tokens stop working, and work again on
    /// reactivation); true reactivates them.
    pub active: Option<bool>,
}

/// An admin API token (never the token itself).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: i64,
    /// Issued.
    pub created_at: String,
    /// When it stops working (null: never).
    pub expires_at: Option<String>,
    /// Whether it has stopped working.
    pub expired: bool,
    /// When it was last used, to the minute (null: never).
    pub last_used_at: Option<String>,
}

impl From<AdminToken> for TokenView {
    fn from(t: AdminToken) -> Self {
        Self {
            id: t.id,
            expired: t.expired(now_ms()),
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
        }
    }
}

/// An admin's API tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// Oldest first.
    pub tokens: Vec<TokenView>,
}

/// A new API token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: i64,
    /// The API token: store it now, it cannot be shown again.
    pub token: String,
    /// Issued.
    pub created_at: String,
    /// When it stops working (null: never).
    pub expires_at: Option<String>,
}

impl CreatedToken {
    fn new(record: AdminToken, token: &crate::adapter::Secret) -> Self {
        Self {
            id: record.id,
            token: token.expose().to_owned(),
            created_at: rfc3339(record.created_at),
            expires_at: record.expires_at.map(rfc3339),
        }
    }
}

/// A role name of a request: an unknown one is a field error.
fn unknown_role(e: storage::Error) -> ApiError {
    match e {
        storage::Error::NotFound("role") => {
            ApiError::invalid_field("role", "no role has this name")
        }
        e => e.into(),
    }
}

/// The admins.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminList {
    /// By id.
    pub admins: Vec<AdminView>,
}

/// Create an admin; the answer holds their API token, shown once. Only with a role whose
/// permissions the caller all holds.
#[utoipa::path(post, path = "/api/v1/admins", tag = "admins", request_body = CreateAdmin,
    security(("bearer" = ["manage_admins"])),
    responses(
        (status = 201, body = CreatedAdmin),
        (status = 403, description = "The role has a permission the caller does not hold",
            body = ErrorBody),
        (status = 409, description = "The e-mail is taken", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn create_admin(
    auth: Authorized<ManageAdmins>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateAdmin>,
) -> Result<(StatusCode, Json<CreatedAdmin>), ApiError> {
    let mut check = Check::new();
    let email = check.field("email", Email::parse(&body.email));
    let email = check.finish(|| email)?;
    let (admin, record, token) = state
        .db()
        .create_admin_within(
            &auth.principal.actor(),
            &email,
            &body.role,
            Some(&auth.principal.permissions),
        )
        .await
        .map_err(unknown_role)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedAdmin {
            id: admin.id,
            email: admin.email,
            role: admin.role,
            token: token.expose().to_owned(),
            token_id: record.id,
            token_expires_at: record.expires_at.map(rfc3339),
        }),
    ))
}

/// Change an admin's role, or deactivate (`active: false`) or reactivate them. Only on an admin
/// whose permissions the caller all holds, to a role the same is true of, never the caller's
/// own role; the last active Full Administrator cannot be deactivated or moved to another role
/// (409).
#[utoipa::path(patch, path = "/api/v1/admins/{id}", tag = "admins", request_body = UpdateAdmin,
    params(("id" = i64, Path, description = "Admin id")),
    security(("bearer" = ["manage_admins"])),
    responses(
        (status = 200, body = AdminView),
        (status = 403, description = "A permission the caller does not hold, or their own role",
            body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The last active Full Administrator", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn update_admin(
    auth: Authorized<ManageAdmins>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateAdmin>,
) -> Result<Json<AdminView>, ApiError> {
    let patch = AdminPatch {
        role: body.role,
        active: body.active,
    };
    let admin = state
        .db()
        .update_admin(
            &auth.principal.actor(),
            id,
            &patch,
            Some(&auth.principal.permissions),
        )
        .await
        .map_err(unknown_role)?;
    Ok(Json(admin.into()))
}

/// Remove an admin and their tokens (the audit log keeps what they did). Only an admin whose
/// permissions the caller all holds; never the last active Full Administrator (409).
#[utoipa::path(delete, path = "/api/v1/admins/{id}", tag = "admins",
    params(("id" = i64, Path, description = "Admin id")),
    security(("bearer" = ["manage_admins"])),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "A permission the caller does not hold", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The last active Full Administrator", body = ErrorBody),
    ))]
pub async fn delete_admin(
    auth: Authorized<ManageAdmins>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    state
        .db()
        .delete_admin(
            &auth.principal.actor(),
            id,
            Some(&auth.principal.permissions),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An admin's API tokens: when each was issued, expires and was last used (never the tokens).
#[utoipa::path(get, path = "/api/v1/admins/{id}/tokens", tag = "admins",
    params(("id" = i64, Path, description = "Admin id")),
    security(("bearer" = ["manage_admins"])),
    responses((status = 200, body = TokenList), (status = 404, body = ErrorBody)))]
pub async fn list_tokens(
    _auth: Authorized<ManageAdmins>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.db().admin_tokens(id).await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(Into::into).collect(),
    }))
}

/// Issue another API token for an admin, valid for `admin_token_ttl`; shown once. Only for an
/// admin whose permissions the caller all holds.
#[utoipa::path(post, path = "/api/v1/admins/{id}/tokens", tag = "admins",
    params(("id" = i64, Path, description = "Admin id")),
    security(("bearer" = ["manage_admins"])),
    responses(
        (status = 201, body = CreatedToken),
        (status = 403, description = "A permission the caller does not hold", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn issue_token(
    auth: Authorized<ManageAdmins>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let (record, token) = state
        .db()
        .issue_admin_token(
            &auth.principal.actor(),
            id,
            Some(&auth.principal.permissions),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken::new(record, &token))))
}

/// Replace an admin's API token with a new one (shown once); the old one stops working at once.
/// Only for an admin whose permissions the caller all holds.
#[utoipa::path(post, path = "/api/v1/admins/{id}/tokens/{token_id}/rotate", tag = "admins",
    params(
        ("id" = i64, Path, description = "Admin id"),
        ("token_id" = i64, Path, description = "Token id"),
    ),
    security(("bearer" = ["manage_admins"])),
    responses(
        (status = 201, body = CreatedToken),
        (status = 403, description = "A permission the caller does not hold", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn rotate_token(
    auth: Authorized<ManageAdmins>,
    State(state): State<AppState>,
    ApiPath((id, token_id)): ApiPath<(i64, i64)>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let (record, token) = state
        .db()
        .rotate_admin_token(
            &auth.principal.actor(),
            id,
            token_id,
            Some(&auth.principal.permissions),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken::new(record, &token))))
}

/// Revoke an admin's API token: it stops working at once. Only for an admin whose permissions
/// the caller all holds.
#[utoipa::path(delete, path = "/api/v1/admins/{id}/tokens/{token_id}", tag = "admins",
    params(
        ("id" = i64, Path, description = "Admin id"),
        ("token_id" = i64, Path, description = "Token id"),
    ),
    security(("bearer" = ["manage_admins"])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "A permission the caller does not hold", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn revoke_token(
    auth: Authorized<ManageAdmins>,
    State(state): State<AppState>,
    ApiPath((id, token_id)): ApiPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    state
        .db()
        .revoke_admin_token(
            &auth.principal.actor(),
            id,
            token_id,
            Some(&auth.principal.permissions),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List admins.
#[utoipa::path(get, path = "/api/v1/admins", tag = "admins",
    security(("bearer" = ["manage_admins"])),
    responses((status = 200, body = AdminList)))]
pub async fn list_admins(
    _auth: Authorized<ManageAdmins>,
    State(state): State<AppState>,
) -> Result<Json<AdminList>, ApiError> {
    let admins = state.db().admins().await?;
    Ok(Json(AdminList {
        admins: admins.into_iter().map(Into::into).collect(),
    }))
}

/// Log paging (the audit log, a client's activity).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Most entries to return (1–1000, default 100).
    pub limit: Option<i64>,
}

impl LogQuery {
    /// The limit, checked.
    pub(crate) fn limit(&self) -> Result<i64, ApiError> {
        let limit = self.limit.unwrap_or(100);
        if (1..=1000).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::invalid_field("limit", "must be from 1 to 1000"))
        }
    }
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    /// When.
    pub at: String,
    /// The admin's id, when an admin did it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_id: Option<i64>,
    /// The admin's e-mail, `cli` or `system`.
    pub actor: String,
    /// What, e.g. `server.create`.
    pub action: String,
    /// On what, e.g. `server:3`.
    pub target: String,
    /// Details (never secrets).
    pub detail: String,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            at: rfc3339(e.at),
            admin_id: e.admin_id,
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
        }
    }
}

/// The audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Newest first.
    pub entries: Vec<AuditView>,
}

/// The audit log of admin changes, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admins", params(LogQuery),
    security(("bearer" = ["manage_admins"])),
    responses((status = 200, body = AuditList), (status = 422, body = ErrorBody)))]
pub async fn audit_log(
    _auth: Authorized<ManageAdmins>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let entries = state.db().audit_log(query.limit()?).await?;
    Ok(Json(AuditList {
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}
