//! Planning one diverged table's repair: for each divergence the report
//! lists, the follower's current row and the source of truth's are read,
//! checked against what the report saw, and turned into one
//! compare-and-set statement, or into a [`Skipped`] entry saying why not.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use mapping::{DefaultValue, Side, TableMapping};
use serde_json::Value;
use toolkit_db::sql_value::SqlValue;
use toolkit_db::Engine;

use super::statement::{guardable, Builder, Guard};
use super::{Action, SkipCause, Skipped, Statement};
use crate::fingerprint::fingerprint;
use crate::merge::changed_within;
use crate::plan::{plan_table, SidePlan, TablePlan};
use crate::report::{json_value, ChangedRow, KeyEntry, TableReport};
use crate::source::Source;
use crate::sql::ColumnClass;
use crate::ReconcileError;

/// One table's share of a repair plan.
pub(super) struct TableRepair {
    /// Inserts and updates, in key order.
    pub writes: Vec<Statement>,
    /// Deletes, in key order.
    pub deletes: Vec<Statement>,
    /// Divergences left alone.
    pub skipped: Vec<Skipped>,
}

/// A divergence of the report and what would fix it.
enum Fix<'r> {
    /// A key on the source of truth only.
    Insert(&'r [Value]),
    /// A key on both sides whose rows differ, as the report saw them.
    Update(&'r ChangedRow),
    /// A key on the follower only, as the report saw it.
    Delete(&'r KeyEntry),
}

/// What the planner knows of one table, both sides and the report.
struct Planner<'a> {
    table: &'a TableMapping,
    plan: &'a TablePlan,
    truth: &'a SidePlan,
    follower: &'a SidePlan,
    /// The start of the comparison, for the settle window.
    compared_at: Option<DateTime<Utc>>,
}

/// Plans the statements that repair one diverged table, `truth` being the
/// source of truth's side; `compared_at` is when the report's comparison
/// started.
pub(super) async fn plan_table_repair(
    table: &TableMapping,
    result: &TableReport,
    truth: Side,
    compared_at: Option<DateTime<Utc>>,
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
    let planner = Planner {
        table,
        plan: &plan,
        truth: truth_plan,
        follower: follower_plan,
        compared_at,
    };
    let mut repair = TableRepair {
        writes: Vec::new(),
        deletes: Vec::new(),
        skipped: Vec::new(),
    };
    for fix in fixes(result, truth) {
        let planned = planner.plan_fix(&fix, truth_source, follower).await?;
        match planned {
            Ok(statement) if statement.action == Action::Delete => repair.deletes.push(statement),
            Ok(statement) => repair.writes.push(statement),
            Err(skipped) => repair.skipped.push(skipped),
        }
    }
    Ok(repair)
}

/// The report's divergences of one table, inserts and updates first, each
/// in key order.
fn fixes(result: &TableReport, truth: Side) -> Vec<Fix<'_>> {
    let (only_truth, only_follower) = match truth {
        Side::Legacy => (&result.missing, &result.extra),
        Side::Service => (&result.extra, &result.missing),
    };
    let mut fixes: Vec<Fix<'_>> = only_truth.iter().map(|k| Fix::Insert(&k.key)).collect();
    fixes.extend(result.changed.iter().map(Fix::Update));
    fixes.extend(only_follower.iter().map(Fix::Delete));
    fixes
}

impl Planner<'_> {
    /// The statement that fixes one divergence, or why there is none.
    async fn plan_fix(
        &self,
        fix: &Fix<'_>,
        truth: &mut Source,
        follower: &mut Source,
    ) -> Result<Result<Statement, Skipped>, ReconcileError> {
        let (action, key) = match fix {
            Fix::Insert(key) => (Action::Insert, *key),
            Fix::Update(row) => (Action::Update, row.key.as_slice()),
            Fix::Delete(entry) => (Action::Delete, entry.key.as_slice()),
        };
        let key_values: Vec<SqlValue> = key.iter().map(json_to_sql).collect();
        let changed = |detail: String| {
            Ok(Err(Skipped::changed(
                self.follower.table.as_str(),
                action,
                key,
                &detail,
            )))
        };
        let (follower_side, truth_side) = (self.follower.side, self.truth.side);
        let current = fetch_row(follower, self.follower, &key_values).await?;
        if let Fix::Insert(_) = fix {
            if current.is_some() {
                return changed(format!(
                    "the {follower_side} database has a row with this key now"
                ));
            }
            let Some(row) = fetch_row(truth, self.truth, &key_values).await? else {
                return changed(format!("the {truth_side} row is gone"));
            };
            return Ok(Ok(self.insert(key, &row)));
        }
        let Some(current) = current else {
            return changed(format!("the {follower_side} row is gone"));
        };
        if self.changed_since_report(fix, &current) {
            return changed(format!(
                "the {follower_side} row no longer holds what the report saw"
            ));
        }
        if let Some(skipped) = self.outside_filter(follower, &key_values, key, action).await? {
            return Ok(Err(skipped));
        }
        let source_row = fetch_row(truth, self.truth, &key_values).await?;
        let statement = match (fix, source_row) {
            (Fix::Update(_), None) => return changed(format!("the {truth_side} row is gone")),
            (Fix::Update(_), Some(row)) => {
                let compared = self.follower.checksum_columns.len();
                if row[..compared] == current[..compared] {
                    return changed(format!(
                        "the {follower_side} row matches the {truth_side} row now"
                    ));
                }
                self.update(key, &row, &current)
            }
            (_, Some(_)) => return changed(format!("the {truth_side} database has a row with this key now")),
            (_, None) => self.delete(key, &current),
        };
        Ok(Ok(statement))
    }

    /// Whether the follower's row, `current` as just read, is not the one
    /// the report saw. The report's fingerprint of the follower's row says
    /// it whatever changed. A report without fingerprints (one stored by an
    /// older version) tells less: only the values that differed (raw here:
    /// repaired tables have no normalization), and with an
    /// `updated_at_column`, a change time too recent for the comparison to
    /// have judged the row.
    fn changed_since_report(&self, fix: &Fix<'_>, current: &[SqlValue]) -> bool {
        let side = self.follower.side;
        let reported = match (fix, side) {
            (Fix::Update(row), Side::Legacy) => row.legacy_fingerprint.as_deref(),
            (Fix::Update(row), Side::Service) => row.service_fingerprint.as_deref(),
            (Fix::Delete(entry), _) => entry.fingerprint.as_deref(),
            (Fix::Insert(_), _) => None,
        };
        if let Some(reported) = reported {
            return reported != fingerprint(current);
        }
        let values_differ = match fix {
            Fix::Update(row) => row.columns.iter().any(|diff| {
                let Some(column) = self.plan.compared.iter().find(|c| c.legacy == diff.column) else {
                    return false;
                };
                let seen = match side {
                    Side::Legacy => &diff.legacy,
                    Side::Service => &diff.service,
                };
                current.get(column.index).map_or(Value::Null, json_value) != *seen
            }),
            Fix::Insert(_) | Fix::Delete(_) => false,
        };
        let recent = match (self.plan.settle, self.compared_at) {
            (Some((index, seconds)), Some(at)) => changed_within(current.get(index), at, seconds),
            _ => false,
        };
        values_differ || recent
    }

    /// The guards of an UPDATE or DELETE: every compared column, and the
    /// `updated_at_column` when it is selected apart from them, holding
    /// what `current` (the follower's row as read) holds.
    fn guards<'v>(&self, current: &'v [SqlValue]) -> Vec<Guard<'v>> {
        let plan = self.follower;
        let key_len = self.plan.key_len();
        let compared = plan.checksum_columns.len();
        let mut guards: Vec<Guard<'v>> = (key_len..compared)
            .map(|i| Guard {
                column: plan.dialect.quote(&plan.checksum_columns[i]),
                class: plan.classes[i],
                value: &current[i],
            })
            .collect();
        if let (Some((index, _)), Some(window)) = (self.plan.settle, &self.table.compare.settle) {
            if index >= compared && guardable(plan.classes[index]) {
                guards.push(Guard {
                    column: plan.dialect.quote(window.column.on(plan.side)),
                    class: plan.classes[index],
                    value: &current[index],
                });
            }
        }
        guards
    }

    /// The key columns, quoted and unqualified, for statements on the table.
    fn key_columns(&self) -> Vec<String> {
        let plan = self.follower;
        plan.checksum_columns[..self.plan.key_len()]
            .iter()
            .map(|c| plan.dialect.quote(c))
            .collect()
    }

    /// `… WHERE key = … AND <guards> [AND (repair_filter)]`.
    fn compare_and_set(&self, b: &mut Builder, key: &[SqlValue], current: &[SqlValue]) {
        let classes = &self.follower.classes[..self.plan.key_len()];
        b.text(" WHERE ")
            .key_equals(&self.key_columns(), classes, key)
            .still_holds(&self.guards(current));
        if let Some(filter) = &self.table.repair.filter {
            b.text(&format!(" AND ({filter})"));
        }
    }

    /// `INSERT … SELECT <source row> WHERE NOT EXISTS (<key>)`.
    fn insert(&self, key: &[Value], row: &[SqlValue]) -> Statement {
        let plan = self.follower;
        let dialect = plan.dialect;
        let compared = plan.checksum_columns.len();
        let defaults = &self.table.repair.follower_defaults;
        let names: Vec<String> = plan
            .checksum_columns
            .iter()
            .chain(defaults.iter().map(|(column, _)| column))
            .map(|c| dialect.quote(c))
            .collect();
        let mut values: Vec<SqlValue> = row[..compared].to_vec();
        values.extend(defaults.iter().map(|(_, value)| match value {
            DefaultValue::Text(text) => SqlValue::Text(text.clone()),
            DefaultValue::Integer(number) => SqlValue::Int(*number),
        }));
        let table = dialect.quote(&plan.table);
        let key_values = &row[..self.plan.key_len()];
        let key_classes = &plan.classes[..self.plan.key_len()];
        let mut b = Builder::new(dialect);
        b.text(&format!("INSERT INTO {table} ({}) SELECT ", names.join(", ")))
            .values(&values);
        // MySQL needs a FROM for a WHERE.
        if dialect.engine() == Engine::MySql {
            b.text(" FROM DUAL");
        }
        b.text(&format!(" WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE "))
            .key_equals(&self.key_columns(), key_classes, key_values)
            .text(")");
        if dialect.engine() == Engine::Postgres {
            b.text(" ON CONFLICT DO NOTHING");
        }
        let mut probe = Builder::new(dialect);
        probe.text(&format!("SELECT 1 FROM {table} WHERE ")).key_equals(
            &self.key_columns(),
            key_classes,
            key_values,
        );
        // InnoDB's NOT EXISTS above is a locking read of the latest rows,
        // but a plain SELECT reads the transaction's snapshot, which may
        // predate a writer's insert of this key: the probe must read what
        // the insert saw, or that race is mistaken for a unique clash.
        if dialect.engine() == Engine::MySql {
            probe.text(" FOR UPDATE");
        }
        let mut statement = b.finish(plan.table.to_string(), Action::Insert, key.to_vec());
        statement.probe = Some(probe.into_query());
        statement
    }

    /// `UPDATE … SET <compared columns from the source row> WHERE <CAS>`.
    fn update(&self, key: &[Value], row: &[SqlValue], current: &[SqlValue]) -> Statement {
        let plan = self.follower;
        let key_len = self.plan.key_len();
        let mut b = Builder::new(plan.dialect);
        b.text(&format!("UPDATE {} SET ", plan.dialect.quote(&plan.table)));
        let compared = plan.checksum_columns.iter().zip(row).skip(key_len);
        for (i, (column, value)) in compared.enumerate() {
            if i > 0 {
                b.text(", ");
            }
            b.text(&format!("{} = ", plan.dialect.quote(column))).value(value);
        }
        self.compare_and_set(&mut b, &current[..key_len], current);
        b.finish(plan.table.to_string(), Action::Update, key.to_vec())
    }

    /// `DELETE … WHERE <CAS>`.
    fn delete(&self, key: &[Value], current: &[SqlValue]) -> Statement {
        let plan = self.follower;
        let mut b = Builder::new(plan.dialect);
        b.text(&format!("DELETE FROM {}", plan.dialect.quote(&plan.table)));
        self.compare_and_set(&mut b, &current[..self.plan.key_len()], current);
        b.finish(plan.table.to_string(), Action::Delete, key.to_vec())
    }

    /// Why `action` leaves the follower's row with `key` alone, when the
    /// table's `repair_filter` does not hold for it.
    async fn outside_filter(
        &self,
        follower: &mut Source,
        key: &[SqlValue],
        json_key: &[Value],
        action: Action,
    ) -> Result<Option<Skipped>, ReconcileError> {
        let Some(filter) = self.table.repair.filter.as_deref() else {
            return Ok(None);
        };
        let plan = self.follower;
        // Unqualified names: the filter is written against the bare table.
        let mut b = Builder::new(plan.dialect);
        b.text(&format!(
            "SELECT 1 FROM {} WHERE ",
            plan.dialect.quote(&plan.table)
        ))
        .key_equals(&self.key_columns(), &plan.classes[..key.len()], key)
        .text(&format!(" AND ({filter})"));
        let (sql, binds) = b.into_query();
        let bind_refs: Vec<&SqlValue> = binds.iter().collect();
        let doing = "checking a row against repair_filter";
        let rows = follower
            .fetch(&sql, &bind_refs, &[ColumnClass::Integer], doing)
            .await?;
        if !rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(Skipped {
            table: plan.table.to_string(),
            action,
            key: json_key.to_vec(),
            cause: SkipCause::OutsideRepairFilter,
            reason: format!("the {} row is outside repair_filter `{filter}`", plan.side),
        }))
    }
}

/// A key value from the report, to bind.
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

/// A side's current row for `key` (every selected column, in select-list
/// order), or `None` when it has none. The key is matched exactly, as the
/// statements match it.
async fn fetch_row(
    source: &mut Source,
    plan: &SidePlan,
    key: &[SqlValue],
) -> Result<Option<Vec<SqlValue>>, ReconcileError> {
    let mut select = format!(
        "SELECT {} FROM {} t WHERE ",
        plan.select_list,
        plan.dialect.quote(&plan.table)
    );
    let columns: Vec<String> = plan
        .checksum_columns
        .iter()
        .take(key.len())
        .map(|c| plan.dialect.column(c))
        .collect();
    let mut b = Builder::new(plan.dialect);
    b.key_equals(&columns, &plan.classes[..key.len()], key);
    let (condition, binds) = b.into_query();
    let _ = write!(select, "{condition}");
    let bind_refs: Vec<&SqlValue> = binds.iter().collect();
    let rows = source
        .fetch(&select, &bind_refs, &plan.classes, "reading a row to repair")
        .await?;
    Ok(rows.into_iter().next())
}
