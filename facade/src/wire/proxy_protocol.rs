//! The PROXY protocol on the proxy listeners (`proxy_protocol = true`):
//! a TCP load balancer in front of the facade (an AWS Network Load
//! Balancer, Google Cloud's TCP proxy, HAProxy with `send-proxy-v2`)
//! sends the client's address in a header before the connection's first
//! byte, and the facade takes it as the client's address for everything
//! that uses one: `X-Forwarded-For`, and a canary split by `sticky =
//! "client"`, which behind a balancer without it would send every client
//! to the same side.
//!
//! Both versions of HAProxy's specification are read, the text `v1` and
//! the binary `v2`, with `ppp`. The header is peeked and then exactly its
//! bytes are read, so what follows it (a TLS ClientHello, a request head)
//! stays on the socket for the TLS and HTTP layers, which need not know
//! of it.
//!
//! Invariants:
//! - With the setting on, every connection on the proxy listeners starts
//!   with a header or is closed, and counted: accepting connections
//!   without one would let any client that reaches the port directly pass
//!   as whatever address it likes in its own header, or as the balancer.
//! - A `LOCAL` header (the balancer's own health check) or one with no
//!   usable address (`UNKNOWN`, a UNIX socket) keeps the connection's own
//!   address.
//! - The header arrives within the header read timeout or the connection
//!   is closed. The specification asks senders to send it at once; one
//!   that arrives in parts is peeked again after a pause that doubles up
//!   to 50 ms, so a slow sender costs a timer, not a busy loop.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::v2::{Addresses, Command};
use ppp::{v1, HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest header read: v2's addresses and the TLVs balancers add
/// (AWS's VPC endpoint id, say) fit many times over.
const MAX_HEADER_BYTES: usize = 4096;
/// v2's signature, the first 12 bytes of its header.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// v1's first bytes.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest pause between two peeks of a header that came in part.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Why a connection's PROXY header was refused; a label of
/// `strangler_facade_proxy_protocol_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyHeaderFailure {
    /// The connection started with something other than a header: a
    /// client that reached the port past the balancer, or a balancer not
    /// set to send one.
    Missing,
    /// It started like a header, but not a valid one.
    Malformed,
    /// A header longer than the facade reads.
    TooLong,
    /// No whole header within the header read timeout.
    Timeout,
    /// The connection closed, or failed, before a whole header.
    Closed,
}

impl ProxyHeaderFailure {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyHeaderFailure::Missing => "missing",
            ProxyHeaderFailure::Malformed => "malformed",
            ProxyHeaderFailure::TooLong => "too_long",
            ProxyHeaderFailure::Timeout => "timeout",
            ProxyHeaderFailure::Closed => "closed",
        }
    }

    /// Every kind, for metrics that list them all from the start.
    pub const ALL: [ProxyHeaderFailure; 5] = [
        ProxyHeaderFailure::Missing,
        ProxyHeaderFailure::Malformed,
        ProxyHeaderFailure::TooLong,
        ProxyHeaderFailure::Timeout,
        ProxyHeaderFailure::Closed,
    ];
}

/// What the peeked bytes hold.
#[derive(Debug, PartialEq, Eq)]
enum Peeked {
    /// A whole header of `length` bytes naming the client at `source`
    /// (`None`: keep the connection's own address).
    Header {
        length: usize,
        source: Option<SocketAddr>,
    },
    /// The start of a header.
    Partial,
    /// Not a header.
    Refused(ProxyHeaderFailure),
}

fn parse(bytes: &[u8]) -> Peeked {
    let starts = |prefix: &[u8]| {
        let shared = bytes.len().min(prefix.len());
        bytes[..shared] == prefix[..shared]
    };
    if !starts(V2_SIGNATURE) && !starts(V1_PREFIX) {
        return Peeked::Refused(ProxyHeaderFailure::Missing);
    }
    let parsed = HeaderResult::parse(bytes);
    if parsed.is_incomplete() {
        return if bytes.len() >= MAX_HEADER_BYTES {
            Peeked::Refused(ProxyHeaderFailure::TooLong)
        } else {
            Peeked::Partial
        };
    }
    match parsed {
        HeaderResult::V1(Ok(header)) => Peeked::Header {
            length: header.header.len(),
            source: match header.addresses {
                v1::Addresses::Tcp4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
                v1::Addresses::Tcp6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(header)) => Peeked::Header {
            length: header.len(),
            source: match (header.command, header.addresses) {
                (Command::Local, _) => None,
                (Command::Proxy, Addresses::IPv4(ip)) => {
                    Some(SocketAddr::from((ip.source_address, ip.source_port)))
                }
                (Command::Proxy, Addresses::IPv6(ip)) => {
                    Some(SocketAddr::from((ip.source_address, ip.source_port)))
                }
                (Command::Proxy, Addresses::Unspecified | Addresses::Unix(_)) => None,
            },
        },
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Peeked::Refused(ProxyHeaderFailure::Malformed),
    }
}

/// Reads the PROXY header at the start of `stream` within `limit`, and
/// nothing after it; returns the client's address it names, or `None`
/// when the connection's own address stands.
pub(crate) async fn read_header(
    stream: &mut TcpStream,
    limit: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderFailure> {
    match tokio::time::timeout(limit, read_header_unbounded(stream)).await {
        Ok(read) => read,
        Err(_) => Err(ProxyHeaderFailure::Timeout),
    }
}

async fn read_header_unbounded(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderFailure> {
    let mut peeked = vec![0u8; MAX_HEADER_BYTES];
    let mut pause = Duration::from_millis(1);
    loop {
        let available = match stream.peek(&mut peeked).await {
            Ok(0) | Err(_) => return Err(ProxyHeaderFailure::Closed),
            Ok(available) => available,
        };
        match parse(&peeked[..available]) {
            Peeked::Header { length, source } => {
                // Peeked, so all there: this read does not wait.
                return match stream.read_exact(&mut peeked[..length]).await {
                    Ok(_) => Ok(source),
                    Err(_) => Err(ProxyHeaderFailure::Closed),
                };
            }
            Peeked::Refused(failure) => return Err(failure),
            Peeked::Partial => {
                // A peek that found bytes leaves the socket readable, so
                // waiting on readiness would return at once: pause instead.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The start of a well-formed header, of either version, to mutate.
    fn header_start() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n".to_vec()),
            Just(b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n".to_vec()),
            Just(v2(1, 0x11, &tcp4([198, 51, 100, 9], 40000), &[0xEA, 0, 1, 7])),
            Just(v2(0, 0x00, &[], &[])),
        ]
    }

    proptest! {
        #![proptest_config(test_harness::properties::config())]

        /// Whatever a client sends first, the parser neither panics nor
        /// claims a header longer than what it was given: the read that
        /// follows takes exactly the header, never a byte of the request.
        #[test]
        fn any_bytes_parse_to_a_bounded_answer(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Peeked::Header { length, .. } = parse(&bytes) {
                prop_assert!(length > 0 && length <= bytes.len());
            }
        }

        /// Headers with bytes changed, cut short or followed by anything.
        #[test]
        fn mutated_headers_parse_to_a_bounded_answer(
            start in header_start(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = start;
            for (at, byte) in flips {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes.extend_from_slice(&tail);
            if let Peeked::Header { length, .. } = parse(&bytes) {
                prop_assert!(length > 0 && length <= bytes.len());
            }
        }
    }

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        let length = u16::try_from(addresses.len() + tlvs.len()).unwrap();
        header.extend_from_slice(&length.to_be_bytes());
        header.extend_from_slice(addresses);
        header.extend_from_slice(tlvs);
        header
    }

    fn tcp4(source: [u8; 4], port: u16) -> Vec<u8> {
        let mut addresses = source.to_vec();
        addresses.extend_from_slice(&[10, 0, 0, 1]);
        addresses.extend_from_slice(&port.to_be_bytes());
        addresses.extend_from_slice(&443u16.to_be_bytes());
        addresses
    }

    #[test]
    fn a_v1_header_names_the_client_and_its_length_ends_at_its_line() {
        let header = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n";
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&bytes),
            Peeked::Header {
                length: header.len(),
                source: Some("203.0.113.7:51234".parse().unwrap()),
            }
        );
        let six = b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n";
        assert_eq!(
            parse(six),
            Peeked::Header {
                length: six.len(),
                source: Some("[2001:db8::7]:51234".parse().unwrap()),
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n\x16\x03\x01"),
            Peeked::Header {
                length: 15,
                source: None
            }
        );
    }

    #[test]
    fn a_v2_header_with_tlvs_names_the_client_and_local_keeps_the_peer() {
        // A TLV of type 0xEA (AWS's), 5 bytes long.
        let tlvs = [0xEA, 0, 5, 1, 2, 3, 4, 5];
        let header = v2(1, 0x11, &tcp4([198, 51, 100, 9], 40000), &tlvs);
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            parse(&bytes),
            Peeked::Header {
                length: header.len(),
                source: Some("198.51.100.9:40000".parse().unwrap()),
            }
        );
        let local = v2(0, 0x00, &[], &[]);
        assert_eq!(
            parse(&local),
            Peeked::Header {
                length: 16,
                source: None
            }
        );
    }

    #[test]
    fn anything_else_is_refused_and_a_start_waits_for_the_rest() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Peeked::Refused(ProxyHeaderFailure::Missing)
        );
        assert_eq!(
            parse(b"\x16\x03\x01\x02\x00"),
            Peeked::Refused(ProxyHeaderFailure::Missing)
        );
        assert_eq!(parse(b"PROX"), Peeked::Partial);
        assert_eq!(parse(b"PROXY TCP4 203.0.113.7 10.0.0.1 5"), Peeked::Partial);
        let header = v2(1, 0x11, &tcp4([198, 51, 100, 9], 40000), &[]);
        assert_eq!(parse(&header[..20]), Peeked::Partial);
        assert_eq!(
            parse(b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n"),
            Peeked::Refused(ProxyHeaderFailure::Malformed)
        );
        // A v2 header claiming more bytes than the facade reads.
        let mut long = V2_SIGNATURE.to_vec();
        long.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        long.resize(MAX_HEADER_BYTES, 0);
        assert_eq!(parse(&long), Peeked::Refused(ProxyHeaderFailure::TooLong));
    }
}
