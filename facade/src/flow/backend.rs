//! Backends: named sets of instances, how one is picked, each instance's
//! pooled keep-alive client (the wire's [`ConnectionPool`]), and the
//! resilience state every request to them shares (breaker, retry budget,
//! bulkhead).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::http::uri::Authority;
use hyper::http::HeaderValue;
use hyper::Uri;

use resilience::{Bulkhead, CircuitBreaker, RetryBudget};

use crate::config::{BackendConfig, Balance, HostHeader, UpstreamProtocol};
use crate::decision::policy::{ResiliencePolicy, RETRY_BUDGET_WINDOW};
use crate::wire::tls::client::server_name;
use crate::wire::upstream::{ConnectionPool, HyperSettings, HyperUpstream, InstanceClient};

/// One instance of a backend.
#[derive(Debug)]
pub struct Instance {
    /// `host:port`, for the URI and a rewritten `Host`.
    pub authority: Authority,
    /// The authority as a `Host` value, for backends that rewrite it.
    pub host: HeaderValue,
    /// Its client: keep-alive connections, plain or TLS, HTTP/1.1 or 2.
    pub client: InstanceClient,
    healthy: AtomicBool,
    outstanding: AtomicUsize,
}

impl Instance {
    /// Whether the last health checks passed (true when checks are off).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Marks the instance in or out of rotation.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Requests in flight to it now.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
}

/// An instance chosen for one request; counts it as outstanding until dropped.
#[derive(Debug)]
pub struct Picked<'a> {
    instance: &'a Instance,
}

impl<'a> Picked<'a> {
    /// The chosen instance.
    pub fn instance(&self) -> &'a Instance {
        self.instance
    }
}

impl Drop for Picked<'_> {
    fn drop(&mut self) {
        self.instance.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The client for the instance at `url`: the facade's own pool for plain
/// HTTP/1.1, hyper's for TLS or HTTP/2.
fn instance_client(
    config: &BackendConfig,
    url: &Uri,
    authority: &Authority,
    proxy_threads: usize,
) -> InstanceClient {
    let http2 = config.protocol == UpstreamProtocol::H2;
    if config.tls.is_none() && !http2 {
        return InstanceClient::Plain(ConnectionPool::new(
            authority.clone(),
            config.connect_timeout,
            proxy_threads,
        ));
    }
    let secure = url.scheme_str() == Some("https");
    let port = authority.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let host = authority.host();
    // Checked at load: a configured name parses, and so does every
    // https:// URL's host.
    let tls = config.tls.as_ref().and_then(|tls| {
        let name = tls
            .settings
            .server_name
            .as_deref()
            .unwrap_or(host.trim_matches(['[', ']']));
        Some((Arc::clone(&tls.client), server_name(name).ok()?))
    });
    InstanceClient::Hyper(Box::new(HyperUpstream::new(HyperSettings {
        address: format!("{host}:{port}"),
        authority: authority.clone(),
        connect_timeout: config.connect_timeout,
        tls,
        http2,
    })))
}

/// A backend with its instances and its connection pool.
#[derive(Debug)]
pub struct Backend {
    /// Its name.
    pub name: String,
    /// Its name as a metric label.
    pub label: &'static str,
    instances: Vec<Arc<Instance>>,
    balance: Balance,
    next: AtomicUsize,
    /// Time limit for the response head.
    pub request_timeout: Duration,
    /// `Host` handling.
    pub host_header: HostHeader,
    /// Active health check path and interval.
    pub health: Option<(String, Duration)>,
    /// Retry, timeout, breaker and bulkhead settings.
    pub resilience: ResiliencePolicy,
    /// Opens after consecutive failures; while open, requests fail fast.
    pub breaker: CircuitBreaker,
    /// Keeps retries to a share of requests.
    pub retry_budget: RetryBudget,
    /// Caps requests in flight.
    pub bulkhead: Bulkhead,
    /// Whether it deduplicates requests on their `Idempotency-Key`: only
    /// then is a non-idempotent request with a key sent to it again.
    pub honours_idempotency_key: bool,
}

impl Backend {
    /// Builds a backend and its client from its config; `label` is its
    /// name interned for metrics, and each instance's pool has a shard for
    /// each of the facade's `proxy_threads`.
    pub fn new(config: &BackendConfig, label: &'static str, proxy_threads: usize) -> Self {
        Self {
            name: config.name.clone(),
            label,
            instances: config
                .urls
                .iter()
                .filter_map(|url| Some((url, url.authority().cloned()?)))
                .map(|(url, authority)| {
                    Arc::new(Instance {
                        client: instance_client(config, url, &authority, proxy_threads),
                        // An authority is always a valid header value.
                        host: HeaderValue::from_str(authority.as_str())
                            .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
                        authority,
                        healthy: AtomicBool::new(true),
                        outstanding: AtomicUsize::new(0),
                    })
                })
                .collect(),
            balance: config.balance,
            next: AtomicUsize::new(0),
            request_timeout: config.request_timeout,
            host_header: config.host_header,
            health: config
                .health_path
                .clone()
                .map(|path| (path, config.health_interval)),
            resilience: config.resilience,
            breaker: CircuitBreaker::new(config.resilience.breaker),
            retry_budget: RetryBudget::new(config.resilience.retry_budget, RETRY_BUDGET_WINDOW),
            bulkhead: Bulkhead::new(config.resilience.max_concurrent),
            honours_idempotency_key: config.honours_idempotency_key,
        }
    }

    /// The instances, in config order.
    pub fn instances(&self) -> &[Arc<Instance>] {
        &self.instances
    }

    /// Picks an instance for one request. When every instance is marked
    /// unhealthy the facade fails open and picks among all of them: a health
    /// check that is wrong must not take a whole backend down.
    pub fn pick(&self) -> Option<Picked<'_>> {
        let n = self.instances.len();
        if n == 0 {
            return None;
        }
        // The shared counter is a cache line every request would write;
        // with one instance there is nothing to rotate.
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed)
        };
        let any_healthy = self.instances.iter().any(|i| i.is_healthy());
        let mut eligible = (0..n)
            .map(|k| &self.instances[(start + k) % n])
            .filter(|i| !any_healthy || i.is_healthy());
        let chosen = match self.balance {
            Balance::RoundRobin => eligible.next(),
            // The scan starts at a rotating offset so that ties spread out.
            Balance::LeastOutstanding => eligible.min_by_key(|i| i.outstanding()),
        }?;
        chosen.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(Picked { instance: chosen })
    }

    /// The origin-form request target for `path_and_query`.
    pub fn uri(path_and_query: &str) -> Result<Uri, hyper::http::Error> {
        Uri::builder().path_and_query(path_and_query).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(balance: Balance) -> Backend {
        Backend::new(
            &BackendConfig {
                name: "b".into(),
                urls: vec![
                    "http://127.0.0.1:1".parse().unwrap(),
                    "http://127.0.0.1:2".parse().unwrap(),
                ],
                balance,
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(1),
                host_header: HostHeader::Preserve,
                health_path: None,
                health_interval: Duration::from_secs(1),
                resilience: crate::decision::policy::RawResilience::default()
                    .check("b", Duration::from_secs(1))
                    .unwrap(),
                protocol: UpstreamProtocol::Http1,
                tls: None,
                honours_idempotency_key: false,
            },
            "b",
            2,
        )
    }

    fn port(picked: &Picked) -> u16 {
        picked.instance().authority.port_u16().unwrap()
    }

    #[tokio::test]
    async fn round_robin_alternates_and_skips_unhealthy_instances() {
        let b = backend(Balance::RoundRobin);
        let ports: Vec<u16> = (0..4).map(|_| port(&b.pick().unwrap())).collect();
        assert_eq!(ports, vec![1, 2, 1, 2]);
        b.instances()[0].set_healthy(false);
        assert!((0..4).all(|_| port(&b.pick().unwrap()) == 2));
        b.instances()[1].set_healthy(false);
        // All down: fail open rather than refuse everything.
        assert!(b.pick().is_some());
    }

    #[tokio::test]
    async fn least_outstanding_prefers_the_idle_instance() {
        let b = backend(Balance::LeastOutstanding);
        let busy = b.pick().unwrap();
        let busy_port = port(&busy);
        for _ in 0..5 {
            assert_ne!(port(&b.pick().unwrap()), busy_port);
        }
        drop(busy);
        assert_eq!(b.instances().iter().map(|i| i.outstanding()).sum::<usize>(), 0);
    }
}
