//! Active health checks: each instance of a backend with a `health_path` is
//! probed on an interval; two failures in a row take it out of rotation,
//! one success puts it back.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method};
use tokio_util::sync::CancellationToken;

use crate::flow::backend::{Backend, Instance};
use crate::flow::metrics::Metrics;
use crate::wire::body;
use crate::wire::upstream::{AnswerWait, RequestHead};

/// Consecutive failed probes that mark an instance unhealthy.
const UNHEALTHY_AFTER: u32 = 2;

/// Starts one probe task per instance of every backend with checks on.
pub fn spawn(backends: &[Arc<Backend>], metrics: &Arc<Metrics>, stop: &CancellationToken) {
    for backend in backends {
        let Some((path, interval)) = backend.health.clone() else {
            continue;
        };
        for instance in backend.instances() {
            let backend = Arc::clone(backend);
            let instance = Arc::clone(instance);
            let metrics = Arc::clone(metrics);
            let stop = stop.clone();
            let path = path.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = probe_forever(&backend, &instance, &path, interval, &metrics) => {},
                    () = stop.cancelled() => {},
                }
            });
        }
    }
}

async fn probe_forever(
    backend: &Backend,
    instance: &Instance,
    path: &str,
    interval: Duration,
    metrics: &Metrics,
) {
    let label = metrics.name(&backend.name);
    let timeout = interval.min(Duration::from_secs(2));
    let mut failures = 0u32;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let ok = probe(instance, path, timeout).await;
        failures = if ok { 0 } else { failures + 1 };
        if ok {
            // The breaker follows the health checks: one the outage opened
            // lets the next request through as its probe, instead of
            // refusing everything until its open period ends.
            backend.breaker.expire_open(std::time::Instant::now());
        }
        let healthy = failures < UNHEALTHY_AFTER;
        if healthy != instance.is_healthy() {
            if healthy {
                tracing::info!(backend = %backend.name, instance = %instance.authority, "instance is healthy again; back in rotation");
            } else {
                tracing::warn!(backend = %backend.name, instance = %instance.authority, failures, "instance failed its health checks; out of rotation");
            }
            instance.set_healthy(healthy);
        }
        metrics.instance_health(label, instance.authority.as_str(), healthy);
    }
}

async fn probe(instance: &Instance, path: &str, timeout: Duration) -> bool {
    let Ok(uri) = Backend::uri(path) else {
        return false;
    };
    let target = uri.path_and_query().map_or("/", |target| target.as_str());
    let agent = HeaderValue::from_static("strangler-facade-health-check");
    let head = RequestHead::new(
        &Method::GET,
        target,
        &HeaderMap::new(),
        &[],
        &[(&header::USER_AGENT, &agent)],
    );
    let wait = AnswerWait {
        answer_timeout: timeout,
        interim: None,
    };
    match tokio::time::timeout(
        timeout,
        instance.client.send(&head, &instance.host, body::empty(), wait),
    )
    .await
    {
        Ok(Ok(response)) => {
            let healthy = response.status().is_success();
            // Drain the body so the connection goes back to the pool.
            let _ = tokio::time::timeout(timeout, response.into_body().collect()).await;
            healthy
        }
        _ => false,
    }
}
