//! The `[facade]` keys for client connections: how many, served by how
//! many threads, how long they may sit idle, and who the client is behind
//! a balancer.

use std::time::Duration;

use super::bounded;
use super::raw::RawFacade;
use super::tls::Problem;
use crate::wire::client_address::TrustedProxies;

/// How the facade treats its client connections.
#[derive(Debug, Clone)]
pub struct ClientConnections {
    /// Threads serving client connections, each with its own event loop.
    pub proxy_threads: usize,
    /// Client connections open at most; beyond, a new one gets a 503 and
    /// is closed.
    pub max_connections: usize,
    /// Requests one HTTP/1.1 client connection may carry; the answer to
    /// the last says `Connection: close`.
    pub max_requests_per_connection: u64,
    /// How long a client may take to send a request head, from when the
    /// connection starts waiting for it; a slower one is dropped.
    pub header_read_timeout: Duration,
    /// How long an HTTP/2 client connection may sit with no stream open
    /// before the facade closes it (GOAWAY).
    pub http2_idle_timeout: Duration,
    /// Whether every connection on the proxy listeners starts with a PROXY
    /// protocol header (v1 or v2) naming the client, from a TCP balancer.
    pub proxy_protocol: bool,
    /// HTTP proxies in front whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

/// Reads and checks the keys; a problem is at the offending value.
pub(super) fn check(raw: &RawFacade) -> Result<ClientConnections, Problem> {
    Ok(ClientConnections {
        proxy_threads: bounded(
            &raw.proxy_threads,
            crate::wire::proxy_threads::default_count(),
            1..=1024,
            "proxy_threads",
        )?,
        max_connections: bounded(&raw.max_connections, 16_384, 1..=1_000_000, "max_connections")?,
        max_requests_per_connection: bounded(
            &raw.max_requests_per_connection,
            10_000,
            1..=100_000_000,
            "max_requests_per_connection",
        )? as u64,
        header_read_timeout: Duration::from_millis(bounded(
            &raw.header_read_timeout_ms,
            crate::wire::http1::HEADER_READ_TIMEOUT.as_millis() as usize,
            100..=3_600_000,
            "header_read_timeout_ms",
        )? as u64),
        http2_idle_timeout: Duration::from_secs(bounded(
            &raw.http2_idle_timeout_seconds,
            300,
            1..=86_400,
            "http2_idle_timeout_seconds",
        )? as u64),
        proxy_protocol: raw.proxy_protocol.unwrap_or(false),
        trusted_proxies: match &raw.trusted_proxies {
            Some(entries) => {
                TrustedProxies::parse(entries.get_ref()).map_err(|message| (entries.span().start, message))?
            }
            None => TrustedProxies::default(),
        },
    })
}
