//! Account import: the hosting accounts a server's panel lists (`list-accounts`) become clients
//! and services, for admins who would otherwise type them in. One piece of logic serves the
//! admin API (`POST /api/v1/servers/{id}/import`) and the command line (`panelink server
//! import`).
//!
//! - **Dry run by default.** Without `apply` nothing is written: the report says what would be
//!   created.
//! - **Matching.** An account is there already when a service on the same server has its user
//!   name; it is reported `exists` and left alone. Importing again creates nothing new: the
//!   import is idempotent.
//! - **Clients.** An account with an owner (a reseller, for panels that have them) becomes a
//!   service of the owner's client: the client of the service whose user name is the owner on
//!   this server when there is one, else one client per owner, created once and named after
//!   the owner (the owner's own account joins it too). Every other account gets a client of
//!   its own, named after its domain. A new client's e-mail is the panel's contact e-mail of
//!   the account (for an owner, of the owner's own account when listed); where the panel has
//!   none, the domain mailbox `<user>@<domain>`, for the admin to correct. New clients are
//!   active and allowed to sign in.
//! - **Services** are created active, or suspended when the panel has the account suspended.
//! - **Bad or partial data** (no user name, a user name or domain Panelink cannot take, a user
//!   name listed twice) is that account's `error`; the others go ahead. A failure to write one
//!   account is also that account's error.
//! - **Links.** Created services are pushed in one sync of the server (a single change queued
//!   after the last one, drained by the API at once and by a running host's outbox pass when
//!   the command line imported); a host that stops in between leaves the server to the next
//!   repair or drift check.

use std::collections::{HashMap, HashSet};

use crate::adapter::PanelAccount;
use crate::model::{ClientStatus, Email, Hostname, Name, ServiceStatus, Username};
use crate::runtime::{self, Plugins};
use crate::storage::{self, Actor, Db, NewClient, NewService, ServiceFilter};
use crate::sync_port::{Change, ChangeId};

/// What the import does (or would do) with one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A client (or the owner's) and a service are created.
    Create,
    /// A service on this server has the user name already.
    Exists,
    /// The account cannot be imported; see its error.
    Error,
}

impl Action {
    /// The action as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Exists => "exists",
            Action::Error => "error",
        }
    }
}

/// One listed account and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountReport {
    /// User name as the panel listed it.
    pub username: String,
    /// Domain as the panel listed it.
    pub domain: String,
    /// Suspended on the panel.
    pub suspended: bool,
    /// Owner (reseller), when the panel has one.
    pub owner: Option<String>,
    /// What the import did (`apply`) or would do (dry run).
    pub action: Action,
    /// Why it cannot be imported (`action` is `Error`).
    pub error: Option<String>,
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The server.
    pub server_id: i64,
    /// Whether anything was written (`false`: a dry run).
    pub applied: bool,
    /// Services created (0 on a dry run).
    pub created: u64,
    /// Every account the panel listed, in its order.
    pub accounts: Vec<AccountReport>,
    /// The queued change that pushes the created services' links (drain it with the sync
    /// engine's `request`); `None` when nothing was created.
    pub change: Option<ChangeId>,
}

/// Why an import could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such server.
    #[error("server not found")]
    NotFound,
    /// No installed plugin serves the server's application.
    #[error("no installed plugin serves the {0} application")]
    NoPlugin(String),
    /// The plugin cannot list accounts (contract 0.1.0, or the panel does not support it).
    #[error("the plugin cannot list this server's accounts: {0}")]
    Unsupported(String),
    /// The panel could not be asked, or refused (worth trying again later when transient).
    #[error("the panel's accounts could not be listed: {0}")]
    Panel(runtime::Error),
    /// Storage failed.
    #[error(transparent)]
    Storage(storage::Error),
}

impl From<storage::Error> for Error {
    fn from(e: storage::Error) -> Self {
        match e {
            storage::Error::NotFound("server") => Error::NotFound,
            e => Error::Storage(e),
        }
    }
}

/// A listed account checked: what it would become, or why not.
struct Checked<'a> {
    account: &'a PanelAccount,
    outcome: Result<Valid, String>,
}

/// An account that can be imported.
struct Valid {
    username: Username,
    domain: Hostname,
    exists: bool,
}

/// Check every listed account against the server's services.
fn check<'a>(listed: &'a [PanelAccount], existing: &HashSet<&str>) -> Vec<Checked<'a>> {
    let mut times: HashMap<&str, usize> = HashMap::new();
    for a in listed {
        *times.entry(a.username.trim()).or_default() += 1;
    }
    listed
        .iter()
        .map(|account| {
            let name = account.username.trim();
            let outcome = if name.is_empty() {
                Err("the panel listed this account without a user name".to_owned())
            } else if times.get(name).copied().unwrap_or(0) > 1 {
                Err(format!(
                    "the panel listed the user name {name:?} more than once"
                ))
            } else {
                match (
                    Username::parse(name),
                    Hostname::parse(account.domain.trim()),
                ) {
                    (Err(why), _) => Err(format!("user name {name:?}: {why}")),
                    (_, Err(why)) => Err(format!("domain {:?}: {why}", account.domain)),
                    (Ok(username), Ok(domain)) => Ok(Valid {
                        exists: existing.contains(username.as_str()),
                        username,
                        domain,
                    }),
                }
            };
            Checked { account, outcome }
        })
        .collect()
}

/// The e-mail a new client gets: the panel's contact e-mail, else `<user>@<domain>`.
fn client_email(contact: Option<&str>, username: &str, domain: &str) -> Result<Email, String> {
    contact
        .and_then(|e| Email::parse(e).ok())
        .map_or_else(|| Email::parse(&format!("{username}@{domain}")), Ok)
}

/// List the server's accounts through its application's active plugin and import those not
/// there yet (`apply`), or only say what would be imported.
pub async fn import(
    db: &Db,
    plugins: &Plugins,
    actor: &Actor,
    server_id: i64,
    apply: bool,
) -> Result<Report, Error> {
    let server = db.server(server_id).await?;
    let plugin = plugins
        .get(&server.module)
        .ok_or_else(|| Error::NoPlugin(server.module.clone()))?;
    let target = db.server_target(server_id).await?;
    let listed = match plugin.list_accounts(&target).await {
        Ok(out) => out.value,
        Err(runtime::Error::Plugin {
            error: crate::adapter::PluginError::Unsupported(why),
            ..
        }) => return Err(Error::Unsupported(why)),
        Err(e) => return Err(Error::Panel(e)),
    };
    let services = db
        .services(ServiceFilter {
            server_id: Some(server_id),
            client_id: None,
        })
        .await?;
    let existing: HashSet<&str> = services.iter().map(|s| s.username.as_str()).collect();
    let checked = check(&listed, &existing);

    let mut clients = Clients {
        // An owner's client: the client of the owner's own service here, when there is one.
        by_user: services
            .iter()
            .filter(|s| !s.username.is_empty())
            .map(|s| (s.username.clone(), s.client_id))
            .collect(),
        listed: listed.iter().map(|a| (a.username.trim(), a)).collect(),
        owners: listed
            .iter()
            .filter_map(|a| a.owner.as_deref().map(str::trim))
            .collect(),
    };

    let mut report = Report {
        server_id,
        applied: apply,
        created: 0,
        accounts: Vec::with_capacity(checked.len()),
        change: None,
    };
    let mut last_created = None;
    for Checked { account, outcome } in checked {
        let mut entry = AccountReport {
            username: account.username.clone(),
            domain: account.domain.clone(),
            suspended: account.suspended,
            owner: account.owner.clone(),
            action: Action::Error,
            error: None,
        };
        match outcome {
            Err(why) => entry.error = Some(why),
            Ok(valid) if valid.exists => entry.action = Action::Exists,
            Ok(_) if !apply => entry.action = Action::Create,
            Ok(valid) => {
                let created = create(db, actor, server_id, account, &valid, &mut clients).await;
                match created {
                    Ok(service_id) => {
                        entry.action = Action::Create;
                        report.created += 1;
                        last_created = Some(service_id);
                    }
                    Err(why) => entry.error = Some(why),
                }
            }
        }
        report.accounts.push(entry);
    }
    if let Some(service_id) = last_created {
        // One push of the server covers every service created.
        report.change = Some(
            db.enqueue_change(
                &Change::ServiceChanged {
                    service_id,
                    servers: vec![server_id],
                },
                actor.admin_id,
            )
            .await?,
        );
    }
    Ok(report)
}

/// What the accounts of one import share: the clients made so far (and those of existing
/// services), and who owns whom.
struct Clients<'a> {
    /// Panel user → client: existing services' user names, then the clients created here.
    by_user: HashMap<String, i64>,
    /// Each listed account by user name (an owner's own details).
    listed: HashMap<&'a str, &'a PanelAccount>,
    /// The user names that own other listed accounts.
    owners: HashSet<&'a str>,
}

/// Create one account's service, and its client unless its owner (or, for an owner, its own
/// earlier imported account) has one; the service's id, or the reason for that account's error.
async fn create(
    db: &Db,
    actor: &Actor,
    server_id: i64,
    account: &PanelAccount,
    valid: &Valid,
    clients: &mut Clients<'_>,
) -> Result<i64, String> {
    let owner = account
        .owner
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty());
    // The panel user whose client this account belongs to.
    let key = owner.unwrap_or(valid.username.as_str());
    let client_id = match clients.by_user.get(key).copied() {
        Some(id) => id,
        None => {
            // The key's own listed account gives the client's details where it is listed.
            let own = clients.listed.get(key).copied();
            let domain = own
                .map(|a| a.domain.trim())
                .filter(|d| !d.is_empty())
                .unwrap_or(valid.domain.as_str());
            let name = if owner.is_some() || clients.owners.contains(key) {
                key
            } else {
                domain
            };
            let new = NewClient {
                name: Name::parse(name).map_err(|why| format!("client name: {why}"))?,
                email: client_email(own.and_then(|a| a.email.as_deref()), key, domain)
                    .map_err(|why| format!("client e-mail: {why}"))?,
                status: ClientStatus::Active,
                allow_sso: true,
            };
            let client = db
                .create_client(actor, &new)
                .await
                .map_err(|e| format!("creating the client failed: {e}"))?;
            clients.by_user.insert(key.to_owned(), client.id);
            client.id
        }
    };
    let (service, _) = db
        .create_service(
            actor,
            &NewService {
                client_id,
                server_id,
                username: valid.username.clone(),
                domain: valid.domain.clone(),
                status: if account.suspended {
                    ServiceStatus::Suspended
                } else {
                    ServiceStatus::Active
                },
            },
            |_| None,
        )
        .await
        .map_err(|e| format!("creating the service failed: {e}"))?;
    Ok(service.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(username: &str, domain: &str) -> PanelAccount {
        PanelAccount {
            username: username.into(),
            domain: domain.into(),
            suspended: false,
            email: None,
            owner: None,
        }
    }

    #[test]
    fn bad_and_partial_entries_are_their_own_errors() {
        let listed = [
            account("bob", "bob.example"),
            account("", "nouser.example"),
            account("twice", "a.example"),
            account("twice", "b.example"),
            account("bad name!", "c.example"),
            account("nodomain", "not a domain"),
            account("old", "old.example"),
        ];
        let existing: HashSet<&str> = ["old"].into_iter().collect();
        let checked = check(&listed, &existing);
        let verdicts: Vec<Result<bool, &str>> = checked
            .iter()
            .map(|c| c.outcome.as_ref().map(|v| v.exists).map_err(String::as_str))
            .collect();
        assert_eq!(verdicts[0], Ok(false));
        assert!(verdicts[1].unwrap_err().contains("without a user name"));
        assert!(verdicts[2].unwrap_err().contains("more than once"));
        assert!(verdicts[3].unwrap_err().contains("more than once"));
        assert!(verdicts[4].unwrap_err().starts_with("user name"));
        assert!(verdicts[5].unwrap_err().starts_with("domain"));
        assert_eq!(verdicts[6], Ok(true));
    }

    #[test]
    fn client_emails_fall_back_to_the_domain_mailbox() {
        assert_eq!(
            client_email(Some("Owner@Example.com"), "bob", "bob.example")
                .unwrap()
                .as_str(),
            "owner@example.com"
        );
        for contact in [None, Some("*unknown*")] {
            assert_eq!(
                client_email(contact, "bob", "bob.example")
                    .unwrap()
                    .as_str(),
                "bob@bob.example"
            );
        }
    }
}
