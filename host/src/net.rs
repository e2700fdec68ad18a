//! Who a request comes from, for the per-address rate limits and the client activity log.
//!
//! - [`TrustedProxies`] (`trusted_proxies`, empty by default): the reverse proxies whose
//!   `X-Forwarded-For` is believed. A request whose connecting address is one of them comes from
//!   the rightmost address of that header that is not a trusted proxy (each proxy appends the
//!   address it was connected from, so everything right of the first untrusted hop was written
//!   by proxies we trust, and everything left of it by whoever sent the request). Without a
//!   trusted proxy in front, the header is ignored: anyone can write it.
//! - [`rate_key`]: the bucket an address counts against. An IPv6 host is usually given a whole
//!   /64 (and picks addresses in it freely), so IPv6 addresses are grouped by their /64; an
//!   IPv4-mapped IPv6 address counts as its IPv4 address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// An address block: an address and how many leading bits of it are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `192.0.2.7`, `10.0.0.0/8`, `2001:db8::/32`, `::1` (a bare address is the block of one).
    /// The host bits of a block must be zero (`10.0.0.1/8` is refused: it is likely a typo).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (addr, prefix) = match raw.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (raw, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{raw:?} is not an IP address or a CIDR block"))?;
        let addr = addr.to_canonical();
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("{raw:?}: the prefix length must be 0 to {width}"))?,
        };
        let cidr = Self { addr, prefix };
        if masked(addr, prefix) != addr {
            return Err(format!(
                "{raw:?}: the address has bits set beyond the /{prefix} prefix (did you mean {}/{prefix}?)",
                masked(addr, prefix)
            ));
        }
        Ok(cidr)
    }

    /// Whether `addr` is in the block.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        addr.is_ipv4() == self.addr.is_ipv4() && masked(addr, self.prefix) == self.addr
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `addr` with all but its first `prefix` bits cleared.
fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed (`trusted_proxies`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parse every entry; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| Cidr::parse(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether none is configured (the default: `X-Forwarded-For` is ignored).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(addr))
    }

    /// Where a request comes from: the connecting address `peer`, unless it is a trusted proxy;
    /// then the rightmost hop of `forwarded_for` (the `X-Forwarded-For` values in order) that is
    /// not a trusted proxy. A hop that is not an address stops the walk at the hop right of it
    /// (a trusted proxy would not have written it).
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops = forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Some(addr) = parse_hop(hop) else {
                break;
            };
            client = addr.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(", "))
    }
}

/// One `X-Forwarded-For` hop: an address, possibly with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The rate-limit bucket of an address: IPv4 addresses as they are, IPv6 ones by their /64.
pub fn rate_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_contain() {
        let ten = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(ten.contains(ip("10.1.2.3")));
        assert!(
            ten.contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped counts as IPv4"
        );
        assert!(!ten.contains(ip("11.0.0.1")));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("203.0.113.9"))
        );
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
        for bad in [
            "",
            "proxy",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "::/129",
            "1.2.3.4/x",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("203.0.113.5"), &["198.51.100.1"]),
            ip("203.0.113.5"),
            "no trusted proxy: the header is ignored"
        );
        let proxies = TrustedProxies::parse(&["10.0.0.0/8", "::1"]).unwrap();
        assert_eq!(
            proxies.client(ip("203.0.113.5"), &["198.51.100.1"]),
            ip("203.0.113.5"),
            "a connection that is not a proxy: the header is ignored"
        );
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &["6.6.6.6, 198.51.100.1, 10.0.0.9"]),
            ip("198.51.100.1"),
            "a spoofed left part is skipped"
        );
        assert_eq!(
            proxies.client(ip("::1"), &["6.6.6.6", "198.51.100.1:5555"]),
            ip("198.51.100.1"),
            "several headers, a port"
        );
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &["garbage, 10.0.0.3"]),
            ip("10.0.0.3"),
            "an unreadable hop stops the walk"
        );
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &[]),
            ip("10.0.0.2"),
            "no header: the proxy itself"
        );
        assert_eq!(
            proxies.client(ip("10.0.0.2"), &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        assert_eq!(rate_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            rate_key(ip("2001:db8:1:2:ffff::9")),
            rate_key(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            rate_key(ip("2001:db8:1:3::1")),
            rate_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(rate_key(ip("198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(rate_key(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
    }
}
