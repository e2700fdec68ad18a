//! Plain Rust mirrors of the contract's types (`panelink:adapter/types`).
//!
//! The logic works on these rather than on the generated bindings so that it compiles, tests and
//! benchmarks natively; the component glue converts between the two by moving fields.

/// The group a link is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkGroup {
    /// Upgrades and domain ordering.
    Ordering,
    /// Tickets, announcements, downloads, knowledgebase, network status.
    Support,
    /// Profile, billing, e-mails and invoices.
    Account,
}

/// One link a plugin can place in its panel (`link-spec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// The client-area scope, e.g. `clientarea:invoices`.
    pub scope: String,
    /// The group the link is shown in.
    pub group: LinkGroup,
    /// The label shown when the admin has not renamed the link.
    pub default_label: String,
    /// The panel's `implements` value (empty when it has none).
    pub implements: String,
    /// The default destination path; `{service_id}` is filled in by the host.
    pub destination: String,
}

/// A plugin's self-description (`description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The application id, e.g. `cpanel`.
    pub id: String,
    /// The display name, e.g. `cPanel`.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// One sentence for admins.
    pub description: String,
    /// The contract version the plugin was built against.
    pub contract_version: String,
    /// Every link, in default display order.
    pub links: Vec<LinkSpec>,
}

/// The server being worked on (`server`); no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Host name or IP address.
    pub hostname: String,
    /// TCP port of WHM's API.
    pub port: u16,
    /// Whether the API is reached over TLS.
    pub secure: bool,
    /// The API user name (not secret).
    pub username: String,
}

/// Settings shared by every account of one call (`settings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Prefix of the panel-side app names, e.g. `PANELINK`.
    pub app_prefix: String,
    /// The panel-side id of the integration group, e.g. `panelink`.
    pub group_id: String,
    /// The label of the integration group.
    pub group_label: String,
    /// The most WHM calls one HTTP request (a `batch`) may carry.
    pub max_commands_per_request: u32,
}

/// The credential a link carries (`credential`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// `subscriber_unique_id`.
    pub subscriber_id: String,
    /// `token`: secret, never logged.
    pub secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("subscriber_id", &self.subscriber_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// One link to create or replace (`link-push`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPush {
    /// One of the plugin's scopes.
    pub scope: String,
    /// The label to show.
    pub label: String,
    /// The 1-based display position.
    pub order: u32,
    /// `autologin_token_url`.
    pub token_url: String,
    /// The fallback `url`.
    pub url: String,
}

/// The work for one account (`account-work`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountWork {
    /// The panel's user name (may be empty).
    pub username: String,
    /// The account's main domain, for messages.
    pub domain: String,
    /// The credential the links carry.
    pub credential: Credential,
    /// Create or replace the integration group before the links.
    pub ensure_group: bool,
    /// Links to create or replace, in order.
    pub links: Vec<LinkPush>,
    /// Scopes whose links are to be removed.
    pub remove: Vec<String>,
}

/// One panel operation on an account (`operation`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Create or replace the integration group.
    EnsureGroup,
    /// Create or replace the link of this scope.
    UpsertLink(String),
    /// Remove the link of this scope.
    RemoveLink(String),
    /// Remove the integration group.
    RemoveGroup,
}

/// The panel's answer to one operation (`operation-result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationResult {
    /// The operation.
    pub op: Operation,
    /// `None` when the panel did it; otherwise its error text, unchanged.
    pub error: Option<String>,
}

/// What happened on one account (`account-outcome`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOutcome {
    /// The account's user name, as given.
    pub username: String,
    /// One result per attempted operation, in order.
    pub results: Vec<OperationResult>,
}

/// A link found on an account (`listed-link`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedLink {
    /// The panel-side app name.
    pub app: String,
    /// Its scope when the name carries our prefix and maps to one of our links.
    pub scope: Option<String>,
}

/// Whether a server supports Application Links (`support`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// True when the server can take this plugin's links.
    pub supported: bool,
    /// A sentence for admins.
    pub detail: String,
}

/// Why a whole call failed (`plugin-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// Worth retrying: timeout, connection failure, HTTP 5xx.
    Transient(String),
    /// The panel refused the request as a whole; retrying will not help.
    Panel(String),
    /// The server does not support what was asked.
    Unsupported(String),
    /// The host passed input the plugin cannot use.
    InvalidInput(String),
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transient(m) => write!(f, "transient: {m}"),
            Self::Panel(m) => write!(f, "panel: {m}"),
            Self::Unsupported(m) => write!(f, "unsupported: {m}"),
            Self::InvalidInput(m) => write!(f, "invalid input: {m}"),
        }
    }
}

impl std::error::Error for PluginError {}
