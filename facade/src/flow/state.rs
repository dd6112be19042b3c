//! The state every proxied request reads: built once by `Facade::build`,
//! shared by the proxy threads, and swapped only in parts (the table, as a
//! whole, by the control layer's watcher).

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use toolkit_telemetry::SpanSink;

use crate::config::Limits;
use crate::decision::routing::RouteTable;
use crate::flow::backend::Backend;
use crate::flow::capability_state::CapabilityState;
use crate::flow::idempotency_keys::KeyAffinity;
use crate::flow::metrics::Metrics;
use crate::flow::rollback::RollbackRequest;
use crate::flow::shadow::Shadower;
use crate::wire::client_address::TrustedProxies;

/// The state every proxied request reads.
#[derive(Debug)]
pub struct ProxyState {
    /// The routing table in force; swapped whole on a change.
    pub table: ArcSwap<RouteTable>,
    /// Backends by name (foldhash: the names are the operator's, and one
    /// is looked up for every request).
    pub backends: foldhash::HashMap<String, Arc<Backend>>,
    /// Per-capability policy and runtime state, by capability index.
    pub capabilities: Vec<CapabilityState>,
    /// Request size limits.
    pub limits: Limits,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Whether to log one line per request.
    pub access_log: bool,
    /// Proxies whose `X-Forwarded-For` names the client
    /// (`trusted_proxies`); empty when the peer is the client.
    pub trusted_proxies: TrustedProxies,
    /// The shadow queue.
    pub shadower: Arc<Shadower>,
    /// Where breached error budgets ask for a rollback.
    pub rollbacks: mpsc::Sender<RollbackRequest>,
    /// Where sampled requests' spans go; `None` when tracing is off.
    pub tracing: Option<SpanSink>,
    /// Where recent `Idempotency-Key`s went, so that repeats go there too.
    pub(crate) idempotency_keys: KeyAffinity,
}
