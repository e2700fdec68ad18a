//! Domain values that can only hold valid data ("parse, don't validate"), shared by `storage`,
//! `api` and the sync engine.
//!
//! Every newtype here has a `parse` that returns the reason (a short phrase for admins) when the
//! input is not acceptable, and an `as_str` for the one place that needs the text back. None of
//! them is `Serialize`: only `api` knows JSON. The statuses and permissions are closed enums with
//! the exact spellings of `api.md`, so the database and the API always agree on them.
//!
//! [`effective_links`] merges a plugin's supported links with what an admin saved: the one rule of
//! "what links does this application show, in which order, under which name".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::adapter::{LinkGroup, LinkSpec};

/// Whether a character is refused in names shown to people: control characters (C0, DEL, C1) and
/// the Unicode line and paragraph separators.
fn is_control(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Trim, then require 1..=max characters and no control character.
fn display_text(raw: &str, max: usize) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".into());
    }
    if trimmed.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if trimmed.chars().any(is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_owned())
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_newtype!(
    /// A link's display name: 1–100 characters after trimming, no control characters.
    DisplayName
);

impl DisplayName {
    /// Longest display name, in characters.
    pub const MAX: usize = 100;

    /// Trim and check.
    pub fn parse(raw: &str) -> Result<Self, String> {
        display_text(raw, Self::MAX).map(Self)
    }
}

text_newtype!(
    /// The name of a server, client or role: 1–100 characters after trimming, no control
    /// characters.
    Name
);

impl Name {
    /// Longest name, in characters.
    pub const MAX: usize = 100;

    /// Trim and check.
    pub fn parse(raw: &str) -> Result<Self, String> {
        display_text(raw, Self::MAX).map(Self)
    }
}

text_newtype!(
    /// An e-mail address, lower-cased: `local@domain` with a dotted domain, at most 254 bytes.
    ///
    /// Deliberately simple (no quoted local parts, no IP literals): it only has to tell admins
    /// about typos, not implement RFC 5322.
    Email
);

impl Email {
    /// Trim, lower-case and check.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim().to_lowercase();
        let invalid = || Err("must be an e-mail address like name@example.com".to_owned());
        if value.is_empty() || value.len() > 254 {
            return invalid();
        }
        let Some((local, domain)) = value.split_once('@') else {
            return invalid();
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok || !domain.contains('.') || Hostname::parse(domain).is_err() {
            return invalid();
        }
        Ok(Self(value))
    }
}

text_newtype!(
    /// A server's host name (DNS name) or IP address, lower-cased.
    Hostname
);

impl Hostname {
    /// Trim, lower-case and check: an IPv4/IPv6 address, or labels of letters, digits and `-`
    /// (1–63 bytes each, not starting or ending with `-`), at most 253 bytes.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim().to_lowercase();
        if value.parse::<std::net::IpAddr>().is_ok() {
            return Ok(Self(value));
        }
        let invalid = || Err("must be a host name like panel.example.com or an IP address".into());
        let name = value.strip_suffix('.').unwrap_or(&value);
        if name.is_empty() || name.len() > 253 {
            return invalid();
        }
        let labels_ok = name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if !labels_ok {
            return invalid();
        }
        Ok(Self(name.to_owned()))
    }
}

text_newtype!(
    /// A panel user name (a hosting account's or a server's API user).
    ///
    /// Letters, digits, `_`, `-` and `.`, at most 64 characters. A service's user name may be
    /// empty (billing data is not always complete; the sync logs a warning for such a service),
    /// which [`Username::parse_optional`] allows.
    Username
);

impl Username {
    /// Longest user name.
    pub const MAX: usize = 64;

    /// A non-empty user name.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = Self::parse_optional(raw)?;
        if value.0.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(value)
    }

    /// A user name that may be empty.
    pub fn parse_optional(raw: &str) -> Result<Self, String> {
        let value = raw.trim();
        if value.len() > Self::MAX {
            return Err(format!("must be at most {} characters", Self::MAX));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err("may only contain letters, digits, '_', '-' and '.'".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// Whether the name is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

text_newtype!(
    /// A client-area scope such as `clientarea:invoices`.
    Scope
);

impl Scope {
    /// `<namespace>:<name>` of lower-case letters, digits and `_`, at most 100 bytes.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = raw.len() <= 100
            && raw.split_once(':').is_some_and(|(ns, name)| {
                let part = |s: &str| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                };
                part(ns) && part(name)
            });
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be a scope like clientarea:invoices".into())
        }
    }
}

text_newtype!(
    /// An application id as plugins declare it: 1–64 characters of `a-z`, `0-9`, `-` and `_`.
    ApplicationId
);

impl ApplicationId {
    /// Check.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be an application id like cpanel".into())
        }
    }
}

/// A TCP port other than 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(u16);

impl Port {
    /// WHM's TLS port.
    pub const WHM_SECURE: Port = Port(2087);
    /// WHM's plain HTTP port.
    pub const WHM_PLAIN: Port = Port(2086);

    /// Check.
    pub fn new(value: i64) -> Result<Self, String> {
        match u16::try_from(value) {
            Ok(p) if p != 0 => Ok(Self(p)),
            _ => Err("must be a port number from 1 to 65535".into()),
        }
    }

    /// The WHM default for TLS or plain HTTP.
    pub fn default_for(secure: bool) -> Self {
        if secure {
            Self::WHM_SECURE
        } else {
            Self::WHM_PLAIN
        }
    }

    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }
}

/// Declares a closed enum with its API spelling, `parse`, `as_str` and `ALL`.
macro_rules! spelled_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The API's (and the database's) spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parse the API's spelling.
            pub fn parse(raw: &str) -> Result<Self, String> {
                match raw {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "must be one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

spelled_enum!(
    /// What an admin may do; roles hold a set of these.
    Permission {
        /// See and change Application Links (only Full Administrator has it by default).
        ConfigureApplicationLinks = "configure_application_links",
        /// Servers.
        ManageServers = "manage_servers",
        /// Clients, their users and services.
        ManageClients = "manage_clients",
        /// Plugin versions.
        ManagePlugins = "manage_plugins",
        /// Admins, roles and the audit log.
        ManageAdmins = "manage_admins",
    }
);

spelled_enum!(
    /// What a client's user may do in the client area.
    ClientPermission {
        /// Sign in through the panels' links.
        Sso = "sso",
        /// Edit the account profile.
        Profile = "profile",
        /// Manage contacts.
        Contacts = "contacts",
        /// See products and services.
        Products = "products",
        /// Manage domains.
        Domains = "domains",
        /// See and pay invoices.
        Invoices = "invoices",
        /// Open and read support tickets.
        Tickets = "tickets",
        /// Read the e-mail history.
        Emails = "emails",
        /// Place orders.
        Orders = "orders",
    }
);

spelled_enum!(
    /// A client account's status; a closed account cannot sign in.
    ClientStatus {
        Active = "active",
        Inactive = "inactive",
        Closed = "closed",
    }
);

spelled_enum!(
    /// A hosting service's status; `active` and `suspended` services get links.
    ServiceStatus {
        /// Ordered, not yet provisioned.
        Pending = "pending",
        /// Running.
        Active = "active",
        /// Suspended (still gets links).
        Suspended = "suspended",
        Terminated = "terminated",
        Cancelled = "cancelled",
    }
);

impl ServiceStatus {
    /// Whether a service in this status gets links.
    pub fn gets_links(self) -> bool {
        matches!(self, ServiceStatus::Active | ServiceStatus::Suspended)
    }
}

/// Parse a list of permissions into a set; the error names the first unknown entry.
pub fn parse_set<T: Ord>(
    raw: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<BTreeSet<T>, String> {
    raw.iter()
        .map(|p| parse(p).map_err(|why| format!("{p:?} is not a permission: {why}")))
        .collect()
}

/// One link setting an admin saved (or the default when nothing was saved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSetting {
    pub scope: Scope,
    pub display_name: DisplayName,
    /// Shown or hidden.
    pub enabled: bool,
}

/// A link as the application shows it: the plugin's spec with the admin's settings applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveLink {
    pub scope: String,
    pub group: LinkGroup,
    /// The plugin's default label.
    pub default_label: String,
    /// The label shown.
    pub display_name: String,
    /// Shown or hidden.
    pub enabled: bool,
    /// 1-based display position.
    pub order: u32,
    /// The panel-specific feature name (cPanel's `implements`), when the panel has one.
    pub implements: Option<String>,
    /// The plugin's PNG icon, when it ships one.
    pub icon: Option<Vec<u8>>,
    /// Destination path in the client area.
    pub destination: String,
}

/// The links an application shows: the saved settings (in their saved order) for every scope the
/// plugin supports, then any supported scope nothing was saved for (a plugin upgrade can add one)
/// with its defaults, in the plugin's order. Saved scopes the plugin no longer supports are
/// ignored. With nothing saved this is the plugin's defaults: every link enabled, default labels,
/// the plugin's order.
pub fn effective_links(spec: &[LinkSpec], saved: &[LinkSetting]) -> Vec<EffectiveLink> {
    let by_scope: HashMap<&str, &LinkSpec> = spec.iter().map(|s| (s.scope.as_str(), s)).collect();
    let mut out = Vec::with_capacity(spec.len());
    let mut seen = BTreeSet::new();
    let push = |spec: &LinkSpec, name: &str, enabled: bool, out: &mut Vec<EffectiveLink>| {
        out.push(EffectiveLink {
            scope: spec.scope.clone(),
            group: spec.group,
            default_label: spec.default_label.clone(),
            display_name: name.to_owned(),
            enabled,
            order: u32::try_from(out.len() + 1).unwrap_or(u32::MAX),
            implements: spec.implements.clone(),
            icon: spec.icon.clone(),
            destination: spec.destination.clone(),
        });
    };
    for setting in saved {
        if let Some(spec) = by_scope.get(setting.scope.as_str())
            && seen.insert(setting.scope.as_str())
        {
            push(
                spec,
                setting.display_name.as_str(),
                setting.enabled,
                &mut out,
            );
        }
    }
    for spec in spec {
        if !seen.contains(spec.scope.as_str()) {
            push(spec, &spec.default_label, true, &mut out);
        }
    }
    out
}

/// The client-area path template a link of `scope` lands on: the configured override
/// (`sso_destinations`), else the plugin's default, else `/`. One rule for the link's fallback URL
/// (pushed by the sync engine) and for where single sign-on lands.
///
/// Only a path counts ([`is_destination_path`]): a candidate that is not one (a plugin's
/// `@evil.example/`, which after a `client_area_url` without a path would name another host) is
/// passed over for the next.
pub fn destination_template<'a>(
    overrides: &'a BTreeMap<String, String>,
    scope: &str,
    default: Option<&'a str>,
) -> &'a str {
    overrides
        .get(scope)
        .map(String::as_str)
        .filter(|t| is_destination_path(t))
        .or(default.filter(|t| is_destination_path(t)))
        .unwrap_or("/")
}

/// Whether a destination is a path that stays on the client area's host however it is appended
/// to `client_area_url`: it starts with exactly one `/` and holds no `\` (browsers read it as `/`),
/// whitespace or control characters.
pub fn is_destination_path(path: &str) -> bool {
    let mut chars = path.chars();
    chars.next() == Some('/')
        && chars.next() != Some('/')
        && !path
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || is_control(c))
}

/// A destination template with the service id filled in; a template that is not a path
/// ([`is_destination_path`]) lands on `/`.
pub fn fill_destination(template: &str, service_id: i64) -> String {
    if !is_destination_path(template) {
        return "/".to_owned();
    }
    template.replace("{service_id}", &service_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse("  Invoices ").unwrap().as_str(),
            "Invoices"
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(100)).is_ok());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
        assert!(DisplayName::parse("a\u{0}b").is_err());
        assert!(DisplayName::parse("a\nb").is_err());
        assert!(DisplayName::parse("a\u{85}b").is_err());
    }

    #[test]
    fn emails_hostnames_usernames_scopes() {
        assert_eq!(
            Email::parse(" Bob@Example.COM ").unwrap().as_str(),
            "bob@example.com"
        );
        for bad in [
            "",
            "bob",
            "bob@",
            "@example.com",
            "bob@localhost",
            "a b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Hostname::parse("127.0.0.1").is_ok());
        assert!(Hostname::parse("::1").is_ok());
        assert_eq!(
            Hostname::parse("Panel.Example.com.").unwrap().as_str(),
            "panel.example.com"
        );
        for bad in ["", "-a.com", "a..b", "a b", "a_b.com", &"a".repeat(64)] {
            assert!(Hostname::parse(bad).is_err(), "{bad}");
        }
        assert!(Username::parse("").is_err());
        assert!(Username::parse_optional("").unwrap().is_empty());
        assert!(Username::parse("bob smith").is_err());
        assert!(Scope::parse("clientarea:invoices").is_ok());
        for bad in ["clientarea", ":x", "x:", "Clientarea:x", "a:b c"] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
        assert!(Port::new(0).is_err());
        assert!(Port::new(65536).is_err());
        assert_eq!(Port::new(2087).unwrap(), Port::default_for(true));
    }

    #[test]
    fn spelled_enums_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Ok(*p));
        }
        assert!(ServiceStatus::parse("deleted").is_err());
        assert!(ServiceStatus::Suspended.gets_links());
        assert!(!ServiceStatus::Pending.gets_links());
    }

    fn spec(scope: &str) -> LinkSpec {
        LinkSpec {
            scope: scope.into(),
            group: LinkGroup::Support,
            default_label: format!("label {scope}"),
            implements: None,
            destination: "/".into(),
            icon: None,
        }
    }

    fn saved(scope: &str, name: &str, enabled: bool) -> LinkSetting {
        LinkSetting {
            scope: Scope::parse(scope).unwrap(),
            display_name: DisplayName::parse(name).unwrap(),
            enabled,
        }
    }

    #[test]
    fn effective_links_merge_saved_settings_with_the_spec() {
        let specs = [spec("a:a"), spec("a:b"), spec("a:c")];
        let defaults = effective_links(&specs, &[]);
        assert_eq!(
            defaults
                .iter()
                .map(|l| (l.scope.as_str(), l.order, l.enabled))
                .collect::<Vec<_>>(),
            [("a:a", 1, true), ("a:b", 2, true), ("a:c", 3, true)]
        );
        assert_eq!(defaults[0].display_name, "label a:a");

        let links = effective_links(
            &specs,
            &[
                saved("a:c", "C", false),
                saved("a:gone", "G", true),
                saved("a:a", "A", true),
            ],
        );
        assert_eq!(
            links
                .iter()
                .map(|l| (
                    l.scope.as_str(),
                    l.display_name.as_str(),
                    l.order,
                    l.enabled
                ))
                .collect::<Vec<_>>(),
            [
                ("a:c", "C", 1, false),
                ("a:a", "A", 2, true),
                ("a:b", "label a:b", 3, true)
            ]
        );
    }

    #[test]
    fn destination_prefers_the_override_then_the_plugin() {
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "clientarea:invoices".to_owned(),
            "/billing?s={service_id}".to_owned(),
        );
        let t = destination_template(&overrides, "clientarea:invoices", Some("/invoices"));
        assert_eq!(fill_destination(t, 7), "/billing?s=7");
        let t = destination_template(&overrides, "clientarea:emails", Some("/emails"));
        assert_eq!(t, "/emails");
        assert_eq!(
            destination_template(&overrides, "clientarea:other", None),
            "/"
        );
    }

    #[test]
    fn destinations_stay_on_the_client_area_host() {
        for good in ["/", "/clientarea.php?action=invoices", "/a/{service_id}/b"] {
            assert!(is_destination_path(good), "{good}");
        }
        for bad in [
            "",
            "@evil.example/",
            "evil.example",
            "//evil.example/",
            "/\\evil.example",
            "\\/evil.example",
            "/a b",
            "/a\nb",
            "https://evil.example/",
        ] {
            assert!(!is_destination_path(bad), "{bad:?}");
        }
        let mut overrides = BTreeMap::new();
        overrides.insert("a:bad".to_owned(), "@evil.example/".to_owned());
        // A bad override falls back to the plugin's default, a bad default to `/`.
        assert_eq!(
            destination_template(&overrides, "a:bad", Some("/ok")),
            "/ok"
        );
        assert_eq!(
            destination_template(&overrides, "a:bad", Some("@evil.example/")),
            "/"
        );
        assert_eq!(
            destination_template(&BTreeMap::new(), "a:x", Some("//evil.example")),
            "/"
        );
        assert_eq!(fill_destination("@evil.example/{service_id}", 7), "/");
        assert_eq!(fill_destination("/s/{service_id}", 7), "/s/7");
    }
}
