//! Test support shared by every crate's integration tests, the toolkit's
//! and the sample's alike: it knows no application. What starts the sample
//! shop's apps lives with the sample, in `shop-test-support`.
//!
//! - [`TestDatabase`]: a fresh database per test — a new SQLite file, or a
//!   uniquely named PostgreSQL database on the server at
//!   `STRANGLER_TEST_POSTGRES_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/postgres`).
//!   Or a uniquely named MariaDB/MySQL database on the server at
//!   `STRANGLER_TEST_MARIADB_URL` (default `mysql://root@127.0.0.1:3306/mysql`).
//! - When its server is unreachable a PostgreSQL or MariaDB test prints why
//!   and skips, unless `CI` is set: then it fails, so CI can never pass by
//!   skipping.
//! - [`wait_until_healthy`]: readiness by polling `/health`, never sleeping a
//!   fixed time.
//! - [`snapshot`]: every row of some tables, to assert that a rejected request
//!   changed nothing.
//! - [`properties`]: the property tests' case count
//!   (`STRANGLER_PROPTEST_CASES`) and hostile TOML text.
//! - [`otlp`]: a real OTLP/HTTP trace receiver that decodes what it gets,
//!   for tests of exported spans (and, counting only, a benchmark's sink:
//!   `cargo run -p test-harness --example otlp_sink`).
//! - [`browser`] (feature `browser`): a real headless Chromium over
//!   WebDriver, for the control panel's tests.
//!
//! Panicking is how this crate reports a broken test environment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "browser")]
pub mod browser;
pub mod otlp;
pub mod properties;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::{Connection, MySqlConnection, PgConnection};
use tempfile::TempDir;
use toolkit_db::sql_value::decode_row;
pub use toolkit_db::{Database, DatabaseUrl, Engine, SqlValue};

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("STRANGLER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The MariaDB (or MySQL) server tests create their databases on.
pub fn mariadb_admin_url() -> String {
    std::env::var("STRANGLER_TEST_MARIADB_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".to_owned())
}

/// Whether missing servers must fail tests instead of skipping them.
pub fn servers_required() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A database that exists for one test: the SQLite folder is deleted and the
/// PostgreSQL or MariaDB database dropped when it goes out of scope.
pub struct TestDatabase {
    url: DatabaseUrl,
    // Kept so the SQLite file's folder lives as long as the test.
    _dir: Option<TempDir>,
    postgres_name: Option<String>,
    mariadb_name: Option<String>,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.mariadb_name.take() {
            drop_mariadb_database(name);
        }
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on async
        // work; a short-lived thread with its own runtime can. FORCE ends the
        // connections the test's servers still hold.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                let connect = PgConnection::connect(&postgres_admin_url());
                if let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), sqlx::query(&drop).execute(&mut conn))
                            .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

impl TestDatabase {
    /// A fresh database of `engine`, or `None` (with a printed reason) when
    /// its server is unreachable outside CI.
    pub async fn fresh(engine: Engine) -> Option<Self> {
        match engine {
            Engine::Sqlite => Some(Self::sqlite()),
            Engine::Postgres => Self::postgres().await,
            Engine::MySql => Self::mariadb().await,
        }
    }

    /// A new SQLite file in a temporary folder.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("creating a temporary folder");
        let url = DatabaseUrl::sqlite_file(&dir.path().join("test.db"));
        Self {
            url,
            _dir: Some(dir),
            postgres_name: None,
            mariadb_name: None,
        }
    }

    /// A uniquely named database on the test PostgreSQL server.
    pub async fn postgres() -> Option<Self> {
        let admin = postgres_admin_url();
        let connect = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin)).await;
        let mut conn = match connect {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => return unavailable("PostgreSQL", &admin, &error.to_string()),
            Err(_) => return unavailable("PostgreSQL", &admin, "no answer within 5 s"),
        };
        let name = format!("strangler_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("creating a test database (does the test role have CREATEDB?)");
        let _ = conn.close().await;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        let url = DatabaseUrl::parse(&format!("{base}/{name}")).expect("a valid PostgreSQL URL");
        Some(Self {
            url,
            _dir: None,
            postgres_name: Some(name),
            mariadb_name: None,
        })
    }

    /// A uniquely named database on the test MariaDB (or MySQL) server.
    pub async fn mariadb() -> Option<Self> {
        let admin = mariadb_admin_url();
        let connect = tokio::time::timeout(Duration::from_secs(5), MySqlConnection::connect(&admin)).await;
        let mut conn = match connect {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => return unavailable("MariaDB", &admin, &error.to_string()),
            Err(_) => return unavailable("MariaDB", &admin, "no answer within 5 s"),
        };
        let name = format!("strangler_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("creating a test database (may the test user create databases?)");
        let _ = conn.close().await;
        let (without_query, query) = admin
            .split_once('?')
            .map_or((admin.as_str(), None), |(a, q)| (a, Some(q)));
        let base = without_query
            .rsplit_once('/')
            .map_or(without_query, |(base, _)| base);
        let url = match query {
            Some(query) => format!("{base}/{name}?{query}"),
            None => format!("{base}/{name}"),
        };
        let url = DatabaseUrl::parse(&url).expect("a valid MariaDB URL");
        Some(Self {
            url,
            _dir: None,
            postgres_name: None,
            mariadb_name: Some(name),
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Which engine it runs on.
    pub fn engine(&self) -> Engine {
        self.url.engine()
    }
}

/// Drops a MariaDB test database from a short-lived thread with its own
/// runtime (drop cannot block on the test's runtime).
fn drop_mariadb_database(name: String) {
    let cleanup = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        runtime.block_on(async move {
            let connect = MySqlConnection::connect(&mariadb_admin_url());
            if let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
                let drop = format!("DROP DATABASE IF EXISTS {name}");
                let _ = tokio::time::timeout(Duration::from_secs(10), sqlx::query(&drop).execute(&mut conn))
                    .await;
                let _ = conn.close().await;
            }
        });
    });
    let _ = cleanup.join();
}

fn unavailable<T>(what: &str, url: &str, reason: &str) -> Option<T> {
    let url = toolkit_db::database::mask_password(url);
    if servers_required() {
        panic!("{what} at {url} is required (CI is set) but unreachable: {reason}");
    }
    // Written straight to the standard error stream rather than with
    // `eprintln!`, which the test runner captures and hides for passing tests:
    // a skip must be visible.
    let _ = writeln!(
        std::io::stderr().lock(),
        "skipping: {what} at {url} is unreachable ({reason}); set CI=true to make this a failure"
    );
    None
}

/// Polls `GET {base_url}/health` until it answers 200; panics after 20 s.
pub async fn wait_until_healthy(base_url: &str) {
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("{base_url}/health");
    loop {
        let last = match client.get(&url).send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => format!("status {}", response.status()),
            Err(error) => error.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{url} did not become healthy within 20 s: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP client whose every request times out.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building an HTTP client")
}

/// Every row of each table, in a deterministic order, for before/after checks.
pub async fn snapshot(db: &Database, tables: &[&str]) -> Vec<(String, Vec<Vec<SqlValue>>)> {
    let mut result = Vec::with_capacity(tables.len());
    for table in tables {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(db.pool())
            .await
            .unwrap_or_else(|e| panic!("reading table {table}: {e}"));
        let mut decoded: Vec<Vec<SqlValue>> = rows.iter().map(|row| decode_row(row).unwrap()).collect();
        decoded.sort_by_cached_key(|row| format!("{row:?}"));
        result.push(((*table).to_owned(), decoded));
    }
    result
}

/// A path under the workspace root, for tests that read shipped files.
pub fn workspace_path(relative: &str) -> PathBuf {
    // This crate lives in `tests/harness`, two folders below the root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// Generates, for each named `async fn case(engine: Engine)`, a module with
/// one `sqlite` and one `postgres` test, so every API case runs on both.
#[macro_export]
macro_rules! on_each_engine {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn sqlite() {
                    super::$case($crate::Engine::Sqlite).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$case($crate::Engine::Postgres).await
                }
            }
        )*
    };
}
