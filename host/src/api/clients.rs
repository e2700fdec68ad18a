//! Clients, their users and their services (`manage_clients`). Creating or changing a service of
//! an enabled application asks the sync engine for the matching provisioning.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admins::LogQuery;
use super::applications::SyncView;
use super::error::{ApiError, Check, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, Authorized, ManageClients};
use super::{AppState, rfc3339};
use crate::model::{
    ClientPermission, ClientStatus, Email, Hostname, Name, ServiceStatus, Username, parse_set,
};
use crate::storage::{
    self, ActivityEntry, Client, ClientPatch, ClientUser, NewClient, NewService, Service,
    ServiceFilter, ServicePatch,
};
use crate::sync;

/// A client to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    /// Name, 1–100 characters.
    pub name: String,
    /// E-mail (also the owner user's).
    pub email: String,
    /// `active` (default), `inactive` or `closed`.
    pub status: Option<String>,
    /// Allow single sign-on (default true).
    pub allow_sso: Option<bool>,
}

/// A change to a client.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClient {
    pub name: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    pub status: Option<String>,
    /// Allow single sign-on.
    pub allow_sso: Option<bool>,
}

/// A client.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientView {
    pub id: i64,
    pub name: String,
    /// E-mail.
    pub email: String,
    /// `active`, `inactive` or `closed`.
    pub status: String,
    /// Single sign-on allowed.
    pub allow_sso: bool,
    /// The owner user.
    pub owner_user_id: i64,
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
}

impl From<Client> for ClientView {
    fn from(c: Client) -> Self {
        Self {
            id: c.id,
            name: c.name,
            email: c.email,
            status: c.status.as_str().to_owned(),
            allow_sso: c.allow_sso,
            owner_user_id: c.owner_user_id,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// The clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientList {
    /// By id.
    pub clients: Vec<ClientView>,
}

/// A user to add to a client.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// E-mail, unique within the client.
    pub email: String,
    /// Client permissions (`sso`, `profile`, `contacts`, `products`, `domains`, `invoices`,
    /// `tickets`, `emails`, `orders`).
    pub permissions: Vec<String>,
}

/// A change to a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// The user's permissions, replacing the old ones.
    pub permissions: Vec<String>,
}

/// A client's user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub client_id: i64,
    /// E-mail.
    pub email: String,
    /// The account owner.
    pub owner: bool,
    pub permissions: Vec<String>,
    pub created_at: String,
}

impl From<ClientUser> for UserView {
    fn from(u: ClientUser) -> Self {
        Self {
            id: u.id,
            client_id: u.client_id,
            email: u.email,
            owner: u.owner,
            permissions: u
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            created_at: rfc3339(u.created_at),
        }
    }
}

/// A client's users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// Owner first.
    pub users: Vec<UserView>,
}

/// A service to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateService {
    /// Owning client.
    pub client_id: i64,
    pub server_id: i64,
    /// Panel user name (may be empty).
    pub username: String,
    /// Main domain.
    pub domain: String,
    /// `pending` (default), `active`, `suspended`, `terminated` or `cancelled`.
    pub status: Option<String>,
}

/// A change to a service.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateService {
    pub status: Option<String>,
    /// Panel user name.
    pub username: Option<String>,
    /// Main domain.
    pub domain: Option<String>,
    /// Move to another server.
    pub server_id: Option<i64>,
    /// Move to another client.
    pub client_id: Option<i64>,
}

/// A service.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceView {
    pub id: i64,
    pub client_id: i64,
    pub server_id: i64,
    /// Panel user name.
    pub username: String,
    /// Main domain.
    pub domain: String,
    pub status: String,
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
}

impl From<Service> for ServiceView {
    fn from(s: Service) -> Self {
        Self {
            id: s.id,
            client_id: s.client_id,
            server_id: s.server_id,
            username: s.username,
            domain: s.domain,
            status: s.status.as_str().to_owned(),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// Services.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceList {
    /// By id.
    pub services: Vec<ServiceView>,
}

/// Service filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ServiceQuery {
    /// Only services on this server.
    pub server_id: Option<i64>,
    /// Only services of this client.
    pub client_id: Option<i64>,
}

/// Add a client and its owner user.
#[utoipa::path(post, path = "/api/v1/clients", tag = "clients", request_body = CreateClient,
    security(("bearer" = ["manage_clients"])),
    responses((status = 201, body = ClientView), (status = 422, body = ErrorBody)))]
pub async fn create(
    auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateClient>,
) -> Result<(StatusCode, Json<ClientView>), ApiError> {
    let mut check = Check::new();
    let name = check.field("name", Name::parse(&body.name));
    let email = check.field("email", Email::parse(&body.email));
    let status = check.optional("status", body.status, |v| ClientStatus::parse(&v));
    let new = check.finish(|| {
        Some(NewClient {
            name: name?,
            email: email?,
            status: status?.unwrap_or(ClientStatus::Active),
            allow_sso: body.allow_sso.unwrap_or(true),
        })
    })?;
    let client = state
        .db()
        .create_client(&auth.principal.actor(), &new)
        .await?;
    Ok((StatusCode::CREATED, Json(client.into())))
}

/// List clients.
#[utoipa::path(get, path = "/api/v1/clients", tag = "clients",
    security(("bearer" = ["manage_clients"])),
    responses((status = 200, body = ClientList)))]
pub async fn list(
    _auth: Authorized<ManageClients>,
    State(state): State<AppState>,
) -> Result<Json<ClientList>, ApiError> {
    let clients = state.db().clients().await?;
    Ok(Json(ClientList {
        clients: clients.into_iter().map(Into::into).collect(),
    }))
}

/// One client.
#[utoipa::path(get, path = "/api/v1/clients/{id}", tag = "clients",
    params(("id" = i64, Path, description = "Client id")),
    security(("bearer" = ["manage_clients"])),
    responses((status = 200, body = ClientView), (status = 404, body = ErrorBody)))]
pub async fn get(
    _auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ClientView>, ApiError> {
    Ok(Json(state.db().client(id).await?.into()))
}

/// Change a client (status, single sign-on, name, e-mail).
#[utoipa::path(patch, path = "/api/v1/clients/{id}", tag = "clients", request_body = UpdateClient,
    params(("id" = i64, Path, description = "Client id")),
    security(("bearer" = ["manage_clients"])),
    responses(
        (status = 200, body = ClientView),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn update(
    auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateClient>,
) -> Result<Json<ClientView>, ApiError> {
    let mut check = Check::new();
    let name = check.optional("name", body.name, |v| Name::parse(&v));
    let email = check.optional("email", body.email, |v| Email::parse(&v));
    let status = check.optional("status", body.status, |v| ClientStatus::parse(&v));
    let patch = check.finish(|| {
        Some(ClientPatch {
            name: name?,
            email: email?,
            status: status?,
            allow_sso: body.allow_sso,
        })
    })?;
    let client = state
        .db()
        .update_client(&auth.principal.actor(), id, &patch)
        .await?;
    Ok(Json(client.into()))
}

/// Add a user to a client.
#[utoipa::path(post, path = "/api/v1/clients/{id}/users", tag = "clients", request_body = CreateUser,
    params(("id" = i64, Path, description = "Client id")),
    security(("bearer" = ["manage_clients"])),
    responses(
        (status = 201, body = UserView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The client has a user with this e-mail", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn create_user(
    auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiPath(client_id): ApiPath<i64>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let mut check = Check::new();
    let email = check.field("email", Email::parse(&body.email));
    let permissions = check.field(
        "permissions",
        parse_set(&body.permissions, ClientPermission::parse),
    );
    let (email, permissions) = check.finish(|| Some((email?, permissions?)))?;
    let user = state
        .db()
        .create_client_user(&auth.principal.actor(), client_id, &email, &permissions)
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// A client's users.
#[utoipa::path(get, path = "/api/v1/clients/{id}/users", tag = "clients",
    params(("id" = i64, Path, description = "Client id")),
    security(("bearer" = ["manage_clients"])),
    responses((status = 200, body = UserList), (status = 404, body = ErrorBody)))]
pub async fn list_users(
    _auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiPath(client_id): ApiPath<i64>,
) -> Result<Json<UserList>, ApiError> {
    state.db().client(client_id).await?;
    let users = state.db().client_users(client_id).await?;
    Ok(Json(UserList {
        users: users.into_iter().map(Into::into).collect(),
    }))
}

/// Replace a user's permissions (e.g. revoke `sso`).
#[utoipa::path(patch, path = "/api/v1/clients/{id}/users/{user_id}", tag = "clients",
    request_body = UpdateUser,
    params(
        ("id" = i64, Path, description = "Client id"),
        ("user_id" = i64, Path, description = "User id"),
    ),
    security(("bearer" = ["manage_clients"])),
    responses(
        (status = 200, body = UserView),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn update_user(
    auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiPath((client_id, user_id)): ApiPath<(i64, i64)>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> Result<Json<UserView>, ApiError> {
    let mut check = Check::new();
    let permissions = check.field(
        "permissions",
        parse_set(&body.permissions, ClientPermission::parse),
    );
    let permissions = check.finish(|| permissions)?;
    let user = state
        .db()
        .set_client_user_permissions(&auth.principal.actor(), client_id, user_id, &permissions)
        .await?;
    Ok(Json(user.into()))
}

/// Map "the referenced client/server does not exist" to a field error.
fn reference_error(e: storage::Error) -> ApiError {
    match e {
        storage::Error::NotFound("client") => {
            ApiError::invalid_field("client_id", "no client has this id")
        }
        storage::Error::NotFound("server") => {
            ApiError::invalid_field("server_id", "no server has this id")
        }
        e => e.into(),
    }
}

/// Add a service.
#[utoipa::path(post, path = "/api/v1/services", tag = "clients", request_body = CreateService,
    security(("bearer" = ["manage_clients"])),
    responses((status = 201, body = ServiceView), (status = 422, body = ErrorBody)))]
pub async fn create_service(
    auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateService>,
) -> Result<(StatusCode, Json<ServiceView>), ApiError> {
    let mut check = Check::new();
    let username = check.field("username", Username::parse_optional(&body.username));
    let domain = check.field("domain", Hostname::parse(&body.domain));
    let status = check.optional("status", body.status, |v| ServiceStatus::parse(&v));
    let new = check.finish(|| {
        Some(NewService {
            client_id: body.client_id,
            server_id: body.server_id,
            username: username?,
            domain: domain?,
            status: status?.unwrap_or(ServiceStatus::Pending),
        })
    })?;
    let (service, change) = state
        .db()
        .create_service(&auth.principal.actor(), &new, sync::service_added)
        .await
        .map_err(reference_error)?;
    if let Some(change) = change {
        state.sync().request(change).await?;
    }
    Ok((StatusCode::CREATED, Json(service.into())))
}

/// List services, optionally of one server and/or client.
#[utoipa::path(get, path = "/api/v1/services", tag = "clients", params(ServiceQuery),
    security(("bearer" = ["manage_clients"])),
    responses((status = 200, body = ServiceList), (status = 422, body = ErrorBody)))]
pub async fn list_services(
    _auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ServiceQuery>,
) -> Result<Json<ServiceList>, ApiError> {
    let services = state
        .db()
        .services(ServiceFilter {
            server_id: query.server_id,
            client_id: query.client_id,
        })
        .await?;
    Ok(Json(ServiceList {
        services: services.into_iter().map(Into::into).collect(),
    }))
}

/// One service.
#[utoipa::path(get, path = "/api/v1/services/{id}", tag = "clients",
    params(("id" = i64, Path, description = "Service id")),
    security(("bearer" = ["manage_clients"])),
    responses((status = 200, body = ServiceView), (status = 404, body = ErrorBody)))]
pub async fn get_service(
    _auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ServiceView>, ApiError> {
    Ok(Json(state.db().service(id).await?.into()))
}

/// Change a service (status, user name, domain, server, client).
#[utoipa::path(patch, path = "/api/v1/services/{id}", tag = "clients", request_body = UpdateService,
    params(("id" = i64, Path, description = "Service id")),
    security(("bearer" = ["manage_clients"])),
    responses(
        (status = 200, body = ServiceView),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn update_service(
    auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateService>,
) -> Result<Json<ServiceView>, ApiError> {
    let mut check = Check::new();
    let status = check.optional("status", body.status, |v| ServiceStatus::parse(&v));
    let username = check.optional("username", body.username, |v| Username::parse_optional(&v));
    let domain = check.optional("domain", body.domain, |v| Hostname::parse(&v));
    let patch = check.finish(|| {
        Some(ServicePatch {
            status: status?,
            username: username?,
            domain: domain?,
            server_id: body.server_id,
            client_id: body.client_id,
        })
    })?;
    let (service, change) = state
        .db()
        .update_service(&auth.principal.actor(), id, &patch, sync::service_updated)
        .await
        .map_err(reference_error)?;
    if let Some(change) = change {
        state.sync().request(change).await?;
    }
    Ok(Json(service.into()))
}

/// A rotated credential: its new version and the sync that pushes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialRotated {
    /// The service.
    pub service_id: i64,
    /// The credential's new version (the secret itself is never returned).
    pub credential_version: i64,
    /// The sync pushing the new credential to the service's links (null when the application
    /// is disabled).
    pub sync: Option<SyncView>,
}

/// Rotate a service's single sign-on credential: a new subscriber id and secret replace the old
/// ones at once (links still holding the old ones stop signing in), and a sync pushes the new
/// ones to the service's links.
#[utoipa::path(post, path = "/api/v1/services/{id}/credential", tag = "clients",
    params(("id" = i64, Path, description = "Service id")),
    security(("bearer" = ["manage_clients"])),
    responses(
        (status = 202, body = CredentialRotated),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The service has no links, so no credential", body = ErrorBody),
    ))]
pub async fn rotate_credential(
    auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<CredentialRotated>), ApiError> {
    let (version, change) = state
        .db()
        .rotate_live_credential(&auth.principal.actor(), id)
        .await?;
    let sync = state.sync().request(change).await?.into_iter().next();
    Ok((
        StatusCode::ACCEPTED,
        Json(CredentialRotated {
            service_id: id,
            credential_version: version,
            sync: sync.map(Into::into),
        }),
    ))
}

/// One entry of a client's activity log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityView {
    /// Id (increasing).
    pub id: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// What happened: `sso_login`, `security_change`, `user_permissions`, …
    pub event: String,
    /// `success` or `refused`.
    pub outcome: String,
    /// The user concerned.
    pub user_id: Option<i64>,
    /// The service concerned.
    pub service_id: Option<i64>,
    /// Who did it (`sso`, the owner's e-mail, …).
    pub actor: String,
    /// The source address.
    pub source: Option<String>,
    /// What the client area shows.
    pub detail: String,
}

impl From<ActivityEntry> for ActivityView {
    fn from(e: ActivityEntry) -> Self {
        Self {
            id: e.id,
            at: rfc3339(e.at),
            event: e.event,
            outcome: e.outcome.as_str().to_owned(),
            user_id: e.user_id,
            service_id: e.service_id,
            actor: e.actor,
            source: e.source,
            detail: e.detail,
        }
    }
}

/// A client's activity log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityList {
    /// Newest first.
    pub entries: Vec<ActivityView>,
}

/// A client's activity log, newest first: single sign-on sign-ins and refusals, and the owner's
/// changes in the client area.
#[utoipa::path(get, path = "/api/v1/clients/{id}/activity", tag = "clients",
    params(("id" = i64, Path, description = "Client id"), LogQuery),
    security(("bearer" = ["manage_clients"])),
    responses(
        (status = 200, body = ActivityList),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn activity(
    _auth: Authorized<ManageClients>,
    State(state): State<AppState>,
    ApiPath(client_id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<ActivityList>, ApiError> {
    let limit = query.limit()?;
    state.db().client(client_id).await?;
    let entries = state.db().client_activity(client_id, limit).await?;
    Ok(Json(ActivityList {
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}
