//! The catalog routes: `GET /products`, `GET /products/{id}`,
//! `PUT /products/{id}` (price and stock).
//!
//! The public contract is the monolith's, to the byte where it can be: the
//! same [`shop_api::Product`] JSON, the same statuses, the same messages. The
//! insides differ: products come from the service's own `products` table
//! (`title`, `unit_price_cents`), and each product's `stock` comes from the
//! monolith's inventory in ONE batched call per request. A product the
//! monolith does not report has stock 0.
//!
//! A response's product data and its stock are two reads of two systems, not
//! one snapshot as in the monolith's join; a concurrent change can land
//! between them. For a catalog page that is acceptable; for taking stock
//! (orders) it would not be, which is why reservations stay in the monolith.
//!
//! Every product answer goes through [`SharedSettings::served_price`], where
//! the demo's planted price-rounding bug lives when it is switched on.

use std::collections::HashMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use service_runtime::extract::{JsonBody, PathParams, QueryParams};
use service_runtime::pagination::{Page, PageParams};
use service_runtime::request_id::RequestId;
use service_runtime::{timestamp, ApiError, Database};
use shop_api::{Product, ProductUpdate};
use sqlx::{Any, Executor, FromRow};

use crate::inventory_client::InventoryClient;
use crate::settings::SharedSettings;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/products", get(list_products))
        .route("/products/{id}", get(get_product).put(update_product))
}

const PRODUCT_COLUMNS: &str = "id, sku, title, description, unit_price_cents, updated_at FROM products";

/// A row of the service's modernized schema.
#[derive(FromRow)]
struct ProductRow {
    id: i64,
    sku: String,
    title: String,
    description: String,
    unit_price_cents: i64,
    updated_at: String,
}

impl ProductRow {
    /// The contract's product: the schema's new names mapped back to the
    /// public ones, the stock the monolith reported, and the price as the
    /// settings serve it (exact unless the planted bug is on).
    fn with_stock(self, stock: &HashMap<i64, i64>, settings: &SharedSettings) -> Product {
        Product {
            stock: stock.get(&self.id).copied().unwrap_or(0),
            id: self.id,
            sku: self.sku,
            name: self.title,
            description: self.description,
            price_cents: settings.served_price(self.unit_price_cents),
            updated_at: self.updated_at,
        }
    }
}

async fn list_products(
    State(db): State<Database>,
    State(inventory): State<InventoryClient>,
    State(settings): State<SharedSettings>,
    request_id: RequestId,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<Json<Page<Product>>, ApiError> {
    let page = params.validate()?;
    let rows: Vec<ProductRow> = sqlx::query_as(&format!(
        "SELECT {PRODUCT_COLUMNS} WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(page.cursor.unwrap_or(i64::MIN))
    .bind(page.limit + 1)
    .fetch_all(db.pool())
    .await?;
    let page = Page::from_overfetch(rows, page, |row| row.id);
    // Only the rows of the page, not the overfetched one; at most MAX_LIMIT
    // ids, which the monolith's inventory accepts in one call.
    let ids: Vec<i64> = page.items.iter().map(|row| row.id).collect();
    let stock = inventory.stock_levels(&ids, &request_id).await?;
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(|row| row.with_stock(&stock, &settings))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

async fn get_product(
    State(db): State<Database>,
    State(inventory): State<InventoryClient>,
    State(settings): State<SharedSettings>,
    request_id: RequestId,
    PathParams(id): PathParams<i64>,
) -> Result<Json<Product>, ApiError> {
    let row = fetch_row(db.pool(), id).await?;
    let stock = inventory.stock_levels(&[id], &request_id).await?;
    Ok(Json(row.with_stock(&stock, &settings)))
}

/// Updates price (here) and stock (in the monolith).
///
/// Every call to the monolith happens before anything changes here, and no
/// transaction is held open across one (on SQLite the pool has a single
/// connection; holding it for an HTTP round trip would stall every request).
/// So when the monolith fails, the answer is a 503 and this database is
/// untouched.
///
/// The update as a whole is NOT atomic across the two databases:
/// - the stock call may time out after the monolith applied it: the client
///   gets a 503, the stock changed, the price did not;
/// - the stock call may succeed and the local price update then fail: the
///   client gets a 500/503, the stock changed, the price did not.
///
/// Both steps set absolute values, so retrying the same PUT converges on the
/// requested state; that, not a distributed transaction, is the recovery. A
/// half-applied update that nobody retries stays half-applied, and nothing
/// afterwards can tell it from two separate updates.
async fn update_product(
    State(db): State<Database>,
    State(inventory): State<InventoryClient>,
    State(settings): State<SharedSettings>,
    request_id: RequestId,
    PathParams(id): PathParams<i64>,
    JsonBody(update): JsonBody<ProductUpdate>,
) -> Result<Json<Product>, ApiError> {
    update.validate()?;
    // 404 before touching the monolith: the catalog decides what exists.
    fetch_row(db.pool(), id).await?;

    // Step 1, in the monolith: set the stock, or read it for the answer. A
    // price-only update needs the monolith too, because the answer carries
    // the stock; reading it first keeps "503 means nothing changed here".
    let stock = match update.stock {
        Some(stock) => {
            let level = inventory.set_stock(id, stock, &request_id).await?;
            HashMap::from([(level.product_id, level.stock)])
        }
        None => inventory.stock_levels(&[id], &request_id).await?,
    };

    // Step 2, here: the price, written and read back in one transaction so
    // that the answer is exactly what was stored. Like the monolith, a
    // stock-only update leaves the product's `updated_at` alone: it records
    // changes of catalog data, and stock is not catalog data.
    let row = match update.price_cents {
        Some(price) => {
            let mut tx = db.pool().begin().await?;
            sqlx::query("UPDATE products SET unit_price_cents = $1, updated_at = $2 WHERE id = $3")
                .bind(price)
                .bind(timestamp::now())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let row = fetch_row(&mut *tx, id).await?;
            tx.commit().await?;
            row
        }
        None => fetch_row(db.pool(), id).await?,
    };
    tracing::info!(product_id = id, ?update, "product updated");
    Ok(Json(row.with_stock(&stock, &settings)))
}

async fn fetch_row<'c>(db: impl Executor<'c, Database = Any>, id: i64) -> Result<ProductRow, ApiError> {
    let row: Option<ProductRow> = sqlx::query_as(&format!("SELECT {PRODUCT_COLUMNS} WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.ok_or_else(|| ApiError::not_found(format!("product {id} does not exist")))
}
