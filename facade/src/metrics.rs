//! Prometheus metrics of the proxy, served by the admin API at `/metrics`.
//!
//! Label values are capability and backend names from the configuration,
//! interned once as `&'static str` so that counting a request allocates
//! nothing.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
}

impl UpstreamErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Protocol => "protocol",
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
    names: Mutex<HashSet<&'static str>>,
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
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strangler_facade");
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
        Self {
            registry,
            requests,
            latency,
            upstream_errors,
            reloads,
            store_reachable,
            route_revision,
            instance_healthy,
            names: Mutex::new(HashSet::new()),
        }
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
        self.requests
            .get_or_create(&RequestLabels {
                capability,
                backend,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels { capability, backend })
            .observe(elapsed.as_secs_f64());
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
