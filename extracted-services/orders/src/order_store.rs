//! The orders service's own tables: orders move `pending → placed` or
//! `pending → failed` as the saga runs, and `placed → cancelled` later.
//!
//! Every state change is a conditional UPDATE on the expected current state,
//! so two requests racing on one order cannot both win.
//!
//! An order's `Idempotency-Key` row moves with it: it is inserted with the
//! pending order, gets its answer in the transaction that marks the order
//! placed, and is deleted in the one that marks it failed. A pending order
//! claimed by saga recovery (`recovery_claimed_until` set) can only fail:
//! [`OrderStore::mark_placed`] refuses it, so a saga that outlived its
//! timeout cannot place an order whose payment recovery refunds.

use std::collections::HashMap;

use axum::http::StatusCode;
use service_runtime::idempotency::{self, Claim, KeyClaim, StoredKey};
use service_runtime::pagination::{Page, PageRequest};
use service_runtime::timestamp::{self, DateTime, Utc};
use service_runtime::{ApiError, Database};
use shop_api::{NewOrderLine, Order, OrderLine, OrderStatus};
use sqlx::{AnyConnection, FromRow};

/// The first id the service hands out; smaller ids were placed by the
/// monolith (and arrived here through the backfill).
pub const FIRST_SERVICE_ORDER_ID: i64 = 1_000_000;

/// The `scope` of `POST /orders`'s idempotency keys.
pub const PLACE_ORDER_SCOPE: &str = "POST /orders";

/// What [`OrderStore::create_pending`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// The order was recorded as pending under this id (with its key).
    Created(i64),
    /// Another request holds the key; nothing was written.
    KeyTaken(StoredKey),
}

/// Whether the monolith placed this order (and so holds its stock and
/// payment under its own references).
pub fn placed_by_monolith(id: i64) -> bool {
    id < FIRST_SERVICE_ORDER_ID
}

/// Access to the service's order tables.
#[derive(Clone, Debug)]
pub struct OrderStore {
    db: Database,
}

#[derive(FromRow)]
struct OrderRow {
    id: i64,
    customer_id: i64,
    state: String,
    total_cents: i64,
    created_at: String,
    updated_at: String,
}

const VISIBLE: &str = "state IN ('placed', 'cancelled')";

impl OrderStore {
    /// Wraps the service's database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The database behind the store.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Allocates an id and records a pending order with its lines; prices
    /// are unknown (zero) until the monolith has reserved the stock. With a
    /// `claim`, the key is claimed first in the same transaction: when
    /// another request holds it, nothing is written and its row is returned.
    pub async fn create_pending(
        &self,
        customer_id: i64,
        lines: &[NewOrderLine],
        at: DateTime<Utc>,
        claim: Option<&KeyClaim>,
    ) -> Result<Pending, sqlx::Error> {
        let now = timestamp::format(at);
        let mut tx = self.db.pool().begin().await?;
        if let Some(claim) = claim {
            if let Claim::Taken(stored) = claim.claim(&mut tx, at).await? {
                return Ok(Pending::KeyTaken(stored));
            }
        }
        let (id,): (i64,) = sqlx::query_as(
            "UPDATE id_allocations SET next_id = next_id + 1 WHERE name = 'orders' RETURNING next_id - 1",
        )
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO orders (id, customer_id, state, total_cents, created_at, updated_at) \
             VALUES ($1, $2, 'pending', 0, $3, $3)",
        )
        .bind(id)
        .bind(customer_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        for (line_no, line) in (1i64..).zip(lines) {
            sqlx::query(
                "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents) \
                 VALUES ($1, $2, $3, $4, 0)",
            )
            .bind(id)
            .bind(line_no)
            .bind(line.product_id)
            .bind(line.quantity)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(claim) = claim {
            claim.assign(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(Pending::Created(id))
    }

    /// Records the prices the monolith reserved at, and the total.
    pub async fn record_prices(
        &self,
        id: i64,
        lines: &[OrderLine],
        total_cents: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
        for line in lines {
            sqlx::query(
                "UPDATE order_lines SET unit_price_cents = $1 WHERE order_id = $2 AND product_id = $3",
            )
            .bind(line.unit_price_cents)
            .bind(id)
            .bind(line.product_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE orders SET total_cents = $1 WHERE id = $2 AND state = 'pending'")
            .bind(total_cents)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// `pending → placed`, unless saga recovery has claimed the order, and
    /// in the same transaction the answer for the order's idempotency key.
    /// Returns the placed order, or `None` if it was not pending (or was
    /// claimed), and then changes nothing.
    pub async fn mark_placed(&self, id: i64, now: &str) -> Result<Option<Order>, sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE orders SET state = 'placed', updated_at = $1 \
             WHERE id = $2 AND state = 'pending' AND recovery_claimed_until IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let row: OrderRow = sqlx::query_as(
            "SELECT id, customer_id, state, total_cents, created_at, updated_at FROM orders WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let order = Order {
            id,
            customer_id: row.customer_id,
            status: OrderStatus::Placed,
            total_cents: row.total_cents,
            lines: fetch_lines(&mut tx, &[id]).await?.remove(&id).unwrap_or_default(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        };
        idempotency::remember_for(&mut tx, PLACE_ORDER_SCOPE, id, StatusCode::CREATED, &order).await?;
        tx.commit().await?;
        Ok(Some(order))
    }

    /// `pending → failed`, keeping why, and in the same transaction frees
    /// the order's idempotency key, so that a retry runs afresh. Returns
    /// false if the order was not pending.
    pub async fn mark_failed(&self, id: i64, reason: &str, now: &str) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE orders SET state = 'failed', failure_reason = $1, updated_at = $2 WHERE id = $3 AND state = 'pending'",
        )
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        idempotency::release_for(&mut tx, PLACE_ORDER_SCOPE, id).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Up to `limit` pending orders created before `cutoff` that no live
    /// recovery claim holds at `now`, oldest first.
    pub async fn stale_pending(&self, cutoff: &str, now: &str, limit: i64) -> Result<Vec<i64>, sqlx::Error> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM orders WHERE state = 'pending' AND created_at < $1 \
             AND (recovery_claimed_until IS NULL OR recovery_claimed_until < $2) \
             ORDER BY created_at, id LIMIT $3",
        )
        .bind(cutoff)
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Claims a stale pending order for recovery until `lease_until`: one
    /// conditional UPDATE, so of several recoverers exactly one gets it.
    /// Returns false when the order is no longer pending, is younger than
    /// `cutoff`, or another claim holds it at `now`.
    pub async fn claim_for_recovery(
        &self,
        id: i64,
        cutoff: &str,
        now: &str,
        lease_until: &str,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE orders SET recovery_claimed_until = $1 \
             WHERE id = $2 AND state = 'pending' AND created_at < $3 \
             AND (recovery_claimed_until IS NULL OR recovery_claimed_until < $4)",
        )
        .bind(lease_until)
        .bind(id)
        .bind(cutoff)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `placed → cancelled`. Returns false if the order was not placed.
    pub async fn mark_cancelled(&self, id: i64, now: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE orders SET state = 'cancelled', updated_at = $1 WHERE id = $2 AND state = 'placed'",
        )
        .bind(now)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A placed or cancelled order; pending and failed ones are not visible.
    pub async fn visible(&self, id: i64) -> Result<Option<Order>, ApiError> {
        let mut conn = self.db.pool().acquire().await?;
        load_visible(&mut conn, id).await
    }

    /// A customer's visible orders, newest first.
    pub async fn for_customer(&self, customer_id: i64, page: PageRequest) -> Result<Page<Order>, ApiError> {
        let mut conn = self.db.pool().acquire().await?;
        let rows: Vec<OrderRow> = sqlx::query_as(&format!(
            "SELECT id, customer_id, state, total_cents, created_at, updated_at FROM orders \
             WHERE customer_id = $1 AND id < $2 AND {VISIBLE} ORDER BY id DESC LIMIT $3"
        ))
        .bind(customer_id)
        .bind(page.cursor.unwrap_or(i64::MAX))
        .bind(page.limit + 1)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Page::from_overfetch(
            with_lines(&mut conn, rows).await?,
            page,
            |o| o.id,
        ))
    }
}

/// A placed or cancelled order, read on `conn` (inside a transaction, say).
async fn load_visible(conn: &mut AnyConnection, id: i64) -> Result<Option<Order>, ApiError> {
    let row: Option<OrderRow> = sqlx::query_as(&format!(
        "SELECT id, customer_id, state, total_cents, created_at, updated_at FROM orders WHERE id = $1 AND {VISIBLE}"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(with_lines(conn, row.into_iter().collect()).await?.pop())
}

/// Loads the lines of every order in one query and assembles the orders.
async fn with_lines(conn: &mut AnyConnection, rows: Vec<OrderRow>) -> Result<Vec<Order>, ApiError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let mut lines = fetch_lines(conn, &ids).await?;
    rows.into_iter()
        .map(|row| {
            let status = OrderStatus::parse(&row.state).ok_or_else(|| {
                ApiError::internal(&std::io::Error::other(format!(
                    "order {} has state `{}`, which is not visible",
                    row.id, row.state
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

/// The lines of the orders `ids`, in line order, by order id.
async fn fetch_lines(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<OrderLine>>, sqlx::Error> {
    let mut lines: HashMap<i64, Vec<OrderLine>> = HashMap::new();
    if ids.is_empty() {
        return Ok(lines);
    }
    let placeholders = (1..=ids.len())
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT order_id, product_id, quantity, unit_price_cents FROM order_lines \
         WHERE order_id IN ({placeholders}) ORDER BY order_id, line_no"
    );
    let mut select = sqlx::query_as::<_, (i64, i64, i64, i64)>(&sql);
    for id in ids {
        select = select.bind(*id);
    }
    for (order_id, product_id, quantity, unit_price_cents) in select.fetch_all(&mut *conn).await? {
        lines.entry(order_id).or_default().push(OrderLine {
            product_id,
            quantity,
            unit_price_cents,
        });
    }
    Ok(lines)
}
