//! Closing pooled upstream connections nobody has used for a while: after
//! a burst, the facade gives back the descriptors and buffers it opened
//! instead of holding its high-water mark for good (the chaos soak saw the
//! monolith's pool stay at 28 connections after a slow spell).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::flow::state::ProxyState;
use crate::wire::upstream::{InstanceClient, IDLE_SWEEP};

/// Sweeps every plain pool each [`IDLE_SWEEP`] until `stop`. (hyper's
/// pools, for TLS and HTTP/2 backends, close idle connections themselves.)
pub async fn run(state: Arc<ProxyState>, stop: CancellationToken) {
    let mut every = tokio::time::interval(IDLE_SWEEP);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        for backend in state.backends.values() {
            for instance in backend.instances() {
                if let InstanceClient::Plain(pool) = &instance.client {
                    let closed = pool.sweep_idle();
                    if closed > 0 {
                        tracing::debug!(backend = %backend.name, instance = %instance.authority, closed, "idle upstream connections closed");
                    }
                }
            }
        }
    }
}
