//! What the panel shows, as JSON: the overview (every capability's card),
//! one capability's evidence, and the backends. Everything comes from what
//! the admin API already reads (the table in force, the store's audit log,
//! shadow windows and reconciliation runs, the backends' resilience state)
//! and the panel's own series; nothing here carries a database URL or the
//! token.

use std::time::Instant;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::series::Point;
use crate::control::admin::api_error::{ApiError, PathParams, QueryParams};
use crate::control::admin::capabilities::{self, HistoryQuery};
use crate::control::admin::shadow_report::{self, ReportQuery, ShadowReport};
use crate::control::admin::AdminState;
use crate::control::gate;
use crate::control::route_store::Transition;
use crate::decision::stage::Stage;
use crate::flow::shadow::recorder::current_bucket;
use crate::flow::shadow::store;

/// The overview: every capability's card.
#[derive(Debug, Serialize)]
pub(super) struct Overview {
    replica_id: String,
    store_reachable: bool,
    revision: i64,
    capabilities: Vec<Card>,
}

/// One capability at a glance.
#[derive(Debug, Serialize)]
pub(super) struct Card {
    name: String,
    stage: Stage,
    stage_name: &'static str,
    canary_percent: Option<f64>,
    legacy_backend: String,
    service_backend: String,
    routes: Vec<String>,
    /// The newest ten-second step of traffic, by side.
    traffic: Option<Point>,
    errors: ErrorBudget,
    breakers: Breakers,
    /// Shadow comparisons over the gate's window (`None`: store unreachable).
    shadow: Option<ShadowSummary>,
    /// The latest finished reconciliation (`None`: none, or store unreachable).
    reconciliation: Option<Run>,
    /// The next forward move and what its gates say.
    next: Option<NextMove>,
}

#[derive(Debug, Serialize)]
struct ErrorBudget {
    enabled: bool,
    failures: u64,
    requests: u64,
    rate: f64,
    max_error_rate: f64,
    window_seconds: u64,
}

#[derive(Debug, Serialize)]
struct Breakers {
    legacy: String,
    service: String,
}

#[derive(Debug, Serialize)]
struct ShadowSummary {
    compared: i64,
    mismatched: i64,
    mismatch_rate: f64,
    max_mismatch_rate: f64,
    window_seconds: u64,
}

/// A reconciliation run as the panel lists it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub(super) struct Run {
    id: i64,
    status: String,
    started_at: String,
    finished_at: Option<String>,
    rows_compared: Option<i64>,
    missing: Option<i64>,
    extra: Option<i64>,
    changed: Option<i64>,
    error: Option<String>,
    #[sqlx(skip)]
    age_seconds: Option<i64>,
}

#[derive(Debug, Serialize)]
struct NextMove {
    to: Stage,
    passes: bool,
    refusals: Vec<String>,
}

/// The forward move the panel suggests from `stage`: one step along the
/// pipeline (a canary is suggested at 10%, then the service).
fn next_stage(stage: Stage) -> Option<Stage> {
    match stage {
        Stage::Legacy => Some(Stage::Shadow),
        Stage::Shadow => Stage::from_user("canary", Some(10.0)).ok(),
        Stage::Canary(_) => Some(Stage::Service),
        Stage::Service => Some(Stage::Retired),
        Stage::Retired => None,
    }
}

/// Every capability's card.
pub(super) async fn overview(state: &AdminState) -> Overview {
    let listing = capabilities::list(State(state.clone())).await.0;
    let now = Instant::now();
    let mut cards = Vec::with_capacity(listing.capabilities.len());
    let breaker = |name: &str| {
        listing
            .backends
            .iter()
            .find(|b| b.name == name)
            .map_or_else(|| "unknown".to_owned(), |b| b.breaker.clone())
    };
    for view in listing.capabilities {
        let Some(capability) = state.proxy.capabilities.iter().find(|c| c.name == view.name) else {
            continue;
        };
        let policy = &capability.policy;
        let rate = capability.budget.rate(now);
        let db = state.updater.store().database();
        let gates = policy.gates;
        let window = gates.shadow_window.as_secs();
        let since = current_bucket() - i64::try_from(window / 10).unwrap_or(i64::MAX);
        let shadow = store::totals(db, &view.name, since)
            .await
            .ok()
            .map(|totals| ShadowSummary {
                compared: totals.compared,
                mismatched: totals.mismatched,
                mismatch_rate: totals.mismatch_rate(),
                max_mismatch_rate: gates.shadow_max_mismatch_rate,
                window_seconds: window,
            });
        let reconciliation = runs(state, &view.name, 1)
            .await
            .ok()
            .and_then(|runs| runs.into_iter().next());
        let next = match next_stage(view.stage) {
            Some(to) => gate::check(db, &view.name, &gates, view.stage, to)
                .await
                .ok()
                .map(|checked| NextMove {
                    to,
                    passes: checked.passed(),
                    refusals: checked.refusals,
                }),
            None => None,
        };
        cards.push(Card {
            stage_name: view.stage.name(),
            canary_percent: view.stage.permille().map(|p| f64::from(p.get()) / 10.0),
            traffic: state.panel.series.latest(&view.name),
            errors: ErrorBudget {
                enabled: policy.rollback.enabled,
                failures: rate.failures,
                requests: rate.requests,
                rate: rate.rate,
                max_error_rate: policy.rollback.max_error_rate,
                window_seconds: policy.rollback.window.as_secs(),
            },
            breakers: Breakers {
                legacy: breaker(&view.legacy_backend),
                service: breaker(&view.service_backend),
            },
            shadow,
            reconciliation,
            next,
            name: view.name,
            stage: view.stage,
            legacy_backend: view.legacy_backend,
            service_backend: view.service_backend,
            routes: view.routes,
        });
    }
    Overview {
        replica_id: listing.replica_id,
        store_reachable: listing.store_reachable,
        revision: listing.revision,
        capabilities: cards,
    }
}

/// A capability's latest finished runs over all its keys, newest first.
///
/// One shard of a sharded run (`run_group` set) saw part of the keys: it is
/// never the capability's result, on the card or in the trend, just as the
/// reconciliation gate ignores it (`gate::latest_comparison`).
async fn runs(state: &AdminState, capability: &str, limit: i64) -> Result<Vec<Run>, sqlx::Error> {
    let mut runs: Vec<Run> = sqlx::query_as(
        "SELECT id, status, started_at, finished_at, rows_compared, missing, extra, changed, error \
         FROM reconciliation_runs WHERE capability = $1 AND finished_at IS NOT NULL \
         AND run_group IS NULL ORDER BY id DESC LIMIT $2",
    )
    .bind(capability)
    .bind(limit)
    .fetch_all(state.updater.store().database().pool())
    .await?;
    let now = Utc::now();
    for run in &mut runs {
        run.age_seconds = run
            .finished_at
            .as_deref()
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| now.signed_duration_since(at).num_seconds().max(0));
    }
    Ok(runs)
}

/// Shadow comparisons in one ten-second bucket.
#[derive(Debug, Serialize, sqlx::FromRow)]
struct ShadowPoint {
    bucket: i64,
    compared: i64,
    mismatched: i64,
}

/// One capability's page.
#[derive(Debug, Serialize)]
pub(super) struct Detail {
    card: Card,
    history: Vec<Transition>,
    shadow: Option<ShadowReport>,
    ignore: Vec<String>,
    series: Vec<Point>,
    shadow_series: Vec<ShadowPoint>,
    reconciliations: Vec<Run>,
    latest_report: Option<Value>,
    stages: Vec<&'static str>,
}

/// `GET /panel/api/capabilities/{name}`.
pub(super) async fn detail(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<Detail>, ApiError> {
    let mut overview = overview(&state).await;
    let Some(index) = overview.capabilities.iter().position(|c| c.name == name) else {
        return Err(ApiError::NotFound(format!(
            "no capability `{name}` in this facade"
        )));
    };
    let card = overview.capabilities.swap_remove(index);
    let history = capabilities::history(
        State(state.clone()),
        QueryParams(HistoryQuery {
            capability: Some(name.clone()),
            limit: Some(50),
        }),
    )
    .await?
    .0;
    let shadow = shadow_report::report(
        State(state.clone()),
        PathParams(name.clone()),
        QueryParams(ReportQuery::samples(10)),
    )
    .await
    .ok()
    .map(|report| report.0);
    let ignore = state
        .proxy
        .capabilities
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.policy.shadow.rules.ignore_entries().to_vec())
        .unwrap_or_default();
    let db = state.updater.store().database();
    let shadow_series: Vec<ShadowPoint> = sqlx::query_as(
        "SELECT bucket, compared, mismatched FROM shadow_windows \
         WHERE capability = $1 AND bucket >= $2 ORDER BY bucket",
    )
    .bind(&name)
    .bind(current_bucket() - 360)
    .fetch_all(db.pool())
    .await
    .unwrap_or_default();
    let reconciliations = runs(&state, &name, 20).await.unwrap_or_default();
    let latest_report = latest_report(&state, &name).await;
    Ok(Json(Detail {
        series: state.panel.series.points(&name),
        card,
        history,
        shadow,
        ignore,
        shadow_series,
        reconciliations,
        latest_report,
        stages: Stage::NAMES.to_vec(),
    }))
}

/// The JSON report of the capability's latest finished comparison.
async fn latest_report(state: &AdminState, capability: &str) -> Option<Value> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT report FROM reconciliation_runs WHERE capability = $1 AND status IN ('clean', 'diverged') \
         AND run_group IS NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(capability)
    .fetch_optional(state.updater.store().database().pool())
    .await
    .ok()?;
    serde_json::from_str(row?.0.as_deref()?).ok()
}

/// A move the panel asks about before it asks for a reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckBody {
    to: String,
    #[serde(default)]
    percent: Option<f64>,
}

/// What the gates say about a move (what `routes flip --dry-run` shows).
#[derive(Debug, Serialize)]
pub(super) struct Checked {
    from: Stage,
    to: Stage,
    forward: bool,
    refusals: Vec<String>,
    evidence: Value,
}

/// `POST /panel/api/capabilities/{name}/check`.
pub(super) async fn check(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    Json(body): Json<CheckBody>,
) -> Result<Json<Checked>, ApiError> {
    let to = Stage::from_user(&body.to, body.percent).map_err(ApiError::Unprocessable)?;
    let store = state.updater.store();
    let from = store.stage(&name).await?;
    let Some(capability) = state.proxy.capabilities.iter().find(|c| c.name == name) else {
        return Err(ApiError::NotFound(format!(
            "no capability `{name}` in this facade"
        )));
    };
    if let Err(error) = state.proxy.shadower.recorder.flush(store.database()).await {
        tracing::warn!(error = %error, "shadow results could not be written before a gate check");
    }
    let checked = gate::check(store.database(), &name, &capability.policy.gates, from, to)
        .await
        .map_err(|e| ApiError::from(crate::control::route_store::StoreError::Query(e)))?;
    Ok(Json(Checked {
        from,
        to,
        forward: from.is_forward_to(to),
        refusals: checked.refusals,
        evidence: checked.evidence,
    }))
}

/// A backend and its instances.
#[derive(Debug, Serialize)]
pub(super) struct BackendCard {
    name: String,
    breaker: String,
    in_flight: usize,
    max_concurrent: usize,
    retry_budget: (u64, u64),
    instances: Vec<InstanceCard>,
}

#[derive(Debug, Serialize)]
struct InstanceCard {
    instance: String,
    healthy: bool,
    outstanding: usize,
}

/// `GET /panel/api/backends`.
pub(super) async fn backends(State(state): State<AdminState>) -> Json<Vec<BackendCard>> {
    let listing = capabilities::list(State(state.clone())).await.0;
    let cards = listing
        .backends
        .into_iter()
        .map(|view| {
            let instances = state
                .proxy
                .backends
                .get(&view.name)
                .map(|backend| {
                    backend
                        .instances()
                        .iter()
                        .map(|i| InstanceCard {
                            instance: i.authority.to_string(),
                            healthy: i.is_healthy(),
                            outstanding: i.outstanding(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            BackendCard {
                name: view.name,
                breaker: view.breaker,
                in_flight: view.in_flight,
                max_concurrent: view.max_concurrent,
                retry_budget: view.retry_budget,
                instances,
            }
        })
        .collect();
    Json(cards)
}
