//! The canonical form of a JSON body, which both the comparison and the rendering work on:
//! members sorted by key, numbers reduced to one representation per value (`10`, `10.0` and
//! `1e1` are the same integer), and every ignored or noisy place already removed, so neither
//! the field list nor the diff can mention it. Also its pretty-printed text.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as _;

use crate::json_path::{Cursor, Matcher, Step};

/// A JSON value in canonical form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    /// Every integral number that `i128` holds exactly, whether written `10`, `10.0` or `1e1`.
    Int(i128),
    /// Any other number: a fraction, or an integral value too large for `i128`.
    Float(f64),
    Str(String),
    Array(Vec<Node>),
    /// Members sorted by key; keys are unique because the parser keeps the last duplicate.
    Object(Vec<(String, Node)>),
}

/// Beyond this an integral `f64` is kept as a float: below it the conversion to `i128` is exact.
const I128_SAFE: f64 = 1.0e38;

/// Parses a body straight into canonical form, leaving out what `matcher` removes.
///
/// `None` when the body is not one JSON value; `Some(None)` when `matcher` removes all of it.
/// Parsing directly (rather than into a `serde_json::Value` first) skips removed places
/// without building them and halves the work on large bodies.
pub(crate) fn parse_canonical(body: &[u8], matcher: &Matcher<'_>) -> Option<Option<Node>> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let node = match matcher.root() {
        Some(cursor) => Some(NodeSeed { matcher, cursor }.deserialize(&mut deserializer).ok()?),
        None => {
            IgnoredAny::deserialize(&mut deserializer).ok()?;
            None
        }
    };
    deserializer.end().ok()?;
    Some(node)
}

/// Builds one value, knowing where it is so that removed children are skipped.
///
/// serde_json bounds nesting at 128 levels for any visitor, which bounds this recursion.
/// (With serde_json's `arbitrary_precision` feature numbers would arrive as maps; nothing in
/// the workspace enables it.)
struct NodeSeed<'m, 'p> {
    matcher: &'m Matcher<'p>,
    cursor: Cursor,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, '_> {
    type Value = Node;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Node, E> {
        Ok(Node::Bool(flag))
    }

    fn visit_i64<E: de::Error>(self, int: i64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(int)))
    }

    fn visit_u64<E: de::Error>(self, int: u64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(int)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Node, E> {
        Ok(float(value))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Node, E> {
        Ok(Node::Str(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Node, E> {
        Ok(Node::Str(text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Node, A::Error> {
        let mut kept = Vec::new();
        for index in 0.. {
            let more = match self.matcher.descend(&self.cursor, Step::Index(index)) {
                Some(cursor) => match items.next_element_seed(NodeSeed {
                    matcher: self.matcher,
                    cursor,
                })? {
                    Some(item) => {
                        kept.push(item);
                        true
                    }
                    None => false,
                },
                None => items.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                break;
            }
        }
        Ok(Node::Array(kept))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Node, A::Error> {
        let mut members: Vec<(String, Node)> = Vec::new();
        while let Some(key) = entries.next_key::<String>()? {
            match self.matcher.descend(&self.cursor, Step::Key(&key)) {
                Some(cursor) => {
                    let member = entries.next_value_seed(NodeSeed {
                        matcher: self.matcher,
                        cursor,
                    })?;
                    members.push((key, member));
                }
                None => {
                    entries.next_value::<IgnoredAny>()?;
                }
            }
        }
        // Stable, so that of duplicate keys the last one can win, as in `serde_json::Value`.
        members.sort_by(|left, right| left.0.cmp(&right.0));
        members.dedup_by(|later, earlier| {
            let duplicate = later.0 == earlier.0;
            if duplicate {
                std::mem::swap(later, earlier);
            }
            duplicate
        });
        Ok(Node::Object(members))
    }
}

fn float(value: f64) -> Node {
    if value.fract() == 0.0 && value.abs() < I128_SAFE {
        // Exact: the value is integral and well inside the range of i128.
        Node::Int(value as i128)
    } else {
        Node::Float(value)
    }
}

/// Appends `text` as a JSON string literal.
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            control if u32::from(control) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(control)));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// Appends the pretty-printed text of a node (two-space indent, one member or element per line).
pub(crate) fn push_pretty(out: &mut String, node: &Node, indent: usize) {
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Node::Int(int) => out.push_str(&int.to_string()),
        Node::Float(value) => match serde_json::Number::from_f64(*value) {
            Some(number) => out.push_str(&number.to_string()),
            // Parsed JSON has no NaN or infinity; this keeps the output JSON regardless.
            None => out.push_str("null"),
        },
        Node::Str(text) => push_json_string(out, text),
        Node::Array(items) if items.is_empty() => out.push_str("[]"),
        Node::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                newline(out, indent + 1);
                push_pretty(out, item, indent + 1);
            }
            newline(out, indent);
            out.push(']');
        }
        Node::Object(members) if members.is_empty() => out.push_str("{}"),
        Node::Object(members) => {
            out.push('{');
            for (index, (key, member)) in members.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                newline(out, indent + 1);
                push_json_string(out, key);
                out.push_str(": ");
                push_pretty(out, member, indent + 1);
            }
            newline(out, indent);
            out.push('}');
        }
    }
}

fn newline(out: &mut String, indent: usize) {
    out.push('\n');
    for _ in 0..indent {
        out.push_str("  ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_path::PathPattern;

    fn canonical(json: &str, patterns: &[&str]) -> Option<Node> {
        let patterns: Vec<PathPattern> = patterns
            .iter()
            .map(|text| PathPattern::parse(text).unwrap())
            .collect();
        parse_canonical(json.as_bytes(), &Matcher::new(&patterns)).unwrap()
    }

    fn pretty(json: &str, patterns: &[&str]) -> String {
        let mut out = String::new();
        if let Some(node) = canonical(json, patterns) {
            push_pretty(&mut out, &node, 0);
        }
        out
    }

    #[test]
    fn numbers_have_one_form_per_value() {
        let forms = ["10", "10.0", "1e1", "100e-1"];
        for form in forms {
            assert_eq!(canonical(form, &[]), Some(Node::Int(10)), "{form}");
        }
        assert_eq!(canonical("-0.0", &[]), Some(Node::Int(0)));
        assert_eq!(
            canonical("18446744073709551615", &[]),
            Some(Node::Int(i128::from(u64::MAX)))
        );
        assert_ne!(
            canonical("18446744073709551615", &[]),
            canonical("1.8446744073709552e19", &[])
        );
        assert_eq!(canonical("0.5", &[]), Some(Node::Float(0.5)));
        assert_eq!(pretty("[1e300, 2.50, 3.0]", &[]), "[\n  1e+300,\n  2.5,\n  3\n]");
    }

    #[test]
    fn members_are_sorted_and_removed_places_left_out() {
        let text = pretty(
            r#"{"b": {"y": 1, "x": [true, null]}, "a": "t\"\n", "drop": 1, "c": [{"drop": 2, "k": {}}]}"#,
            &["$..drop"],
        );
        assert_eq!(
            text,
            "{\n  \"a\": \"t\\\"\\n\",\n  \"b\": {\n    \"x\": [\n      true,\n      null\n    ],\n    \"y\": 1\n  },\n  \"c\": [\n    {\n      \"k\": {}\n    }\n  ]\n}"
        );
        assert_eq!(canonical("[1, 2]", &["$"]), None);
        assert_eq!(
            canonical("[1, 2, 3]", &["$[1]"]),
            Some(Node::Array(vec![Node::Int(1), Node::Int(3)]))
        );
        assert_eq!(
            canonical(r#"{"a": 1, "b": 2, "a": 3}"#, &[]),
            Some(Node::Object(vec![
                ("a".to_owned(), Node::Int(3)),
                ("b".to_owned(), Node::Int(2))
            ]))
        );
    }

    #[test]
    fn only_one_json_value_is_json() {
        let matcher = Matcher::default();
        for text in ["", "{", "{} {}", "[1,]", "nul", "\"\\ud800\""] {
            assert_eq!(parse_canonical(text.as_bytes(), &matcher), None, "{text}");
        }
        assert_eq!(
            parse_canonical(b" [] \n", &matcher),
            Some(Some(Node::Array(Vec::new())))
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse_canonical(deep.as_bytes(), &matcher), None);
    }

    #[test]
    fn pretty_text_is_json_that_parses_back() {
        let source = r#"{"\u0001ctl": "\t\u001f", "n": [-1.25, 12345678901234567890, {}], "e": []}"#;
        let text = pretty(source, &[]);
        let reparsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let original: serde_json::Value = serde_json::from_str(source).unwrap();
        assert_eq!(reparsed, original);
    }
}
