//! The admin API, on its own listener: list capabilities and routes, flip
//! and roll back a capability, read the audit log, explain a request's
//! route, health, readiness and Prometheus metrics. `/metrics` also reads
//! each capability's latest finished reconciliation from the toolkit store
//! (its divergences and age), so that a reconciler run as a one-shot job
//! still shows on the facade's dashboard and alerts.
//!
//! Every endpoint wants `Authorization: Bearer <token>`; the comparison is
//! constant-time. The token comes from the environment or a file, never from
//! a command-line argument (which would show in `ps`).

pub(crate) mod api_error;
pub(crate) mod brake;
mod capabilities;
mod explain;
pub mod panel;
mod shadow_report;

pub use capabilities::{BackendView, CapabilityView, ChangeBody, ChangeOutcome, Listing};
pub use explain::Explanation;
pub use shadow_report::{FieldCount, ShadowReport};

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_error::ApiError;
use api_error::{method_not_allowed_fallback, not_found_fallback};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::config::AdminToken;
use crate::control::gate;
use crate::control::route_store::StoreError;
use crate::control::route_watch::TableUpdater;
use crate::flow::state::ProxyState;

/// What the admin handlers share.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The proxy's state (table, backends, metrics).
    pub proxy: Arc<ProxyState>,
    /// The store and table updater.
    pub updater: Arc<TableUpdater>,
    /// The bearer token.
    pub token: AdminToken,
    /// The brake on wrong tokens.
    pub(crate) brake: Arc<brake::AuthBrake>,
    /// The control panel's sessions and traffic series.
    pub panel: Arc<panel::Panel>,
}

/// The admin router: the API behind the bearer token, and the control
/// panel (at `/` and `/panel/…`) behind its own session login.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/capabilities", get(capabilities::list))
        .route("/capabilities/{name}/flip", post(capabilities::flip))
        .route("/capabilities/{name}/rollback", post(capabilities::rollback))
        .route("/capabilities/{name}/shadow", get(shadow_report::report))
        .route("/history", get(capabilities::history))
        .route("/explain", get(explain::explain))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    api.merge(panel::router(state.clone())).with_state(state)
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let now = Instant::now();
    if let Some(wait) = address.and_then(|address| state.brake.braked(address, now)) {
        state.proxy.metrics.admin_auth_failure("braked");
        let mut response = ApiError::Other(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many wrong admin tokens from this address; try again in {} s",
                wait.as_secs().max(1)
            ),
        )
        .into_response();
        if let Ok(value) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().as_bytes());
    let valid = presented.is_some_and(|p| {
        p.len() == state.token.as_bytes().len() && bool::from(p.ct_eq(state.token.as_bytes()))
    });
    if !valid {
        state.proxy.metrics.admin_auth_failure("wrong");
        if let Some(address) = address {
            state.brake.failed(address, now);
        }
        let mut response = ApiError::Other(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token: send `Authorization: Bearer <token>`".to_owned(),
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    next.run(request).await
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::UnknownCapability { .. } => ApiError::NotFound(error.to_string()),
            StoreError::AlreadyAt { .. } | StoreError::NothingToRollBack(_) | StoreError::Moved { .. } => {
                ApiError::Conflict(error.to_string())
            }
            _ => {
                tracing::error!(error = %crate::flow::error_chain::error_chain(&error), "route store operation failed");
                ApiError::Unavailable(format!(
                    "the route store is unavailable: {error}; nothing changed"
                ))
            }
        }
    }
}

async fn health(State(state): State<AdminState>) -> Json<Value> {
    let (store_reachable, store_error) = state.updater.store_status();
    let table = state.proxy.table.load();
    let backends: Vec<Value> = state
        .proxy
        .backends
        .values()
        .map(|b| {
            json!({
                "name": b.name,
                "instances": b.instances().iter().map(|i| json!({
                    "instance": i.authority.to_string(),
                    "healthy": i.is_healthy(),
                    "outstanding": i.outstanding(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    // Serving on the last good table is degraded, not down: the proxy works.
    Json(json!({
        "status": if store_reachable { "ok" } else { "degraded" },
        "replica_id": state.updater.store().replica(),
        "route_store": if store_reachable { "reachable" } else { "unreachable; serving the last good route table" },
        "route_store_error": store_error,
        "table_revision": table.revision(),
        "backends": backends,
    }))
}

async fn ready() -> (StatusCode, Json<Value>) {
    // A facade answers only after it has loaded a table, so listening is ready.
    (StatusCode::OK, Json(json!({ "ready": true })))
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let now = Instant::now();
    for backend in state.proxy.backends.values() {
        state.proxy.metrics.backend_state(
            state.proxy.metrics.name(&backend.name),
            backend.breaker.state(now).as_str(),
            backend.bulkhead.in_flight(),
        );
    }
    export_reconciliations(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.proxy.metrics.render(),
    )
}

/// How long `/metrics` waits for the store's reconciliation runs before it
/// answers with the values it read last (a store that is down must not
/// make the scrape fail: the proxy's own metrics matter most then).
const RECONCILIATION_READ_LIMIT: Duration = Duration::from_secs(2);

/// Sets each capability's reconciliation gauges from its latest finished
/// comparison in the toolkit store; keeps the last values when the store
/// does not answer in time.
async fn export_reconciliations(state: &AdminState) {
    let db = state.updater.store().database();
    let metrics = &state.proxy.metrics;
    let read = async {
        for capability in &state.proxy.capabilities {
            let latest = gate::latest_comparison(db, capability.name).await?;
            if let Some(latest) = latest {
                metrics.reconciliation(
                    capability.name,
                    [
                        ("missing", latest.missing),
                        ("extra", latest.extra),
                        ("changed", latest.changed),
                    ],
                    latest.age_seconds,
                );
            }
        }
        Ok::<(), sqlx::Error>(())
    };
    match tokio::time::timeout(RECONCILIATION_READ_LIMIT, read).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::debug!(%error, "/metrics: reconciliation runs not read; the last values stay")
        }
        Err(_) => {
            tracing::debug!("/metrics: the store did not answer in time; the last reconciliation values stay")
        }
    }
}

/// Serves the admin API on `listener` until `shutdown` resolves, then lets
/// requests in flight finish for up to `grace` and drops what is left.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let (draining, drain_started) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(panel::sample(state.clone()));
    let _sampler = AbortOnDrop(sampler);
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = draining.send(());
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => return result,
        Ok(()) = drain_started => {}
    }
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("admin API: grace period expired with requests still in flight; closing them");
            Ok(())
        }
    }
}

/// Aborts a background task when the admin server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
