//! Payments: `POST /payments` captures, `POST /payments/{reference}/refund`
//! refunds. Both are idempotent by the caller's reference.
//!
//! A payment is declined (402) when it exceeds the customer's credit limit:
//! the sample's stand-in for a card being refused, which is what makes the
//! orders service's saga compensate in tests and in the demo.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use service_runtime::extract::{JsonBody, PathParams};
use service_runtime::{timestamp, ApiError};
use shop_api::{Payment, PaymentRequest};
use sqlx::{AnyConnection, FromRow};

use crate::inventory::{validate_reference, RESERVED_REFERENCE_PREFIX};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/payments", post(create_payment))
        .route("/payments/{reference}/refund", post(refund_payment))
}

#[derive(FromRow)]
struct PaymentRow {
    id: i64,
    reference: String,
    order_id: i64,
    customer_id: i64,
    amount_cents: i64,
    status: String,
}

impl From<PaymentRow> for Payment {
    fn from(row: PaymentRow) -> Self {
        Payment {
            id: row.id,
            reference: row.reference,
            order_id: row.order_id,
            customer_id: row.customer_id,
            amount_cents: row.amount_cents,
            status: row.status,
        }
    }
}

/// Captures a payment in the caller's transaction: 422 for an unknown
/// customer or a negative amount, 402 when it exceeds the credit limit.
/// `Ok(None)` when a payment with the same reference already exists (a
/// concurrent retry won the race); nothing is written then.
pub(crate) async fn capture(
    conn: &mut AnyConnection,
    request: &PaymentRequest,
    now: &str,
) -> Result<Option<Payment>, ApiError> {
    if request.amount_cents < 0 {
        return Err(ApiError::unprocessable(format!(
            "amount_cents must be zero or more, got {}",
            request.amount_cents
        ))
        .with_detail(json!({ "field": "amount_cents" })));
    }
    let limit: Option<(i64,)> = sqlx::query_as("SELECT credit_limit_cents FROM customers WHERE id = $1")
        .bind(request.customer_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some((limit,)) = limit else {
        return Err(
            ApiError::unprocessable(format!("customer {} does not exist", request.customer_id))
                .with_detail(json!({ "field": "customer_id" })),
        );
    };
    if request.amount_cents > limit {
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            format!(
                "payment declined: {} cents exceeds the customer's credit limit of {limit} cents",
                request.amount_cents
            ),
        )
        .with_detail(json!({ "amount_cents": request.amount_cents, "credit_limit_cents": limit })));
    }
    let inserted: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO payments (reference, order_id, customer_id, amount_cents, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'captured', $5, $5) ON CONFLICT (reference) DO NOTHING RETURNING id",
    )
    .bind(&request.reference)
    .bind(request.order_id)
    .bind(request.customer_id)
    .bind(request.amount_cents)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((id,)) = inserted else { return Ok(None) };
    Ok(Some(Payment {
        id,
        reference: request.reference.clone(),
        order_id: request.order_id,
        customer_id: request.customer_id,
        amount_cents: request.amount_cents,
        status: "captured".to_owned(),
    }))
}

/// Refunds the captured payments of `order_id`; already refunded ones stay.
pub(crate) async fn refund_order(
    conn: &mut AnyConnection,
    order_id: i64,
    now: &str,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE payments SET status = 'refunded', updated_at = $1 WHERE order_id = $2 AND status = 'captured'",
    )
    .bind(now)
    .bind(order_id)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

async fn find_payment(conn: &mut AnyConnection, reference: &str) -> Result<Option<Payment>, sqlx::Error> {
    let row: Option<PaymentRow> = sqlx::query_as(
        "SELECT id, reference, order_id, customer_id, amount_cents, status FROM payments WHERE reference = $1",
    )
    .bind(reference)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(Payment::from))
}

async fn create_payment(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<PaymentRequest>,
) -> Result<(StatusCode, Json<Payment>), ApiError> {
    validate_reference(&request.reference)?;
    let mut tx = state.db.pool().begin().await?;
    if let Some(existing) = find_payment(&mut tx, &request.reference).await? {
        return replay(existing, &request);
    }
    let Some(payment) = capture(&mut tx, &request, &timestamp::now()).await? else {
        // A concurrent call with the same reference committed first.
        drop(tx);
        let mut conn = state.db.pool().acquire().await?;
        let existing = find_payment(&mut conn, &request.reference)
            .await?
            .ok_or_else(|| ApiError::conflict("the payment changed concurrently; retry"))?;
        return replay(existing, &request);
    };
    tx.commit().await?;
    tracing::info!(payment_id = payment.id, reference = %payment.reference, "payment captured");
    Ok((StatusCode::CREATED, Json(payment)))
}

/// Answers a repeated `POST /payments`: the same payment again, or 409 when
/// the reference was used for something else.
fn replay(existing: Payment, request: &PaymentRequest) -> Result<(StatusCode, Json<Payment>), ApiError> {
    if existing.order_id != request.order_id
        || existing.customer_id != request.customer_id
        || existing.amount_cents != request.amount_cents
    {
        return Err(ApiError::conflict(format!(
            "payment `{}` already exists for another order, customer or amount; use a new reference",
            request.reference
        )));
    }
    Ok((StatusCode::OK, Json(existing)))
}

async fn refund_payment(
    State(state): State<AppState>,
    PathParams(reference): PathParams<String>,
) -> Result<Json<Payment>, ApiError> {
    if reference.starts_with(RESERVED_REFERENCE_PREFIX) {
        return Err(ApiError::conflict(format!(
            "payment `{reference}` belongs to an order placed in the monolith; cancel the order to refund it"
        )));
    }
    let mut tx = state.db.pool().begin().await?;
    let Some(mut payment) = find_payment(&mut tx, &reference).await? else {
        return Err(ApiError::not_found(format!(
            "payment `{reference}` does not exist"
        )));
    };
    sqlx::query(
        "UPDATE payments SET status = 'refunded', updated_at = $1 WHERE id = $2 AND status = 'captured'",
    )
    .bind(timestamp::now())
    .bind(payment.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    payment.status = "refunded".to_owned();
    Ok(Json(payment))
}
