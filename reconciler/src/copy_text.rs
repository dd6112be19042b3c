//! PostgreSQL's `COPY … TO STDOUT` text format, one field at a time: what
//! the streaming merge's reader ([`crate::read`]) decodes a row's key from,
//! and the rest of a row when its line differs from the other side's.

use toolkit_db::sql_value::SqlValue;

use crate::sql::ColumnClass;

/// `bytes` as text; invalid UTF-8 (which neither engine should send) is
/// replaced rather than refused. The strict check is the fast one.
pub(crate) fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// One field of a `COPY` text line, decoded as the `Any` driver would have
/// decoded the same column: `\N` is NULL, integers and booleans (0/1) are
/// integers, floats floats, `bytea` bytes, everything else text.
pub(crate) fn decode_field(field: &[u8], class: ColumnClass) -> SqlValue {
    if field == b"\\N" {
        return SqlValue::Null;
    }
    match class {
        ColumnClass::Integer => match parse_int(field) {
            Some(n) => SqlValue::Int(n),
            None => SqlValue::Text(unescape(field)),
        },
        ColumnClass::Bool => match field {
            b"t" => SqlValue::Int(1),
            b"f" => SqlValue::Int(0),
            _ => SqlValue::Text(unescape(field)),
        },
        ColumnClass::Float => {
            let text = unescape(field);
            match text.parse::<f64>() {
                Ok(f) => SqlValue::Float(f),
                Err(_) => SqlValue::Text(text),
            }
        }
        ColumnClass::Bytes => {
            let text = unescape(field);
            match text.strip_prefix("\\x").and_then(from_hex) {
                Some(bytes) => SqlValue::Bytes(bytes),
                None => SqlValue::Text(text),
            }
        }
        ColumnClass::Text | ColumnClass::Other => SqlValue::Text(unescape(field)),
    }
}

/// A decimal integer, without allocating; `None` when the field is not one.
pub(crate) fn parse_int(field: &[u8]) -> Option<i64> {
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 19 {
        return std::str::from_utf8(field).ok()?.parse().ok();
    }
    let mut n: i64 = 0;
    for b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(b - b'0'))?;
    }
    if negative {
        Some(n)
    } else {
        n.checked_neg()
    }
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Undoes `COPY`'s text escapes (`\\`, `\t`, `\n`, …, octal `\123`, hex
/// `\x7f`).
fn unescape(field: &[u8]) -> String {
    if !field.contains(&b'\\') {
        return text(field);
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i == field.len() {
            out.push(b);
            continue;
        }
        let c = field[i];
        i += 1;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod differential;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_decode_like_the_any_driver() {
        assert_eq!(decode_field(b"\\N", ColumnClass::Text), SqlValue::Null);
        assert_eq!(decode_field(b"-42", ColumnClass::Integer), SqlValue::Int(-42));
        assert_eq!(
            decode_field(b"-9223372036854775808", ColumnClass::Integer),
            SqlValue::Int(i64::MIN)
        );
        assert_eq!(decode_field(b"t", ColumnClass::Bool), SqlValue::Int(1));
        assert_eq!(decode_field(b"1.5", ColumnClass::Float), SqlValue::Float(1.5));
        assert_eq!(
            decode_field(b"\\\\x00ff", ColumnClass::Bytes),
            SqlValue::Bytes(vec![0, 255])
        );
        assert_eq!(
            decode_field(b"a\\tb\\\\c\\nd\\101", ColumnClass::Text),
            SqlValue::Text("a\tb\\c\ndA".to_owned())
        );
        assert_eq!(
            decode_field("é".as_bytes(), ColumnClass::Other),
            SqlValue::Text("é".to_owned())
        );
    }
}
