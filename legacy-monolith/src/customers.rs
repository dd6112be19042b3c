//! `GET /customers/{id}`: the customers capability stays in the monolith in
//! this sample; the orders service asks it whether a customer exists.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use service_runtime::extract::PathParams;
use service_runtime::ApiError;
use shop_api::Customer;
use sqlx::{Any, Executor, FromRow};

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/customers/{id}", get(get_customer))
}

#[derive(FromRow)]
struct CustomerRow {
    id: i64,
    email: String,
    name: String,
}

async fn get_customer(
    State(state): State<AppState>,
    PathParams(id): PathParams<i64>,
) -> Result<Json<Customer>, ApiError> {
    let customer = find_customer(state.db.pool(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("customer {id} does not exist")))?;
    Ok(Json(customer))
}

/// The customer with `id`, if any.
pub(crate) async fn find_customer<'c>(
    db: impl Executor<'c, Database = Any>,
    id: i64,
) -> Result<Option<Customer>, sqlx::Error> {
    let row: Option<CustomerRow> = sqlx::query_as("SELECT id, email, name FROM customers WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|row| Customer {
        id: row.id,
        email: row.email,
        name: row.name,
    }))
}
