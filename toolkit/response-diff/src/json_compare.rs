//! Structural comparison of two canonical JSON bodies: which generalized places differ.
//!
//! Only the deepest differing place is named, because that is what someone fixing the service
//! needs (`$.items[*].price_cents`, not `$.items`). Each value is visited once and members are
//! matched by a merge of the two sorted member lists, so the work is linear in the body size.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use crate::canonical::Node;
use crate::json_path::{general_name, GeneralStep};

/// Adds to `fields` the generalized name of every place where `left` and `right` differ.
pub(crate) fn differing_places(left: &Node, right: &Node, fields: &mut BTreeSet<String>) {
    let mut path = Vec::new();
    walk(left, right, &mut path, fields);
}

fn walk<'a>(left: &'a Node, right: &'a Node, path: &mut Vec<GeneralStep<'a>>, fields: &mut BTreeSet<String>) {
    match (left, right) {
        (Node::Array(left_items), Node::Array(right_items)) => {
            path.push(GeneralStep::AnyIndex);
            if left_items.len() != right_items.len() {
                fields.insert(general_name(path));
            }
            for (left_item, right_item) in left_items.iter().zip(right_items) {
                walk(left_item, right_item, path, fields);
            }
            path.pop();
        }
        (Node::Object(left_members), Node::Object(right_members)) => {
            walk_members(left_members, right_members, path, fields);
        }
        // Canonical numbers make plain equality right: an integer never equals a float.
        (left, right) if left == right => {}
        _ => {
            fields.insert(general_name(path));
        }
    }
}

fn walk_members<'a>(
    left: &'a [(String, Node)],
    right: &'a [(String, Node)],
    path: &mut Vec<GeneralStep<'a>>,
    fields: &mut BTreeSet<String>,
) {
    let (mut at_left, mut at_right) = (0, 0);
    loop {
        match (left.get(at_left), right.get(at_right)) {
            (Some((left_key, left_node)), Some((right_key, right_node))) => match left_key.cmp(right_key) {
                Ordering::Equal => {
                    path.push(GeneralStep::Key(left_key));
                    walk(left_node, right_node, path, fields);
                    path.pop();
                    at_left += 1;
                    at_right += 1;
                }
                Ordering::Less => {
                    on_one_side(left_key, path, fields);
                    at_left += 1;
                }
                Ordering::Greater => {
                    on_one_side(right_key, path, fields);
                    at_right += 1;
                }
            },
            (Some((key, _)), None) => {
                on_one_side(key, path, fields);
                at_left += 1;
            }
            (None, Some((key, _))) => {
                on_one_side(key, path, fields);
                at_right += 1;
            }
            (None, None) => break,
        }
    }
}

fn on_one_side<'a>(key: &'a str, path: &mut Vec<GeneralStep<'a>>, fields: &mut BTreeSet<String>) {
    path.push(GeneralStep::Key(key));
    fields.insert(general_name(path));
    path.pop();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::parse_canonical;
    use crate::json_path::Matcher;

    fn places(left: &str, right: &str) -> Vec<String> {
        let parse = |text: &str| {
            parse_canonical(text.as_bytes(), &Matcher::default())
                .unwrap()
                .unwrap()
        };
        let mut fields = BTreeSet::new();
        differing_places(&parse(left), &parse(right), &mut fields);
        fields.into_iter().collect()
    }

    #[test]
    fn the_root_is_a_place_too() {
        assert_eq!(places("1", "\"1\""), ["$"]);
        assert_eq!(places("[1]", "{}"), ["$"]);
        assert_eq!(places("[1, 2]", "[1]"), ["$[*]"]);
        assert_eq!(places("0.1", "0.10"), Vec::<String>::new());
    }

    #[test]
    fn nested_arrays_and_missing_members_are_named_at_their_depth() {
        assert_eq!(
            places(
                r#"{"m": [[1, 2], [3]], "a": {"b": null}}"#,
                r#"{"m": [[1, 5], [3, 4]], "a": {}}"#
            ),
            ["$.a.b", "$.m[*][*]"]
        );
        assert_eq!(places(r#"{"a": null}"#, r#"{"a": false}"#), ["$.a"]);
    }
}
