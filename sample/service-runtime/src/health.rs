//! `GET /health`: whether the process serves and its database answers.
//!
//! Answers 200 `{"status":"ok","database":"ok"}`, or 503 with
//! `"database":"unreachable"`, so that load balancers, the demo and the
//! tests' readiness waits all read the same signal.

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::Database;

/// The health route, for any app state that holds a [`Database`].
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Database: FromRef<S>,
{
    Router::new().route("/health", get(health))
}

async fn health(State(db): State<Database>) -> (StatusCode, Json<Value>) {
    if db.ping().await {
        (StatusCode::OK, Json(json!({ "status": "ok", "database": "ok" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "degraded", "database": "unreachable" })),
        )
    }
}
