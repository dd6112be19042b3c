//! Runtime switches of the orders service, at `GET`/`PUT /internal/settings`.
//!
//! Two failures a migration must survive, to be caused on demand while the
//! demo runs:
//! - `outage`: the service plays dead. Every request outside `/internal/`
//!   gets a 503 with a JSON error saying the service is down, and that
//!   includes `GET /health`, so that the facade's health checks take the
//!   service out of rotation exactly as they would for a crashed one. The
//!   answer comes before request tracing, as from a process that is not
//!   there: it carries no `x-request-id` and logs no request line.
//!   `/internal/` stays up so that the outage can be switched off again.
//! - `dual_write_fault_rate`: the share of dual writes dropped on purpose
//!   (see [`crate::dual_write`]), 0.0 to 1.0.
//!
//! Both start as configured ([`crate::Config`]; no outage), so a service
//! whose settings nobody touches behaves exactly as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use service_runtime::extract::JsonBody;
use service_runtime::ApiError;

use crate::dual_write::{validate_fault_rate, DualWriter};
use crate::AppState;

/// The settings in force, as `GET /internal/settings` answers them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Whether the service plays dead (503 outside `/internal/`).
    pub outage: bool,
    /// Share of dual writes dropped on purpose, 0.0 to 1.0.
    pub dual_write_fault_rate: f64,
}

/// The body of `PUT /internal/settings`: the fields to change; those left
/// out keep their value. Unknown fields and rates outside 0.0 to 1.0 are
/// refused with a 422, and then nothing changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    /// New value of [`Settings::outage`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<bool>,
    /// New value of [`Settings::dual_write_fault_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual_write_fault_rate: Option<f64>,
}

/// Whether the simulated outage is on; shared by every clone.
#[derive(Debug, Clone, Default)]
pub struct Outage(Arc<AtomicBool>);

impl Outage {
    /// Whether the service plays dead now.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Starts or ends the simulated outage.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/internal/settings", get(show).put(change))
}

fn current(outage: &Outage, dual_writer: &DualWriter) -> Settings {
    Settings {
        outage: outage.is_on(),
        dual_write_fault_rate: dual_writer.fault_rate(),
    }
}

async fn show(State(state): State<AppState>) -> Json<Settings> {
    Json(current(&state.outage, &state.dual_writer))
}

async fn change(
    State(state): State<AppState>,
    JsonBody(update): JsonBody<SettingsUpdate>,
) -> Result<Json<Settings>, ApiError> {
    if update == SettingsUpdate::default() {
        return Err(ApiError::unprocessable(
            "nothing to change: give outage (true or false), dual_write_fault_rate (0.0 to 1.0) or both",
        ));
    }
    // Every check before any change, so that a refused update changes nothing.
    if let Some(rate) = update.dual_write_fault_rate {
        validate_fault_rate(rate).map_err(|message| {
            ApiError::unprocessable(message).with_detail(json!({ "field": "dual_write_fault_rate" }))
        })?;
        state
            .dual_writer
            .set_fault_rate(rate)
            .map_err(ApiError::unprocessable)?;
    }
    if let Some(on) = update.outage {
        state.outage.set(on);
    }
    let now = current(&state.outage, &state.dual_writer);
    tracing::warn!(
        outage = now.outage,
        dual_write_fault_rate = now.dual_write_fault_rate,
        "orders settings changed"
    );
    Ok(Json(now))
}

/// Answers every request outside `/internal/` with a 503 while the outage
/// is on; passes everything through otherwise.
pub(crate) async fn outage_guard(State(outage): State<Outage>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let internal = path == "/internal" || path.starts_with("/internal/");
    if outage.is_on() && !internal {
        return ApiError::unavailable(
            "the orders service is down (a simulated outage, switched on at /internal/settings)",
        )
        .with_detail(json!({ "outage": true }))
        .into_response();
    }
    next.run(request).await
}
