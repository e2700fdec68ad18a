//! Pure planning: which buttons are Panelink's, the static link of a button, and per account
//! which buttons to delete and which to create. No I/O; the operations in [`crate::plugin`] send
//! what this decides.
//!
//! A button is Panelink's when its context help (`conhelp`, the tooltip) ends with
//! `(<prefix>_<scope>)` for one of the plugin's scopes (the same app names as the cPanel links);
//! the URL is the host's, with only its placeholders filled in, as the contract asks. Buttons
//! without that marker (the customer's own, another tool's) are never deleted. Plesk has no
//! update operation, so a changed link is its old buttons deleted and a new one created.

use panelink_whm::links::{LINKS, app_name, scope_of_app};

use crate::model::{AccountWork, Credential, LinkTemplate, PluginError};
use crate::packet::NewButton;

/// The longest handle accepted.
const MAX_HANDLE: usize = 256;

/// The URL of a button: the template's URL with every `{service-id}` and `{handle}` replaced by
/// the account's values, nothing else changed.
#[must_use]
pub fn button_url(template: &str, service_id: &str, handle: &str) -> String {
    template
        .replace("{service-id}", service_id)
        .replace("{handle}", handle)
}

/// A button's context help: its label, then the marker `(<app name>)`.
#[must_use]
pub fn conhelp(label: &str, app: &str) -> String {
    format!("{label} ({app})")
}

/// The scope of a button when it is Panelink's: its context help ends with `(<prefix>_<scope>)`.
#[must_use]
pub fn our_scope(conhelp: &str, prefix: &str) -> Option<&'static str> {
    let inner = conhelp.trim_end().strip_suffix(')')?;
    let app = &inner[inner.rfind('(')? + 1..];
    scope_of_app(prefix, app)
}

/// One of Panelink's buttons found on a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    /// The button's id.
    pub id: u32,
    /// The scope it carries.
    pub scope: &'static str,
}

/// The panel work for one account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountPlan {
    /// Buttons to delete first (replaced or removed links), with their scopes.
    pub deletes: Vec<Existing>,
    /// Buttons to create, with their scopes.
    pub creates: Vec<(&'static str, NewButton)>,
}

/// Checks a call's input before anything is sent: the prefix, and every account carries a link
/// handle. (A scope that is not the plugin's or has no template is that operation's error, see
/// [`link_error`].)
///
/// # Errors
/// `invalid-input` naming the first problem.
pub fn validate(prefix: &str, accounts: &[AccountWork]) -> Result<(), PluginError> {
    validate_prefix(prefix)?;
    for account in accounts {
        match &account.credential {
            Credential::LinkHandle(handle)
                if !handle.is_empty()
                    && handle.len() <= MAX_HANDLE
                    && handle.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
                    }) => {}
            Credential::LinkHandle(_) => {
                return Err(PluginError::InvalidInput(
                    "a link handle must be 1-256 URL-safe characters".to_owned(),
                ));
            }
            Credential::Token { .. } => {
                return Err(PluginError::InvalidInput(
                    "this plugin signs in with static links and needs link handles, not tokens"
                        .to_owned(),
                ));
            }
        }
    }
    Ok(())
}

/// Why a scope of an account cannot be worked on: not one of the plugin's, or (for a link to
/// create) no template in the call.
#[must_use]
pub fn link_error(scope: &str, templates: Option<&[LinkTemplate]>) -> Option<String> {
    if !LINKS.iter().any(|l| l.scope == scope) {
        return Some(format!("{scope} is not a link of this plugin."));
    }
    match templates {
        Some(templates) if !templates.iter().any(|t| t.scope == scope) => {
            Some(format!("The call carries no link template for {scope}."))
        }
        _ => None,
    }
}

/// Checks the app-name prefix: letters, digits and `_`, so app names stay plain in a URL.
///
/// # Errors
/// `invalid-input` when it is empty or holds anything else.
pub fn validate_prefix(prefix: &str) -> Result<(), PluginError> {
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(PluginError::InvalidInput(
            "the app prefix must be letters, digits and '_'".to_owned(),
        ));
    }
    Ok(())
}

/// What one (validated) account needs on customer `customer_id`, given Panelink's buttons there:
/// every button of a scope to create or remove is deleted (duplicates too), then one button per
/// link is created from its template (links without a template or not the plugin's are skipped:
/// [`link_error`] reports them).
#[must_use]
pub fn plan_account(
    prefix: &str,
    templates: &[LinkTemplate],
    account: &AccountWork,
    customer_id: u32,
    existing: &[Existing],
) -> AccountPlan {
    let handle = match &account.credential {
        Credential::LinkHandle(h) => h.as_str(),
        Credential::Token { .. } => "",
    };
    let touched = |scope: &str| {
        account
            .links
            .iter()
            .chain(&account.remove)
            .any(|s| s == scope)
    };
    let deletes = existing
        .iter()
        .copied()
        .filter(|e| touched(e.scope))
        .collect();
    let creates = account
        .links
        .iter()
        .filter_map(|scope| {
            let template = templates.iter().find(|t| t.scope == *scope)?;
            let scope = LINKS.iter().find(|l| l.scope == scope)?.scope;
            Some((
                scope,
                NewButton {
                    customer_id,
                    sort_key: template.order,
                    text: template.label.clone(),
                    conhelp: conhelp(&template.label, &app_name(prefix, scope)),
                    url: button_url(&template.url, &account.service_id, handle),
                },
            ))
        })
        .collect();
    AccountPlan { deletes, creates }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(scope: &str, order: u32) -> LinkTemplate {
        LinkTemplate {
            scope: scope.into(),
            label: format!("Label {order}"),
            order,
            token_url: String::new(),
            url: format!("https://billing.example/sso/link/{{handle}}?scope={scope}"),
        }
    }

    fn account(links: &[&str], remove: &[&str]) -> AccountWork {
        AccountWork {
            username: "bob".into(),
            domain: "bob.test".into(),
            service_id: "42".into(),
            credential: Credential::LinkHandle("h4nd-le_1".into()),
            ensure_group: true,
            links: links.iter().map(|s| (*s).to_owned()).collect(),
            remove: remove.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn urls_are_the_templates_and_the_marker_is_in_the_help() {
        assert_eq!(
            button_url(
                "https://b.example/sso/link/{handle}?s={service-id}&t={service-id}",
                "7",
                "abc"
            ),
            "https://b.example/sso/link/abc?s=7&t=7"
        );
        let help = conhelp("Invoices (old)", "PANELINK_clientarea_invoices");
        assert_eq!(help, "Invoices (old) (PANELINK_clientarea_invoices)");
        assert_eq!(our_scope(&help, "PANELINK"), Some("clientarea:invoices"));
        assert_eq!(our_scope(&help, "OTHER"), None);
        for foreign in [
            "",
            "My button",
            "(PANELINK_clientarea_invoices) mine",
            "x (PANELINK_clientarea_nope)",
            "x (PANELINK)",
        ] {
            assert_eq!(our_scope(foreign, "PANELINK"), None, "{foreign}");
        }
    }

    #[test]
    fn input_is_checked_before_anything_is_sent() {
        assert!(validate("PANELINK", &[account(&["clientarea:invoices"], &[])]).is_ok());
        for (prefix, accounts) in [
            ("", vec![account(&[], &[])]),
            ("a-b", vec![account(&[], &[])]),
            ("P", {
                let mut a = account(&[], &[]);
                a.credential = Credential::Token {
                    subscriber_id: "s".into(),
                    secret: "t".into(),
                };
                vec![a]
            }),
            ("P", {
                let mut a = account(&[], &[]);
                a.credential = Credential::LinkHandle("a/b".into());
                vec![a]
            }),
        ] {
            assert!(
                matches!(
                    validate(prefix, &accounts),
                    Err(PluginError::InvalidInput(_))
                ),
                "{prefix} {accounts:?}"
            );
        }
        let templates = [template("clientarea:invoices", 1)];
        assert_eq!(link_error("clientarea:invoices", Some(&templates)), None);
        assert!(link_error("clientarea:tickets", Some(&templates)).is_some());
        assert_eq!(link_error("clientarea:tickets", None), None);
        assert!(link_error("clientarea:nope", None).is_some());
    }

    #[test]
    fn replaced_and_removed_scopes_are_deleted_others_kept() {
        let templates = [
            template("clientarea:invoices", 2),
            template("clientarea:tickets", 1),
        ];
        let existing = [
            Existing {
                id: 1,
                scope: "clientarea:invoices",
            },
            Existing {
                id: 2,
                scope: "clientarea:invoices",
            },
            Existing {
                id: 3,
                scope: "clientarea:emails",
            },
            Existing {
                id: 4,
                scope: "clientarea:profile",
            },
        ];
        let plan = plan_account(
            "P",
            &templates,
            &account(
                &[
                    "clientarea:tickets",
                    "clientarea:invoices",
                    "clientarea:downloads",
                ],
                &["clientarea:emails"],
            ),
            9,
            &existing,
        );
        let deleted: Vec<u32> = plan.deletes.iter().map(|e| e.id).collect();
        assert_eq!(deleted, [1, 2, 3]);
        assert_eq!(plan.creates.len(), 2);
        assert_eq!(plan.creates[0].0, "clientarea:tickets");
        assert_eq!(plan.creates[0].1.sort_key, 1);
        assert_eq!(plan.creates[0].1.customer_id, 9);
        assert_eq!(plan.creates[0].1.conhelp, "Label 1 (P_clientarea_tickets)");
        assert_eq!(
            plan.creates[1].1.url,
            "https://billing.example/sso/link/h4nd-le_1?scope=clientarea:invoices"
        );
    }
}
