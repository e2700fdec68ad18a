//! The plugin's operations over any [`Transport`]: what the component runs, and what the native
//! tests drive against a scripted panel.
//!
//! A provisioning call costs three packets however many accounts it carries (up to the plugin's
//! operation limit per packet): the customers by login, Panelink's buttons of each customer, then
//! the deletions and creations. Every operation answers for itself, so one account's error (an
//! unknown customer, say) is that account's result and the others go on.

use std::collections::HashMap;

use panelink_whm::api::{HttpError, HttpResponse, validate_server};
use panelink_whm::links::{LINKS, app_name, scope_of_app};
use panelink_whm::plan::{EMPTY_USERNAME, empty_username_message, username_missing};
use panelink_xml::Element;

use crate::model::{
    AccountOutcome, AccountWork, LinkTemplate, ListedLink, Operation, OperationResult,
    PanelAccount, PluginError, Server, Support,
};
use crate::packet::{self, OperationReply, Packet, errcode, id_of, status, text_of};
use crate::plan::{self, Existing, our_scope};

/// The most accounts the host should send in one call.
pub const ACCOUNTS_PER_CALL: u32 = 100;
/// The most operations this plugin puts in one packet.
pub const OPERATIONS_PER_REQUEST: u32 = 500;
/// The oldest Plesk release with custom buttons in the XML API.
pub const MIN_PLESK: &str = "11.0";

/// What the logic needs from its surroundings: the host's `http` and `log` imports in the
/// component, a scripted panel in tests.
pub trait Transport {
    /// POSTs an XML packet to `url` (`Content-Type: text/xml`). The host adds the server's
    /// credentials.
    fn post_xml(&mut self, url: &str, body: Vec<u8>) -> Result<HttpResponse, HttpError>;

    /// Writes a debug line to the host's log. Never given URLs of buttons (they are bearer
    /// links) or other secrets.
    fn debug(&mut self, message: &str);
}

fn send<T: Transport>(
    transport: &mut T,
    server: &Server,
    body: Vec<u8>,
) -> Result<Vec<OperationReply>, PluginError> {
    let response = transport
        .post_xml(&packet::endpoint(server), body)
        .map_err(|e| match e {
            HttpError::Timeout => PluginError::Transient("the panel did not answer in time".into()),
            HttpError::Connection(m) => PluginError::Transient(m),
            HttpError::TooLarge(cap) => {
                PluginError::Panel(format!("the panel's answer is larger than {cap} bytes"))
            }
            HttpError::Invalid(m) => PluginError::InvalidInput(m),
        })?;
    packet::read_reply(&response)
}

fn numbers(version: &str) -> Vec<u32> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether dotted version `a` ≥ `b` (missing parts are 0; anything after the numbers ignored).
#[must_use]
pub fn version_at_least(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (numbers(a), numbers(b));
    if a.is_empty() {
        return false;
    }
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    a >= b
}

/// Whether the server can take Panelink's custom buttons: it accepts protocol
/// [`packet::PROTOCOL`] (custom buttons) and runs Plesk [`MIN_PLESK`] or later. One packet:
/// `get_protos` and `get/stat`.
///
/// # Errors
/// `transient` for transport failures and HTTP 5xx; `panel` for refusals (authentication, …).
pub fn check_server<T: Transport>(
    transport: &mut T,
    server: &Server,
) -> Result<Support, PluginError> {
    validate_server(server)?;
    let replies = match send(transport, server, packet::check_packet()) {
        Ok(replies) => replies,
        Err(PluginError::Unsupported(why)) => {
            return Ok(Support {
                supported: false,
                detail: format!(
                    "Plesk {MIN_PLESK} or later (XML API {}) is required for Application Links; \
                     the server refused that protocol: {why}",
                    packet::PROTOCOL
                ),
            });
        }
        Err(e) => return Err(e),
    };
    let mut protos = Vec::new();
    let mut version = String::new();
    for reply in &replies {
        for result in &reply.results {
            status(result).map_err(|e| PluginError::Panel(format!("{}: {e}", reply.operation)))?;
            match reply.operation.as_str() {
                "get_protos" => {
                    if let Some(list) = result.child("protos") {
                        protos.extend(list.children_named("proto").map(|p| p.trimmed().to_owned()));
                    }
                }
                "get" => {
                    if let Some(v) = result.child("stat").and_then(|s| s.child("version")) {
                        version = text_of(v, "plesk_version").to_owned();
                    }
                }
                _ => {}
            }
        }
    }
    let running = if version.is_empty() {
        "an unknown Plesk version".to_owned()
    } else {
        format!("Plesk {version}")
    };
    if !protos.iter().any(|p| p == packet::PROTOCOL) {
        return Ok(Support {
            supported: false,
            detail: format!(
                "XML API {} (custom buttons, Plesk {MIN_PLESK}) is required; this server runs \
                 {running}.",
                packet::PROTOCOL
            ),
        });
    }
    if !version_at_least(&version, MIN_PLESK) {
        return Ok(Support {
            supported: false,
            detail: format!("Plesk {MIN_PLESK} or later is required; this server runs {running}."),
        });
    }
    Ok(Support {
        supported: true,
        detail: format!(
            "Application Links are supported as custom buttons ({running}, XML API {}).",
            packet::PROTOCOL
        ),
    })
}

/// The customers of these logins: login → id, or the panel's error for that login.
fn resolve<T: Transport>(
    transport: &mut T,
    server: &Server,
    logins: &[&str],
) -> Result<HashMap<String, Result<u32, String>>, PluginError> {
    let mut found: HashMap<String, Result<u32, String>> = HashMap::new();
    if logins.is_empty() {
        return Ok(found);
    }
    let mut p = Packet::new();
    packet::customers(&mut p, logins);
    let replies = send(transport, server, p.finish())?;
    let reply = replies
        .first()
        .ok_or_else(|| PluginError::Panel("the panel did not answer the customer lookup".into()))?;
    for result in &reply.results {
        let login = match text_of(result, "filter-id") {
            "" => result
                .child("data")
                .and_then(|d| d.child("gen_info"))
                .map_or("", |g| text_of(g, "login")),
            login => login,
        };
        if login.is_empty() {
            continue;
        }
        let verdict = status(result).and_then(|()| {
            id_of(result).ok_or_else(|| "the panel answered no customer id".to_owned())
        });
        found.entry(login.to_owned()).or_insert(verdict);
    }
    for login in logins {
        found
            .entry((*login).to_owned())
            .or_insert_with(|| Err(format!("There is no customer with the login “{login}”.")));
    }
    Ok(found)
}

/// Panelink's buttons on each customer (by id), or the panel's error for that customer.
fn buttons<T: Transport>(
    transport: &mut T,
    server: &Server,
    prefix: &str,
    customer_ids: &[u32],
) -> Result<HashMap<u32, Result<Vec<Existing>, String>>, PluginError> {
    let mut found = HashMap::new();
    for chunk in customer_ids.chunks(OPERATIONS_PER_REQUEST as usize) {
        let replies = send(transport, server, packet::buttons_packet(chunk))?;
        for (n, id) in chunk.iter().enumerate() {
            let verdict = match replies.get(n) {
                None => Err("the panel did not answer the custom-button lookup".to_owned()),
                Some(reply) => ours(reply, prefix, *id),
            };
            found.insert(*id, verdict);
        }
    }
    Ok(found)
}

/// Panelink's buttons in a `get-custombutton` answer for customer `customer_id`.
fn ours(reply: &OperationReply, prefix: &str, customer_id: u32) -> Result<Vec<Existing>, String> {
    let mut existing = Vec::new();
    for result in &reply.results {
        status(result)?;
        let Some(id) = id_of(result) else { continue };
        // Defensive: only buttons the answer says this customer owns.
        let owner = result.child("owner").map(|o| text_of(o, "customer-id"));
        if owner.is_some_and(|o| o != customer_id.to_string()) {
            continue;
        }
        let help = result
            .child("properties")
            .map_or("", |p| p.child("conhelp").map_or("", |u| u.text.as_str()));
        if let Some(scope) = our_scope(help, prefix) {
            existing.push(Existing { id, scope });
        }
    }
    Ok(existing)
}

/// One operation of a changes packet, and whose it is.
#[derive(Debug)]
enum Slot {
    Delete {
        account: usize,
        buttons: Vec<Existing>,
    },
    Create {
        account: usize,
        scope: &'static str,
    },
}

/// Errors per button of a `delete-custombutton` answer: a button already gone (1013) counts as
/// deleted. Results are matched by `id`; when the answer carries no ids its verdict applies to
/// every button.
fn delete_errors(reply: Option<&OperationReply>, buttons: &[Existing]) -> Vec<(Existing, String)> {
    let Some(reply) = reply else {
        return buttons
            .iter()
            .map(|b| (*b, "the panel did not answer the deletion".to_owned()))
            .collect();
    };
    let verdict = |result: &Element| match status(result) {
        Err(_) if errcode(result) == "1013" => Ok(()),
        other => other,
    };
    let by_id: HashMap<u32, Result<(), String>> = reply
        .results
        .iter()
        .filter_map(|r| id_of(r).map(|id| (id, verdict(r))))
        .collect();
    let overall = reply
        .results
        .iter()
        .map(verdict)
        .find(Result::is_err)
        .unwrap_or(Ok(()));
    buttons
        .iter()
        .filter_map(|b| {
            let outcome = by_id.get(&b.id).cloned().unwrap_or_else(|| overall.clone());
            outcome.err().map(|e| (*b, e))
        })
        .collect()
}

/// Sends the slots' operations, in order, at most [`OPERATIONS_PER_REQUEST`] a packet.
fn run_changes<T: Transport>(
    transport: &mut T,
    server: &Server,
    what: &str,
    slots: &[Slot],
    creates: &HashMap<(usize, &'static str), packet::NewButton>,
) -> Result<Vec<Option<OperationReply>>, PluginError> {
    let mut replies = Vec::with_capacity(slots.len());
    let chunks: Vec<&[Slot]> = slots.chunks(OPERATIONS_PER_REQUEST as usize).collect();
    for (n, chunk) in chunks.iter().enumerate() {
        let mut p = Packet::new();
        p.open("ui");
        for slot in *chunk {
            match slot {
                Slot::Delete { buttons, .. } => {
                    let ids: Vec<u32> = buttons.iter().map(|b| b.id).collect();
                    packet::delete_buttons(&mut p, &ids);
                }
                Slot::Create { account, scope } => {
                    if let Some(button) = creates.get(&(*account, *scope)) {
                        packet::create_button(&mut p, button);
                    }
                }
            }
        }
        p.close("ui");
        transport.debug(&format!(
            "{what}: sending packet {} of {} to {}: {} custom-button operations",
            n + 1,
            chunks.len(),
            server.hostname,
            p.operations()
        ));
        let mut answered = send(transport, server, p.finish())?.into_iter();
        replies.extend(chunk.iter().map(|_| answered.next()));
    }
    Ok(replies)
}

fn account_error(op: Operation, error: String) -> Vec<OperationResult> {
    vec![OperationResult {
        op,
        error: Some(error),
    }]
}

/// Brings a batch of accounts to the given links: per account, Panelink's buttons of the scopes
/// to create or remove are deleted and one button per link created. One outcome per account, in
/// input order; an account-wide problem (no such customer) is one result with the panel's text.
///
/// # Errors
/// `invalid-input` for unusable input (nothing is sent then); `transient`/`panel`/`unsupported`
/// when a packet as a whole fails.
pub fn provision<T: Transport>(
    transport: &mut T,
    server: &Server,
    prefix: &str,
    templates: &[LinkTemplate],
    accounts: &[AccountWork],
) -> Result<Vec<AccountOutcome>, PluginError> {
    validate_server(server)?;
    plan::validate(prefix, accounts)?;
    let logins: Vec<&str> = unique(accounts.iter().map(|a| a.username.as_str()));
    let customers = resolve(transport, server, &logins)?;
    let ids: Vec<u32> = unique_ids(customers.values());
    let existing = buttons(transport, server, prefix, &ids)?;

    let mut outcomes: Vec<AccountOutcome> = Vec::with_capacity(accounts.len());
    let mut slots = Vec::new();
    let mut creates = HashMap::new();
    for (n, account) in accounts.iter().enumerate() {
        let mut outcome = AccountOutcome {
            username: account.username.clone(),
            results: Vec::new(),
        };
        let target = if username_missing(&account.username) {
            Err(empty_username_message(&account.domain))
        } else {
            customers
                .get(&account.username)
                .cloned()
                .unwrap_or_else(|| Err("the customer was not looked up".to_owned()))
                .and_then(|id| {
                    existing
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| Ok(Vec::new()))
                        .map(|e| (id, e))
                })
        };
        match target {
            Err(error) => outcome.results = account_error(Operation::EnsureGroup, error),
            Ok((id, found)) => {
                let plan = plan::plan_account(prefix, templates, account, id, &found);
                if !plan.deletes.is_empty() {
                    slots.push(Slot::Delete {
                        account: n,
                        buttons: plan.deletes,
                    });
                }
                for (scope, button) in plan.creates {
                    slots.push(Slot::Create { account: n, scope });
                    creates.insert((n, scope), button);
                }
            }
        }
        outcomes.push(outcome);
    }
    let replies = run_changes(transport, server, "provision", &slots, &creates)?;

    // Errors per (account, scope), from deletions and creations.
    let mut errors: HashMap<(usize, &'static str), String> = HashMap::new();
    for (slot, reply) in slots.iter().zip(&replies) {
        match slot {
            Slot::Delete { account, buttons } => {
                for (button, error) in delete_errors(reply.as_ref(), buttons) {
                    errors.entry((*account, button.scope)).or_insert(error);
                }
            }
            Slot::Create { account, scope } => {
                let verdict = match reply.as_ref().and_then(|r| r.results.first()) {
                    None => Err("the panel did not answer the creation".to_owned()),
                    Some(result) => status(result),
                };
                if let Err(error) = verdict {
                    errors.entry((*account, *scope)).or_insert(error);
                }
            }
        }
    }
    for (n, (account, outcome)) in accounts.iter().zip(&mut outcomes).enumerate() {
        if !outcome.results.is_empty() {
            continue;
        }
        let error_of = |scope: &str, templates: Option<&[LinkTemplate]>| {
            plan::link_error(scope, templates).or_else(|| {
                LINKS
                    .iter()
                    .find(|l| l.scope == scope)
                    .and_then(|l| errors.get(&(n, l.scope)).cloned())
            })
        };
        if account.ensure_group {
            outcome.results.push(OperationResult {
                op: Operation::EnsureGroup,
                error: None,
            });
        }
        for scope in &account.links {
            outcome.results.push(OperationResult {
                op: Operation::UpsertLink(scope.clone()),
                error: error_of(scope, Some(templates)),
            });
        }
        for scope in &account.remove {
            outcome.results.push(OperationResult {
                op: Operation::RemoveLink(scope.clone()),
                error: error_of(scope, None),
            });
        }
    }
    Ok(outcomes)
}

/// Removes every button of Panelink's from a batch of accounts. Per account: one result per
/// scope of the plugin (`remove-link`) and `remove-group` (Plesk has no group: nothing to do).
///
/// # Errors
/// As [`provision`].
pub fn deprovision<T: Transport>(
    transport: &mut T,
    server: &Server,
    prefix: &str,
    usernames: &[String],
) -> Result<Vec<AccountOutcome>, PluginError> {
    validate_server(server)?;
    plan::validate_prefix(prefix)?;
    let logins = unique(usernames.iter().map(String::as_str));
    let customers = resolve(transport, server, &logins)?;
    let ids = unique_ids(customers.values());
    let existing = buttons(transport, server, prefix, &ids)?;
    let mut outcomes = Vec::with_capacity(usernames.len());
    let mut slots = Vec::new();
    for (n, username) in usernames.iter().enumerate() {
        let target = if username_missing(username) {
            Err(EMPTY_USERNAME.to_owned())
        } else {
            customers
                .get(username)
                .cloned()
                .unwrap_or_else(|| Err("the customer was not looked up".to_owned()))
                .and_then(|id| existing.get(&id).cloned().unwrap_or_else(|| Ok(Vec::new())))
        };
        let results = match target {
            Err(error) => account_error(Operation::RemoveGroup, error),
            Ok(found) => {
                if !found.is_empty() {
                    slots.push(Slot::Delete {
                        account: n,
                        buttons: found,
                    });
                }
                Vec::new()
            }
        };
        outcomes.push(AccountOutcome {
            username: username.clone(),
            results,
        });
    }
    let replies = run_changes(transport, server, "deprovision", &slots, &HashMap::new())?;
    let mut errors: HashMap<(usize, &'static str), String> = HashMap::new();
    for (slot, reply) in slots.iter().zip(&replies) {
        if let Slot::Delete { account, buttons } = slot {
            for (button, error) in delete_errors(reply.as_ref(), buttons) {
                errors.entry((*account, button.scope)).or_insert(error);
            }
        }
    }
    for (n, outcome) in outcomes.iter_mut().enumerate() {
        if !outcome.results.is_empty() {
            continue;
        }
        outcome.results = LINKS
            .iter()
            .map(|l| OperationResult {
                op: Operation::RemoveLink(l.scope.to_owned()),
                error: errors.get(&(n, l.scope)).cloned(),
            })
            .chain(std::iter::once(OperationResult {
                op: Operation::RemoveGroup,
                error: None,
            }))
            .collect();
    }
    Ok(outcomes)
}

/// The buttons of Panelink's on one customer, for drift checks.
///
/// # Errors
/// `panel` with the panel's text when the customer cannot be found; as [`provision`] otherwise.
pub fn list_links<T: Transport>(
    transport: &mut T,
    server: &Server,
    prefix: &str,
    username: &str,
) -> Result<Vec<ListedLink>, PluginError> {
    validate_server(server)?;
    plan::validate_prefix(prefix)?;
    if username_missing(username) {
        return Err(PluginError::InvalidInput(EMPTY_USERNAME.to_owned()));
    }
    let id = resolve(transport, server, &[username])?
        .remove(username)
        .unwrap_or_else(|| Err("the customer was not looked up".to_owned()))
        .map_err(PluginError::Panel)?;
    let found = buttons(transport, server, prefix, &[id])?
        .remove(&id)
        .unwrap_or_else(|| Ok(Vec::new()))
        .map_err(PluginError::Panel)?;
    Ok(found
        .into_iter()
        .map(|e| {
            let app = app_name(prefix, e.scope);
            let scope = scope_of_app(prefix, &app).map(str::to_owned);
            ListedLink { app, scope }
        })
        .collect())
}

/// The customers on the server, each with its first subscription's domain: one packet.
///
/// # Errors
/// As [`provision`].
pub fn list_accounts<T: Transport>(
    transport: &mut T,
    server: &Server,
) -> Result<Vec<PanelAccount>, PluginError> {
    validate_server(server)?;
    let mut p = Packet::new();
    packet::customers(&mut p, &[]);
    packet::all_subscriptions(&mut p);
    let replies = send(transport, server, p.finish())?;
    let results = |operator: &'static str| {
        replies
            .iter()
            .filter(move |r| r.operator == operator)
            .flat_map(|r| r.results.iter())
            .filter(|r| status(r).is_ok())
    };
    let gen_info = |r: &Element| r.child("data").and_then(|d| d.child("gen_info")).cloned();
    // The first subscription (lowest id) of each owner.
    let mut domains: HashMap<String, (u32, String)> = HashMap::new();
    for result in results("webspace") {
        let (Some(id), Some(info)) = (id_of(result), gen_info(result)) else {
            continue;
        };
        let owner = text_of(&info, "owner-id").to_owned();
        let name = text_of(&info, "name").to_owned();
        let entry = domains.entry(owner).or_insert((id, name.clone()));
        if id < entry.0 {
            *entry = (id, name);
        }
    }
    let mut accounts = Vec::new();
    for result in results("customer") {
        let (Some(id), Some(info)) = (id_of(result), gen_info(result)) else {
            continue;
        };
        let login = text_of(&info, "login");
        if login.is_empty() {
            continue;
        }
        let owner = match text_of(&info, "owner-login") {
            "" | "admin" => None,
            owner => Some(owner.to_owned()),
        };
        let email = text_of(&info, "email");
        accounts.push(PanelAccount {
            username: login.to_owned(),
            email: email.contains('@').then(|| email.to_owned()),
            domain: domains
                .get(&id.to_string())
                .map(|(_, name)| name.clone())
                .unwrap_or_default(),
            suspended: !matches!(text_of(&info, "status"), "0" | ""),
            owner,
        });
    }
    Ok(accounts)
}

fn unique<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::new();
    names
        .filter(|n| !username_missing(n) && seen.insert(*n))
        .collect()
}

fn unique_ids<'a>(found: impl Iterator<Item = &'a Result<u32, String>>) -> Vec<u32> {
    let mut ids: Vec<u32> = found.filter_map(|r| r.as_ref().ok().copied()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
