//! Planning: the difference between what each account of a server should have and what the
//! record says it has, as the smallest set of panel operations. Pure: no I/O, unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::adapter::{
    AccountOutcome, AccountWork, Credential, HANDLE_PLACEHOLDER, LinkTemplate, Operation,
    SERVICE_ID_PLACEHOLDER, Secret, SignInStyle,
};
use crate::sync_port::{RecordChange, RecordedGroup, RecordedLink, StoredCredential};

/// One link an account should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredLink {
    pub scope: String,
    pub label: String,
    /// 1-based display position.
    pub order: u32,
    /// Destination path in the client area (`{service_id}` is filled in).
    pub destination: String,
}

/// An account that should have links.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The service.
    pub service_id: i64,
    /// Its panel user name.
    pub username: String,
    /// Its domain.
    pub domain: String,
    /// Its SSO credential.
    pub credential: StoredCredential,
}

/// Where a plan's links lead: the same for every account of a server.
#[derive(Debug, Clone, Copy)]
pub struct LinkContext<'a> {
    /// Base URL panels and browsers reach this host at.
    pub public_url: &'a str,
    /// Where SSO lands customers.
    pub client_area_url: &'a str,
    /// The application (its plugin's id).
    pub application: &'a str,
    /// How the plugin's panel signs customers in.
    pub sign_in: SignInStyle,
}

/// The operations one account needs.
#[derive(Debug, Clone)]
pub struct AccountPlan {
    /// The service.
    pub service_id: i64,
    /// The panel user to work on.
    pub username: String,
    /// The domain, for messages.
    pub domain: String,
    /// Remove the group and every link (the account no longer gets links here).
    pub deprovision: bool,
    credential: Option<(Credential, i64)>,
    ensure_group: bool,
    /// The plan's links as the plugin gets them once per call, shared by every account of the
    /// server: only the service id and the credential differ per account.
    templates: Arc<[LinkTemplate]>,
    /// Which of `templates` this account needs pushed.
    links: Vec<u16>,
    remove: Vec<String>,
    /// What the record holds (deprovision plans only: the record to forget).
    recorded_scopes: Vec<String>,
}

/// What the record holds for one account: whether it has the group, and its links by scope.
type Recorded<'a> = (bool, BTreeMap<&'a str, &'a RecordedLink>);

/// `<public_url>/oauth/token?scope=clientarea%3Asso+<scope>&module=<application>`.
pub fn token_url(public_url: &str, application: &str, scope: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{}/oauth/token?scope={}+{}&module={}",
        public_url.trim_end_matches('/'),
        enc("clientarea:sso"),
        enc(scope),
        enc(application)
    )
}

/// The client-area URL of a destination path for a service (what a template's URL becomes
/// for that service).
#[cfg(test)]
fn destination_url(client_area_url: &str, destination: &str, service_id: i64) -> String {
    format!(
        "{}{}",
        client_area_url.trim_end_matches('/'),
        crate::model::fill_destination(destination, service_id)
    )
}

/// The client-area URL of a destination path for every service at once: the contract's
/// `{service-id}` placeholder where the path has `{service_id}` (the plugin fills it in).
/// [`LinkTemplate::url_for`] of this is the destination's URL for that service.
pub fn destination_url_template(client_area_url: &str, destination: &str) -> String {
    let path = if crate::model::is_destination_path(destination) {
        destination.replace("{service_id}", SERVICE_ID_PLACEHOLDER)
    } else {
        "/".to_owned()
    };
    format!("{}{path}", client_area_url.trim_end_matches('/'))
}

/// `<public_url>/sso/link/{handle}?scope=<scope>`: a static link's URL, with the contract's
/// `{handle}` placeholder that the plugin fills in with the account's link handle.
pub fn static_link_template(public_url: &str, scope: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{}/sso/link/{HANDLE_PLACEHOLDER}?scope={}",
        public_url.trim_end_matches('/'),
        enc(scope)
    )
}

/// The opaque link handle of a service's credential (`static-link` panels): the credential's
/// public id and a one-way digest of its secret, so the handle changes whenever the credential
/// rotates and never reveals the secret. URL-safe as it is.
pub fn link_handle(subscriber_id: &str, secret: &Secret) -> Secret {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(b"panelink link handle\0");
    digest.update(secret.expose().as_bytes());
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.finalize()[..18]);
    Secret::new(format!("{subscriber_id}.{tag}"))
}

/// Plan a server: `accounts` should have `links` (every account the same links; none means
/// every recorded account is removed), `groups` and `recorded` are what the record says the
/// server's accounts have. Accounts already in the desired state get no plan at all.
pub fn plan_server(
    links: &[DesiredLink],
    accounts: &[Desired],
    groups: &[RecordedGroup],
    recorded_links: &[RecordedLink],
    cx: &LinkContext<'_>,
) -> Vec<AccountPlan> {
    // What the record holds, per (service, user).
    let mut recorded: BTreeMap<(i64, &str), Recorded<'_>> = BTreeMap::new();
    for g in groups {
        recorded
            .entry((g.service_id, g.username.as_str()))
            .or_default()
            .0 = true;
    }
    for l in recorded_links {
        recorded
            .entry((l.service_id, l.username.as_str()))
            .or_default()
            .1
            .insert(l.scope.as_str(), l);
    }

    // Everything about a link that is the same for every account, built once.
    let templates: Arc<[LinkTemplate]> = links
        .iter()
        .map(|l| match cx.sign_in {
            SignInStyle::TokenExchange => LinkTemplate {
                scope: l.scope.clone(),
                label: l.label.clone(),
                order: l.order,
                token_url: token_url(cx.public_url, cx.application, &l.scope),
                url: destination_url_template(cx.client_area_url, &l.destination),
            },
            SignInStyle::StaticLink => LinkTemplate {
                scope: l.scope.clone(),
                label: l.label.clone(),
                order: l.order,
                token_url: String::new(),
                url: static_link_template(cx.public_url, &l.scope),
            },
        })
        .collect();
    let shown: BTreeSet<&str> = links.iter().map(|l| l.scope.as_str()).collect();

    let mut plans = Vec::new();
    let mut wanted: BTreeSet<(i64, &str)> = BTreeSet::new();
    for d in accounts.iter().filter(|_| !links.is_empty()) {
        wanted.insert((d.service_id, d.username.as_str()));
        let (has_group, have) = recorded
            .get(&(d.service_id, d.username.as_str()))
            .cloned()
            .unwrap_or_default();
        let push: Vec<u16> = (0..links.len() as u16)
            .filter(|&i| {
                let l = &links[usize::from(i)];
                !have.get(l.scope.as_str()).is_some_and(|r| {
                    r.label == l.label
                        && r.position == i64::from(l.order)
                        && r.credential_version == d.credential.version
                })
            })
            .collect();
        let remove: Vec<String> = have
            .keys()
            .filter(|s| !shown.contains(*s))
            .map(|s| (*s).to_owned())
            .collect();
        if has_group && push.is_empty() && remove.is_empty() {
            continue;
        }
        plans.push(AccountPlan {
            service_id: d.service_id,
            username: d.username.clone(),
            domain: d.domain.clone(),
            deprovision: false,
            credential: Some((
                match cx.sign_in {
                    SignInStyle::TokenExchange => Credential::Token {
                        subscriber_id: d.credential.subscriber_id.clone(),
                        secret: d.credential.secret.clone(),
                    },
                    SignInStyle::StaticLink => Credential::LinkHandle(link_handle(
                        &d.credential.subscriber_id,
                        &d.credential.secret,
                    )),
                },
                d.credential.version,
            )),
            ensure_group: !has_group,
            templates: templates.clone(),
            links: push,
            remove,
            recorded_scopes: Vec::new(),
        });
    }
    // Everything recorded that is no longer wanted: removed whole.
    for ((service_id, username), (_, have)) in &recorded {
        if wanted.contains(&(*service_id, *username)) {
            continue;
        }
        plans.push(AccountPlan {
            service_id: *service_id,
            username: (*username).to_owned(),
            domain: String::new(),
            deprovision: true,
            credential: None,
            ensure_group: false,
            templates: templates.clone(),
            links: Vec::new(),
            remove: Vec::new(),
            recorded_scopes: have.keys().map(|s| (*s).to_owned()).collect(),
        });
    }
    // Removals first, so that a renamed account's old record is gone before the new is written.
    plans.sort_by_key(|p| !p.deprovision);
    plans
}

impl AccountPlan {
    /// The links this plan pushes.
    fn pushed(&self) -> impl Iterator<Item = &LinkTemplate> {
        self.links.iter().map(|&i| &self.templates[usize::from(i)])
    }

    /// The link templates of this plan's server, sent once per call (every plan of a server
    /// shares them).
    pub fn templates(&self) -> &Arc<[LinkTemplate]> {
        &self.templates
    }

    /// The plugin's work item for this plan (not for deprovision plans): its own values and
    /// the scopes of the templates it gets.
    pub fn work(&self) -> AccountWork {
        let credential = self
            .credential
            .as_ref()
            .map(|(c, _)| c.clone())
            .unwrap_or_else(|| Credential::Token {
                subscriber_id: String::new(),
                secret: Secret::new(String::new()),
            });
        AccountWork {
            username: self.username.clone(),
            domain: self.domain.clone(),
            service_id: self.service_id.to_string(),
            credential,
            ensure_group: self.ensure_group,
            links: self.pushed().map(|l| l.scope.clone()).collect(),
            remove: self.remove.clone(),
        }
    }

    /// The number of panel operations this plan costs.
    pub fn operations(&self) -> usize {
        usize::from(self.ensure_group) + self.links.len() + self.remove.len()
    }

    /// What the panel confirmed, as record changes, and the distinct errors it answered.
    pub fn confirmed(&self, outcome: &AccountOutcome) -> (Vec<RecordChange>, Vec<String>) {
        let version = self.credential.as_ref().map_or(0, |(_, v)| *v);
        let mut changes = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        for r in &outcome.results {
            if let Some(e) = &r.error {
                if !errors.contains(e) {
                    errors.push(e.clone());
                }
                continue;
            }
            match &r.op {
                Operation::EnsureGroup => changes.push(RecordChange::Group {
                    service_id: self.service_id,
                    username: self.username.clone(),
                }),
                Operation::UpsertLink(scope) => {
                    if let Some(l) = self.pushed().find(|l| &l.scope == scope) {
                        changes.push(RecordChange::Link(RecordedLink {
                            service_id: self.service_id,
                            username: self.username.clone(),
                            scope: scope.clone(),
                            label: l.label.clone(),
                            position: i64::from(l.order),
                            credential_version: version,
                        }));
                    }
                }
                Operation::RemoveLink(scope) => changes.push(RecordChange::LinkRemoved {
                    service_id: self.service_id,
                    scope: scope.clone(),
                }),
                Operation::RemoveGroup => changes.push(RecordChange::GroupRemoved {
                    service_id: self.service_id,
                }),
            }
        }
        (changes, errors)
    }

    /// Record changes that forget this account entirely.
    pub fn forget(&self) -> Vec<RecordChange> {
        let mut changes: Vec<RecordChange> = self
            .recorded_scopes
            .iter()
            .map(|scope| RecordChange::LinkRemoved {
                service_id: self.service_id,
                scope: scope.clone(),
            })
            .collect();
        changes.push(RecordChange::GroupRemoved {
            service_id: self.service_id,
        });
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::Secret;

    fn cred(version: i64) -> StoredCredential {
        StoredCredential {
            subscriber_id: "s1".into(),
            secret: Secret::new("x"),
            version,
        }
    }

    fn desired(user: &str, version: i64) -> Desired {
        Desired {
            service_id: 1,
            username: user.into(),
            domain: "d.example".into(),
            credential: cred(version),
        }
    }

    fn link(scope: &str, label: &str, order: u32) -> DesiredLink {
        DesiredLink {
            scope: scope.into(),
            label: label.into(),
            order,
            destination: "/x".into(),
        }
    }

    fn rec(user: &str, scope: &str, label: &str, position: i64) -> RecordedLink {
        RecordedLink {
            service_id: 1,
            username: user.into(),
            scope: scope.into(),
            label: label.into(),
            position,
            credential_version: 1,
        }
    }

    fn group(user: &str) -> RecordedGroup {
        RecordedGroup {
            service_id: 1,
            username: user.into(),
        }
    }

    fn plan(
        d: &[(Desired, Vec<DesiredLink>)],
        g: &[RecordedGroup],
        l: &[RecordedLink],
    ) -> Vec<AccountPlan> {
        let links = d.first().map(|(_, l)| l.clone()).unwrap_or_default();
        let accounts: Vec<Desired> = d.iter().map(|(a, _)| a.clone()).collect();
        plan_server(
            &links,
            &accounts,
            g,
            l,
            &LinkContext {
                public_url: "https://h",
                client_area_url: "https://h/portal",
                application: "cpanel",
                sign_in: SignInStyle::TokenExchange,
            },
        )
    }

    #[test]
    fn fresh_account_gets_group_and_all_links() {
        let p = plan(
            &[(
                desired("bob", 1),
                vec![link("a", "A", 1), link("b", "B", 2)],
            )],
            &[],
            &[],
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].operations(), 3);
        assert!(p[0].ensure_group);
    }

    #[test]
    fn in_sync_account_costs_nothing() {
        let p = plan(
            &[(desired("bob", 1), vec![link("a", "A", 1)])],
            &[group("bob")],
            &[rec("bob", "a", "A", 1)],
        );
        assert!(p.is_empty());
    }

    #[test]
    fn rename_reorder_disable_cost_only_the_difference() {
        let recorded = [
            rec("bob", "a", "A", 1),
            rec("bob", "b", "B", 2),
            rec("bob", "c", "C", 3),
        ];
        // Rename b.
        let p = plan(
            &[(
                desired("bob", 1),
                vec![link("a", "A", 1), link("b", "Bee", 2), link("c", "C", 3)],
            )],
            &[group("bob")],
            &recorded,
        );
        assert_eq!(p[0].operations(), 1);
        // Swap a and b: two moves.
        let p = plan(
            &[(
                desired("bob", 1),
                vec![link("b", "B", 1), link("a", "A", 2), link("c", "C", 3)],
            )],
            &[group("bob")],
            &recorded,
        );
        assert_eq!(p[0].operations(), 2);
        // Hide c (and keep positions): one removal.
        let p = plan(
            &[(
                desired("bob", 1),
                vec![link("a", "A", 1), link("b", "B", 2)],
            )],
            &[group("bob")],
            &recorded,
        );
        assert_eq!(
            (p[0].operations(), p[0].remove.clone()),
            (1, vec!["c".to_owned()])
        );
    }

    #[test]
    fn rotated_credential_repushes_every_link() {
        let p = plan(
            &[(desired("bob", 2), vec![link("a", "A", 1)])],
            &[group("bob")],
            &[rec("bob", "a", "A", 1)],
        );
        assert_eq!(p[0].links.len(), 1);
    }

    #[test]
    fn no_longer_wanted_and_renamed_accounts_are_removed_first() {
        let p = plan(
            &[(desired("bobby", 1), vec![link("a", "A", 1)])],
            &[group("bob")],
            &[rec("bob", "a", "A", 1)],
        );
        assert_eq!(p.len(), 2);
        assert!(p[0].deprovision && p[0].username == "bob");
        assert!(!p[1].deprovision && p[1].username == "bobby" && p[1].ensure_group);
        let p = plan(&[], &[group("bob")], &[rec("bob", "a", "A", 1)]);
        assert_eq!(p.len(), 1);
        assert!(p[0].deprovision);
        assert_eq!(p[0].forget().len(), 2);
    }

    #[test]
    fn token_url_follows_the_contract() {
        assert_eq!(
            token_url("https://b.example/", "cpanel", "clientarea:invoices"),
            "https://b.example/oauth/token?scope=clientarea%3Asso+clientarea%3Ainvoices&module=cpanel"
        );
        assert_eq!(
            destination_url("https://b.example/portal", "/a?id={service_id}", 7),
            "https://b.example/portal/a?id=7"
        );
    }

    #[test]
    fn templates_give_each_account_its_own_url() {
        for destination in [
            "/a?id={service_id}&again={service_id}",
            "/plain",
            "https://x/",
        ] {
            let t = LinkTemplate {
                scope: "s".into(),
                label: "S".into(),
                order: 1,
                token_url: String::new(),
                url: destination_url_template("https://b.example/portal/", destination),
            };
            assert_eq!(
                t.url_for("7", None),
                destination_url("https://b.example/portal", destination, 7)
            );
        }
        let t = LinkTemplate {
            scope: "clientarea:invoices".into(),
            label: "I".into(),
            order: 1,
            token_url: String::new(),
            url: static_link_template("https://b.example/", "clientarea:invoices"),
        };
        let handle = link_handle("sub-1", &Secret::new("x"));
        assert_eq!(
            t.url_for("7", Some(handle.expose())),
            format!(
                "https://b.example/sso/link/{}?scope=clientarea%3Ainvoices",
                handle.expose()
            )
        );
        assert!(handle.expose().starts_with("sub-1."));
        assert!(!handle.expose().contains('x'));
        assert_ne!(handle, link_handle("sub-1", &Secret::new("y")));
    }

    #[test]
    fn accounts_name_their_templates_and_carry_their_own_values() {
        let p = plan(
            &[(
                desired("bob", 1),
                vec![link("a", "A", 1), link("b", "B", 2)],
            )],
            &[group("bob")],
            &[rec("bob", "a", "A", 1)],
        );
        let work = p[0].work();
        assert_eq!(work.links, vec!["b".to_owned()]);
        assert_eq!(work.service_id, "1");
        assert_eq!(p[0].templates().len(), 2);
        assert!(matches!(work.credential, Credential::Token { .. }));
    }
}
