//! The simulated server's data: its version, profile, API credentials, cPanel accounts and, per
//! account, the integration groups and links WHM API 1 calls created ([`Group`], [`Link`],
//! [`UserIntegration`]). Also the version arithmetic that decides which functions exist.
//!
//! The WHM functions in [`crate::whm`] read and change a `ServerState` under a lock; tests read
//! snapshots of it through [`crate::SimHandle`].

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

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
///
/// What it holds: its `app` name ([`Link::app`]); every recognised field as given, except `user`
/// and `app` ([`Link::fields`], [`Link::get`]: `autologin_token_url`, `base64_png_image`,
/// `group_id`, `hide`, `implements`, `label`, `order`, `subscriber_unique_id`, `token`, `url`,
/// only those that were sent; `token` follows `update_integration_link_token`); and the parameters
/// cPanel does not know and ignores with a warning, e.g. `description` ([`Link::ignored`]).
///
/// A simulator stores hundreds of thousands of links, so a link is compact: one text buffer with
/// the field values and the app name back to back, the positions of the fields inline, and the
/// (almost always absent) ignored parameters behind an optional box — one allocation per link.
/// It serializes as `{"app": …, "fields": {…}, "ignored": {…}}`, maps in key order.
#[derive(Clone, PartialEq, Eq)]
pub struct Link {
    /// The value of each known field in [`Link::KNOWN_FIELDS`] order (an absent one as empty),
    /// then the app name.
    text: Box<str>,
    /// Per known field, where its value ends in `text`, with [`ABSENT`] set when it was not given.
    /// A field's value starts where the previous one ends; the app name starts where the last
    /// one ends.
    ends: [u32; KNOWN_FIELD_COUNT],
    /// The ignored parameters; `None` when there are none (never an empty map). Boxed: a pointer
    /// is 8 bytes where a map is 24, in every link (and every slot of a user's link map).
    #[expect(
        clippy::box_collection,
        reason = "one pointer per link instead of a map, for a field that is almost always empty"
    )]
    ignored: Option<Box<BTreeMap<String, String>>>,
}

/// The number of fields cPanel stores for a link.
const KNOWN_FIELD_COUNT: usize = 10;

/// The flag of an end in [`Link::ends`] that marks the field absent (its value is then empty).
/// Offsets stay far below it: a request body is at most 64 MiB.
const ABSENT: u32 = 1 << 31;

/// The ignored parameters of a link without any.
static NO_IGNORED: BTreeMap<String, String> = BTreeMap::new();

/// Positions in [`Link::KNOWN_FIELDS`] of the fields the simulator itself reads.
pub(crate) mod field {
    pub(crate) const AUTOLOGIN_TOKEN_URL: usize = 0;
    pub(crate) const BASE64_PNG_IMAGE: usize = 1;
    pub(crate) const GROUP_ID: usize = 2;
    pub(crate) const HIDE: usize = 3;
    pub(crate) const IMPLEMENTS: usize = 4;
    pub(crate) const LABEL: usize = 5;
    pub(crate) const ORDER: usize = 6;
    pub(crate) const SUBSCRIBER_UNIQUE_ID: usize = 7;
    pub(crate) const TOKEN: usize = 8;
    pub(crate) const URL: usize = 9;
}

/// The values of a link's known fields, by position in [`Link::KNOWN_FIELDS`].
pub(crate) type FieldValues<'a> = [Option<&'a str>; KNOWN_FIELD_COUNT];

impl Link {
    /// The fields cPanel stores for a link (everything else is ignored), in key order.
    pub const KNOWN_FIELDS: [&'static str; KNOWN_FIELD_COUNT] = [
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

    /// The position of a field name in [`Link::KNOWN_FIELDS`]; `None` for any other name.
    pub(crate) fn field_index(name: &str) -> Option<usize> {
        Some(match name {
            "autologin_token_url" => field::AUTOLOGIN_TOKEN_URL,
            "base64_png_image" => field::BASE64_PNG_IMAGE,
            "group_id" => field::GROUP_ID,
            "hide" => field::HIDE,
            "implements" => field::IMPLEMENTS,
            "label" => field::LABEL,
            "order" => field::ORDER,
            "subscriber_unique_id" => field::SUBSCRIBER_UNIQUE_ID,
            "token" => field::TOKEN,
            "url" => field::URL,
            _ => return None,
        })
    }

    /// A link of `app` with these known field values and ignored parameters.
    pub(crate) fn new(
        app: &str,
        values: &FieldValues<'_>,
        ignored: BTreeMap<String, String>,
    ) -> Link {
        let (text, ends) = pack(app, values);
        Link {
            text,
            ends,
            ignored: (!ignored.is_empty()).then(|| Box::new(ignored)),
        }
    }

    /// Where the value of the field at `index` starts in `text`.
    fn start(&self, index: usize) -> usize {
        match index {
            0 => 0,
            _ => (self.ends[index - 1] & !ABSENT) as usize,
        }
    }

    /// The value of the field at `index` in [`Link::KNOWN_FIELDS`], if it was given.
    pub(crate) fn value(&self, index: usize) -> Option<&str> {
        let end = self.ends[index];
        (end & ABSENT == 0).then(|| &self.text[self.start(index)..end as usize])
    }

    /// Every known field's value, by position in [`Link::KNOWN_FIELDS`].
    fn values(&self) -> FieldValues<'_> {
        std::array::from_fn(|i| self.value(i))
    }

    /// Sets the field at `index` in [`Link::KNOWN_FIELDS`].
    pub(crate) fn set(&mut self, index: usize, value: &str) {
        let mut values = self.values();
        values[index] = Some(value);
        let (text, ends) = pack(self.app(), &values);
        (self.text, self.ends) = (text, ends);
    }

    /// The link's `app` name.
    pub fn app(&self) -> &str {
        &self.text[self.start(KNOWN_FIELD_COUNT)..]
    }

    /// Every field that was given, except `user` and `app`, in key order: the recognised ones
    /// ([`Link::KNOWN_FIELDS`]; `token` as last updated).
    pub fn fields(&self) -> impl DoubleEndedIterator<Item = (&'static str, &str)> + '_ {
        Self::KNOWN_FIELDS
            .iter()
            .enumerate()
            .filter_map(|(i, name)| self.value(i).map(|v| (*name, v)))
    }

    /// The parameters cPanel does not know (it ignores them with a warning), e.g. `description`,
    /// by name.
    pub fn ignored(&self) -> &BTreeMap<String, String> {
        self.ignored.as_deref().unwrap_or(&NO_IGNORED)
    }

    /// A field's value, if it was given.
    pub fn get(&self, field: &str) -> Option<&str> {
        Self::field_index(field).and_then(|i| self.value(i))
    }

    /// A field's value when given and non-empty.
    pub fn non_empty(&self, field: &str) -> Option<&str> {
        self.get(field).filter(|v| !v.is_empty())
    }

    /// The secret presented to the token endpoint.
    pub fn token(&self) -> Option<&str> {
        self.value(field::TOKEN)
    }

    /// The fallback URL.
    pub fn url(&self) -> Option<&str> {
        self.value(field::URL)
    }

    /// The token endpoint.
    pub fn autologin_token_url(&self) -> Option<&str> {
        self.value(field::AUTOLOGIN_TOKEN_URL)
    }

    /// The label.
    pub fn label(&self) -> Option<&str> {
        self.value(field::LABEL)
    }

    /// The subscriber's unique ID.
    pub fn subscriber_unique_id(&self) -> Option<&str> {
        self.value(field::SUBSCRIBER_UNIQUE_ID)
    }

    /// What the link implements.
    pub fn implements(&self) -> Option<&str> {
        self.value(field::IMPLEMENTS)
    }

    /// The group the link is shown in.
    pub fn group_id(&self) -> Option<&str> {
        self.value(field::GROUP_ID)
    }

    /// The display order, as given.
    pub fn order(&self) -> Option<&str> {
        self.value(field::ORDER)
    }

    /// The user-visible configuration (cPanel's `.userconfig` file: every field but `token`).
    pub fn user_config(&self) -> BTreeMap<String, String> {
        self.fields()
            .filter(|(k, _)| *k != "token")
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// A link's text and ends (see [`Link`]): the given values, then the app name, in one exactly
/// sized buffer.
fn pack(app: &str, values: &FieldValues<'_>) -> (Box<str>, [u32; KNOWN_FIELD_COUNT]) {
    let len = app.len() + values.iter().flatten().map(|v| v.len()).sum::<usize>();
    assert!(
        len < ABSENT as usize,
        "a link's text is under 2 GiB (a request body is at most 64 MiB)"
    );
    let mut text = String::with_capacity(len);
    let mut ends = [0; KNOWN_FIELD_COUNT];
    for (end, value) in ends.iter_mut().zip(values) {
        text.push_str(value.unwrap_or_default());
        // Below `ABSENT` (checked above), so it fits.
        let at = text.len() as u32;
        *end = if value.is_some() { at } else { at | ABSENT };
    }
    text.push_str(app);
    (text.into_boxed_str(), ends)
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("app", &self.app())
            .field("fields", &Fields(self))
            .field("ignored", self.ignored())
            .finish()
    }
}

impl Serialize for Link {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut link = serializer.serialize_struct("Link", 3)?;
        link.serialize_field("app", self.app())?;
        link.serialize_field("fields", &Fields(self))?;
        link.serialize_field("ignored", self.ignored())?;
        link.end()
    }
}

/// A link's fields as a map, for `Debug` and `Serialize`.
struct Fields<'a>(&'a Link);

impl std::fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.fields()).finish()
    }
}

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.fields())
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

/// What `listaccts` says about an account besides its user name and domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountDetails {
    /// Suspended (`suspended` 1, `suspendreason` the reason).
    pub suspended: bool,
    /// The owning WHM user: `root`, a reseller, or the account itself (a reseller's own).
    pub owner: String,
    /// The contact e-mail; empty when none is set (`listaccts` says `*unknown*` then).
    pub email: String,
}

impl Default for AccountDetails {
    /// Active, owned by `root`, no contact e-mail: an account as WHM creates it by default.
    fn default() -> Self {
        Self {
            suspended: false,
            owner: "root".to_owned(),
            email: String::new(),
        }
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
    /// username → what `listaccts` adds (absent: [`AccountDetails::default`])
    pub(crate) details: BTreeMap<String, AccountDetails>,
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
            details: config.account_details.clone(),
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
        self.details.remove(user);
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

    #[test]
    fn field_indexes_follow_the_known_fields() {
        for (i, name) in Link::KNOWN_FIELDS.iter().enumerate() {
            assert_eq!(Link::field_index(name), Some(i), "{name}");
        }
        assert!(Link::KNOWN_FIELDS.is_sorted());
        for other in ["", "app", "user", "Token", "tokens", "description"] {
            assert_eq!(Link::field_index(other), None, "{other}");
        }
    }

    /// What a link held before it was packed: the reference for every accessor.
    #[derive(Debug, Serialize)]
    struct Plain {
        app: String,
        fields: BTreeMap<String, String>,
        ignored: BTreeMap<String, String>,
    }

    fn check(link: &Link, plain: &Plain) {
        assert_eq!(link.app(), plain.app);
        let fields: Vec<(&str, &str)> = link.fields().collect();
        let expected: Vec<(&str, &str)> = plain
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(fields, expected);
        assert_eq!(link.fields().rev().count(), plain.fields.len());
        for name in Link::KNOWN_FIELDS
            .iter()
            .chain(&["app", "user", "description"])
        {
            assert_eq!(
                link.get(name),
                plain.fields.get(*name).map(String::as_str),
                "{name}"
            );
        }
        assert_eq!(link.ignored(), &plain.ignored);
        assert_eq!(
            serde_json::to_string(link).unwrap(),
            serde_json::to_string(plain).unwrap()
        );
        assert_eq!(
            format!("{link:?}"),
            format!("{plain:?}").replacen("Plain", "Link", 1)
        );
    }

    #[test]
    fn links_keep_what_was_given() {
        let mut values: FieldValues<'_> = [None; 10];
        let empty = Link::new("", &values, BTreeMap::new());
        check(
            &empty,
            &Plain {
                app: String::new(),
                fields: BTreeMap::new(),
                ignored: BTreeMap::new(),
            },
        );

        values[field::AUTOLOGIN_TOKEN_URL] = Some("https://b.test/token?x=“é”");
        values[field::HIDE] = Some("");
        values[field::TOKEN] = Some("secret");
        values[field::URL] = Some("");
        let ignored = BTreeMap::from([("description".to_owned(), "d\"q".to_owned())]);
        let mut link = Link::new("PANELINK_x", &values, ignored.clone());
        let mut plain = Plain {
            app: "PANELINK_x".to_owned(),
            fields: [
                ("autologin_token_url", "https://b.test/token?x=“é”"),
                ("hide", ""),
                ("token", "secret"),
                ("url", ""),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ignored,
        };
        check(&link, &plain);
        assert_eq!(link.non_empty("url"), None);
        assert_eq!(link.non_empty("token"), Some("secret"));
        assert!(!link.user_config().contains_key("token"));
        assert_eq!(link.user_config().len(), 3);

        link.set(field::TOKEN, "rotated");
        link.set(field::LABEL, "L");
        plain
            .fields
            .insert("token".to_owned(), "rotated".to_owned());
        plain.fields.insert("label".to_owned(), "L".to_owned());
        check(&link, &plain);
        assert_eq!(
            link,
            Link::new("PANELINK_x", &link.values(), plain.ignored.clone())
        );
        assert_ne!(link, empty);
    }
}
