//! The orders service's HTTP surface: the same public contract as the
//! monolith's order routes, plus `GET /internal/dual-write` (counters) and
//! `GET`/`PUT /internal/settings` (in [`crate::settings`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use service_runtime::extract::{JsonBody, PathParams, QueryParams};
use service_runtime::pagination::{Page, PageParams};
use service_runtime::request_id::RequestId;
use service_runtime::ApiError;
use shop_api::{NewOrder, Order};

use crate::dual_write::DualWriteStats;
use crate::{saga, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/customers/{id}/orders", get(customer_orders))
        .route("/internal/dual-write", get(dual_write_stats))
}

async fn place_order(
    State(state): State<AppState>,
    request_id: RequestId,
    JsonBody(order): JsonBody<NewOrder>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let order = saga::place_order(&state, order, &request_id.header_value()).await?;
    Ok((StatusCode::CREATED, Json(order)))
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
