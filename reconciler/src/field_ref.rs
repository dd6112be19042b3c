//! One field of a row as it was read, borrowed from the reader's buffer:
//! what lets the merge find two rows equal without decoding either.
//!
//! Decoding a row builds a `Vec` and a `String` per text value, and on a
//! cross-engine pair (where the `COPY` lines cannot be compared byte for
//! byte) that allocation was the largest part of the client's time. Most
//! rows are equal, so the merge first looks at both rows' fields in place
//! ([`FieldRef`]) and decodes only when that cannot settle it.
//!
//! The invariant: two views that [`crate::merge`] calls equal decode to
//! values it would also call equal. A view is therefore only as precise as
//! the decoding it stands for, and says [`FieldRef::Unknown`] whenever the
//! raw bytes are not the decoded value (an escaped `COPY` field, a failed
//! typed read), which sends the row down the decoding path.

use toolkit_db::sql_value::SqlValue;

use crate::copy_text::parse_int;
use crate::mysql_native::{is_binary_temporal, temporal_millis, NativeRead};
use crate::normalize::timestamp_millis;
use crate::sql::ColumnClass;

/// One field as read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FieldRef<'a> {
    /// SQL NULL.
    Null,
    /// An integer (or a boolean as 0/1), as decoding would give it.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text whose bytes are exactly the decoded value's.
    Text(&'a [u8]),
    /// Binary data.
    Bytes(&'a [u8]),
    /// A MySQL date or time stamp in binary form, read as `read` says
    /// ([`crate::mysql_native`]): equal bytes read alike decode to equal
    /// text. `millis` is the instant its text parses to, if any.
    Moment {
        /// The binary value, its length byte first.
        raw: &'a [u8],
        /// How the column was read.
        read: NativeRead,
        /// [`crate::mysql_native::temporal_millis`] of it.
        millis: Option<i64>,
    },
    /// Only decoding can tell.
    Unknown,
}

impl<'a> FieldRef<'a> {
    /// A decoded value, seen the same way.
    pub(crate) fn of(value: &'a SqlValue) -> Self {
        match value {
            SqlValue::Null => Self::Null,
            SqlValue::Int(i) => Self::Int(*i),
            SqlValue::Float(f) => Self::Float(*f),
            SqlValue::Text(t) => Self::Text(t.as_bytes()),
            SqlValue::Bytes(b) => Self::Bytes(b),
        }
    }

    /// One field of a `COPY` text line, standing for
    /// [`crate::copy_text::decode_field`]'s value.
    fn copy_field(field: &'a [u8], class: ColumnClass) -> Self {
        if field == b"\\N" {
            return Self::Null;
        }
        if field.contains(&b'\\') {
            // Escaped: the decoded text is not these bytes.
            return Self::Unknown;
        }
        match class {
            ColumnClass::Integer => parse_int(field).map_or(Self::Unknown, Self::Int),
            ColumnClass::Bool => match field {
                b"t" => Self::Int(1),
                b"f" => Self::Int(0),
                _ => Self::Unknown,
            },
            ColumnClass::Float => std::str::from_utf8(field)
                .ok()
                .and_then(|text| text.parse::<f64>().ok())
                .map_or(Self::Unknown, Self::Float),
            // `bytea` comes hex-encoded, and unescaping starts with `\`.
            ColumnClass::Bytes => Self::Unknown,
            ColumnClass::Text | ColumnClass::Other => Self::Text(field),
        }
    }

    /// One column of a native MySQL row, read as `read` says, standing for
    /// the reader's `decode_mysql` value.
    fn mysql_field(
        row: &'a sqlx::mysql::MySqlRow,
        index: usize,
        class: ColumnClass,
        read: NativeRead,
    ) -> Self {
        use sqlx::{Row, ValueRef};
        if read.is_temporal() {
            // Before the NULL check, which calls a zero date NULL.
            return match row.try_get_unchecked::<&[u8], _>(index) {
                Ok(raw) if is_binary_temporal(raw) => Self::Moment {
                    raw,
                    read,
                    millis: temporal_millis(raw, read),
                },
                // Sent as text, which is the decoded value itself.
                Ok(raw) => Self::Text(raw),
                Err(_) => match row.try_get_raw(index) {
                    Ok(raw) if raw.is_null() => Self::Null,
                    _ => Self::Unknown,
                },
            };
        }
        match row.try_get_raw(index) {
            Ok(raw) if raw.is_null() => return Self::Null,
            Ok(_) => {}
            Err(_) => return Self::Unknown,
        }
        let known = match class {
            ColumnClass::Integer | ColumnClass::Bool => row.try_get::<i64, _>(index).ok().map(Self::Int),
            ColumnClass::Float => row
                .try_get::<f64, _>(index)
                .or_else(|_| row.try_get::<f32, _>(index).map(f64::from))
                .ok()
                .map(Self::Float),
            ColumnClass::Bytes => row.try_get_unchecked::<&[u8], _>(index).ok().map(Self::Bytes),
            ColumnClass::Text | ColumnClass::Other => {
                row.try_get_unchecked::<&[u8], _>(index).ok().map(Self::Text)
            }
        };
        known.unwrap_or(Self::Unknown)
    }
}

/// A `COPY` text line split at its tabs.
type LineFields<'a> = std::slice::Split<'a, u8, fn(&u8) -> bool>;

/// The fields of a row, in select-list order, one at a time: nothing is
/// collected, so a row of any width costs no allocation and nothing is
/// copied but the views.
pub(crate) enum Fields<'a> {
    /// A decoded row's values.
    Values(std::slice::Iter<'a, SqlValue>),
    /// A `COPY` text line's fields, with their classes.
    Line(std::iter::Zip<LineFields<'a>, std::slice::Iter<'a, ColumnClass>>),
    /// A native MySQL row's columns.
    MySql {
        /// The row.
        row: &'a sqlx::mysql::MySqlRow,
        /// Each column's class.
        classes: &'a [ColumnClass],
        /// How each column was read.
        reads: &'a [NativeRead],
        /// The next column.
        index: usize,
    },
}

impl<'a> Fields<'a> {
    /// A decoded row's values.
    pub(crate) fn values(values: &'a [SqlValue]) -> Self {
        Self::Values(values.iter())
    }

    /// The fields of a `COPY` text line, one per class.
    pub(crate) fn copy_line(line: &'a [u8], classes: &'a [ColumnClass]) -> Self {
        let tab: fn(&u8) -> bool = |b| *b == b'\t';
        Self::Line(line.split(tab).zip(classes.iter()))
    }

    /// The columns of a native MySQL row, one per class, each read as
    /// `reads` says.
    pub(crate) fn mysql(
        row: &'a sqlx::mysql::MySqlRow,
        classes: &'a [ColumnClass],
        reads: &'a [NativeRead],
    ) -> Self {
        Self::MySql {
            row,
            classes,
            reads,
            index: 0,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = FieldRef<'a>;

    fn next(&mut self) -> Option<FieldRef<'a>> {
        match self {
            Self::Values(values) => values.next().map(FieldRef::of),
            Self::Line(fields) => fields
                .next()
                .map(|(field, class)| FieldRef::copy_field(field, *class)),
            Self::MySql {
                row,
                classes,
                reads,
                index,
            } => {
                let class = *classes.get(*index)?;
                let read = reads.get(*index).copied().unwrap_or(NativeRead::Converted);
                let field = FieldRef::mysql_field(row, *index, class, read);
                *index += 1;
                Some(field)
            }
        }
    }
}

/// The instant a field's text parses to, as
/// [`crate::normalize::timestamp_millis`] finds it; `None` when it is no
/// time stamp or cannot be known without decoding.
pub(crate) fn field_millis(field: FieldRef<'_>) -> Option<i64> {
    match field {
        FieldRef::Text(text) => timestamp_millis(text),
        FieldRef::Moment { millis, .. } => millis,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy_text::decode_field;

    /// Every view that is not `Unknown` must be exactly the decoded value.
    #[test]
    fn copy_views_are_the_decoded_values_or_unknown() {
        let cases: &[(&[u8], ColumnClass)] = &[
            (b"\\N", ColumnClass::Text),
            (b"-42", ColumnClass::Integer),
            (b"4x", ColumnClass::Integer),
            (b"t", ColumnClass::Bool),
            (b"f", ColumnClass::Bool),
            (b"1.5", ColumnClass::Float),
            (b"\\\\x00ff", ColumnClass::Bytes),
            (b"a\\tb", ColumnClass::Text),
            (b"\\\\N", ColumnClass::Text),
            ("é".as_bytes(), ColumnClass::Other),
            (b"2024-01-01 00:00:01+00", ColumnClass::Other),
        ];
        for (field, class) in cases {
            let decoded = decode_field(field, *class);
            let view = FieldRef::copy_field(field, *class);
            assert!(
                view == FieldRef::Unknown || view == FieldRef::of(&decoded),
                "{:?} as {class:?}: view {view:?}, decoded {decoded:?}",
                String::from_utf8_lossy(field)
            );
        }
        assert_eq!(
            FieldRef::copy_field(b"a\\tb", ColumnClass::Text),
            FieldRef::Unknown
        );
        assert_eq!(
            FieldRef::copy_field(b"\\\\N", ColumnClass::Text),
            FieldRef::Unknown
        );
        assert_eq!(
            FieldRef::copy_field(b"-42", ColumnClass::Integer),
            FieldRef::Int(-42)
        );
    }

    #[test]
    fn a_line_splits_into_one_view_per_column() {
        let classes = [ColumnClass::Integer, ColumnClass::Text, ColumnClass::Other];
        let fields: Vec<_> = Fields::copy_line(b"7\tpaid\t\\N", &classes).collect();
        assert_eq!(
            fields.as_slice(),
            &[FieldRef::Int(7), FieldRef::Text(b"paid"), FieldRef::Null]
        );
    }
}
