//! Automatic rollback, its acting half: a breached error budget (counted on
//! the request path, `flow::rollback`) moves the capability back to legacy
//! with an audited transition, actor `auto-rollback`, carrying the measured
//! rate; the table is then reloaded.

use std::sync::Arc;

use resilience::Exceeded;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::control::route_store::{ChangeRequest, StoreError};
use crate::control::route_watch::TableUpdater;
use crate::decision::stage::Stage;
use crate::flow::error_chain::error_chain;
use crate::flow::rollback::RollbackRequest;

/// The actor recorded for automatic rollbacks.
pub const ACTOR: &str = "auto-rollback";

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
            "replica": updater.store().replica(),
        })),
        expected_from: Some(request.from),
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
        // Another replica (or an operator) moved it first; its own
        // budget may have fired at the same moment.
        Err(StoreError::Moved { .. }) => capability.stage_changed(),
        Err(error) => {
            tracing::error!(
                capability = capability.name,
                error = %error_chain(&error),
                "automatic rollback could not be recorded; the next failure will try again"
            );
            capability.stage_changed();
        }
    }
}
