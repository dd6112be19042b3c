//! Stock: read and set levels, and hold stock for the orders service.
//!
//! `GET /inventory?product_ids=1,2,3` and `PUT /inventory/{product_id}` serve
//! the extracted catalog service, which owns products but not stock.
//! `POST /inventory/reservations` and `POST
//! /inventory/reservations/{reference}/release` are the stock steps of the
//! orders service's saga. Both are idempotent by the caller's reference, so a
//! caller that timed out can safely call again.
//!
//! Stock is taken with a conditional `UPDATE … WHERE stock >= n`, so two
//! concurrent orders can never drive it negative on PostgreSQL either.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use service_runtime::extract::{JsonBody, PathParams, QueryParams};
use service_runtime::{timestamp, ApiError};
use shop_api::orders::validate_lines;
use shop_api::{NewOrderLine, Reservation, ReservationRequest, ReservedLine, StockLevel, StockUpdate};
use sqlx::{AnyConnection, FromRow};

use crate::AppState;

/// The most products one stock query may name.
const MAX_PRODUCT_IDS: usize = 200;
/// The longest idempotency reference accepted.
pub(crate) const MAX_REFERENCE_LEN: usize = 200;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/inventory", get(stock_levels))
        .route("/inventory/{product_id}", put(set_stock))
        .route("/inventory/reservations", post(reserve))
        .route("/inventory/reservations/{reference}/release", post(release))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StockQuery {
    product_ids: String,
}

async fn stock_levels(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<StockQuery>,
) -> Result<Json<Vec<StockLevel>>, ApiError> {
    let ids = parse_id_list(&query.product_ids)?;
    if ids.is_empty() {
        return Ok(Json(Vec::new()));
    }
    let placeholders = (1..=ids.len())
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT product_id, stock FROM inventory WHERE product_id IN ({placeholders}) ORDER BY product_id"
    );
    let mut select = sqlx::query_as::<_, (i64, i64)>(&sql);
    for id in &ids {
        select = select.bind(*id);
    }
    let rows = select.fetch_all(state.db.pool()).await?;
    Ok(Json(
        rows.into_iter()
            .map(|(product_id, stock)| StockLevel { product_id, stock })
            .collect(),
    ))
}

fn parse_id_list(text: &str) -> Result<Vec<i64>, ApiError> {
    let ids = text
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            part.trim().parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "product_ids must be a comma-separated list of integers; `{part}` is not one"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.len() > MAX_PRODUCT_IDS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_PRODUCT_IDS} product_ids per request, got {}",
            ids.len()
        )));
    }
    Ok(ids)
}

async fn set_stock(
    State(state): State<AppState>,
    PathParams(product_id): PathParams<i64>,
    JsonBody(update): JsonBody<StockUpdate>,
) -> Result<Json<StockLevel>, ApiError> {
    if update.stock < 0 {
        return Err(
            ApiError::unprocessable(format!("stock must be zero or more, got {}", update.stock))
                .with_detail(json!({ "field": "stock" })),
        );
    }
    let result = sqlx::query("UPDATE inventory SET stock = $1, updated_at = $2 WHERE product_id = $3")
        .bind(update.stock)
        .bind(timestamp::now())
        .bind(product_id)
        .execute(state.db.pool())
        .await?;
    if result.rows_affected() == 0 {
        return Err(ApiError::not_found(format!(
            "product {product_id} does not exist"
        )));
    }
    Ok(Json(StockLevel {
        product_id,
        stock: update.stock,
    }))
}

/// Takes stock for every line at its current price, or fails with a line
/// that cannot be served (unknown product: 422, short stock: 409). The
/// caller's transaction is what makes a partial take disappear.
///
/// Rows are locked in ascending product id whatever the order of the lines,
/// so that two orders naming the same products in opposite orders cannot
/// deadlock on PostgreSQL. The result keeps the order of the lines.
pub(crate) async fn take_stock(
    conn: &mut AnyConnection,
    lines: &[NewOrderLine],
    now: &str,
) -> Result<Vec<ReservedLine>, ApiError> {
    let mut taken: Vec<Option<ReservedLine>> = vec![None; lines.len()];
    let mut by_product: Vec<(usize, &NewOrderLine)> = lines.iter().enumerate().collect();
    by_product.sort_by_key(|(_, line)| line.product_id);
    for (index, line) in by_product {
        let found: Option<(i64, i64)> = sqlx::query_as(
            "SELECT p.price_cents, i.stock FROM products p JOIN inventory i ON i.product_id = p.id WHERE p.id = $1",
        )
        .bind(line.product_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((unit_price_cents, in_stock)) = found else {
            return Err(ApiError::unprocessable(format!(
                "line {index}: product {} does not exist",
                line.product_id
            ))
            .with_detail(json!({ "line": index, "product_id": line.product_id })));
        };
        let updated = sqlx::query(
            "UPDATE inventory SET stock = stock - $1, updated_at = $2 WHERE product_id = $3 AND stock >= $1",
        )
        .bind(line.quantity)
        .bind(now)
        .bind(line.product_id)
        .execute(&mut *conn)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(ApiError::conflict(format!(
                "line {index}: insufficient stock for product {}: {} requested, {in_stock} available",
                line.product_id, line.quantity
            ))
            .with_detail(json!({
                "line": index,
                "product_id": line.product_id,
                "requested": line.quantity,
                "available": in_stock,
            })));
        }
        taken[index] = Some(ReservedLine {
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price_cents,
        });
    }
    Ok(taken.into_iter().flatten().collect())
}

/// Puts `quantity` units of each `(product, quantity)` back, locking rows in
/// ascending product id like [`take_stock`].
pub(crate) async fn return_stock(
    conn: &mut AnyConnection,
    lines: &[(i64, i64)],
    now: &str,
) -> Result<(), sqlx::Error> {
    let mut sorted = lines.to_vec();
    sorted.sort_unstable();
    for (product_id, quantity) in sorted {
        sqlx::query("UPDATE inventory SET stock = stock + $1, updated_at = $2 WHERE product_id = $3")
            .bind(quantity)
            .bind(now)
            .bind(product_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// References starting with this are the monolith's own (`order:{id}` for
/// the payment of an order it placed); callers may not use them.
pub(crate) const RESERVED_REFERENCE_PREFIX: &str = "order:";

/// Checks a caller's idempotency reference.
pub(crate) fn validate_reference(reference: &str) -> Result<(), ApiError> {
    if reference.trim().is_empty() || reference.len() > MAX_REFERENCE_LEN {
        return Err(ApiError::unprocessable(format!(
            "reference must be 1 to {MAX_REFERENCE_LEN} bytes of text"
        ))
        .with_detail(json!({ "field": "reference" })));
    }
    if reference.starts_with(RESERVED_REFERENCE_PREFIX) {
        return Err(ApiError::unprocessable(format!(
            "references starting with `{RESERVED_REFERENCE_PREFIX}` belong to orders placed in the monolith; choose another prefix"
        ))
        .with_detail(json!({ "field": "reference" })));
    }
    Ok(())
}

async fn reserve(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ReservationRequest>,
) -> Result<(StatusCode, Json<Reservation>), ApiError> {
    validate_reference(&request.reference)?;
    validate_lines(&request.lines)?;
    let now = timestamp::now();
    let mut tx = state.db.pool().begin().await?;
    // Claiming the reference first makes concurrent retries of one request
    // queue on the unique index instead of failing on it: the loser finds
    // the winner's reservation and answers with it.
    let claimed: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO stock_reservations (reference, status, created_at, updated_at) \
         VALUES ($1, 'held', $2, $2) ON CONFLICT (reference) DO NOTHING RETURNING id",
    )
    .bind(&request.reference)
    .bind(&now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id,)) = claimed else {
        let existing = find_reservation(&mut tx, &request.reference)
            .await?
            .ok_or_else(|| ApiError::conflict("the reservation was removed concurrently; retry"))?;
        let same =
            existing.lines.len() == request.lines.len()
                && existing.lines.iter().zip(&request.lines).all(|(held, asked)| {
                    held.product_id == asked.product_id && held.quantity == asked.quantity
                });
        if !same {
            return Err(ApiError::conflict(format!(
                "reservation `{}` already exists with other lines; use a new reference",
                request.reference
            )));
        }
        return Ok((StatusCode::OK, Json(existing)));
    };
    let lines = take_stock(&mut tx, &request.lines, &now).await?;
    for (line_no, line) in (1i64..).zip(&lines) {
        sqlx::query(
            "INSERT INTO stock_reservation_lines (reservation_id, line_no, product_id, quantity, unit_price_cents) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(line_no)
        .bind(line.product_id)
        .bind(line.quantity)
        .bind(line.unit_price_cents)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(reservation_id = id, reference = %request.reference, "stock reserved");
    Ok((
        StatusCode::CREATED,
        Json(Reservation {
            id,
            reference: request.reference,
            status: "held".to_owned(),
            lines,
        }),
    ))
}

async fn release(
    State(state): State<AppState>,
    PathParams(reference): PathParams<String>,
) -> Result<Json<Reservation>, ApiError> {
    let mut tx = state.db.pool().begin().await?;
    let Some(mut reservation) = find_reservation(&mut tx, &reference).await? else {
        return Err(ApiError::not_found(format!(
            "reservation `{reference}` does not exist"
        )));
    };
    let now = timestamp::now();
    let released = sqlx::query(
        "UPDATE stock_reservations SET status = 'released', updated_at = $1 WHERE id = $2 AND status = 'held'",
    )
    .bind(&now)
    .bind(reservation.id)
    .execute(&mut *tx)
    .await?;
    // Only the call that flips `held` to `released` puts stock back, so a
    // repeated release (a retry after a timeout) changes nothing.
    if released.rows_affected() == 1 {
        let lines: Vec<(i64, i64)> = reservation
            .lines
            .iter()
            .map(|l| (l.product_id, l.quantity))
            .collect();
        return_stock(&mut tx, &lines, &now).await?;
        tracing::info!(reservation_id = reservation.id, %reference, "reservation released");
    }
    tx.commit().await?;
    reservation.status = "released".to_owned();
    Ok(Json(reservation))
}

#[derive(FromRow)]
struct ReservationRow {
    id: i64,
    status: String,
}

async fn find_reservation(
    conn: &mut AnyConnection,
    reference: &str,
) -> Result<Option<Reservation>, sqlx::Error> {
    let row: Option<ReservationRow> =
        sqlx::query_as("SELECT id, status FROM stock_reservations WHERE reference = $1")
            .bind(reference)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(row) = row else { return Ok(None) };
    let lines: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT product_id, quantity, unit_price_cents FROM stock_reservation_lines \
         WHERE reservation_id = $1 ORDER BY line_no",
    )
    .bind(row.id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(Reservation {
        id: row.id,
        reference: reference.to_owned(),
        status: row.status,
        lines: lines
            .into_iter()
            .map(|(product_id, quantity, unit_price_cents)| ReservedLine {
                product_id,
                quantity,
                unit_price_cents,
            })
            .collect(),
    }))
}
