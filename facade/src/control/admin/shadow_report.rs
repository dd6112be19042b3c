//! `GET /capabilities/{name}/shadow`: what shadowing found for a capability
//! over a recent window: the mismatch rate against the gate's threshold,
//! the fields that differ most often, learned noise and sample diffs.

use crate::control::admin::api_error::ApiError;
use crate::control::admin::api_error::{PathParams, QueryParams};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::control::route_store::StoreError;
use crate::decision::stage::Stage;
use crate::flow::shadow::recorder::current_bucket;
use crate::flow::shadow::store::{self, Sample, Totals};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    window_seconds: Option<u64>,
    samples: Option<i64>,
}

impl ReportQuery {
    /// The gate's window and `samples` sample diffs.
    pub(super) fn samples(samples: i64) -> Self {
        Self {
            window_seconds: None,
            samples: Some(samples),
        }
    }
}

/// A field and how many mismatches it was part of.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct FieldCount {
    /// The field (`$.price_cents`, `status`, `header:etag`, …).
    pub field: String,
    /// Mismatches in the window that involved it.
    pub mismatches: i64,
}

/// The answer.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ShadowReport {
    /// The capability.
    pub capability: String,
    /// Its stage now.
    pub stage: Stage,
    /// The window the figures cover.
    pub window_seconds: u64,
    /// Counts over the window.
    pub totals: Totals,
    /// Mismatches per comparison.
    pub mismatch_rate: f64,
    /// The gate's threshold for leaving shadow.
    pub max_mismatch_rate: f64,
    /// The gate's minimum number of comparisons.
    pub min_comparisons: u64,
    /// The fields that differ most often.
    pub top_fields: Vec<FieldCount>,
    /// Fields learned as noise (not counted).
    pub learned_noise: Vec<String>,
    /// The latest mismatches, newest first.
    pub samples: Vec<Sample>,
}

pub(super) async fn report(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    QueryParams(query): QueryParams<ReportQuery>,
) -> Result<Json<ShadowReport>, ApiError> {
    let store = state.updater.store();
    let stage = store.stage(&name).await?;
    let table = state.proxy.table.load();
    let Some(capability) = table
        .matcher()
        .capability_index(&name)
        .and_then(|i| state.proxy.capabilities.get(i))
    else {
        return Err(ApiError::NotFound(format!(
            "capability `{name}` is in the store but not in this facade's configuration"
        )));
    };
    let gates = capability.policy.gates;
    let window_seconds = query.window_seconds.unwrap_or(gates.shadow_window.as_secs());
    if !(10..=30 * 24 * 3600).contains(&window_seconds) {
        return Err(ApiError::BadRequest(format!(
            "window_seconds must be between 10 and 2592000, got {window_seconds}"
        )));
    }
    let samples = query.samples.unwrap_or(3);
    if !(0..=100).contains(&samples) {
        return Err(ApiError::BadRequest(format!(
            "samples must be between 0 and 100, got {samples}"
        )));
    }
    let db = store.database();
    let failed = |e: sqlx::Error| ApiError::from(StoreError::Query(e));
    if let Err(error) = state.proxy.shadower.recorder.flush(db).await {
        tracing::warn!(error = %error, "shadow results could not be written before a report");
    }
    let since = current_bucket() - i64::try_from(window_seconds / 10).unwrap_or(i64::MAX);
    let totals = store::totals(db, &name, since).await.map_err(failed)?;
    let top_fields = store::top_fields(db, &name, since, 10)
        .await
        .map_err(failed)?
        .into_iter()
        .map(|(field, mismatches)| FieldCount { field, mismatches })
        .collect();
    Ok(Json(ShadowReport {
        stage,
        window_seconds,
        mismatch_rate: totals.mismatch_rate(),
        totals,
        max_mismatch_rate: gates.shadow_max_mismatch_rate,
        min_comparisons: gates.shadow_min_comparisons,
        top_fields,
        learned_noise: capability.noise().into_iter().collect(),
        samples: store::samples(db, &name, samples).await.map_err(failed)?,
        capability: name,
    }))
}
