//! Checksum-and-bisect, for big tables whose two sides run on the same
//! server engine (PostgreSQL or MySQL/MariaDB).
//!
//! For a key range, each database computes `COUNT(*)` and the sum of a
//! 64-bit slice of every row's MD5 over the key and compared columns (see
//! [`crate::sql::Dialect::checksum_expr`]); only those two numbers travel.
//! Equal on both sides: the range's rows are equal and none is read. Different:
//! the range is split at the median key of the larger side and both halves
//! are checked, down to ranges of at most `leaf_rows` rows, which are merged
//! ([`crate::merge`]). Ranges are visited in key order, so findings come out
//! sorted.
//!
//! Why only same-engine pairs: two engines render values as text
//! differently, so their checksums are not comparable. Why only when every
//! normalization treats both sides alike: a checksum covers raw values, and
//! equal raw rows must stay equal after normalization (a value map or
//! `cents_from_decimal` changes one side only). SQLite has no hash function.
//! In all of these cases the table is merged instead, and the report says why.

use service_runtime::sql_value::SqlValue;
use service_runtime::Engine;

use crate::merge::{merge_range, range_where, Judge, KeyRange};
use crate::plan::{SidePlan, TablePlan};
use crate::source::Source;
use crate::sql::ColumnClass;
use crate::ReconcileError;

/// Why bisection cannot be used for `plan`, or `None` when it can.
pub fn unsupported_reason(plan: &TablePlan) -> Option<String> {
    let (l, s) = (plan.legacy.dialect.engine(), plan.service.dialect.engine());
    if l != s {
        return Some(format!(
            "bisection needs both sides on the same engine ({l} vs {s}): checksums are not comparable across engines"
        ));
    }
    if l == Engine::Sqlite {
        return Some("bisection is not available on SQLite, which has no hash function".to_owned());
    }
    if !plan.checksum_sound {
        return Some(
            "bisection needs normalizations that treat both sides alike (this table has a value map or cents_from_decimal)"
                .to_owned(),
        );
    }
    None
}

/// `COUNT(*)` and the checksum of `plan`'s rows in `range`.
async fn checksum(
    source: &mut Source,
    plan: &SidePlan,
    range: &KeyRange,
) -> Result<(u64, String), ReconcileError> {
    let Some(sum) = plan.dialect.checksum_expr(&plan.checksum_columns) else {
        return Err(ReconcileError::Unsupported(format!(
            "the {} database's engine has no checksum",
            plan.side
        )));
    };
    let (clause, binds) = range_where(plan, range.lower.as_deref(), range.upper.as_deref());
    let sql = format!(
        "SELECT COUNT(*), {sum} FROM {} t {clause}",
        plan.dialect.quote(&plan.table)
    );
    let binds: Vec<&SqlValue> = binds.iter().collect();
    let rows = source
        .fetch(
            &sql,
            &binds,
            &[ColumnClass::Integer, ColumnClass::Text],
            &format!("computing a checksum of table `{}`", plan.table),
        )
        .await?;
    let row = rows.into_iter().next().unwrap_or_default();
    let count = match row.first() {
        Some(SqlValue::Int(n)) => (*n).max(0) as u64,
        _ => 0,
    };
    let sum = match row.get(1) {
        Some(SqlValue::Text(t)) => t.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    Ok((count, sum))
}

/// The key of the `offset`th (0-based) row of `plan` in `range`.
async fn key_at(
    source: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    range: &KeyRange,
    offset: u64,
) -> Result<Option<Vec<SqlValue>>, ReconcileError> {
    let (clause, binds) = range_where(plan, range.lower.as_deref(), range.upper.as_deref());
    let keys = plan.key_exprs.join(", ");
    let sql = format!(
        "SELECT {} FROM {} t {clause} ORDER BY {keys} LIMIT 1 OFFSET {offset}",
        plan.select_list,
        plan.dialect.quote(&plan.table),
    );
    let binds: Vec<&SqlValue> = binds.iter().collect();
    let rows = source
        .fetch(
            &sql,
            &binds,
            &plan.classes,
            &format!("finding a split key of table `{}`", plan.table),
        )
        .await?;
    Ok(rows
        .into_iter()
        .next()
        .map(|row| row[..key_len.min(row.len())].to_vec()))
}

/// Compares `plan` by checksum-and-bisect, judging every differing row.
pub async fn bisect(
    plan: &TablePlan,
    legacy: &mut Source,
    service: &mut Source,
    leaf_rows: u64,
    batch_size: usize,
    judge: &mut Judge<'_>,
) -> Result<(), ReconcileError> {
    let leaf_rows = leaf_rows.max(1);
    let mut stack = vec![KeyRange::default()];
    while let Some(range) = stack.pop() {
        let (lc, ls) = checksum(legacy, &plan.legacy, &range).await?;
        let (sc, ss) = checksum(service, &plan.service, &range).await?;
        if lc == sc && ls == ss {
            judge.equal_rows(lc);
            continue;
        }
        if lc.max(sc) <= leaf_rows {
            merge_range(plan, legacy, service, &range, batch_size, judge).await?;
            continue;
        }
        let mid = if lc >= sc {
            key_at(legacy, &plan.legacy, plan.key_len(), &range, lc / 2 - 1).await?
        } else {
            key_at(service, &plan.service, plan.key_len(), &range, sc / 2 - 1).await?
        };
        let Some(mid) = mid else {
            // The table changed under us; merging the range is always right.
            merge_range(plan, legacy, service, &range, batch_size, judge).await?;
            continue;
        };
        // Upper half pushed first so that the lower half is checked first.
        stack.push(KeyRange {
            lower: Some(mid.clone()),
            upper: range.upper.clone(),
        });
        stack.push(KeyRange {
            lower: range.lower,
            upper: Some(mid),
        });
    }
    Ok(())
}
