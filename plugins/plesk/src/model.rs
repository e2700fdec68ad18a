//! The contract's 0.2 types this plugin's logic works on that the WHM crate's mirrors do not
//! have yet, as plain Rust (the component glue moves fields between these and the bindings).

pub use panelink_whm::model::{
    AccountOutcome, ListedLink, Operation, OperationResult, PluginError, Server, Support,
};

/// A link as the host sends it once per call (`link-template`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTemplate {
    /// One of the plugin's scopes.
    pub scope: String,
    /// The label to show.
    pub label: String,
    /// The 1-based display position.
    pub order: u32,
    /// Empty for static-link plugins.
    pub token_url: String,
    /// The absolute URL, with `{service-id}` and `{handle}` placeholders.
    pub url: String,
}

/// The credential an account's links carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// For token-exchange plugins (never sent to this one).
    Token {
        /// Identifies the credential.
        subscriber_id: String,
        /// Its secret.
        secret: String,
    },
    /// The opaque per-service handle a static link carries.
    LinkHandle(String),
}

/// The work for one account (`account-work`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountWork {
    /// The panel's user name: the Plesk customer's login.
    pub username: String,
    /// The account's main domain, for messages.
    pub domain: String,
    /// The billing service's id (`{service-id}`).
    pub service_id: String,
    /// The account's credential.
    pub credential: Credential,
    /// Create the group first (Plesk has no groups: nothing to do).
    pub ensure_group: bool,
    /// Scopes of the templates to create or replace, in order.
    pub links: Vec<String>,
    /// Scopes whose links are to be removed.
    pub remove: Vec<String>,
}

/// An account found on the server (`panel-account`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelAccount {
    /// The customer's login.
    pub username: String,
    /// The customer's first subscription (empty when it has none).
    pub domain: String,
    /// Whether the customer is not active.
    pub suspended: bool,
    /// The owner's login, when it is not the administrator.
    pub owner: Option<String>,
}
