//! The host's configuration: keys, defaults, and the three layers they come from.
//!
//! Precedence (lowest first): built-in defaults, the TOML file given with `--config`, environment
//! variables `PANELINK_<KEY>` (upper case), command-line flags. Each source is read into a
//! [`Layer`] of optional values; [`Config::resolve`] stacks them and fills in the defaults.
//!
//! Keys (see `api.md`): `listen`, `public_url`, `client_area_url`, `database_url`, `data_dir`,
//! `secret_key`, `plugin_dir`, plus:
//! - `log_format`: `pretty` (default) or `json`;
//! - `log_level`: a tracing filter such as `info` (default) or `panelink=debug,info`;
//! - `max_body_bytes`: the JSON body limit of the admin API (default 1 MiB);
//! - `max_plugin_bytes`: the largest plugin upload (default 64 MiB);
//! - `sync_workers`: servers the sync engine of this host works on at once (default 16);
//! - `sync_drift_interval`: seconds between drift checks, which list every account's links
//!   and repair differences (default 21600, six hours; 0 turns it off);
//! - `sync_retry_window`: seconds a server may go on failing transiently without progress
//!   before its part of a sync fails (default 900);
//! - `sync_failed_retry_interval`: seconds between automatic retries of servers whose last
//!   sync failed (default 600; 0 turns them off);
//! - `sso_token_ttl`: lifetime of a single sign-on access token in seconds (default 60);
//! - `portal_session_ttl`: lifetime of a client portal session in seconds (default 28800);
//! - `console_session_ttl`: lifetime of an admin console session in seconds (default 28800; a
//!   session never outlives the API token it was opened with);
//! - `sso_rate_limit_per_address` / `sso_rate_limit_per_credential`: token requests a minute one
//!   source address (default 6000) / one link credential (default 60) may make; 0 turns the
//!   limit off;
//! - `sso_redeem_rate_limit_per_address`: sign-in redemptions (`GET /oauth/sso`) a minute one
//!   source address may make (default 120; 0 turns the limit off), checked before anything is
//!   looked up;
//! - `trusted_proxies`: the reverse proxies (addresses or CIDR blocks, a TOML array or, in the
//!   environment, separated by whitespace or commas) whose `X-Forwarded-For` is believed; a
//!   request through one counts as coming from the rightmost address of that header that is not
//!   a trusted proxy (see [`crate::net`]). Empty (the default): the header is ignored. Every
//!   per-address rate limit and the client activity log use that address; IPv6 addresses share
//!   a limit per /64;
//! - `plugin_call_timeout`: wall-clock seconds one plugin call may take, panel requests and
//!   waits included (default 300; a plugin's `describe` at load gets at most 10 of them);
//! - `plugin_max_host_calls`: calls into the host (panel requests, log lines, WASI calls) one
//!   plugin call may make (default 5000);
//! - `plugin_cache_dir`: where compiled plugins are cached, so that a restart (or a version
//!   activated again) does not compile them again (default `<data_dir>/wasm-cache`; an empty
//!   value turns the cache off). Created with mode 0700. Entries are keyed by the component's
//!   bytes and the engine's version and settings, and used only when their seal (HMAC with a
//!   key derived from the secret key) matches; anything else there is deleted and compiled
//!   afresh (see `runtime/cache.rs`);
//! - `sso_destinations`: client-area paths per scope overriding the plugins' defaults, a TOML
//!   table (`"clientarea:invoices" = "/billing/invoices"`) or, in the environment, whitespace
//!   separated `scope=path` pairs; `{service_id}` is filled in. Each must be a path starting with
//!   exactly one `/` (no `\\`, spaces or control characters), so that a sign-in never leaves the
//!   client area;
//! - `admin_token_ttl`: seconds an admin API token is valid after it is issued (default 7776000,
//!   90 days; 0: tokens do not expire);
//! - `http_header_timeout`: seconds a connection may take to send a request's header, and to send
//!   the next one's once it has started (default 15);
//! - `http_body_timeout`: seconds a request may take to send its whole body (default 60; raise it
//!   for large plugin uploads over slow links);
//! - `http_idle_timeout`: seconds a kept-alive connection may stay idle between requests
//!   (default 60);
//! - `http_max_connections`: connections served at once; beyond them a connection is answered
//!   503 and closed (default 1024);
//! - `trusted_keys`: the vendors' public keys plugin uploads must be signed with, a TOML array of
//!   tables (`trusted_keys = [{ name = "acme", public_key = "ed25519:…" }]`) or, in the
//!   environment, whitespace separated `name=ed25519:…` pairs. Empty (the default): signatures
//!   are optional. Once any key is configured, an upload (API or `panelink plugin install`)
//!   without a signature that one of these keys made over the component's digest, application
//!   and version (see [`crate::signing`]) is refused, and activating a stored upload checks its
//!   signature against the keys configured then. `panelink plugin keygen` prints a key in this
//!   form; the name is what the API reports as a version's `signed_by`. Components in
//!   `plugin_dir` are the operator's own and need no signature;
//! - `plugin_fault_threshold`: consecutive calls of one plugin version that trap, run out of
//!   time or memory, or are ended for a capability violation, after which the version is flagged
//!   `failed` (logged, audited, shown by the API with its last error); default 5, 0 never flags;
//! - `plugin_auto_rollback`: `true` rolls an application back to its previous good version as
//!   soon as the active one is flagged (logged and audited as the `system` actor); default
//!   `false`: a flagged version keeps serving until an admin acts.
//!
//! `secret_key` has no flag (a flag would show in the process list): give it in the file or the
//! environment. The `Debug` form of [`Config`] hides `secret_key` and the password of
//! `database_url`; use [`redact_url`] for anything else that might carry a password.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::adapter::Secret;
use crate::signing::{PublicKey, TrustedKey, TrustedKeys};

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// A value is not acceptable.
    #[error("configuration key {key}: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// One source's values; `None` means "not set here".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// `listen`.
    pub listen: Option<String>,
    /// `public_url`.
    pub public_url: Option<String>,
    /// `client_area_url`.
    pub client_area_url: Option<String>,
    /// `database_url`.
    pub database_url: Option<String>,
    /// `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `secret_key`.
    pub secret_key: Option<String>,
    /// `plugin_dir`.
    pub plugin_dir: Option<PathBuf>,
    /// `plugin_cache_dir` (empty: no cache).
    pub plugin_cache_dir: Option<PathBuf>,
    /// `log_format`.
    pub log_format: Option<String>,
    /// `log_level`.
    pub log_level: Option<String>,
    /// `max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// `max_plugin_bytes`.
    pub max_plugin_bytes: Option<u64>,
    /// `sync_workers`.
    pub sync_workers: Option<u64>,
    /// `sync_drift_interval` (seconds, 0: off).
    pub sync_drift_interval: Option<u64>,
    /// `sync_retry_window` (seconds).
    pub sync_retry_window: Option<u64>,
    /// `sync_failed_retry_interval` (seconds, 0: off).
    pub sync_failed_retry_interval: Option<u64>,
    /// `sso_token_ttl` (seconds).
    pub sso_token_ttl: Option<u64>,
    /// `portal_session_ttl` (seconds).
    pub portal_session_ttl: Option<u64>,
    /// `console_session_ttl` (seconds).
    pub console_session_ttl: Option<u64>,
    /// `sso_rate_limit_per_address` (requests a minute, 0: off).
    pub sso_rate_limit_per_address: Option<u64>,
    /// `sso_rate_limit_per_credential` (requests a minute, 0: off).
    pub sso_rate_limit_per_credential: Option<u64>,
    /// `sso_redeem_rate_limit_per_address` (requests a minute, 0: off).
    pub sso_redeem_rate_limit_per_address: Option<u64>,
    /// `trusted_proxies` (addresses or CIDR blocks).
    pub trusted_proxies: Option<Vec<String>>,
    /// `sso_destinations` (scope → client-area path).
    pub sso_destinations: Option<BTreeMap<String, String>>,
    /// `admin_token_ttl` (seconds, 0: no expiry).
    pub admin_token_ttl: Option<u64>,
    /// `http_header_timeout` (seconds).
    pub http_header_timeout: Option<u64>,
    /// `http_body_timeout` (seconds).
    pub http_body_timeout: Option<u64>,
    /// `http_idle_timeout` (seconds).
    pub http_idle_timeout: Option<u64>,
    /// `http_max_connections`.
    pub http_max_connections: Option<u64>,
    /// `plugin_call_timeout` (seconds).
    pub plugin_call_timeout: Option<u64>,
    /// `plugin_max_host_calls`.
    pub plugin_max_host_calls: Option<u64>,
    /// `trusted_keys` (named public keys of plugin vendors).
    pub trusted_keys: Option<Vec<TrustedKeyEntry>>,
    /// `plugin_fault_threshold` (consecutive faulting calls, 0: never flag).
    pub plugin_fault_threshold: Option<u64>,
    /// `plugin_auto_rollback`.
    pub plugin_auto_rollback: Option<bool>,
}

/// One `trusted_keys` entry as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyEntry {
    /// The key's name (reported as `signed_by`).
    pub name: String,
    /// `ed25519:<base64 of the 32-byte key>`.
    pub public_key: String,
}

impl Layer {
    /// Read a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| Error::Parse {
            path: path.display().to_string(),
            message: e.message().to_owned(),
        })
    }

    /// Read `PANELINK_<KEY>` variables from an environment (pass `std::env::vars()`).
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, Error> {
        let mut layer = Layer::default();
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("PANELINK_") else {
                continue;
            };
            match key {
                "LISTEN" => layer.listen = Some(value),
                "PUBLIC_URL" => layer.public_url = Some(value),
                "CLIENT_AREA_URL" => layer.client_area_url = Some(value),
                "DATABASE_URL" => layer.database_url = Some(value),
                "DATA_DIR" => layer.data_dir = Some(value.into()),
                "SECRET_KEY" => layer.secret_key = Some(value),
                "PLUGIN_DIR" => layer.plugin_dir = Some(value.into()),
                "PLUGIN_CACHE_DIR" => layer.plugin_cache_dir = Some(value.into()),
                "LOG_FORMAT" => layer.log_format = Some(value),
                "LOG_LEVEL" => layer.log_level = Some(value),
                "MAX_BODY_BYTES" => {
                    layer.max_body_bytes = Some(parse_env_number("max_body_bytes", &value)?)
                }
                "MAX_PLUGIN_BYTES" => {
                    layer.max_plugin_bytes = Some(parse_env_number("max_plugin_bytes", &value)?)
                }
                "SYNC_WORKERS" => {
                    layer.sync_workers = Some(parse_env_number("sync_workers", &value)?)
                }
                "SYNC_DRIFT_INTERVAL" => {
                    layer.sync_drift_interval =
                        Some(parse_env_number("sync_drift_interval", &value)?)
                }
                "SYNC_RETRY_WINDOW" => {
                    layer.sync_retry_window = Some(parse_env_number("sync_retry_window", &value)?)
                }
                "SYNC_FAILED_RETRY_INTERVAL" => {
                    layer.sync_failed_retry_interval =
                        Some(parse_env_number("sync_failed_retry_interval", &value)?)
                }
                "SSO_TOKEN_TTL" => {
                    layer.sso_token_ttl = Some(parse_env_number("sso_token_ttl", &value)?)
                }
                "PORTAL_SESSION_TTL" => {
                    layer.portal_session_ttl = Some(parse_env_number("portal_session_ttl", &value)?)
                }
                "CONSOLE_SESSION_TTL" => {
                    layer.console_session_ttl =
                        Some(parse_env_number("console_session_ttl", &value)?)
                }
                "SSO_RATE_LIMIT_PER_ADDRESS" => {
                    layer.sso_rate_limit_per_address =
                        Some(parse_env_number("sso_rate_limit_per_address", &value)?)
                }
                "TRUSTED_KEYS" => layer.trusted_keys = Some(parse_env_trusted_keys(&value)?),
                "PLUGIN_FAULT_THRESHOLD" => {
                    layer.plugin_fault_threshold =
                        Some(parse_env_number("plugin_fault_threshold", &value)?)
                }
                "PLUGIN_AUTO_ROLLBACK" => {
                    layer.plugin_auto_rollback =
                        Some(parse_env_bool("plugin_auto_rollback", &value)?)
                }
                "SSO_RATE_LIMIT_PER_CREDENTIAL" => {
                    layer.sso_rate_limit_per_credential =
                        Some(parse_env_number("sso_rate_limit_per_credential", &value)?)
                }
                "SSO_REDEEM_RATE_LIMIT_PER_ADDRESS" => {
                    layer.sso_redeem_rate_limit_per_address = Some(parse_env_number(
                        "sso_redeem_rate_limit_per_address",
                        &value,
                    )?)
                }
                "TRUSTED_PROXIES" => {
                    layer.trusted_proxies = Some(
                        value
                            .split(|c: char| c == ',' || c.is_whitespace())
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    )
                }
                "SSO_DESTINATIONS" => {
                    layer.sso_destinations = Some(parse_env_destinations(&value)?)
                }
                "ADMIN_TOKEN_TTL" => {
                    layer.admin_token_ttl = Some(parse_env_number("admin_token_ttl", &value)?)
                }
                "HTTP_HEADER_TIMEOUT" => {
                    layer.http_header_timeout =
                        Some(parse_env_number("http_header_timeout", &value)?)
                }
                "HTTP_BODY_TIMEOUT" => {
                    layer.http_body_timeout = Some(parse_env_number("http_body_timeout", &value)?)
                }
                "HTTP_IDLE_TIMEOUT" => {
                    layer.http_idle_timeout = Some(parse_env_number("http_idle_timeout", &value)?)
                }
                "HTTP_MAX_CONNECTIONS" => {
                    layer.http_max_connections =
                        Some(parse_env_number("http_max_connections", &value)?)
                }
                "PLUGIN_CALL_TIMEOUT" => {
                    layer.plugin_call_timeout =
                        Some(parse_env_number("plugin_call_timeout", &value)?)
                }
                "PLUGIN_MAX_HOST_CALLS" => {
                    layer.plugin_max_host_calls =
                        Some(parse_env_number("plugin_max_host_calls", &value)?)
                }
                // Other PANELINK_* variables (e.g. the test suite's) are not configuration.
                _ => {}
            }
        }
        Ok(layer)
    }

    /// `self` with every value `over` sets replacing ours.
    pub fn overridden_by(self, over: Layer) -> Layer {
        Layer {
            listen: over.listen.or(self.listen),
            public_url: over.public_url.or(self.public_url),
            client_area_url: over.client_area_url.or(self.client_area_url),
            database_url: over.database_url.or(self.database_url),
            data_dir: over.data_dir.or(self.data_dir),
            secret_key: over.secret_key.or(self.secret_key),
            plugin_dir: over.plugin_dir.or(self.plugin_dir),
            plugin_cache_dir: over.plugin_cache_dir.or(self.plugin_cache_dir),
            log_format: over.log_format.or(self.log_format),
            log_level: over.log_level.or(self.log_level),
            max_body_bytes: over.max_body_bytes.or(self.max_body_bytes),
            max_plugin_bytes: over.max_plugin_bytes.or(self.max_plugin_bytes),
            sync_workers: over.sync_workers.or(self.sync_workers),
            sync_drift_interval: over.sync_drift_interval.or(self.sync_drift_interval),
            sync_retry_window: over.sync_retry_window.or(self.sync_retry_window),
            sync_failed_retry_interval: over
                .sync_failed_retry_interval
                .or(self.sync_failed_retry_interval),
            sso_token_ttl: over.sso_token_ttl.or(self.sso_token_ttl),
            portal_session_ttl: over.portal_session_ttl.or(self.portal_session_ttl),
            console_session_ttl: over.console_session_ttl.or(self.console_session_ttl),
            sso_rate_limit_per_address: over
                .sso_rate_limit_per_address
                .or(self.sso_rate_limit_per_address),
            sso_rate_limit_per_credential: over
                .sso_rate_limit_per_credential
                .or(self.sso_rate_limit_per_credential),
            sso_redeem_rate_limit_per_address: over
                .sso_redeem_rate_limit_per_address
                .or(self.sso_redeem_rate_limit_per_address),
            trusted_proxies: over.trusted_proxies.or(self.trusted_proxies),
            sso_destinations: over.sso_destinations.or(self.sso_destinations),
            admin_token_ttl: over.admin_token_ttl.or(self.admin_token_ttl),
            http_header_timeout: over.http_header_timeout.or(self.http_header_timeout),
            http_body_timeout: over.http_body_timeout.or(self.http_body_timeout),
            http_idle_timeout: over.http_idle_timeout.or(self.http_idle_timeout),
            http_max_connections: over.http_max_connections.or(self.http_max_connections),
            plugin_call_timeout: over.plugin_call_timeout.or(self.plugin_call_timeout),
            plugin_max_host_calls: over.plugin_max_host_calls.or(self.plugin_max_host_calls),
            trusted_keys: over.trusted_keys.or(self.trusted_keys),
            plugin_fault_threshold: over.plugin_fault_threshold.or(self.plugin_fault_threshold),
            plugin_auto_rollback: over.plugin_auto_rollback.or(self.plugin_auto_rollback),
        }
    }
}

fn parse_env_number(key: &'static str, value: &str) -> Result<u64, Error> {
    value.trim().parse().map_err(|_| Error::Invalid {
        key,
        message: format!("{value:?} is not a whole number"),
    })
}

fn parse_env_bool(key: &'static str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::Invalid {
            key,
            message: format!("{value:?} is neither true nor false"),
        }),
    }
}

/// `name=ed25519:…` pairs separated by whitespace.
fn parse_env_trusted_keys(value: &str) -> Result<Vec<TrustedKeyEntry>, Error> {
    value
        .split_whitespace()
        .map(|pair| {
            pair.split_once('=')
                .map(|(name, key)| TrustedKeyEntry {
                    name: name.to_owned(),
                    public_key: key.to_owned(),
                })
                .ok_or_else(|| Error::Invalid {
                    key: "trusted_keys",
                    message: format!("{pair:?} is not name=ed25519:<base64>"),
                })
        })
        .collect()
}

fn trusted_keys(entries: Option<Vec<TrustedKeyEntry>>) -> Result<TrustedKeys, Error> {
    let invalid = |message: String| Error::Invalid {
        key: "trusted_keys",
        message,
    };
    let keys = entries
        .unwrap_or_default()
        .into_iter()
        .map(|entry| {
            let key = PublicKey::parse(&entry.public_key)
                .map_err(|e| invalid(format!("{:?}: {e}", entry.name)))?;
            TrustedKey::new(&entry.name, key).map_err(invalid)
        })
        .collect::<Result<Vec<_>, _>>()?;
    TrustedKeys::new(keys).map_err(invalid)
}

/// `scope=path` pairs separated by whitespace (paths hold no whitespace).
fn parse_env_destinations(value: &str) -> Result<BTreeMap<String, String>, Error> {
    value
        .split_whitespace()
        .map(|pair| {
            pair.split_once('=')
                .map(|(scope, path)| (scope.to_owned(), path.to_owned()))
                .ok_or_else(|| Error::Invalid {
                    key: "sso_destinations",
                    message: format!("{pair:?} is not scope=path"),
                })
        })
        .collect()
}

/// Single sign-on and client portal settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoConfig {
    /// Lifetime of an access token.
    pub token_ttl: Duration,
    /// Lifetime of a portal session.
    pub session_ttl: Duration,
    /// Lifetime of an admin console session (`console_session_ttl`).
    pub console_session_ttl: Duration,
    /// Token requests a minute per source address; 0: no limit.
    pub rate_limit_per_address: u32,
    /// Token requests a minute per link credential; 0: no limit.
    pub rate_limit_per_credential: u32,
    /// Redemptions a minute per source address; 0: no limit.
    pub redeem_rate_limit_per_address: u32,
    /// The reverse proxies whose `X-Forwarded-For` is believed, for every per-address limit.
    pub trusted_proxies: crate::net::TrustedProxies,
    /// Client-area path per scope, overriding the plugins' defaults.
    pub destinations: BTreeMap<String, String>,
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(60),
            session_ttl: Duration::from_secs(8 * 3600),
            console_session_ttl: Duration::from_secs(8 * 3600),
            rate_limit_per_address: 6000,
            rate_limit_per_credential: 60,
            redeem_rate_limit_per_address: 120,
            trusted_proxies: crate::net::TrustedProxies::default(),
            destinations: BTreeMap::new(),
        }
    }
}

impl SsoConfig {
    fn resolve(layer: &Layer) -> Result<Self, Error> {
        let defaults = SsoConfig::default();
        let seconds = |key, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(0) => Err(Error::Invalid {
                key,
                message: "must be at least 1 second".into(),
            }),
            Some(n) if n > 366 * 86_400 => Err(Error::Invalid {
                key,
                message: "must be at most a year".into(),
            }),
            Some(n) => Ok(Duration::from_secs(n)),
        };
        let per_minute = |key, value: Option<u64>, default: u32| match value {
            None => Ok(default),
            Some(n) => u32::try_from(n).map_err(|_| Error::Invalid {
                key,
                message: "is too large".into(),
            }),
        };
        let mut destinations = BTreeMap::new();
        for (scope, path) in layer.sso_destinations.clone().unwrap_or_default() {
            let invalid = |message: String| Error::Invalid {
                key: "sso_destinations",
                message,
            };
            crate::model::Scope::parse(&scope)
                .map_err(|why| invalid(format!("{scope:?}: {why}")))?;
            if !crate::model::is_destination_path(&path) {
                return Err(invalid(format!(
                    "{scope:?}: {path:?} must be a path starting with exactly one / (no \\, \
                     spaces or control characters)"
                )));
            }
            destinations.insert(scope, path);
        }
        Ok(SsoConfig {
            token_ttl: seconds("sso_token_ttl", layer.sso_token_ttl, defaults.token_ttl)?,
            session_ttl: seconds(
                "portal_session_ttl",
                layer.portal_session_ttl,
                defaults.session_ttl,
            )?,
            console_session_ttl: seconds(
                "console_session_ttl",
                layer.console_session_ttl,
                defaults.console_session_ttl,
            )?,
            rate_limit_per_address: per_minute(
                "sso_rate_limit_per_address",
                layer.sso_rate_limit_per_address,
                defaults.rate_limit_per_address,
            )?,
            rate_limit_per_credential: per_minute(
                "sso_rate_limit_per_credential",
                layer.sso_rate_limit_per_credential,
                defaults.rate_limit_per_credential,
            )?,
            redeem_rate_limit_per_address: per_minute(
                "sso_redeem_rate_limit_per_address",
                layer.sso_redeem_rate_limit_per_address,
                defaults.redeem_rate_limit_per_address,
            )?,
            trusted_proxies: crate::net::TrustedProxies::parse(
                layer.trusted_proxies.as_deref().unwrap_or_default(),
            )
            .map_err(|message| Error::Invalid {
                key: "trusted_proxies",
                message,
            })?,
            destinations,
        })
    }
}

/// Limits of the HTTP server on its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Time to send a request's header (counted from the connection's start, or from the first
    /// byte of a later request on a kept-alive connection).
    pub header_timeout: Duration,
    /// Time to send a request's whole body.
    pub body_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

impl HttpConfig {
    fn resolve(layer: &Layer) -> Result<Self, Error> {
        let defaults = HttpConfig::default();
        let seconds = |key, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(n @ 1..=86_400) => Ok(Duration::from_secs(n)),
            Some(_) => Err(Error::Invalid {
                key,
                message: "must be from 1 to 86400 seconds".into(),
            }),
        };
        Ok(HttpConfig {
            header_timeout: seconds(
                "http_header_timeout",
                layer.http_header_timeout,
                defaults.header_timeout,
            )?,
            body_timeout: seconds(
                "http_body_timeout",
                layer.http_body_timeout,
                defaults.body_timeout,
            )?,
            idle_timeout: seconds(
                "http_idle_timeout",
                layer.http_idle_timeout,
                defaults.idle_timeout,
            )?,
            max_connections: match layer.http_max_connections {
                None => defaults.max_connections,
                Some(n @ 1..=1_000_000) => n as usize,
                Some(_) => {
                    return Err(Error::Invalid {
                        key: "http_max_connections",
                        message: "must be from 1 to 1000000".into(),
                    });
                }
            },
        })
    }
}

/// The default `admin_token_ttl`: 90 days.
pub const DEFAULT_ADMIN_TOKEN_TTL: Duration = Duration::from_secs(90 * 86_400);

/// The resolved configuration.
#[derive(Clone)]
pub struct Config {
    /// Address the HTTP server binds (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Base URL panels and browsers use to reach this host, without a trailing `/`.
    pub public_url: String,
    /// Where SSO lands the customer, without a trailing `/`.
    pub client_area_url: String,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Holds the generated key file.
    pub data_dir: PathBuf,
    /// Key material for secrets at rest; `None`: the key file in `data_dir`.
    pub secret_key: Option<Secret>,
    /// Directory of `.wasm` components loaded at start.
    pub plugin_dir: PathBuf,
    /// Where compiled plugins are cached; `None`: no cache.
    pub plugin_cache_dir: Option<PathBuf>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Tracing filter.
    pub log_level: String,
    /// Admin API JSON body limit in bytes.
    pub max_body_bytes: usize,
    /// Plugin upload limit in bytes.
    pub max_plugin_bytes: usize,
    /// Servers worked on at once by this host's sync engine.
    pub sync_workers: usize,
    /// Interval of the drift check; `None`: off.
    pub sync_drift_interval: Option<Duration>,
    /// How long a server may fail transiently without progress before its unit fails.
    pub sync_retry_window: Duration,
    /// Interval of the automatic retry of failed servers; `None`: off.
    pub sync_failed_retry_interval: Option<Duration>,
    /// Single sign-on and client portal settings.
    pub sso: SsoConfig,
    /// How long an admin API token is valid after it is issued; `None`: no expiry.
    pub admin_token_ttl: Option<Duration>,
    /// Limits of the HTTP server on its connections.
    pub http: HttpConfig,
    /// Wall-clock time one plugin call may take.
    pub plugin_call_timeout: Duration,
    /// Calls into the host one plugin call may make.
    pub plugin_max_host_calls: u32,
    /// Public keys plugin uploads must be signed with; empty: signatures are optional.
    pub trusted_keys: TrustedKeys,
    /// Consecutive faulting calls that flag a plugin version; 0: never.
    pub plugin_fault_threshold: u32,
    /// Roll back to the previous good version when the active one is flagged.
    pub plugin_auto_rollback: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("client_area_url", &self.client_area_url)
            .field("database_url", &redact_url(&self.database_url))
            .field("data_dir", &self.data_dir)
            .field(
                "secret_key",
                &self
                    .secret_key
                    .as_ref()
                    .map(|_| "***")
                    .unwrap_or("(key file)"),
            )
            .field("plugin_dir", &self.plugin_dir)
            .field("plugin_cache_dir", &self.plugin_cache_dir)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_plugin_bytes", &self.max_plugin_bytes)
            .field("sync_workers", &self.sync_workers)
            .field("sync_drift_interval", &self.sync_drift_interval)
            .field("sync_retry_window", &self.sync_retry_window)
            .field(
                "sync_failed_retry_interval",
                &self.sync_failed_retry_interval,
            )
            .field("sso", &self.sso)
            .field("admin_token_ttl", &self.admin_token_ttl)
            .field("http", &self.http)
            .field("plugin_call_timeout", &self.plugin_call_timeout)
            .field("plugin_max_host_calls", &self.plugin_max_host_calls)
            .field("trusted_keys", &self.trusted_keys.names())
            .field("plugin_fault_threshold", &self.plugin_fault_threshold)
            .field("plugin_auto_rollback", &self.plugin_auto_rollback)
            .finish()
    }
}

/// The default `database_url`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://panelink.db?mode=rwc";
/// The default `listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default `plugin_fault_threshold`.
pub const DEFAULT_PLUGIN_FAULT_THRESHOLD: u32 = 5;

impl Config {
    /// Stack layers (lowest precedence first) and fill in defaults.
    pub fn resolve(layers: impl IntoIterator<Item = Layer>) -> Result<Self, Error> {
        let layer = layers
            .into_iter()
            .fold(Layer::default(), Layer::overridden_by);
        let sso = SsoConfig::resolve(&layer)?;
        let http = HttpConfig::resolve(&layer)?;
        let admin_token_ttl = match layer.admin_token_ttl {
            None => Some(DEFAULT_ADMIN_TOKEN_TTL),
            Some(0) => None,
            Some(n) if n > 10 * 366 * 86_400 => {
                return Err(Error::Invalid {
                    key: "admin_token_ttl",
                    message: "must be at most ten years (0: no expiry)".into(),
                });
            }
            Some(n) => Some(Duration::from_secs(n)),
        };
        let listen_text = layer.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| Error::Invalid {
            key: "listen",
            message: format!("{listen_text:?} is not an address like 127.0.0.1:8080"),
        })?;
        let public_url = match layer.public_url {
            Some(url) => checked_url("public_url", &url)?,
            None => format!("http://{listen}"),
        };
        let client_area_url = match layer.client_area_url {
            Some(url) => checked_url("client_area_url", &url)?,
            None => format!("{public_url}/portal"),
        };
        let database_url = layer
            .database_url
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(Error::Invalid {
                key: "database_url",
                message: format!(
                    "{} is neither sqlite://… nor postgres://…",
                    redact_url(&database_url)
                ),
            });
        }
        let log_format = match layer.log_format.as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(Error::Invalid {
                    key: "log_format",
                    message: format!("{other:?} is neither pretty nor json"),
                });
            }
        };
        let bytes = |key, value: Option<u64>, default: usize| -> Result<usize, Error> {
            match value {
                None => Ok(default),
                Some(0) => Err(Error::Invalid {
                    key,
                    message: "must be more than 0".into(),
                }),
                Some(n) => usize::try_from(n).map_err(|_| Error::Invalid {
                    key,
                    message: "is too large".into(),
                }),
            }
        };
        Ok(Config {
            listen,
            public_url,
            client_area_url,
            database_url,
            plugin_cache_dir: match layer.plugin_cache_dir {
                None => Some(
                    layer
                        .data_dir
                        .as_deref()
                        .unwrap_or(Path::new("."))
                        .join("wasm-cache"),
                ),
                Some(dir) if dir.as_os_str().is_empty() => None,
                Some(dir) => Some(dir),
            },
            data_dir: layer.data_dir.unwrap_or_else(|| PathBuf::from(".")),
            secret_key: layer.secret_key.map(Secret::new),
            plugin_dir: layer.plugin_dir.unwrap_or_else(default_plugin_dir),
            log_format,
            log_level: layer.log_level.unwrap_or_else(|| "info".to_owned()),
            max_body_bytes: bytes("max_body_bytes", layer.max_body_bytes, 1024 * 1024)?,
            max_plugin_bytes: bytes("max_plugin_bytes", layer.max_plugin_bytes, 64 * 1024 * 1024)?,
            sync_workers: match layer.sync_workers {
                None => 16,
                Some(n @ 1..=1024) => n as usize,
                Some(_) => {
                    return Err(Error::Invalid {
                        key: "sync_workers",
                        message: "must be between 1 and 1024".into(),
                    });
                }
            },
            sync_drift_interval: match layer.sync_drift_interval.unwrap_or(6 * 3600) {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            sync_retry_window: Duration::from_secs(layer.sync_retry_window.unwrap_or(900)),
            sync_failed_retry_interval: match layer.sync_failed_retry_interval.unwrap_or(600) {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            sso,
            admin_token_ttl,
            http,
            plugin_call_timeout: match layer.plugin_call_timeout {
                None => Duration::from_secs(300),
                Some(secs @ 1..=86_400) => Duration::from_secs(secs),
                Some(_) => {
                    return Err(Error::Invalid {
                        key: "plugin_call_timeout",
                        message: "must be between 1 and 86400 seconds".into(),
                    });
                }
            },
            plugin_max_host_calls: match layer.plugin_max_host_calls {
                None => 5000,
                Some(n @ 1..=1_000_000) => n as u32,
                Some(_) => {
                    return Err(Error::Invalid {
                        key: "plugin_max_host_calls",
                        message: "must be between 1 and 1000000".into(),
                    });
                }
            },
            trusted_keys: trusted_keys(layer.trusted_keys)?,
            plugin_fault_threshold: match layer.plugin_fault_threshold {
                None => DEFAULT_PLUGIN_FAULT_THRESHOLD,
                Some(n) => u32::try_from(n).map_err(|_| Error::Invalid {
                    key: "plugin_fault_threshold",
                    message: "is too large".into(),
                })?,
            },
            plugin_auto_rollback: layer.plugin_auto_rollback.unwrap_or(false),
        })
    }
}

fn checked_url(key: &'static str, raw: &str) -> Result<String, Error> {
    let url = url::Url::parse(raw).map_err(|e| Error::Invalid {
        key,
        message: format!("{raw:?} is not a URL: {e}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Invalid {
            key,
            message: format!("{raw:?} must be an http or https URL"),
        });
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// The built plugins' directory: `target/plugins` next to the `target/<profile>/panelink`
/// binary (where `cargo xtask build-plugins` puts them), else `./plugins`.
pub fn default_plugin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            // target/<profile>/panelink, or target/<profile>/deps/<test binary>.
            exe.ancestors()
                .skip(1)
                .take(3)
                .map(|dir| dir.join("plugins"))
                .find(|dir| dir.is_dir())
        })
        .unwrap_or_else(|| PathBuf::from("plugins"))
}

/// A URL with its password replaced by `***`, for logs and messages.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(_) => raw.to_owned(),
        // Not parseable: do not risk echoing a password.
        Err(_) => "(unparseable URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(f: impl FnOnce(&mut Layer)) -> Layer {
        let mut l = Layer::default();
        f(&mut l);
        l
    }

    #[test]
    fn defaults() {
        let c = Config::resolve([]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.client_area_url, "http://127.0.0.1:8080/portal");
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert!(c.secret_key.is_none());
    }

    #[test]
    fn file_then_env_then_flags() {
        let file: Layer = toml::from_str(
            "listen = \"127.0.0.1:1\"\npublic_url = \"https://file.example/\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let env = Layer::from_env([
            ("PANELINK_LISTEN".to_owned(), "127.0.0.1:2".to_owned()),
            ("PANELINK_SECRET_KEY".to_owned(), "k".repeat(32)),
            ("PANELINK_TEST_POSTGRES".to_owned(), "off".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ])
        .unwrap();
        let flags = layer(|l| l.listen = Some("127.0.0.1:3".into()));
        let c = Config::resolve([file, env, flags]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3");
        assert_eq!(c.public_url, "https://file.example");
        assert_eq!(c.client_area_url, "https://file.example/portal");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.secret_key.unwrap().expose(), "k".repeat(32));
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Layer>("lisen = \"x\"").is_err());
        assert!(Config::resolve([layer(|l| l.listen = Some("nope".into()))]).is_err());
        assert!(Config::resolve([layer(|l| l.database_url = Some("mysql://x".into()))]).is_err());
        assert!(Config::resolve([layer(|l| l.public_url = Some("ftp://x".into()))]).is_err());
        assert!(Layer::from_env([("PANELINK_MAX_BODY_BYTES".into(), "lots".into())]).is_err());
    }

    #[test]
    fn destinations_must_be_paths_on_the_client_area() {
        let with = |path: &str| {
            Config::resolve([layer(|l| {
                l.sso_destinations = Some([("clientarea:invoices".into(), path.into())].into())
            })])
        };
        assert!(with("/billing?s={service_id}").is_ok());
        for bad in [
            "@evil.example/",
            "//evil.example",
            "/\\evil.example",
            "billing",
            "/a b",
        ] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_limits_and_token_ttl() {
        let c = Config::resolve([]).unwrap();
        assert_eq!(c.http, HttpConfig::default());
        assert_eq!(c.admin_token_ttl, Some(DEFAULT_ADMIN_TOKEN_TTL));
        let env = Layer::from_env([
            ("PANELINK_HTTP_HEADER_TIMEOUT".to_owned(), "5".to_owned()),
            ("PANELINK_HTTP_BODY_TIMEOUT".to_owned(), "6".to_owned()),
            ("PANELINK_HTTP_IDLE_TIMEOUT".to_owned(), "7".to_owned()),
            ("PANELINK_HTTP_MAX_CONNECTIONS".to_owned(), "8".to_owned()),
            ("PANELINK_ADMIN_TOKEN_TTL".to_owned(), "0".to_owned()),
        ])
        .unwrap();
        let c = Config::resolve([env]).unwrap();
        assert_eq!(
            c.http,
            HttpConfig {
                header_timeout: Duration::from_secs(5),
                body_timeout: Duration::from_secs(6),
                idle_timeout: Duration::from_secs(7),
                max_connections: 8,
            }
        );
        assert_eq!(c.admin_token_ttl, None, "0: tokens do not expire");
        assert!(Config::resolve([layer(|l| l.http_header_timeout = Some(0))]).is_err());
        assert!(Config::resolve([layer(|l| l.http_max_connections = Some(0))]).is_err());
        let file: Layer = toml::from_str("http_idle_timeout = 9\nadmin_token_ttl = 60\n").unwrap();
        let c = Config::resolve([file]).unwrap();
        assert_eq!(c.http.idle_timeout, Duration::from_secs(9));
        assert_eq!(c.admin_token_ttl, Some(Duration::from_secs(60)));
    }

    #[test]
    fn plugin_limits_default_and_are_bounded() {
        let c = Config::resolve([]).unwrap();
        assert_eq!(c.plugin_call_timeout, Duration::from_secs(300));
        assert_eq!(c.plugin_max_host_calls, 5000);
        let env = Layer::from_env([
            ("PANELINK_PLUGIN_CALL_TIMEOUT".into(), "20".into()),
            ("PANELINK_PLUGIN_MAX_HOST_CALLS".into(), "100".into()),
        ])
        .unwrap();
        let c = Config::resolve([env]).unwrap();
        assert_eq!(c.plugin_call_timeout, Duration::from_secs(20));
        assert_eq!(c.plugin_max_host_calls, 100);
        assert!(Config::resolve([layer(|l| l.plugin_call_timeout = Some(0))]).is_err());
        assert!(Config::resolve([layer(|l| l.plugin_max_host_calls = Some(0))]).is_err());
    }

    #[test]
    fn trusted_keys_and_the_failure_policy() {
        let acme = crate::signing::PrivateKey::generate().public().to_string();
        let beta = crate::signing::PrivateKey::generate().public().to_string();
        let file: Layer = toml::from_str(&format!(
            "trusted_keys = [{{ name = \"acme\", public_key = \"{acme}\" }}]\n\
             plugin_fault_threshold = 3\nplugin_auto_rollback = true\n"
        ))
        .unwrap();
        let c = Config::resolve([file.clone()]).unwrap();
        assert_eq!(c.trusted_keys.names(), "acme");
        assert_eq!(
            (c.plugin_fault_threshold, c.plugin_auto_rollback),
            (3, true)
        );
        let env = Layer::from_env([
            (
                "PANELINK_TRUSTED_KEYS".to_owned(),
                format!(" acme={acme}\n beta={beta} "),
            ),
            ("PANELINK_PLUGIN_AUTO_ROLLBACK".to_owned(), "off".to_owned()),
        ])
        .unwrap();
        let c = Config::resolve([file, env]).unwrap();
        assert_eq!(c.trusted_keys.names(), "acme, beta");
        assert!(!c.plugin_auto_rollback);
        let d = Config::resolve([]).unwrap();
        assert!(d.trusted_keys.is_empty());
        assert_eq!(d.plugin_fault_threshold, DEFAULT_PLUGIN_FAULT_THRESHOLD);
        assert!(!d.plugin_auto_rollback);
        for bad in [
            format!("x {acme}"),
            "acme=ed25519:AAAA".to_owned(),
            format!("a={acme} a={beta}"),
            format!("bad/name={acme}"),
        ] {
            let env = Layer::from_env([("PANELINK_TRUSTED_KEYS".to_owned(), bad.clone())]);
            assert!(
                env.and_then(|l| Config::resolve([l])).is_err(),
                "{bad} was accepted"
            );
        }
        assert!(toml::from_str::<Layer>("trusted_keys = [{ name = \"a\", key = \"x\" }]").is_err());
        assert!(
            Layer::from_env([("PANELINK_PLUGIN_AUTO_ROLLBACK".into(), "maybe".into())]).is_err()
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config::resolve([layer(|l| {
            l.secret_key = Some("TOPSECRETKEYMATERIAL".into());
            l.database_url = Some("postgres://app:hunter2@db.example/panelink".into());
        })])
        .unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("TOPSECRETKEYMATERIAL"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("db.example"), "{printed}");
    }
}
