//! Capabilities in the admin API: list them with their stages, routes and
//! backends' resilience state; move one to another stage (gated forward,
//! free backward); roll one back; read the audit log.

use std::time::Instant;

use crate::control::admin::api_error::ApiError;
use crate::control::admin::api_error::{JsonBody, PathParams, QueryParams};
use axum::extract::State;
use axum::Json;
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AdminState;
use crate::control::gate;
use crate::control::route_store::{ChangeRequest, StoreError, Transition};
use crate::decision::stage::Stage;

/// One capability in `GET /capabilities`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct CapabilityView {
    /// Its name.
    pub name: String,
    /// Current stage.
    pub stage: Stage,
    /// Backend of the monolith side.
    pub legacy_backend: String,
    /// Backend of the service side.
    pub service_backend: String,
    /// Its routes: `METHODS path`.
    pub routes: Vec<String>,
    /// Service failures in the rollback window: (failures, requests).
    pub error_budget: (u64, u64),
}

/// One backend in `GET /capabilities`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct BackendView {
    /// Its name.
    pub name: String,
    /// `closed`, `open` or `half_open`.
    pub breaker: String,
    /// Requests in flight now.
    pub in_flight: usize,
    /// The bulkhead's limit.
    pub max_concurrent: usize,
    /// Requests and retries in the retry budget's window.
    pub retry_budget: (u64, u64),
}

/// The answer of `GET /capabilities`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Listing {
    /// The route store revision of the table in force.
    pub revision: i64,
    /// Whether the store answered last time.
    pub store_reachable: bool,
    /// The replica that answered (`replica_id`).
    #[serde(default)]
    pub replica_id: String,
    /// Backend for unmatched requests.
    pub default_backend: Option<String>,
    /// Capabilities in config order.
    pub capabilities: Vec<CapabilityView>,
    /// Backends by name.
    pub backends: Vec<BackendView>,
}

pub(super) async fn list(State(state): State<AdminState>) -> Json<Listing> {
    let table = state.proxy.table.load();
    let matcher = table.matcher();
    let now = Instant::now();
    let capabilities = matcher
        .capabilities()
        .iter()
        .enumerate()
        .map(|(index, def)| {
            let budget = state
                .proxy
                .capabilities
                .get(index)
                .map(|c| c.budget.rate(now))
                .map_or((0, 0), |r| (r.failures, r.requests));
            CapabilityView {
                name: def.name.clone(),
                stage: table.stage(index),
                legacy_backend: def.legacy_backend.clone(),
                service_backend: def.service_backend.clone(),
                routes: matcher
                    .routes()
                    .iter()
                    .filter(|r| r.capability == index)
                    .map(|r| {
                        let methods = if r.methods.is_empty() {
                            "*".to_owned()
                        } else {
                            r.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
                        };
                        format!("{methods} {}", r.path)
                    })
                    .collect(),
                error_budget: budget,
            }
        })
        .collect();
    let mut backends: Vec<BackendView> = state
        .proxy
        .backends
        .values()
        .map(|b| {
            let budget = b.retry_budget.snapshot(now);
            BackendView {
                name: b.name.clone(),
                breaker: b.breaker.state(now).as_str().to_owned(),
                in_flight: b.bulkhead.in_flight(),
                max_concurrent: b.bulkhead.capacity(),
                retry_budget: (budget.requests, budget.retries),
            }
        })
        .collect();
    backends.sort_by(|a, b| a.name.cmp(&b.name));
    let (store_reachable, _) = state.updater.store_status();
    Json(Listing {
        revision: table.revision(),
        store_reachable,
        replica_id: state.updater.store().replica().to_owned(),
        default_backend: matcher.default_backend().map(str::to_owned),
        capabilities,
        backends,
    })
}

/// The body of a flip or rollback.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    /// New stage name (flip only): legacy, shadow, canary, service, retired.
    #[serde(default)]
    pub to: Option<String>,
    /// The canary's share in percent (with `to = "canary"`).
    #[serde(default)]
    pub percent: Option<f64>,
    /// Why, for the audit log.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who, for the audit log.
    #[serde(default)]
    pub actor: Option<String>,
    /// Only say what would change.
    #[serde(default)]
    pub dry_run: bool,
    /// Override refusing gates; recorded in the audit log.
    #[serde(default)]
    pub force: bool,
    /// The stage the caller believes the capability is at (`legacy`,
    /// `canary 10%`, …). When given and the capability is elsewhere, or
    /// moves before this change is written, the change is refused with a
    /// 409: a script acting on what it read never acts on a stale read.
    #[serde(default)]
    pub from: Option<Stage>,
}

/// The answer to a flip or rollback.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeOutcome {
    /// The transition made (or, for a dry run, that would be made).
    pub transition: Transition,
    /// False for a dry run.
    pub applied: bool,
    /// Gates that refused but were overridden with `force`.
    #[serde(default)]
    pub overridden: Vec<String>,
}

async fn apply(
    state: &AdminState,
    mut change: ChangeRequest,
    dry_run: bool,
    believed: Option<Stage>,
) -> Result<Json<ChangeOutcome>, ApiError> {
    if change.actor.trim().is_empty() || change.actor.len() > 200 || change.reason.len() > 2_000 {
        return Err(ApiError::Unprocessable(
            "actor must be 1 to 200 bytes and reason at most 2000".to_owned(),
        ));
    }
    let store = state.updater.store();
    let from = store.stage(&change.capability).await?;
    if let Some(believed) = believed.filter(|believed| *believed != from) {
        return Err(StoreError::Moved {
            capability: change.capability,
            expected: believed,
            actual: from,
            by: String::new(),
        }
        .into());
    }
    // The gates below judge the move from `from`; if another change (through
    // this replica or another) lands first, this one is refused with a 409
    // rather than applied on that stale judgement.
    change.expected_from = Some(from);
    let table = state.proxy.table.load();
    let policy = table
        .matcher()
        .capability_index(&change.capability)
        .and_then(|i| state.proxy.capabilities.get(i))
        .map(|c| c.policy.gates);
    let mut overridden = Vec::new();
    if let Some(policy) = policy {
        // Shadow results counted so far must be in the store before the
        // gate reads it.
        let recorder = &state.proxy.shadower.recorder;
        if let Err(error) = recorder.flush(store.database()).await {
            tracing::warn!(error = %error, "shadow results could not be written before a gate check");
        }
        let checked = gate::check(store.database(), &change.capability, &policy, from, change.to)
            .await
            .map_err(|e| ApiError::from(crate::control::route_store::StoreError::Query(e)))?;
        if !checked.passed() {
            if !change.forced {
                return Err(ApiError::Conflict(format!(
                    "moving `{}` from {from} to {} is refused: {}. Fix that, or pass --force to override (the override is recorded)",
                    change.capability,
                    change.to,
                    checked.refusals.join("; ")
                )));
            }
            overridden = checked.refusals.clone();
        }
        if checked.evidence.as_object().is_some_and(|o| !o.is_empty()) || !overridden.is_empty() {
            change.detail = Some(json!({ "gates": checked.evidence, "overridden": overridden }));
        }
    }
    // A forced move that no gate refused is not an override.
    change.forced = change.forced && !overridden.is_empty();
    if dry_run {
        let transition = store.preview(&change).await?;
        return Ok(Json(ChangeOutcome {
            transition,
            applied: false,
            overridden,
        }));
    }
    let transition = store.change(&change).await?;
    tracing::info!(
        capability = %transition.capability,
        from = ?transition.from.map(|s| s.to_string()),
        to = %transition.to,
        actor = %transition.actor,
        reason = %transition.reason,
        forced = transition.forced,
        "capability moved"
    );
    // This facade applies its own change at once; the others follow
    // through the store within a second.
    let _ = state.updater.reload_if_changed().await;
    Ok(Json(ChangeOutcome {
        transition,
        applied: true,
        overridden,
    }))
}

pub(super) async fn flip(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Json<ChangeOutcome>, ApiError> {
    let Some(to) = body.to.as_deref() else {
        return Err(ApiError::Unprocessable(format!(
            "`to` is required: one of {}",
            Stage::NAMES.join(", ")
        )));
    };
    let to = Stage::from_user(to, body.percent).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let change = ChangeRequest {
        capability: name,
        to,
        actor: body.actor.unwrap_or_else(|| "admin-api".to_owned()),
        reason: body.reason.unwrap_or_default(),
        forced: body.force,
        detail: None,
        expected_from: None,
    };
    apply(&state, change, body.dry_run, body.from).await
}

pub(super) async fn rollback(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Json<ChangeOutcome>, ApiError> {
    if body.to.is_some() || body.percent.is_some() {
        return Err(ApiError::Unprocessable(
            "rollback goes back to the previous stage; do not give `to` or `percent`".to_owned(),
        ));
    }
    let to = state.updater.store().previous_stage(&name).await?;
    let change = ChangeRequest {
        capability: name,
        to,
        actor: body.actor.unwrap_or_else(|| "admin-api".to_owned()),
        reason: body.reason.unwrap_or_else(|| "rollback".to_owned()),
        forced: body.force,
        detail: None,
        expected_from: None,
    };
    apply(&state, change, body.dry_run, body.from).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    pub(super) capability: Option<String>,
    pub(super) limit: Option<i64>,
}

pub(super) async fn history(
    State(state): State<AdminState>,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Json<Vec<Transition>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and 10000, got {limit}"
        )));
    }
    Ok(Json(
        state
            .updater
            .store()
            .history(query.capability.as_deref(), limit)
            .await?,
    ))
}
