//! Per-service single sign-on credentials, in one place: minted by the sync engine when a
//! service first gets links (many at a time), revoked when its links go, rotated by an admin,
//! and checked when a panel presents one at `/oauth/token`.
//!
//! A credential is a random subscriber id and secret; the secret is sealed with
//! [`crate::crypto::SecretBox`] (context [`CREDENTIAL_CONTEXT`]) and only leaves storage as
//! [`Secret`]. Its version goes up on every rotation (and on a re-mint after a revocation), and
//! the record holds the version each link was pushed with, so a rotation makes the planner push
//! the new one.

use std::collections::HashMap;

use rand::RngCore;
use sqlx::{AnyConnection, Row};
use subtle::ConstantTimeEq;

#[cfg(any(test, feature = "test-support"))]
use super::sso::service_missing;
use super::{Backend, Db, Result, backend_of, flag, now_ms, parsed};
use crate::adapter::Secret;
use crate::crypto::SecretBox;
use crate::model::ServiceStatus;
use crate::storage::SsoSubject;
use crate::sync_port::{Change, ChangeId, StoredCredential};

/// A live credential as a static link names it (by its subscriber id), for the static link's
/// endpoint to check the link's handle against and to decide what following it does.
#[derive(Debug, Clone)]
pub struct LinkCredential {
    /// The service it belongs to.
    pub service_id: i64,
    /// Its secret (the handle is derived from it).
    pub secret: Secret,
    /// The application (server module) of the service's server.
    pub application: String,
    /// Whether that application lets static links sign in.
    pub static_sign_in: bool,
}

/// The sealing context of per-service SSO credential secrets.
pub const CREDENTIAL_CONTEXT: &str = "sso_credential";

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

impl Db {
    /// The live (not revoked) SSO credentials of the services on a server, by service id.
    pub async fn credentials_on_server(
        &self,
        server_id: i64,
    ) -> Result<HashMap<i64, StoredCredential>> {
        let rows = sqlx::query(
            "SELECT c.service_id, c.subscriber_id, c.secret_sealed, c.version \
             FROM sso_credentials c JOIN services s ON s.id = c.service_id \
             WHERE s.server_id = $1 AND c.revoked_at IS NULL",
        )
        .bind(server_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let sealed: String = row.try_get("secret_sealed")?;
                Ok((
                    row.try_get("service_id")?,
                    StoredCredential {
                        subscriber_id: row.try_get("subscriber_id")?,
                        secret: self.open_secret(CREDENTIAL_CONTEXT, &sealed)?,
                        version: row.try_get("version")?,
                    },
                ))
            })
            .collect()
    }

    /// Mint the SSO credentials of services that have no live one, in one transaction: a new
    /// random subscriber id and secret each, the version bumped over any revoked earlier one. A
    /// service that already has a live credential keeps it (rotation is
    /// [`Db::rotate_live_credential`]).
    pub async fn mint_credentials(
        &self,
        service_ids: &[i64],
    ) -> Result<HashMap<i64, StoredCredential>> {
        let now = now_ms();
        let mut out = HashMap::with_capacity(service_ids.len());
        // Generated and sealed before the write turn is taken: sealing is the costly part, and
        // SQLite's writer (shared with every other sync) waits while a transaction is open.
        let minted: Vec<(i64, String, Secret, String)> = service_ids
            .iter()
            .map(|&service_id| {
                let (subscriber_id, secret, sealed) = self.new_credential(service_id);
                (service_id, subscriber_id, secret, sealed)
            })
            .collect();
        // On conflict the earlier credential is replaced only when it was revoked;
        // `rotated_at` takes the new row's `created_at` (now).
        let mut tx = self.begin_write().await?;
        for chunk in minted.chunks(200) {
            let mut fresh: HashMap<i64, (&str, &Secret)> = HashMap::with_capacity(chunk.len());
            let sql = format!(
                "INSERT INTO sso_credentials (service_id, subscriber_id, secret_sealed, version, \
                 created_at) VALUES {} \
                 ON CONFLICT (service_id) DO UPDATE SET subscriber_id = excluded.subscriber_id, \
                 secret_sealed = excluded.secret_sealed, version = sso_credentials.version + 1, \
                 rotated_at = excluded.created_at, revoked_at = NULL \
                 WHERE sso_credentials.revoked_at IS NOT NULL \
                 RETURNING service_id, version",
                self.placeholder_rows(chunk.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for (service_id, subscriber_id, secret, sealed) in chunk {
                query = query
                    .bind(*service_id)
                    .bind(subscriber_id.as_str())
                    .bind(sealed.as_str())
                    .bind(1_i64)
                    .bind(now);
                fresh.insert(*service_id, (subscriber_id, secret));
            }
            for row in query.fetch_all(&mut *tx).await? {
                let service_id: i64 = row.try_get("service_id")?;
                let version: i64 = row.try_get("version")?;
                if let Some((subscriber_id, secret)) = fresh.remove(&service_id) {
                    out.insert(
                        service_id,
                        StoredCredential {
                            subscriber_id: subscriber_id.to_owned(),
                            secret: secret.clone(),
                            version,
                        },
                    );
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// A fresh credential for a service: subscriber id, secret, and the secret sealed.
    fn new_credential(&self, service_id: i64) -> (String, Secret, String) {
        let subscriber_id = format!("svc{service_id}_{}", random_hex(8));
        let secret = Secret::new(random_hex(32));
        let sealed = self.seal_secret(CREDENTIAL_CONTEXT, &secret);
        (subscriber_id, secret, sealed)
    }

    /// An admin's rotation of a service's live credential: a new subscriber id and secret
    /// replace the old ones at once (the old stop working), the version goes up so that the sync
    /// engine pushes the new ones, and the audit log says who did it. Returns the new version.
    /// A service without a live credential (it has no links) has nothing to rotate: `Conflict`.
    pub async fn rotate_live_credential(
        &self,
        actor: &super::Actor,
        service_id: i64,
    ) -> Result<(i64, ChangeId)> {
        let (subscriber_id, _secret, sealed) = self.new_credential(service_id);
        let mut tx = self.begin_write().await?;
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE sso_credentials SET subscriber_id = $2, secret_sealed = $3, \
             version = version + 1, rotated_at = $4 \
             WHERE service_id = $1 AND revoked_at IS NULL RETURNING version",
        )
        .bind(service_id)
        .bind(&subscriber_id)
        .bind(&sealed)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version) = version else {
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM services WHERE id = $1")
                .bind(service_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                None => super::Error::NotFound("service"),
                Some(_) => super::Error::Conflict(
                    "the service has no live single sign-on credential (it has no links)".into(),
                ),
            });
        };
        super::audit(
            &mut tx,
            actor,
            "rotate_credential",
            &format!("service:{service_id}"),
            &format!("credential version {version}"),
        )
        .await?;
        let change = Change::CredentialRotated { service_id };
        let queued = super::sync::enqueue(&mut tx, &change, actor.admin_id).await?;
        tx.commit().await?;
        Ok((version, queued))
    }

    /// Revoke the SSO credentials of services (their links are gone or going).
    pub async fn revoke_credentials(&self, service_ids: &[i64]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        for service_id in service_ids {
            sqlx::query(
                "UPDATE sso_credentials SET revoked_at = $1 \
                 WHERE service_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(service_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The live (not revoked) SSO credential of a service: subscriber id, secret, version.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn sso_credential(&self, service_id: i64) -> Result<Option<(String, Secret, i64)>> {
        let row = sqlx::query(
            "SELECT subscriber_id, secret_sealed, version FROM sso_credentials \
             WHERE service_id = $1 AND revoked_at IS NULL",
        )
        .bind(service_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            let sealed: String = row.try_get("secret_sealed")?;
            Ok((
                row.try_get("subscriber_id")?,
                self.open_secret(CREDENTIAL_CONTEXT, &sealed)?,
                row.try_get("version")?,
            ))
        })
        .transpose()
    }

    /// The service's live SSO credential, minted when it has none (or only a revoked one, whose
    /// version is bumped). Idempotent: a service with a live credential keeps it. Unknown
    /// service: `NotFound`. (One service's share of [`Db::mint_credentials`].)
    #[cfg(any(test, feature = "test-support"))]
    pub async fn mint_sso_credential(&self, service_id: i64) -> Result<(String, Secret)> {
        if let Some((subscriber_id, secret, _)) = self.sso_credential(service_id).await? {
            return Ok((subscriber_id, secret));
        }
        let minted = self
            .mint_credentials(&[service_id])
            .await
            .map_err(service_missing)?;
        if let Some(credential) = minted.into_values().next() {
            return Ok((credential.subscriber_id, credential.secret));
        }
        // Another minter won the race: theirs is the live one.
        self.sso_credential(service_id)
            .await?
            .map(|(subscriber_id, secret, _)| (subscriber_id, secret))
            .ok_or_else(|| {
                super::Error::Conflict("the SSO credential changed while minting".into())
            })
    }

    /// Revoke the service's SSO credential (its links are gone or going). No credential, or an
    /// already revoked one, is fine.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn revoke_sso_credential(&self, service_id: i64) -> Result<()> {
        self.revoke_credentials(&[service_id]).await
    }

    /// The live credential of a subscriber id, with its service's application and whether that
    /// application lets static links sign in. `None` when unknown or revoked.
    pub async fn link_credential(&self, subscriber_id: &str) -> Result<Option<LinkCredential>> {
        let row = sqlx::query(
            "SELECT c.service_id, c.secret_sealed, v.module, \
                    EXISTS (SELECT 1 FROM applications a WHERE a.id = v.module \
                            AND a.static_sign_in = TRUE) AS static_sign_in \
             FROM sso_credentials c JOIN services s ON s.id = c.service_id \
             JOIN servers v ON v.id = s.server_id \
             WHERE c.subscriber_id = $1 AND c.revoked_at IS NULL",
        )
        .bind(subscriber_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            let sealed: String = row.try_get("secret_sealed")?;
            Ok(LinkCredential {
                service_id: row.try_get("service_id")?,
                secret: self.open_secret(CREDENTIAL_CONTEXT, &sealed)?,
                application: row.try_get("module")?,
                static_sign_in: flag(&row, "static_sign_in")?,
            })
        })
        .transpose()
    }

    /// Check a presented credential (`subscriber_unique_id` + `token`) and describe what it
    /// speaks for, with respect to the requested application and scope. `None` when the
    /// subscriber id is unknown, the credential revoked, or the secret wrong; the secret is
    /// compared in constant time. (Subscriber ids are 128 random bits: that one exists is no
    /// secret worth hiding by timing.) The scope counts as provisioned when the record holds it
    /// for the service, or while a running unit on the service's server pushes it: a panel may
    /// show a link before the batch that creates it is recorded, and its first click must work.
    /// (The token endpoint checks through [`Db::issue_sso_token`], which runs the same check
    /// in the group-commit writer, many requests in one statement.)
    pub async fn check_sso_credential(
        &self,
        subscriber_id: &str,
        presented: &str,
        application: &str,
        scope: &str,
    ) -> Result<Option<SsoSubject>> {
        let check = CredentialCheck {
            subscriber_id: subscriber_id.to_owned(),
            presented: Secret::new(presented),
            application: application.to_owned(),
            scope: scope.to_owned(),
        };
        let mut conn = self.pool().acquire().await?;
        let mut found = check_credentials(&mut conn, &self.secrets, &[&check]).await?;
        Ok(found.pop().flatten())
    }
}

/// A presented link credential, with the application and scope it asks a token for.
#[derive(Debug, Clone)]
pub struct CredentialCheck {
    /// The presented `subscriber_unique_id`.
    pub subscriber_id: String,
    /// The presented secret (`token`).
    pub presented: Secret,
    /// The requested application.
    pub application: String,
    /// The requested link scope.
    pub scope: String,
}

/// [`Db::check_sso_credential`] for several presented credentials in one statement (the
/// requests as a `VALUES` list joined to the credentials): the subject of each valid one, in
/// order, `None` for each unknown, revoked or wrong one. Secrets are compared in constant time.
pub(super) async fn check_credentials(
    conn: &mut AnyConnection,
    secrets: &SecretBox,
    checks: &[&CredentialCheck],
) -> Result<Vec<Option<SsoSubject>>> {
    let mut out = vec![None; checks.len()];
    if checks.is_empty() {
        return Ok(out);
    }
    let backend = backend_of(conn);
    let mut values = String::with_capacity(checks.len() * 32);
    for i in 0..checks.len() {
        if i > 0 {
            values.push(',');
        }
        match backend {
            Backend::Sqlite => values.push_str("(CAST(? AS BIGINT),?,?,?)"),
            Backend::Postgres => {
                let n = i * 4;
                values.push_str(&format!(
                    "(CAST(${} AS BIGINT),${},${},${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4
                ));
            }
        }
    }
    let sql = format!(
        "WITH req (n, subscriber_id, application, pattern) AS (VALUES {values}) \
         SELECT req.n, c.service_id, c.secret_sealed, s.client_id, s.status, \
                v.module, v.enabled AS server_enabled, \
                EXISTS (SELECT 1 FROM applications a \
                        WHERE a.id = req.application AND a.enabled = TRUE) AS application_enabled, \
                (EXISTS (SELECT 1 FROM account_records r WHERE r.service_id = c.service_id \
                         AND r.application = req.application \
                         AND r.scopes LIKE req.pattern ESCAPE '\\') \
                 OR EXISTS (SELECT 1 FROM sync_servers u JOIN syncs y ON y.id = u.sync_id \
                         WHERE u.server_id = s.server_id AND y.application = req.application \
                         AND u.state = 'running' AND u.pushing LIKE req.pattern ESCAPE '\\')) \
                  AS scope_provisioned \
         FROM req JOIN sso_credentials c ON c.subscriber_id = req.subscriber_id \
         JOIN services s ON s.id = c.service_id \
         JOIN servers v ON v.id = s.server_id \
         WHERE c.revoked_at IS NULL"
    );
    let mut query = sqlx::query(&sql);
    for (i, check) in checks.iter().enumerate() {
        query = query
            .bind(i as i64)
            .bind(check.subscriber_id.clone())
            .bind(check.application.clone())
            .bind(super::sync::scope_pattern(&check.scope));
    }
    for row in query.fetch_all(&mut *conn).await? {
        let n: i64 = row.try_get("n")?;
        let Some(check) = usize::try_from(n).ok().and_then(|n| checks.get(n)) else {
            continue;
        };
        let sealed: String = row.try_get("secret_sealed")?;
        let secret = secrets.open(CREDENTIAL_CONTEXT, &sealed)?;
        if !bool::from(
            secret
                .expose()
                .as_bytes()
                .ct_eq(check.presented.expose().as_bytes()),
        ) {
            continue;
        }
        out[n as usize] = Some(SsoSubject {
            service_id: row.try_get("service_id")?,
            client_id: row.try_get("client_id")?,
            service_status: parsed(
                row.try_get("status")?,
                "service status",
                ServiceStatus::parse,
            )?,
            server_module: row.try_get("module")?,
            server_enabled: flag(&row, "server_enabled")?,
            application_enabled: flag(&row, "application_enabled")?,
            scope_provisioned: flag(&row, "scope_provisioned")?,
        });
    }
    Ok(out)
}
