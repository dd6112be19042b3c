//! The orders service's own tables: orders move `pending → placed` or
//! `pending → failed` as the saga runs, and `placed → cancelled` later.
//!
//! Every state change is a conditional UPDATE on the expected current state,
//! so two requests racing on one order cannot both win.

use std::collections::HashMap;

use service_runtime::pagination::{Page, PageRequest};
use service_runtime::{ApiError, Database};
use shop_api::{NewOrderLine, Order, OrderLine, OrderStatus};
use sqlx::FromRow;

/// The first id the service hands out; smaller ids were placed by the
/// monolith (and arrived here through the backfill).
pub const FIRST_SERVICE_ORDER_ID: i64 = 1_000_000;

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

    /// Allocates an id and records a pending order with its lines; prices
    /// are unknown (zero) until the monolith has reserved the stock.
    pub async fn create_pending(
        &self,
        customer_id: i64,
        lines: &[NewOrderLine],
        now: &str,
    ) -> Result<i64, sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
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
        .bind(now)
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
        tx.commit().await?;
        Ok(id)
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

    /// `pending → placed`. Returns false if the order was not pending.
    pub async fn mark_placed(&self, id: i64, now: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE orders SET state = 'placed', updated_at = $1 WHERE id = $2 AND state = 'pending'",
        )
        .bind(now)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `pending → failed`, keeping why.
    pub async fn mark_failed(&self, id: i64, reason: &str, now: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE orders SET state = 'failed', failure_reason = $1, updated_at = $2 WHERE id = $3 AND state = 'pending'",
        )
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
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
        let row: Option<OrderRow> = sqlx::query_as(&format!(
            "SELECT id, customer_id, state, total_cents, created_at, updated_at FROM orders WHERE id = $1 AND {VISIBLE}"
        ))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(self.with_lines(row.into_iter().collect()).await?.pop())
    }

    /// A customer's visible orders, newest first.
    pub async fn for_customer(&self, customer_id: i64, page: PageRequest) -> Result<Page<Order>, ApiError> {
        let rows: Vec<OrderRow> = sqlx::query_as(&format!(
            "SELECT id, customer_id, state, total_cents, created_at, updated_at FROM orders \
             WHERE customer_id = $1 AND id < $2 AND {VISIBLE} ORDER BY id DESC LIMIT $3"
        ))
        .bind(customer_id)
        .bind(page.cursor.unwrap_or(i64::MAX))
        .bind(page.limit + 1)
        .fetch_all(self.db.pool())
        .await?;
        Ok(Page::from_overfetch(self.with_lines(rows).await?, page, |o| o.id))
    }

    async fn with_lines(&self, rows: Vec<OrderRow>) -> Result<Vec<Order>, ApiError> {
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
        for (order_id, product_id, quantity, unit_price_cents) in select.fetch_all(self.db.pool()).await? {
            lines.entry(order_id).or_default().push(OrderLine {
                product_id,
                quantity,
                unit_price_cents,
            });
        }
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
}
