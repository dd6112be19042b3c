//! Placing and cancelling an order once orders live in their own service.
//!
//! In the monolith, placing an order is one local transaction. Here the
//! order is ours but stock and payments are the monolith's, so it becomes a
//! saga of local steps with compensations:
//!
//! 1. record the order as `pending` (ours);
//! 2. reserve the stock (monolith) — on failure: mark the order `failed`;
//! 3. take the payment (monolith) — on failure: release the stock, mark `failed`;
//! 4. confirm: mark the order `placed` (ours) — on failure: refund, release;
//! 5. dual-write the order into the monolith's tables (when enabled).
//!
//! Reservations and payments are idempotent by a reference derived from the
//! order id, so a step whose outcome is unknown (a timeout) is compensated by
//! releasing or refunding that reference, which is safe whether or not the
//! step happened.
//!
//! With an `Idempotency-Key`, step 1 also claims the key and step 4 stores
//! the answer with it (see [`crate::order_store`]); a failed saga frees the
//! key. A process that dies between steps 1 and 4 leaves the order pending
//! and its key in progress (a retry gets a 409) until
//! [`crate::recovery`] compensates the order and frees the key.

use std::time::Duration;

use axum::http::HeaderValue;
use serde_json::json;
use service_runtime::api_error::error_chain;
use service_runtime::idempotency::{KeyClaim, StoredKey};
use service_runtime::timestamp::Utc;
use service_runtime::{timestamp, ApiError};
use shop_api::orders::order_total;
use shop_api::{NewOrder, Order, OrderLine, PaymentRequest, ReservationRequest};

use crate::monolith_client::MonolithError;
use crate::order_store::{placed_by_monolith, Pending};
use crate::AppState;

/// How often a compensation step is tried before it is left to an operator.
const COMPENSATION_ATTEMPTS: u32 = 3;

/// The idempotency reference of an order's reservation and payment.
pub fn reference_of(order_id: i64) -> String {
    format!("orders-service:order:{order_id}")
}

/// What [`place_order`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Placed {
    /// The saga ran and placed this order.
    Order(Order),
    /// Another request holds the idempotency key: nothing ran, and its row
    /// says what to answer ([`KeyClaim::answer`]).
    KeyTaken(StoredKey),
}

/// Runs the place-order saga; on any failure every completed step is undone
/// and the order is left `failed` (invisible through the API). With a
/// `claim`, the order is created under the request's idempotency key.
pub async fn place_order(
    state: &AppState,
    order: NewOrder,
    request_id: &HeaderValue,
    claim: Option<&KeyClaim>,
) -> Result<Placed, ApiError> {
    order.validate()?;
    if state
        .monolith
        .customer(order.customer_id, request_id)
        .await?
        .is_none()
    {
        return Err(
            ApiError::unprocessable(format!("customer {} does not exist", order.customer_id))
                .with_detail(json!({ "field": "customer_id" })),
        );
    }
    let id = match state
        .orders
        .create_pending(order.customer_id, &order.lines, Utc::now(), claim)
        .await?
    {
        Pending::Created(id) => id,
        Pending::KeyTaken(stored) => return Ok(Placed::KeyTaken(stored)),
    };
    let reference = reference_of(id);
    tracing::info!(order_id = id, "order pending; reserving stock");

    let reservation = match state
        .monolith
        .reserve(
            &ReservationRequest {
                reference: reference.clone(),
                lines: order.lines.clone(),
            },
            request_id,
        )
        .await
    {
        Ok(reservation) => reservation,
        Err(error) => {
            // A refusal held nothing; after a timeout something may be held.
            if !error.is_definite_refusal() {
                compensate(id, "release stock", || {
                    state.monolith.release(&reference, request_id)
                })
                .await;
            }
            return Err(fail(state, id, "stock reservation", error).await);
        }
    };
    let lines: Vec<OrderLine> = reservation
        .lines
        .iter()
        .map(|l| OrderLine {
            product_id: l.product_id,
            quantity: l.quantity,
            unit_price_cents: l.unit_price_cents,
        })
        .collect();
    let Some(total_cents) = order_total(&lines) else {
        compensate(id, "release stock", || {
            state.monolith.release(&reference, request_id)
        })
        .await;
        let error = ApiError::unprocessable("the order's total is too large to process");
        mark_failed(state, id, error.message()).await;
        return Err(error);
    };
    if let Err(error) = state.orders.record_prices(id, &lines, total_cents).await {
        compensate(id, "release stock", || {
            state.monolith.release(&reference, request_id)
        })
        .await;
        mark_failed(state, id, &error.to_string()).await;
        return Err(error.into());
    }

    let payment = PaymentRequest {
        reference: reference.clone(),
        order_id: id,
        customer_id: order.customer_id,
        amount_cents: total_cents,
    };
    if let Err(error) = state.monolith.pay(&payment, request_id).await {
        if !error.is_definite_refusal() {
            compensate(id, "refund payment", || {
                state.monolith.refund(&reference, request_id)
            })
            .await;
        }
        compensate(id, "release stock", || {
            state.monolith.release(&reference, request_id)
        })
        .await;
        return Err(fail(state, id, "payment", error).await);
    }

    let placed = match state.orders.mark_placed(id, &timestamp::now()).await {
        Ok(Some(placed)) => placed,
        outcome => {
            compensate(id, "refund payment", || {
                state.monolith.refund(&reference, request_id)
            })
            .await;
            compensate(id, "release stock", || {
                state.monolith.release(&reference, request_id)
            })
            .await;
            let reason = match outcome {
                Err(error) => error_chain(&error),
                // Not pending any more, or claimed by saga recovery, which
                // compensates it too (both compensations are idempotent).
                _ => "the order was no longer pending (saga recovery may have claimed it)".to_owned(),
            };
            mark_failed(state, id, &reason).await;
            return Err(ApiError::internal(&std::io::Error::other(format!(
                "confirming order {id} failed: {reason}"
            ))));
        }
    };
    tracing::info!(order_id = id, total_cents, "order placed");
    state.dual_writer.replicate(&placed, request_id).await;
    Ok(Placed::Order(placed))
}

/// Cancels a placed order: releases its stock and refunds its payment in
/// the monolith, then marks it cancelled here. Orders the monolith placed
/// itself are cancelled through the monolith's own endpoint.
pub async fn cancel_order(state: &AppState, id: i64, request_id: &HeaderValue) -> Result<Order, ApiError> {
    let order = state
        .orders
        .visible(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("order {id} does not exist")))?;
    if order.status == shop_api::OrderStatus::Cancelled {
        return Err(ApiError::conflict(format!("order {id} is already cancelled")));
    }
    if placed_by_monolith(id) {
        // The monolith holds this order's stock and payment and is the
        // authority on it: its answer is the outcome, and its timestamp is
        // copied so the two databases agree to the millisecond.
        match state.monolith.cancel_legacy_order(id, request_id).await {
            Ok(cancelled_there) => {
                // `false` means a concurrent request already caught up
                // locally; this request still did the cancelling.
                state
                    .orders
                    .mark_cancelled(id, &cancelled_there.updated_at)
                    .await?;
            }
            // The monolith had already cancelled it: catch up locally, and
            // tell the client it was already cancelled.
            Err(MonolithError::Rejected { status, message, .. }) if status.as_u16() == 409 => {
                state.orders.mark_cancelled(id, &timestamp::now()).await?;
                return Err(ApiError::conflict(message));
            }
            Err(error) => return Err(error.into()),
        }
    } else {
        let reference = reference_of(id);
        state.monolith.release(&reference, request_id).await?;
        state.monolith.refund(&reference, request_id).await?;
        if !state.orders.mark_cancelled(id, &timestamp::now()).await? {
            return Err(ApiError::conflict(format!("order {id} is already cancelled")));
        }
    }
    let cancelled = state
        .orders
        .visible(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("order {id} does not exist")))?;
    tracing::info!(order_id = id, "order cancelled");
    if !placed_by_monolith(id) {
        state.dual_writer.replicate(&cancelled, request_id).await;
    }
    Ok(cancelled)
}

/// Marks the order failed and turns the monolith's error into the answer.
async fn fail(state: &AppState, id: i64, step: &str, error: MonolithError) -> ApiError {
    tracing::warn!(order_id = id, step, error = %error_chain(&error), "saga step failed; order compensated");
    mark_failed(state, id, &format!("{step}: {error}")).await;
    error.into()
}

async fn mark_failed(state: &AppState, id: i64, reason: &str) {
    if let Err(error) = state.orders.mark_failed(id, reason, &timestamp::now()).await {
        tracing::error!(
            order_id = id,
            error = %error_chain(&error),
            "cannot mark the order failed; it stays pending until saga recovery compensates it"
        );
    }
}

/// Runs an idempotent compensation step, retrying with backoff; a step that
/// still fails is logged for an operator (the order stays `failed`).
async fn compensate<F, Fut>(id: i64, step: &str, call: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), MonolithError>>,
{
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=COMPENSATION_ATTEMPTS {
        match call().await {
            Ok(()) => {
                tracing::info!(order_id = id, step, "compensated");
                return;
            }
            Err(error) if attempt == COMPENSATION_ATTEMPTS => {
                tracing::error!(
                    order_id = id,
                    step,
                    error = %error_chain(&error),
                    "compensation failed after {COMPENSATION_ATTEMPTS} attempts; needs an operator"
                );
            }
            Err(error) => {
                tracing::warn!(order_id = id, step, attempt, error = %error_chain(&error), "compensation failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}
