//! What each database says about a key range of a table, for the
//! bisection: its row count, its checksum and whether a key repeats in it
//! ([`checksum`]), and the keys that cut it into segments ([`boundaries`])
//! or halves ([`key_at`]).

use toolkit_db::sql_value::SqlValue;
use toolkit_db::Engine;

use crate::merge::{bounded_where_from, range_where, KeyRange};
use crate::plan::SidePlan;
use crate::source::Source;
use crate::sql::Bound;
use crate::sql::ColumnClass;
use crate::ReconcileError;

/// What one side's checksum of a range says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sum {
    /// `COUNT(*)`.
    pub rows: u64,
    /// The checksum, as text.
    pub sum: String,
    /// Whether no key repeats in the range: proven by the catalog, or
    /// counted (`COUNT(DISTINCT key)` equal to `COUNT(*)`).
    pub distinct: bool,
}

impl Sum {
    /// What a range without rows has: no rows, a sum of 0.
    pub fn empty() -> Self {
        Sum {
            rows: 0,
            sum: "0".to_owned(),
            distinct: true,
        }
    }

    /// A sum from a checksum query's columns: `COUNT(*)`, the checksum and,
    /// where the catalog does not prove the key unique, `COUNT(DISTINCT key)`.
    fn read(plan: &SidePlan, columns: &[SqlValue]) -> Self {
        let count = |value: Option<&SqlValue>| match value {
            Some(SqlValue::Int(n)) => (*n).max(0) as u64,
            _ => 0,
        };
        let rows = count(columns.first());
        let sum = match columns.get(1) {
            Some(SqlValue::Text(t)) => t.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let distinct = plan.unique_key || count(columns.get(2)) == rows;
        Sum { rows, sum, distinct }
    }

    /// The group number and sum of one row of a grouped checksum query
    /// ([`grouped_sums`]); `None` without a group number.
    fn read_group(plan: &SidePlan, row: &[SqlValue]) -> Option<(i64, Self)> {
        match row.split_first() {
            Some((SqlValue::Int(group), rest)) => Some((*group, Sum::read(plan, rest))),
            _ => None,
        }
    }
}

/// Each non-empty group of `plan`'s rows selected by `clause` (with
/// `binds`), grouped by the integer expression `group`: its number, count
/// and checksum. One query; `doing` names it in an error.
pub(super) async fn grouped_sums(
    source: &mut Source,
    plan: &SidePlan,
    group: &str,
    clause: &str,
    binds: &[SqlValue],
    doing: &str,
) -> Result<Vec<(i64, Sum)>, ReconcileError> {
    let sum = checksum_expr(plan)?;
    let distinct = distinct_keys(plan);
    let sql = format!(
        "SELECT {group}, COUNT(*), {sum}{distinct} FROM {} t {clause} GROUP BY 1",
        plan.dialect.quote(&plan.table)
    );
    let binds: Vec<&SqlValue> = binds.iter().collect();
    let classes = [
        ColumnClass::Integer,
        ColumnClass::Integer,
        ColumnClass::Text,
        ColumnClass::Integer,
    ];
    let rows = source.fetch(&sql, &binds, &classes, doing).await?;
    Ok(rows.iter().filter_map(|row| Sum::read_group(plan, row)).collect())
}

/// The checksum expression of `plan`'s side; an error on an engine that
/// has none (SQLite), which planning rules out before any checksum.
pub(super) fn checksum_expr(plan: &SidePlan) -> Result<String, ReconcileError> {
    plan.dialect
        .checksum_expr(&plan.checksum_columns, &plan.checksum_integers)
        .ok_or_else(|| {
            ReconcileError::Unsupported(format!("the {} database's engine has no checksum", plan.side))
        })
}

/// The lowest and highest value of `plan`'s one integer key in `range`,
/// `None` when it holds no rows. Both come from the key's index.
pub(crate) async fn key_span(
    source: &mut Source,
    plan: &SidePlan,
    range: &KeyRange,
) -> Result<Option<(i64, i64)>, ReconcileError> {
    let (clause, binds) = range_where(plan, range.lower.as_deref(), range.upper.as_deref());
    let key = &plan.key_exprs[0];
    let sql = format!(
        "SELECT MIN({key}), MAX({key}) FROM {} t {clause}",
        plan.dialect.quote(&plan.table)
    );
    let binds: Vec<&SqlValue> = binds.iter().collect();
    let doing = format!("finding the key span of a range of table `{}`", plan.table);
    let rows = source
        .fetch(
            &sql,
            &binds,
            &[ColumnClass::Integer, ColumnClass::Integer],
            &doing,
        )
        .await?;
    Ok(match rows.first().map(Vec::as_slice) {
        Some([SqlValue::Int(low), SqlValue::Int(high)]) => Some((*low, *high)),
        _ => None,
    })
}

/// Whether both sides' sums stand for equal rows that need no reading: the
/// same count and checksum, and no repeated key on either side. Two sides
/// holding the same repeated row have equal checksums, so only the distinct
/// count catches it; a range with a repeat is merged, and the merge names
/// the key.
pub(super) fn settled(legacy: &Sum, service: &Sum) -> bool {
    legacy.distinct && service.distinct && legacy.rows == service.rows && legacy.sum == service.sum
}

/// `, COUNT(DISTINCT key)` when the catalog does not prove `plan`'s key
/// unique, and nothing when it does.
fn distinct_keys(plan: &SidePlan) -> String {
    if plan.unique_key {
        return String::new();
    }
    match (plan.dialect.engine(), plan.key_exprs.as_slice()) {
        (_, [single]) => format!(", COUNT(DISTINCT {single})"),
        (Engine::MySql, keys) => format!(", COUNT(DISTINCT {})", keys.join(", ")),
        (_, keys) => format!(", COUNT(DISTINCT ROW({}))", keys.join(", ")),
    }
}

/// The `SELECT` of a range's checksum: `COUNT(*)`, the checksum, and, when
/// the catalog does not prove the key unique, `COUNT(DISTINCT key)`.
fn checksum_sql(plan: &SidePlan, sum: &str, clause: &str) -> String {
    let distinct = distinct_keys(plan);
    format!(
        "SELECT COUNT(*), {sum}{distinct} FROM {} t {clause}",
        plan.dialect.quote(&plan.table)
    )
}

/// `COUNT(*)` and the checksum of `plan`'s rows in `range`, and whether
/// its keys are distinct.
pub(super) async fn checksum(
    source: &mut Source,
    plan: &SidePlan,
    range: &KeyRange,
) -> Result<Sum, ReconcileError> {
    let sum = checksum_expr(plan)?;
    let (clause, binds) = range_where(plan, range.lower.as_deref(), range.upper.as_deref());
    let sql = checksum_sql(plan, &sum, &clause);
    let binds: Vec<&SqlValue> = binds.iter().collect();
    let rows = source
        .fetch(
            &sql,
            &binds,
            &[ColumnClass::Integer, ColumnClass::Text, ColumnClass::Integer],
            &format!("computing a checksum of table `{}`", plan.table),
        )
        .await?;
    let row = rows.into_iter().next().unwrap_or_default();
    Ok(Sum::read(plan, &row))
}

/// [`checksum`] of each of `ranges`, which follow one another (each starts
/// after the previous one's upper key), in one query: the rows are grouped
/// by the range their key falls in. One round trip for all of them, where
/// a database across a network makes round trips the cost of bisection.
pub(super) async fn checksums(
    source: &mut Source,
    plan: &SidePlan,
    ranges: &[KeyRange],
) -> Result<Vec<Sum>, ReconcileError> {
    let [.., last] = ranges else {
        return Ok(Vec::new());
    };
    if ranges.len() == 1 {
        return Ok(vec![checksum(source, plan, last).await?]);
    }
    let mut next = 1;
    let mut binds = Vec::new();
    let mut case = String::from("CASE");
    for (i, range) in ranges[..ranges.len() - 1].iter().enumerate() {
        let Some(upper) = &range.upper else {
            return Err(ReconcileError::Unsupported(
                "only the last of several checksummed ranges may be unbounded".to_owned(),
            ));
        };
        let (sql, order) = plan.dialect.key_bound(&plan.key_exprs, Bound::UpTo, &mut next);
        binds.extend(order.into_iter().filter_map(|j| upper.get(j).cloned()));
        case.push_str(&format!(" WHEN {sql} THEN {i}"));
    }
    case.push_str(&format!(" ELSE {} END", ranges.len() - 1));
    let first = &ranges[0];
    let (clause, where_binds) = bounded_where_from(
        plan,
        first.lower.as_deref().map(|key| (key, Bound::After)),
        last.upper.as_deref(),
        &mut next,
    );
    binds.extend(where_binds);
    let doing = format!(
        "computing checksums of {} ranges of table `{}`",
        ranges.len(),
        plan.table
    );
    let groups = grouped_sums(source, plan, &case, &clause, &binds, &doing).await?;
    // A range without rows has no group: COUNT(*) 0 and a sum of 0, as
    // `checksum` says of it.
    let mut sums = vec![Sum::empty(); ranges.len()];
    for (group, sum) in groups {
        if let Some(slot) = usize::try_from(group).ok().and_then(|i| sums.get_mut(i)) {
            *slot = sum;
        }
    }
    Ok(sums)
}

/// The keys of every `every`th row after `range.lower` (the `every`th,
/// the `2·every`th, …), at most `count` of them; fewer when the table ends
/// first. One query reads just the keys through the key's index, instead
/// of one `OFFSET` query per segment.
pub(crate) async fn boundaries(
    source: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    range: &KeyRange,
    every: u64,
    count: usize,
) -> Result<Vec<Vec<SqlValue>>, ReconcileError> {
    // The inner query keeps the key columns' own names under the alias `t`,
    // so that the select list and key expressions apply to it unchanged.
    let raw: Vec<String> = plan.checksum_columns[..key_len.min(plan.checksum_columns.len())]
        .iter()
        .map(|c| plan.dialect.column(c))
        .collect();
    let select = |clause: &str, keys: &str| {
        format!(
            "SELECT * FROM (SELECT {}, ROW_NUMBER() OVER (ORDER BY {keys}) AS strangler_rn \
             FROM (SELECT {} FROM {} t {clause} ORDER BY {keys} LIMIT {}) t) w \
             WHERE strangler_rn % {every} = 0 ORDER BY strangler_rn",
            plan.key_select,
            raw.join(", "),
            plan.dialect.quote(&plan.table),
            every.saturating_mul(count as u64),
        )
    };
    fetch_keys(source, plan, key_len, range, "finding segment boundaries", select).await
}

/// The key of the `offset`th (0-based) row of `plan` in `range`.
pub(super) async fn key_at(
    source: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    range: &KeyRange,
    offset: u64,
) -> Result<Option<Vec<SqlValue>>, ReconcileError> {
    let select = |clause: &str, keys: &str| {
        format!(
            "SELECT {} FROM {} t {clause} ORDER BY {keys} LIMIT 1 OFFSET {offset}",
            plan.key_select,
            plan.dialect.quote(&plan.table),
        )
    };
    let keys = fetch_keys(source, plan, key_len, range, "finding a split key", select).await?;
    Ok(keys.into_iter().next())
}

/// The keys that `select` reads from `plan`'s rows in `range`, given the
/// range's `WHERE` clause and the key expressions joined; `doing` names
/// the query in an error.
async fn fetch_keys(
    source: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    range: &KeyRange,
    doing: &str,
    select: impl FnOnce(&str, &str) -> String,
) -> Result<Vec<Vec<SqlValue>>, ReconcileError> {
    let (clause, binds) = range_where(plan, range.lower.as_deref(), range.upper.as_deref());
    let sql = select(&clause, &plan.key_exprs.join(", "));
    let binds: Vec<&SqlValue> = binds.iter().collect();
    let rows = source
        .fetch(
            &sql,
            &binds,
            &plan.classes[..key_len.min(plan.classes.len())],
            &format!("{doing} of table `{}`", plan.table),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| row[..key_len.min(row.len())].to_vec())
        .collect())
}

#[cfg(test)]
mod tests {
    use mapping::{Identifier, Side};

    use super::*;
    use crate::sql::Dialect;

    fn side(engine: Engine, keys: &[&str], unique_key: bool) -> SidePlan {
        let dialect = Dialect::new(engine);
        let names: Vec<Identifier> = keys.iter().map(|k| Identifier::parse(k).unwrap()).collect();
        SidePlan {
            side: Side::Legacy,
            table: Identifier::parse("lines").unwrap(),
            dialect,
            select_list: String::new(),
            native_select_list: String::new(),
            native_reads: vec![crate::mysql_native::NativeRead::Converted; keys.len()],
            key_select: String::new(),
            key_exprs: names
                .iter()
                .map(|n| dialect.key_expr(n, ColumnClass::Integer))
                .collect(),
            classes: vec![ColumnClass::Integer; keys.len()],
            filter: None,
            checksum_columns: names,
            checksum_integers: vec![true; keys.len()],
            key_columns: keys.iter().map(|k| (*k).to_owned()).collect(),
            unique_key,
            not_null_key: true,
        }
    }

    #[test]
    fn keys_are_counted_distinct_only_where_the_catalog_does_not_prove_them_unique() {
        let sql = |engine, keys: &[&str], unique| checksum_sql(&side(engine, keys, unique), "S", "WHERE x");
        assert_eq!(
            sql(Engine::Postgres, &["id"], true),
            "SELECT COUNT(*), S FROM \"lines\" t WHERE x"
        );
        assert_eq!(
            sql(Engine::Postgres, &["id"], false),
            "SELECT COUNT(*), S, COUNT(DISTINCT t.\"id\") FROM \"lines\" t WHERE x"
        );
        assert_eq!(
            sql(Engine::Postgres, &["a", "b"], false),
            "SELECT COUNT(*), S, COUNT(DISTINCT ROW(t.\"a\", t.\"b\")) FROM \"lines\" t WHERE x"
        );
        assert_eq!(
            sql(Engine::MySql, &["a", "b"], false),
            "SELECT COUNT(*), S, COUNT(DISTINCT t.`a`, t.`b`) FROM `lines` t WHERE x"
        );
    }

    #[test]
    fn a_range_is_settled_only_when_equal_and_free_of_repeated_keys() {
        let sum = |rows, distinct| Sum {
            rows,
            sum: "7".to_owned(),
            distinct,
        };
        assert!(settled(&sum(3, true), &sum(3, true)));
        assert!(!settled(&sum(3, false), &sum(3, false)));
        assert!(!settled(&sum(3, true), &sum(3, false)));
        assert!(!settled(&sum(3, true), &sum(4, true)));
    }
}
