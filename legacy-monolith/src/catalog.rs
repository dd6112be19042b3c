//! The catalog capability: `GET /products`, `GET /products/{id}`,
//! `PUT /products/{id}` (price and stock).
//!
//! In the monolith a product's stock lives in the inventory table of the same
//! database, so one response joins both; the extracted catalog service has to
//! ask the monolith's inventory endpoints for the stock instead.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use service_runtime::extract::{JsonBody, PathParams, QueryParams};
use service_runtime::pagination::{Page, PageParams};
use service_runtime::{timestamp, ApiError};
use shop_api::{Product, ProductUpdate};
use sqlx::{Any, Executor, FromRow};

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/products", get(list_products))
        .route("/products/{id}", get(get_product).put(update_product))
}

const PRODUCT_COLUMNS: &str = "p.id, p.sku, p.name, p.description, p.price_cents, i.stock, p.updated_at \
     FROM products p JOIN inventory i ON i.product_id = p.id";

#[derive(FromRow)]
struct ProductRow {
    id: i64,
    sku: String,
    name: String,
    description: String,
    price_cents: i64,
    stock: i64,
    updated_at: String,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Product {
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            price_cents: row.price_cents,
            stock: row.stock,
            updated_at: row.updated_at,
        }
    }
}

async fn list_products(
    State(state): State<AppState>,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<Json<Page<Product>>, ApiError> {
    let page = params.validate()?;
    let rows: Vec<ProductRow> = sqlx::query_as(&format!(
        "SELECT {PRODUCT_COLUMNS} WHERE p.id > $1 ORDER BY p.id LIMIT $2"
    ))
    .bind(page.cursor.unwrap_or(i64::MIN))
    .bind(page.limit + 1)
    .fetch_all(state.db.pool())
    .await?;
    let products = rows.into_iter().map(Product::from).collect();
    Ok(Json(Page::from_overfetch(products, page, |p| p.id)))
}

async fn get_product(
    State(state): State<AppState>,
    PathParams(id): PathParams<i64>,
) -> Result<Json<Product>, ApiError> {
    Ok(Json(fetch_product(state.db.pool(), id).await?))
}

async fn update_product(
    State(state): State<AppState>,
    PathParams(id): PathParams<i64>,
    JsonBody(update): JsonBody<ProductUpdate>,
) -> Result<Json<Product>, ApiError> {
    update.validate()?;
    let now = timestamp::now();
    let mut tx = state.db.pool().begin().await?;
    fetch_product(&mut *tx, id).await?;
    if let Some(price) = update.price_cents {
        sqlx::query("UPDATE products SET price_cents = $1, updated_at = $2 WHERE id = $3")
            .bind(price)
            .bind(&now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(stock) = update.stock {
        sqlx::query("UPDATE inventory SET stock = $1, updated_at = $2 WHERE product_id = $3")
            .bind(stock)
            .bind(&now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    let product = fetch_product(&mut *tx, id).await?;
    tx.commit().await?;
    tracing::info!(product_id = id, ?update, "product updated");
    Ok(Json(product))
}

async fn fetch_product<'c>(db: impl Executor<'c, Database = Any>, id: i64) -> Result<Product, ApiError> {
    let row: Option<ProductRow> = sqlx::query_as(&format!("SELECT {PRODUCT_COLUMNS} WHERE p.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.map(Product::from)
        .ok_or_else(|| ApiError::not_found(format!("product {id} does not exist")))
}
