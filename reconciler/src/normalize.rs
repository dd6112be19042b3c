//! Making two sides' values comparable: the mapping's value maps and
//! normalizations, the equality the comparison uses, and the key order that
//! the generated SQL's `ORDER BY` matches.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use mapping::Normalization;
use mapping::Side;
use toolkit_db::sql_value::SqlValue;

/// Applies a column's value map (legacy side only: legacy value → service
/// value) and then its normalizations in order.
pub fn normalize(
    value: SqlValue,
    side: Side,
    values: Option<&BTreeMap<String, String>>,
    steps: &[Normalization],
) -> SqlValue {
    let mut value = match (side, values) {
        (Side::Legacy, Some(map)) => {
            let text = match &value {
                SqlValue::Text(t) => Some(t.clone()),
                SqlValue::Int(i) => Some(i.to_string()),
                _ => None,
            };
            match text.and_then(|t| map.get(&t)) {
                Some(mapped) => SqlValue::Text(mapped.clone()),
                None => value,
            }
        }
        _ => value,
    };
    for step in steps {
        value = apply(value, side, *step);
    }
    value
}

fn apply(value: SqlValue, side: Side, step: Normalization) -> SqlValue {
    match (step, value) {
        (Normalization::Trim, SqlValue::Text(t)) => SqlValue::Text(t.trim().to_owned()),
        (Normalization::Lower, SqlValue::Text(t)) => SqlValue::Text(t.to_lowercase()),
        (Normalization::EmptyIsNull, SqlValue::Text(t)) if t.is_empty() => SqlValue::Null,
        (Normalization::TimestampMs, SqlValue::Text(t)) => match parse_timestamp(&t) {
            Some(at) => SqlValue::Text(at.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => SqlValue::Text(t),
        },
        (Normalization::CentsFromDecimal, value) if side == Side::Legacy => match &value {
            SqlValue::Int(units) => units.checked_mul(100).map_or(value, SqlValue::Int),
            SqlValue::Text(t) => decimal_to_cents(t).map_or(value, SqlValue::Int),
            SqlValue::Float(f) => {
                let cents = (f * 100.0).round();
                if (f * 100.0 - cents).abs() < 1e-6 && cents.abs() < 9.0e15 {
                    SqlValue::Int(cents as i64)
                } else {
                    value
                }
            }
            _ => value,
        },
        (_, value) => value,
    }
}

/// `"12.34"` → 1234, exactly; `None` when the text is not a decimal or
/// has non-zero digits below the cent (those are real differences).
fn decimal_to_cents(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if fraction.len() > 2 && fraction[2..].bytes().any(|b| b != b'0') {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut cents_text = fraction.chars().take(2).collect::<String>();
    while cents_text.len() < 2 {
        cents_text.push('0');
    }
    let cents: i64 = cents_text.parse().ok()?;
    let total = whole.checked_mul(100)?.checked_add(cents)?;
    Some(if negative { -total } else { total })
}

/// Parses RFC 3339 or `YYYY-MM-DD[ T]HH:MM:SS[.fff][±zz[:zz]]` (no zone:
/// UTC), truncated to milliseconds.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Some(millis) = millis_fast(text.as_bytes()) {
        return DateTime::from_timestamp_millis(millis);
    }
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"]
                .iter()
                .find_map(|f| DateTime::parse_from_str(text, f).ok())
                .map(|at| at.with_timezone(&Utc))
        })
        .or_else(|| {
            [
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.fZ",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
            .map(|at| at.and_utc())
        })?;
    let millis = parsed.timestamp_millis();
    DateTime::from_timestamp_millis(millis)
}

/// [`parse_timestamp`]'s instant in milliseconds since the epoch, from the
/// text's bytes.
pub fn timestamp_millis(text: &[u8]) -> Option<i64> {
    let text = text.trim_ascii();
    millis_fast(text).or_else(|| {
        let text = std::str::from_utf8(text).ok()?;
        parse_timestamp(text).map(|at| at.timestamp_millis())
    })
}

/// The spellings databases actually print (`2024-01-01 00:00:01`,
/// `…01.123456`, `…01+00`, `…01.5+05:30`, `…T…Z`), parsed by hand into
/// milliseconds since the epoch: chrono's format-driven parser made up most
/// of a cross-engine comparison's time, and its calendar types still a
/// tenth of it. `None` sends anything else to chrono.
fn millis_fast(b: &[u8]) -> Option<i64> {
    let num = |from: usize, len: usize| -> Option<u32> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b' ' | b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset_seconds: i64 = match b.get(i) {
        None => 0,
        Some(b'Z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let hours = num(i + 1, 2)?;
            let rest = &b[i + 3..];
            let minutes = match rest {
                [] => 0,
                [b':', _, _] => num(i + 4, 2)?,
                [_, _] => num(i + 3, 2)?,
                _ => return None,
            };
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    let utc = utc_millis([year, month, day, hour, minute, second], nanos)?;
    Some(utc - offset_seconds * 1000)
}

/// Milliseconds since the epoch of a UTC date and time of day given as
/// `[year, month, day, hour, minute, second]` and nanoseconds (truncated
/// to the millisecond), or `None` when that is no valid date and time
/// (month 0 or 13, February 30, hour 24, …), as chrono would refuse it.
pub(crate) fn utc_millis(fields: [u32; 6], nanos: u32) -> Option<i64> {
    let [year, month, day, hour, minute, second] = fields;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 || nanos >= 1_000_000_000 {
        return None;
    }
    let seconds =
        days_from_civil(i64::from(year), month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(seconds * 1000 + i64::from(nanos / 1_000_000))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * i64::from((month + 9) % 12) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Whether two normalized values are the same. Lenient across types, so
/// that engines that store a value differently still agree: integers and
/// floats compare as numbers, text that spells a number equals that number,
/// and bytes equal the same UTF-8 text. NULL equals only NULL.
pub fn same(a: &SqlValue, b: &SqlValue) -> bool {
    use SqlValue::{Bytes, Float, Int, Null, Text};
    match (a, b) {
        (Null, Null) => true,
        (Null, _) | (_, Null) => false,
        (Int(x), Int(y)) => x == y,
        (Float(x), Float(y)) => x == y,
        (Int(i), Float(f)) | (Float(f), Int(i)) => (*i as f64) == *f,
        (Text(x), Text(y)) => x == y,
        (Bytes(x), Bytes(y)) => x == y,
        (Text(t), Int(i)) | (Int(i), Text(t)) => t.parse::<i64>().is_ok_and(|p| p == *i),
        (Text(t), Float(f)) | (Float(f), Text(t)) => t.parse::<f64>().is_ok_and(|p| p == *f),
        (Text(t), Bytes(b)) | (Bytes(b), Text(t)) => t.as_bytes() == b.as_slice(),
        (Int(_) | Float(_), Bytes(_)) | (Bytes(_), Int(_) | Float(_)) => false,
    }
}

/// The order of keys, the same as the generated `ORDER BY`: numbers
/// numerically, text and bytes by their bytes.
pub fn compare_keys(a: &[SqlValue], b: &[SqlValue]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = compare_value(x, y);
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

fn compare_value(a: &SqlValue, b: &SqlValue) -> Ordering {
    use SqlValue::{Bytes, Float, Int, Null, Text};
    let rank = |v: &SqlValue| match v {
        Null => 0,
        Int(_) | Float(_) => 1,
        Text(_) | Bytes(_) => 2,
    };
    match (a, b) {
        (Int(x), Int(y)) => x.cmp(y),
        (Int(x), Float(y)) => (*x as f64).total_cmp(y),
        (Float(x), Int(y)) => x.total_cmp(&(*y as f64)),
        (Float(x), Float(y)) => x.total_cmp(y),
        (Text(x), Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Text(x), Bytes(y)) => x.as_bytes().cmp(y.as_slice()),
        (Bytes(x), Text(y)) => x.as_slice().cmp(y.as_bytes()),
        (Bytes(x), Bytes(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_become_exact_cents() {
        assert_eq!(decimal_to_cents("12.34"), Some(1234));
        assert_eq!(decimal_to_cents("-0.5"), Some(-50));
        assert_eq!(decimal_to_cents("7"), Some(700));
        assert_eq!(decimal_to_cents("1.230"), Some(123));
        assert_eq!(decimal_to_cents("1.235"), None);
        assert_eq!(decimal_to_cents("abc"), None);
    }

    #[test]
    fn timestamps_compare_in_utc_to_the_millisecond() {
        let a = parse_timestamp("2026-11-23 14:08:28.123456").unwrap();
        let b = parse_timestamp("2026-11-23T15:08:28.123+01:00").unwrap();
        let c = parse_timestamp("2026-11-23 14:08:28.1239+00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(
            a.to_rfc3339_opts(SecondsFormat::Millis, true),
            "2026-11-23T14:08:28.123Z"
        );
    }

    #[test]
    fn the_hand_parser_agrees_with_chrono() {
        for text in [
            "2024-01-01 00:00:01",
            "2024-01-01 00:00:01.000000",
            "2024-01-01 00:00:01+00",
            "2024-02-29T23:59:59.9999Z",
            "2024-01-01 05:30:01.5+05:30",
            "2024-01-01 00:00:01-0800",
            "1999-12-31 23:59:59.123456789",
            "1969-12-31 23:59:59.9995",
            "0001-01-01 00:00:00",
            "2000-02-29 12:00:00",
            "1600-03-01 00:00:00.5-01:30",
        ] {
            let fast = millis_fast(text.as_bytes());
            let slow = ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"]
                .iter()
                .find_map(|f| DateTime::parse_from_str(text, f).ok())
                .map(|at| at.timestamp_millis())
                .or_else(|| {
                    NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), "%Y-%m-%d%#z%H:%M:%S%.f")
                        .ok()
                        .or_else(|| {
                            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                                .iter()
                                .find_map(|f| {
                                    NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), f).ok()
                                })
                        })
                        .map(|at| at.and_utc().timestamp_millis())
                });
            assert_eq!(fast, slow, "{text}");
        }
        for invalid in [
            "2024-13-01 00:00:00",
            "2023-02-29 00:00:00",
            "1900-02-29 00:00:00",
            "2024-04-31 00:00:00",
            "2024-01-00 00:00:00",
            "0000-00-00 00:00:00",
            "2024-01-01 24:00:00",
            "2024-01-01 00:60:00",
            "2024-01-01 00:00:60",
            "yesterday at noon!!",
        ] {
            assert_eq!(millis_fast(invalid.as_bytes()), None, "{invalid}");
        }
    }

    /// Every day of eight centuries, at a time of day, against chrono's
    /// calendar: the hand-written day count must not drift.
    #[test]
    fn the_hand_calendar_agrees_with_chrono_day_by_day() {
        let mut date = chrono::NaiveDate::from_ymd_opt(1600, 1, 1).unwrap();
        let end = chrono::NaiveDate::from_ymd_opt(2400, 12, 31).unwrap();
        while date <= end {
            let text = format!("{} 13:14:15.678", date.format("%Y-%m-%d"));
            let expected = date
                .and_hms_milli_opt(13, 14, 15, 678)
                .unwrap()
                .and_utc()
                .timestamp_millis();
            assert_eq!(millis_fast(text.as_bytes()), Some(expected), "{text}");
            date = date.succ_opt().unwrap();
        }
    }

    #[test]
    fn the_value_map_applies_to_the_legacy_side_only() {
        let map = BTreeMap::from([("placed".to_owned(), "PLACED".to_owned())]);
        let legacy = normalize(SqlValue::Text("placed".into()), Side::Legacy, Some(&map), &[]);
        let service = normalize(SqlValue::Text("placed".into()), Side::Service, Some(&map), &[]);
        assert_eq!(legacy, SqlValue::Text("PLACED".into()));
        assert_eq!(service, SqlValue::Text("placed".into()));
    }

    #[test]
    fn keys_order_like_the_sql() {
        let k = |a: i64, b: &str| vec![SqlValue::Int(a), SqlValue::Text(b.to_owned())];
        assert_eq!(compare_keys(&k(1, "b"), &k(2, "a")), Ordering::Less);
        assert_eq!(compare_keys(&k(1, "B"), &k(1, "a")), Ordering::Less);
        assert_eq!(compare_keys(&k(1, "a"), &k(1, "a")), Ordering::Equal);
    }
}
