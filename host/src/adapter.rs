//! The plugin contract as plain host types.
//!
//! These follow the newest contract (`wit/0.2/adapter.wit`) without naming wasmtime: storage,
//! sync and the API use them, and only the runtime's per-version adapter layers
//! (`runtime::bindings::v0_1`, `runtime::bindings::v0_2`) convert between them and the generated
//! bindings of each contract version.

use std::fmt;

/// The three groups links are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkGroup {
    /// Upgrades and domain ordering.
    Ordering,
    /// Tickets, announcements, downloads, knowledgebase, network status.
    Support,
    /// Profile, billing, e-mails and invoices.
    Account,
}

impl LinkGroup {
    /// The group's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkGroup::Ordering => "ordering",
            LinkGroup::Support => "support",
            LinkGroup::Account => "account",
        }
    }
}

/// One link a plugin can place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// Client-area scope, e.g. `clientarea:invoices`.
    pub scope: String,
    /// Group the link is shown in.
    pub group: LinkGroup,
    /// Label shown until an admin renames the link.
    pub default_label: String,
    /// A panel-specific feature name (cPanel's `implements`), when the panel has one.
    pub implements: Option<String>,
    /// Default destination path in the client area (`{service_id}` is filled in).
    pub destination: String,
    /// The link's icon, a PNG image (checked at load), when the plugin ships one.
    pub icon: Option<Vec<u8>>,
}

/// How the host presents a server's credentials to its panel (the contract's `panel-auth`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

impl PanelAuth {
    /// Headers a plugin may not take for its credentials: set by the host or by HTTP itself.
    const RESERVED: [&'static str; 12] = [
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "cookie",
        "accept",
        "user-agent",
    ];

    /// Checks the declaration: a scheme of 1–32 letters, digits or `-`; header names that are
    /// HTTP tokens, not reserved and (for two) distinct.
    pub fn check(&self) -> Result<(), String> {
        let header = |name: &str| -> Result<(), String> {
            let lower = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || Self::RESERVED.contains(&lower.as_str())
                || lower.starts_with("proxy-")
                || lower == "authorization" && !matches!(self, PanelAuth::TokenHeader(_))
            {
                return Err(format!(
                    "the credential header {name:?} is not a header name a plugin may use"
                ));
            }
            Ok(())
        };
        match self {
            PanelAuth::SchemeUserToken(scheme) => {
                if scheme.is_empty()
                    || scheme.len() > 32
                    || !scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(format!(
                        "the authorization scheme {scheme:?} must be 1 to 32 letters, digits or -"
                    ));
                }
                Ok(())
            }
            PanelAuth::Bearer | PanelAuth::Basic => Ok(()),
            PanelAuth::LoginHeaders(login, token) => {
                header(login)?;
                header(token)?;
                if login.eq_ignore_ascii_case(token) {
                    return Err("the two credential headers must differ".into());
                }
                Ok(())
            }
            PanelAuth::TokenHeader(name) => header(name),
        }
    }

    /// The credential headers for a server's user name and token: (lower-case name, value).
    pub fn headers(&self, username: &str, token: &str) -> Vec<(String, String)> {
        use base64::Engine as _;
        let authorization = |value: String| vec![("authorization".to_owned(), value)];
        match self {
            PanelAuth::SchemeUserToken(scheme) => {
                authorization(format!("{scheme} {username}:{token}"))
            }
            PanelAuth::Bearer => authorization(format!("Bearer {token}")),
            PanelAuth::Basic => authorization(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{token}"))
            )),
            PanelAuth::LoginHeaders(login, secret) => vec![
                (login.to_ascii_lowercase(), username.to_owned()),
                (secret.to_ascii_lowercase(), token.to_owned()),
            ],
            PanelAuth::TokenHeader(name) => vec![(name.to_ascii_lowercase(), token.to_owned())],
        }
    }

    /// As the admin API shows it, e.g. `scheme-user-token whm`, `login-headers A B`.
    pub fn describe(&self) -> String {
        match self {
            PanelAuth::SchemeUserToken(scheme) => format!("scheme-user-token {scheme}"),
            PanelAuth::Bearer => "bearer".into(),
            PanelAuth::Basic => "basic".into(),
            PanelAuth::LoginHeaders(a, b) => format!("login-headers {a} {b}"),
            PanelAuth::TokenHeader(name) => format!("token-header {name}"),
        }
    }
}

/// How a panel signs a customer in when a link is clicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignInStyle {
    /// The panel posts the link's credential to the host's token endpoint (cPanel).
    TokenExchange,
    /// The link is a fixed URL per account holding an opaque handle (Plesk's custom buttons).
    StaticLink,
}

impl SignInStyle {
    /// The style's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SignInStyle::TokenExchange => "token-exchange",
            SignInStyle::StaticLink => "static-link",
        }
    }
}

/// A plugin's own limits per call and per panel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most accounts per `provision`/`deprovision` call.
    pub accounts_per_call: u32,
    /// Most panel operations the plugin puts in one HTTP request.
    pub operations_per_request: u32,
}

/// An HTTP method a plugin may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HttpMethod {
    /// GET
    Get,
    /// POST
    Post,
}

impl HttpMethod {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

/// How one request carries several panel calls, and the calls a plugin may make in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tunnel {
    /// WHM API 1 `batch`: `command=<function>?<query>` fields; the functions allowed.
    WhmBatch(Vec<String>),
    /// An XML packet (Plesk's XML API); the `operator/operation`s allowed. Declarable, not yet
    /// checked: the runtime refuses a plugin declaring one.
    XmlPacket(Vec<String>),
}

impl Tunnel {
    /// The protocol's name as the API spells it.
    pub fn protocol(&self) -> &'static str {
        match self {
            Tunnel::WhmBatch(_) => "whm-batch",
            Tunnel::XmlPacket(_) => "xml-packet",
        }
    }

    /// The calls allowed inside.
    pub fn calls(&self) -> &[String] {
        match self {
            Tunnel::WhmBatch(calls) | Tunnel::XmlPacket(calls) => calls,
        }
    }
}

/// One kind of request a plugin declares it sends to its panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRequest {
    /// The method.
    pub method: HttpMethod,
    /// The exact URL path, e.g. `/json-api/applist`.
    pub path: String,
    /// `None`: the path names the one call; otherwise the calls the request may tunnel.
    pub calls: Option<Tunnel>,
}

/// A plugin's self-description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Application id, e.g. `cpanel`.
    pub id: String,
    /// Display name, e.g. `cPanel`.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// One sentence for admins.
    pub description: String,
    /// The contract version the plugin was built against.
    pub contract_version: String,
    /// Supported links in default display order.
    pub links: Vec<LinkSpec>,
    /// Every request the plugin may send to its panel (checked at load, enforced per request).
    pub allowed_requests: Vec<AllowedRequest>,
    /// How the host presents the server's credentials to its panel.
    pub auth: PanelAuth,
    /// How its panel signs customers in.
    pub sign_in: SignInStyle,
    /// Its limits, which sync batches are sized by.
    pub limits: Limits,
}

/// A secret that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret value, moved out (to hand it to the plugin without a copy).
    pub fn into_exposed(self) -> String {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The server a call works on, with the credentials the host injects into its requests.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    /// Host name or IP address.
    pub hostname: String,
    /// API port.
    pub port: u16,
    /// TLS or not.
    pub secure: bool,
    /// API user name.
    pub username: String,
    /// API token; given to the HTTP layer only, never to the plugin.
    pub api_token: Secret,
}

impl ServerTarget {
    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.secure { "https" } else { "http" }
    }
}

/// Settings common to every account of one call.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Prefix of panel-side app names, e.g. `PANELINK`.
    pub app_prefix: String,
    /// Panel-side group id, e.g. `panelink`.
    pub group_id: String,
    /// Group label, e.g. `Billing & Support`.
    pub group_label: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            app_prefix: "PANELINK".into(),
            group_id: "panelink".into(),
            group_label: "Billing & Support".into(),
        }
    }
}

/// What an account's links carry to sign the customer in.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `token-exchange`: the per-service credential the panel posts to the token endpoint.
    Token {
        /// `subscriber_unique_id`.
        subscriber_id: String,
        /// `token`.
        secret: Secret,
    },
    /// `static-link`: the per-service handle in the link's URL (a bearer value).
    LinkHandle(Secret),
}

/// A link as every account of one provisioning call gets it (sent once per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTemplate {
    /// Scope.
    pub scope: String,
    /// Label.
    pub label: String,
    /// 1-based display position.
    pub order: u32,
    /// The token endpoint the panel posts to (empty for static links).
    pub token_url: String,
    /// The link's URL, with the placeholders [`SERVICE_ID_PLACEHOLDER`] and
    /// [`HANDLE_PLACEHOLDER`].
    pub url: String,
}

/// Replaced in a template's `url` by the account's service id.
pub const SERVICE_ID_PLACEHOLDER: &str = "{service-id}";
/// Replaced in a static-link template's `url` by the account's link handle.
pub const HANDLE_PLACEHOLDER: &str = "{handle}";

impl LinkTemplate {
    /// The template's `url` for one account: every placeholder replaced by the account's value
    /// (what a plugin does; the 0.1 adapter layer does it for 0.1 plugins).
    pub fn url_for(&self, service_id: &str, handle: Option<&str>) -> String {
        let url = self.url.replace(SERVICE_ID_PLACEHOLDER, service_id);
        match handle {
            Some(h) => url.replace(HANDLE_PLACEHOLDER, h),
            None => url,
        }
    }
}

/// The work for one account.
#[derive(Debug, Clone)]
pub struct AccountWork {
    /// Panel user name (may be empty).
    pub username: String,
    /// Main domain, for messages.
    pub domain: String,
    /// The service's id (replaces `{service-id}` in the templates' URLs).
    pub service_id: String,
    /// What the links carry.
    pub credential: Credential,
    /// Create or replace the group first.
    pub ensure_group: bool,
    /// Scopes of the call's templates to create or replace, in order.
    pub links: Vec<String>,
    /// Scopes to remove.
    pub remove: Vec<String>,
}

/// A hosting account a panel lists (for import).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelAccount {
    /// User name on the panel (may be empty when the panel's entry lacked one).
    pub username: String,
    /// Main domain (may be empty).
    pub domain: String,
    /// Suspended on the panel.
    pub suspended: bool,
    /// Contact e-mail, when the panel has a usable one.
    pub email: Option<String>,
    /// The owning panel user (a reseller), when the panel has one.
    pub owner: Option<String>,
}

/// One panel operation on an account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Create or replace the group.
    EnsureGroup,
    /// Create or replace the link of this scope.
    UpsertLink(String),
    /// Remove the link of this scope.
    RemoveLink(String),
    /// Remove the group.
    RemoveGroup,
}

/// The result of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationResult {
    /// The operation.
    pub op: Operation,
    /// `None` when done; else the panel's error text.
    pub error: Option<String>,
}

/// What happened on one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOutcome {
    /// User name as given.
    pub username: String,
    /// One result per attempted operation.
    pub results: Vec<OperationResult>,
}

impl AccountOutcome {
    /// The error texts of this account's failed operations.
    pub fn errors(&self) -> impl Iterator<Item = &str> {
        self.results.iter().filter_map(|r| r.error.as_deref())
    }
}

/// A link found on an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedLink {
    /// Panel-side app name.
    pub app: String,
    /// Our scope, when the app is ours.
    pub scope: Option<String>,
}

/// A server's answer to the support check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// Whether links can be provisioned there.
    pub supported: bool,
    /// Why, for admins.
    pub detail: String,
}

/// Why a plugin failed a whole call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// Worth retrying: timeout, connection, HTTP 5xx.
    #[error("transient: {0}")]
    Transient(String),
    /// The panel refused the request as a whole.
    #[error("panel refused: {0}")]
    Panel(String),
    /// The server does not support what was asked.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The host passed input the plugin cannot use.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Log levels of the plugin contract and of the application log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Start and completion of processes.
    Debug,
    /// A server does not support links.
    Info,
    /// No server supports links.
    Notice,
    /// An error from the panel or the plugin.
    Warning,
}

impl LogLevel {
    /// The level as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
        }
    }
}

/// One line a plugin logged during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLog {
    /// Level.
    pub level: LogLevel,
    /// Message.
    pub message: String,
}
