//! Keys written as a user would write them, the one form every error,
//! terminal line and rendered report uses: a single-column key is its value
//! (`C015`, `42`), a composite key its values in parentheses
//! (`(1000000, 1)`). Text is quoted, JSON style, only when it would
//! otherwise be ambiguous: empty, padded, holding a separator or a quote,
//! spelling a number (the text `"42"` is not the integer `42`) or `NULL`.
//! Bytes are `0x…` hex.
//!
//! The JSON report keeps keys as arrays of values; this is only their text.

use serde_json::Value;

/// `key` as text: its value alone when it has one column, `(a, b)` when
/// it has several.
pub fn key_text(key: &[Value]) -> String {
    match key {
        [single] => value_text(single),
        _ => format!("({})", key.iter().map(value_text).collect::<Vec<_>>().join(", ")),
    }
}

/// `key` with the names of its `columns`, for errors: `code = C015`, or
/// `(order_id, line_no) = (1000000, 1)`.
pub fn named_key_text(columns: &[impl AsRef<str>], key: &[Value]) -> String {
    let names = match columns {
        [single] => single.as_ref().to_owned(),
        _ => format!(
            "({})",
            columns.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
        ),
    };
    format!("{names} = {}", key_text(key))
}

/// One key value as text.
fn value_text(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::String(text) if needs_quotes(text) => Value::from(text.as_str()).to_string(),
        Value::String(text) => text.clone(),
        Value::Object(map) => match map.get("bytes_hex") {
            Some(Value::String(hex)) if map.len() == 1 => format!("0x{hex}"),
            _ => value.to_string(),
        },
        Value::Number(_) | Value::Bool(_) | Value::Array(_) => value.to_string(),
    }
}

/// Whether `text`, written bare, could be read as something else.
fn needs_quotes(text: &str) -> bool {
    text.is_empty()
        || text.trim() != text
        || text.eq_ignore_ascii_case("null")
        || text.parse::<f64>().is_ok()
        || text.starts_with("0x")
        || text
            .chars()
            .any(|c| c.is_control() || matches!(c, ',' | '(' | ')' | '"' | '\'' | '\\' | '='))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn single_keys_are_their_value_and_composite_keys_a_tuple() {
        assert_eq!(key_text(&[json!("C015")]), "C015");
        assert_eq!(key_text(&[json!(42)]), "42");
        assert_eq!(key_text(&[json!(1_000_000), json!(1)]), "(1000000, 1)");
        assert_eq!(key_text(&[json!("é"), json!(-3)]), "(é, -3)");
        assert_eq!(key_text(&[json!("order 7")]), "order 7");
        assert_eq!(key_text(&[json!({ "bytes_hex": "00ff" })]), "0x00ff");
        assert_eq!(key_text(&[Value::Null]), "NULL");
    }

    #[test]
    fn text_is_quoted_only_where_bare_text_would_mislead() {
        for (text, shown) in [
            ("42", r#""42""#),
            ("1.5e3", r#""1.5e3""#),
            ("", r#""""#),
            (" C015", r#"" C015""#),
            ("null", r#""null""#),
            ("a, b", r#""a, b""#),
            ("(x)", r#""(x)""#),
            ("it's", r#""it's""#),
            ("say \"hi\"", r#""say \"hi\"""#),
            ("tab\there", r#""tab\there""#),
            ("0xff", r#""0xff""#),
        ] {
            assert_eq!(key_text(&[json!(text)]), shown, "{text:?}");
        }
        assert_eq!(key_text(&[json!("a, b"), json!(2)]), r#"("a, b", 2)"#);
    }

    #[test]
    fn named_keys_put_the_columns_before_the_values() {
        assert_eq!(named_key_text(&["code"], &[json!("C015")]), "code = C015");
        assert_eq!(
            named_key_text(&["order_id", "line_no"], &[json!(1_000_000), json!(1)]),
            "(order_id, line_no) = (1000000, 1)"
        );
    }
}
