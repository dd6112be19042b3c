//! `strangler reconcile run|repair orders` as the demo's walkthrough types
//! them: from a folder holding the demo's `.strangler-demo/` databases, with
//! no database flags, against an orders service whose dual writes were
//! dropped.

use legacy_monolith::seed::{seed_if_empty, SeedSize};
use test_harness::workspace_path;
use toolkit_db::{Database, DatabaseUrl};

use crate::{run, strangler, with_databases};

/// The demo's folder layout under `root`: a seeded monolith, the orders
/// service backfilled from it, an empty toolkit store. Then the service
/// places three orders: 1000000 (its dual write dropped, two lines),
/// 1000001 (dual-written) and 1000002 (a saga still pending).
async fn diverged_demo_folder(root: &std::path::Path) -> (DatabaseUrl, DatabaseUrl) {
    let data = root.join(".strangler-demo");
    std::fs::create_dir_all(&data).unwrap();
    let monolith = DatabaseUrl::sqlite_file(&data.join("monolith.db"));
    let orders = DatabaseUrl::sqlite_file(&data.join("orders.db"));
    let db = Database::connect(&monolith, &legacy_monolith::MIGRATIONS)
        .await
        .unwrap();
    let size = SeedSize {
        products: 5,
        customers: 2,
        orders: 4,
    };
    seed_if_empty(&db, size).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO orders (id, customer_id, status, total_cents, origin, created_at, updated_at) \
         VALUES (1000001, 2, 'placed', 300, 'orders-service', '2026-01-02T10:00:00Z', '2026-01-02T10:00:00Z'); \
         INSERT INTO order_lines VALUES (1000001, 1, 3, 1, 300);",
    )
    .execute(db.pool())
    .await
    .unwrap();
    db.close().await;
    Database::connect(&orders, &orders_service::MIGRATIONS)
        .await
        .unwrap()
        .close()
        .await;
    reconciler::RunStore::open(&DatabaseUrl::sqlite_file(&data.join("toolkit.db")))
        .await
        .unwrap();
    let (code, _, stderr) = run(&mut with_databases(
        &["backfill", "orders"],
        &workspace_path("demo/mapping.toml"),
        monolith.expose(),
        orders.expose(),
    ));
    assert_eq!(code, 0, "{stderr}");
    let db = Database::open(&orders).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO orders (id, customer_id, state, total_cents, created_at, updated_at) VALUES \
         (1000000, 1, 'placed', 700, '2026-01-02T09:00:00Z', '2026-01-02T09:00:00Z'), \
         (1000001, 2, 'placed', 300, '2026-01-02T10:00:00Z', '2026-01-02T10:00:00Z'), \
         (1000002, 2, 'pending', 100, '2026-01-02T11:00:00Z', '2026-01-02T11:00:00Z'); \
         INSERT INTO order_lines VALUES (1000000, 1, 1, 2, 200), (1000000, 2, 2, 1, 300), \
         (1000001, 1, 3, 1, 300), (1000002, 1, 4, 1, 100);",
    )
    .execute(db.pool())
    .await
    .unwrap();
    db.close().await;
    (monolith, orders)
}

#[tokio::test]
async fn repair_writes_the_dropped_dual_writes_into_the_monolith() {
    let dir = tempfile::tempdir().unwrap();
    let (monolith, _) = diverged_demo_folder(dir.path()).await;
    let strangler_in_folder = |args: &[&str]| {
        let mut command = strangler();
        command
            .current_dir(dir.path())
            .args(args)
            .arg("--mapping")
            .arg(workspace_path("demo/mapping.toml"))
            .env_remove("STRANGLER_LEGACY_DATABASE_URL")
            .env_remove("STRANGLER_SERVICE_DATABASE_URL")
            .env_remove("STRANGLER_STORE_URL");
        command
    };

    // The mapping's databases and the demo's store, found with no flags.
    let (code, stdout, stderr) = run(&mut strangler_in_folder(&["reconcile", "run", "orders"]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("DIVERGED"), "{stdout}");
    let extra: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("extra in service"))
        .collect();
    assert_eq!(
        extra,
        [
            "    extra in service:   1000000",
            "    extra in service:   (1000000, 1)",
            "    extra in service:   (1000000, 2)"
        ],
        "{stdout}"
    );

    let (code, stdout, stderr) = run(&mut strangler_in_folder(&["reconcile", "repair", "orders"]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("3 statements to the monolith database make `orders` match its source of truth"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "INSERT INTO \"orders\" (\"id\", \"created_at\", \"customer_id\", \"status\", \"total_cents\", \
             \"updated_at\", \"origin\") SELECT 1000000, '2026-01-02T09:00:00Z', 1, 'placed', 700, \
             '2026-01-02T09:00:00Z', 'orders-service' WHERE NOT EXISTS (SELECT 1 FROM \"orders\" WHERE \"id\" = 1000000);"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");

    let (code, stdout, stderr) = run(&mut strangler_in_folder(&[
        "reconcile",
        "repair",
        "orders",
        "--apply",
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("applied 3 statements") && stdout.contains("CLEAN"),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(&mut strangler_in_folder(&["reconcile", "run", "orders"]));
    assert_eq!(code, 0, "{stdout}{stderr}");

    // The repaired order is the service's in the monolith, lines and all.
    let db = Database::open(&monolith).await.unwrap();
    let origin: String = sqlx::query_scalar("SELECT origin FROM orders WHERE id = 1000000")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(origin, "orders-service");
    let lines: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM order_lines WHERE order_id = 1000000")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(lines, 2);
    db.close().await;
    // Every run went into the demo's store, where the facade's gate reads.
    let store = Database::open(&DatabaseUrl::sqlite_file(
        &dir.path().join(".strangler-demo/toolkit.db"),
    ))
    .await
    .unwrap();
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM reconciliation_runs WHERE capability = 'orders' ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(statuses, ["diverged", "diverged", "diverged", "clean", "clean"]);
    store.close().await;

    // After a clean full run, `--incremental` is incremental; the demo's
    // tables name no updated_at_column, so each is compared in full.
    let (code, stdout, stderr) = run(&mut strangler_in_folder(&[
        "reconcile",
        "run",
        "orders",
        "--incremental",
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("  incremental run: rows changed since "),
        "{stdout}"
    );

    // Two shards of one group, then their merged report.
    for shard in ["1/2", "2/2"] {
        let (code, stdout, stderr) = run(&mut strangler_in_folder(&[
            "reconcile",
            "run",
            "orders",
            "--shard",
            shard,
            "--group",
            "nightly-1",
        ]));
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(
            stdout.contains(&format!("shard {} of 2 in run group `nightly-1`", &shard[..1])),
            "{stdout}"
        );
    }
    let mut report = strangler();
    report
        .current_dir(dir.path())
        .args([
            "reconcile",
            "report",
            "orders",
            "--group",
            "nightly-1",
            "--store-url",
        ])
        .arg(dir.path().join(".strangler-demo/toolkit.db"));
    let (code, stdout, stderr) = run(&mut report);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("run group `nightly-1` of `orders`: 2 shards merged"),
        "{stdout}"
    );
    assert!(stdout.contains("CLEAN"), "{stdout}");
    // A shard without its group is refused before anything runs.
    let (code, _, stderr) = run(&mut strangler_in_folder(&[
        "reconcile",
        "run",
        "orders",
        "--shard",
        "1/2",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--group"), "{stderr}");
}
