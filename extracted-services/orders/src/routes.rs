//! The orders service's HTTP surface: the same public contract as the
//! monolith's order routes, plus `GET /internal/dual-write` and
//! `GET /internal/recovery` (counters) and `GET`/`PUT /internal/settings`
//! (in [`crate::settings`]).
//!
//! `POST /orders` honours `Idempotency-Key` (rules in service-runtime's
//! `idempotency` module): the same key and body get the first answer again,
//! another body a 422, and a key whose saga is still running a 409 with
//! `Retry-After: 1`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use service_runtime::extract::{JsonBody, PathParams, QueryParams};
use service_runtime::idempotency::{KeyClaim, MaybeIdempotencyKey};
use service_runtime::pagination::{Page, PageParams};
use service_runtime::request_id::RequestId;
use service_runtime::timestamp::Utc;
use service_runtime::ApiError;
use shop_api::{NewOrder, Order};

use crate::dual_write::DualWriteStats;
use crate::order_store::PLACE_ORDER_SCOPE;
use crate::recovery::RecoveryStats;
use crate::saga::Placed;
use crate::{saga, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/customers/{id}/orders", get(customer_orders))
        .route("/internal/dual-write", get(dual_write_stats))
        .route("/internal/recovery", get(recovery_stats))
}

async fn place_order(
    State(state): State<AppState>,
    request_id: RequestId,
    MaybeIdempotencyKey(key): MaybeIdempotencyKey,
    JsonBody(order): JsonBody<NewOrder>,
) -> Result<Response, ApiError> {
    let claim = key.map(|key| KeyClaim::new(PLACE_ORDER_SCOPE, key, &order));
    if let Some(claim) = &claim {
        // A known key is answered before any call to the monolith; the
        // claim in the saga's first transaction settles the races.
        let mut conn = state.db.pool().acquire().await?;
        if let Some(stored) = claim.find(&mut conn, Utc::now()).await? {
            return Ok(claim.answer(&stored));
        }
    }
    match saga::place_order(&state, order, &request_id.header_value(), claim.as_ref()).await? {
        Placed::Order(order) => Ok((StatusCode::CREATED, Json(order)).into_response()),
        Placed::KeyTaken(stored) => match &claim {
            Some(claim) => Ok(claim.answer(&stored)),
            None => Err(ApiError::internal(&std::io::Error::other(
                "the saga reported a taken idempotency key for a request without one",
            ))),
        },
    }
}

async fn get_order(
    State(state): State<AppState>,
    PathParams(id): PathParams<i64>,
) -> Result<Json<Order>, ApiError> {
    state
        .orders
        .visible(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("order {id} does not exist")))
}

async fn cancel_order(
    State(state): State<AppState>,
    request_id: RequestId,
    PathParams(id): PathParams<i64>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(
        saga::cancel_order(&state, id, &request_id.header_value()).await?,
    ))
}

async fn customer_orders(
    State(state): State<AppState>,
    request_id: RequestId,
    PathParams(customer_id): PathParams<i64>,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<Json<Page<Order>>, ApiError> {
    let page = params.validate()?;
    // Customers stay in the monolith: an unknown customer is a 404 there,
    // so it is a 404 here too rather than an empty list.
    if state
        .monolith
        .customer(customer_id, &request_id.header_value())
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "customer {customer_id} does not exist"
        )));
    }
    Ok(Json(state.orders.for_customer(customer_id, page).await?))
}

async fn dual_write_stats(State(state): State<AppState>) -> Json<DualWriteStats> {
    Json(state.dual_writer.stats())
}

async fn recovery_stats(State(state): State<AppState>) -> Json<RecoveryStats> {
    Json(state.recovery.stats())
}
