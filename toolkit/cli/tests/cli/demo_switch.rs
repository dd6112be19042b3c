//! `strangler demo switch …` against a catalog and an orders service started
//! here on free ports, checked through the services themselves.

use std::process::Command;
use std::time::Duration;

use service_runtime::app::BoundApp;
use test_harness::wait_until_healthy;
use toolkit_db::DatabaseUrl;

use crate::{run, strangler};

/// Serves `app` in the background and returns its base URL once healthy.
async fn serve(app: BoundApp) -> String {
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    wait_until_healthy(&url).await;
    url
}

/// The demo's two services on SQLite files in `dir`. Their monolith is never
/// called: the settings endpoints need nothing from it.
async fn services(dir: &std::path::Path) -> (String, String) {
    let any_port = "127.0.0.1:0".parse().unwrap();
    let nowhere: reqwest::Url = "http://127.0.0.1:1/".parse().unwrap();
    let catalog = catalog_service::Application::build(catalog_service::Config {
        listen: any_port,
        database_url: DatabaseUrl::sqlite_file(&dir.join("catalog.db")),
        monolith_url: nowhere.clone(),
        upstream_timeout: Duration::from_secs(1),
        grace_period: Duration::from_secs(1),
    })
    .await
    .unwrap();
    let orders = orders_service::Application::build(orders_service::Config {
        listen: any_port,
        database_url: DatabaseUrl::sqlite_file(&dir.join("orders.db")),
        monolith_url: nowhere,
        monolith_timeout: Duration::from_secs(1),
        dual_write: orders_service::dual_write::DualWriteConfig {
            enabled: true,
            fault_rate: 0.05,
        },
        grace_period: Duration::from_secs(1),
    })
    .await
    .unwrap();
    (serve(catalog).await, serve(orders).await)
}

/// Runs the command off the runtime's threads, which serve the services.
async fn run_blocking(mut command: Command) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || run(&mut command))
        .await
        .unwrap()
}

fn switch(args: &[&str]) -> Command {
    let mut command = strangler();
    command
        .env_remove("STRANGLER_CATALOG_URL")
        .env_remove("STRANGLER_ORDERS_URL")
        .args(["demo", "switch"])
        .args(args);
    command
}

async fn json(url: String) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn each_switch_takes_effect_in_the_service_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (catalog, orders) = services(dir.path()).await;

    let (code, stdout, stderr) =
        run_blocking(switch(&["catalog-price-bug", "on", "--catalog-url", &catalog])).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("catalog-price-bug: on (the catalog service now serves prices rounded"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let (_, settings) = json(format!("{catalog}/internal/settings")).await;
    assert_eq!(settings["price_rounding_bug"], true);

    let (code, stdout, _) =
        run_blocking(switch(&["catalog-price-bug", "off", "--catalog-url", &catalog])).await;
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "catalog-price-bug: off (the catalog service now serves exact prices)\n"
    );
    let (_, settings) = json(format!("{catalog}/internal/settings")).await;
    assert_eq!(settings["price_rounding_bug"], false);

    let (code, stdout, stderr) =
        run_blocking(switch(&["orders-outage", "on", "--orders-url", &orders])).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("orders-outage: on ("), "{stdout}");
    let (status, _) = json(format!("{orders}/health")).await;
    assert_eq!(status, 503, "health checks see the outage");
    let (code, stdout, _) = run_blocking(switch(&["orders-outage", "off", "--orders-url", &orders])).await;
    assert_eq!(code, 0);
    assert_eq!(stdout, "orders-outage: off (the orders service serves again)\n");
    assert_eq!(json(format!("{orders}/health")).await.0, 200);

    let (code, stdout, stderr) =
        run_blocking(switch(&["dual-write-faults", "0.25", "--orders-url", &orders])).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "dual-write-faults: 0.25 (the orders service now drops 25% of its dual writes on purpose)\n"
    );
    let (_, stats) = json(format!("{orders}/internal/dual-write")).await;
    assert_eq!(stats["fault_rate"], 0.25);

    // A rate out of range is a usage error, and the service keeps its rate.
    let (code, stdout, stderr) =
        run_blocking(switch(&["dual-write-faults", "1.5", "--orders-url", &orders])).await;
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("1.5 is out of range"), "{stderr}");
    let (_, settings) = json(format!("{orders}/internal/settings")).await;
    assert_eq!(settings["dual_write_fault_rate"], 0.25);
    assert_eq!(settings["outage"], false);
}

#[test]
fn an_unreachable_service_is_one_line_saying_what_to_do() {
    for (args, service) in [
        (
            ["catalog-price-bug", "on", "--catalog-url", "http://127.0.0.1:1"],
            "catalog service",
        ),
        (
            ["orders-outage", "on", "--orders-url", "http://127.0.0.1:1"],
            "orders service",
        ),
    ] {
        let (code, stdout, stderr) = run(&mut switch(&args));
        assert_eq!(code, 1, "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("cannot reach the {service} at http://127.0.0.1:1"))
                && stderr.contains("is `strangler demo` running?"),
            "{stderr}"
        );
    }
}
