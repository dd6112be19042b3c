//! The admin API, on its own listener: list capabilities and routes, flip
//! and roll back a capability, read the audit log, explain a request's
//! route, health, readiness and Prometheus metrics.
//!
//! Every endpoint wants `Authorization: Bearer <token>`; the comparison is
//! constant-time. The token comes from the environment or a file, never from
//! a command-line argument (which would show in `ps`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::{HeaderMap, Method, Uri};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use service_runtime::api_error::{method_not_allowed_fallback, not_found_fallback};
use service_runtime::extract::{JsonBody, PathParams, QueryParams};
use service_runtime::ApiError;
use subtle::ConstantTimeEq;

use crate::config::AdminToken;
use crate::path;
use crate::proxy::ProxyState;
use crate::route_store::{ChangeRequest, StoreError, Transition};
use crate::route_watch::TableUpdater;
use crate::routing::{host_of, PathPattern, Target};

/// What the admin handlers share.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The proxy's state (table, backends, metrics).
    pub proxy: Arc<ProxyState>,
    /// The store and table updater.
    pub updater: Arc<TableUpdater>,
    /// The bearer token.
    pub token: AdminToken,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/capabilities", get(list_capabilities))
        .route("/capabilities/{name}/flip", post(flip))
        .route("/capabilities/{name}/rollback", post(rollback))
        .route("/history", get(history))
        .route("/explain", get(explain))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
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
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token: send `Authorization: Bearer <token>`",
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
            StoreError::UnknownCapability { .. } => ApiError::not_found(error.to_string()),
            StoreError::AlreadyAt { .. } | StoreError::NothingToRollBack(_) => {
                ApiError::conflict(error.to_string())
            }
            _ => {
                tracing::error!(error = %service_runtime::api_error::error_chain(&error), "route store operation failed");
                ApiError::unavailable(format!(
                    "the route store is unavailable: {error}; nothing changed"
                ))
            }
        }
    }
}

/// One capability in `GET /capabilities`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct CapabilityView {
    /// Its name.
    pub name: String,
    /// Current target.
    pub target: Target,
    /// Backend while on legacy.
    pub legacy_backend: String,
    /// Backend once on service.
    pub service_backend: String,
    /// Its routes: `METHODS path`.
    pub routes: Vec<String>,
}

async fn list_capabilities(State(state): State<AdminState>) -> Json<Value> {
    let table = state.proxy.table.load();
    let matcher = table.matcher();
    let capabilities: Vec<CapabilityView> = matcher
        .capabilities()
        .iter()
        .enumerate()
        .map(|(index, def)| CapabilityView {
            name: def.name.clone(),
            target: table.target(index),
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
        })
        .collect();
    let (store_reachable, _) = state.updater.store_status();
    Json(json!({
        "revision": table.revision(),
        "store_reachable": store_reachable,
        "default_backend": matcher.default_backend(),
        "capabilities": capabilities,
    }))
}

/// The body of a flip or rollback.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    /// New target (flip only).
    #[serde(default)]
    pub to: Option<Target>,
    /// Why, for the audit log.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who, for the audit log.
    #[serde(default)]
    pub actor: Option<String>,
    /// Only say what would change.
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer to a flip or rollback.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeOutcome {
    /// The transition made (or, for a dry run, that would be made).
    pub transition: Transition,
    /// False for a dry run.
    pub applied: bool,
}

async fn apply(
    state: &AdminState,
    change: ChangeRequest,
    dry_run: bool,
) -> Result<Json<ChangeOutcome>, ApiError> {
    if change.actor.trim().is_empty() || change.actor.len() > 200 || change.reason.len() > 2_000 {
        return Err(ApiError::unprocessable(
            "actor must be 1 to 200 bytes and reason at most 2000",
        ));
    }
    if dry_run {
        let transition = state.updater.store().preview(&change).await?;
        return Ok(Json(ChangeOutcome {
            transition,
            applied: false,
        }));
    }
    let transition = state.updater.store().change(&change).await?;
    tracing::info!(
        capability = %transition.capability,
        from = ?transition.from,
        to = %transition.to,
        actor = %transition.actor,
        reason = %transition.reason,
        "capability moved"
    );
    // This facade applies its own change at once; the others follow
    // through the store within a second.
    let _ = state.updater.reload_if_changed().await;
    Ok(Json(ChangeOutcome {
        transition,
        applied: true,
    }))
}

async fn flip(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Json<ChangeOutcome>, ApiError> {
    let to = body
        .to
        .ok_or_else(|| ApiError::unprocessable("`to` is required: `legacy` or `service`"))?;
    let change = ChangeRequest {
        capability: name,
        to,
        actor: body.actor.unwrap_or_else(|| "admin-api".to_owned()),
        reason: body.reason.unwrap_or_default(),
    };
    apply(&state, change, body.dry_run).await
}

async fn rollback(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Json<ChangeOutcome>, ApiError> {
    if body.to.is_some() {
        return Err(ApiError::unprocessable(
            "rollback goes back to the previous target; do not give `to`",
        ));
    }
    let to = state.updater.store().previous_target(&name).await?;
    let change = ChangeRequest {
        capability: name,
        to,
        actor: body.actor.unwrap_or_else(|| "admin-api".to_owned()),
        reason: body.reason.unwrap_or_else(|| "rollback".to_owned()),
    };
    apply(&state, change, body.dry_run).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    capability: Option<String>,
    limit: Option<i64>,
}

async fn history(
    State(state): State<AdminState>,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Json<Vec<Transition>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainQuery {
    method: String,
    url: String,
    #[serde(default)]
    host: Option<String>,
}

/// What `GET /explain` answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct Explanation {
    /// The path after normalization: what is matched and forwarded.
    pub normalized_path: String,
    /// `#index METHODS pattern` of the matched route.
    pub route: Option<String>,
    /// Its capability.
    pub capability: Option<String>,
    /// The capability's current target.
    pub target: Option<Target>,
    /// The backend chosen.
    pub backend: Option<String>,
    /// The instance the next request would go to.
    pub instance: Option<String>,
    /// The reasoning, in a sentence.
    pub why: String,
}

async fn explain(
    State(state): State<AdminState>,
    QueryParams(query): QueryParams<ExplainQuery>,
) -> Result<Json<Explanation>, ApiError> {
    let method: Method = query
        .method
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("`{}` is not an HTTP method", query.method)))?;
    let uri: Uri = query
        .url
        .parse()
        .map_err(|_| ApiError::bad_request(format!("`{}` is not a URL or path", query.url)))?;
    let normalized = path::normalize(uri.path()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let host_value = query
        .host
        .clone()
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .and_then(|h| header::HeaderValue::from_str(&h).ok());
    let host = host_of(host_value.as_ref());
    let table = state.proxy.table.load();
    let decision = table.decide(&method, host.as_deref(), &normalized, &HeaderMap::new());
    let instance = decision
        .backend
        .and_then(|b| state.proxy.backends.get(b))
        .and_then(|b| b.pick())
        .map(|picked| picked.instance().authority.to_string());
    let route = decision.route.map(|(index, pattern)| {
        let methods = &table.matcher().routes()[index].methods;
        let methods = if methods.is_empty() {
            "*".to_owned()
        } else {
            methods.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
        };
        format!("#{} {methods} {pattern}", index + 1)
    });
    let why = match (&route, decision.capability, decision.target, decision.backend) {
        (Some(route), Some(capability), Some(target), Some(backend)) => format!(
            "route {route} is the first that matches {method} {normalized}; it belongs to capability `{capability}`, which is on {target}, so backend `{backend}` serves it"
        ),
        (None, _, _, Some(backend)) => format!("no route matches {method} {normalized}, so the default backend `{backend}` serves it"),
        _ => format!("no route matches {method} {normalized} and there is no default backend: the facade answers 404"),
    };
    let pattern_kind = decision
        .route
        .and_then(|(index, _)| match table.matcher().routes()[index].pattern {
            PathPattern::Prefix(_) => Some(" (prefix)"),
            _ => None,
        });
    Ok(Json(Explanation {
        normalized_path: normalized,
        route: route.map(|r| format!("{r}{}", pattern_kind.unwrap_or(""))),
        capability: decision.capability.map(str::to_owned),
        target: decision.target,
        backend: decision.backend.map(str::to_owned),
        instance,
        why,
    }))
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
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.proxy.metrics.render(),
    )
}
