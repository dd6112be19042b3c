//! Automatic rollback, its request-path half: when the service's failures
//! (5xx, timeouts, refused connections) exceed a capability's error budget
//! while it is in canary or service, a rollback to legacy is asked for.
//!
//! The budget is counted here, on the request path; the move itself (an
//! audited store write) is the control layer's (`control::auto_rollback`),
//! on a task of its own, since a store write must not hold a request. It
//! is asked for once per breach: the claim is released when the stage
//! changes or the move fails.

use std::time::Instant;

use resilience::Exceeded;
use tokio::sync::mpsc;

use crate::decision::stage::Stage;
use crate::flow::capability_state::CapabilityState;

/// A breached budget, waiting to be acted on.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    /// The capability's index.
    pub index: usize,
    /// Its stage when the budget was breached.
    pub from: Stage,
    /// The measurement.
    pub exceeded: Exceeded,
}

/// Counts one answer of the service for capability `index` (of
/// `capabilities`) at `stage`, and asks `rollbacks` for a rollback if that
/// breaches the budget.
pub(crate) fn record(
    capabilities: &[CapabilityState],
    rollbacks: &mpsc::Sender<RollbackRequest>,
    index: usize,
    stage: Stage,
    failed: bool,
) {
    let Some(capability) = capabilities.get(index) else {
        return;
    };
    if !capability.policy.rollback.enabled {
        return;
    }
    if let Some(exceeded) = capability.budget.record(Instant::now(), failed) {
        if capability.claim_rollback() {
            let request = RollbackRequest {
                index,
                from: stage,
                exceeded,
            };
            if rollbacks.try_send(request).is_err() {
                capability.stage_changed();
            }
        }
    }
}
