//! The orders capability: `POST /orders`, `GET /orders/{id}`,
//! `POST /orders/{id}/cancel`, `GET /customers/{id}/orders`, and the
//! internal `PUT /internal/orders/{id}` that receives the orders service's
//! dual writes.
//!
//! Placing an order is ONE local transaction: check and take stock, record
//! the order and its lines, capture the payment. Any failure drops the
//! transaction, so a rejected order leaves the database exactly as it was.
//!
//! `POST /orders` honours `Idempotency-Key` (service-runtime's
//! `idempotency` module has the rules). The key is the transaction's first
//! write and its answer is stored before the commit, so the key is
//! remembered exactly when its order exists, answer included: a crash after
//! the commit leaves the answer for the retry. A second request with the
//! key never sees one in progress (this endpoint never answers 409 for a
//! key): it waits on the key's primary key (PostgreSQL) or for the one
//! connection (SQLite) until the first transaction ends, then gets the
//! stored answer, or, if the first rolled back, places the order itself.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;
use service_runtime::extract::{JsonBody, PathParams, QueryParams};
use service_runtime::idempotency::{Claim, KeyClaim, MaybeIdempotencyKey};
use service_runtime::pagination::{Page, PageParams};
use service_runtime::timestamp::Utc;
use service_runtime::{timestamp, ApiError};
use shop_api::orders::order_total;
use shop_api::{NewOrder, Order, OrderLine, OrderReplica, OrderStatus, PaymentRequest};
use sqlx::{AnyConnection, FromRow};

use crate::customers::find_customer;
use crate::{inventory, payments, AppState};

/// `origin` of orders placed through the monolith's own API.
const ORIGIN_MONOLITH: &str = "monolith";
/// `origin` of orders written by the orders service's dual writes.
const ORIGIN_ORDERS_SERVICE: &str = "orders-service";
/// The `scope` of `POST /orders`'s idempotency keys.
pub const PLACE_ORDER_SCOPE: &str = "POST /orders";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/customers/{id}/orders", get(customer_orders))
        .route("/internal/orders/{id}", put(write_replica))
}

#[derive(FromRow)]
struct OrderRow {
    id: i64,
    customer_id: i64,
    status: String,
    total_cents: i64,
    created_at: String,
    updated_at: String,
}

const ORDER_COLUMNS: &str = "id, customer_id, status, total_cents, created_at, updated_at";

async fn place_order(
    State(state): State<AppState>,
    MaybeIdempotencyKey(key): MaybeIdempotencyKey,
    JsonBody(order): JsonBody<NewOrder>,
) -> Result<Response, ApiError> {
    order.validate()?;
    let at = Utc::now();
    let now = timestamp::format(at);
    let claim = key.map(|key| KeyClaim::new(PLACE_ORDER_SCOPE, key, &order));
    let mut tx = state.db.pool().begin().await?;
    if let Some(claim) = &claim {
        if let Claim::Taken(stored) = claim.claim(&mut tx, at).await? {
            // Dropping the transaction rolls the attempt back.
            return Ok(claim.answer(&stored));
        }
    }
    if find_customer(&mut *tx, order.customer_id).await?.is_none() {
        return Err(
            ApiError::unprocessable(format!("customer {} does not exist", order.customer_id))
                .with_detail(json!({ "field": "customer_id" })),
        );
    }
    let taken = inventory::take_stock(&mut tx, &order.lines, &now).await?;
    let lines: Vec<OrderLine> = taken
        .into_iter()
        .map(|line| OrderLine {
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price_cents: line.unit_price_cents,
        })
        .collect();
    let total_cents = order_total(&lines)
        .ok_or_else(|| ApiError::unprocessable("the order's total is too large to process"))?;
    let id = allocate_order_id(&mut tx).await?;
    insert_order(
        &mut tx,
        id,
        order.customer_id,
        OrderStatus::Placed,
        total_cents,
        &now,
        &now,
        ORIGIN_MONOLITH,
    )
    .await?;
    let numbered: Vec<(i64, OrderLine)> = (1i64..).zip(lines.iter().cloned()).collect();
    insert_lines(&mut tx, id, &numbered).await?;
    let captured = payments::capture(
        &mut tx,
        &PaymentRequest {
            reference: format!("order:{id}"),
            order_id: id,
            customer_id: order.customer_id,
            amount_cents: total_cents,
        },
        &now,
    )
    .await?;
    if captured.is_none() {
        return Err(ApiError::internal(&std::io::Error::other(format!(
            "a payment with reference order:{id} already exists although order {id} is new"
        ))));
    }
    let placed = Order {
        id,
        customer_id: order.customer_id,
        status: OrderStatus::Placed,
        total_cents,
        lines,
        created_at: now.clone(),
        updated_at: now,
    };
    if let Some(claim) = &claim {
        claim.remember(&mut tx, id, StatusCode::CREATED, &placed).await?;
    }
    tx.commit().await?;
    tracing::info!(
        order_id = id,
        customer_id = order.customer_id,
        total_cents,
        idempotency_key = claim.as_ref().map(|c| c.key.as_str()),
        "order placed"
    );
    Ok((StatusCode::CREATED, Json(placed)).into_response())
}

/// The next free order id. Ids the orders service's dual writes already
/// took are skipped, so a stray replica can never block order placement.
async fn allocate_order_id(conn: &mut AnyConnection) -> Result<i64, ApiError> {
    const MAX_SKIPS: usize = 1_000;
    for _ in 0..MAX_SKIPS {
        let (id,): (i64,) = sqlx::query_as(
            "UPDATE id_allocations SET next_id = next_id + 1 WHERE name = 'orders' RETURNING next_id - 1",
        )
        .fetch_one(&mut *conn)
        .await?;
        let taken: Option<(i64,)> = sqlx::query_as("SELECT id FROM orders WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        if taken.is_none() {
            return Ok(id);
        }
    }
    Err(ApiError::internal(&std::io::Error::other(format!(
        "{MAX_SKIPS} consecutive order ids are taken by dual-written orders; move the orders service's id range"
    ))))
}

#[allow(clippy::too_many_arguments)]
async fn insert_order(
    conn: &mut AnyConnection,
    id: i64,
    customer_id: i64,
    status: OrderStatus,
    total_cents: i64,
    created_at: &str,
    updated_at: &str,
    origin: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO orders (id, customer_id, status, total_cents, origin, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(customer_id)
    .bind(status.as_str())
    .bind(total_cents)
    .bind(origin)
    .bind(created_at)
    .bind(updated_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts `(line_no, line)` pairs.
async fn insert_lines(
    conn: &mut AnyConnection,
    order_id: i64,
    lines: &[(i64, OrderLine)],
) -> Result<(), sqlx::Error> {
    for (line_no, line) in lines {
        sqlx::query(
            "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(order_id)
        .bind(line_no)
        .bind(line.product_id)
        .bind(line.quantity)
        .bind(line.unit_price_cents)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn get_order(
    State(state): State<AppState>,
    PathParams(id): PathParams<i64>,
) -> Result<Json<Order>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    let order = load_order(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("order {id} does not exist")))?;
    Ok(Json(order))
}

async fn cancel_order(
    State(state): State<AppState>,
    PathParams(id): PathParams<i64>,
) -> Result<Json<Order>, ApiError> {
    let now = timestamp::now();
    let mut tx = state.db.pool().begin().await?;
    let found: Option<(String, String)> = sqlx::query_as("SELECT status, origin FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((_, origin)) = found else {
        return Err(ApiError::not_found(format!("order {id} does not exist")));
    };
    if origin != ORIGIN_MONOLITH {
        return Err(ApiError::conflict(format!(
            "order {id} belongs to the orders service (it holds the stock reservation and payment); cancel it there"
        )));
    }
    // The status check is part of the UPDATE so that two concurrent cancels
    // cannot both put the stock back.
    let cancelled = sqlx::query(
        "UPDATE orders SET status = 'cancelled', updated_at = $1 WHERE id = $2 AND status = 'placed'",
    )
    .bind(&now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if cancelled.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("order {id} is already cancelled")));
    }
    let lines: Vec<(i64, i64)> =
        sqlx::query_as("SELECT product_id, quantity FROM order_lines WHERE order_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    inventory::return_stock(&mut tx, &lines, &now).await?;
    payments::refund_order(&mut tx, id, &now).await?;
    let order = load_order(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("order {id} does not exist")))?;
    tx.commit().await?;
    tracing::info!(order_id = id, "order cancelled");
    Ok(Json(order))
}

async fn customer_orders(
    State(state): State<AppState>,
    PathParams(customer_id): PathParams<i64>,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<Json<Page<Order>>, ApiError> {
    let page = params.validate()?;
    let mut conn = state.db.pool().acquire().await?;
    if find_customer(&mut *conn, customer_id).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "customer {customer_id} does not exist"
        )));
    }
    // Newest first: the cursor is the last id seen, the next page is older.
    let rows: Vec<OrderRow> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE customer_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
    ))
    .bind(customer_id)
    .bind(page.cursor.unwrap_or(i64::MAX))
    .bind(page.limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let orders = with_lines(&mut conn, rows).await?;
    Ok(Json(Page::from_overfetch(orders, page, |o| o.id)))
}

async fn load_order(conn: &mut AnyConnection, id: i64) -> Result<Option<Order>, ApiError> {
    let row: Option<OrderRow> = sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(with_lines(conn, vec![row]).await?.pop())
}

/// Loads the lines of every order in one query and assembles the orders.
async fn with_lines(conn: &mut AnyConnection, rows: Vec<OrderRow>) -> Result<Vec<Order>, ApiError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (1..=rows.len())
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT order_id, product_id, quantity, unit_price_cents FROM order_lines \
         WHERE order_id IN ({placeholders}) ORDER BY order_id, line_no"
    );
    let mut select = sqlx::query_as::<_, (i64, i64, i64, i64)>(&sql);
    for row in &rows {
        select = select.bind(row.id);
    }
    let mut lines: HashMap<i64, Vec<OrderLine>> = HashMap::new();
    for (order_id, product_id, quantity, unit_price_cents) in select.fetch_all(&mut *conn).await? {
        lines.entry(order_id).or_default().push(OrderLine {
            product_id,
            quantity,
            unit_price_cents,
        });
    }
    rows.into_iter()
        .map(|row| {
            let status = OrderStatus::parse(&row.status).ok_or_else(|| {
                ApiError::internal(&std::io::Error::other(format!(
                    "order {} has unknown status `{}` in the database",
                    row.id, row.status
                )))
            })?;
            Ok(Order {
                id: row.id,
                customer_id: row.customer_id,
                status,
                total_cents: row.total_cents,
                lines: lines.remove(&row.id).unwrap_or_default(),
                created_at: row.created_at,
                updated_at: row.updated_at,
            })
        })
        .collect()
}

/// Checks a dual-written order before anything is written.
fn validate_replica(replica: &OrderReplica) -> Result<(), ApiError> {
    if replica.lines.is_empty() {
        return Err(ApiError::unprocessable(
            "a replicated order needs at least one line",
        ));
    }
    let mut line_numbers = std::collections::HashSet::new();
    for line in &replica.lines {
        if line.line_no < 1 || !line_numbers.insert(line.line_no) {
            return Err(ApiError::unprocessable(format!(
                "line_no {} is not positive or appears twice",
                line.line_no
            )));
        }
        if line.quantity < 1 || line.unit_price_cents < 0 {
            return Err(ApiError::unprocessable(format!(
                "line {}: quantity must be positive and unit_price_cents zero or more",
                line.line_no
            )));
        }
    }
    let lines: Vec<OrderLine> = replica
        .lines
        .iter()
        .map(|l| OrderLine {
            product_id: l.product_id,
            quantity: l.quantity,
            unit_price_cents: l.unit_price_cents,
        })
        .collect();
    if order_total(&lines) != Some(replica.total_cents) {
        return Err(ApiError::unprocessable(format!(
            "total_cents {} is not the sum of the lines",
            replica.total_cents
        )));
    }
    if replica.created_at.is_empty() || replica.updated_at.is_empty() {
        return Err(ApiError::unprocessable("created_at and updated_at are required"));
    }
    Ok(())
}

/// Writes (inserts or replaces) the orders service's copy of an order. It
/// touches neither stock nor payments: the service's saga already did that
/// through the inventory and payment endpoints.
async fn write_replica(
    State(state): State<AppState>,
    PathParams(id): PathParams<i64>,
    JsonBody(replica): JsonBody<OrderReplica>,
) -> Result<Json<Order>, ApiError> {
    validate_replica(&replica)?;
    let mut tx = state.db.pool().begin().await?;
    for line in &replica.lines {
        let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM products WHERE id = $1")
            .bind(line.product_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(ApiError::unprocessable(format!(
                "line {}: product {} does not exist",
                line.line_no, line.product_id
            )));
        }
    }
    if find_customer(&mut *tx, replica.customer_id).await?.is_none() {
        return Err(ApiError::unprocessable(format!(
            "customer {} does not exist",
            replica.customer_id
        )));
    }
    // One statement inserts or replaces, and refuses to touch an order the
    // monolith placed itself; concurrent writes of one id queue on its row.
    let written: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO orders (id, customer_id, status, total_cents, origin, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id, status = excluded.status, \
         total_cents = excluded.total_cents, created_at = excluded.created_at, updated_at = excluded.updated_at \
         WHERE orders.origin = $5 RETURNING id",
    )
    .bind(id)
    .bind(replica.customer_id)
    .bind(replica.status.as_str())
    .bind(replica.total_cents)
    .bind(ORIGIN_ORDERS_SERVICE)
    .bind(&replica.created_at)
    .bind(&replica.updated_at)
    .fetch_optional(&mut *tx)
    .await?;
    if written.is_none() {
        return Err(ApiError::conflict(format!(
            "order {id} was placed in the monolith; the orders service cannot overwrite it"
        )));
    }
    sqlx::query("DELETE FROM order_lines WHERE order_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let lines: Vec<(i64, OrderLine)> = replica
        .lines
        .iter()
        .map(|l| {
            (
                l.line_no,
                OrderLine {
                    product_id: l.product_id,
                    quantity: l.quantity,
                    unit_price_cents: l.unit_price_cents,
                },
            )
        })
        .collect();
    insert_lines(&mut tx, id, &lines).await?;
    let order = load_order(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("order {id} does not exist")))?;
    tx.commit().await?;
    tracing::info!(
        order_id = id,
        status = replica.status.as_str(),
        "dual-written order stored"
    );
    Ok(Json(order))
}
