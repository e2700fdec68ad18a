//! Single sign-on state: the one-time access tokens, client portal sessions and the client
//! activity log (the per-service credentials are in [`super::credentials`]).
//!
//! Nothing secret is stored in the clear: access tokens and session cookies are stored as their
//! SHA-256 ([`crate::crypto::hash_token`]), computed by the caller.
//!
//! A token is consumed by one conditional `UPDATE … WHERE used_at IS NULL AND expires_at > now
//! RETURNING …`, so of any number of concurrent redemptions exactly one wins, on both backends;
//! the session and the activity entry of that redemption are written in the same transaction.
//! Token requests (the credential check and the token's insert, [`Db::issue_sso_token`]) and
//! redemptions go through the group-commit writer (`SsoWrite`).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tokio::sync::oneshot;

use super::credentials::{CredentialCheck, check_credentials};
use super::writer::BatchOp;
use super::{Backend, Db, Error, Result, backend_of, flag, now_ms, parsed, placeholder_rows};
use crate::crypto::SecretBox;
use crate::model::{ClientStatus, ServiceStatus};

/// What a valid SSO credential speaks for, with what the token endpoint checks about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoSubject {
    /// The service the credential belongs to.
    pub service_id: i64,
    /// The client owning the service.
    pub client_id: i64,
    /// The service's status.
    pub service_status: ServiceStatus,
    /// The application (module) of the service's server.
    pub server_module: String,
    /// Whether the service's server is enabled.
    pub server_enabled: bool,
    /// Whether Application Links are on for the requested application.
    pub application_enabled: bool,
    /// Whether the service was given a link of the requested scope for that application.
    pub scope_provisioned: bool,
}

/// A one-time access token to store (the caller keeps the token; only its hash is stored).
#[derive(Debug, Clone)]
pub struct NewSsoToken {
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    /// The service it was issued for.
    pub service_id: i64,
    /// The application whose link was clicked.
    pub application: String,
    /// The link's scope.
    pub scope: String,
    /// The client-area path to land on (service id filled in).
    pub destination: String,
    /// The address that asked for it.
    pub source: Option<String>,
    /// Expiry (ms).
    pub expires_at: i64,
}

/// The signing-in side of a token's service: its client and the client's owner, as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    /// The client owning the service.
    pub client_id: i64,
    /// The client's status.
    pub client_status: ClientStatus,
    /// Whether the account allows single sign-on.
    pub allow_sso: bool,
    /// The owner user, when there is one.
    pub owner: Option<OwnerState>,
}

/// A client's owner user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerState {
    /// The user.
    pub user_id: i64,
    /// Their e-mail.
    pub email: String,
    /// Whether they hold the `sso` permission.
    pub has_sso: bool,
}

/// A stored token, as a redemption found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The service it was issued for.
    pub service_id: i64,
    /// The application.
    pub application: String,
    /// The scope.
    pub scope: String,
    /// The destination path.
    pub destination: String,
    /// The account signing in; `None` when the service is gone.
    pub account: Option<AccountState>,
}

/// What a redemption found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLookup {
    /// No such token.
    Unknown,
    /// Redeemed before.
    Used(TokenInfo),
    Expired(TokenInfo),
    /// Consumed now, by this redemption.
    Redeemed(TokenInfo),
}

impl TokenLookup {
    /// The token's details, when it exists.
    pub fn info(&self) -> Option<&TokenInfo> {
        match self {
            TokenLookup::Unknown => None,
            TokenLookup::Used(info) | TokenLookup::Expired(info) | TokenLookup::Redeemed(info) => {
                Some(info)
            }
        }
    }
}

/// A portal session to open.
#[derive(Debug, Clone)]
pub struct NewPortalSession {
    /// SHA-256 (hex) of the cookie value.
    pub token_hash: String,
    /// The account.
    pub client_id: i64,
    /// The user signed in.
    pub user_id: i64,
    /// The service single sign-on came through.
    pub service_id: Option<i64>,
    /// Expiry (ms).
    pub expires_at: i64,
}

/// Whether an account event went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityOutcome {
    /// Done.
    Success,
    Refused,
}

impl ActivityOutcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityOutcome::Success => "success",
            ActivityOutcome::Refused => "refused",
        }
    }

    fn parse(raw: &str) -> std::result::Result<Self, String> {
        match raw {
            "success" => Ok(ActivityOutcome::Success),
            "refused" => Ok(ActivityOutcome::Refused),
            _ => Err("not an activity outcome".into()),
        }
    }
}

/// An entry to write to a client's activity log. Must not hold a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivity {
    /// The account.
    pub client_id: i64,
    /// What happened, e.g. `sso_login`, `security_change`, `user_permissions`.
    pub event: &'static str,
    /// Whether it went through.
    pub outcome: ActivityOutcome,
    /// The user concerned.
    pub user_id: Option<i64>,
    /// The service concerned.
    pub service_id: Option<i64>,
    /// Who did it (`sso`, `owner@example.com`, …).
    pub actor: String,
    /// The request's source address.
    pub source: Option<String>,
    /// A sentence for people.
    pub detail: String,
}

/// One entry of a client's activity log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEntry {
    /// Id (increasing).
    pub id: i64,
    /// When (ms).
    pub at: i64,
    /// What happened.
    pub event: String,
    /// Whether it went through.
    pub outcome: ActivityOutcome,
    /// The user concerned.
    pub user_id: Option<i64>,
    /// The service concerned.
    pub service_id: Option<i64>,
    /// Who did it.
    pub actor: String,
    pub source: Option<String>,
    pub detail: String,
}

/// What a redemption writes, decided by the caller from the [`TokenLookup`].
#[derive(Debug, Clone, Default)]
pub struct RedeemWrites {
    /// The session to open (sign-in succeeded).
    pub session: Option<NewPortalSession>,
    /// The activity entry to write.
    pub activity: Option<NewActivity>,
}

/// A live portal session with the account as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSession {
    /// The account.
    pub client_id: i64,
    /// The account's name.
    pub client_name: String,
    /// The account's status.
    pub client_status: ClientStatus,
    /// Whether the account allows single sign-on.
    pub allow_sso: bool,
    /// The user signed in.
    pub user_id: i64,
    /// Their e-mail.
    pub email: String,
    /// Whether they own the account.
    pub owner: bool,
    /// The service single sign-on came through.
    pub service_id: Option<i64>,
    /// Opened (ms).
    pub created_at: i64,
    /// Expiry (ms).
    pub expires_at: i64,
}

/// A foreign-key violation on `services` means the service does not exist.
pub(super) fn service_missing(e: Error) -> Error {
    match &e {
        Error::Database(db)
            if db
                .as_database_error()
                .is_some_and(|d| d.is_foreign_key_violation()) =>
        {
            Error::NotFound("service")
        }
        _ => e,
    }
}

fn account_from(row: &AnyRow) -> Result<AccountState> {
    let owner_id: Option<i64> = row.try_get("owner_id")?;
    let owner = match owner_id {
        Some(user_id) => Some(OwnerState {
            user_id,
            email: row.try_get("owner_email")?,
            has_sso: flag(row, "owner_sso")?,
        }),
        None => None,
    };
    Ok(AccountState {
        client_id: row.try_get("client_id")?,
        client_status: parsed(row.try_get("status")?, "client status", ClientStatus::parse)?,
        allow_sso: flag(row, "allow_sso")?,
        owner,
    })
}

/// The account of a token's service as columns of a statement on `sso_tokens` (the redemption's
/// `UPDATE … RETURNING` and its fallback `SELECT`): read in the same statement that consumes
/// the token, so it is the account as it is at that moment. `client_id` is NULL when the
/// service is gone.
const ACCOUNT_COLUMNS: &str = "\
    (SELECT s.client_id FROM services s WHERE s.id = sso_tokens.service_id) AS client_id, \
    (SELECT c.status FROM services s JOIN clients c ON c.id = s.client_id \
     WHERE s.id = sso_tokens.service_id) AS status, \
    (SELECT c.allow_sso FROM services s JOIN clients c ON c.id = s.client_id \
     WHERE s.id = sso_tokens.service_id) AS allow_sso, \
    (SELECT u.id FROM services s JOIN client_users u ON u.client_id = s.client_id \
     AND u.owner = TRUE WHERE s.id = sso_tokens.service_id ORDER BY u.id LIMIT 1) AS owner_id, \
    (SELECT u.email FROM services s JOIN client_users u ON u.client_id = s.client_id \
     AND u.owner = TRUE WHERE s.id = sso_tokens.service_id ORDER BY u.id LIMIT 1) AS owner_email, \
    EXISTS (SELECT 1 FROM services s JOIN client_users u ON u.client_id = s.client_id \
            AND u.owner = TRUE JOIN client_user_permissions p ON p.user_id = u.id \
            AND p.permission = 'sso' WHERE s.id = sso_tokens.service_id) AS owner_sso";

/// The account columns of [`ACCOUNT_COLUMNS`], when the service still exists.
fn account_in(row: &AnyRow) -> Result<Option<AccountState>> {
    let client_id: Option<i64> = row.try_get("client_id")?;
    client_id.map(|_| account_from(row)).transpose()
}

fn token_info(row: &AnyRow, account: Option<AccountState>) -> Result<TokenInfo> {
    Ok(TokenInfo {
        service_id: row.try_get("service_id")?,
        application: row.try_get("application")?,
        scope: row.try_get("scope")?,
        destination: row.try_get("destination")?,
        account,
    })
}

async fn insert_activity(conn: &mut AnyConnection, a: &NewActivity, at: i64) -> Result<()> {
    insert_activities(conn, &[a], at).await
}

/// Activity entries in one statement.
async fn insert_activities(
    conn: &mut AnyConnection,
    entries: &[&NewActivity],
    at: i64,
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO client_activity (client_id, at, event, outcome, user_id, service_id, actor, \
         source, detail) VALUES {}",
        placeholder_rows(backend_of(conn), 1, entries.len(), 9)
    );
    let mut query = sqlx::query(&sql);
    for a in entries {
        query = query
            .bind(a.client_id)
            .bind(at)
            .bind(a.event)
            .bind(a.outcome.as_str())
            .bind(a.user_id)
            .bind(a.service_id)
            .bind(a.actor.clone())
            .bind(a.source.clone())
            .bind(a.detail.clone());
    }
    query.execute(conn).await?;
    Ok(())
}

/// How a redemption decides what to write once it knows the token and the account.
type Decide = Arc<dyn Fn(&TokenLookup) -> RedeemWrites + Send + Sync>;

/// How a token request decides, once its credential checked out, whether to store a token.
type DecideIssue = Arc<dyn Fn(&SsoSubject) -> Option<NewSsoToken> + Send + Sync>;

/// Single sign-on's writes, applied in batches by the group-commit writer ([`super::writer`]):
/// of the operations waiting, all token requests' credential checks become one `SELECT` (on
/// the writer's connection, whose page cache the commits keep warm), all token issues one
/// `INSERT`, all redemptions one
/// consuming `UPDATE … RETURNING` (plus one `SELECT` for tokens it did not consume) and one
/// `INSERT` each for their sessions and activity entries.
pub(crate) enum SsoWrite {
    /// Store an issued token.
    Issue {
        token: NewSsoToken,
        done: oneshot::Sender<Result<()>>,
    },
    /// Check a presented credential; when it is valid, store the token `decide` gives (if any).
    CheckAndIssue {
        check: CredentialCheck,
        secrets: Arc<SecretBox>,
        decide: DecideIssue,
        outcome: Option<Option<SsoSubject>>,
        done: oneshot::Sender<Result<Option<SsoSubject>>>,
    },
    /// Consume a token and write what `decide` says.
    Redeem {
        token_hash: String,
        decide: Decide,
        outcome: Option<TokenLookup>,
        done: oneshot::Sender<Result<TokenLookup>>,
    },
}

impl BatchOp for SsoWrite {
    fn apply<'c>(conn: &'c mut AnyConnection, ops: &'c mut [Self]) -> BoxFuture<'c, Result<()>> {
        Box::pin(apply_sso_writes(conn, ops))
    }

    /// A token issue is one `INSERT` (after the credential check's `SELECT`); a redemption
    /// consumes the token and writes the session and the activity entry together.
    fn one_statement(&self) -> bool {
        !matches!(self, SsoWrite::Redeem { .. })
    }

    fn answer(self, committed: Result<()>) {
        match self {
            SsoWrite::Issue { done, .. } => {
                let _ = done.send(committed);
            }
            SsoWrite::CheckAndIssue { outcome, done, .. } => {
                let _ = done.send(committed.and_then(|()| outcome.ok_or(Error::WriterGone)));
            }
            SsoWrite::Redeem { outcome, done, .. } => {
                let _ = done.send(committed.and_then(|()| outcome.ok_or(Error::WriterGone)));
            }
        }
    }
}

async fn apply_sso_writes(conn: &mut AnyConnection, ops: &mut [SsoWrite]) -> Result<()> {
    let backend = backend_of(conn);
    let now = now_ms();
    // Token requests: every presented credential checked in one statement, then each request
    // decides on its subject.
    let checks: Vec<(&CredentialCheck, &SecretBox)> = ops
        .iter()
        .filter_map(|op| match op {
            SsoWrite::CheckAndIssue { check, secrets, .. } => Some((check, &**secrets)),
            _ => None,
        })
        .collect();
    let mut decided: Vec<NewSsoToken> = Vec::new();
    if let Some(&(_, secrets)) = checks.first() {
        let only: Vec<&CredentialCheck> = checks.iter().map(|(c, _)| *c).collect();
        let mut subjects = check_credentials(conn, secrets, &only).await?.into_iter();
        for op in ops.iter_mut() {
            if let SsoWrite::CheckAndIssue {
                decide, outcome, ..
            } = op
            {
                let subject = subjects.next().flatten();
                decided.extend(subject.as_ref().and_then(|s| decide(s)));
                *outcome = Some(subject);
            }
        }
    }
    let issues: Vec<&NewSsoToken> = ops
        .iter()
        .filter_map(|op| match op {
            SsoWrite::Issue { token, .. } => Some(token),
            _ => None,
        })
        .chain(decided.iter())
        .collect();
    if !issues.is_empty() {
        let sql = format!(
            "INSERT INTO sso_tokens (token_hash, service_id, application, scope, destination, \
             source, created_at, expires_at) VALUES {}",
            placeholder_rows(backend, 1, issues.len(), 8)
        );
        let mut query = sqlx::query(&sql);
        for t in &issues {
            query = query
                .bind(t.token_hash.clone())
                .bind(t.service_id)
                .bind(t.application.clone())
                .bind(t.scope.clone())
                .bind(t.destination.clone())
                .bind(t.source.clone())
                .bind(now)
                .bind(t.expires_at);
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(|e| service_missing(e.into()))?;
    }

    let mut hashes: Vec<&str> = Vec::new();
    for op in ops.iter() {
        if let SsoWrite::Redeem { token_hash, .. } = op
            && !hashes.contains(&token_hash.as_str())
        {
            hashes.push(token_hash);
        }
    }
    if hashes.is_empty() {
        return Ok(());
    }
    // Consume every unused, unexpired one; each row is consumed (and returned) once.
    let sql = format!(
        "UPDATE sso_tokens SET used_at = {} WHERE used_at IS NULL AND expires_at > {} \
         AND token_hash IN {} \
         RETURNING token_hash, service_id, application, scope, destination, {ACCOUNT_COLUMNS}",
        placeholder(backend, 1),
        placeholder(backend, 2),
        in_list(backend, 3, hashes.len()),
    );
    let mut query = sqlx::query(&sql).bind(now).bind(now);
    for hash in &hashes {
        query = query.bind(hash.to_string());
    }
    let mut consumed: HashMap<String, TokenInfo> = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        consumed.insert(
            row.try_get("token_hash")?,
            token_info(&row, account_in(&row)?)?,
        );
    }
    // The others: used before, expired, or unknown.
    let others: Vec<&str> = hashes
        .iter()
        .copied()
        .filter(|h| !consumed.contains_key(*h))
        .collect();
    let mut found: HashMap<String, (bool, TokenInfo)> = HashMap::new();
    if !others.is_empty() {
        let sql = format!(
            "SELECT token_hash, service_id, application, scope, destination, used_at, \
             {ACCOUNT_COLUMNS} FROM sso_tokens WHERE token_hash IN {}",
            in_list(backend, 1, others.len())
        );
        let mut query = sqlx::query(&sql);
        for hash in &others {
            query = query.bind(hash.to_string());
        }
        for row in query.fetch_all(&mut *conn).await? {
            let used_at: Option<i64> = row.try_get("used_at")?;
            found.insert(
                row.try_get("token_hash")?,
                (used_at.is_some(), token_info(&row, account_in(&row)?)?),
            );
        }
    }

    let mut sessions = Vec::new();
    let mut activities = Vec::new();
    for op in ops.iter_mut() {
        let SsoWrite::Redeem {
            token_hash,
            decide,
            outcome,
            ..
        } = op
        else {
            continue;
        };
        let lookup = if let Some(info) = consumed.remove(token_hash.as_str()) {
            // Later redemptions of the same token in this batch find it used.
            found.insert(token_hash.clone(), (true, info.clone()));
            TokenLookup::Redeemed(info)
        } else {
            match found.get(token_hash.as_str()) {
                None => TokenLookup::Unknown,
                Some((true, info)) => TokenLookup::Used(info.clone()),
                Some((false, info)) => TokenLookup::Expired(info.clone()),
            }
        };
        let writes = decide(&lookup);
        sessions.extend(writes.session);
        activities.extend(writes.activity);
        *outcome = Some(lookup);
    }
    if !sessions.is_empty() {
        let sql = format!(
            "INSERT INTO portal_sessions (token_hash, client_id, user_id, service_id, \
             created_at, expires_at) VALUES {}",
            placeholder_rows(backend, 1, sessions.len(), 6)
        );
        let mut query = sqlx::query(&sql);
        for session in &sessions {
            query = query
                .bind(session.token_hash.clone())
                .bind(session.client_id)
                .bind(session.user_id)
                .bind(session.service_id)
                .bind(now)
                .bind(session.expires_at);
        }
        query.execute(&mut *conn).await?;
    }
    let activities: Vec<&NewActivity> = activities.iter().collect();
    insert_activities(conn, &activities, now).await
}

/// Parameter `n`: `?` on SQLite (bound in order), `$n` on PostgreSQL.
fn placeholder(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => "?".to_owned(),
        Backend::Postgres => format!("${n}"),
    }
}

/// `(p, p, …)` for an `IN`.
fn in_list(backend: Backend, first: usize, count: usize) -> String {
    placeholder_rows(backend, first, 1, count)
}

impl Db {
    /// Store a new access token.
    pub async fn create_sso_token(&self, token: NewSsoToken) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.sso_writes
            .submit(self, SsoWrite::Issue { token, done })
            .await;
        answer.await.map_err(|_| Error::WriterGone)?
    }

    /// A token request: check the presented credential and, when it is valid, store the token
    /// `decide` gives for its subject (`None`: refused, nothing stored), in one write of the
    /// group-commit writer. Returns the subject, `None` when the credential is not valid
    /// (see [`Db::check_sso_credential`]).
    pub async fn issue_sso_token(
        &self,
        check: CredentialCheck,
        decide: impl Fn(&SsoSubject) -> Option<NewSsoToken> + Send + Sync + 'static,
    ) -> Result<Option<SsoSubject>> {
        let (done, answer) = oneshot::channel();
        let op = SsoWrite::CheckAndIssue {
            check,
            secrets: self.secrets.clone(),
            decide: Arc::new(decide),
            outcome: None,
            done,
        };
        self.sso_writes.submit(self, op).await;
        answer.await.map_err(|_| Error::WriterGone)?
    }

    /// Whether an access token of this hash was issued (and not yet purged): one read, so that
    /// a made-up token is refused without a write.
    pub async fn sso_token_issued(&self, token_hash: &str) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT service_id FROM sso_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(self.pool())
                .await?;
        Ok(found.is_some())
    }

    /// Redeem an access token, in one transaction: consume it (only if unused and unexpired:
    /// of concurrent redemptions exactly one gets [`TokenLookup::Redeemed`]), read the account
    /// signing in, let `decide` say what to write (a session, an activity entry), write it.
    pub async fn redeem_sso_token(
        &self,
        token_hash: &str,
        decide: impl Fn(&TokenLookup) -> RedeemWrites + Send + Sync + 'static,
    ) -> Result<TokenLookup> {
        let (done, answer) = oneshot::channel();
        let op = SsoWrite::Redeem {
            token_hash: token_hash.to_owned(),
            decide: Arc::new(decide),
            outcome: None,
            done,
        };
        self.sso_writes.submit(self, op).await;
        answer.await.map_err(|_| Error::WriterGone)?
    }

    /// The live session with this cookie hash, with the account as it is now.
    pub async fn portal_session(&self, token_hash: &str) -> Result<Option<PortalSession>> {
        let row = sqlx::query(
            "SELECT s.client_id, s.user_id, s.service_id, s.created_at, s.expires_at, \
                    c.name AS client_name, c.status, c.allow_sso, u.email, u.owner \
             FROM portal_sessions s JOIN clients c ON c.id = s.client_id \
             JOIN client_users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(PortalSession {
                client_id: row.try_get("client_id")?,
                client_name: row.try_get("client_name")?,
                client_status: parsed(
                    row.try_get("status")?,
                    "client status",
                    ClientStatus::parse,
                )?,
                allow_sso: flag(&row, "allow_sso")?,
                user_id: row.try_get("user_id")?,
                email: row.try_get("email")?,
                owner: flag(&row, "owner")?,
                service_id: row.try_get("service_id")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Open a portal session directly (single sign-on opens them in
    /// [`Db::redeem_sso_token`]); for tools and tests.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn open_portal_session(&self, session: &NewPortalSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO portal_sessions (token_hash, client_id, user_id, service_id, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.token_hash)
        .bind(session.client_id)
        .bind(session.user_id)
        .bind(session.service_id)
        .bind(now_ms())
        .bind(session.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// End a session (sign out).
    pub async fn end_portal_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM portal_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// How many live sessions an account has.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn portal_session_count(&self, client_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM portal_sessions WHERE client_id = $1 AND expires_at > $2",
        )
        .bind(client_id)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?)
    }

    /// Append to a client's activity log.
    pub async fn record_client_activity(&self, activity: &NewActivity) -> Result<()> {
        let mut conn = self.pool().acquire().await?;
        insert_activity(&mut conn, activity, now_ms()).await
    }

    /// A client's activity log, newest first, at most `limit` entries.
    pub async fn client_activity(&self, client_id: i64, limit: i64) -> Result<Vec<ActivityEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, event, outcome, user_id, service_id, actor, source, detail \
             FROM client_activity WHERE client_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(client_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ActivityEntry {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    event: row.try_get("event")?,
                    outcome: parsed(
                        row.try_get("outcome")?,
                        "activity outcome",
                        ActivityOutcome::parse,
                    )?,
                    user_id: row.try_get("user_id")?,
                    service_id: row.try_get("service_id")?,
                    actor: row.try_get("actor")?,
                    source: row.try_get("source")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Delete access tokens that expired before `tokens_before` and sessions that expired
    /// before now. Returns how many rows went.
    pub async fn purge_sso_records(&self, tokens_before: i64) -> Result<u64> {
        let tokens = sqlx::query("DELETE FROM sso_tokens WHERE expires_at < $1")
            .bind(tokens_before)
            .execute(self.pool())
            .await?
            .rows_affected();
        let sessions = sqlx::query("DELETE FROM portal_sessions WHERE expires_at < $1")
            .bind(now_ms())
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(tokens + sessions)
    }
}
