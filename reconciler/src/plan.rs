//! Checking a table's mapping against both live schemas and turning it into
//! what the comparison runs: per side, the columns to select (keys first,
//! then compared columns, then the settle column) and how to read them.
//!
//! Every check happens before any row is compared: an unknown table or
//! column, keys whose types cannot be ordered alike, or a row whose key is
//! NULL (looked for only where the catalog does not prove the key columns
//! NOT NULL), stop the run.

use std::collections::BTreeMap;

use mapping::Side;
use mapping::{Identifier, Normalization, TableMapping};
use toolkit_db::Engine;

use crate::catalog::{key_is_not_null, key_is_unique};
use crate::mysql_native::NativeRead;
use crate::source::Source;
use crate::sql::{ColumnClass, Dialect};
use crate::ReconcileError;

/// One side of a planned table.
#[derive(Debug, Clone)]
pub struct SidePlan {
    /// Which side.
    pub side: Side,
    /// The table.
    pub table: Identifier,
    /// The SQL dialect.
    pub dialect: Dialect,
    /// The select list, in row order.
    pub select_list: String,
    /// The select list of the merge's native MySQL reads: `select_list`
    /// with the conversions `native_reads` leave out.
    pub native_select_list: String,
    /// How the native MySQL reader takes each selected column, in row
    /// order (all [`NativeRead::Converted`] on other engines).
    pub native_reads: Vec<NativeRead>,
    /// The key columns' part of the select list (an index can answer it).
    pub key_select: String,
    /// The key expressions as ordered and compared.
    pub key_exprs: Vec<String>,
    /// The class of each selected column, in row order.
    pub classes: Vec<ColumnClass>,
    /// The optional row filter (trusted SQL from the mapping file).
    pub filter: Option<String>,
    /// The key and compared columns, for checksums.
    pub checksum_columns: Vec<Identifier>,
    /// Which of `checksum_columns` are integers on both sides: checksums
    /// hash those as integers, which equal values hash alike whatever
    /// their width, without spelling them as text.
    pub checksum_integers: Vec<bool>,
    /// This side's names of the key columns, in key order.
    pub key_columns: Vec<String>,
    /// Whether a primary key or unique index proves the key unique here;
    /// otherwise reads and checksums check it in the data.
    pub unique_key: bool,
    /// Whether the column definitions prove every key column NOT NULL
    /// here; otherwise the plan looked for a NULL key in the data.
    pub not_null_key: bool,
}

impl SidePlan {
    /// This side's key columns as errors name them: `` `code` `` or
    /// `` (`order_id`, `line_no`) ``.
    pub fn key_names(&self) -> String {
        let names: Vec<String> = self.key_columns.iter().map(|c| format!("`{c}`")).collect();
        match names.as_slice() {
            [one] => one.clone(),
            _ => format!("({})", names.join(", ")),
        }
    }
}

/// A compared, non-key column.
#[derive(Debug, Clone)]
pub struct ComparedColumn {
    /// Its position in a fetched row.
    pub index: usize,
    /// Legacy name.
    pub legacy: String,
    /// Service name.
    pub service: String,
    /// Normalizations, in order.
    pub steps: Vec<Normalization>,
    /// The value map, legacy → service.
    pub values: Option<BTreeMap<String, String>>,
}

/// The change-time column of a table on both sides.
#[derive(Debug, Clone)]
pub struct ChangeTime {
    /// The monolith's column and its declared type.
    pub legacy: (Identifier, String),
    /// The service's column and its declared type.
    pub service: (Identifier, String),
}

impl ChangeTime {
    /// The column and declared type on `side`.
    pub fn on(&self, side: Side) -> (&Identifier, &str) {
        let (column, declared) = match side {
            Side::Legacy => &self.legacy,
            Side::Service => &self.service,
        };
        (column, declared)
    }
}

/// A table ready to compare.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// The monolith's side.
    pub legacy: SidePlan,
    /// The service's side.
    pub service: SidePlan,
    /// Legacy names of the key columns, in key order.
    pub key_columns: Vec<String>,
    /// The compared columns, in select-list order (their `index` rises).
    pub compared: Vec<ComparedColumn>,
    /// Position of the change-time column in a fetched row, and the window.
    pub settle: Option<(usize, u64)>,
    /// The change-time column on each side (`updated_at_column`), which
    /// incremental runs select changed rows by.
    pub change_time: Option<ChangeTime>,
    /// Whether a checksum of raw rows stands for a comparison of normalized
    /// rows: no value maps and only normalizations that treat both sides
    /// alike.
    pub checksum_sound: bool,
    /// Whether two rows read as text lines (PostgreSQL's `COPY`) are equal
    /// when their lines are: checksum-sound, and every column of the same
    /// class on both sides, so that equal text decodes to equal values.
    pub raw_comparable: bool,
}

impl TablePlan {
    /// Number of key columns.
    pub fn key_len(&self) -> usize {
        self.key_columns.len()
    }
}

/// Checks `table` against both schemas and plans its comparison.
pub async fn plan_table(
    table: &TableMapping,
    legacy: &mut Source,
    service: &mut Source,
) -> Result<TablePlan, ReconcileError> {
    let compare = &table.compare;
    let key: Vec<_> = table.key.clone();
    let compared: Vec<_> = table
        .columns
        .iter()
        .filter(|c| !key.contains(c) && !compare.ignore.contains(&c.legacy))
        .cloned()
        .collect();
    let mut selected: Vec<_> = key.iter().chain(&compared).cloned().collect();
    let settle = match &compare.settle {
        Some(window) => {
            let index = match selected.iter().position(|c| *c == window.column) {
                Some(index) => index,
                None => {
                    selected.push(window.column.clone());
                    selected.len() - 1
                }
            };
            Some((index, window.seconds))
        }
        None => None,
    };
    let legacy_types = side_types(legacy, &table.legacy_table, selected.iter().map(|c| &c.legacy)).await?;
    let service_types =
        side_types(service, &table.service_table, selected.iter().map(|c| &c.service)).await?;
    let legacy_dialect = legacy.dialect();
    let service_dialect = service.dialect();
    for (i, pair) in key.iter().enumerate() {
        let (l, s) = (&legacy_types[i], &service_types[i]);
        let (lc, sc) = (legacy_dialect.classify(l), service_dialect.classify(s));
        if !lc.key_compatible(sc) {
            return Err(ReconcileError::IncompatibleKey {
                table: table.legacy_table.to_string(),
                column: pair.legacy.to_string(),
                legacy_type: l.clone(),
                service_type: s.clone(),
            });
        }
    }
    let change_time = settle.map(|(index, _)| ChangeTime {
        legacy: (selected[index].legacy.clone(), legacy_types[index].clone()),
        service: (selected[index].service.clone(), service_types[index].clone()),
    });
    let legacy_reads = native_reads(
        legacy,
        &table.legacy_table,
        &selected,
        Side::Legacy,
        &legacy_types,
        key.len(),
    )
    .await?;
    let service_reads = native_reads(
        service,
        &table.service_table,
        &selected,
        Side::Service,
        &service_types,
        key.len(),
    )
    .await?;
    let side_plan = |side: Side, dialect: Dialect, types: &[String], reads: Vec<NativeRead>| {
        let (name, filter) = match side {
            Side::Legacy => (&table.legacy_table, &table.legacy_filter),
            Side::Service => (&table.service_table, &compare.service_filter),
        };
        let classes: Vec<ColumnClass> = types.iter().map(|t| dialect.classify(t)).collect();
        let names: Vec<Identifier> = selected.iter().map(|c| c.on(side).clone()).collect();
        let selects: Vec<String> = names
            .iter()
            .zip(&classes)
            .map(|(n, c)| dialect.select_expr(n, *c))
            .collect();
        let native_selects: Vec<String> = names
            .iter()
            .zip(&selects)
            .zip(&reads)
            .map(|((name, converted), read)| match read {
                NativeRead::Converted => converted.clone(),
                _ => dialect.column(name),
            })
            .collect();
        SidePlan {
            side,
            table: name.clone(),
            dialect,
            select_list: selects.join(", "),
            native_select_list: native_selects.join(", "),
            native_reads: reads,
            key_select: selects[..key.len()].join(", "),
            key_exprs: names
                .iter()
                .zip(&classes)
                .take(key.len())
                .map(|(n, c)| dialect.key_expr(n, *c))
                .collect(),
            classes,
            filter: filter.clone(),
            checksum_columns: names[..key.len() + compared.len()].to_vec(),
            checksum_integers: Vec::new(),
            key_columns: names[..key.len()].iter().map(Identifier::to_string).collect(),
            unique_key: false,
            not_null_key: false,
        }
    };
    let mut legacy_plan = side_plan(Side::Legacy, legacy_dialect, &legacy_types, legacy_reads);
    let mut service_plan = side_plan(Side::Service, service_dialect, &service_types, service_reads);
    let integers: Vec<bool> = (0..legacy_plan.checksum_columns.len())
        .map(|i| {
            legacy_plan.classes.get(i) == Some(&ColumnClass::Integer)
                && service_plan.classes.get(i) == Some(&ColumnClass::Integer)
        })
        .collect();
    legacy_plan.checksum_integers = integers.clone();
    service_plan.checksum_integers = integers;
    // The key columns lead each side's checksum columns.
    let key_of = |plan: &SidePlan| plan.checksum_columns[..key.len()].to_vec();
    legacy_plan.unique_key = key_is_unique(legacy, &table.legacy_table, &key_of(&legacy_plan)).await;
    service_plan.unique_key = key_is_unique(service, &table.service_table, &key_of(&service_plan)).await;
    legacy_plan.not_null_key = key_is_not_null(legacy, &table.legacy_table, &key_of(&legacy_plan)).await;
    service_plan.not_null_key = key_is_not_null(service, &table.service_table, &key_of(&service_plan)).await;
    for (source, plan) in [(legacy, &legacy_plan), (service, &service_plan)] {
        if !plan.not_null_key {
            refuse_null_key(source, plan, &key_of(plan)).await?;
        }
    }
    let checksum_sound = compare.values.is_empty()
        && compare
            .normalize
            .values()
            .all(|steps| steps.iter().all(|s| s.is_symmetric()));
    let raw_comparable = checksum_sound && legacy_plan.classes == service_plan.classes;
    Ok(TablePlan {
        raw_comparable,
        legacy: legacy_plan,
        service: service_plan,
        key_columns: key.iter().map(|c| c.legacy.to_string()).collect(),
        compared: compared
            .iter()
            .enumerate()
            .map(|(i, c)| ComparedColumn {
                index: key.len() + i,
                legacy: c.legacy.to_string(),
                service: c.service.to_string(),
                steps: compare.normalize.get(&c.legacy).cloned().unwrap_or_default(),
                values: compare.values.get(&c.legacy).cloned(),
            })
            .collect(),
        settle,
        change_time,
        checksum_sound,
    })
}

/// Looks for one row of `plan`'s table (within its filter) with a NULL in
/// a `key` column, and stops the run if there is one: no comparison would
/// ever read it. One `LIMIT 1` query, under the session's statement
/// timeout, which an index on the key answers at once.
async fn refuse_null_key(
    source: &mut Source,
    plan: &SidePlan,
    key: &[Identifier],
) -> Result<(), ReconcileError> {
    let dialect = plan.dialect;
    let nulls: Vec<String> = key
        .iter()
        .map(|column| format!("{} IS NULL", dialect.column(column)))
        .collect();
    let mut conditions = Vec::with_capacity(2);
    if let Some(filter) = &plan.filter {
        conditions.push(format!("({filter})"));
    }
    conditions.push(format!("({})", nulls.join(" OR ")));
    let sql = format!(
        "SELECT 1 FROM {} t WHERE {} LIMIT 1",
        dialect.quote(&plan.table),
        conditions.join(" AND ")
    );
    tracing::debug!(side = %plan.side, table = %plan.table, "looking for a NULL key in the data");
    let doing = format!("looking for a NULL key in table `{}`", plan.table);
    let rows = source.fetch(&sql, &[], &[ColumnClass::Integer], &doing).await?;
    if rows.is_empty() {
        Ok(())
    } else {
        Err(ReconcileError::NullKey {
            side: plan.side,
            table: plan.table.to_string(),
            key: plan.key_names(),
        })
    }
}

/// How the merge's native MySQL reader takes each of `selected` on `side`
/// ([`NativeRead`]); key columns (the first `key_len`) keep their
/// conversion, since their decoded values order the merge.
async fn native_reads(
    source: &mut Source,
    table: &Identifier,
    selected: &[mapping::ColumnPair],
    side: Side,
    types: &[String],
    key_len: usize,
) -> Result<Vec<NativeRead>, ReconcileError> {
    let full = source.mysql_column_types(table).await?;
    let dialect = source.dialect();
    Ok(selected
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (column, declared))| {
            let name = column.on(side).as_str();
            let full_type = full
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, t)| t.as_str());
            match full_type {
                Some(full_type) if i >= key_len => NativeRead::of(full_type, dialect.classify(declared)),
                _ => NativeRead::Converted,
            }
        })
        .collect())
}

/// The declared types of `columns` in `table`, in order, or an error that
/// names the side, the table and the first missing column.
async fn side_types<'a>(
    source: &mut Source,
    table: &Identifier,
    columns: impl Iterator<Item = &'a Identifier>,
) -> Result<Vec<String>, ReconcileError> {
    let known = source.columns(table).await?;
    if known.is_empty() {
        return Err(ReconcileError::UnknownTable {
            side: source.side(),
            table: table.to_string(),
        });
    }
    let case_insensitive = source.dialect().engine() == Engine::MySql;
    columns
        .map(|column| {
            known
                .iter()
                .find(|(name, _)| {
                    name == column.as_str()
                        || (case_insensitive && name.eq_ignore_ascii_case(column.as_str()))
                })
                .map(|(_, declared)| declared.clone())
                .ok_or_else(|| ReconcileError::UnknownColumn {
                    side: source.side(),
                    table: table.to_string(),
                    column: column.to_string(),
                    known: known
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}
