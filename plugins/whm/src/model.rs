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
    /// cPanel's `implements` value, when the link has one of its own.
    pub implements: Option<String>,
    /// The default destination path; `{service_id}` is filled in by the host.
    pub destination: String,
    /// The link's icon (PNG bytes).
    pub icon: Option<Vec<u8>>,
}

/// How the host presents the server's credentials (`panel-auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PanelAuth {
    /// `Authorization: <scheme> <user>:<token>` (WHM: `whm`).
    SchemeUserToken(String),
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Basic base64(<user>:<token>)`.
    Basic,
    /// The user name and the token in two headers of these names.
    LoginHeaders(String, String),
    /// The token alone in a header of this name.
    TokenHeader(String),
}

/// How the panel signs a customer in (`sign-in-style`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInStyle {
    /// The panel posts the credential to the token URL (cPanel).
    TokenExchange,
    /// A fixed URL per account.
    StaticLink,
}

/// The plugin's own limits (`limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most accounts per call.
    pub accounts_per_call: u32,
    /// Most panel operations (WHM commands) per request (a `batch`).
    pub operations_per_request: u32,
}

/// An HTTP method (`method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
}

/// Several panel calls in one request, and the calls allowed in it (`tunnel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tunnel {
    /// WHM API 1 `batch`: the functions its `command` fields may name.
    WhmBatch(Vec<String>),
    /// An XML packet: the `operator/operation`s allowed (not used by the WHM plugins).
    XmlPacket(Vec<String>),
}

/// One kind of request the plugin sends to its panel (`allowed-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRequest {
    /// The method.
    pub method: Method,
    /// The exact URL path.
    pub path: String,
    /// The calls the request tunnels, when it tunnels any.
    pub calls: Option<Tunnel>,
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
    /// Every request the plugin may send; the host refuses any other.
    pub allowed_requests: Vec<AllowedRequest>,
    /// How the host presents the server's credentials to the panel.
    pub auth: PanelAuth,
    /// How the panel signs customers in.
    pub sign_in: SignInStyle,
    /// The plugin's limits.
    pub limits: Limits,
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
    /// The most WHM calls one HTTP request (a `batch`) may carry. Not from the host: the
    /// plugin's own `limits.operations-per-request` ([`crate::LIMITS`]), filled in by the
    /// component glue; tests and benchmarks choose their own.
    pub max_commands_per_request: u32,
}

/// What an account's links carry (`credential`).
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `token-exchange`: what the panel posts to the token URL.
    Token {
        /// `subscriber_unique_id`.
        subscriber_id: String,
        /// `token`: secret, never logged.
        secret: String,
    },
    /// `static-link`: a link handle (not usable on WHM, which exchanges tokens).
    LinkHandle(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token { subscriber_id, .. } => f
                .debug_struct("Token")
                .field("subscriber_id", subscriber_id)
                .field("secret", &"<redacted>")
                .finish(),
            Self::LinkHandle(_) => f.write_str("LinkHandle(<redacted>)"),
        }
    }
}

/// A link as every account of one call gets it (`link-template`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTemplate {
    /// One of the plugin's scopes.
    pub scope: String,
    /// The label to show.
    pub label: String,
    /// The 1-based display position.
    pub order: u32,
    /// `autologin_token_url`.
    pub token_url: String,
    /// The fallback `url`, with `{service-id}` to fill in per account.
    pub url: String,
}

/// Replaced in a template's `url` by the account's service id.
pub const SERVICE_ID_PLACEHOLDER: &str = "{service-id}";

/// One hosting account on the server (`panel-account`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelAccount {
    /// WHM's `user`.
    pub username: String,
    /// WHM's `domain`.
    pub domain: String,
    /// WHM's `suspended`.
    pub suspended: bool,
    /// WHM's `email`, when it is an address.
    pub email: Option<String>,
    /// WHM's `owner`, when it is a reseller (not `root`, not the account itself).
    pub owner: Option<String>,
}

/// The work for one account (`account-work`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountWork {
    /// The panel's user name (may be empty).
    pub username: String,
    /// The account's main domain, for messages.
    pub domain: String,
    /// The billing service's id (fills `{service-id}` in the templates' URLs).
    pub service_id: String,
    /// The credential the links carry.
    pub credential: Credential,
    /// Create or replace the integration group before the links.
    pub ensure_group: bool,
    /// Scopes of the call's templates to create or replace, in order.
    pub links: Vec<String>,
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
