//! Prometheus metrics of the proxy, served by the admin API at `/metrics`.
//!
//! Label values are capability and backend names from the configuration,
//! interned once as `&'static str` so that counting a request allocates
//! nothing. The series a request counts into are looked up once per
//! (capability, backend, status class) and kept in a small copy-on-write
//! list compared by address: a request then costs no hashing of label
//! strings and no lock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::decision::stage::Stage;
use crate::wire::proxy_protocol::ProxyHeaderFailure;
use crate::wire::tls::server::HandshakeFailure;
use listener::ListenerMetrics;

mod listener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    capability: &'static str,
    backend: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    capability: &'static str,
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    backend: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    backend: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    backend: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityReasonLabels {
    capability: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabels {
    capability: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    capability: &'static str,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DivergenceLabels {
    capability: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    backend: &'static str,
    instance: String,
}

/// What went wrong talking to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// No connection could be made.
    Connect,
    /// No response head within the request timeout.
    Timeout,
    /// The connection broke or the response was malformed.
    Protocol,
    /// The TLS handshake with the backend failed (its certificate did not
    /// verify, say).
    Tls,
}

impl UpstreamErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::Tls => "tls",
        }
    }
}

/// The facade's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    upstream_errors: Family<ErrorLabels, Counter>,
    reloads: Counter,
    store_reachable: Gauge,
    route_revision: Gauge,
    instance_healthy: Family<InstanceLabels, Gauge>,
    retries: Family<BackendLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    breaker_state: Family<BreakerLabels, Gauge>,
    in_flight: Family<BackendLabels, Gauge>,
    fallbacks: Family<CapabilityReasonLabels, Counter>,
    shadow: Family<CapabilityReasonLabels, Counter>,
    auto_rollbacks: Family<CapabilityLabels, Counter>,
    admin_auth: Family<OutcomeLabels, Counter>,
    listener: ListenerMetrics,
    stages: Family<StageLabels, Gauge>,
    canary_permille: Family<CapabilityLabels, Gauge>,
    stage_changes: Family<CapabilityLabels, Counter>,
    divergences: Family<DivergenceLabels, Gauge>,
    reconciliation_age: Family<CapabilityLabels, Gauge>,
    names: Mutex<HashSet<&'static str>>,
    request_series: ArcSwap<Vec<RequestSeries>>,
}

/// The most (capability, backend, status class) triples kept at hand;
/// beyond it, requests look their series up in the families (the label
/// sets come from the configuration, so this is not reached in practice).
const MAX_REQUEST_SERIES: usize = 512;

/// The counter and histogram one kind of answered request goes to.
#[derive(Clone, Debug)]
struct RequestSeries {
    capability: &'static str,
    backend: &'static str,
    status: &'static str,
    count: Counter,
    latency: Histogram,
}

impl RequestSeries {
    fn is(&self, capability: &str, backend: &str, status: &str) -> bool {
        std::ptr::eq(self.capability, capability)
            && std::ptr::eq(self.backend, backend)
            && std::ptr::eq(self.status, status)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The label every series carries when the facade runs as one of several
/// replicas on a store.
pub const REPLICA_LABEL: &str = "replica_id";

/// Interns a name so labels can hold `&'static str`. Only config-defined
/// names (a bounded set) are interned.
fn intern(names: &Mutex<HashSet<&'static str>>, name: &str) -> &'static str {
    let mut names = names.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(existing) = names.get(name) {
        return existing;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

impl Metrics {
    /// Registers every metric, unlabelled by replica.
    pub fn new() -> Self {
        Self::with_registry(Registry::with_prefix("strangler_facade"))
    }

    /// Registers every metric, each series labelled `replica_id="<id>"`,
    /// so that replicas scraped into one Prometheus stay apart even where
    /// the scrape adds no pod label.
    pub fn for_replica(replica_id: &str) -> Self {
        Self::with_registry(Registry::with_prefix_and_labels(
            "strangler_facade",
            [(
                std::borrow::Cow::Borrowed(REPLICA_LABEL),
                std::borrow::Cow::Owned(replica_id.to_owned()),
            )]
            .into_iter(),
        ))
    }

    fn with_registry(mut registry: Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by capability, backend and status class",
            requests.clone(),
        );
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        registry.register(
            "upstream_latency_seconds",
            "Time from receiving a request to the upstream's response head",
            latency.clone(),
        );
        let upstream_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed upstream calls, by backend and kind",
            upstream_errors.clone(),
        );
        let reloads = Counter::default();
        registry.register(
            "route_table_reloads",
            "Route tables swapped in after a store change",
            reloads.clone(),
        );
        let store_reachable = Gauge::default();
        registry.register(
            "route_store_reachable",
            "1 when the last route store check succeeded",
            store_reachable.clone(),
        );
        let route_revision = Gauge::default();
        registry.register(
            "route_table_revision",
            "Route store revision of the table in use",
            route_revision.clone(),
        );
        let instance_healthy = Family::<InstanceLabels, Gauge>::default();
        registry.register(
            "instance_healthy",
            "1 when the instance passes its health checks",
            instance_healthy.clone(),
        );
        let retries = Family::<BackendLabels, Counter>::default();
        registry.register("retries", "Retries sent to a backend", retries.clone());
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "backend_refusals",
            "Requests or retries not sent: circuit_open, bulkhead_full, retry_budget",
            refusals.clone(),
        );
        let breaker_state = Family::<BreakerLabels, Gauge>::default();
        registry.register(
            "circuit_breaker_state",
            "1 for the state each backend's circuit breaker is in",
            breaker_state.clone(),
        );
        let in_flight = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_in_flight",
            "Requests in flight to a backend (its bulkhead's occupancy)",
            in_flight.clone(),
        );
        let fallbacks = Family::<CapabilityReasonLabels, Counter>::default();
        registry.register(
            "fallbacks",
            "Requests the monolith served because the service failed, by reason",
            fallbacks.clone(),
        );
        let shadow = Family::<CapabilityReasonLabels, Counter>::default();
        registry.register(
            "shadow",
            "Shadow copies by outcome: match, mismatch, dropped, skipped",
            shadow.clone(),
        );
        let auto_rollbacks = Family::<CapabilityLabels, Counter>::default();
        registry.register(
            "auto_rollbacks",
            "Capabilities moved back to legacy by their error budget",
            auto_rollbacks.clone(),
        );
        let admin_auth = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "admin_auth_failures",
            "Admin requests refused for their token: wrong (a wrong or missing token) or braked (too many wrong ones from the address)",
            admin_auth.clone(),
        );
        let listener = ListenerMetrics::register(&mut registry);
        let stages = Family::<StageLabels, Gauge>::default();
        registry.register(
            "capability_stage",
            "1 for the stage each capability is at in this facade's route table: legacy, shadow, canary, service, retired",
            stages.clone(),
        );
        let canary_permille = Family::<CapabilityLabels, Gauge>::default();
        registry.register(
            "capability_canary_permille",
            "Share of sticky keys a canary sends to the service, in tenths of a percent (0 outside a canary)",
            canary_permille.clone(),
        );
        let stage_changes = Family::<CapabilityLabels, Counter>::default();
        registry.register(
            "stage_changes",
            "Stage changes swapped into this facade's route table (flips, rollbacks), by capability",
            stage_changes.clone(),
        );
        let divergences = Family::<DivergenceLabels, Gauge>::default();
        registry.register(
            "reconciliation_divergences",
            "Rows the capability's latest finished comparison found missing, extra or changed, read from the toolkit store",
            divergences.clone(),
        );
        let reconciliation_age = Family::<CapabilityLabels, Gauge>::default();
        registry.register(
            "reconciliation_age_seconds",
            "Seconds since the capability's latest finished comparison (clean or diverged) ended, read from the toolkit store",
            reconciliation_age.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            upstream_errors,
            reloads,
            store_reachable,
            route_revision,
            instance_healthy,
            retries,
            refusals,
            breaker_state,
            in_flight,
            fallbacks,
            shadow,
            auto_rollbacks,
            admin_auth,
            listener,
            stages,
            canary_permille,
            stage_changes,
            divergences,
            reconciliation_age,
            names: Mutex::new(HashSet::new()),
            request_series: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Counts a retry to `backend`.
    pub fn retry(&self, backend: &'static str) {
        self.retries.get_or_create(&BackendLabels { backend }).inc();
    }

    /// Counts a request `backend` was not given: `circuit_open`,
    /// `bulkhead_full` or `retry_budget` (a retry the budget refused).
    pub fn refused(&self, backend: &'static str, reason: &'static str) {
        self.refusals
            .get_or_create(&RefusalLabels { backend, reason })
            .inc();
    }

    /// Records a backend's breaker state and requests in flight.
    pub fn backend_state(&self, backend: &'static str, breaker: &'static str, in_flight: usize) {
        for state in ["closed", "open", "half_open"] {
            self.breaker_state
                .get_or_create(&BreakerLabels { backend, state })
                .set(i64::from(state == breaker));
        }
        self.in_flight
            .get_or_create(&BackendLabels { backend })
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }

    /// Counts a request the monolith served because the service failed.
    pub fn fallback(&self, capability: &'static str, reason: &'static str) {
        self.fallbacks
            .get_or_create(&CapabilityReasonLabels { capability, reason })
            .inc();
    }

    /// Counts a shadow outcome: `match`, `mismatch`, `dropped`, `skipped`.
    pub fn shadow(&self, capability: &'static str, outcome: &'static str) {
        self.shadow
            .get_or_create(&CapabilityReasonLabels {
                capability,
                reason: outcome,
            })
            .inc();
    }

    /// Counts an automatic rollback.
    pub fn auto_rollback(&self, capability: &'static str) {
        self.auto_rollbacks
            .get_or_create(&CapabilityLabels { capability })
            .inc();
    }

    /// Counts an admin request refused for its token: `wrong` or `braked`.
    pub fn admin_auth_failure(&self, outcome: &'static str) {
        self.admin_auth.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts a client's TLS handshake that did not complete.
    pub fn tls_handshake_failed(&self, failure: HandshakeFailure) {
        self.listener.tls_handshake_failed(failure);
    }

    /// Counts a reload of the TLS files: `ok` or `failed`.
    pub fn tls_reload(&self, outcome: &'static str) {
        self.listener.tls_reload(outcome);
    }

    /// Counts a connection closed for its PROXY protocol header.
    pub fn proxy_header_refused(&self, failure: ProxyHeaderFailure) {
        self.listener.proxy_header_refused(failure);
    }

    /// Records the stage `capability` is at in this facade's table; the
    /// first call also exposes its stage-change and rollback counters at 0.
    pub fn stage(&self, capability: &'static str, stage: Stage) {
        for name in Stage::NAMES {
            self.stages
                .get_or_create(&StageLabels {
                    capability,
                    stage: name,
                })
                .set(i64::from(name == stage.name()));
        }
        self.canary_permille
            .get_or_create(&CapabilityLabels { capability })
            .set(stage.permille().map_or(0, |share| i64::from(share.get())));
        // Counters present from the start, so that the first change or
        // rollback shows in `increase()` (a series born at 1 does not).
        let _ = self.stage_changes.get_or_create(&CapabilityLabels { capability });
        let _ = self
            .auto_rollbacks
            .get_or_create(&CapabilityLabels { capability });
    }

    /// Counts a stage change of `capability` swapped into the table.
    pub fn stage_changed(&self, capability: &'static str) {
        self.stage_changes
            .get_or_create(&CapabilityLabels { capability })
            .inc();
    }

    /// Records the latest finished comparison of `capability`: the rows it
    /// found missing, extra and changed, and how long ago it ended.
    pub fn reconciliation(
        &self,
        capability: &'static str,
        found: [(&'static str, i64); 3],
        age_seconds: u64,
    ) {
        for (kind, count) in found {
            self.divergences
                .get_or_create(&DivergenceLabels { capability, kind })
                .set(count);
        }
        self.reconciliation_age
            .get_or_create(&CapabilityLabels { capability })
            .set(i64::try_from(age_seconds).unwrap_or(i64::MAX));
    }

    /// Certificate reloads with `outcome` so far.
    #[cfg(test)]
    pub fn tls_reload_count(&self, outcome: &'static str) -> u64 {
        self.listener.tls_reload_count(outcome)
    }

    /// Interns a capability or backend name for labels.
    pub fn name(&self, name: &str) -> &'static str {
        intern(&self.names, name)
    }

    /// Counts one answered request.
    pub fn request(&self, capability: &'static str, backend: &'static str, status: u16, elapsed: Duration) {
        let status = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let seconds = elapsed.as_secs_f64();
        if let Some(series) = self
            .request_series
            .load()
            .iter()
            .find(|series| series.is(capability, backend, status))
        {
            series.count.inc();
            series.latency.observe(seconds);
            return;
        }
        let series = RequestSeries {
            capability,
            backend,
            status,
            count: self
                .requests
                .get_or_create(&RequestLabels {
                    capability,
                    backend,
                    status,
                })
                .clone(),
            latency: self
                .latency
                .get_or_create(&LatencyLabels { capability, backend })
                .clone(),
        };
        series.count.inc();
        series.latency.observe(seconds);
        self.request_series.rcu(|known| {
            let mut known = Vec::clone(known);
            if known.len() < MAX_REQUEST_SERIES && !known.iter().any(|s| s.is(capability, backend, status)) {
                known.push(series.clone());
            }
            Arc::new(known)
        });
    }

    /// Counts one failed upstream call.
    pub fn upstream_error(&self, backend: &'static str, kind: UpstreamErrorKind) {
        self.upstream_errors
            .get_or_create(&ErrorLabels {
                backend,
                kind: kind.as_str(),
            })
            .inc();
    }

    /// Records a route table swap.
    pub fn reloaded(&self, revision: i64) {
        self.reloads.inc();
        self.route_revision.set(revision);
    }

    /// Records whether the route store answered.
    pub fn store_reachable(&self, reachable: bool) {
        self.store_reachable.set(i64::from(reachable));
    }

    /// Records an instance's health.
    pub fn instance_health(&self, backend: &'static str, instance: &str, healthy: bool) {
        self.instance_healthy
            .get_or_create(&InstanceLabels {
                backend,
                instance: instance.to_owned(),
            })
            .set(i64::from(healthy));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
