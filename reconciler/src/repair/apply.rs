//! Applying a repair plan to the follower: in transactions of a batch of
//! statements, every step bounded in time, each statement compare-and-set.
//! A statement that changes no row is not an error: the row changed since
//! the report (or, for an insert, clashes on another unique value), and it
//! is listed in [`Applied::skipped`] once its batch commits.

use std::time::Duration;

use mapping::Side;
use toolkit_db::sql_value::bind_value;
use toolkit_db::{Database, DatabaseUrl};

use super::{Action, RepairPlan, SkipCause, Skipped, Statement};
use crate::progress::ProgressHook;
use crate::ReconcileError;

/// How to apply a plan.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Statements per transaction.
    pub batch: usize,
    /// Told how many statements are committed.
    pub progress: Option<ProgressHook>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            batch: 100,
            progress: None,
        }
    }
}

/// What applying a plan did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Applied {
    /// Statements run, all committed.
    pub statements: usize,
    /// Statements that changed the follower's row.
    pub repaired: usize,
    /// Statements that changed nothing because the row changed since the
    /// report (the count of `skipped` entries with that cause).
    pub changed_since_report: usize,
    /// Every statement that changed nothing, and why, in plan order.
    pub skipped: Vec<Skipped>,
}

/// Applies `plan` to the follower's database in transactions of `batch`
/// statements, as [`apply_plan`] does. Returns how many statements ran;
/// [`apply_plan`] also says which of them found their row changed since
/// the report and changed nothing.
pub async fn apply_repair(
    plan: &RepairPlan,
    follower_url: &DatabaseUrl,
    batch: usize,
) -> Result<usize, ReconcileError> {
    let options = ApplyOptions {
        batch,
        progress: None,
    };
    Ok(apply_plan(plan, follower_url, &options).await?.statements)
}

/// Applies `plan` to the follower's database in transactions of
/// `options.batch` statements.
///
/// Every step (connecting, each statement, each commit) is bounded by the
/// statement timeout the plan was made under, on the server too where the
/// engine has a setting for it (PostgreSQL `statement_timeout`, InnoDB's
/// lock wait, SQLite's busy timeout), so that a row locked by someone else
/// fails the repair instead of hanging it. A transaction that fails or
/// times out is rolled back (a connection abandoned mid-statement is
/// closed, which rolls it back too); the batches committed before it stay
/// applied, and the error says how many statements that is.
pub async fn apply_plan(
    plan: &RepairPlan,
    follower_url: &DatabaseUrl,
    options: &ApplyOptions,
) -> Result<Applied, ReconcileError> {
    let db = Database::open(follower_url)
        .await
        .map_err(|e| ReconcileError::Unsupported(e.to_string()))?;
    if let Some(progress) = &options.progress {
        progress.repair_started(plan.statements.len() as u64);
    }
    let result = apply_batches(&db, plan, options).await;
    if let Some(progress) = &options.progress {
        progress.repair_finished();
    }
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

type Connection = sqlx::pool::PoolConnection<sqlx::Any>;

async fn apply_batches(
    db: &Database,
    plan: &RepairPlan,
    options: &ApplyOptions,
) -> Result<Applied, ReconcileError> {
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
    set_up_session(&mut conn, timeout, plan.follower).await;
    let mut applied = Applied::default();
    for chunk in plan.statements.chunks(options.batch.max(1)) {
        match apply_batch(&mut conn, chunk, timeout, plan.follower).await {
            Ok(skipped) => {
                applied.statements += chunk.len();
                applied.repaired += chunk.len() - skipped.len();
                applied.changed_since_report += skipped
                    .iter()
                    .filter(|s| s.cause == SkipCause::ChangedSinceReport)
                    .count();
                applied.skipped.extend(skipped);
                if let Some(progress) = &options.progress {
                    progress.statements_applied(chunk.len() as u64);
                }
            }
            Err(BatchFailure::Failed(source)) => {
                return Err(ReconcileError::Apply {
                    applied: applied.statements,
                    source,
                })
            }
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
                return Err(timed_out(
                    doing,
                    timeout_outcome(step, applied.statements, chunk.len()),
                ));
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

/// Sets up the follower session: the server's own limit on waiting, where
/// the engine has one, so that the server gives up on a locked row by
/// itself and the transaction rolls back at once (the client-side timeout
/// stays, for a server that stops answering); and UTC, the zone the planner
/// read timestamps in, so that a guard on one compares the same text. A
/// setting that fails is logged: without the zone, a guarded timestamp
/// compares unequal and its row is reported changed, never overwritten.
async fn set_up_session(conn: &mut Connection, timeout: Duration, side: Side) {
    let millis = timeout.as_millis().max(1);
    let statements = match conn.backend_name() {
        "PostgreSQL" => vec![
            format!("SET statement_timeout = {millis}"),
            "SET TIME ZONE 'UTC'".to_owned(),
        ],
        // Whole seconds, at least 1.
        "MySQL" => vec![
            format!(
                "SET SESSION innodb_lock_wait_timeout = {}",
                timeout.as_secs().max(1)
            ),
            "SET time_zone = '+00:00'".to_owned(),
        ],
        "SQLite" => vec![format!("PRAGMA busy_timeout = {millis}")],
        _ => return,
    };
    for statement in statements {
        match tokio::time::timeout(timeout, execute(conn, &statement, &[])).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%side, %error, %statement, "cannot set up the repair's session"),
            Err(_) => tracing::warn!(%side, %statement, "cannot set up the repair's session: it timed out"),
        }
    }
}

/// Runs `chunk` in one transaction on the `follower`, every step within
/// `timeout`; returns the statements that changed nothing, and why.
async fn apply_batch(
    conn: &mut Connection,
    chunk: &[Statement],
    timeout: Duration,
    follower: Side,
) -> Result<Vec<Skipped>, BatchFailure> {
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
    let mut skipped = Vec::new();
    for (i, statement) in chunk.iter().enumerate() {
        match tokio::time::timeout(timeout, run(&mut tx, statement, follower)).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(entry))) => skipped.push(entry),
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
        Ok(Ok(())) => Ok(skipped),
        Ok(Err(source)) => Err(BatchFailure::Failed(source)),
        Err(_) => Err(BatchFailure::TimedOut {
            step: Step::Commit,
            abandoned: true,
        }),
    }
}

/// Runs `statement`; `None` when it changed a row, and otherwise the
/// entry saying why it did not.
async fn run(
    conn: &mut sqlx::AnyConnection,
    statement: &Statement,
    follower: Side,
) -> Result<Option<Skipped>, sqlx::Error> {
    if execute(conn, &statement.sql, &statement.binds).await? > 0 {
        return Ok(None);
    }
    // Nothing changed: an insert's key may be there now, or another of its
    // unique values clashed (PostgreSQL's ON CONFLICT DO NOTHING).
    let there = match &statement.probe {
        Some((sql, binds)) => fetch_any(conn, sql, binds).await?,
        None => true,
    };
    Ok(Some(unchanged(statement, there, follower)))
}

/// Runs `sql` with `binds`; the rows it changed (MySQL's "found" rows:
/// sqlx asks for `CLIENT_FOUND_ROWS`, so a matched row counts even when it
/// already held the values).
async fn execute(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    binds: &[toolkit_db::SqlValue],
) -> Result<u64, sqlx::Error> {
    let mut query = sqlx::query(sql);
    for value in binds {
        query = bind_value(query, value);
    }
    Ok(query.execute(conn).await?.rows_affected())
}

/// Whether `sql` with `binds` returns a row.
async fn fetch_any(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    binds: &[toolkit_db::SqlValue],
) -> Result<bool, sqlx::Error> {
    let mut query = sqlx::query(sql);
    for value in binds {
        query = bind_value(query, value);
    }
    Ok(query.fetch_optional(conn).await?.is_some())
}

/// The entry of a statement that changed nothing on the `follower`;
/// `there` is whether its row (its key, for an insert) is there now.
fn unchanged(statement: &Statement, there: bool, follower: Side) -> Skipped {
    let detail = match (statement.action, there) {
        (Action::Insert, true) => format!("the {follower} database has a row with this key now"),
        (Action::Insert, false) => {
            return Skipped {
                table: statement.table.clone(),
                action: statement.action,
                key: statement.key.clone(),
                cause: SkipCause::UniqueConflict,
                reason: format!(
                    "not inserted: another row of the {follower} table holds one of its unique values; \
                     repair it by hand"
                ),
            }
        }
        (Action::Update | Action::Delete, _) => {
            format!("the {follower} row no longer holds what the plan read")
        }
    };
    Skipped::changed(&statement.table, statement.action, &statement.key, &detail)
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

    /// Compiled, never run: applying must stay a `Send` future, so that a
    /// caller may spawn it (sqlx's generic executors lose that easily).
    #[allow(dead_code)]
    fn applying_can_be_spawned(plan: &RepairPlan, url: &DatabaseUrl, options: &ApplyOptions) {
        fn send<T: Send>(_: T) {}
        send(apply_plan(plan, url, options));
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
