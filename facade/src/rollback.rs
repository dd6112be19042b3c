//! Automatic rollback: when the service's failures (5xx, timeouts, refused
//! connections) exceed a capability's error budget while it is in canary or
//! service, the facade moves it back to legacy by itself and records an
//! audited transition with actor `auto-rollback` and the measured rate.
//!
//! The budget is counted on the request path; the move itself happens on a
//! separate task (a store write must not hold a request), asked for once per
//! breach: the claim is released when the stage changes or the move fails.

use std::sync::Arc;
use std::time::Instant;

use resilience::Exceeded;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::proxy::ProxyState;
use crate::route_store::{ChangeRequest, StoreError};
use crate::route_watch::TableUpdater;
use crate::stage::Stage;

/// The actor recorded for automatic rollbacks.
pub const ACTOR: &str = "auto-rollback";

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

/// Counts one answer of the service for capability `index` at `stage`, and
/// asks for a rollback if that breaches the budget.
pub(crate) fn record(state: &ProxyState, index: usize, stage: Stage, failed: bool) {
    let Some(capability) = state.capabilities.get(index) else {
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
            if state.rollbacks.try_send(request).is_err() {
                capability.stage_changed();
            }
        }
    }
}

/// Acts on rollback requests until `stop`.
pub async fn run(
    mut requests: mpsc::Receiver<RollbackRequest>,
    updater: Arc<TableUpdater>,
    stop: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            () = stop.cancelled() => return,
            request = requests.recv() => match request {
                Some(request) => request,
                None => return,
            },
        };
        roll_back(&updater, &request).await;
    }
}

async fn roll_back(updater: &TableUpdater, request: &RollbackRequest) {
    let state = updater.state();
    let Some(capability) = state.capabilities.get(request.index) else {
        return;
    };
    let policy = capability.policy.rollback;
    let Exceeded {
        failures,
        requests,
        rate,
    } = request.exceeded;
    let reason = format!(
        "service error rate {:.1}% ({failures} of {requests} requests) over the last {}s exceeded the {:.1}% budget",
        rate * 100.0,
        policy.window.as_secs(),
        policy.max_error_rate * 100.0
    );
    let change = ChangeRequest {
        capability: capability.name.to_owned(),
        to: Stage::Legacy,
        actor: ACTOR.to_owned(),
        reason: reason.clone(),
        forced: false,
        detail: Some(json!({
            "from": request.from.to_string(),
            "failures": failures,
            "requests": requests,
            "error_rate": rate,
            "max_error_rate": policy.max_error_rate,
            "window_seconds": policy.window.as_secs(),
        })),
    };
    // An operator may have moved the capability since the breach was
    // measured; the measurement says nothing about the new stage.
    match updater.store().stage(capability.name).await {
        Ok(now) if now != request.from => {
            capability.stage_changed();
            return;
        }
        _ => {}
    }
    match updater.store().change(&change).await {
        Ok(transition) => {
            tracing::warn!(capability = capability.name, from = %request.from, %reason, "automatic rollback to legacy");
            state.metrics.auto_rollback(capability.name);
            let _ = updater.reload_if_changed().await;
            tracing::debug!(id = transition.id, "rollback recorded");
        }
        Err(StoreError::AlreadyAt { .. }) => {}
        Err(error) => {
            tracing::error!(
                capability = capability.name,
                error = %crate::error_chain::error_chain(&error),
                "automatic rollback could not be recorded; the next failure will try again"
            );
            capability.stage_changed();
        }
    }
}
