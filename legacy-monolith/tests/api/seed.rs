//! The sample data set: `seed_if_empty` with the default size loads the
//! whole shop, consistent with itself, and a second call writes nothing.

use legacy_monolith::seed::{seed_if_empty, SeedReport, SeedSize};
use reqwest::StatusCode;
use service_runtime::pagination::Page;
use shop_api::Product;
use test_harness::Engine;

use crate::helpers::{json_body, snapshot_all, spawn_app, TestApp};

async fn the_default_sample_data_loads_once(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };

    let report = seed_if_empty(&app.db, SeedSize::default())
        .await
        .expect("seeding");
    assert_eq!(
        report,
        SeedReport::Loaded {
            products: 300,
            customers: 200,
            orders: 3_000
        }
    );
    assert_eq!(count(&app, "products").await, 300);
    assert_eq!(count(&app, "inventory").await, 300);
    assert_eq!(count(&app, "customers").await, 200);
    assert_eq!(count(&app, "orders").await, 3_000);
    assert_eq!(count(&app, "payments").await, 3_000);
    let lines = count(&app, "order_lines").await;
    assert!((3_000..=12_000).contains(&lines), "{lines} order lines");
    assert_eq!(
        app.scalar("SELECT next_id FROM id_allocations WHERE name = 'orders'", &[])
            .await,
        3_001
    );

    // The data set agrees with itself.
    let mismatched_totals = app
        .scalar(
            "SELECT COUNT(*) FROM orders o WHERE o.total_cents <> \
             (SELECT SUM(l.quantity * l.unit_price_cents) FROM order_lines l WHERE l.order_id = o.id)",
            &[],
        )
        .await;
    assert_eq!(mismatched_totals, 0);
    let mismatched_payments = app
        .scalar(
            "SELECT COUNT(*) FROM orders o JOIN payments p ON p.order_id = o.id \
             WHERE p.reference <> 'order:' || CAST(o.id AS TEXT) OR p.amount_cents <> o.total_cents \
             OR p.customer_id <> o.customer_id \
             OR (o.status = 'cancelled') <> (p.status = 'refunded')",
            &[],
        )
        .await;
    assert_eq!(mismatched_payments, 0);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM inventory WHERE stock < 0", &[])
            .await,
        0
    );
    let cancelled = app
        .scalar("SELECT COUNT(*) FROM orders WHERE status = 'cancelled'", &[])
        .await;
    assert!(
        (1..=300).contains(&cancelled),
        "about 5 % cancelled, got {cancelled}"
    );

    // A second call writes nothing.
    let before = snapshot_all(&app).await;
    let again = seed_if_empty(&app.db, SeedSize::default())
        .await
        .expect("seeding again");
    assert_eq!(again, SeedReport::AlreadySeeded);
    assert_eq!(snapshot_all(&app).await, before);

    // The API serves it: two pages of products, the next order id.
    let first: Page<Product> =
        serde_json::from_value(json_body(app.get("/products?limit=200").await, StatusCode::OK).await)
            .expect("a page");
    assert_eq!(first.items.len(), 200);
    assert_eq!(first.next_cursor, Some(200));
    let second: Page<Product> = serde_json::from_value(
        json_body(app.get("/products?limit=200&cursor=200").await, StatusCode::OK).await,
    )
    .expect("a page");
    assert_eq!(second.items.len(), 100);
    assert_eq!(second.next_cursor, None);
    let product = &second.items[99];
    assert_eq!((product.id, product.sku.as_str()), (300, "SKU-00300"));
    app.set_stock(1, 10).await;
    let order = app.place_order(1, &[(1, 1)]).await;
    assert_eq!(order.id, 3_001);
}

async fn count(app: &TestApp, table: &str) -> i64 {
    app.scalar(&format!("SELECT COUNT(*) FROM {table}"), &[]).await
}

/// SQLite only: the default data set over a PostgreSQL connection is some
/// 15,000 round trips, which is slow for little extra assurance (the small
/// fixture every other test loads already runs the seed on PostgreSQL).
#[tokio::test]
async fn the_default_sample_data_loads_once_on_sqlite() {
    the_default_sample_data_loads_once(Engine::Sqlite).await;
}
