//! MySQL columns the merge's native reader takes in the server's binary
//! form instead of converted by a `CAST`.
//!
//! The select list converts every column to something every driver reads:
//! integers `CAST(… AS SIGNED)`, dates and times `CAST(… AS CHAR)`. On the
//! native connection (prepared statements, binary rows) that conversion is
//! the server's work for nothing: for the 1M-row orders table, MariaDB
//! spent 0.52 s of CPU on the converted `SELECT` and 0.34 s on the plain
//! one. So signed integers are read as they are, and `DATE`, `DATETIME`
//! and `TIMESTAMP` as their binary form, which [`temporal_text`] spells
//! exactly as `CAST(… AS CHAR)` would: `YYYY-MM-DD`, or `YYYY-MM-DD
//! HH:MM:SS` and as many fractional digits as the column declares, zero
//! dates included. Everything else, and every key column (whose decoded
//! value orders the merge), keeps its `CAST`.

use crate::normalize::utc_millis;
use crate::sql::ColumnClass;

/// How the native reader selects and decodes one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeRead {
    /// Through the select list's conversion.
    Converted,
    /// A signed integer type, as stored.
    SignedInteger,
    /// `DATE`, as the binary protocol sends it.
    Date,
    /// `DATETIME(fsp)` or `TIMESTAMP(fsp)` (in the session's UTC), as the
    /// binary protocol sends it; `fsp` fractional digits.
    DateTime {
        /// Fractional second digits the column declares, 0 to 6.
        fsp: u8,
    },
}

impl NativeRead {
    /// How to read a non-key column whose `COLUMN_TYPE` is `column_type`
    /// (`int(11)`, `bigint unsigned`, `datetime(6)`, …) and whose class is
    /// `class`.
    pub fn of(column_type: &str, class: ColumnClass) -> Self {
        let column_type = column_type.trim().to_ascii_lowercase();
        let base = column_type
            .split(|c: char| c == '(' || c.is_ascii_whitespace())
            .next()
            .unwrap_or_default();
        let fsp = || {
            let inside = column_type.split_once('(')?.1.split_once(')')?.0;
            inside.trim().parse::<u8>().ok().filter(|fsp| *fsp <= 6)
        };
        match (class, base) {
            (ColumnClass::Integer, "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint")
                if !column_type.contains("unsigned") =>
            {
                Self::SignedInteger
            }
            (ColumnClass::Other, "date") => Self::Date,
            (ColumnClass::Other, "datetime" | "timestamp") => match column_type.contains('(') {
                false => Self::DateTime { fsp: 0 },
                true => fsp().map_or(Self::Converted, |fsp| Self::DateTime { fsp }),
            },
            _ => Self::Converted,
        }
    }

    /// Whether the column is a date or a time stamp read in binary form.
    pub fn is_temporal(self) -> bool {
        matches!(self, Self::Date | Self::DateTime { .. })
    }
}

/// The fields of a binary `DATE`/`DATETIME`/`TIMESTAMP` value: `raw` is
/// the length byte (0, 4, 7 or 11) and what follows it. `None` when `raw`
/// is not that (a value the server sent as text starts with a digit).
fn binary_fields(raw: &[u8]) -> Option<([u32; 6], u32)> {
    let (&len, rest) = raw.split_first()?;
    if !matches!(len, 0 | 4 | 7 | 11) || rest.len() != usize::from(len) {
        return None;
    }
    let byte = |i: usize| u32::from(rest.get(i).copied().unwrap_or(0));
    let year = byte(0) | byte(1) << 8;
    let micro = byte(7) | byte(8) << 8 | byte(9) << 16 | byte(10) << 24;
    Some(([year, byte(2), byte(3), byte(4), byte(5), byte(6)], micro))
}

/// Whether `raw` is a binary temporal value rather than text.
pub(crate) fn is_binary_temporal(raw: &[u8]) -> bool {
    binary_fields(raw).is_some()
}

/// The text `CAST(… AS CHAR)` gives for a binary temporal value, or `None`
/// when `raw` is not one or `read` is not temporal.
pub(crate) fn temporal_text(raw: &[u8], read: NativeRead) -> Option<String> {
    let ([year, month, day, hour, minute, second], micro) = binary_fields(raw)?;
    match read {
        NativeRead::Date => Some(format!("{year:04}-{month:02}-{day:02}")),
        NativeRead::DateTime { fsp } => {
            let mut text = format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}");
            if fsp > 0 {
                let digits = format!("{micro:06}");
                text.push('.');
                text.push_str(digits.get(..usize::from(fsp))?);
            }
            Some(text)
        }
        NativeRead::Converted | NativeRead::SignedInteger => None,
    }
}

/// The instant, in milliseconds since the epoch, that
/// [`crate::normalize::timestamp_millis`] finds in [`temporal_text`]'s
/// text: `None` for a date alone (no time of day to parse) and for zero or
/// otherwise invalid dates.
pub(crate) fn temporal_millis(raw: &[u8], read: NativeRead) -> Option<i64> {
    let (fields, micro) = binary_fields(raw)?;
    let NativeRead::DateTime { fsp } = read else {
        return None;
    };
    // The text keeps `fsp` digits of the microseconds.
    let kept = micro - micro % 10u32.pow(6 - u32::from(fsp.min(6)));
    utc_millis(fields, kept.checked_mul(1000)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::timestamp_millis;

    #[test]
    fn column_types_choose_how_a_column_is_read() {
        let of = NativeRead::of;
        assert_eq!(of("int(11)", ColumnClass::Integer), NativeRead::SignedInteger);
        assert_eq!(of("bigint(20)", ColumnClass::Integer), NativeRead::SignedInteger);
        assert_eq!(
            of("int(10) unsigned", ColumnClass::Integer),
            NativeRead::Converted
        );
        assert_eq!(of("year(4)", ColumnClass::Integer), NativeRead::Converted);
        assert_eq!(of("bit(1)", ColumnClass::Integer), NativeRead::Converted);
        assert_eq!(
            of("datetime(6)", ColumnClass::Other),
            NativeRead::DateTime { fsp: 6 }
        );
        assert_eq!(
            of("timestamp", ColumnClass::Other),
            NativeRead::DateTime { fsp: 0 }
        );
        assert_eq!(of("DATE", ColumnClass::Other), NativeRead::Date);
        assert_eq!(of("time(3)", ColumnClass::Other), NativeRead::Converted);
        assert_eq!(of("datetime(9)", ColumnClass::Other), NativeRead::Converted);
        assert_eq!(of("decimal(10,2)", ColumnClass::Other), NativeRead::Converted);
        assert_eq!(of("varchar(20)", ColumnClass::Text), NativeRead::Converted);
    }

    #[test]
    fn binary_values_are_spelled_as_the_server_casts_them() {
        let full = [11, 0xE8, 0x07, 2, 29, 23, 59, 58, 0x40, 0xE2, 0x01, 0x00]; // 2024-02-29 23:59:58.123456
        assert_eq!(
            temporal_text(&full, NativeRead::DateTime { fsp: 6 }).as_deref(),
            Some("2024-02-29 23:59:58.123456")
        );
        assert_eq!(
            temporal_text(&full, NativeRead::DateTime { fsp: 3 }).as_deref(),
            Some("2024-02-29 23:59:58.123")
        );
        let seconds = [7, 0xE8, 0x07, 1, 2, 3, 4, 5];
        assert_eq!(
            temporal_text(&seconds, NativeRead::DateTime { fsp: 2 }).as_deref(),
            Some("2024-01-02 03:04:05.00")
        );
        assert_eq!(
            temporal_text(&[4, 0xE8, 0x07, 1, 2], NativeRead::DateTime { fsp: 0 }).as_deref(),
            Some("2024-01-02 00:00:00")
        );
        assert_eq!(
            temporal_text(&[0], NativeRead::DateTime { fsp: 6 }).as_deref(),
            Some("0000-00-00 00:00:00.000000")
        );
        assert_eq!(
            temporal_text(&[0], NativeRead::Date).as_deref(),
            Some("0000-00-00")
        );
        assert_eq!(
            temporal_text(b"2024-01-02", NativeRead::Date),
            None,
            "text is not binary"
        );
        assert_eq!(temporal_text(&[7, 1, 2], NativeRead::Date), None, "truncated");
    }

    /// The instant must be exactly what parsing the spelled text finds.
    #[test]
    fn instants_agree_with_the_parsed_text() {
        let values: [&[u8]; 6] = [
            &[11, 0xE8, 0x07, 2, 29, 23, 59, 58, 0x40, 0xE2, 0x01, 0x00],
            &[7, 0xB2, 0x07, 12, 31, 23, 59, 59],
            &[4, 0xE8, 0x07, 1, 2],
            &[0],
            &[4, 0xE8, 0x07, 0, 0],
            &[4, 0xE7, 0x07, 2, 29],
        ];
        for raw in values {
            for read in [
                NativeRead::Date,
                NativeRead::DateTime { fsp: 0 },
                NativeRead::DateTime { fsp: 3 },
                NativeRead::DateTime { fsp: 6 },
            ] {
                let text = temporal_text(raw, read).unwrap();
                assert_eq!(
                    temporal_millis(raw, read),
                    timestamp_millis(text.as_bytes()),
                    "{text} ({read:?})"
                );
            }
        }
    }
}
