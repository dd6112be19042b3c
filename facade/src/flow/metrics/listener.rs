//! The listeners' own metrics, apart from any request: client TLS
//! handshakes that did not complete, reloads of the TLS files, and
//! connections closed for their PROXY protocol header. Each family lists
//! every reason from the start, so that the first failure shows in
//! `increase()`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::wire::proxy_protocol::ProxyHeaderFailure;
use crate::wire::tls::server::HandshakeFailure;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The listeners' counters.
pub(super) struct ListenerMetrics {
    handshake_failures: Family<ReasonLabels, Counter>,
    reloads: Family<OutcomeLabels, Counter>,
    proxy_headers_refused: Family<ReasonLabels, Counter>,
}

/// A family of counters by reason, every one of `reasons` present at 0.
fn by_reason(
    registry: &mut Registry,
    name: &str,
    help: &str,
    reasons: impl IntoIterator<Item = &'static str>,
) -> Family<ReasonLabels, Counter> {
    let family = Family::<ReasonLabels, Counter>::default();
    registry.register(name, help, family.clone());
    for reason in reasons {
        let _ = family.get_or_create(&ReasonLabels { reason });
    }
    family
}

impl ListenerMetrics {
    /// Registers the listeners' metrics in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let handshake_failures = by_reason(
            registry,
            "tls_handshake_failures",
            "Client TLS handshakes that did not complete, by reason: timeout, closed, incompatible, malformed, alert, client_certificate, other",
            HandshakeFailure::ALL.map(HandshakeFailure::as_str),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "tls_certificate_reloads",
            "Reloads of the listener's certificates, client authorities and ticket keys: ok, or failed (the ones in use stay)",
            reloads.clone(),
        );
        let proxy_headers_refused = by_reason(
            registry,
            "proxy_protocol_refused",
            "Connections closed for their PROXY protocol header, by reason: missing, malformed, too_long, timeout, closed",
            ProxyHeaderFailure::ALL.map(ProxyHeaderFailure::as_str),
        );
        Self {
            handshake_failures,
            reloads,
            proxy_headers_refused,
        }
    }

    /// Counts a client's TLS handshake that did not complete.
    pub(super) fn tls_handshake_failed(&self, failure: HandshakeFailure) {
        self.handshake_failures
            .get_or_create(&ReasonLabels {
                reason: failure.as_str(),
            })
            .inc();
    }

    /// Counts a reload of the TLS files: `ok` or `failed`.
    pub(super) fn tls_reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Reloads with `outcome` so far.
    #[cfg(test)]
    pub(super) fn tls_reload_count(&self, outcome: &'static str) -> u64 {
        self.reloads.get_or_create(&OutcomeLabels { outcome }).get()
    }

    /// Counts a connection closed for its PROXY protocol header.
    pub(super) fn proxy_header_refused(&self, failure: ProxyHeaderFailure) {
        self.proxy_headers_refused
            .get_or_create(&ReasonLabels {
                reason: failure.as_str(),
            })
            .inc();
    }
}
