//! The simulated server's data: its version, profile, API credentials, cPanel accounts and, per
//! account, the integration groups and links WHM API 1 calls created ([`Group`], [`Link`],
//! [`UserIntegration`]). Also the version arithmetic that decides which functions exist.
//!
//! The WHM functions in [`crate::whm`] read and change a `ServerState` under a lock; tests read
//! snapshots of it through [`crate::SimHandle`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Profile, SimConfig};

/// The first cPanel & WHM major version with the integration-link functions.
pub const INTEGRATION_MIN_MAJOR: u32 = 54;

/// The first cPanel & WHM major version with server profiles (`get_current_profile`).
pub const PROFILES_MIN_MAJOR: u32 = 76;

/// The major version of a cPanel & WHM version string: `11.130.0.5` → 130 (the leading `11.` is
/// the historical prefix), `130.0.5` → 130. `None` when it does not start with a number.
pub fn major_version(version: &str) -> Option<u32> {
    let mut parts = version.trim().split('.');
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 11
        && let Some(second) = parts.next()
    {
        return second.parse().ok();
    }
    Some(first)
}

/// An integration group, as `create_integration_group` stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The group's ID (without cPanel's internal `group_` prefix).
    pub group_id: String,
    /// The label shown in cPanel.
    pub label: String,
    /// The display order (≥ 1).
    pub order: u32,
}

/// An integration link, as `create_integration_link` stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// The link's `app` name.
    pub app: String,
    /// Every recognised field as given, except `user` and `app`: `autologin_token_url`,
    /// `base64_png_image`, `group_id`, `hide`, `implements`, `label`, `order`,
    /// `subscriber_unique_id`, `token`, `url` (only those that were sent; `token` follows
    /// `update_integration_link_token`).
    pub fields: BTreeMap<String, String>,
    /// Parameters cPanel does not know (it ignores them with a warning), e.g. `description`.
    pub ignored: BTreeMap<String, String>,
}

impl Link {
    /// The fields cPanel stores for a link (everything else is ignored).
    pub const KNOWN_FIELDS: [&'static str; 10] = [
        "autologin_token_url",
        "base64_png_image",
        "group_id",
        "hide",
        "implements",
        "label",
        "order",
        "subscriber_unique_id",
        "token",
        "url",
    ];

    /// A field's value, if it was given.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// A field's value when given and non-empty.
    pub fn non_empty(&self, field: &str) -> Option<&str> {
        self.get(field).filter(|v| !v.is_empty())
    }

    /// The secret presented to the token endpoint.
    pub fn token(&self) -> Option<&str> {
        self.get("token")
    }

    /// The fallback URL.
    pub fn url(&self) -> Option<&str> {
        self.get("url")
    }

    /// The token endpoint.
    pub fn autologin_token_url(&self) -> Option<&str> {
        self.get("autologin_token_url")
    }

    /// The label.
    pub fn label(&self) -> Option<&str> {
        self.get("label")
    }

    /// The subscriber's unique ID.
    pub fn subscriber_unique_id(&self) -> Option<&str> {
        self.get("subscriber_unique_id")
    }

    /// What the link implements.
    pub fn implements(&self) -> Option<&str> {
        self.get("implements")
    }

    /// The group the link is shown in.
    pub fn group_id(&self) -> Option<&str> {
        self.get("group_id")
    }

    /// The display order, as given.
    pub fn order(&self) -> Option<&str> {
        self.get("order")
    }

    /// The user-visible configuration (cPanel's `.userconfig` file: every field but `token`).
    pub fn user_config(&self) -> BTreeMap<String, String> {
        self.fields
            .iter()
            .filter(|(k, _)| k.as_str() != "token")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Everything integration-related one cPanel account has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserIntegration {
    /// The account's username.
    pub user: String,
    /// Its integration groups by `group_id`.
    pub groups: BTreeMap<String, Group>,
    /// Its integration links by `app`.
    pub links: BTreeMap<String, Link>,
}

impl UserIntegration {
    /// True when the account has neither groups nor links.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.links.is_empty()
    }
}

/// The whole mutable state of one simulated server.
#[derive(Debug, Clone)]
pub(crate) struct ServerState {
    pub(crate) version: String,
    pub(crate) profile: Profile,
    pub(crate) api_user: String,
    pub(crate) api_token: String,
    /// username → domain
    pub(crate) accounts: BTreeMap<String, String>,
    /// username → its groups and links (absent when it has none)
    pub(crate) integrations: BTreeMap<String, UserIntegration>,
}

impl ServerState {
    pub(crate) fn new(config: &SimConfig) -> Self {
        ServerState {
            version: config.version.clone(),
            profile: config.profile.clone(),
            api_user: config.api_user.clone(),
            api_token: config.api_token.clone(),
            accounts: config.accounts.clone(),
            integrations: BTreeMap::new(),
        }
    }

    fn major(&self) -> u32 {
        // An unparsable version counts as current.
        major_version(&self.version).unwrap_or(u32::MAX)
    }

    /// True when the version has the integration functions (54 and later).
    pub(crate) fn has_integration(&self) -> bool {
        self.major() >= INTEGRATION_MIN_MAJOR
    }

    /// True when the version has server profiles (76 and later).
    pub(crate) fn has_profiles(&self) -> bool {
        self.major() >= PROFILES_MIN_MAJOR
    }

    pub(crate) fn integration_mut(&mut self, user: &str) -> &mut UserIntegration {
        // Look up before inserting: no key allocation for a user who has an entry.
        if !self.integrations.contains_key(user) {
            self.integrations.insert(
                user.to_owned(),
                UserIntegration {
                    user: user.to_owned(),
                    ..UserIntegration::default()
                },
            );
        }
        self.integrations
            .get_mut(user)
            .expect("the entry exists: inserted above")
    }

    /// Drops the entry of a user that has nothing left.
    pub(crate) fn tidy(&mut self, user: &str) {
        if self
            .integrations
            .get(user)
            .is_some_and(UserIntegration::is_empty)
        {
            self.integrations.remove(user);
        }
    }

    pub(crate) fn snapshot(&self, user: &str) -> UserIntegration {
        self.integrations
            .get(user)
            .cloned()
            .unwrap_or_else(|| UserIntegration {
                user: user.to_owned(),
                ..UserIntegration::default()
            })
    }

    /// Removes an account and, as WHM does when an account is removed, its integration data.
    pub(crate) fn remove_account(&mut self, user: &str) -> bool {
        self.integrations.remove(user);
        self.accounts.remove(user).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions() {
        assert_eq!(major_version("11.130.0.5"), Some(130));
        assert_eq!(major_version("11.52.1.3"), Some(52));
        assert_eq!(major_version("130.0.5"), Some(130));
        assert_eq!(major_version("11"), Some(11));
        assert_eq!(major_version("x"), None);
    }

    #[test]
    fn feature_gates() {
        let mut s = ServerState::new(&SimConfig::new());
        assert!(s.has_integration() && s.has_profiles());
        s.version = "11.60.0.1".into();
        assert!(s.has_integration() && !s.has_profiles());
        s.version = "11.52.0.1".into();
        assert!(!s.has_integration());
    }
}
