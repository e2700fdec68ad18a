//! Configuration of one simulated Plesk server: [`PleskConfig`] (builder style).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use panel_sim::FaultKind;

/// The Plesk version a simulated server reports by default (`stat/version/plesk_version`).
pub const DEFAULT_VERSION: &str = "18.0.61";

/// The XML API protocol versions a current server accepts (`<server><get_protos/>`), newest
/// first. Custom buttons (`ui`) need 1.6.3.5 (Plesk 11.0).
pub const DEFAULT_PROTOS: &[&str] = &[
    "1.6.9.1", "1.6.9.0", "1.6.8.0", "1.6.7.0", "1.6.6.0", "1.6.5.0", "1.6.4.0", "1.6.3.5",
    "1.6.3.4", "1.6.3.3", "1.6.3.2", "1.6.3.1", "1.6.3.0", "1.6.2.0", "1.6.1.0", "1.6.0.2",
    "1.6.0.1", "1.6.0.0", "1.5.2.1", "1.5.2.0", "1.4.2.0", "1.4.1.2", "1.4.1.1", "1.4.1.0",
    "1.4.0.0",
];

/// A Plesk release before custom buttons could be managed over the XML API (10.4: protocols up to
/// 1.6.3.4).
pub const OLD_VERSION: &str = "10.4.4";

/// The administrator login a simulated server accepts by default.
pub const DEFAULT_ADMIN_LOGIN: &str = "admin";

/// The administrator password a simulated server accepts by default.
pub const DEFAULT_ADMIN_PASSWORD: &str = "PLESKSIMPASSWORD0123456789";

/// One customer to create at start, with the subscriptions (domains) it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSeed {
    /// The customer's login.
    pub login: String,
    /// The subscriptions' names (domains).
    pub domains: Vec<String>,
    /// Suspended (`status` 16) rather than active (0).
    pub suspended: bool,
}

/// The configuration of one simulated Plesk server.
#[derive(Debug, Clone)]
pub struct PleskConfig {
    /// `plesk_version` as `<server><get><stat/>` answers it.
    pub plesk_version: String,
    /// The protocol versions the server accepts, as `get_protos` lists them.
    pub protos: Vec<String>,
    /// Customers created at start (ids from 1, in this order).
    pub customers: Vec<CustomerSeed>,
    /// The administrator's login (`HTTP_AUTH_LOGIN`).
    pub admin_login: String,
    /// The administrator's password (`HTTP_AUTH_PASSWD`).
    pub admin_password: String,
    /// A secret key accepted in the `KEY` header (XML API 1.6.6.0 and later), if any.
    pub secret_key: Option<String>,
    /// Latency added to every HTTP request, before anything else happens.
    pub request_latency: Duration,
    /// Latency added to every operation of a packet.
    pub operation_latency: Duration,
    /// The probability (0.0–1.0) that an HTTP request gets a fault.
    pub fault_rate: f64,
    /// The fault kinds drawn from.
    pub fault_kinds: Vec<FaultKind>,
    /// How long a timeout fault hangs.
    pub hang_for: Duration,
    /// Seed of the fault RNG; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// The address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
}

impl Default for PleskConfig {
    fn default() -> Self {
        PleskConfig {
            plesk_version: DEFAULT_VERSION.to_owned(),
            protos: DEFAULT_PROTOS.iter().map(|&p| p.to_owned()).collect(),
            customers: Vec::new(),
            admin_login: DEFAULT_ADMIN_LOGIN.to_owned(),
            admin_password: DEFAULT_ADMIN_PASSWORD.to_owned(),
            secret_key: None,
            request_latency: Duration::ZERO,
            operation_latency: Duration::ZERO,
            fault_rate: 0.0,
            fault_kinds: FaultKind::ALL.to_vec(),
            hang_for: Duration::from_secs(30),
            seed: None,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }
}

impl PleskConfig {
    /// Plesk [`DEFAULT_VERSION`] with [`DEFAULT_PROTOS`], no customers, the default administrator,
    /// no key, no latency, no faults, listening on `127.0.0.1:0`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the Plesk version and the protocol versions it accepts.
    pub fn version<P: Into<String>>(
        mut self,
        plesk_version: impl Into<String>,
        protos: impl IntoIterator<Item = P>,
    ) -> Self {
        self.plesk_version = plesk_version.into();
        self.protos = protos.into_iter().map(Into::into).collect();
        self
    }

    /// Plesk [`OLD_VERSION`]: protocols up to 1.6.3.4, so no custom buttons.
    pub fn old_version(self) -> Self {
        let protos: Vec<&str> = DEFAULT_PROTOS
            .iter()
            .copied()
            .skip_while(|p| *p != "1.6.3.4")
            .collect();
        self.version(OLD_VERSION, protos)
    }

    /// Adds an active customer owning one subscription per domain.
    pub fn customer<D: Into<String>>(
        mut self,
        login: impl Into<String>,
        domains: impl IntoIterator<Item = D>,
    ) -> Self {
        self.customers.push(CustomerSeed {
            login: login.into(),
            domains: domains.into_iter().map(Into::into).collect(),
            suspended: false,
        });
        self
    }

    /// Adds `count` customers `user1` … `user<count>`, each with subscription `user<i>.example.test`
    /// (the same names as panel-sim's sample accounts).
    pub fn sample_customers(mut self, count: usize) -> Self {
        for (login, domain) in panel_sim::sample_accounts(count) {
            self = self.customer(login, [domain]);
        }
        self
    }

    /// Sets the administrator's credentials.
    pub fn admin(mut self, login: impl Into<String>, password: impl Into<String>) -> Self {
        self.admin_login = login.into();
        self.admin_password = password.into();
        self
    }

    /// Accepts this secret key in the `KEY` header.
    pub fn secret_key(mut self, key: impl Into<String>) -> Self {
        self.secret_key = Some(key.into());
        self
    }

    /// Sets the per-request latency.
    pub fn request_latency(mut self, latency: Duration) -> Self {
        self.request_latency = latency;
        self
    }

    /// Sets the per-operation latency.
    pub fn operation_latency(mut self, latency: Duration) -> Self {
        self.operation_latency = latency;
        self
    }

    /// Sets the fault rate (clamped to 0.0–1.0).
    pub fn fault_rate(mut self, rate: f64) -> Self {
        self.fault_rate = panel_sim::config::clamp_rate(rate);
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

    /// Seeds the fault RNG.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets the listen address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The fault and latency knobs as panel-sim's configuration, whose fault lottery this
    /// simulator shares.
    pub(crate) fn behaviour_config(&self) -> panel_sim::SimConfig {
        let mut config = panel_sim::SimConfig::new()
            .request_latency(self.request_latency)
            .command_latency(self.operation_latency)
            .fault_rate(self.fault_rate)
            .fault_kinds(self.fault_kinds.iter().copied())
            .hang_for(self.hang_for);
        config.seed = self.seed;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_fields() {
        let c = PleskConfig::new()
            .sample_customers(2)
            .customer("carol", ["a.test", "b.test"])
            .old_version()
            .fault_rate(4.0)
            .seed(3);
        assert_eq!(c.customers.len(), 3);
        assert_eq!(c.customers[1].login, "user2");
        assert_eq!(c.customers[2].domains, ["a.test", "b.test"]);
        assert_eq!(c.plesk_version, OLD_VERSION);
        assert_eq!(c.protos.first().map(String::as_str), Some("1.6.3.4"));
        assert!(!c.protos.iter().any(|p| p == "1.6.3.5"));
        assert_eq!(c.fault_rate, 1.0);
        assert_eq!(c.behaviour_config().seed, Some(3));
    }
}
