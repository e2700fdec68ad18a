//! The 14 links every WHM-based plugin offers, and the mapping between scopes and panel app names.

use crate::model::{LinkGroup, LinkSpec};

/// One row of the links table, as static data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The client-area scope, e.g. `clientarea:invoices`.
    pub scope: &'static str,
    /// The group the link is shown in.
    pub group: LinkGroup,
    /// The label shown when the admin has not renamed the link.
    pub default_label: &'static str,
    /// cPanel's `implements` value; empty when the link has none (the app name is sent then).
    pub implements: &'static str,
    /// The default destination path in the client area; `{service_id}` is filled in by the host.
    pub destination: &'static str,
    /// The icon, a 48×48 PNG (`icons/`, drawn by `icons/generate.py`), sent as cPanel's
    /// `base64_png_image`.
    pub icon: &'static [u8],
}

const fn link(
    group: LinkGroup,
    default_label: &'static str,
    scope: &'static str,
    implements: &'static str,
    destination: &'static str,
    icon: &'static [u8],
) -> Link {
    Link {
        scope,
        group,
        default_label,
        implements,
        destination,
        icon,
    }
}

macro_rules! icon {
    ($name:literal) => {
        include_bytes!(concat!("../icons/", $name, ".png"))
    };
}

/// The links, in default display order (panel-protocol.md, "The links").
#[rustfmt::skip]
pub const LINKS: [Link; 14] = {
    use LinkGroup::{Account, Ordering, Support};
    [
        link(Ordering, "Upgrade/Downgrade", "clientarea:upgrade", "upgrade", "/upgrade.php?type=package&id={service_id}", icon!("upgrade")),
        link(Ordering, "Register New Domain", "clientarea:shopping_cart_domain_register", "", "/cart.php?a=add&domain=register", icon!("domain_register")),
        link(Ordering, "Transfer a Domain", "clientarea:shopping_cart_domain_transfer", "", "/cart.php?a=add&domain=transfer", icon!("domain_transfer")),
        link(Support, "Open Ticket", "clientarea:submit_ticket", "", "/submitticket.php", icon!("submit_ticket")),
        link(Support, "View Ticket History", "clientarea:tickets", "support", "/supporttickets.php", icon!("tickets")),
        link(Support, "News & Announcements", "clientarea:announcements", "", "/index.php?rp=/announcements", icon!("announcements")),
        link(Support, "Download Resources", "clientarea:downloads", "", "/index.php?rp=/download", icon!("downloads")),
        link(Support, "Search our Knowledgebase", "clientarea:knowledgebase", "", "/knowledgebase.php", icon!("knowledgebase")),
        link(Support, "Check Network Status", "clientarea:network_status", "", "/serverstatus.php", icon!("network_status")),
        link(Account, "Manage Profile", "clientarea:profile", "", "/clientarea.php?action=details", icon!("profile")),
        link(Account, "View Billing Information", "clientarea:product_details", "billing", "/clientarea.php?action=productdetails&id={service_id}", icon!("product_details")),
        link(Account, "Manage Billing Information", "clientarea:billing_info", "", "/clientarea.php?action=creditcard", icon!("billing_info")),
        link(Account, "View Email History", "clientarea:emails", "", "/clientarea.php?action=emails", icon!("emails")),
        link(Account, "View Invoice History", "clientarea:invoices", "", "/clientarea.php?action=invoices", icon!("invoices")),
    ]
};

/// The link of a scope, when it is one of ours.
#[must_use]
pub fn find(scope: &str) -> Option<&'static Link> {
    LINKS.iter().find(|l| l.scope == scope)
}

/// The links as the contract's `link-spec` records.
#[must_use]
pub fn link_specs() -> Vec<LinkSpec> {
    LINKS
        .iter()
        .map(|l| LinkSpec {
            scope: l.scope.to_owned(),
            group: l.group,
            default_label: l.default_label.to_owned(),
            implements: Some(l.implements)
                .filter(|i| !i.is_empty())
                .map(str::to_owned),
            destination: l.destination.to_owned(),
            icon: Some(l.icon.to_vec()),
        })
        .collect()
}

/// The panel-side app name of a scope: `<prefix>_` + the scope with `:` replaced by `_`.
#[must_use]
pub fn app_name(prefix: &str, scope: &str) -> String {
    let mut app = String::with_capacity(prefix.len() + 1 + scope.len());
    push_app_name(&mut app, prefix, scope);
    app
}

/// Appends the app name of `scope` (see [`app_name`]) to `out`.
pub fn push_app_name(out: &mut String, prefix: &str, scope: &str) {
    out.push_str(prefix);
    out.push('_');
    out.extend(scope.chars().map(|c| if c == ':' { '_' } else { c }));
}

/// The scope a panel-side app name stands for: `Some` only when the name carries `<prefix>_` and
/// the rest is the app-name form of one of our scopes.
#[must_use]
pub fn scope_of_app(prefix: &str, app: &str) -> Option<&'static str> {
    let rest = app.strip_prefix(prefix)?.strip_prefix('_')?;
    LINKS
        .iter()
        .find(|l| {
            l.scope.len() == rest.len()
                && l.scope
                    .bytes()
                    .zip(rest.bytes())
                    .all(|(s, r)| if s == b':' { r == b'_' } else { s == r })
        })
        .map(|l| l.scope)
}

/// The `implements` value sent for a link: the table's value, or the app name where it has none.
#[must_use]
pub fn implements_for<'a>(link: &'static Link, app: &'a str) -> &'a str {
    if link.implements.is_empty() {
        app
    } else {
        link.implements
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_fourteen_links_in_groups_in_order() {
        assert_eq!(LINKS.len(), 14);
        let groups: Vec<LinkGroup> = LINKS.iter().map(|l| l.group).collect();
        let mut expected = vec![LinkGroup::Ordering; 3];
        expected.extend([LinkGroup::Support; 6]);
        expected.extend([LinkGroup::Account; 5]);
        assert_eq!(groups, expected);
        assert_eq!(LINKS[0].scope, "clientarea:upgrade");
        assert_eq!(LINKS[13].scope, "clientarea:invoices");
        assert_eq!(LINKS[5].default_label, "News & Announcements");
    }

    #[test]
    fn scopes_are_unique_and_only_three_implement_something() {
        for (i, a) in LINKS.iter().enumerate() {
            assert!(a.scope.starts_with("clientarea:"), "{}", a.scope);
            assert!(
                LINKS[i + 1..].iter().all(|b| b.scope != a.scope),
                "duplicate {}",
                a.scope
            );
        }
        let implementing: Vec<(&str, &str)> = LINKS
            .iter()
            .filter(|l| !l.implements.is_empty())
            .map(|l| (l.scope, l.implements))
            .collect();
        assert_eq!(
            implementing,
            [
                ("clientarea:upgrade", "upgrade"),
                ("clientarea:tickets", "support"),
                ("clientarea:product_details", "billing"),
            ]
        );
    }

    #[test]
    fn destinations_with_service_id() {
        let with_id: Vec<&str> = LINKS
            .iter()
            .filter(|l| l.destination.contains("{service_id}"))
            .map(|l| l.scope)
            .collect();
        assert_eq!(
            with_id,
            ["clientarea:upgrade", "clientarea:product_details"]
        );
        assert!(LINKS.iter().all(|l| l.destination.starts_with('/')));
    }

    #[test]
    fn link_specs_mirror_the_table() {
        let specs = link_specs();
        assert_eq!(specs.len(), 14);
        for (spec, l) in specs.iter().zip(LINKS.iter()) {
            assert_eq!(spec.scope, l.scope);
            assert_eq!(spec.group, l.group);
            assert_eq!(spec.default_label, l.default_label);
            assert_eq!(spec.implements.as_deref().unwrap_or(""), l.implements);
            assert_eq!(spec.destination, l.destination);
            let icon = spec.icon.as_deref().unwrap();
            assert!(icon.starts_with(b"\x89PNG\r\n\x1a\n") && icon.len() < 1024);
            // 48×48 (IHDR's width and height).
            assert_eq!(&icon[16..24], &[0, 0, 0, 48, 0, 0, 0, 48]);
        }
    }

    #[test]
    fn app_names() {
        assert_eq!(
            app_name("PANELINK", "clientarea:invoices"),
            "PANELINK_clientarea_invoices"
        );
        assert_eq!(
            app_name("PANELINK", "clientarea:shopping_cart_domain_register"),
            "PANELINK_clientarea_shopping_cart_domain_register"
        );
        assert_eq!(app_name("X", "a:b:c"), "X_a_b_c");
    }

    #[test]
    fn app_names_map_back_to_scopes() {
        for l in &LINKS {
            assert_eq!(
                scope_of_app("PANELINK", &app_name("PANELINK", l.scope)),
                Some(l.scope)
            );
        }
        assert_eq!(scope_of_app("PANELINK", "WHMCS_billing"), None);
        assert_eq!(
            scope_of_app("PANELINK", "PANELINK_clientarea_unknown"),
            None
        );
        assert_eq!(
            scope_of_app("PANELINK", "PANELINKclientarea_invoices"),
            None
        );
        assert_eq!(
            scope_of_app("PANELINK", "PANELINK_clientarea:invoices"),
            None
        );
        assert_eq!(scope_of_app("OTHER", "PANELINK_clientarea_invoices"), None);
        assert_eq!(scope_of_app("PANELINK", "PANELINK_"), None);
    }

    #[test]
    fn implements_falls_back_to_app_name() {
        let upgrade = find("clientarea:upgrade").unwrap();
        let invoices = find("clientarea:invoices").unwrap();
        assert_eq!(implements_for(upgrade, "P_clientarea_upgrade"), "upgrade");
        assert_eq!(
            implements_for(invoices, "P_clientarea_invoices"),
            "P_clientarea_invoices"
        );
        assert!(find("clientarea:nothing").is_none());
    }
}
