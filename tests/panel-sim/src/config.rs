//! Configuration of one simulated server: [`SimConfig`] (builder style) and the small value types it
//! holds, [`Profile`] and [`FaultKind`].
//!
//! Everything here is plain data; [`crate::PanelSim::start`] turns it into a running server whose
//! state and behaviour can then be changed at runtime through [`crate::SimHandle`].

use crate::state::AccountDetails;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// The version a simulated server reports by default (a cPanel & WHM 130 build).
pub const DEFAULT_VERSION: &str = "11.130.0.5";

/// A version older than cPanel & WHM 54, the release that introduced the integration-link
/// functions: a server running it has no `*_integration_*` function (see [`SimConfig::old_version`]).
pub const OLD_VERSION: &str = "11.52.1.3";

/// The API username a simulated server accepts by default.
pub const DEFAULT_API_USER: &str = "root";

/// The API token a simulated server accepts by default.
pub const DEFAULT_API_TOKEN: &str = "PANELSIMTOKEN0123456789ABCDEFGHIJ";

/// The server profile `get_current_profile` reports.
///
/// cPanel & WHM servers run the `STANDARD` profile; WP Squared servers are cPanel servers that
/// report the `WP2` profile. [`Profile::Other`] simulates any other profile (for example a
/// `MAILNODE`), which both the cPanel and the WP Squared plugin must refuse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Profile {
    /// The standard cPanel & WHM profile, code `STANDARD`.
    #[default]
    Standard,
    /// The WP Squared profile, code `WP2`.
    Wp2,
    /// Any other profile, with its code and display name.
    Other {
        /// The profile code, e.g. `MAILNODE`.
        code: String,
        /// The profile's display name.
        name: String,
    },
}

impl Profile {
    /// The profile code, as `get_current_profile` answers it in `data.code`.
    pub fn code(&self) -> &str {
        match self {
            Profile::Standard => "STANDARD",
            Profile::Wp2 => "WP2",
            Profile::Other { code, .. } => code,
        }
    }

    /// The profile's display name (`data.name`).
    pub fn name(&self) -> &str {
        match self {
            Profile::Standard => "Standard",
            Profile::Wp2 => "WP Squared",
            Profile::Other { name, .. } => name,
        }
    }

    /// A one-sentence description (`data.description`).
    pub fn description(&self) -> String {
        match self {
            Profile::Standard => {
                "The Standard profile provides all of cPanel & WHM's services and features."
                    .to_owned()
            }
            Profile::Wp2 => {
                "The WP Squared profile provides the services and features that WordPress hosting needs."
                    .to_owned()
            }
            Profile::Other { name, .. } => format!("The {name} profile."),
        }
    }
}

impl FromStr for Profile {
    type Err = std::convert::Infallible;

    /// Parses a profile code, case-insensitively: `STANDARD`, `WP2`, anything else becomes
    /// [`Profile::Other`] with the upper-cased code as both code and name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "STANDARD" => Profile::Standard,
            "WP2" => Profile::Wp2,
            other => Profile::Other {
                code: other.to_owned(),
                name: other.to_owned(),
            },
        })
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A fault the server can inject into an HTTP request, before the request touches any state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Answer HTTP 500 with a short text body.
    Http500,
    /// Hang without answering for [`SimConfig::hang_for`], then close the connection.
    Timeout,
    /// Close the connection without answering.
    DropConnection,
    /// Do the work the request asks for, then answer HTTP 500 (a panel that fails while
    /// answering: the caller cannot tell whether anything happened).
    Http500AfterWork,
}

impl FaultKind {
    /// All fault kinds, in a fixed order.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Http500,
        FaultKind::Timeout,
        FaultKind::DropConnection,
        FaultKind::Http500AfterWork,
    ];
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Http500 => "500",
            FaultKind::Timeout => "timeout",
            FaultKind::DropConnection => "drop",
            FaultKind::Http500AfterWork => "500-after-work",
        })
    }
}

/// The error of parsing a [`FaultKind`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault kind “{0}” (expected 500, timeout, drop or 500-after-work)")]
pub struct UnknownFaultKind(pub String);

impl FromStr for FaultKind {
    type Err = UnknownFaultKind;

    /// Parses `500`, `timeout` or `drop` (case-insensitive; `http500` and `dropconnection` too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "500" | "http500" => Ok(FaultKind::Http500),
            "timeout" | "hang" => Ok(FaultKind::Timeout),
            "drop" | "dropconnection" | "drop_connection" => Ok(FaultKind::DropConnection),
            "500-after-work" | "http500afterwork" => Ok(FaultKind::Http500AfterWork),
            _ => Err(UnknownFaultKind(s.to_owned())),
        }
    }
}

/// The configuration of one simulated WHM server. Build it with [`SimConfig::new`] (or
/// `Default`) and the builder methods, then pass it to [`crate::PanelSim::start`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The cPanel & WHM version string (`version` answers it), e.g. `11.130.0.5`. Versions older
    /// than 54 have no integration functions; older than 76 no `get_current_profile`.
    pub version: String,
    /// The server profile `get_current_profile` reports.
    pub profile: Profile,
    /// The cPanel accounts on the server: username → main domain.
    pub accounts: BTreeMap<String, String>,
    /// What `listaccts` reports of an account beyond user and domain; absent:
    /// [`AccountDetails::default`] (active, owned by `root`, no e-mail).
    pub account_details: BTreeMap<String, AccountDetails>,
    /// The WHM username of the API token.
    pub api_user: String,
    /// The API token (`Authorization: whm <api_user>:<api_token>`).
    pub api_token: String,
    /// Latency added to every HTTP request, before anything else happens.
    pub request_latency: Duration,
    /// Latency added to every command, including each command inside a `batch`.
    pub command_latency: Duration,
    /// The probability (0.0–1.0) that an HTTP request gets a fault.
    pub fault_rate: f64,
    /// The fault kinds drawn from (uniformly) when a request gets a fault. Empty means no faults.
    pub fault_kinds: Vec<FaultKind>,
    /// How long a [`FaultKind::Timeout`] hangs before closing the connection.
    pub hang_for: Duration,
    /// Seed of the fault RNG; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// The address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The longest a click waits between token attempts (cPanel waits up to 60 s; tests lower it).
    pub click_max_wait: Duration,
    /// The timeout of one HTTP call to an `autologin_token_url` during a click.
    pub click_timeout: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            version: DEFAULT_VERSION.to_owned(),
            profile: Profile::Standard,
            accounts: BTreeMap::new(),
            account_details: BTreeMap::new(),
            api_user: DEFAULT_API_USER.to_owned(),
            api_token: DEFAULT_API_TOKEN.to_owned(),
            request_latency: Duration::ZERO,
            command_latency: Duration::ZERO,
            fault_rate: 0.0,
            fault_kinds: FaultKind::ALL.to_vec(),
            hang_for: Duration::from_secs(30),
            seed: None,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            click_max_wait: Duration::from_secs(60),
            click_timeout: Duration::from_secs(30),
        }
    }
}

impl SimConfig {
    /// The default configuration: version [`DEFAULT_VERSION`], profile `STANDARD`, no accounts,
    /// credentials [`DEFAULT_API_USER`]/[`DEFAULT_API_TOKEN`], no latency, no faults (rate 0, all
    /// kinds), hang 30 s, OS-seeded RNG, listening on `127.0.0.1:0`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the version string.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Sets the version to [`OLD_VERSION`] (before integration links existed).
    pub fn old_version(self) -> Self {
        self.version(OLD_VERSION)
    }

    /// Sets the server profile.
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Adds one account.
    pub fn account(mut self, user: impl Into<String>, domain: impl Into<String>) -> Self {
        self.accounts.insert(user.into(), domain.into());
        self
    }

    /// Sets what `listaccts` reports of an account (suspended, owner, e-mail).
    pub fn account_details(mut self, user: impl Into<String>, details: AccountDetails) -> Self {
        self.account_details.insert(user.into(), details);
        self
    }

    /// Adds several accounts (username, domain).
    pub fn accounts<U, D>(mut self, accounts: impl IntoIterator<Item = (U, D)>) -> Self
    where
        U: Into<String>,
        D: Into<String>,
    {
        self.accounts
            .extend(accounts.into_iter().map(|(u, d)| (u.into(), d.into())));
        self
    }

    /// Adds `count` generated accounts `user1` … `user<count>` with domains `user<i>.example.test`.
    pub fn sample_accounts(self, count: usize) -> Self {
        self.accounts(sample_accounts(count))
    }

    /// Sets the API credentials.
    pub fn api_credentials(mut self, user: impl Into<String>, token: impl Into<String>) -> Self {
        self.api_user = user.into();
        self.api_token = token.into();
        self
    }

    /// Sets the per-request latency.
    pub fn request_latency(mut self, latency: Duration) -> Self {
        self.request_latency = latency;
        self
    }

    /// Sets the per-command latency.
    pub fn command_latency(mut self, latency: Duration) -> Self {
        self.command_latency = latency;
        self
    }

    /// Sets the fault rate (clamped to 0.0–1.0).
    pub fn fault_rate(mut self, rate: f64) -> Self {
        self.fault_rate = clamp_rate(rate);
        self
    }

    /// Sets the fault kinds drawn from.
    pub fn fault_kinds(mut self, kinds: impl IntoIterator<Item = FaultKind>) -> Self {
        self.fault_kinds = kinds.into_iter().collect();
        self
    }

    /// Sets how long a timeout fault hangs.
    pub fn hang_for(mut self, hang_for: Duration) -> Self {
        self.hang_for = hang_for;
        self
    }

    /// Seeds the fault RNG (same seed, same sequence of requests → same faults).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets the listen address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Sets the longest wait between click attempts.
    pub fn click_max_wait(mut self, wait: Duration) -> Self {
        self.click_max_wait = wait;
        self
    }

    /// Sets the timeout of one token call during a click.
    pub fn click_timeout(mut self, timeout: Duration) -> Self {
        self.click_timeout = timeout;
        self
    }
}

/// `count` generated accounts: `("user<i>", "user<i>.example.test")` for i in 1..=count.
pub fn sample_accounts(count: usize) -> impl Iterator<Item = (String, String)> {
    (1..=count).map(|i| (format!("user{i}"), format!("user{i}.example.test")))
}

/// A probability clamped to 0.0–1.0 (NaN is 0.0).
pub fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_profiles_and_fault_kinds() {
        assert_eq!("wp2".parse::<Profile>().unwrap(), Profile::Wp2);
        assert_eq!("Standard".parse::<Profile>().unwrap(), Profile::Standard);
        assert_eq!("mailnode".parse::<Profile>().unwrap().code(), "MAILNODE");
        assert_eq!("500".parse::<FaultKind>().unwrap(), FaultKind::Http500);
        assert_eq!(
            "Drop".parse::<FaultKind>().unwrap(),
            FaultKind::DropConnection
        );
        assert!("boom".parse::<FaultKind>().is_err());
    }

    #[test]
    fn builder_sets_fields() {
        let c = SimConfig::new()
            .sample_accounts(2)
            .fault_rate(3.0)
            .old_version()
            .seed(7);
        assert_eq!(c.accounts.len(), 2);
        assert_eq!(c.accounts["user2"], "user2.example.test");
        assert_eq!(c.fault_rate, 1.0);
        assert_eq!(c.version, OLD_VERSION);
        assert_eq!(c.seed, Some(7));
    }
}
