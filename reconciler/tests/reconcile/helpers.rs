//! Shared set-up: fresh databases per engine, schema templates spelled per
//! engine, mappings from text, and a run of the reconciler.

use std::path::Path;
use std::time::Duration;

use mapping::Mapping;
use reconciler::{reconcile, Options, ReconcileError, Report};
use test_harness::{Database, Engine, TestDatabase};

/// A fresh database of `engine`, or `None` when its server is absent
/// outside CI (the harness printed why).
pub async fn fresh(engine: Engine) -> Option<TestDatabase> {
    TestDatabase::fresh(engine).await
}

/// Both databases of a pairing, or `None` when a server is absent.
pub async fn pair(legacy: Engine, service: Engine) -> Option<(TestDatabase, TestDatabase)> {
    Some((fresh(legacy).await?, fresh(service).await?))
}

/// `template` spelled for `engine`: `{KEY}` a text key type, `{TEXT}`,
/// `{INT}`, `{DEC}` a decimal, `{TS}` a timestamp type, `{Z}` a UTC offset
/// for PostgreSQL timestamp literals; double-quoted names
/// become backtick-quoted on MySQL.
pub fn spell(engine: Engine, template: &str) -> String {
    let (key, dec, ts) = match engine {
        Engine::Postgres => ("TEXT", "NUMERIC(12,2)", "TIMESTAMPTZ"),
        Engine::MySql => ("VARCHAR(100)", "DECIMAL(12,2)", "DATETIME(6)"),
        Engine::Sqlite => ("TEXT", "NUMERIC", "TEXT"),
    };
    let sql = template
        .replace("{KEY}", key)
        .replace("{TEXT}", "TEXT")
        .replace("{INT}", "BIGINT")
        .replace("{DEC}", dec)
        .replace("{TS}", ts)
        .replace("{Z}", if engine == Engine::Postgres { "+00" } else { "" });
    if engine == Engine::MySql {
        sql.replace('"', "`")
    } else {
        sql
    }
}

/// Runs each `;`-terminated statement of `template` (spelled for the
/// database's engine) against `db`.
pub async fn exec(db: &TestDatabase, template: &str) {
    let sql = spell(db.engine(), template);
    let database = Database::open(db.url()).await.unwrap();
    for statement in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        tokio::time::timeout(
            Duration::from_secs(60),
            sqlx::raw_sql(statement).execute(database.pool()),
        )
        .await
        .expect("statement timed out")
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    database.close().await;
}

/// A mapping parsed from text.
pub fn mapping(text: &str) -> Mapping {
    Mapping::parse(Path::new("test-mapping.toml"), text).unwrap()
}

/// Runs the reconciler for `capability` of `mapping_text`.
pub async fn run(
    mapping_text: &str,
    capability: &str,
    legacy: &TestDatabase,
    service: &TestDatabase,
    options: &Options,
) -> Result<Report, ReconcileError> {
    let mapping = mapping(mapping_text);
    reconcile(
        mapping.capability(capability).unwrap(),
        legacy.url(),
        service.url(),
        options,
    )
    .await
}

/// The keys of a report's list, as JSON text, for compact assertions.
pub fn keys(entries: impl IntoIterator<Item = Vec<serde_json::Value>>) -> Vec<String> {
    entries
        .into_iter()
        .map(|k| serde_json::Value::Array(k).to_string())
        .collect()
}

/// Every pairing of engines, legacy first.
pub const PAIRINGS: [(Engine, Engine); 9] = [
    (Engine::Postgres, Engine::Postgres),
    (Engine::Postgres, Engine::MySql),
    (Engine::Postgres, Engine::Sqlite),
    (Engine::MySql, Engine::Postgres),
    (Engine::MySql, Engine::MySql),
    (Engine::MySql, Engine::Sqlite),
    (Engine::Sqlite, Engine::Postgres),
    (Engine::Sqlite, Engine::MySql),
    (Engine::Sqlite, Engine::Sqlite),
];
