//! The `strangler` command as a user runs it: a real process, its exit
//! code, its output.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use legacy_monolith::seed::{seed_if_empty, SeedSize};
use test_harness::workspace_path;
use toolkit_db::{Database, DatabaseUrl};

mod demo_switch;
mod dual_write_repair;
mod open_files;
mod panel_live;
mod telemetry;
mod walkthrough;

fn strangler() -> Command {
    let mut command = Command::cargo_bin("strangler").unwrap();
    command.env_remove("RUST_LOG").env_remove("STRANGLER_MAPPING");
    command
}

/// `strangler <args> --mapping <mapping>`, with both databases given as flags.
fn with_databases(args: &[&str], mapping: &std::path::Path, legacy: &str, service: &str) -> Command {
    let mut command = strangler();
    command.args(args).arg("--mapping").arg(mapping).args([
        "--legacy-database-url",
        legacy,
        "--service-database-url",
        service,
    ]);
    command
}

/// `strangler demo` keeping its files in `data`, every server on a free
/// port.
fn demo_on_free_ports(data: &std::path::Path) -> Command {
    let mut command = strangler();
    command.args(["demo", "--data-dir"]).arg(data).args([
        "--monolith-listen",
        "127.0.0.1:0",
        "--catalog-listen",
        "127.0.0.1:0",
        "--orders-listen",
        "127.0.0.1:0",
        "--facade-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    command
}

/// Stops `child` as Ctrl-C does and waits, at most 20 s, for it to exit.
fn stop_with_ctrl_c(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop within 20 s of Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(command: &mut Command) -> (i32, String, String) {
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A seeded monolith file and an empty catalog service file.
async fn databases(dir: &std::path::Path) -> (DatabaseUrl, DatabaseUrl) {
    let monolith = DatabaseUrl::sqlite_file(&dir.join("monolith.db"));
    let db = Database::connect(&monolith, &legacy_monolith::MIGRATIONS)
        .await
        .unwrap();
    seed_if_empty(
        &db,
        SeedSize {
            products: 12,
            customers: 2,
            orders: 3,
        },
    )
    .await
    .unwrap();
    db.close().await;
    let catalog = DatabaseUrl::sqlite_file(&dir.join("catalog.db"));
    Database::connect(&catalog, &catalog_service::MIGRATIONS)
        .await
        .unwrap()
        .close()
        .await;
    (monolith, catalog)
}

#[tokio::test]
async fn backfill_copies_and_reports_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let (monolith, catalog) = databases(dir.path()).await;
    let (code, stdout, stderr) = run(&mut with_databases(
        &["backfill", "catalog", "--output", "json", "--batch-size", "5"],
        &workspace_path("demo/mapping.toml"),
        monolith.expose(),
        catalog.expose(),
    ));
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report[0]["rows_copied"], 12);
    assert_eq!(report[0]["batches"], 3);
    assert_eq!(report[0]["complete"], true);
}

#[tokio::test]
async fn backfill_refuses_bad_input_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (monolith, catalog) = databases(dir.path()).await;
    let mapping = dir.path().join("mapping.toml");
    std::fs::write(
        &mapping,
        "[[capabilities.catalog.tables]]\nlegacy = \"products\"\nservice = \"products\"\nkey = [\"sku\"]\ncolumns = { id = \"id\" }\n",
    )
    .unwrap();
    let base = |mapping: &std::path::Path, capability: &str, legacy: &str| {
        with_databases(&["backfill", capability], mapping, legacy, catalog.expose())
    };
    // A key outside the mapped columns: file, line and what to do.
    let (code, _, stderr) = run(&mut base(&mapping, "catalog", monolith.expose()));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("mapping.toml:4:") && stderr.contains("add it there"),
        "{stderr}"
    );
    // An unknown capability lists the known ones.
    let shipped = workspace_path("demo/mapping.toml");
    let (code, _, stderr) = run(&mut base(&shipped, "billing", monolith.expose()));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("billing") && stderr.contains("catalog, orders"),
        "{stderr}"
    );
    // A mistyped database path is not silently created.
    let missing = dir.path().join("monolth.db");
    let (code, _, stderr) = run(&mut base(&shipped, "catalog", missing.to_str().unwrap()));
    assert_eq!(code, 1);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!missing.exists());
    // A password in a URL never reaches the output.
    let (code, _, stderr) = run(&mut base(
        &shipped,
        "catalog",
        "postgres://app:hunter2@127.0.0.1:1/shop",
    ));
    assert_eq!(code, 1);
    assert!(!stderr.contains("hunter2") && stderr.contains("***"), "{stderr}");
    // Nothing was copied by any of these.
    let db = Database::connect(&catalog, &catalog_service::MIGRATIONS)
        .await
        .unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM products")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn demo_starts_every_server_and_stops_them_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut child = demo_on_free_ports(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // The banner lists each server as `<name>   http://addr`.
    let mut urls = std::collections::HashMap::new();
    let mut banner = String::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        let words: Vec<&str> = line.split_whitespace().collect();
        for name in ["facade", "monolith", "catalog", "orders"] {
            if words.first() == Some(&name) {
                if let Some(url) = words.iter().find(|w| w.starts_with("http://")) {
                    urls.insert(name, (*url).to_owned());
                }
            }
        }
        if urls.len() == 4 {
            break;
        }
    }
    assert_eq!(urls.len(), 4, "banner: {banner}");
    assert!(banner.contains("3000 orders"), "{banner}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for name in ["monolith", "catalog", "orders"] {
            test_harness::wait_until_healthy(&urls[name]).await;
        }
        // The catalog service was backfilled from the seeded monolith, and
        // the facade serves the shop with every capability on legacy.
        for name in ["catalog", "facade"] {
            let response = reqwest::get(format!("{}/products/1", urls[name])).await.unwrap();
            assert!(response.headers().contains_key("x-request-id"));
            let product: serde_json::Value = response.json().await.unwrap();
            assert_eq!(product["sku"], "SKU-00001", "through the {name}");
        }
    });
    let urls: Vec<String> = urls.into_values().collect();
    let status = stop_with_ctrl_c(&mut child);
    assert!(status.success(), "{status}");
    // Every server is gone with the process: their ports refuse connections.
    for url in &urls {
        let addr = url.trim_start_matches("http://");
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still accepts connections"
        );
    }
    assert!(data.join("monolith.db").exists());
}

#[test]
fn demo_reset_refuses_a_folder_that_is_not_its_own() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let (code, _, stderr) = run(strangler()
        .args(["demo", "--reset", "--data-dir"])
        .arg(dir.path()));
    assert_eq!(code, 1);
    assert!(stderr.contains("not a strangler demo folder"), "{stderr}");
    assert!(dir.path().join("precious.txt").exists());
}

#[tokio::test]
async fn reconcile_exits_0_when_clean_1_on_divergence_and_2_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let (monolith, catalog) = databases(dir.path()).await;
    let shipped = workspace_path("demo/mapping.toml");
    let (code, _, stderr) = run(&mut with_databases(
        &["backfill", "catalog"],
        &shipped,
        monolith.expose(),
        catalog.expose(),
    ));
    assert_eq!(code, 0, "{stderr}");
    let store = DatabaseUrl::sqlite_file(&dir.path().join("toolkit.db"));
    // Database URLs from the environment, as in a deployment.
    let reconcile = |capability: &str, output: &str| {
        let mut command = strangler();
        command
            .args(["reconcile", "run", capability, "--output", output, "--mapping"])
            .arg(&shipped)
            .env("STRANGLER_LEGACY_DATABASE_URL", monolith.expose())
            .env("STRANGLER_SERVICE_DATABASE_URL", catalog.expose())
            .env("STRANGLER_STORE_URL", store.expose());
        command
    };
    let (code, stdout, stderr) = run(&mut reconcile("catalog", "human"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("CLEAN") && stdout.contains("12 keys"), "{stdout}");

    let db = Database::open(&catalog).await.unwrap();
    sqlx::query("UPDATE products SET title = 'Renamed' WHERE id = 2")
        .execute(db.pool())
        .await
        .unwrap();
    db.close().await;
    let (code, stdout, stderr) = run(&mut reconcile("catalog", "json"));
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "diverged");
    let changed = &report["tables"][0]["changed"][0];
    assert_eq!(changed["key"][0], 2);
    assert_eq!(changed["columns"][0]["service_column"], "title");
    assert_eq!(changed["columns"][0]["service"], "Renamed");
    // The same divergence for people: Markdown and a self-contained HTML
    // page with the trend so far (a run without a store is not recorded).
    let (code, stdout, _) = run(reconcile("catalog", "markdown").env_remove("STRANGLER_STORE_URL"));
    assert_eq!(code, 1);
    assert!(
        stdout.contains("| `2` | `name → title` |") && stdout.contains("`Renamed`"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&mut reconcile("catalog", "html"));
    assert_eq!(code, 1);
    assert!(stdout.starts_with("<!doctype html>") && stdout.trim_end().ends_with("</html>"));
    assert!(
        stdout.contains("Changed (1)") && stdout.contains("<ins>") && stdout.contains("<svg"),
        "{stdout}"
    );

    // Errors: an unknown capability, an unreachable database (its password
    // never shown). Each exits 2 and the failed run is recorded.
    let (code, _, stderr) = run(&mut reconcile("billing", "human"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("billing"), "{stderr}");
    let (code, _, stderr) = run(reconcile("catalog", "human").env(
        "STRANGLER_SERVICE_DATABASE_URL",
        "postgres://app:hunter2@127.0.0.1:1/shop",
    ));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot connect to the service database"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2") && stderr.contains("***"), "{stderr}");

    // `reconcile report` shows the latest run (the failed one: exit 2) and
    // the trend of all four.
    let (code, stdout, stderr) =
        run(strangler().args(["reconcile", "report", "catalog", "--store-url", store.expose()]));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.contains("latest run of `catalog`: #4 failed"), "{stdout}");
    assert!(stdout.contains("cannot connect"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    let trend: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("trend"))
        .skip(2)
        .collect();
    assert_eq!(trend.len(), 4, "{stdout}");
    assert!(
        trend[0].contains("clean") && trend[1].contains("diverged") && trend[3].contains("failed"),
        "{stdout}"
    );
    let (code, stdout, _) = run(strangler().args([
        "reconcile",
        "report",
        "catalog",
        "--last",
        "2",
        "--output",
        "json",
        "--store-url",
        store.expose(),
    ]));
    assert_eq!(code, 2);
    let body: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(body["trend"].as_array().unwrap().len(), 2);
    assert_eq!(body["trend"][0]["status"], "diverged");
    assert_eq!(body["trend"][0]["changed"], 1);
    let (code, _, stderr) =
        run(strangler().args(["reconcile", "report", "billing", "--store-url", store.expose()]));
    assert_eq!(code, 2);
    assert!(stderr.contains("no recorded runs of `billing`"), "{stderr}");

    let store = Database::open(&store).await.unwrap();
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM reconciliation_runs ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(statuses, ["clean", "diverged", "diverged", "failed"]);
}

#[tokio::test]
async fn repair_shows_its_plan_and_applies_it_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (monolith, catalog) = databases(dir.path()).await;
    let repair = |apply: bool| {
        let mut command = with_databases(
            &["reconcile", "repair", "catalog"],
            &workspace_path("demo/mapping.toml"),
            monolith.expose(),
            catalog.expose(),
        );
        if apply {
            command.arg("--apply");
        }
        command
    };
    // The service is empty: every product is missing there.
    let (code, stdout, stderr) = run(&mut repair(false));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("12 statements to the service database"),
        "{stdout}"
    );
    assert!(
        stdout.contains("INSERT INTO \"products\"") && stdout.contains("'SKU-00001'"),
        "{stdout}"
    );
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    let db = Database::open(&catalog).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM products")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0, "a dry run writes nothing");
    db.close().await;

    let (code, stdout, stderr) = run(&mut repair(true));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("applied 12 statements") && stdout.contains("CLEAN"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&mut repair(false));
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing to repair"), "{stdout}");
}

#[test]
fn facade_and_routes_refuse_bad_input_with_a_one_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    // A configuration naming an unknown backend: file, line, reason; nothing starts.
    let config = dir.path().join("strangler.toml");
    std::fs::write(
        &config,
        "[backends.legacy]\nurls = [\"http://127.0.0.1:1\"]\n\n[capabilities.catalog]\nlegacy = \"legacy\"\nservice = \"catalogue\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run(strangler()
        .args(["facade", "--config"])
        .arg(&config)
        .env("STRANGLER_ADMIN_TOKEN", "t")
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("strangler.toml:6: unknown backend `catalogue`"),
        "{stderr}"
    );
    // An unknown stage is refused by the CLI itself (no facade is asked, so
    // nothing changes), its first line naming the value and the choices.
    let (code, stdout, stderr) = run(strangler()
        .args([
            "routes",
            "flip",
            "catalog",
            "--to",
            "servce",
            "--admin-url",
            "http://127.0.0.1:1",
        ])
        .env("STRANGLER_ADMIN_TOKEN", "t"));
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr
            .lines()
            .next()
            .is_some_and(|line| line.contains("invalid value 'servce' for '--to <TO>'")),
        "{stderr}"
    );
    assert!(
        stderr.contains("[possible values: legacy, shadow, canary, service, retired]"),
        "{stderr}"
    );
    // No facade listening: says where it looked and what to start.
    let (code, _, stderr) = run(strangler()
        .args(["routes", "list", "--admin-url", "http://127.0.0.1:1"])
        .env("STRANGLER_ADMIN_TOKEN", "t"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot reach the facade's admin API at http://127.0.0.1:1"),
        "{stderr}"
    );
    // No token anywhere (run outside the repository, so the demo's token file is not found).
    let (code, _, stderr) = run(strangler()
        .current_dir(dir.path())
        .env_remove("STRANGLER_ADMIN_TOKEN")
        .args(["routes", "list"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("no admin token"), "{stderr}");
}
