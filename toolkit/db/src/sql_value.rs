//! Engine-neutral column values, for code that copies or compares rows
//! without knowing their types at compile time (backfill, table snapshots).

use std::fmt;

use sqlx::any::{AnyArguments, AnyRow, AnyTypeInfoKind};
use sqlx::query::Query;
use sqlx::{Any, Row, TypeInfo, ValueRef};

/// One column value as read through sqlx's `Any` driver. Serializes as
/// `{"int": 5}`, `{"text": "a"}`, `"null"`, … so that a stored key keeps
/// its type.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// Any integer type.
    Int(i64),
    /// Any floating-point type.
    Float(f64),
    /// Text.
    Text(String),
    /// Binary data.
    Bytes(Vec<u8>),
}

impl fmt::Display for SqlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlValue::Null => f.write_str("NULL"),
            SqlValue::Int(v) => write!(f, "{v}"),
            SqlValue::Float(v) => write!(f, "{v}"),
            SqlValue::Text(v) => write!(f, "{v:?}"),
            SqlValue::Bytes(v) => write!(f, "<{} bytes>", v.len()),
        }
    }
}

/// Reads every column of `row` in order.
pub fn decode_row(row: &AnyRow) -> Result<Vec<SqlValue>, sqlx::Error> {
    (0..row.columns().len())
        .map(|index| {
            let raw = row.try_get_raw(index)?;
            if raw.is_null() {
                return Ok(SqlValue::Null);
            }
            let kind = raw.type_info().kind();
            Ok(match kind {
                AnyTypeInfoKind::Bool => SqlValue::Int(i64::from(row.try_get::<bool, _>(index)?)),
                AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
                    SqlValue::Int(row.try_get(index)?)
                }
                AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => SqlValue::Float(row.try_get(index)?),
                AnyTypeInfoKind::Text => SqlValue::Text(row.try_get(index)?),
                AnyTypeInfoKind::Blob => SqlValue::Bytes(row.try_get(index)?),
                AnyTypeInfoKind::Null => SqlValue::Null,
            })
        })
        .collect()
}

/// Binds `value` as the next parameter of `query`.
pub fn bind_value<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    value: &SqlValue,
) -> Query<'q, Any, AnyArguments<'q>> {
    match value {
        SqlValue::Null => query.bind(None::<String>),
        SqlValue::Int(v) => query.bind(*v),
        SqlValue::Float(v) => query.bind(*v),
        SqlValue::Text(v) => query.bind(v.clone()),
        SqlValue::Bytes(v) => query.bind(v.clone()),
    }
}

/// The name the driver gives a column's declared type, for error messages.
pub fn column_type_name(row: &AnyRow, index: usize) -> String {
    row.columns()
        .get(index)
        .map(|column| sqlx::Column::type_info(column).name().to_owned())
        .unwrap_or_default()
}
