//! Turning accounts into WHM commands, packing them into `batch` requests, and mapping the
//! per-command answers back to accounts.

use crate::api::CommandAnswer;
use crate::encode::{FormBody, Part, encoded_params};
use crate::links::{self, LINKS};
use crate::model::{
    AccountOutcome, AccountWork, Credential, LinkTemplate, Operation, OperationResult, PluginError,
    SERVICE_ID_PLACEHOLDER, Settings,
};

/// The text of an operation whose answer is missing from a `batch` response.
pub const NO_RESULT: &str = "no result from panel";

/// Who one command of a batch is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Index of the account in the call's input.
    pub account: usize,
    /// The operation the command performs.
    pub op: Operation,
    /// The WHM function called.
    pub function: &'static str,
}

/// One `batch` request: its form body and, in command order, who each command is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// `api.version=1&command=…&command=…`, ready to POST to `/json-api/batch`.
    pub body: Vec<u8>,
    /// One entry per `command` field, in order.
    pub slots: Vec<Slot>,
}

/// Fills batches of at most `cap` commands, keeping an account's commands together when they fit.
#[derive(Debug)]
struct Packer {
    cap: usize,
    batches: Vec<Batch>,
    body: FormBody,
    slots: Vec<Slot>,
}

impl Packer {
    fn new(max_commands_per_request: u32) -> Result<Self, PluginError> {
        let cap = usize::try_from(max_commands_per_request).unwrap_or(usize::MAX);
        if cap == 0 {
            return Err(PluginError::InvalidInput(
                "max-commands-per-request must be at least 1".to_owned(),
            ));
        }
        Ok(Self {
            cap,
            batches: Vec::new(),
            body: Self::fresh_body(cap),
            slots: Vec::new(),
        })
    }

    fn fresh_body(cap: usize) -> FormBody {
        // A create_integration_link command is roughly 500 bytes on the wire.
        FormBody::with_capacity(cap.min(64) * 512)
    }

    fn flush(&mut self) {
        if self.slots.is_empty() {
            return;
        }
        let body = std::mem::replace(&mut self.body, Self::fresh_body(self.cap));
        self.batches.push(Batch {
            body: body.into_bytes(),
            slots: std::mem::take(&mut self.slots),
        });
    }

    /// Starts an account that will add `count` commands: moves to a fresh batch when the account
    /// fits in one but not in what is left of the current one. An account larger than a whole
    /// batch is split, starting in the current one.
    fn begin_account(&mut self, count: usize) {
        if count <= self.cap && self.slots.len() + count > self.cap {
            self.flush();
        }
    }

    fn push(
        &mut self,
        account: usize,
        op: Operation,
        function: &'static str,
        params: &[(&str, &str)],
    ) {
        if self.slots.len() >= self.cap {
            self.flush();
        }
        self.body.command(function, params);
        self.record(account, op, function);
    }

    /// Like [`Packer::push`], with parameters partly encoded beforehand.
    fn push_parts(
        &mut self,
        account: usize,
        op: Operation,
        function: &'static str,
        parts: &[Part<'_>],
    ) {
        if self.slots.len() >= self.cap {
            self.flush();
        }
        self.body.command_parts(function, parts);
        self.record(account, op, function);
    }

    fn record(&mut self, account: usize, op: Operation, function: &'static str) {
        self.slots.push(Slot {
            account,
            op,
            function,
        });
    }

    fn finish(mut self) -> Vec<Batch> {
        self.flush();
        self.batches
    }
}

/// Whether a user name counts as missing.
#[must_use]
pub fn username_missing(username: &str) -> bool {
    username.trim().is_empty()
}

/// The message for an account without a user name in `provision`.
#[must_use]
pub fn empty_username_message(domain: &str) -> String {
    format!("{domain}: username cannot be empty.")
}

/// The message for an empty user name in `deprovision` (no domain is known there).
pub const EMPTY_USERNAME: &str = "username cannot be empty.";

/// The message for an account whose credential is a link handle: WHM links exchange tokens.
pub const NOT_A_TOKEN: &str =
    "cPanel links sign in by token exchange; the account carries a link handle instead of a token";

/// The message for an account naming a scope the call sent no template for.
#[must_use]
pub fn no_template_message(domain: &str, scope: &str) -> String {
    format!("{domain}: no link template for “{scope}” in this call")
}

/// What is the same for every account of a call about one template: the link, its app name,
/// order and icon, and its URL split around `{service-id}`.
#[derive(Debug)]
struct Resolved<'a> {
    template: &'a LinkTemplate,
    /// `app`, `label` and `implements` of its `create_integration_link` commands, encoded.
    head: Vec<u8>,
    /// `autologin_token_url`, encoded.
    token_url: Vec<u8>,
    /// `base64_png_image`, `group_id` and `order`, encoded.
    tail: Vec<u8>,
    url_parts: Vec<&'a str>,
}

/// Resolves the call's templates once.
///
/// # Errors
/// `invalid-input` when a template's scope is not a link scope of this plugin.
fn resolve<'a>(
    settings: &Settings,
    templates: &'a [LinkTemplate],
) -> Result<Vec<Resolved<'a>>, PluginError> {
    use base64::Engine as _;
    templates
        .iter()
        .map(|t| {
            let Some(link) = links::find(&t.scope) else {
                return Err(PluginError::InvalidInput(format!(
                    "“{}” is not a link scope of this plugin",
                    t.scope
                )));
            };
            let app = links::app_name(&settings.app_prefix, link.scope);
            let icon = base64::engine::general_purpose::STANDARD.encode(link.icon);
            Ok(Resolved {
                template: t,
                head: encoded_params(&[
                    ("app", &app),
                    ("label", &t.label),
                    ("implements", links::implements_for(link, &app)),
                ]),
                token_url: encoded_params(&[("autologin_token_url", &t.token_url)]),
                tail: encoded_params(&[
                    ("base64_png_image", &icon),
                    ("group_id", &settings.group_id),
                    ("order", &t.order.to_string()),
                ]),
                url_parts: t.url.split(SERVICE_ID_PLACEHOLDER).collect(),
            })
        })
        .collect()
}

/// The resolved template of a scope.
fn template_of<'r, 'a>(resolved: &'r [Resolved<'a>], scope: &str) -> Option<&'r Resolved<'a>> {
    resolved.iter().find(|r| r.template.scope == scope)
}

/// The token credential of an account, `None` for a link handle.
fn token_of(account: &AccountWork) -> Option<(&str, &str)> {
    match &account.credential {
        Credential::Token {
            subscriber_id,
            secret,
        } => Some((subscriber_id, secret)),
        Credential::LinkHandle(_) => None,
    }
}

/// Builds the WHM `batch` requests that provision `accounts` from the call's `templates`: per
/// account, in order, `create_integration_group` (when `ensure_group`), one
/// `create_integration_link` per link it names (the template's label, order, token URL and
/// icon, its URL with the account's service id), then one `remove_integration_link` per
/// removal. Accounts without a user name or a token get no commands, nor do links naming a
/// scope without a template ([`initial_provision_outcomes`] reports them).
///
/// This is the function the plugins use; it is pure, so it also serves native benchmarks.
///
/// # Errors
/// `invalid-input` when `max_commands_per_request` is 0 or a template's scope is not one of
/// ours.
pub fn build_provision_batches(
    settings: &Settings,
    templates: &[LinkTemplate],
    accounts: &[AccountWork],
) -> Result<Vec<Batch>, PluginError> {
    let mut packer = Packer::new(settings.max_commands_per_request)?;
    let resolved = resolve(settings, templates)?;
    let prefix = settings.app_prefix.as_str();
    let mut app = String::new();
    let mut url = String::new();
    for (index, account) in accounts.iter().enumerate() {
        if username_missing(&account.username) {
            continue;
        }
        let Some((subscriber_id, secret)) = token_of(account) else {
            continue;
        };
        let user = account.username.as_str();
        packer.begin_account(
            usize::from(account.ensure_group) + account.links.len() + account.remove.len(),
        );
        if account.ensure_group {
            packer.push(
                index,
                Operation::EnsureGroup,
                "create_integration_group",
                &[
                    ("user", user),
                    ("group_id", &settings.group_id),
                    ("label", &settings.group_label),
                    ("order", "1"),
                ],
            );
        }
        for scope in &account.links {
            let Some(r) = template_of(&resolved, scope) else {
                continue;
            };
            url.clear();
            for (i, part) in r.url_parts.iter().enumerate() {
                if i > 0 {
                    url.push_str(&account.service_id);
                }
                url.push_str(part);
            }
            packer.push_parts(
                index,
                Operation::UpsertLink(scope.clone()),
                "create_integration_link",
                &[
                    Part::Param("user", user),
                    Part::Encoded(&r.head),
                    Part::Param("subscriber_unique_id", subscriber_id),
                    Part::Param("token", secret),
                    Part::Encoded(&r.token_url),
                    Part::Param("url", &url),
                    Part::Encoded(&r.tail),
                ],
            );
        }
        for scope in &account.remove {
            app.clear();
            links::push_app_name(&mut app, prefix, scope);
            packer.push(
                index,
                Operation::RemoveLink(scope.clone()),
                "remove_integration_link",
                &[("user", user), ("app", &app)],
            );
        }
    }
    Ok(packer.finish())
}

/// Builds the WHM `batch` requests that deprovision `usernames`: per user, one
/// `remove_integration_link` for each of the 14 links, then `remove_integration_group`.
///
/// # Errors
/// `invalid-input` when `max_commands_per_request` is 0.
pub fn build_deprovision_batches(
    settings: &Settings,
    usernames: &[String],
) -> Result<Vec<Batch>, PluginError> {
    let mut packer = Packer::new(settings.max_commands_per_request)?;
    let mut app = String::new();
    for (index, user) in usernames.iter().enumerate() {
        if username_missing(user) {
            continue;
        }
        packer.begin_account(LINKS.len() + 1);
        for link in &LINKS {
            app.clear();
            links::push_app_name(&mut app, &settings.app_prefix, link.scope);
            packer.push(
                index,
                Operation::RemoveLink(link.scope.to_owned()),
                "remove_integration_link",
                &[("user", user), ("app", &app)],
            );
        }
        packer.push(
            index,
            Operation::RemoveGroup,
            "remove_integration_group",
            &[("user", user), ("group_id", &settings.group_id)],
        );
    }
    Ok(packer.finish())
}

/// The outcomes before any panel call: one per account, empty, except the one-result error of
/// an account without a user name or without a token (reported as its group operation), and
/// an error for each link an account names that the call has no template for.
#[must_use]
pub fn initial_provision_outcomes(
    templates: &[LinkTemplate],
    accounts: &[AccountWork],
) -> Vec<AccountOutcome> {
    accounts
        .iter()
        .map(|a| {
            let whole = if username_missing(&a.username) {
                Some(empty_username_message(&a.domain))
            } else if token_of(a).is_none() {
                Some(NOT_A_TOKEN.to_owned())
            } else {
                None
            };
            let results = match whole {
                Some(message) => vec![OperationResult {
                    op: Operation::EnsureGroup,
                    error: Some(message),
                }],
                None => a
                    .links
                    .iter()
                    .filter(|scope| !templates.iter().any(|t| &t.scope == *scope))
                    .map(|scope| OperationResult {
                        op: Operation::UpsertLink(scope.clone()),
                        error: Some(no_template_message(&a.domain, scope)),
                    })
                    .collect(),
            };
            AccountOutcome {
                username: a.username.clone(),
                results,
            }
        })
        .collect()
}

/// Like [`initial_provision_outcomes`], for `deprovision`.
#[must_use]
pub fn initial_deprovision_outcomes(usernames: &[String]) -> Vec<AccountOutcome> {
    usernames
        .iter()
        .map(|u| AccountOutcome {
            username: u.clone(),
            results: if username_missing(u) {
                vec![OperationResult {
                    op: Operation::RemoveGroup,
                    error: Some(EMPTY_USERNAME.to_owned()),
                }]
            } else {
                Vec::new()
            },
        })
        .collect()
}

/// Appends the answers of one batch to the accounts' outcomes: `results[i]` answers `slots[i]`;
/// a missing answer is the error [`NO_RESULT`], a failed one carries the panel's reason unchanged.
pub fn apply_results(outcomes: &mut [AccountOutcome], slots: &[Slot], results: &[CommandAnswer]) {
    for (i, slot) in slots.iter().enumerate() {
        let error = match results.get(i) {
            Some(answer) => answer.error(slot.function),
            None => Some(NO_RESULT.to_owned()),
        };
        if let Some(outcome) = outcomes.get_mut(slot.account) {
            outcome.results.push(OperationResult {
                op: slot.op.clone(),
                error,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Credential;
    use serde_json::json;

    fn settings(cap: u32) -> Settings {
        Settings {
            app_prefix: "PANELINK".into(),
            group_id: "panelink".into(),
            group_label: "Billing & Support".into(),
            max_commands_per_request: cap,
        }
    }

    /// The call's templates: all 14 links, default labels, in order.
    fn templates() -> Vec<LinkTemplate> {
        LINKS
            .iter()
            .enumerate()
            .map(|(i, l)| LinkTemplate {
                scope: l.scope.into(),
                label: l.default_label.into(),
                order: u32::try_from(i + 1).unwrap(),
                token_url: "https://billing.example/applinks/token?x=1&y=2".into(),
                url: format!(
                    "https://billing.example{}",
                    l.destination
                        .replace("{service_id}", SERVICE_ID_PLACEHOLDER)
                ),
            })
            .collect()
    }

    fn account(user: &str, links: usize, remove: &[&str]) -> AccountWork {
        AccountWork {
            username: user.into(),
            domain: format!("{user}.example"),
            service_id: "7".into(),
            credential: Credential::Token {
                subscriber_id: format!("sub-{user}"),
                secret: "s3cr&t=+".into(),
            },
            ensure_group: true,
            links: LINKS.iter().take(links).map(|l| l.scope.into()).collect(),
            remove: remove.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Decodes a batch body back into `(function, [(name, value)])` per command.
    fn decode(body: &[u8]) -> Vec<(String, Vec<(String, String)>)> {
        let mut fields = form_urlencoded::parse(body);
        assert_eq!(
            fields.next().map(|(k, v)| (k.into_owned(), v.into_owned())),
            Some(("api.version".into(), "1".into()))
        );
        fields
            .map(|(name, value)| {
                assert_eq!(name, "command");
                assert_ne!(name, "abort_on_error");
                let (function, query) = value.split_once('?').unwrap_or((&value, ""));
                (
                    function.to_owned(),
                    form_urlencoded::parse(query.as_bytes())
                        .into_owned()
                        .collect(),
                )
            })
            .collect()
    }

    fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    #[test]
    fn provision_commands_decode_back() {
        let accounts = [account("bob", 2, &["clientarea:invoices"])];
        let batches = build_provision_batches(&settings(100), &templates(), &accounts).unwrap();
        assert_eq!(batches.len(), 1);
        let commands = decode(&batches[0].body);
        let functions: Vec<&str> = commands.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            functions,
            [
                "create_integration_group",
                "create_integration_link",
                "create_integration_link",
                "remove_integration_link"
            ]
        );
        let group = &commands[0].1;
        assert_eq!(
            group,
            &[
                ("user", "bob"),
                ("group_id", "panelink"),
                ("label", "Billing & Support"),
                ("order", "1")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let upgrade = &commands[1].1;
        assert_eq!(param(upgrade, "user"), "bob");
        assert_eq!(param(upgrade, "app"), "PANELINK_clientarea_upgrade");
        assert_eq!(param(upgrade, "label"), "Upgrade/Downgrade");
        assert_eq!(param(upgrade, "implements"), "upgrade");
        assert_eq!(param(upgrade, "subscriber_unique_id"), "sub-bob");
        assert_eq!(param(upgrade, "token"), "s3cr&t=+");
        assert_eq!(
            param(upgrade, "autologin_token_url"),
            "https://billing.example/applinks/token?x=1&y=2"
        );
        assert_eq!(
            param(upgrade, "url"),
            "https://billing.example/upgrade.php?type=package&id=7"
        );
        {
            use base64::Engine as _;
            let icon = base64::engine::general_purpose::STANDARD
                .decode(param(upgrade, "base64_png_image"))
                .unwrap();
            assert_eq!(icon, LINKS[0].icon);
        }
        assert_eq!(param(upgrade, "group_id"), "panelink");
        assert_eq!(param(upgrade, "order"), "1");
        let register = &commands[2].1;
        assert_eq!(
            param(register, "app"),
            "PANELINK_clientarea_shopping_cart_domain_register"
        );
        assert_eq!(
            param(register, "implements"),
            "PANELINK_clientarea_shopping_cart_domain_register"
        );
        assert_eq!(param(register, "order"), "2");
        assert_eq!(
            &commands[3].1,
            &[("user", "bob"), ("app", "PANELINK_clientarea_invoices")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let ops: Vec<Operation> = batches[0].slots.iter().map(|s| s.op.clone()).collect();
        assert_eq!(
            ops,
            [
                Operation::EnsureGroup,
                Operation::UpsertLink("clientarea:upgrade".into()),
                Operation::UpsertLink("clientarea:shopping_cart_domain_register".into()),
                Operation::RemoveLink("clientarea:invoices".into()),
            ]
        );
    }

    #[test]
    fn group_is_optional_and_empty_usernames_get_no_commands() {
        let mut quiet = account("ann", 1, &[]);
        quiet.ensure_group = false;
        let accounts = [account("", 14, &[]), account("  ", 1, &[]), quiet];
        let batches = build_provision_batches(&settings(100), &templates(), &accounts).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].slots.len(), 1);
        assert_eq!(batches[0].slots[0].account, 2);
        assert_eq!(decode(&batches[0].body)[0].0, "create_integration_link");

        let outcomes = initial_provision_outcomes(&templates(), &accounts);
        assert_eq!(
            outcomes[0].results[0].error.as_deref(),
            Some(".example: username cannot be empty.")
        );
        assert_eq!(outcomes[1].results.len(), 1);
        assert!(outcomes[2].results.is_empty());
        assert!(
            build_provision_batches(&settings(100), &templates(), &accounts[..2])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn missing_templates_and_link_handles_are_the_accounts_errors() {
        let mut missing = account("bob", 2, &[]);
        missing.links[1] = "clientarea:nope".into();
        let mut handle = account("ann", 1, &[]);
        handle.credential = Credential::LinkHandle("h".into());
        let accounts = [missing, handle];
        let batches = build_provision_batches(&settings(100), &templates(), &accounts).unwrap();
        // bob: group and the one link with a template; ann: nothing.
        assert_eq!(batches[0].slots.len(), 2);
        assert!(batches[0].slots.iter().all(|s| s.account == 0));
        let outcomes = initial_provision_outcomes(&templates(), &accounts);
        assert_eq!(
            outcomes[0].results,
            [OperationResult {
                op: Operation::UpsertLink("clientarea:nope".into()),
                error: Some(no_template_message("bob.example", "clientarea:nope")),
            }]
        );
        assert_eq!(outcomes[1].results[0].error.as_deref(), Some(NOT_A_TOKEN));
    }

    #[test]
    fn unknown_scope_and_zero_cap_are_invalid_input() {
        let mut bad = templates();
        bad[0].scope = "clientarea:nope".into();
        assert!(matches!(
            build_provision_batches(&settings(10), &bad, &[account("bob", 1, &[])]),
            Err(PluginError::InvalidInput(_))
        ));
        assert!(matches!(
            build_provision_batches(&settings(0), &templates(), &[account("bob", 1, &[])]),
            Err(PluginError::InvalidInput(_))
        ));
        assert!(matches!(
            build_deprovision_batches(&settings(0), &[]),
            Err(PluginError::InvalidInput(_))
        ));
    }

    #[test]
    fn accounts_stay_together_when_they_fit() {
        // 15 commands each (group + 14 links), cap 40: two accounts per batch, never split.
        let accounts: Vec<AccountWork> =
            (0..5).map(|i| account(&format!("u{i}"), 14, &[])).collect();
        let batches = build_provision_batches(&settings(40), &templates(), &accounts).unwrap();
        let sizes: Vec<usize> = batches.iter().map(|b| b.slots.len()).collect();
        assert_eq!(sizes, [30, 30, 15]);
        for batch in &batches {
            assert_eq!(decode(&batch.body).len(), batch.slots.len());
            let first = batch.slots[0].account;
            assert!(
                batch
                    .slots
                    .iter()
                    .all(|s| s.account == first || s.account == first + 1)
            );
        }
    }

    #[test]
    fn oversized_accounts_are_split_at_the_cap() {
        let accounts = [
            account("a", 2, &[]),
            account("b", 14, &[]),
            account("c", 1, &[]),
        ];
        let batches = build_provision_batches(&settings(10), &templates(), &accounts).unwrap();
        let sizes: Vec<usize> = batches.iter().map(|b| b.slots.len()).collect();
        // a: 3 commands; b: 15 commands fill the first batch then spill 8; c: 2 commands still fit.
        assert_eq!(sizes, [10, 10]);
        assert!(batches.iter().all(|b| b.slots.len() <= 10));
        let all: Vec<&Slot> = batches.iter().flat_map(|b| &b.slots).collect();
        assert_eq!(all.len(), 20);
        let accounts_in_order: Vec<usize> = all.iter().map(|s| s.account).collect();
        let mut sorted = accounts_in_order.clone();
        sorted.sort_unstable();
        assert_eq!(accounts_in_order, sorted);
        assert_eq!(
            batches[1]
                .slots
                .iter()
                .map(|s| s.account)
                .collect::<Vec<_>>(),
            [1, 1, 1, 1, 1, 1, 1, 1, 2, 2]
        );
    }

    #[test]
    fn cap_of_one_sends_one_command_per_request() {
        let batches =
            build_provision_batches(&settings(1), &templates(), &[account("a", 2, &[])]).unwrap();
        assert_eq!(batches.len(), 3);
        assert!(
            batches
                .iter()
                .all(|b| b.slots.len() == 1 && decode(&b.body).len() == 1)
        );
    }

    #[test]
    fn deprovision_removes_every_link_then_the_group() {
        let users = vec!["bob".to_owned(), String::new(), "ann".to_owned()];
        let batches = build_deprovision_batches(&settings(500), &users).unwrap();
        assert_eq!(batches.len(), 1);
        let commands = decode(&batches[0].body);
        assert_eq!(commands.len(), 30);
        for (i, link) in LINKS.iter().enumerate() {
            assert_eq!(commands[i].0, "remove_integration_link");
            assert_eq!(param(&commands[i].1, "user"), "bob");
            assert_eq!(
                param(&commands[i].1, "app"),
                links::app_name("PANELINK", link.scope)
            );
            assert_eq!(
                batches[0].slots[i].op,
                Operation::RemoveLink(link.scope.into())
            );
        }
        assert_eq!(commands[14].0, "remove_integration_group");
        assert_eq!(
            commands[14].1,
            [("user", "bob"), ("group_id", "panelink")].map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(batches[0].slots[14].op, Operation::RemoveGroup);
        assert_eq!(batches[0].slots[15].account, 2);
        let outcomes = initial_deprovision_outcomes(&users);
        assert_eq!(
            outcomes[1].results[0].error.as_deref(),
            Some("username cannot be empty.")
        );
        assert!(outcomes[0].results.is_empty());
    }

    #[test]
    fn results_map_back_including_short_answers() {
        let accounts = [account("bob", 1, &[]), account("ann", 1, &[])];
        let batches = build_provision_batches(&settings(100), &templates(), &accounts).unwrap();
        let mut outcomes = initial_provision_outcomes(&templates(), &accounts);
        let results = [
            json!({"metadata": {"command": "create_integration_group", "result": 1, "reason": "OK"}}),
            json!({"metadata": {"command": "create_integration_link", "result": 1, "reason": "OK"}}),
            json!({"metadata": {"command": "create_integration_group", "result": 0, "reason": "You do not have a user named “ann”."}}),
        ];
        apply_results(
            &mut outcomes,
            &batches[0].slots,
            &results.map(CommandAnswer::Envelope),
        );
        assert_eq!(
            outcomes[0].results,
            [
                OperationResult {
                    op: Operation::EnsureGroup,
                    error: None
                },
                OperationResult {
                    op: Operation::UpsertLink("clientarea:upgrade".into()),
                    error: None
                },
            ]
        );
        assert_eq!(
            outcomes[1].results,
            [
                OperationResult {
                    op: Operation::EnsureGroup,
                    error: Some("You do not have a user named “ann”.".into())
                },
                OperationResult {
                    op: Operation::UpsertLink("clientarea:upgrade".into()),
                    error: Some(NO_RESULT.into())
                },
            ]
        );
    }
}
