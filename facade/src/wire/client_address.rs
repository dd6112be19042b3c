//! Who the client is when the facade sits behind HTTP proxies it trusts
//! (`trusted_proxies`): an L7 load balancer, a CDN. Their connections come
//! from their own addresses, and the client's is in `X-Forwarded-For`. The
//! address found here is the one a canary split by `sticky = "client"`
//! hashes and the access log names; what goes upstream in
//! `X-Forwarded-For` is unchanged (the list as it came, and the peer).
//!
//! The list is read from the right, the way nginx's realip module reads it
//! with `real_ip_recursive on`: each trusted proxy appended the address it
//! saw, so the rightmost address that is not a trusted proxy is the first
//! that no trusted proxy can vouch for beyond, the client. Entries to its
//! left were written by the client or its own proxies and could say
//! anything.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use ipnet::IpNet;

use crate::wire::headers::X_FORWARDED_FOR;

/// The networks whose connections are proxies the facade believes.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Reads addresses (`10.1.2.3`, `2001:db8::1`) and networks
    /// (`10.0.0.0/8`); the error names the entry that is neither.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                let text = entry.trim();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "trusted_proxies: `{entry}` is neither an address nor a network; write them as \"10.0.0.7\", \"10.0.0.0/8\" or \"2001:db8::/32\""
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether none are configured: the connection's peer is the client.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client of a request from `peer` with `headers`: `peer` itself
    /// unless it is a trusted proxy; then the rightmost address of
    /// `X-Forwarded-For` that is not, or the leftmost if all are. An entry
    /// that is not an address ends the walk at the last trusted one, since
    /// nothing to its left can be believed.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        // Field lines in order, each a comma-separated list (RFC 9110 §5.3).
        let lines = headers.get_all(&X_FORWARDED_FOR).iter().collect::<Vec<_>>();
        for line in lines.iter().rev() {
            let Ok(text) = line.to_str() else {
                return client;
            };
            for entry in text.rsplit(',') {
                let Some(address) = address_of(entry.trim()) else {
                    return client;
                };
                client = address;
                if !self.trusts(address) {
                    return client;
                }
            }
        }
        client
    }
}

/// An entry of `X-Forwarded-For`: an address, with a port or not.
fn address_of(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

/// An IPv4 address as itself even when it came as IPv4-mapped IPv6
/// (`::ffff:10.0.0.7`, as a dual-stack listener reports it).
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(&X_FORWARDED_FOR, line.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8", "192.0.2.1"]);
        let forwarded = headers(&["198.51.100.9, 203.0.113.7, 10.1.1.1"]);
        assert_eq!(proxies.client(ip("192.0.2.1"), &forwarded), ip("203.0.113.7"));
        // Over several field lines, read as one list.
        let split = headers(&["198.51.100.9, 203.0.113.7", "10.1.1.1"]);
        assert_eq!(proxies.client(ip("10.9.9.9"), &split), ip("203.0.113.7"));
        // A port on an entry is not part of the address.
        let ported = headers(&["203.0.113.7:4711", "[2001:db8::7]:443"]);
        assert_eq!(proxies.client(ip("10.9.9.9"), &ported), ip("2001:db8::7"));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let forged = headers(&["203.0.113.7"]);
        assert_eq!(proxies.client(ip("198.51.100.9"), &forged), ip("198.51.100.9"));
        assert_eq!(
            TrustedProxies::default().client(ip("10.1.1.1"), &forged),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn an_entry_that_is_not_an_address_stops_at_the_last_trusted_hop() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let odd = headers(&["203.0.113.7, unknown, 10.2.2.2"]);
        assert_eq!(proxies.client(ip("10.1.1.1"), &odd), ip("10.2.2.2"));
        // All trusted, or none at all: the last trusted address seen.
        assert_eq!(
            proxies.client(ip("10.1.1.1"), &headers(&["10.3.3.3"])),
            ip("10.3.3.3")
        );
        assert_eq!(proxies.client(ip("10.1.1.1"), &HeaderMap::new()), ip("10.1.1.1"));
    }

    #[test]
    fn ipv4_mapped_peers_are_matched_as_ipv4() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let forwarded = headers(&["203.0.113.7"]);
        assert_eq!(
            proxies.client(ip("::ffff:10.1.1.1"), &forwarded),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn an_entry_that_is_neither_an_address_nor_a_network_is_named() {
        let error = TrustedProxies::parse(&["10.0.0.0/8".to_owned(), "10.0.0.0/33".to_owned()]).unwrap_err();
        assert!(
            error.contains("`10.0.0.0/33`") && error.contains("10.0.0.0/8\""),
            "{error}"
        );
        assert!(TrustedProxies::parse(&["lb.internal".to_owned()]).is_err());
    }
}
