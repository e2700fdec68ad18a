//! Single sign-on from the panels into the client area, and the rules of the built-in client
//! area (the portal): whose credential buys a token, who a token signs in, how long a session
//! lasts, and who may change what. Plain Rust over [`crate::storage`] (whose `sso` module holds
//! the SQL); the HTTP endpoints that carry these rules are `api::oauth` and `api::portal`, so
//! everything here can be tested without a request.
//!
//! The click (`panel-protocol.md` §The click):
//! 1. [`token`] (`POST /oauth/token`): the panel's server presents the link's credential
//!    (`subscriber_unique_id` + `token`) with a scope and an application; the credential is
//!    checked in constant time, then that the service may sign in (active or suspended, its
//!    server and application enabled) and was given a link of that scope; the answer is a
//!    one-time access token (stored hashed, [`SsoConfig::token_ttl`]) and the URL to redeem it.
//!    Rate limited per source address and per credential ([`limit`]).
//! 2. [`redeem`] (`GET /oauth/sso`): rate limited per source address first; a token that was
//!    never issued is refused after one read, without a write; an issued one is consumed
//!    atomically and signs in as the owner of
//!    the service's client unless the account is closed, has single sign-on off, or the owner
//!    lacks the `sso` permission (all read at that moment: admin changes apply at once); a
//!    sign-in opens a portal session (stored hashed) and lands on `client_area_url` + the
//!    scope's destination. Every outcome with a known account, success or refusal, goes to that
//!    client's activity log.
//! 3. [`portal`] (`/portal/…`): a session cookie names the signed-in user; a change needs the
//!    session's CSRF token and a same-origin request, and only the account owner may make one.
//!
//! Destinations: a scope's path is `sso_destinations[scope]` when configured, else the one the
//! application's plugin declares (the WHMCS-compatible table of `panel-protocol.md`), else `/`.
//!
//! Secrets: the link secret, access tokens and session cookies never reach a log line or any
//! response but the one that hands them out (tracing fields here carry ids only; the request
//! log in `api::metrics` records route templates, never query strings).

pub mod limit;
pub mod link;
pub mod portal;
pub mod redeem;
pub mod token;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::config::{Config, SsoConfig};
use crate::storage::{Db, now_ms};

pub use limit::RateLimiter;

/// The name of the portal session cookie.
pub const SESSION_COOKIE: &str = "panelink_session";

/// The name of the admin console's session cookie.
pub const CONSOLE_COOKIE: &str = "panelink_console";

/// The scope every token request carries besides the link's own.
pub const SSO_SCOPE: &str = "clientarea:sso";

/// How often expired tokens and sessions are deleted, and how long an expired token is kept
/// (so that a late redemption is told "expired", not "unknown").
const PURGE_EVERY_MS: i64 = 10 * 60 * 1000;
const KEEP_EXPIRED_TOKENS_MS: i64 = 60 * 60 * 1000;

/// Single sign-on's settings and in-memory state (rate limits, the purge schedule). One per
/// process, held by the HTTP state.
#[derive(Debug)]
pub struct Sso {
    public_url: String,
    client_area_url: String,
    /// `public_url`'s origin (scheme, host, port), what same-origin requests name.
    origin: String,
    /// `public_url`'s path + `/portal`.
    portal_path: String,
    /// `public_url`'s path, `/` when it has none: where the admin console and API live.
    base_path: String,
    secure_cookie: bool,
    config: SsoConfig,
    /// Token requests per source address ([`crate::net::rate_key`]: IPv6 by /64).
    per_address: RateLimiter<std::net::IpAddr>,
    per_credential: RateLimiter<String>,
    /// Redemptions per source address (the same keys).
    redeem_per_address: RateLimiter<std::net::IpAddr>,
    next_purge: AtomicI64,
    /// The tokens this process issued and nobody presented yet.
    issued: IssuedTokens,
}

/// The access tokens this process issued that were not presented yet, by the first 128 bits of
/// their hash: a redemption of one of them needs no read to tell it from a made-up token (which
/// is refused after that one read, costing no write). Only a shortcut: a token not found here
/// (issued by another host on the same database, or before a restart, or forgotten) takes the
/// read. Bounded: when [`IssuedTokens::MAX`] are held, all are forgotten.
#[derive(Debug, Default)]
struct IssuedTokens(std::sync::Mutex<std::collections::HashSet<u128>>);

impl IssuedTokens {
    /// The most remembered at once (16 bytes each).
    const MAX: usize = 1 << 17;

    fn key(token_hash: &str) -> Option<u128> {
        token_hash
            .get(..32)
            .and_then(|h| u128::from_str_radix(h, 16).ok())
    }

    fn insert(&self, token_hash: &str) {
        let Some(key) = Self::key(token_hash) else {
            return;
        };
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= Self::MAX {
            set.clear();
        }
        set.insert(key);
    }

    fn take(&self, token_hash: &str) -> bool {
        Self::key(token_hash).is_some_and(|key| {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key)
        })
    }
}

impl Default for Sso {
    /// The settings of the default configuration (`http://127.0.0.1:8080`).
    fn default() -> Self {
        let config = Config::resolve([]).expect("the default configuration resolves");
        Self::new(&config.public_url, &config.client_area_url, config.sso)
    }
}

impl Sso {
    /// Settings for these URLs (a trailing `/` is ignored).
    pub fn new(public_url: &str, client_area_url: &str, config: SsoConfig) -> Self {
        let public_url = public_url.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&public_url).ok();
        let origin = parsed
            .as_ref()
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|| public_url.clone());
        let base = parsed
            .as_ref()
            .map_or("", |u| u.path().trim_end_matches('/'));
        let portal_path = format!("{base}/portal");
        let base_path = if base.is_empty() {
            "/".to_owned()
        } else {
            base.to_owned()
        };
        Self {
            secure_cookie: public_url.starts_with("https:"),
            client_area_url: client_area_url.trim_end_matches('/').to_owned(),
            public_url,
            origin,
            portal_path,
            base_path,
            per_address: RateLimiter::new(config.rate_limit_per_address),
            per_credential: RateLimiter::new(config.rate_limit_per_credential),
            redeem_per_address: RateLimiter::new(config.redeem_rate_limit_per_address),
            config,
            next_purge: AtomicI64::new(now_ms() + PURGE_EVERY_MS),
            issued: IssuedTokens::default(),
        }
    }

    /// Settings for a configuration served at `bound`. `public_url` defaults to
    /// `http://<listen>`; with port 0 that names no real port, so the bound one is used (and
    /// the default `client_area_url` follows).
    pub fn from_config(config: &Config, bound: SocketAddr) -> Self {
        let default_public = format!("http://{}", config.listen);
        if config.listen.port() == 0 && config.public_url == default_public {
            let public = format!("http://{bound}");
            let area = if config.client_area_url == format!("{default_public}/portal") {
                format!("{public}/portal")
            } else {
                config.client_area_url.clone()
            };
            Self::new(&public, &area, config.sso.clone())
        } else {
            Self::new(
                &config.public_url,
                &config.client_area_url,
                config.sso.clone(),
            )
        }
    }

    /// The base URL panels and browsers reach this host at, without a trailing `/`.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Where sign-ins land: the destination's path is appended to it.
    pub fn client_area_url(&self) -> &str {
        &self.client_area_url
    }

    /// The portal's absolute path on this host (`/portal` below `public_url`'s path): the base
    /// of the portal's own links and the session cookie's `Path`.
    pub fn portal_path(&self) -> &str {
        &self.portal_path
    }

    /// Lifetimes, rate limits and configured destinations.
    pub fn config(&self) -> &SsoConfig {
        &self.config
    }

    /// The client-area path of a scope for a service: configured, else the plugin's, else `/`.
    pub fn destination(
        &self,
        catalog: &Catalog,
        application: &str,
        scope: &str,
        service_id: i64,
    ) -> String {
        crate::model::fill_destination(
            &self.destination_template(catalog, application, scope),
            service_id,
        )
    }

    /// The template of [`Sso::destination`], before the service id is filled in.
    pub fn destination_template(
        &self,
        catalog: &Catalog,
        application: &str,
        scope: &str,
    ) -> String {
        let plugin = catalog.plugins().get(application);
        let default = plugin.as_ref().and_then(|p| {
            p.description
                .links
                .iter()
                .find(|l| l.scope == scope)
                .map(|l| l.destination.as_str())
        });
        crate::model::destination_template(&self.config.destinations, scope, default).to_owned()
    }

    /// Remember that this process issued the token of this hash (see [`IssuedTokens`]).
    pub(crate) fn remember_issued(&self, token_hash: &str) {
        self.issued.insert(token_hash);
    }

    /// Whether this process issued the token of this hash and it was not presented before;
    /// forgets it.
    pub(crate) fn take_issued(&self, token_hash: &str) -> bool {
        self.issued.take(token_hash)
    }

    /// The `Set-Cookie` value of a new session: scoped to the portal's path, lasting as long as
    /// the session, out of scripts' reach, not sent on cross-site subrequests, and `Secure` when
    /// the host is served over HTTPS. The value is one `new_token` gives, so it is a valid
    /// header value.
    pub fn session_cookie(&self, token: &str) -> String {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!(
            "{SESSION_COOKIE}={token}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            self.portal_path,
            self.config.session_ttl.as_secs()
        )
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!(
            "{SESSION_COOKIE}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax{secure}",
            self.portal_path
        )
    }

    /// The `Set-Cookie` value of a new admin console session lasting `max_age`: scoped to the
    /// host's base path (the console and the admin API), out of scripts' reach, never sent on a
    /// request another site starts (`SameSite=Strict`), and `Secure` over HTTPS.
    pub fn console_cookie(&self, token: &str, max_age: std::time::Duration) -> String {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!(
            "{CONSOLE_COOKIE}={token}; Path={}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            self.base_path,
            max_age.as_secs()
        )
    }

    /// The `Set-Cookie` value that removes the console session cookie.
    pub fn clear_console_cookie(&self) -> String {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!(
            "{CONSOLE_COOKIE}=; Path={}; Max-Age=0; HttpOnly; SameSite=Strict{secure}",
            self.base_path
        )
    }

    /// The host's base path (`public_url`'s path, `/` when it has none).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// Whether a state-changing request comes from our own pages: it carries the session's CSRF
    /// token `expected` (compared in constant time) and passes [`Sso::same_origin`]. The portal
    /// and the admin console both ask this.
    pub(crate) fn comes_from_our_pages(
        &self,
        expected: &str,
        csrf: Option<&str>,
        origin: Option<&str>,
        referer: Option<&str>,
    ) -> bool {
        use subtle::ConstantTimeEq;
        let csrf_ok = csrf.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())));
        csrf_ok && self.same_origin(origin, referer)
    }

    /// Whether a state-changing request comes from our own pages, given its `Origin` and
    /// `Referer` headers (`None`: not sent): the `Origin`, or without one the `Referer`, must be
    /// this host's when present. Browsers send `Origin` on every cross-site POST and PATCH; the
    /// CSRF token is checked besides, so a request with neither header is left to it.
    pub(crate) fn same_origin(&self, origin: Option<&str>, referer: Option<&str>) -> bool {
        if let Some(origin) = origin {
            return origin == self.origin;
        }
        if let Some(referer) = referer {
            return referer
                .strip_prefix(self.origin.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        }
        true
    }

    /// Delete old tokens and sessions in the background, at most every ten minutes.
    fn purge_when_due(&self, db: &Db) {
        let now = now_ms();
        let due = self.next_purge.load(Ordering::Relaxed);
        if now < due
            || self
                .next_purge
                .compare_exchange(
                    due,
                    now + PURGE_EVERY_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let db = db.clone();
        tokio::spawn(async move {
            match db.purge_sso_records(now - KEEP_EXPIRED_TOKENS_MS).await {
                Ok(n) => tracing::debug!(rows = n, "purged expired SSO tokens and sessions"),
                Err(e) => tracing::warn!(error = %e, "purging expired SSO tokens failed"),
            }
        });
    }
}

/// A new random secret value (access token, session cookie): 32 bytes, base64url.
pub(crate) fn new_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    B64URL.encode(raw)
}

/// Whether a presented token has the shape [`new_token`] gives (checked before any lookup).
pub(crate) fn token_shaped(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The CSRF token of a session: derived from the session's cookie value, so it needs no storage
/// and is as unguessable as the cookie, which a cross-site page cannot read.
pub(crate) fn csrf_token(session_token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"panelink csrf v1\0")
        .chain_update(session_token.as_bytes())
        .finalize();
    B64URL.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layer;

    #[test]
    fn urls_cookie_and_origin_follow_the_configuration() {
        let sso = Sso::new(
            "https://billing.example/panelink/",
            "https://billing.example/panelink/portal",
            SsoConfig::default(),
        );
        assert_eq!(sso.public_url(), "https://billing.example/panelink");
        assert_eq!(sso.origin, "https://billing.example");
        let cookie = sso.session_cookie("abc");
        assert!(cookie.starts_with("panelink_session=abc; Path=/panelink/portal; Max-Age=28800"));
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
        assert!(cookie.ends_with("; Secure"));
        let plain = Sso::new(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/portal",
            SsoConfig::default(),
        );
        assert!(!plain.session_cookie("abc").contains("Secure"));
        assert!(plain.session_cookie("abc").contains("Path=/portal;"));
        assert_eq!(plain.portal_path(), "/portal");
        assert!(plain.clear_cookie().contains("Max-Age=0"));

        // The console's cookie covers the console and the API below public_url's path.
        let console = sso.console_cookie("abc", std::time::Duration::from_secs(60));
        assert_eq!(
            console,
            "panelink_console=abc; Path=/panelink; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(
            plain
                .console_cookie("abc", std::time::Duration::from_secs(60))
                .starts_with("panelink_console=abc; Path=/; ")
        );
        assert!(plain.clear_console_cookie().contains("Max-Age=0"));
        assert!(!plain.clear_console_cookie().contains("Secure"));

        assert!(
            sso.same_origin(None, None),
            "no Origin, no Referer: the CSRF token decides"
        );
        assert!(sso.same_origin(Some("https://billing.example"), None));
        assert!(!sso.same_origin(Some("https://evil.example"), None));
        assert!(
            !sso.same_origin(Some(""), Some("https://billing.example/")),
            "an Origin that is sent decides, whatever the Referer"
        );
        assert!(!sso.same_origin(None, Some("https://billing.example.evil.example/x")));
        assert!(sso.same_origin(None, Some("https://billing.example/panelink/portal/users")));
    }

    #[test]
    fn port_zero_uses_the_bound_address() {
        let config = Config::resolve([Layer {
            listen: Some("127.0.0.1:0".into()),
            ..Layer::default()
        }])
        .unwrap();
        let sso = Sso::from_config(&config, "127.0.0.1:4321".parse().unwrap());
        assert_eq!(sso.public_url(), "http://127.0.0.1:4321");
        assert_eq!(sso.client_area_url(), "http://127.0.0.1:4321/portal");
        let explicit = Config::resolve([Layer {
            listen: Some("127.0.0.1:0".into()),
            public_url: Some("https://b.example".into()),
            ..Layer::default()
        }])
        .unwrap();
        let sso = Sso::from_config(&explicit, "127.0.0.1:4321".parse().unwrap());
        assert_eq!(sso.public_url(), "https://b.example");
        assert_eq!(sso.client_area_url(), "https://b.example/portal");
    }

    #[test]
    fn configuration_keys() {
        let file: Layer = toml::from_str(
            "sso_token_ttl = 5\nportal_session_ttl = 60\nsso_rate_limit_per_address = 0\n\
             [sso_destinations]\n\"clientarea:invoices\" = \"/billing?id={service_id}\"\n",
        )
        .unwrap();
        let env = Layer::from_env([
            (
                "PANELINK_SSO_RATE_LIMIT_PER_CREDENTIAL".to_owned(),
                "7".to_owned(),
            ),
            (
                "PANELINK_SSO_DESTINATIONS".to_owned(),
                "clientarea:tickets=/t?a=1 clientarea:emails=/e".to_owned(),
            ),
        ])
        .unwrap();
        let c = Config::resolve([file.clone()]).unwrap().sso;
        assert_eq!(c.token_ttl.as_secs(), 5);
        assert_eq!(c.session_ttl.as_secs(), 60);
        assert_eq!(c.rate_limit_per_address, 0);
        assert_eq!(c.rate_limit_per_credential, 60);
        assert_eq!(
            c.destinations["clientarea:invoices"],
            "/billing?id={service_id}"
        );
        let c = Config::resolve([file, env]).unwrap().sso;
        assert_eq!(c.rate_limit_per_credential, 7);
        assert_eq!(
            c.destinations.len(),
            2,
            "a later layer's map replaces the earlier one"
        );
        assert_eq!(c.destinations["clientarea:tickets"], "/t?a=1");

        let defaults = Config::resolve([]).unwrap().sso;
        assert_eq!(defaults, SsoConfig::default());
        assert_eq!(defaults.token_ttl.as_secs(), 60);
        for bad in [
            "sso_token_ttl = 0",
            "[sso_destinations]\n\"invoices\" = \"/x\"",
            "[sso_destinations]\n\"clientarea:x\" = \"x\"",
            "[sso_destinations]\n\"clientarea:x\" = \"//evil.example/\"",
            "[sso_destinations]\n\"clientarea:x\" = \"/a b\"",
        ] {
            let layer: Layer = toml::from_str(bad).unwrap();
            assert!(Config::resolve([layer]).is_err(), "{bad}");
        }
        assert!(Layer::from_env([("PANELINK_SSO_DESTINATIONS".into(), "nopair".into())]).is_err());
        assert!(Layer::from_env([("PANELINK_SSO_TOKEN_TTL".into(), "soon".into())]).is_err());
    }

    #[test]
    fn tokens_and_csrf() {
        let t = new_token();
        assert!(token_shaped(&t), "{t}");
        assert_ne!(t, new_token());
        assert!(!token_shaped("short"));
        assert!(!token_shaped(&format!("{}%", &t[..42])));
        assert_ne!(csrf_token(&t), csrf_token(&new_token()));
    }
}
