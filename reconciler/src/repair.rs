//! Repair: the statements that make the follower side match the source of
//! truth, planned from a fresh report, shown by default, applied only when
//! asked.
//!
//! For each diverged table: a key on the source of truth only is INSERTed
//! into the follower, a changed row is UPDATEd there (every compared
//! column, from the source's current row), and a key on the follower only is
//! DELETEd. Rows are read fresh from the source of truth, not taken from the
//! report, so a repair never writes a value the comparison normalized.
//!
//! Only tables whose compared columns are integers or text, with no
//! normalization and no value map, are repaired automatically: anything
//! else needs a person to decide the follower's value, and the planner says
//! which table and why. Deletions run children first (reverse table order),
//! inserts and updates parents first.
//!
//! Two mapping fields let a repair write what plain copies cannot (see
//! `mapping::RepairSettings`): `follower_defaults` fills follower columns
//! the mapping does not map on every inserted row (the monolith's `origin`
//! marker), and `repair_filter` limits updates and deletes to the follower
//! rows a repair may change. A row outside it is listed in
//! [`RepairPlan::skipped`] instead, and the filter is part of each UPDATE and
//! DELETE too, so a row that changed hands since the plan is still left
//! alone.

use std::fmt::Write as _;
use std::time::Duration;

use tracing::Instrument as _;

use mapping::Side;
use mapping::{CapabilityMapping, DefaultValue, Identifier, TableMapping};
use serde_json::Value;
use toolkit_db::sql_value::{bind_value, SqlValue};
use toolkit_db::{Database, DatabaseUrl};

use crate::plan::{plan_table, SidePlan, TablePlan};
use crate::report::{Report, TableReport};
use crate::source::Source;
use crate::sql::{ColumnClass, Dialect};
use crate::ReconcileError;

/// What a statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Adds a row the follower lacks.
    Insert,
    /// Sets a row's compared columns to the source's values.
    Update,
    /// Removes a row only the follower has.
    Delete,
}

/// One planned statement against the follower.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Statement {
    /// The follower's table.
    pub table: String,
    /// Insert, update or delete.
    pub action: Action,
    /// The SQL, with literal values, for people to read.
    pub display: String,
    #[serde(skip)]
    sql: String,
    #[serde(skip)]
    binds: Vec<SqlValue>,
}

/// A divergence the plan leaves alone, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    /// The follower's table.
    pub table: String,
    /// What the repair would have done.
    pub action: Action,
    /// The row's key, in key order.
    pub key: Vec<Value>,
    /// Why it is left alone.
    pub reason: String,
}

/// Every statement of a repair, in the order they must run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepairPlan {
    /// The capability.
    pub capability: String,
    /// The side the statements write to (`monolith` or `service` in JSON).
    pub follower: Side,
    /// The statements.
    pub statements: Vec<Statement>,
    /// Divergences no statement repairs (outside the table's `repair_filter`).
    pub skipped: Vec<Skipped>,
    /// The statement timeout the plan was made under; applying it bounds
    /// every statement by the same.
    #[serde(skip)]
    timeout: Duration,
}

fn json_to_sql(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| SqlValue::Text(n.to_string()), SqlValue::Int),
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

fn literal(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => "NULL".to_owned(),
        SqlValue::Int(v) => v.to_string(),
        SqlValue::Float(v) => v.to_string(),
        SqlValue::Text(v) => format!("'{}'", v.replace('\'', "''")),
        SqlValue::Bytes(v) => format!("<{} bytes>", v.len()),
    }
}

/// Renders `sql`'s placeholders (in order) as the literal values.
fn display(sql_parts: &[String], binds: &[SqlValue]) -> String {
    let mut text = String::new();
    for (i, part) in sql_parts.iter().enumerate() {
        text.push_str(part);
        if let Some(value) = binds.get(i) {
            text.push_str(&literal(value));
        }
    }
    text
}

/// Builds SQL from pieces separated by placeholders: returns the SQL for
/// the follower's dialect and the text with literals.
fn statement(follower: &SidePlan, action: Action, parts: Vec<String>, binds: Vec<SqlValue>) -> Statement {
    let mut sql = String::new();
    for (i, part) in parts.iter().enumerate() {
        sql.push_str(part);
        if i < binds.len() {
            sql.push_str(&follower.dialect.placeholder(i + 1));
        }
    }
    Statement {
        table: follower.table.to_string(),
        action,
        display: display(&parts, &binds),
        sql,
        binds,
    }
}

/// The pieces `lead c1 = `, `separator c2 = `, … of a statement, one per
/// column of `columns`, each followed by its bound value.
fn equalities(dialect: Dialect, lead: &str, separator: &str, columns: &[&Identifier]) -> Vec<String> {
    columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let before = if i == 0 { lead } else { separator };
            format!("{before}{} = ", dialect.quote(column))
        })
        .collect()
}

/// Plans the repair of every diverged table in `report`.
#[tracing::instrument(skip_all, fields(capability = %capability.name))]
pub async fn plan_repair(
    capability: &CapabilityMapping,
    report: &Report,
    legacy_url: &DatabaseUrl,
    service_url: &DatabaseUrl,
    timeout: Duration,
) -> Result<RepairPlan, ReconcileError> {
    let mut legacy = Source::connect(Side::Legacy, legacy_url, timeout).await?;
    let mut service = Source::connect(Side::Service, service_url, timeout).await?;
    let truth = report.source_of_truth.side();
    let mut writes = Vec::new();
    let mut deletes = Vec::new();
    let mut skipped = Vec::new();
    for table in &capability.tables {
        let Some(result) = report
            .tables
            .iter()
            .find(|t| t.legacy_table == table.legacy_table.as_str())
        else {
            continue;
        };
        if result.missing.is_empty() && result.extra.is_empty() && result.changed.is_empty() {
            continue;
        }
        let span = tracing::info_span!(
            "repair_table",
            capability = %capability.name,
            table = %table.legacy_table,
            follower = %report.source_of_truth.follower(),
            statements = tracing::field::Empty,
            skipped = tracing::field::Empty,
        );
        let repair = plan_table_repair(table, result, truth, &mut legacy, &mut service)
            .instrument(span.clone())
            .await?;
        span.record("statements", repair.writes.len() + repair.deletes.len());
        span.record("skipped", repair.skipped.len());
        writes.extend(repair.writes);
        deletes.push(repair.deletes);
        skipped.extend(repair.skipped);
    }
    legacy.close().await;
    service.close().await;
    // Children's rows go before their parents'.
    let mut statements: Vec<Statement> = deletes.into_iter().rev().flatten().collect();
    statements.extend(writes);
    Ok(RepairPlan {
        capability: capability.name.clone(),
        follower: report.source_of_truth.follower(),
        statements,
        skipped,
        timeout,
    })
}

/// One table's share of a repair plan.
struct TableRepair {
    /// Inserts and updates, in key order.
    writes: Vec<Statement>,
    /// Deletes, in key order.
    deletes: Vec<Statement>,
    /// Divergences outside the table's `repair_filter`.
    skipped: Vec<Skipped>,
}

/// Plans the statements that repair one diverged table, `truth` being the
/// source of truth's side.
async fn plan_table_repair(
    table: &TableMapping,
    result: &TableReport,
    truth: Side,
    legacy: &mut Source,
    service: &mut Source,
) -> Result<TableRepair, ReconcileError> {
    let plan = plan_table(table, legacy, service).await?;
    check_repairable(&plan)?;
    let (truth_source, follower, truth_plan, follower_plan) = match truth {
        Side::Legacy => (legacy, service, &plan.legacy, &plan.service),
        Side::Service => (service, legacy, &plan.service, &plan.legacy),
    };
    check_defaults(table, follower, follower_plan).await?;
    let filter = table.repair.filter.as_deref();
    // The text after a WHERE clause's last key value: the filter, if any.
    let guard = filter.map_or_else(String::new, |f| format!(" AND ({f})"));
    let (to_copy, to_delete) = keys_to_fix(result, truth);
    let columns: Vec<&Identifier> = follower_plan.checksum_columns.iter().collect();
    let key_len = plan.key_len();
    let table_name = follower_plan.dialect.quote(&follower_plan.table);
    let mut repair = TableRepair {
        writes: Vec::new(),
        deletes: Vec::new(),
        skipped: Vec::new(),
    };
    let dialect = follower_plan.dialect;
    for (key, action) in to_copy {
        // Only an update changes a follower row; an insert adds one.
        let checked = if action == Action::Update { filter } else { None };
        if let Some(skipped) = outside_filter(follower, follower_plan, key_len, &key, action, checked).await?
        {
            repair.skipped.push(skipped);
            continue;
        }
        let row = fetch_row(truth_source, truth_plan, key_len, &key).await?;
        let Some(row) = row else { continue };
        let mut values: Vec<SqlValue> = row.into_iter().take(columns.len()).collect();
        match action {
            Action::Insert => {
                let defaults = &table.repair.follower_defaults;
                let names: Vec<String> = columns
                    .iter()
                    .copied()
                    .chain(defaults.iter().map(|(column, _)| column))
                    .map(|c| dialect.quote(c))
                    .collect();
                values.extend(defaults.iter().map(|(_, value)| match value {
                    DefaultValue::Text(text) => SqlValue::Text(text.clone()),
                    DefaultValue::Integer(number) => SqlValue::Int(*number),
                }));
                let mut parts = vec![format!(
                    "INSERT INTO {table_name} ({}) VALUES (",
                    names.join(", ")
                )];
                parts.extend((1..values.len()).map(|_| ", ".to_owned()));
                parts.push(")".to_owned());
                repair
                    .writes
                    .push(statement(follower_plan, Action::Insert, parts, values));
            }
            _ => {
                // Every compared column set, the row found by its key.
                let (key_columns, compared) = columns.split_at(key_len);
                let mut parts = equalities(dialect, &format!("UPDATE {table_name} SET "), ", ", compared);
                parts.extend(equalities(dialect, " WHERE ", " AND ", key_columns));
                parts.push(guard.clone());
                let (key_values, compared_values) = values.split_at(key_len);
                let binds = compared_values.iter().chain(key_values).cloned().collect();
                repair
                    .writes
                    .push(statement(follower_plan, Action::Update, parts, binds));
            }
        }
    }
    for key in to_delete {
        if let Some(skipped) =
            outside_filter(follower, follower_plan, key_len, &key, Action::Delete, filter).await?
        {
            repair.skipped.push(skipped);
            continue;
        }
        let mut parts = equalities(
            dialect,
            &format!("DELETE FROM {table_name} WHERE "),
            " AND ",
            &columns[..key_len],
        );
        parts.push(guard.clone());
        let binds: Vec<SqlValue> = key.iter().map(json_to_sql).collect();
        repair
            .deletes
            .push(statement(follower_plan, Action::Delete, parts, binds));
    }
    Ok(repair)
}

/// A key's values, in key order.
type Key = Vec<Value>;

/// Keys to copy from the source of truth (with the action), and keys to
/// delete from the follower.
fn keys_to_fix(result: &TableReport, truth: Side) -> (Vec<(Key, Action)>, Vec<Key>) {
    let (only_truth, only_follower) = match truth {
        Side::Legacy => (&result.missing, &result.extra),
        Side::Service => (&result.extra, &result.missing),
    };
    let mut copy: Vec<(Key, Action)> = only_truth
        .iter()
        .map(|k| (k.key.clone(), Action::Insert))
        .collect();
    copy.extend(result.changed.iter().map(|row| (row.key.clone(), Action::Update)));
    (copy, only_follower.iter().map(|k| k.key.clone()).collect())
}

fn check_repairable(plan: &TablePlan) -> Result<(), ReconcileError> {
    let table = plan.legacy.table.to_string();
    if let Some(column) = plan
        .compared
        .iter()
        .find(|c| !c.steps.is_empty() || c.values.is_some())
    {
        return Err(ReconcileError::NotRepairable {
            table,
            reason: format!(
                "column `{}` is normalized or value-mapped, so the follower's value cannot be derived",
                column.legacy
            ),
        });
    }
    for side in [&plan.legacy, &plan.service] {
        let compared = side.checksum_columns.len();
        if let Some((index, class)) = side
            .classes
            .iter()
            .take(compared)
            .enumerate()
            .find(|(_, c)| !matches!(c, ColumnClass::Integer | ColumnClass::Text))
        {
            return Err(ReconcileError::NotRepairable {
                table,
                reason: format!(
                    "column `{}` holds {class:?} values; automatic repair writes only integers and text",
                    side.checksum_columns[index]
                ),
            });
        }
    }
    Ok(())
}

/// Checks that every `follower_defaults` column exists in the follower's
/// table, so that a typo is named before anything is written.
async fn check_defaults(
    table: &TableMapping,
    follower: &mut Source,
    plan: &SidePlan,
) -> Result<(), ReconcileError> {
    if table.repair.follower_defaults.is_empty() {
        return Ok(());
    }
    let existing = follower.columns(&plan.table).await?;
    for (column, _) in &table.repair.follower_defaults {
        if !existing.iter().any(|(name, _)| name == column.as_str()) {
            return Err(ReconcileError::NotRepairable {
                table: table.legacy_table.to_string(),
                reason: format!(
                    "follower_defaults names column `{column}`, which table `{}` in the {} database does not have",
                    plan.table,
                    plan.side
                ),
            });
        }
    }
    Ok(())
}

/// Whether the follower's row with `key` satisfies the table's
/// `repair_filter` (a row that is gone does not).
async fn within_filter(
    follower: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    key: &[Value],
    filter: &str,
) -> Result<bool, ReconcileError> {
    // Unqualified names: the filter is written against the bare table.
    let mut sql = format!("SELECT 1 FROM {} WHERE ", plan.dialect.quote(&plan.table));
    for (i, column) in plan.checksum_columns.iter().take(key_len).enumerate() {
        let _ = write!(
            sql,
            "{} = {} AND ",
            plan.dialect.quote(column),
            plan.dialect.placeholder(i + 1)
        );
    }
    let _ = write!(sql, "({filter})");
    let binds: Vec<SqlValue> = key.iter().map(json_to_sql).collect();
    let bind_refs: Vec<&SqlValue> = binds.iter().collect();
    let rows = follower
        .fetch(
            &sql,
            &bind_refs,
            &[ColumnClass::Integer],
            "checking a row against repair_filter",
        )
        .await?;
    Ok(!rows.is_empty())
}

/// Why `action` leaves the follower's row with `key` alone, when the
/// table's `repair_filter` (`filter`, if it is checked) does not hold for it.
async fn outside_filter(
    follower: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    key: &Key,
    action: Action,
    filter: Option<&str>,
) -> Result<Option<Skipped>, ReconcileError> {
    let Some(filter) = filter else {
        return Ok(None);
    };
    if within_filter(follower, plan, key_len, key, filter).await? {
        return Ok(None);
    }
    Ok(Some(Skipped {
        table: plan.table.to_string(),
        action,
        key: key.clone(),
        reason: format!("the {} row is outside repair_filter `{filter}`", plan.side),
    }))
}

/// The source of truth's current row for `key`, in select-list order.
async fn fetch_row(
    source: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    key: &[Value],
) -> Result<Option<Vec<SqlValue>>, ReconcileError> {
    let mut sql = format!(
        "SELECT {} FROM {} t WHERE ",
        plan.select_list,
        plan.dialect.quote(&plan.table)
    );
    for (i, column) in plan.checksum_columns.iter().take(key_len).enumerate() {
        if i > 0 {
            sql.push_str(" AND ");
        }
        let _ = write!(
            sql,
            "{} = {}",
            plan.dialect.column(column),
            plan.dialect.placeholder(i + 1)
        );
    }
    let binds: Vec<SqlValue> = key.iter().map(json_to_sql).collect();
    let bind_refs: Vec<&SqlValue> = binds.iter().collect();
    let rows = source
        .fetch(&sql, &bind_refs, &plan.classes, "reading a row to repair")
        .await?;
    Ok(rows.into_iter().next())
}

/// Applies `plan` to the follower's database in transactions of `batch`
/// statements. Returns how many statements ran.
///
/// Every step (connecting, each statement, each commit) is bounded by the
/// statement timeout the plan was made under, on the server too where the
/// engine has a setting for it (PostgreSQL `statement_timeout`, InnoDB's
/// lock wait, SQLite's busy timeout), so that a row locked by someone else
/// fails the repair instead of hanging it. A transaction that fails or
/// times out is rolled back (a connection abandoned mid-statement is
/// closed, which rolls it back too); the batches committed before it stay
/// applied, and the error says how many statements that is.
pub async fn apply_repair(
    plan: &RepairPlan,
    follower_url: &DatabaseUrl,
    batch: usize,
) -> Result<usize, ReconcileError> {
    let db = Database::open(follower_url)
        .await
        .map_err(|e| ReconcileError::Unsupported(e.to_string()))?;
    let result = apply_batches(&db, plan, batch.max(1)).await;
    if tokio::time::timeout(CLOSE_TIMEOUT, db.close()).await.is_err() {
        tracing::warn!(follower = %plan.follower, "the follower's connections did not close in time");
    }
    result
}

/// How long closing the follower's connections may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where applying a batch stopped.
enum BatchFailure {
    /// The database refused a statement or the commit.
    Failed(sqlx::Error),
    /// A step outlived the timeout: `step` says which. `abandoned` when
    /// the client gave up mid-call, leaving the connection unusable.
    TimedOut { step: Step, abandoned: bool },
}

/// A step of a batch's transaction.
#[derive(Debug, Clone, Copy)]
enum Step {
    Begin,
    /// The statement at this index of the batch.
    Statement(usize),
    Commit,
}

async fn apply_batches(db: &Database, plan: &RepairPlan, batch: usize) -> Result<usize, ReconcileError> {
    let timeout = plan.timeout;
    let timed_out = |doing: String, outcome: String| ReconcileError::ApplyTimeout {
        side: plan.follower,
        doing,
        seconds: timeout.as_secs_f64(),
        outcome,
    };
    let mut conn = match tokio::time::timeout(timeout, db.pool().acquire()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(source)) => return Err(ReconcileError::Apply { applied: 0, source }),
        Err(_) => {
            return Err(timed_out(
                "connecting".to_owned(),
                "nothing was applied".to_owned(),
            ))
        }
    };
    bound_on_the_server(&mut conn, timeout, plan.follower).await;
    let mut applied = 0;
    for chunk in plan.statements.chunks(batch) {
        match apply_batch(&mut conn, chunk, timeout).await {
            Ok(()) => applied += chunk.len(),
            Err(BatchFailure::Failed(source)) => return Err(ReconcileError::Apply { applied, source }),
            Err(BatchFailure::TimedOut { step, abandoned }) => {
                if abandoned {
                    // Mid-call: closing the connection is what rolls the
                    // transaction back; it must not go back to the pool.
                    drop(conn.detach());
                }
                let doing = match step {
                    Step::Begin => "starting a transaction".to_owned(),
                    Step::Statement(i) => format!("running `{}`", chunk[i].display),
                    Step::Commit => format!("committing {}", statements(chunk.len())),
                };
                return Err(timed_out(doing, timeout_outcome(step, applied, chunk.len())));
            }
        }
    }
    Ok(applied)
}

/// What a timeout at `step` left applied, `applied` statements having been
/// committed before the batch of `batch` statements it hit.
fn timeout_outcome(step: Step, applied: usize, batch: usize) -> String {
    let before = match applied {
        0 => "nothing before it was applied".to_owned(),
        1 => "the 1 statement committed before it stays applied".to_owned(),
        n => format!("the {n} statements committed before it stay applied"),
    };
    match step {
        Step::Commit => format!(
            "the {} being committed may or may not be applied ({before}); compare again to see what is left",
            statements(batch)
        ),
        Step::Begin | Step::Statement(_) if applied == 0 => {
            "nothing was applied: the transaction was rolled back".to_owned()
        }
        Step::Begin | Step::Statement(_) => format!(
            "{before}, and the {} of the transaction that timed out were rolled back; re-run to plan the rest",
            statements(batch)
        ),
    }
}

fn statements(n: usize) -> String {
    if n == 1 {
        "1 statement".to_owned()
    } else {
        format!("{n} statements")
    }
}

/// Sets the follower session's own limit on waiting, where the engine has
/// one, so that the server gives up on a locked row by itself and the
/// transaction rolls back at once. The client-side timeout stays, for a
/// server that stops answering.
async fn bound_on_the_server(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    timeout: Duration,
    side: Side,
) {
    let millis = timeout.as_millis().max(1);
    let statement = match conn.backend_name() {
        "PostgreSQL" => format!("SET statement_timeout = {millis}"),
        // Whole seconds, at least 1.
        "MySQL" => format!(
            "SET SESSION innodb_lock_wait_timeout = {}",
            timeout.as_secs().max(1)
        ),
        "SQLite" => format!("PRAGMA busy_timeout = {millis}"),
        _ => return,
    };
    match tokio::time::timeout(timeout, sqlx::raw_sql(&statement).execute(&mut **conn)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(%side, %error, "no server-side timeout for the repair"),
        Err(_) => tracing::warn!(%side, "no server-side timeout for the repair: setting it timed out"),
    }
}

/// Runs `chunk` in one transaction, every step within `timeout`.
async fn apply_batch(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    chunk: &[Statement],
    timeout: Duration,
) -> Result<(), BatchFailure> {
    let mut tx = match tokio::time::timeout(timeout, sqlx::Connection::begin(&mut **conn)).await {
        Ok(Ok(tx)) => tx,
        Ok(Err(source)) => return Err(BatchFailure::Failed(source)),
        Err(_) => {
            return Err(BatchFailure::TimedOut {
                step: Step::Begin,
                abandoned: true,
            })
        }
    };
    for (i, statement) in chunk.iter().enumerate() {
        let mut query = sqlx::query(&statement.sql);
        for value in &statement.binds {
            query = bind_value(query, value);
        }
        match tokio::time::timeout(timeout, query.execute(&mut *tx)).await {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => {
                // Rolled back here, or by closing the connection if that
                // does not answer either.
                let rolled_back = matches!(tokio::time::timeout(timeout, tx.rollback()).await, Ok(Ok(())));
                return Err(if is_timeout(&source) {
                    BatchFailure::TimedOut {
                        step: Step::Statement(i),
                        abandoned: !rolled_back,
                    }
                } else {
                    BatchFailure::Failed(source)
                });
            }
            Err(_) => {
                return Err(BatchFailure::TimedOut {
                    step: Step::Statement(i),
                    abandoned: true,
                })
            }
        }
    }
    match tokio::time::timeout(timeout, tx.commit()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(BatchFailure::Failed(source)),
        Err(_) => Err(BatchFailure::TimedOut {
            step: Step::Commit,
            abandoned: true,
        }),
    }
}

/// Whether the server gave up on a statement for time: PostgreSQL's
/// `statement_timeout` or `lock_timeout`, a MySQL lock wait or statement
/// time limit, a SQLite database that stayed locked.
fn is_timeout(error: &sqlx::Error) -> bool {
    let Some(db) = error.as_database_error() else {
        return false;
    };
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return matches!(pg.code(), "57014" | "55P03");
    }
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // Lock wait, MariaDB's max_statement_time, MySQL's max_execution_time.
        return matches!(mysql.number(), 1205 | 1969 | 3024);
    }
    // SQLITE_BUSY and its extended codes.
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
        && db
            .code()
            .is_some_and(|code| code.parse::<i32>().is_ok_and(|code| code & 0xff == 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_follower_is_the_side_opposite_the_source_of_truth_and_is_written_by_name() {
        use mapping::SourceOfTruth;
        for (truth, follower, name) in [
            (SourceOfTruth::Legacy, Side::Service, "service"),
            (SourceOfTruth::Service, Side::Legacy, "monolith"),
        ] {
            assert_eq!(truth.follower(), follower);
            let plan = RepairPlan {
                capability: "orders".to_owned(),
                follower: truth.follower(),
                statements: Vec::new(),
                skipped: Vec::new(),
                timeout: Duration::from_secs(1),
            };
            assert_eq!(
                serde_json::to_string(&plan).unwrap(),
                format!(r#"{{"capability":"orders","follower":"{name}","statements":[],"skipped":[]}}"#)
            );
        }
    }

    #[test]
    fn a_timeout_says_what_stays_applied() {
        assert_eq!(
            timeout_outcome(Step::Statement(0), 0, 3),
            "nothing was applied: the transaction was rolled back"
        );
        assert_eq!(
            timeout_outcome(Step::Begin, 1, 2),
            "the 1 statement committed before it stays applied, and the 2 statements of the transaction that timed out were rolled back; re-run to plan the rest"
        );
        // A commit that does not answer may have happened.
        assert_eq!(
            timeout_outcome(Step::Commit, 0, 1),
            "the 1 statement being committed may or may not be applied (nothing before it was applied); compare again to see what is left"
        );
    }
}
