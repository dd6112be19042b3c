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
//! # A repair never overwrites a newer write
//!
//! The application keeps writing while a repair is planned and applied, so
//! every statement is compare-and-set: it changes the follower only if the
//! follower still holds what the repair was planned against, and a
//! statement that changes nothing is reported, not failed
//! ([`Applied::skipped`], "changed since the report, not repaired").
//! - An UPDATE or DELETE finds its row by key *and* by every compared column
//!   (and the table's `updated_at_column`, when the mapping names one)
//!   still holding the value read (`IS NOT DISTINCT FROM`, `<=>`, `IS`).
//! - An INSERT inserts only while the key is absent (`INSERT … SELECT …
//!   WHERE NOT EXISTS`; on PostgreSQL also `ON CONFLICT DO NOTHING`, so that
//!   an insert racing another transaction's waits for it and then does
//!   nothing instead of failing).
//!
//! What "what the repair was planned against" is: the report keeps, for
//! each divergent row and side, a fingerprint of the row as the comparison
//! read it (key, compared columns, `updated_at_column`), not the row
//! itself. The planner reads the follower's current row; if its
//! fingerprint is not the report's, or a key the report saw absent is
//! there now, the row changed since the report and is left alone. The
//! statement then compares against that read, which is the row the
//! comparison saw, so nothing written to those columns after the
//! comparison read the row is overwritten, whenever it was written. A
//! report stored without fingerprints (by an older version) is checked on
//! what it holds: the values that differed and, with an
//! `updated_at_column`, a change time inside the settle window before the
//! run. The source of truth's row is read at planning: if it changed since
//! the report, its current values are what the follower gets. Not seen: a
//! row changed and changed back to exactly what was read, a key deleted
//! and re-created alike, and a write to columns the comparison does not
//! read (ignored or unmapped ones) when no `updated_at_column` records it.
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

mod apply;
mod statement;
mod table;

use std::time::Duration;

use chrono::{DateTime, Utc};
use mapping::CapabilityMapping;
use mapping::Side;
use serde_json::Value;
use toolkit_db::sql_value::SqlValue;
use toolkit_db::DatabaseUrl;
use tracing::Instrument as _;

pub use apply::{apply_plan, apply_repair, Applied, ApplyOptions};

use crate::report::Report;
use crate::source::Source;
use crate::ReconcileError;
use table::plan_table_repair;

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

impl Action {
    /// Its name in JSON and in the CLI's lines: `insert`, `update`, `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Insert => "insert",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// One planned statement against the follower.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Statement {
    /// The follower's table.
    pub table: String,
    /// Insert, update or delete.
    pub action: Action,
    /// The row's key, in key order.
    pub key: Vec<Value>,
    /// The SQL, with literal values, for people to read.
    pub display: String,
    #[serde(skip)]
    sql: String,
    #[serde(skip)]
    binds: Vec<SqlValue>,
    /// For an INSERT, the query that tells, when it inserted nothing,
    /// whether the key is there now (else another unique value clashed).
    #[serde(skip)]
    probe: Option<(String, Vec<SqlValue>)>,
}

/// Why a divergence is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipCause {
    /// The follower's row is outside the table's `repair_filter`.
    OutsideRepairFilter,
    /// A side changed the row since the report: compare again.
    ChangedSinceReport,
    /// The row to insert clashes with another follower row on a unique
    /// constraint other than the key.
    UniqueConflict,
}

/// A divergence the repair leaves alone, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Skipped {
    /// The follower's table.
    pub table: String,
    /// What the repair would have done.
    pub action: Action,
    /// The row's key, in key order.
    pub key: Vec<Value>,
    /// Why, in one word.
    pub cause: SkipCause,
    /// Why, for people.
    pub reason: String,
}

impl Skipped {
    /// A divergence left alone because a side changed the row since the
    /// report; `detail` says how.
    fn changed(table: &str, action: Action, key: &[Value], detail: &str) -> Self {
        Self {
            table: table.to_owned(),
            action,
            key: key.to_vec(),
            cause: SkipCause::ChangedSinceReport,
            reason: format!("changed since the report, not repaired: {detail}"),
        }
    }
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
    /// Divergences no statement repairs: outside the table's
    /// `repair_filter`, or changed since the report.
    pub skipped: Vec<Skipped>,
    /// The statement timeout the plan was made under; applying it bounds
    /// every statement by the same.
    #[serde(skip)]
    timeout: Duration,
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
    // The start of the comparison: a follower row written after it (give or
    // take the settle window) changed since the report.
    let compared_at = DateTime::parse_from_rfc3339(&report.started_at)
        .ok()
        .map(|at| at.with_timezone(&Utc));
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
        let repair = plan_table_repair(table, result, truth, compared_at, &mut legacy, &mut service)
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
    fn a_skipped_row_says_why_in_a_word_and_a_sentence() {
        let skipped = Skipped::changed("clients", Action::Update, &[Value::from(2)], "the row is gone");
        assert_eq!(
            serde_json::to_value(&skipped).unwrap(),
            serde_json::json!({
                "table": "clients", "action": "update", "key": [2], "cause": "changed_since_report",
                "reason": "changed since the report, not repaired: the row is gone"
            })
        );
        assert_eq!(Action::Delete.as_str(), "delete");
    }
}
