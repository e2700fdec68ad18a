//! Client accounts, their users (one owner holding every client permission) and their hosting
//! services.

use std::collections::BTreeSet;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Actor, Db, Error, Result, audit, conflict_on_violation, flag, now_ms, parsed};
use crate::model::{
    ClientPermission, ClientStatus, Email, Hostname, Name, ServiceStatus, Username,
};
use crate::sync_port::{Change, ChangeId};

/// A client account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: i64,
    pub name: String,
    /// Contact e-mail.
    pub email: String,
    pub status: ClientStatus,
    /// Whether single sign-on is allowed for the account.
    pub allow_sso: bool,
    /// The owner user's id.
    pub owner_user_id: i64,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
}

/// A client to create.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: Name,
    /// E-mail (also the owner user's).
    pub email: Email,
    pub status: ClientStatus,
    /// Allow SSO.
    pub allow_sso: bool,
}

/// A change to a client; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ClientPatch {
    pub name: Option<Name>,
    /// E-mail.
    pub email: Option<Email>,
    pub status: Option<ClientStatus>,
    /// Allow SSO.
    pub allow_sso: Option<bool>,
}

/// A user of a client account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientUser {
    pub id: i64,
    /// The account.
    pub client_id: i64,
    /// E-mail (unique within the account).
    pub email: String,
    /// The account owner.
    pub owner: bool,
    /// What the user may do.
    pub permissions: BTreeSet<ClientPermission>,
    /// Created (ms).
    pub created_at: i64,
}

/// A hosting service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: i64,
    /// Owning client.
    pub client_id: i64,
    /// Server it lives on.
    pub server_id: i64,
    /// Panel user name (may be empty).
    pub username: String,
    /// Main domain.
    pub domain: String,
    pub status: ServiceStatus,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
}

/// A service to create.
#[derive(Debug, Clone)]
pub struct NewService {
    /// Owning client.
    pub client_id: i64,
    pub server_id: i64,
    /// Panel user name (may be empty).
    pub username: Username,
    /// Main domain.
    pub domain: Hostname,
    pub status: ServiceStatus,
}

/// A change to a service; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ServicePatch {
    pub status: Option<ServiceStatus>,
    /// Panel user name.
    pub username: Option<Username>,
    /// Main domain.
    pub domain: Option<Hostname>,
    /// Move to another server.
    pub server_id: Option<i64>,
    /// Move to another client.
    pub client_id: Option<i64>,
}

/// Which services to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceFilter {
    /// Only on this server.
    pub server_id: Option<i64>,
    /// Only of this client.
    pub client_id: Option<i64>,
}

const CLIENT_COLUMNS: &str = "c.id, c.name, c.email, c.status, c.allow_sso, c.created_at, \
     c.updated_at, (SELECT u.id FROM client_users u WHERE u.client_id = c.id AND u.owner = TRUE) \
     AS owner_user_id";

fn client_from(row: &AnyRow) -> Result<Client> {
    Ok(Client {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        status: parsed(row.try_get("status")?, "client status", ClientStatus::parse)?,
        allow_sso: flag(row, "allow_sso")?,
        owner_user_id: row.try_get("owner_user_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const SERVICE_COLUMNS: &str =
    "id, client_id, server_id, username, domain, status, created_at, updated_at";

fn service_from(row: &AnyRow) -> Result<Service> {
    Ok(Service {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        server_id: row.try_get("server_id")?,
        username: row.try_get("username")?,
        domain: row.try_get("domain")?,
        status: parsed(
            row.try_get("status")?,
            "service status",
            ServiceStatus::parse,
        )?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn permission_list(set: &BTreeSet<ClientPermission>) -> String {
    set.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
}

async fn set_user_permissions(
    conn: &mut AnyConnection,
    user_id: i64,
    permissions: &BTreeSet<ClientPermission>,
) -> Result<()> {
    sqlx::query("DELETE FROM client_user_permissions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    for p in permissions {
        sqlx::query("INSERT INTO client_user_permissions (user_id, permission) VALUES ($1, $2)")
            .bind(user_id)
            .bind(p.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn client_in(conn: &mut AnyConnection, id: i64) -> Result<Client> {
    let row = sqlx::query(&format!(
        "SELECT {CLIENT_COLUMNS} FROM clients c WHERE c.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(Error::NotFound("client"))?;
    client_from(&row)
}

async fn exists(conn: &mut AnyConnection, table: &str, id: i64) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE id = $1"))
        .bind(id)
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

impl Db {
    /// Create a client and its owner user (same e-mail, every client permission).
    pub async fn create_client(&self, actor: &Actor, new: &NewClient) -> Result<Client> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO clients (name, email, status, allow_sso, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(new.name.as_str())
        .bind(new.email.as_str())
        .bind(new.status.as_str())
        .bind(new.allow_sso)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let owner: i64 = sqlx::query_scalar(
            "INSERT INTO client_users (client_id, email, owner, created_at) \
             VALUES ($1, $2, TRUE, $3) RETURNING id",
        )
        .bind(id)
        .bind(new.email.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let all: BTreeSet<_> = ClientPermission::ALL.iter().copied().collect();
        set_user_permissions(&mut tx, owner, &all).await?;
        audit(
            &mut tx,
            actor,
            "client.create",
            &format!("client:{id}"),
            &format!(
                "name={} email={} status={} allow_sso={} owner_user={owner}",
                new.name, new.email, new.status, new.allow_sso
            ),
        )
        .await?;
        let client = client_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(client)
    }

    /// One client.
    pub async fn client(&self, id: i64) -> Result<Client> {
        let mut conn = self.pool().acquire().await?;
        client_in(&mut conn, id).await
    }

    /// Every client, by id.
    pub async fn clients(&self) -> Result<Vec<Client>> {
        let rows = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients c ORDER BY c.id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(client_from).collect()
    }

    /// Change a client.
    pub async fn update_client(
        &self,
        actor: &Actor,
        id: i64,
        patch: &ClientPatch,
    ) -> Result<Client> {
        let mut tx = self.begin_write().await?;
        let old = client_in(&mut tx, id).await?;
        sqlx::query(
            "UPDATE clients SET name = $2, email = $3, status = $4, allow_sso = $5, \
             updated_at = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(
            patch
                .name
                .as_ref()
                .map_or(old.name.as_str(), |v| v.as_str()),
        )
        .bind(
            patch
                .email
                .as_ref()
                .map_or(old.email.as_str(), |v| v.as_str()),
        )
        .bind(patch.status.unwrap_or(old.status).as_str())
        .bind(patch.allow_sso.unwrap_or(old.allow_sso))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let client = client_in(&mut tx, id).await?;
        let mut changed = Vec::new();
        for (field, before, after) in [
            ("name", old.name.clone(), client.name.clone()),
            ("email", old.email.clone(), client.email.clone()),
            ("status", old.status.to_string(), client.status.to_string()),
            (
                "allow_sso",
                old.allow_sso.to_string(),
                client.allow_sso.to_string(),
            ),
        ] {
            if before != after {
                changed.push(format!("{field}={after}"));
            }
        }
        audit(
            &mut tx,
            actor,
            "client.update",
            &format!("client:{id}"),
            &changed.join(" "),
        )
        .await?;
        tx.commit().await?;
        Ok(client)
    }

    /// Add a user to a client. A taken e-mail (within the client) is a conflict.
    pub async fn create_client_user(
        &self,
        actor: &Actor,
        client_id: i64,
        email: &Email,
        permissions: &BTreeSet<ClientPermission>,
    ) -> Result<ClientUser> {
        let mut tx = self.begin_write().await?;
        if !exists(&mut tx, "clients", client_id).await? {
            return Err(Error::NotFound("client"));
        }
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO client_users (client_id, email, owner, created_at) \
             VALUES ($1, $2, FALSE, $3) RETURNING id",
        )
        .bind(client_id)
        .bind(email.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_violation(e, format!("the client already has a user {email}")))?;
        set_user_permissions(&mut tx, id, permissions).await?;
        audit(
            &mut tx,
            actor,
            "client_user.create",
            &format!("client:{client_id}/user:{id}"),
            &format!("email={email} permissions={}", permission_list(permissions)),
        )
        .await?;
        tx.commit().await?;
        Ok(ClientUser {
            id,
            client_id,
            email: email.to_string(),
            owner: false,
            permissions: permissions.clone(),
            created_at: now,
        })
    }

    /// Replace a user's permissions.
    pub async fn set_client_user_permissions(
        &self,
        actor: &Actor,
        client_id: i64,
        user_id: i64,
        permissions: &BTreeSet<ClientPermission>,
    ) -> Result<ClientUser> {
        let mut tx = self.begin_write().await?;
        let found: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM client_users WHERE id = $1 AND client_id = $2",
        )
        .bind(user_id)
        .bind(client_id)
        .fetch_one(&mut *tx)
        .await?;
        if found == 0 {
            return Err(Error::NotFound("user"));
        }
        set_user_permissions(&mut tx, user_id, permissions).await?;
        audit(
            &mut tx,
            actor,
            "client_user.update",
            &format!("client:{client_id}/user:{user_id}"),
            &format!("permissions={}", permission_list(permissions)),
        )
        .await?;
        tx.commit().await?;
        self.client_user(client_id, user_id).await
    }

    /// One user of a client.
    pub async fn client_user(&self, client_id: i64, user_id: i64) -> Result<ClientUser> {
        self.client_users(client_id)
            .await?
            .into_iter()
            .find(|u| u.id == user_id)
            .ok_or(Error::NotFound("user"))
    }

    /// The users of a client, owner first.
    pub async fn client_users(&self, client_id: i64) -> Result<Vec<ClientUser>> {
        let rows = sqlx::query(
            "SELECT u.id, u.client_id, u.email, u.owner, u.created_at, \
                    (SELECT STRING_AGG(p.permission, ',') FROM client_user_permissions p \
                     WHERE p.user_id = u.id) AS permissions \
             FROM client_users u WHERE u.client_id = $1 ORDER BY u.owner DESC, u.id",
        )
        .bind(client_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let joined: Option<String> = row.try_get("permissions")?;
                Ok(ClientUser {
                    id: row.try_get("id")?,
                    client_id: row.try_get("client_id")?,
                    email: row.try_get("email")?,
                    owner: flag(row, "owner")?,
                    permissions: joined
                        .unwrap_or_default()
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| parsed(p.to_owned(), "client permission", ClientPermission::parse))
                        .collect::<Result<_>>()?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Create a service. The change `change` returns for it ([`crate::sync::service_added`])
    /// is queued in the same transaction. An unknown client or server is
    /// `NotFound("client")`/`("server")`.
    pub async fn create_service(
        &self,
        actor: &Actor,
        new: &NewService,
        change: impl FnOnce(&Service) -> Option<Change> + Send,
    ) -> Result<(Service, Option<ChangeId>)> {
        let mut tx = self.begin_write().await?;
        if !exists(&mut tx, "clients", new.client_id).await? {
            return Err(Error::NotFound("client"));
        }
        if !exists(&mut tx, "servers", new.server_id).await? {
            return Err(Error::NotFound("server"));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO services (client_id, server_id, username, domain, status, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {SERVICE_COLUMNS}"
        ))
        .bind(new.client_id)
        .bind(new.server_id)
        .bind(new.username.as_str())
        .bind(new.domain.as_str())
        .bind(new.status.as_str())
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let service = service_from(&row)?;
        audit(
            &mut tx,
            actor,
            "service.create",
            &format!("service:{}", service.id),
            &format!(
                "client={} server={} username={} domain={} status={}",
                service.client_id,
                service.server_id,
                service.username,
                service.domain,
                service.status
            ),
        )
        .await?;
        let queued = super::sync::enqueue_some(&mut tx, change(&service), actor.admin_id).await?;
        tx.commit().await?;
        Ok((service, queued))
    }

    /// One service.
    pub async fn service(&self, id: i64) -> Result<Service> {
        let row = sqlx::query(&format!(
            "SELECT {SERVICE_COLUMNS} FROM services WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(Error::NotFound("service"))?;
        service_from(&row)
    }

    /// Services, by id, optionally of one server and/or one client.
    pub async fn services(&self, filter: ServiceFilter) -> Result<Vec<Service>> {
        // Only the conditions the filter asks for, so that SQLite can use the server or client
        // index: `($1 = FALSE OR server_id = $2)` made it scan every service of every server.
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        for (column, value) in [
            ("server_id", filter.server_id),
            ("client_id", filter.client_id),
        ] {
            if let Some(value) = value {
                values.push(value);
                conditions.push(format!("{column} = ${}", values.len()));
            }
        }
        let sql = if conditions.is_empty() {
            format!("SELECT {SERVICE_COLUMNS} FROM services ORDER BY id")
        } else {
            format!(
                "SELECT {SERVICE_COLUMNS} FROM services WHERE {} ORDER BY id",
                conditions.join(" AND ")
            )
        };
        let mut query = sqlx::query(&sql);
        for value in values {
            query = query.bind(value);
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter().map(service_from).collect()
    }

    /// The services that get links for an application: `active` or `suspended`, on an enabled
    /// server of that application, by id.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn linked_services(&self, application: &str) -> Result<Vec<Service>> {
        let rows = sqlx::query(
            "SELECT s.id, s.client_id, s.server_id, s.username, s.domain, s.status, s.created_at, \
                    s.updated_at \
             FROM services s JOIN servers v ON v.id = s.server_id \
             WHERE v.module = $1 AND v.enabled = TRUE AND s.status IN ('active', 'suspended') \
             ORDER BY s.id",
        )
        .bind(application)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(service_from).collect()
    }

    /// Change a service. Moving it to an unknown client or server is
    /// `NotFound("client")`/`("server")`. `change` is given the service before and after, and
    /// the change it returns (the sync engine's judgement of what the panel sees,
    /// [`crate::sync::service_updated`]) is queued in the same transaction.
    pub async fn update_service(
        &self,
        actor: &Actor,
        id: i64,
        patch: &ServicePatch,
        change: impl FnOnce(&Service, &Service) -> Option<Change> + Send,
    ) -> Result<(Service, Option<ChangeId>)> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "SELECT {SERVICE_COLUMNS} FROM services WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound("service"))?;
        let old = service_from(&row)?;
        if let Some(client) = patch.client_id
            && !exists(&mut tx, "clients", client).await?
        {
            return Err(Error::NotFound("client"));
        }
        if let Some(server) = patch.server_id
            && !exists(&mut tx, "servers", server).await?
        {
            return Err(Error::NotFound("server"));
        }
        let row = sqlx::query(&format!(
            "UPDATE services SET client_id = $2, server_id = $3, username = $4, domain = $5, \
             status = $6, updated_at = $7 WHERE id = $1 RETURNING {SERVICE_COLUMNS}"
        ))
        .bind(id)
        .bind(patch.client_id.unwrap_or(old.client_id))
        .bind(patch.server_id.unwrap_or(old.server_id))
        .bind(
            patch
                .username
                .as_ref()
                .map_or(old.username.as_str(), |v| v.as_str()),
        )
        .bind(
            patch
                .domain
                .as_ref()
                .map_or(old.domain.as_str(), |v| v.as_str()),
        )
        .bind(patch.status.unwrap_or(old.status).as_str())
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let service = service_from(&row)?;
        let mut changed = Vec::new();
        for (field, before, after) in [
            (
                "client",
                old.client_id.to_string(),
                service.client_id.to_string(),
            ),
            (
                "server",
                old.server_id.to_string(),
                service.server_id.to_string(),
            ),
            ("username", old.username.clone(), service.username.clone()),
            ("domain", old.domain.clone(), service.domain.clone()),
            ("status", old.status.to_string(), service.status.to_string()),
        ] {
            if before != after {
                changed.push(format!("{field}={after}"));
            }
        }
        audit(
            &mut tx,
            actor,
            "service.update",
            &format!("service:{id}"),
            &changed.join(" "),
        )
        .await?;
        let queued =
            super::sync::enqueue_some(&mut tx, change(&old, &service), actor.admin_id).await?;
        tx.commit().await?;
        Ok((service, queued))
    }
}
