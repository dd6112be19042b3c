//! Settings out of range stop the service before it touches its database.

use std::time::Duration;

use orders_service::dual_write::DualWriteConfig;
use orders_service::{Application, StartError};
use shop_test_support::upstreams::closed_port_url;
use test_harness::{Database, Engine, TestDatabase};

use crate::helpers::{config, MONOLITH_TIMEOUT};

fn dual_write(fault_rate: f64) -> DualWriteConfig {
    DualWriteConfig {
        enabled: true,
        fault_rate,
    }
}

async fn out_of_range_settings_refuse_to_start(engine: Engine) {
    let Some(database) = TestDatabase::fresh(engine).await else {
        return;
    };
    let monolith = closed_port_url();
    let invalid = [
        (
            dual_write(1.5),
            MONOLITH_TIMEOUT,
            "dual-write fault rate must be between 0.0 and 1.0, got 1.5",
        ),
        (
            dual_write(f64::NAN),
            MONOLITH_TIMEOUT,
            "dual-write fault rate must be between 0.0 and 1.0, got NaN",
        ),
        (
            dual_write(-0.1),
            MONOLITH_TIMEOUT,
            "dual-write fault rate must be between 0.0 and 1.0, got -0.1",
        ),
        (
            dual_write(f64::INFINITY),
            MONOLITH_TIMEOUT,
            "dual-write fault rate must be between 0.0 and 1.0, got inf",
        ),
        (
            dual_write(0.0),
            Duration::ZERO,
            "the monolith timeout must be above zero",
        ),
    ];
    for (dual_write, timeout, expected) in invalid {
        match Application::build(config(database.url().clone(), &monolith, timeout, dual_write)).await {
            Err(StartError::Config(message)) => {
                assert_eq!(message, expected);
                let error = StartError::Config(message);
                assert_eq!(error.to_string(), format!("invalid configuration: {expected}"));
            }
            Err(other) => panic!("{dual_write:?}, {timeout:?}: expected a configuration error, got {other}"),
            Ok(_) => panic!("{dual_write:?}, {timeout:?}: the service started"),
        }
    }

    // Rejected before connecting: the schema was never applied.
    let db = Database::open(database.url())
        .await
        .expect("opening the test database");
    assert!(
        sqlx::query("SELECT COUNT(*) FROM orders")
            .fetch_one(db.pool())
            .await
            .is_err(),
        "no migration ran"
    );
    db.close().await;

    // The bounds themselves are valid.
    for fault_rate in [0.0, 1.0] {
        let app = Application::build(config(
            database.url().clone(),
            &monolith,
            Duration::from_millis(1),
            dual_write(fault_rate),
        ))
        .await
        .unwrap_or_else(|e| panic!("fault rate {fault_rate}: {e}"));
        assert_ne!(app.local_addr().port(), 0, "bound to a real port");
        app.database().close().await;
    }
}

test_harness::on_each_engine!(out_of_range_settings_refuse_to_start);
