//! Roles, admins and the audit log (`manage_admins`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Check, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Authorized, ManageAdmins};
use super::{AppState, rfc3339};
use crate::model::{Email, Name, Permission, parse_set};
use crate::storage::{self, Admin, AuditEntry, Role};

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

/// Create a role.
#[utoipa::path(post, path = "/api/v1/roles", tag = "admins", request_body = CreateRole,
    security(("bearer" = ["manage_admins"])),
    responses(
        (status = 201, body = RoleView),
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
}

/// An admin.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminView {
    pub id: i64,
    /// E-mail.
    pub email: String,
    pub role: String,
    pub created_at: String,
}

impl From<Admin> for AdminView {
    fn from(a: Admin) -> Self {
        Self {
            id: a.id,
            email: a.email,
            role: a.role,
            created_at: rfc3339(a.created_at),
        }
    }
}

/// The admins.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminList {
    /// By id.
    pub admins: Vec<AdminView>,
}

/// Create an admin; the answer holds their API token, shown once.
#[utoipa::path(post, path = "/api/v1/admins", tag = "admins", request_body = CreateAdmin,
    security(("bearer" = ["manage_admins"])),
    responses(
        (status = 201, body = CreatedAdmin),
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
    let (admin, token) = state
        .db()
        .create_admin(&auth.principal.actor(), &email, &body.role)
        .await
        .map_err(|e| match e {
            storage::Error::NotFound(_) => ApiError::invalid_field("role", "no role has this name"),
            e => e.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedAdmin {
            id: admin.id,
            email: admin.email,
            role: admin.role,
            token: token.expose().to_owned(),
        }),
    ))
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
