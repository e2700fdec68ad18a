//! The plugin operations, over any [`Transport`]: what the cPanel and WP Squared components run.

use serde_json::Value;

use crate::api::{Transport, Whm, validate_server};
use crate::flavor::{Flavor, ProfileRule};
use crate::links;
use crate::model::{
    AccountOutcome, AccountWork, LinkTemplate, ListedLink, PanelAccount, PluginError, Server,
    Settings, Support,
};
use crate::plan::{self, Batch};

/// The detail of a server whose token cannot call `create_integration_link`.
pub const NEEDS_WHM_54: &str = "cPanel & WHM 54 or later is required for Application Links";

/// A JSON scalar as text (`"11.110.0.5"` or `110`); empty when absent.
fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Whether the server supports this flavor's Application Links: `applist` (the token must be
/// able to call `create_integration_link`), `version` (for the detail), then
/// `get_current_profile` against the flavor's profile rule.
///
/// # Errors
/// `transient` for transport failures and HTTP 5xx; `panel` for HTTP 401/403, other refusals and
/// `result: 0` answers, with the panel's reason.
pub fn check_server<T: Transport>(
    transport: &mut T,
    flavor: &Flavor,
    server: &Server,
) -> Result<Support, PluginError> {
    validate_server(server)?;
    let mut whm = Whm::new(transport, server);

    let applist = whm.call("applist", &[])?;
    let supports_links = applist
        .get("app")
        .and_then(Value::as_array)
        .is_some_and(|apps| {
            apps.iter()
                .any(|a| a.as_str() == Some("create_integration_link"))
        });

    let version = text(whm.call("version", &[])?.get("version"));
    let running = if version.is_empty() {
        String::new()
    } else {
        format!("cPanel & WHM {version}")
    };

    if !supports_links {
        let detail = if running.is_empty() {
            format!("{NEEDS_WHM_54}.")
        } else {
            format!("{NEEDS_WHM_54}; this server runs {running}.")
        };
        return Ok(Support {
            supported: false,
            detail,
        });
    }

    let code = text(whm.call("get_current_profile", &[])?.get("code"));
    let shown_code = if code.is_empty() {
        "unknown"
    } else {
        code.as_str()
    };
    let on = if running.is_empty() {
        String::new()
    } else {
        format!(" on {running}")
    };
    if !flavor.profile.accepts(&code) {
        let detail = match flavor.profile {
            ProfileRule::Require(wanted) => format!(
                "{} requires a server with the {wanted} profile; this server's profile is {shown_code}{on}.",
                flavor.name
            ),
            ProfileRule::Refuse(refused) => format!(
                "This server has the {refused} profile{on}, which the {} application does not serve.",
                flavor.name
            ),
        };
        return Ok(Support {
            supported: false,
            detail,
        });
    }
    Ok(Support {
        supported: true,
        detail: format!("Application Links are supported (profile {shown_code}{on})."),
    })
}

/// Sends the batches in order and folds their answers into `outcomes`.
fn run_batches<T: Transport>(
    whm: &mut Whm<'_, T>,
    what: &str,
    batches: Vec<Batch>,
    outcomes: &mut [AccountOutcome],
) -> Result<(), PluginError> {
    let total = batches.len();
    for (n, batch) in batches.into_iter().enumerate() {
        let accounts = batch
            .slots
            .windows(2)
            .filter(|w| w[0].account != w[1].account)
            .count()
            + 1;
        let message = format!(
            "{what}: sending WHM batch {} of {total} to {}: {} commands for {accounts} account(s)",
            n + 1,
            whm.server().hostname,
            batch.slots.len(),
        );
        whm.debug(&message);
        let results = whm.batch(batch.body)?;
        plan::apply_results(outcomes, &batch.slots, &results);
    }
    Ok(())
}

/// Brings `accounts` to the links they name among the call's `templates`, in `batch` requests
/// of at most `settings.max_commands_per_request` commands. One outcome per account, in input
/// order.
///
/// # Errors
/// `invalid-input` for unusable input; `transient` when any request fails at the transport
/// level or with HTTP 5xx (the host retries the whole call; every operation is idempotent);
/// `panel` when the panel refuses a request as a whole.
pub fn provision<T: Transport>(
    transport: &mut T,
    server: &Server,
    settings: &Settings,
    templates: &[LinkTemplate],
    accounts: &[AccountWork],
) -> Result<Vec<AccountOutcome>, PluginError> {
    validate_server(server)?;
    let batches = plan::build_provision_batches(settings, templates, accounts)?;
    let mut outcomes = plan::initial_provision_outcomes(templates, accounts);
    run_batches(
        &mut Whm::new(transport, server),
        "provision",
        batches,
        &mut outcomes,
    )?;
    Ok(outcomes)
}

/// Removes every link of this plugin and the group from each user's account.
///
/// # Errors
/// As [`provision`].
pub fn deprovision<T: Transport>(
    transport: &mut T,
    server: &Server,
    settings: &Settings,
    usernames: &[String],
) -> Result<Vec<AccountOutcome>, PluginError> {
    validate_server(server)?;
    let batches = plan::build_deprovision_batches(settings, usernames)?;
    let mut outcomes = plan::initial_deprovision_outcomes(usernames);
    run_batches(
        &mut Whm::new(transport, server),
        "deprovision",
        batches,
        &mut outcomes,
    )?;
    Ok(outcomes)
}

/// The integration links a user has now (`list_integration_links`), with our scopes mapped back.
///
/// # Errors
/// `invalid-input` for an empty user name; otherwise as [`check_server`].
pub fn list_links<T: Transport>(
    transport: &mut T,
    server: &Server,
    settings: &Settings,
    username: &str,
) -> Result<Vec<ListedLink>, PluginError> {
    validate_server(server)?;
    if plan::username_missing(username) {
        return Err(PluginError::InvalidInput(plan::EMPTY_USERNAME.to_owned()));
    }
    let data = Whm::new(transport, server).call("list_integration_links", &[("user", username)])?;
    let listed = data
        .get("links")
        .and_then(Value::as_array)
        .map(|links| {
            links
                .iter()
                .filter_map(|l| l.get("app").and_then(Value::as_str))
                .map(|app| ListedLink {
                    app: app.to_owned(),
                    scope: links::scope_of_app(&settings.app_prefix, app).map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(listed)
}

/// A JSON value as a flag: `1`, `"1"` or `true` (WHM writes `suspended` as 0 or 1).
fn flag(value: Option<&Value>) -> bool {
    value.is_some_and(crate::api::result_ok)
}

/// The hosting accounts on the server (`listaccts`, only the fields used): user name, main
/// domain, suspended or not, contact e-mail when it looks like an address, and the owner when
/// it is a reseller (WHM names `root` or the account itself otherwise). An entry without a
/// user name is still listed, with an empty one, for the host to report.
///
/// # Errors
/// As [`check_server`]; `panel` when the answer has no account list.
pub fn list_accounts<T: Transport>(
    transport: &mut T,
    server: &Server,
) -> Result<Vec<PanelAccount>, PluginError> {
    validate_server(server)?;
    let data = Whm::new(transport, server).call(
        "listaccts",
        &[("want", "user,domain,suspended,owner,email")],
    )?;
    let Some(accounts) = data.get("acct").and_then(Value::as_array) else {
        return Err(PluginError::Panel(
            "listaccts answered without an account list".to_owned(),
        ));
    };
    Ok(accounts
        .iter()
        .map(|a| {
            let username = text(a.get("user"));
            let owner = text(a.get("owner"));
            let email = text(a.get("email"));
            PanelAccount {
                domain: text(a.get("domain")),
                suspended: flag(a.get("suspended")),
                email: (email.contains('@') && !email.contains(char::is_whitespace))
                    .then_some(email),
                owner: (!owner.is_empty() && owner != "root" && owner != username).then_some(owner),
                username,
            }
        })
        .collect())
}
