//! Property tests of the structural JSON comparison, through the public
//! [`compare`](crate::compare).
//!
//! Documents are generated as trees and written out by a serializer of
//! this file's own, which can order each object's members any way and
//! spread whitespace. The oracle for "what differs" is the edit itself:
//! each change is made at a known place, whose generalized name is built
//! here independently (`$`, `.key` for identifiers, `["key"]` otherwise,
//! `[*]` for any array index). Checked:
//! - a document compares equal to itself written with its members in any
//!   order and with any whitespace;
//! - changing values at some places, removing members, or changing an
//!   array's length is reported exactly at those places' generalized
//!   names, and nowhere else, whatever the member order on either side.

use std::collections::BTreeSet;

use proptest::prelude::*;
use test_harness::properties::config;

use crate::{compare, Captured, Rules};

/// A JSON value; objects hold distinct keys.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z][a-z0-9_]{0,3}",
        1 => prop::sample::select(vec!["a b", "a.b", "", "1x", "q\"t", "*"]).prop_map(str::to_owned),
    ]
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        (-1000i64..1000).prop_map(Json::Int),
        prop::sample::select(vec![0.5, -2.25, 1e-3, 12345.678]).prop_map(Json::Float),
        "[a-z é\"\\\\/\n]{0,6}".prop_map(Json::Str),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|members| Json::Object(members.into_iter().collect())),
        ]
    })
}

/// Writes `value` with each object's members rotated and reversed as
/// `order` says, and `space` between tokens.
fn write(value: &Json, order: &mut impl Iterator<Item = u8>, space: &str, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Int(n) => out.push_str(&n.to_string()),
        Json::Float(x) => out.push_str(&format!("{x:?}")),
        Json::Str(s) => out.push_str(&serde_json::to_string(s).expect("a string")),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(space);
                write(item, order, space, out);
            }
            out.push(']');
        }
        Json::Object(members) => {
            let mut members: Vec<&(String, Json)> = members.iter().collect();
            let how = order.next().unwrap_or(0);
            if !members.is_empty() {
                let turn = usize::from(how) % members.len();
                members.rotate_left(turn);
            }
            if how & 0x80 != 0 {
                members.reverse();
            }
            out.push('{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(space);
                out.push_str(&serde_json::to_string(key).expect("a key"));
                out.push_str(space);
                out.push(':');
                write(item, order, space, out);
            }
            out.push_str(space);
            out.push('}');
        }
    }
}

fn body(value: &Json, order: &[u8], space: &str) -> Captured {
    let mut out = String::new();
    write(value, &mut order.iter().copied().cycle(), space, &mut out);
    Captured {
        status: 200,
        headers: http::HeaderMap::new(),
        body: out.into(),
    }
}

/// The generalized name of a key step, built independently of the crate.
fn key_step(key: &str) -> String {
    let identifier = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        format!(".{key}")
    } else {
        format!("[{}]", serde_json::to_string(key).expect("a key"))
    }
}

/// Changes `value` at the places `picks` choose, walking down from the
/// root; returns the generalized names of the places changed.
fn change(value: &mut Json, pick: u32, name: String, changed: &mut BTreeSet<String>) {
    match value {
        Json::Object(members) if !members.is_empty() && pick % 4 != 0 => {
            let at = (pick as usize / 4) % members.len();
            if pick % 7 == 1 {
                // Remove the member: named at its place.
                let (key, _) = members.remove(at);
                changed.insert(format!("{name}{}", key_step(&key)));
            } else {
                let (key, item) = &mut members[at];
                let name = format!("{name}{}", key_step(key));
                change(item, pick / 5, name, changed);
            }
        }
        Json::Array(items) if !items.is_empty() && pick % 4 != 0 => {
            let name = format!("{name}[*]");
            if pick % 7 == 1 {
                items.pop();
                changed.insert(name);
            } else {
                let at = (pick as usize / 4) % items.len();
                change(&mut items[at], pick / 5, name, changed);
            }
        }
        _ => {
            // A leaf, or a container taken whole: replaced by a value
            // that differs from it in kind or content.
            *value = match value {
                Json::Str(s) => Json::Str(format!("{s}≠")),
                _ => Json::Str("≠".into()),
            };
            changed.insert(name);
        }
    }
}

/// The fields `compare` reports between two answers, with no rules.
fn fields(a: &Captured, b: &Captured) -> Vec<String> {
    let rules = Rules::new(&[], &[]).expect("empty rules");
    compare(a, b, &rules, &BTreeSet::new()).fields
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_document_equals_itself_in_any_member_order(
        value in json(),
        left in prop::collection::vec(any::<u8>(), 1..8),
        right in prop::collection::vec(any::<u8>(), 1..8),
        space in prop::sample::select(vec!["", " ", "\n  ", "\t"]),
    ) {
        let a = body(&value, &left, "");
        let b = body(&value, &right, space);
        prop_assert_eq!(fields(&a, &b), Vec::<String>::new(), "{:?} vs {:?}", a.body, b.body);
        prop_assert!(compare(&a, &b, &Rules::default(), &BTreeSet::new()).diff.is_empty());
    }

    #[test]
    fn one_difference_is_named_exactly_at_its_place(
        value in json(),
        pick in any::<u32>(),
        left in prop::collection::vec(any::<u8>(), 1..8),
        right in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let mut changed_value = value.clone();
        let mut changed = BTreeSet::new();
        change(&mut changed_value, pick, "$".into(), &mut changed);
        let a = body(&value, &left, "");
        let b = body(&changed_value, &right, " ");
        let expected: Vec<String> = changed.into_iter().collect();
        prop_assert_eq!(fields(&a, &b), expected, "{:?} vs {:?}", a.body, b.body);
        prop_assert_eq!(fields(&b, &a), fields(&a, &b));
    }

    #[test]
    fn differences_are_named_exactly_at_the_changed_places(
        value in json(),
        picks in prop::collection::vec(any::<u32>(), 1..4),
        left in prop::collection::vec(any::<u8>(), 1..8),
        right in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let mut changed_value = value.clone();
        let mut changed = BTreeSet::new();
        for pick in picks {
            change(&mut changed_value, pick, "$".into(), &mut changed);
        }
        let a = body(&value, &left, "");
        let b = body(&changed_value, &right, " ");
        let found = fields(&a, &b);
        // A later change can undo or swallow an earlier one (a container
        // replaced whole after a change inside it): then the oracle is the
        // set of changes still visible, each a prefix-free place.
        let visible: BTreeSet<String> = changed
            .iter()
            .filter(|name| !changed.iter().any(|other| other != *name && is_inside(name, other)))
            .cloned()
            .collect();
        let found_set: BTreeSet<String> = found.iter().cloned().collect();
        prop_assert!(found_set.is_subset(&changed), "found {:?}, changed {:?}\n{:?}\n{:?}", found, changed, a.body, b.body);
        prop_assert!(visible.is_subset(&found_set) || value == changed_value, "found {:?}, changed {:?}\n{:?}\n{:?}", found, changed, a.body, b.body);
    }
}

/// Whether `inner` names a place inside `outer`.
fn is_inside(inner: &str, outer: &str) -> bool {
    inner.len() > outer.len()
        && inner.starts_with(outer)
        && matches!(inner.as_bytes()[outer.len()], b'.' | b'[')
}
