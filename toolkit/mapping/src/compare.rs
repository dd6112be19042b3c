//! The parts of a mapping file that only the reconciler reads: how a table's
//! rows are compared, as opposed to how they are copied.
//!
//! ```toml
//! [capabilities.orders]
//! source_of_truth = "legacy"             # or "service"; default "legacy"
//!
//! [[capabilities.orders.tables]]
//! # … legacy, service, key, columns, legacy_filter as for backfill …
//! ignore = ["updated_at"]                 # legacy columns copied but not compared
//! normalize = { total = "cents_from_decimal", created_at = "timestamp_ms", note = ["trim", "lower"] }
//! values = { status = { placed = "PLACED", cancelled = "CANCELLED" } }
//! service_filter = "origin = 'service'"   # optional SQL predicate on the service's rows
//! updated_at_column = "updated_at"        # legacy column holding each row's change time
//! settle_seconds = 30                     # rows changed in the last 30 s are "settling" (needs updated_at_column)
//! ```
//!
//! Every field is optional, so files written for backfill keep parsing and
//! backfill ignores all of them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::error::MappingError;
use crate::identifier::{ColumnPair, Identifier};
use crate::side::Side;

/// Which side is right when the two disagree: the other side is the one a
/// repair would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceOfTruth {
    /// The monolith's database (the default during dual writes).
    #[default]
    Legacy,
    /// The service's database.
    Service,
}

impl SourceOfTruth {
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        match name {
            "legacy" => Ok(Self::Legacy),
            "service" => Ok(Self::Service),
            other => Err(format!(
                "source_of_truth must be \"legacy\" or \"service\", not {other:?}"
            )),
        }
    }

    /// The database that is right.
    pub fn side(self) -> Side {
        match self {
            Self::Legacy => Side::Legacy,
            Self::Service => Side::Service,
        }
    }

    /// The database a repair changes: the one that is not the source of truth.
    pub fn follower(self) -> Side {
        self.side().other()
    }
}

/// How one column's values are made comparable before comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// Leading and trailing white space removed (both sides).
    Trim,
    /// Lower-cased (both sides).
    Lower,
    /// The legacy side holds an amount in units (a decimal such as `12.34`,
    /// or an integer): it becomes integer cents (`1234`). The service side is
    /// taken as cents already.
    CentsFromDecimal,
    /// Both sides are parsed as timestamps (RFC 3339 or `YYYY-MM-DD
    /// HH:MM:SS[.fff][±zz]`, no zone meaning UTC) and compared in UTC,
    /// truncated to milliseconds.
    TimestampMs,
    /// An empty string counts as NULL (both sides).
    EmptyIsNull,
}

impl Normalization {
    /// The names accepted in the mapping file.
    pub const NAMES: &'static str = "trim, lower, cents_from_decimal, timestamp_ms, empty_is_null";

    fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "trim" => Self::Trim,
            "lower" => Self::Lower,
            "cents_from_decimal" => Self::CentsFromDecimal,
            "timestamp_ms" => Self::TimestampMs,
            "empty_is_null" => Self::EmptyIsNull,
            other => return Err(format!("unknown normalization {other:?}; known: {}", Self::NAMES)),
        })
    }

    /// Whether it changes both sides alike; a raw checksum can then stand
    /// in for a comparison of normalized rows (equal raw rows stay equal).
    pub fn is_symmetric(self) -> bool {
        !matches!(self, Self::CentsFromDecimal)
    }
}

/// A table's change time (`updated_at_column`) and its settle window: rows
/// changed within the last `seconds` on either side are reported as
/// settling, not as divergences (none when `seconds` is 0). Incremental runs
/// read the rows changed since the last clean run by this column, and
/// repairs guard on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleWindow {
    /// Length of the window.
    pub seconds: u64,
    /// The column holding each row's last change time, on each side.
    pub column: ColumnPair,
}

/// How a table's rows are compared; all empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompareSettings {
    /// Mapped legacy columns that are not compared.
    pub ignore: Vec<Identifier>,
    /// Normalizations per legacy column, applied in order.
    pub normalize: BTreeMap<Identifier, Vec<Normalization>>,
    /// Legacy value → service value, per legacy column (text values).
    pub values: BTreeMap<Identifier, BTreeMap<String, String>>,
    /// Optional SQL predicate on the service's rows.
    pub service_filter: Option<String>,
    /// Optional settle window.
    pub settle: Option<SettleWindow>,
}

/// One normalization or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawNormalize {
    One(String),
    Many(Vec<String>),
}

/// The SQL predicate of the optional field `field` (`legacy_filter`, …),
/// refused when blank.
pub(crate) fn predicate(
    filter: Option<Spanned<String>>,
    field: &str,
    invalid: &impl Fn(usize, String) -> MappingError,
) -> Result<Option<String>, MappingError> {
    match filter {
        Some(filter) if filter.get_ref().trim().is_empty() => Err(invalid(
            filter.span().start,
            format!("{field} is empty; remove it or write a predicate"),
        )),
        Some(filter) => Ok(Some(filter.into_inner())),
        None => Ok(None),
    }
}

/// The raw reconciler fields of one table.
#[derive(Default)]
pub(crate) struct RawCompare {
    pub ignore: Option<Spanned<Vec<String>>>,
    pub normalize: Option<Spanned<BTreeMap<String, RawNormalize>>>,
    pub values: Option<Spanned<BTreeMap<String, BTreeMap<String, String>>>>,
    pub service_filter: Option<Spanned<String>>,
    pub settle_seconds: Option<Spanned<u64>>,
    pub updated_at_column: Option<Spanned<String>>,
}

/// Checks the reconciler fields of a table whose `columns` and `key` are
/// already checked; `invalid` builds an error at a byte offset.
pub(crate) fn check_compare(
    raw: RawCompare,
    table: &Identifier,
    columns: &[ColumnPair],
    key: &[ColumnPair],
    invalid: &impl Fn(usize, String) -> MappingError,
) -> Result<CompareSettings, MappingError> {
    // A mapped, non-key legacy column named in field `field`.
    let non_key = |name: &str, field: &str, offset: usize| -> Result<Identifier, MappingError> {
        let Some(pair) = columns.iter().find(|c| c.legacy.as_str() == name) else {
            return Err(invalid(
                offset,
                format!("{field} names column `{name}`, which is not in the `columns` of table `{table}`"),
            ));
        };
        if key.contains(pair) {
            return Err(invalid(
                offset,
                format!("{field} names key column `{name}` of table `{table}`; keys are compared as stored"),
            ));
        }
        Ok(pair.legacy.clone())
    };
    let mut settings = CompareSettings::default();
    if let Some(ignore) = raw.ignore {
        for name in ignore.get_ref() {
            settings
                .ignore
                .push(non_key(name, "ignore", ignore.span().start)?);
        }
    }
    if let Some(normalize) = raw.normalize {
        let start = normalize.span().start;
        for (name, spec) in normalize.into_inner() {
            let column = non_key(&name, "normalize", start)?;
            let names = match spec {
                RawNormalize::One(one) => vec![one],
                RawNormalize::Many(many) => many,
            };
            let steps = names
                .iter()
                .map(|n| Normalization::parse(n).map_err(|m| invalid(start, format!("column `{name}`: {m}"))))
                .collect::<Result<Vec<_>, _>>()?;
            settings.normalize.insert(column, steps);
        }
    }
    if let Some(values) = raw.values {
        let start = values.span().start;
        for (name, map) in values.into_inner() {
            settings.values.insert(non_key(&name, "values", start)?, map);
        }
    }
    settings.service_filter = predicate(raw.service_filter, "service_filter", invalid)?;
    let change_time = |column: &Spanned<String>, seconds: u64| -> Result<SettleWindow, MappingError> {
        let Some(pair) = columns.iter().find(|c| c.legacy.as_str() == column.get_ref()) else {
            return Err(invalid(
                column.span().start,
                format!(
                    "updated_at_column `{}` is not in the `columns` of table `{table}`",
                    column.get_ref()
                ),
            ));
        };
        Ok(SettleWindow {
            seconds,
            column: pair.clone(),
        })
    };
    settings.settle = match (raw.settle_seconds, raw.updated_at_column) {
        (None, None) => None,
        (Some(seconds), Some(column)) => Some(change_time(&column, seconds.into_inner())?),
        (Some(seconds), None) => {
            return Err(invalid(
                seconds.span().start,
                format!("table `{table}` has settle_seconds but no updated_at_column; name the column that holds each row's change time"),
            ))
        }
        // A change time alone serves incremental runs and repair guards;
        // nothing is held back as settling.
        (None, Some(column)) => Some(change_time(&column, 0)?),
    };
    Ok(settings)
}
