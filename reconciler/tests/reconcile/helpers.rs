//! Shared set-up: fresh databases per engine, schema templates spelled per
//! engine, mappings from text, and a run of the reconciler.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use mapping::Mapping;
use reconciler::{reconcile, Options, ReconcileError, Report, Strategy, TableReport};
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

/// Both databases of a pairing, each holding what `template` makes (see
/// [`exec`]), or `None` when a server is absent.
pub async fn pair_holding(
    legacy: Engine,
    service: Engine,
    template: &str,
) -> Option<(TestDatabase, TestDatabase)> {
    let (legacy, service) = pair(legacy, service).await?;
    for db in [&legacy, &service] {
        exec(db, template).await;
    }
    Some((legacy, service))
}

/// Runs `test` for each of `pairings`, legacy first.
pub async fn each_pairing<F: Future<Output = ()>>(
    pairings: &[(Engine, Engine)],
    test: impl Fn(Engine, Engine) -> F,
) {
    for &(legacy, service) in pairings {
        test(legacy, service).await;
    }
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

/// The text of a mapping with one table for `capability`: `legacy` in the
/// monolith and `service` in the service, keyed on the legacy columns `key`
/// and comparing `columns`, each a legacy name and its service name. `more`
/// is added to the table as it is (`normalize = …`, a filter, …).
pub fn mapping_text(
    capability: &str,
    (legacy, service): (&str, &str),
    key: &[&str],
    columns: &[(&str, &str)],
    more: &str,
) -> String {
    // A TOML basic string: hostile names keep their quotes and backslashes.
    let quote = |name: &str| format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""));
    let key: Vec<String> = key.iter().map(|name| quote(name)).collect();
    let columns: Vec<String> = columns
        .iter()
        .map(|(legacy, service)| format!("{} = {}", quote(legacy), quote(service)))
        .collect();
    format!(
        "[[capabilities.{capability}.tables]]\nlegacy = {}\nservice = {}\nkey = [{}]\ncolumns = {{ {} }}\n{more}",
        quote(legacy),
        quote(service),
        key.join(", "),
        columns.join(", "),
    )
}

/// `names`, each called the same on both sides, for [`mapping_text`].
pub fn same<'a>(names: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    names.iter().map(|name| (*name, *name)).collect()
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

/// The mapping of `people`: the monolith's `customers` as the service's
/// `clients`, `id` and `name` renamed there; `more` added to the table.
pub fn clients_mapping(more: &str) -> String {
    mapping_text(
        "people",
        ("customers", "clients"),
        &["id"],
        &[
            ("id", "client_id"),
            ("name", "full_name"),
            ("email", "email"),
            ("score", "score"),
        ],
        more,
    )
}

/// The tables of [`clients_mapping`]: `customers` in `legacy` and `clients`
/// in `service`, holding `legacy_rows` and `service_rows` (SQL `VALUES`
/// lists: id, name, email, score).
pub async fn customers_and_clients(
    legacy: &TestDatabase,
    service: &TestDatabase,
    legacy_rows: &str,
    service_rows: &str,
) {
    for (db, table, names, rows) in [
        (legacy, "customers", ["id", "name"], legacy_rows),
        (service, "clients", ["client_id", "full_name"], service_rows),
    ] {
        let [id, name] = names;
        let sql = format!(
            r#"CREATE TABLE "{table}" ("{id}" {{INT}} PRIMARY KEY, "{name}" {{TEXT}} NOT NULL, "email" {{TEXT}}, "score" {{INT}});
INSERT INTO "{table}" VALUES {rows}"#
        );
        exec(db, &sql).await;
    }
}

/// The keys `table` reports missing in the service, extra there and
/// changed, each as JSON text.
pub fn findings(table: &TableReport) -> [Vec<String>; 3] {
    [
        keys(table.missing.iter().map(|m| m.key.clone())),
        keys(table.extra.iter().map(|m| m.key.clone())),
        keys(table.changed.iter().map(|m| m.key.clone())),
    ]
}

/// Asserts the keys `table` reports missing in the service, extra there and
/// changed; `context` says which case failed.
pub fn assert_findings(table: &TableReport, expected: [&[&str]; 3], context: &str) {
    assert_eq!(findings(table), expected, "missing, extra, changed: {context}");
}

/// Options that force `strategy`, with batches and bisection leaves of
/// `rows` rows.
pub fn batches_of(strategy: Strategy, rows: u16) -> Options {
    Options {
        strategy,
        batch_size: usize::from(rows),
        bisect_leaf_rows: u64::from(rows),
        ..Options::default()
    }
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

/// The error a run must have ended with; a run that reported instead fails
/// the test, showing what it reported.
pub fn expect_error(result: Result<Report, ReconcileError>, expected: &str, context: &str) -> ReconcileError {
    match result {
        Ok(report) => panic!(
            "{context}: expected {expected}, got {:?}\n{}",
            report.status,
            report.to_human()
        ),
        Err(error) => error,
    }
}
