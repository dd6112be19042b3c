//! Starting the whole sample stack — monolith, catalog and orders services —
//! on port 0 against fresh databases, backfilled with the shipped mapping.

use std::time::Duration;

use backfill::{backfill, BackfillOptions};
use legacy_monolith::seed::{seed_if_empty, SeedSize};
use mapping::Mapping;
use orders_service::dual_write::DualWriteConfig;
use test_harness::{wait_until_healthy, workspace_path, Engine, TestDatabase};
use toolkit_db::Database;

/// The three running applications and their databases.
pub struct Stack {
    pub monolith: String,
    pub catalog: String,
    pub orders: String,
    pub monolith_db: Database,
    pub catalog_db: Database,
    pub orders_db: Database,
    pub client: reqwest::Client,
    /// The databases' URLs, for tools that open their own connections.
    pub monolith_url: toolkit_db::DatabaseUrl,
    pub orders_url: toolkit_db::DatabaseUrl,
    _databases: [TestDatabase; 3],
}

/// Starts the stack on `engine` with the given dual-write settings; `None`
/// when the engine's server is unavailable outside CI.
pub async fn spawn_stack(engine: Engine, dual_write: DualWriteConfig) -> Option<Stack> {
    let databases = [
        TestDatabase::fresh(engine).await?,
        TestDatabase::fresh(engine).await?,
        TestDatabase::fresh(engine).await?,
    ];
    let any_port = "127.0.0.1:0".parse().unwrap();
    let grace = Duration::from_secs(1);
    let monolith = legacy_monolith::Application::build(legacy_monolith::Config {
        listen: any_port,
        database_url: databases[0].url().clone(),
        seed: false,
        grace_period: grace,
    })
    .await
    .unwrap();
    let monolith_db = monolith.database().clone();
    seed_if_empty(
        &monolith_db,
        SeedSize {
            products: 20,
            customers: 5,
            orders: 40,
        },
    )
    .await
    .unwrap();
    let monolith_url = format!("http://{}", monolith.local_addr());
    let catalog = catalog_service::Application::build(catalog_service::Config {
        listen: any_port,
        database_url: databases[1].url().clone(),
        monolith_url: format!("{monolith_url}/").parse().unwrap(),
        upstream_timeout: Duration::from_secs(5),
        grace_period: grace,
    })
    .await
    .unwrap();
    let orders = orders_service::Application::build(orders_service::Config {
        listen: any_port,
        database_url: databases[2].url().clone(),
        monolith_url: format!("{monolith_url}/").parse().unwrap(),
        monolith_timeout: Duration::from_secs(5),
        dual_write,
        grace_period: grace,
    })
    .await
    .unwrap();
    let catalog_db = catalog.database().clone();
    let orders_db = orders.database().clone();

    // The shipped mapping must fit the shipped schemas: backfill with it.
    let mapping = Mapping::load(&workspace_path("demo/mapping.toml")).unwrap();
    for (capability, service_db) in [("catalog", &catalog_db), ("orders", &orders_db)] {
        let reports = backfill(
            mapping.capability(capability).unwrap(),
            &monolith_db,
            service_db,
            BackfillOptions::default(),
        )
        .await
        .unwrap();
        assert!(reports.iter().all(|r| r.complete), "{reports:?}");
    }

    let catalog_url = format!("http://{}", catalog.local_addr());
    let orders_url = format!("http://{}", orders.local_addr());
    tokio::spawn(monolith.run_until_stopped(std::future::pending()));
    tokio::spawn(catalog.run_until_stopped(std::future::pending()));
    tokio::spawn(orders.run_until_stopped(std::future::pending()));
    for url in [&monolith_url, &catalog_url, &orders_url] {
        wait_until_healthy(url).await;
    }
    Some(Stack {
        monolith: monolith_url,
        catalog: catalog_url,
        orders: orders_url,
        monolith_db,
        catalog_db,
        orders_db,
        client: test_harness::http_client(),
        monolith_url: databases[0].url().clone(),
        orders_url: databases[2].url().clone(),
        _databases: databases,
    })
}

/// One row of a query, as i64s.
pub async fn ints(db: &Database, sql: &str, id: i64) -> Vec<i64> {
    let row = sqlx::query(sql).bind(id).fetch_optional(db.pool()).await.unwrap();
    row.map(|row| {
        toolkit_db::sql_value::decode_row(&row)
            .unwrap()
            .into_iter()
            .map(|v| match v {
                toolkit_db::sql_value::SqlValue::Int(i) => i,
                other => panic!("expected an integer, got {other:?}"),
            })
            .collect()
    })
    .unwrap_or_default()
}

/// A count from a query with one `$1` parameter.
pub async fn count(db: &Database, sql: &str, bind: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).bind(bind).fetch_one(db.pool()).await.unwrap();
    n
}
