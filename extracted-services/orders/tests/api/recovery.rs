//! Saga recovery: an order a dead process left pending, at any step of the
//! saga, is compensated and marked failed once it is older than the
//! timeout; a younger one, or one another recoverer holds, is left alone;
//! two recoverers racing do the work once; and the service runs recovery
//! on start and on its timer.
//!
//! Passes are run directly with the time injected, on an orders database
//! with no service on it (so no background pass interferes).

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use orders_service::order_store::{OrderStore, Pending};
use orders_service::recovery::RecoveryConfig;
use orders_service::{Application, StartError, MIGRATIONS};
use serde_json::Value;
use service_runtime::timestamp::{self, DateTime, Utc};
use shop_api::orders::order_total;
use shop_api::{NewOrderLine, OrderLine, PaymentRequest, ReservationRequest};
use shop_test_support::upstreams::closed_port_url;
use shop_test_support::SpawnedApp;
use test_harness::{Database, Engine, TestDatabase};

use crate::helpers::{
    all_stock, config, get, monolith_client, orders_database, payment, recovery, reference, reservation,
    service_order, spawn_monolith, stub_monolith, StubDelays, DUAL_WRITE_OFF, FIRST_ID, MONOLITH_TIMEOUT,
    STOCK,
};

/// How far a saga got before its process died.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CrashPoint {
    /// Step 1: the pending order is recorded, nothing else.
    Recorded,
    /// Step 2: the monolith holds the stock.
    Reserved,
    /// The reserved prices are recorded on the order.
    Priced,
    /// Step 3: the monolith took the payment; the order was not yet placed.
    Paid,
    /// Paid, and then a recoverer claimed it, refunded, and died too.
    RecovererDied,
}

const LINES: [(i64, i64); 2] = [(1, 2), (3, 1)];

fn new_lines() -> Vec<NewOrderLine> {
    LINES
        .iter()
        .map(|&(product_id, quantity)| NewOrderLine { product_id, quantity })
        .collect()
}

/// Leaves order state as a process killed at `point` would: the service's
/// rows written by the service's own code, the monolith's by its API.
async fn crash_at(db: &Database, monolith_url: &str, started: DateTime<Utc>, point: CrashPoint) -> i64 {
    let store = OrderStore::new(db.clone());
    let Pending::Created(id) = store
        .create_pending(1, &new_lines(), started, None)
        .await
        .expect("recording the pending order")
    else {
        panic!("no key was given");
    };
    if point == CrashPoint::Recorded {
        return id;
    }
    let monolith = monolith_client(monolith_url);
    let request_id = "crashed-saga".parse().expect("a header value");
    let reserved = monolith
        .reserve(
            &ReservationRequest {
                reference: reference(id),
                lines: new_lines(),
            },
            &request_id,
        )
        .await
        .expect("reserving");
    if point == CrashPoint::Reserved {
        return id;
    }
    let lines: Vec<OrderLine> = reserved
        .lines
        .iter()
        .map(|l| OrderLine {
            product_id: l.product_id,
            quantity: l.quantity,
            unit_price_cents: l.unit_price_cents,
        })
        .collect();
    let total_cents = order_total(&lines).expect("a total");
    store
        .record_prices(id, &lines, total_cents)
        .await
        .expect("recording prices");
    if point == CrashPoint::Priced {
        return id;
    }
    monolith
        .pay(
            &PaymentRequest {
                reference: reference(id),
                order_id: id,
                customer_id: 1,
                amount_cents: total_cents,
            },
            &request_id,
        )
        .await
        .expect("paying");
    if point == CrashPoint::Paid {
        return id;
    }
    // A recoverer 70 s after the start claims it for 60 s, refunds, dies.
    let claimed_at = started + Duration::from_secs(70);
    assert!(store
        .claim_for_recovery(
            id,
            &timestamp::before(claimed_at, Duration::from_secs(60)),
            &timestamp::format(claimed_at),
            &timestamp::after(claimed_at, Duration::from_secs(60)),
        )
        .await
        .expect("claiming"));
    monolith
        .refund(&reference(id), &request_id)
        .await
        .expect("refunding");
    id
}

async fn an_order_left_pending_at_any_step_is_compensated(engine: Engine) {
    let Some(monolith) = spawn_monolith(engine).await else {
        return;
    };
    let Some((_database, db)) = orders_database(engine).await else {
        return;
    };
    let recovery = recovery(&db, &monolith.url, RecoveryConfig::default());
    let started = Utc::now();

    for (n, point) in [
        CrashPoint::Recorded,
        CrashPoint::Reserved,
        CrashPoint::Priced,
        CrashPoint::Paid,
        CrashPoint::RecovererDied,
    ]
    .into_iter()
    .enumerate()
    {
        let id = crash_at(&db, &monolith.url, started, point).await;
        assert_eq!(id, FIRST_ID + i64::try_from(n).expect("a small number"));
        let held = [STOCK - 2, STOCK, STOCK - 1, STOCK, STOCK];
        let expected_stock = if point == CrashPoint::Recorded {
            [STOCK; 5]
        } else {
            held
        };
        assert_eq!(all_stock(&monolith.db).await, expected_stock, "{point:?}");

        // After the dead recoverer's lease (130 s after the start for the
        // last case), well past the 60 s timeout for all.
        let pass = recovery
            .run_once(started + Duration::from_secs(131))
            .await
            .expect("a recovery pass");
        assert_eq!(pass.compensated, [id], "{point:?}: {pass:?}");
        assert!(
            pass.failed.is_empty() && pass.skipped.is_empty(),
            "{point:?}: {pass:?}"
        );

        let order = service_order(&db, id).await.expect("the order row");
        assert_eq!(order.state, "failed", "{point:?}");
        let reason = order.failure_reason.expect("a failure reason");
        assert!(reason.starts_with("saga recovery: "), "{reason}");
        assert_eq!(
            all_stock(&monolith.db).await,
            [STOCK; 5],
            "{point:?}: the stock is back"
        );
        let released = reservation(&monolith.db, &reference(id))
            .await
            .map(|(status, _)| status);
        let refunded = payment(&monolith.db, &reference(id)).await.map(|p| p.status);
        match point {
            CrashPoint::Recorded => assert_eq!((released, refunded), (None, None)),
            CrashPoint::Reserved | CrashPoint::Priced => {
                assert_eq!(
                    (released.as_deref(), refunded),
                    (Some("released"), None),
                    "{point:?}"
                );
            }
            CrashPoint::Paid | CrashPoint::RecovererDied => assert_eq!(
                (released.as_deref(), refunded.as_deref()),
                (Some("released"), Some("refunded")),
                "{point:?}"
            ),
        }
    }

    let again = recovery
        .run_once(started + Duration::from_secs(600))
        .await
        .expect("a recovery pass");
    assert_eq!(again, Default::default(), "nothing is left to do");
    let stats = recovery.stats();
    assert_eq!((stats.passes, stats.compensated, stats.skipped), (6, 5, 0));
}

async fn a_young_or_claimed_order_is_left_alone(engine: Engine) {
    let Some(monolith) = spawn_monolith(engine).await else {
        return;
    };
    let Some((_database, db)) = orders_database(engine).await else {
        return;
    };
    let recovery = recovery(&db, &monolith.url, RecoveryConfig::default());
    let started = Utc::now();
    let id = crash_at(&db, &monolith.url, started, CrashPoint::Reserved).await;

    // Younger than the 60 s timeout: its saga may still be running.
    let pass = recovery
        .run_once(started + Duration::from_secs(59))
        .await
        .expect("a recovery pass");
    assert_eq!(pass, Default::default());
    assert_eq!(
        service_order(&db, id).await.map(|o| o.state),
        Some("pending".to_owned())
    );
    assert_eq!(
        reservation(&monolith.db, &reference(id))
            .await
            .map(|(status, _)| status),
        Some("held".to_owned())
    );

    // Old enough, but another instance holds a live claim on it.
    let store = OrderStore::new(db.clone());
    let other_pass = started + Duration::from_secs(61);
    assert!(store
        .claim_for_recovery(
            id,
            &timestamp::before(other_pass, Duration::from_secs(60)),
            &timestamp::format(other_pass),
            &timestamp::after(other_pass, Duration::from_secs(60)),
        )
        .await
        .expect("claiming"));
    let pass = recovery
        .run_once(started + Duration::from_secs(90))
        .await
        .expect("a recovery pass");
    assert_eq!(pass, Default::default(), "the claim's lease runs until 121 s");
    assert_eq!(all_stock(&monolith.db).await[0], STOCK - 2);

    // Claimed, it can no longer be placed by the saga that created it.
    assert_eq!(
        store
            .mark_placed(id, &timestamp::now())
            .await
            .expect("marking placed"),
        None
    );
    let pass = recovery
        .run_once(started + Duration::from_secs(122))
        .await
        .expect("a recovery pass");
    assert_eq!(pass.compensated, [id], "the lease ran out");
    assert_eq!(all_stock(&monolith.db).await[0], STOCK);
}

async fn two_recoveries_racing_compensate_each_order_once(engine: Engine) {
    let Some((database, db)) = orders_database(engine).await else {
        return;
    };
    let monolith = stub_monolith(StubDelays::default()).await;
    let started = Utc::now();
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(crash_at(&db, &monolith.url, started, CrashPoint::Paid).await);
    }
    let calls_before = monolith.calls().len();

    // Two instances: each its own pool, as two processes would have.
    let other_db = Database::connect(database.url(), &MIGRATIONS)
        .await
        .expect("a second pool");
    let first = recovery(&db, &monolith.url, RecoveryConfig::default());
    let second = recovery(&other_db, &monolith.url, RecoveryConfig::default());
    let now = started + Duration::from_secs(120);
    let (a, b) = tokio::join!(first.run_once(now), second.run_once(now));
    let (a, b) = (a.expect("the first pass"), b.expect("the second pass"));

    let mut compensated = [a.compensated.clone(), b.compensated.clone()].concat();
    compensated.sort_unstable();
    assert_eq!(compensated, ids, "every order once, by one of them: {a:?} {b:?}");
    assert!(a.failed.is_empty() && b.failed.is_empty(), "{a:?} {b:?}");
    for id in &ids {
        assert_eq!(
            service_order(&db, *id).await.map(|o| o.state),
            Some("failed".to_owned())
        );
    }
    let calls = monolith.calls()[calls_before..].to_vec();
    for id in &ids {
        let reference = reference(*id);
        for call in [
            format!("POST /payments/{reference}/refund"),
            format!("POST /inventory/reservations/{reference}/release"),
        ] {
            assert_eq!(
                calls.iter().filter(|c| **c == call).count(),
                1,
                "{call} once: {calls:?}"
            );
        }
    }
    assert_eq!(calls.len(), 2 * ids.len(), "nothing else: {calls:?}");
    other_db.close().await;
}

async fn recovery_stats(base: &str) -> Value {
    let (status, stats) = get(&format!("{base}/internal/recovery")).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    stats
}

/// Polls `GET /internal/recovery` until `compensated` reaches `expected`.
async fn wait_until_compensated(base: &str, expected: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = recovery_stats(base).await;
        if stats["compensated"].as_u64() >= Some(expected) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "{expected} compensations within 20 s: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn the_service_recovers_on_start_and_on_its_timer(engine: Engine) {
    let Some(monolith) = spawn_monolith(engine).await else {
        return;
    };
    let crashed_long_ago = Utc::now() - Duration::from_secs(3600);
    let settings = RecoveryConfig {
        interval: Duration::from_millis(50),
        ..RecoveryConfig::default()
    };
    let monolith_url = monolith.url.clone();
    let Some(orders) = SpawnedApp::spawn(engine, |database_url| async move {
        // What the last process left: an order pending since an hour ago.
        let db = Database::connect(&database_url, &MIGRATIONS)
            .await
            .expect("migrating");
        crash_at(&db, &monolith_url, crashed_long_ago, CrashPoint::Paid).await;
        db.close().await;
        Application::build_with_recovery(
            config(database_url, &monolith_url, MONOLITH_TIMEOUT, DUAL_WRITE_OFF),
            settings,
        )
        .await
    })
    .await
    else {
        return;
    };

    let stats = wait_until_compensated(&orders.url, 1).await;
    assert_eq!(stats["pending_timeout_ms"], 60_000);
    assert_eq!(stats["interval_ms"], 50);
    assert_eq!(
        service_order(&orders.db, FIRST_ID).await.map(|o| o.state),
        Some("failed".to_owned())
    );
    assert_eq!(all_stock(&monolith.db).await, [STOCK; 5]);

    // Another crashed saga's order turns up while the service runs (another
    // instance died): the timer's next pass takes it.
    crash_at(&orders.db, &monolith.url, crashed_long_ago, CrashPoint::Reserved).await;
    let stats = wait_until_compensated(&orders.url, 2).await;
    assert!(stats["passes"].as_u64() >= Some(2), "{stats}");
    assert_eq!(stats["compensation_failures"], 0);
    assert_eq!(
        service_order(&orders.db, FIRST_ID + 1).await.map(|o| o.state),
        Some("failed".to_owned())
    );
    assert_eq!(all_stock(&monolith.db).await, [STOCK; 5]);
}

async fn a_compensation_that_fails_is_retried_after_the_lease(engine: Engine) {
    let Some((_database, db)) = orders_database(engine).await else {
        return;
    };
    let stub = stub_monolith(StubDelays::default()).await;
    let started = Utc::now();
    let id = crash_at(&db, &stub.url, started, CrashPoint::Paid).await;

    // The monolith cannot be reached during the first pass.
    let down = recovery(&db, &closed_port_url(), RecoveryConfig::default());
    let pass = down
        .run_once(started + Duration::from_secs(61))
        .await
        .expect("a recovery pass");
    assert_eq!(pass.failed, [id]);
    assert_eq!(
        service_order(&db, id).await.map(|o| o.state),
        Some("pending".to_owned())
    );
    assert_eq!(down.stats().compensation_failures, 1);

    // Once its claim's lease (60 s) has run out, a later pass finishes it.
    let up = recovery(&db, &stub.url, RecoveryConfig::default());
    let during_lease = up
        .run_once(started + Duration::from_secs(100))
        .await
        .expect("a recovery pass");
    assert_eq!(during_lease, Default::default());
    let after_lease = up
        .run_once(started + Duration::from_secs(122))
        .await
        .expect("a recovery pass");
    assert_eq!(after_lease.compensated, [id]);
}

async fn invalid_recovery_settings_refuse_to_start(engine: Engine) {
    let Some(database) = TestDatabase::fresh(engine).await else {
        return;
    };
    let settings = |pending_timeout, interval, claim_lease| RecoveryConfig {
        pending_timeout,
        interval,
        claim_lease,
    };
    let second = Duration::from_secs(1);
    for (recovery, expected) in [
        (
            settings(Duration::ZERO, second, 60 * second),
            "the saga recovery timeout must be above zero",
        ),
        (
            settings(60 * second, Duration::ZERO, 60 * second),
            "the saga recovery interval must be above zero",
        ),
        (
            settings(60 * second, second, 4 * second),
            "the saga recovery lease (4s) must be longer than two monolith calls (2s each)",
        ),
    ] {
        let config = config(
            database.url().clone(),
            &closed_port_url(),
            MONOLITH_TIMEOUT,
            DUAL_WRITE_OFF,
        );
        match Application::build_with_recovery(config, recovery).await {
            Err(StartError::Config(message)) => assert_eq!(message, expected),
            Err(other) => panic!("{recovery:?}: expected a configuration error, got {other}"),
            Ok(_) => panic!("{recovery:?}: the service started"),
        }
    }
}

test_harness::on_each_engine!(
    an_order_left_pending_at_any_step_is_compensated,
    a_young_or_claimed_order_is_left_alone,
    two_recoveries_racing_compensate_each_order_once,
    the_service_recovers_on_start_and_on_its_timer,
    a_compensation_that_fails_is_retried_after_the_lease,
    invalid_recovery_settings_refuse_to_start,
);
