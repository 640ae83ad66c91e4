//! Which address a request comes from. Sign-in throttling counts failures per client address,
//! so that address must be one a client cannot choose. The TCP peer is such an address; an
//! `X-Forwarded-For` header is not, unless the peer is a proxy the operator trusts, and then
//! only the entries trusted proxies appended: the header is read from the right, past every
//! entry that is itself a trusted proxy, and the first one that is not is the client (the
//! "rightmost untrusted" rule). Everything left of it was written by the client and is ignored.

use ipnet::IpNet;
use std::net::IpAddr;
use std::str::FromStr;

/// The proxies whose `X-Forwarded-For` entries are believed, as CIDR ranges. Empty (the
/// default): the header is never read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A trusted-proxy range that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an IP address or CIDR range (like 10.0.0.0/8 or fd00::/8)")]
pub struct BadRange(pub String);

/// One parsed range of [`TrustedProxies`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedRange(IpNet);

/// One range: `10.0.0.0/8`, `fd00::/8`, or a single address (`192.168.1.5`, which means
/// `/32`, or `/128` for IPv6).
impl FromStr for TrustedRange {
    type Err = BadRange;

    fn from_str(s: &str) -> Result<Self, BadRange> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(TrustedRange(net));
        }
        s.parse::<IpAddr>()
            .map(|a| TrustedRange(IpNet::from(a)))
            .map_err(|_| BadRange(s.to_string()))
    }
}

impl TrustedProxies {
    #[must_use]
    pub fn new(ranges: impl IntoIterator<Item = TrustedRange>) -> Self {
        TrustedProxies(ranges.into_iter().map(|r| r.0).collect())
    }

    /// Whether no proxy is trusted (the header is never read).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address: the TCP `peer`, or, when the peer is a trusted proxy, the
    /// rightmost entry of the `X-Forwarded-For` values (in header order) that is not a trusted
    /// proxy. When every entry is a trusted proxy, the leftmost of them (the request began at a
    /// proxy); when an entry cannot be read, the last trusted hop before it (what lies beyond
    /// is unaccountable). Without a known peer nothing can be vouched for: `None`.
    pub fn client_address<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut last_trusted = peer;
        for entry in forwarded_for.rev().flat_map(|v| v.rsplit(',')) {
            let Some(hop) = parse_entry(entry) else {
                return Some(last_trusted);
            };
            if !self.trusts(hop) {
                return Some(hop);
            }
            last_trusted = hop;
        }
        Some(last_trusted)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack listener reports for an
/// IPv4 peer) as the IPv4 address they are, so `10.0.0.0/8` covers them.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, as proxies write it (`203.0.113.7`, `2001:db8::1`),
/// or with a port as some append it (`203.0.113.7:5123`, `[2001:db8::1]:5123`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse().ok().map(canonical);
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|r| r.parse::<TrustedRange>().unwrap()))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn from(t: &TrustedProxies, peer: &str, headers: &[&str]) -> Option<IpAddr> {
        t.client_address(Some(ip(peer)), headers.iter().copied())
    }

    #[test]
    fn ranges_parse_as_cidr_or_single_addresses_and_bad_ones_are_named() {
        assert_eq!(
            "10.0.0.0/8".parse::<TrustedRange>().unwrap(),
            TrustedRange("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            " 192.168.1.5 ".parse::<TrustedRange>().unwrap(),
            TrustedRange("192.168.1.5/32".parse().unwrap())
        );
        assert_eq!(
            "2001:db8::1".parse::<TrustedRange>().unwrap(),
            TrustedRange("2001:db8::1/128".parse().unwrap())
        );
        for bad in ["10.0.0/8", "10.0.0.0/33", "fd00::/129", "proxy.local", ""] {
            let e = bad.parse::<TrustedRange>().unwrap_err();
            assert_eq!(e, BadRange(bad.to_string()));
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn with_no_trusted_proxy_the_header_is_never_read() {
        let none = TrustedProxies::default();
        assert_eq!(
            from(&none, "198.51.100.7", &["203.0.113.9"]),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(none.client_address(None, ["203.0.113.9"].into_iter()), None);
    }

    #[test]
    fn a_spoofed_header_from_an_untrusted_peer_is_ignored() {
        let t = proxies(&["10.0.0.0/8"]);
        // An in-cluster caller outside the proxy range names any address it likes.
        assert_eq!(
            from(&t, "192.168.5.5", &["203.0.113.9"]),
            Some(ip("192.168.5.5"))
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_entry_it_appended_is_the_client() {
        let t = proxies(&["10.0.0.0/8"]);
        // The client wrote "1.2.3.4" itself; the ingress appended what it saw.
        assert_eq!(
            from(&t, "10.1.2.3", &["1.2.3.4, 203.0.113.9"]),
            Some(ip("203.0.113.9"))
        );
        // No header: the request came from the proxy itself.
        assert_eq!(from(&t, "10.1.2.3", &[]), Some(ip("10.1.2.3")));
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_walked_from_the_right() {
        let t = proxies(&["10.0.0.0/8", "192.168.1.5"]);
        // client → CDN edge (192.168.1.5, appends the client) → ingress (10.0.0.7, appends
        // the edge) → server (peer 10.0.0.7).
        let header = ["6.6.6.6, 203.0.113.9, 192.168.1.5"];
        assert_eq!(from(&t, "10.0.0.7", &header), Some(ip("203.0.113.9")));
        // The same entries split over two header lines.
        assert_eq!(
            from(&t, "10.0.0.7", &["6.6.6.6, 203.0.113.9", "192.168.1.5"]),
            Some(ip("203.0.113.9"))
        );
        // Every hop trusted: the request began at the farthest proxy.
        assert_eq!(
            from(&t, "10.0.0.7", &["10.9.9.9, 192.168.1.5"]),
            Some(ip("10.9.9.9"))
        );
        // An unreadable entry stops the walk at the last hop that can be vouched for.
        assert_eq!(
            from(&t, "10.0.0.7", &["203.0.113.9, unknown, 192.168.1.5"]),
            Some(ip("192.168.1.5"))
        );
    }

    #[test]
    fn ipv6_peers_entries_and_ports() {
        let t = proxies(&["fd00::/8", "10.0.0.0/8"]);
        assert_eq!(
            from(&t, "fd00::1", &["2001:db8::7"]),
            Some(ip("2001:db8::7"))
        );
        assert_eq!(
            from(&t, "fd00::1", &["[2001:db8::7]:443, fd00::2"]),
            Some(ip("2001:db8::7"))
        );
        assert_eq!(
            from(&t, "fd00::1", &["203.0.113.9:5123"]),
            Some(ip("203.0.113.9"))
        );
        // A dual-stack listener reports an IPv4 proxy as ::ffff:10.0.0.7.
        assert_eq!(
            from(&t, "::ffff:10.0.0.7", &["203.0.113.9"]),
            Some(ip("203.0.113.9"))
        );
        // An untrusted IPv6 peer's header is ignored.
        assert_eq!(
            from(&t, "2001:db8::66", &["203.0.113.9"]),
            Some(ip("2001:db8::66"))
        );
    }
}
