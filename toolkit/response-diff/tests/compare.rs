//! The comparison as the facade uses it: two captured answers, rules, learned noise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use response_diff::{compare, differing_fields, Captured, Comparison, RuleError, Rules};

fn answer(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> Captured {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(*name, HeaderValue::from_static(value));
    }
    Captured {
        status,
        headers: map,
        body: Bytes::from(body.to_owned()),
    }
}

fn json(body: &str) -> Captured {
    answer(200, &[("content-type", "application/json")], body)
}

fn rules(ignore: &[&str], headers: &[&str]) -> Rules {
    let owned = |entries: &[&str]| {
        entries
            .iter()
            .map(|entry| (*entry).to_owned())
            .collect::<Vec<_>>()
    };
    Rules::new(&owned(ignore), &owned(headers)).unwrap()
}

fn no_noise() -> BTreeSet<String> {
    BTreeSet::new()
}

fn noise(fields: &[&str]) -> BTreeSet<String> {
    fields.iter().map(|field| (*field).to_owned()).collect()
}

fn check(primary: &Captured, candidate: &Captured, rules: &Rules) -> Comparison {
    compare(primary, candidate, rules, &no_noise())
}

#[test]
fn member_order_and_number_spelling_do_not_matter() {
    let legacy = json(r#"{"id": 7, "price": 10, "tags": ["a", "b"], "size": {"w": 1.5, "h": 2}}"#);
    let service = json(r#"{"size": {"h": 2.0, "w": 1.50}, "tags": ["a", "b"], "price": 1e1, "id": 7.0}"#);
    let comparison = check(&legacy, &service, &Rules::default());
    assert!(comparison.is_match(), "{comparison:?}");
    assert_eq!(comparison, Comparison::default());
}

#[test]
fn a_changed_element_is_reported_at_its_generalized_path_with_a_readable_diff() {
    let legacy = json(
        r#"{"items": [{"sku": "a", "price_cents": 100}, {"sku": "b", "price_cents": 200},
            {"sku": "c", "price_cents": 300}], "title": "Cart"}"#,
    );
    let service = json(
        r#"{"items": [{"sku": "a", "price_cents": 100}, {"sku": "b", "price_cents": 200},
            {"sku": "c", "price_cents": 301}], "title": "Cart"}"#,
    );
    let comparison = check(&legacy, &service, &Rules::default());
    assert_eq!(comparison.fields, ["$.items[*].price_cents"]);
    assert!(!comparison.is_match());
    assert!(
        comparison.diff.starts_with("--- legacy\n+++ service\n@@ "),
        "{}",
        comparison.diff
    );
    let lines: Vec<&str> = comparison.diff.lines().collect();
    assert!(
        lines.contains(&"-      \"price_cents\": 300,"),
        "{}",
        comparison.diff
    );
    assert!(
        lines.contains(&"+      \"price_cents\": 301,"),
        "{}",
        comparison.diff
    );
    assert!(lines.contains(&"       \"sku\": \"c\""), "{}", comparison.diff);
}

#[test]
fn differences_are_named_by_their_deepest_place_sorted_and_deduplicated() {
    let legacy = json(
        r#"{"items": [{"p": 1, "q": 1}, {"p": 2, "q": 1}], "title": "a", "gone": 1,
            "kind": {"x": 1}, "odd key": 1, "list": [1, 2]}"#,
    );
    let service = json(
        r#"{"items": [{"p": 3, "q": 1}, {"p": 4, "q": 1}], "title": "b", "new": null,
            "kind": [1], "odd key": 2, "list": [1, 2, 3]}"#,
    );
    let comparison = check(&legacy, &service, &Rules::default());
    assert_eq!(
        comparison.fields,
        [
            "$.gone",
            "$.items[*].p",
            "$.kind",
            "$.list[*]",
            "$.new",
            "$.title",
            "$[\"odd key\"]"
        ]
    );
}

#[test]
fn ignored_paths_are_neither_reported_nor_shown() {
    let legacy = json(
        r#"{"updated_at": "2024-01-01T00:00:00Z", "items": [{"id": 1, "updated_at": "t1"}],
            "meta": {"updated_at": "m1", "version": 3}, "title": "Old"}"#,
    );
    let service = json(
        r#"{"updated_at": "2025-06-30T12:00:00Z", "items": [{"id": 1, "updated_at": "t2"}],
            "meta": {"updated_at": "m2", "version": 3}, "title": "New"}"#,
    );
    let top_level_only = rules(&["$.updated_at"], &[]);
    let comparison = check(&legacy, &service, &top_level_only);
    assert_eq!(
        comparison.fields,
        ["$.items[*].updated_at", "$.meta.updated_at", "$.title"]
    );
    assert!(!comparison.diff.contains("2024-01-01"), "{}", comparison.diff);
    assert!(!comparison.diff.contains("2025-06-30"), "{}", comparison.diff);

    let at_any_depth = rules(&["$..updated_at"], &[]);
    let comparison = check(&legacy, &service, &at_any_depth);
    assert_eq!(comparison.fields, ["$.title"]);
    assert!(!comparison.diff.contains("updated_at"), "{}", comparison.diff);
    assert!(
        comparison.diff.contains("-  \"title\": \"Old\""),
        "{}",
        comparison.diff
    );
    assert!(
        comparison.diff.contains("+  \"title\": \"New\""),
        "{}",
        comparison.diff
    );
}

#[test]
fn other_ignore_forms_remove_what_they_name() {
    let legacy = json(r#"{"items": [{"note": "x", "n": 1}, {"note": "y"}], "meta": {"a": 1, "b": [1]}}"#);
    let service = json(r#"{"items": [{"note": "z", "n": 1}, {"note": "w"}], "meta": {"a": 2, "c": 3}}"#);
    let comparison = check(&legacy, &service, &rules(&["$.items[0].note", "$.meta.*"], &[]));
    assert_eq!(comparison.fields, ["$.items[*].note"]);
    assert!(
        comparison.diff.contains("-      \"note\": \"y\""),
        "{}",
        comparison.diff
    );
    assert!(!comparison.diff.contains("\"x\""), "{}", comparison.diff);
    assert!(check(&legacy, &service, &rules(&["$.items[*].note", "$.meta"], &[])).is_match());
    assert!(check(&legacy, &service, &rules(&["$"], &[])).is_match());
}

#[test]
fn compared_headers_are_reported_and_others_are_not() {
    let legacy = answer(
        200,
        &[
            ("content-type", "application/json"),
            ("x-request-id", "a"),
            ("etag", "1"),
        ],
        "{}",
    );
    let service = answer(
        200,
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("x-request-id", "b"),
            ("etag", "1"),
        ],
        "{}",
    );
    let comparison = check(&legacy, &service, &rules(&[], &["Content-Type", "etag"]));
    assert_eq!(comparison.fields, ["header:content-type"]);
    assert!(
        comparison.diff.contains("-content-type: application/json\n"),
        "{}",
        comparison.diff
    );
    assert!(comparison
        .diff
        .contains("+content-type: application/json; charset=utf-8\n"));
    assert!(!comparison.diff.contains("x-request-id"), "{}", comparison.diff);

    assert!(check(&legacy, &service, &Rules::default()).is_match());
    assert!(check(
        &legacy,
        &service,
        &rules(&["content-type"], &["content-type", "etag"])
    )
    .is_match());

    let without_etag = answer(200, &[("content-type", "application/json")], "{}");
    let comparison = check(&legacy, &without_etag, &rules(&[], &["etag"]));
    assert_eq!(comparison.fields, ["header:etag"]);
    assert!(comparison.diff.contains("+etag: (absent)"), "{}", comparison.diff);
}

#[test]
fn a_status_difference_is_reported() {
    let comparison = check(
        &json(r#"{"a": 1}"#),
        &answer(404, &[], r#"{"a": 1}"#),
        &Rules::default(),
    );
    assert_eq!(comparison.fields, ["status"]);
    assert!(
        comparison.diff.contains("-HTTP 200\n+HTTP 404\n"),
        "{}",
        comparison.diff
    );
}

#[test]
fn noise_hides_its_fields_but_not_real_changes_elsewhere() {
    let legacy = json(r#"{"request_id": "r1", "items": [{"cache": 1, "price": 5}], "total": 5}"#);
    let service = json(r#"{"request_id": "r2", "items": [{"cache": 2, "price": 5}], "total": 6}"#);
    let learned = noise(&["$.request_id", "$.items[*].cache"]);
    let comparison = compare(&legacy, &service, &Rules::default(), &learned);
    assert_eq!(comparison.fields, ["$.total"]);
    assert!(!comparison.diff.contains("request_id"), "{}", comparison.diff);
    assert!(!comparison.diff.contains("cache"), "{}", comparison.diff);
    assert!(
        comparison.diff.contains("-  \"total\": 5\n+  \"total\": 6\n"),
        "{}",
        comparison.diff
    );

    let same_total = json(r#"{"request_id": "r3", "items": [{"cache": 3, "price": 5}], "total": 5}"#);
    assert!(compare(&legacy, &same_total, &Rules::default(), &learned).is_match());
}

#[test]
fn noise_can_hide_status_headers_and_raw_bodies() {
    let legacy = answer(200, &[("etag", "1")], "<html>one</html>");
    let service = answer(201, &[("etag", "2")], "<html>two</html>");
    let rules = rules(&[], &["etag"]);
    assert_eq!(
        check(&legacy, &service, &rules).fields,
        ["body", "header:etag", "status"]
    );
    let learned = noise(&["body", "header:etag", "status"]);
    assert!(compare(&legacy, &service, &rules, &learned).is_match());
    let comparison = compare(&legacy, &service, &rules, &noise(&["body", "header:etag"]));
    assert_eq!(comparison.fields, ["status"]);
    assert!(
        !comparison.diff.contains("etag") && !comparison.diff.contains("html"),
        "{}",
        comparison.diff
    );
}

#[test]
fn non_json_bodies_compare_byte_wise() {
    let legacy = answer(200, &[("content-type", "text/html")], "<p>Hello</p>\n");
    let same = answer(200, &[("content-type", "text/html")], "<p>Hello</p>\n");
    let spaced = answer(200, &[("content-type", "text/html")], "<p>Hello</p> \n");
    assert!(check(&legacy, &same, &Rules::default()).is_match());
    let comparison = check(&legacy, &spaced, &Rules::default());
    assert_eq!(comparison.fields, ["body"]);
    assert!(
        comparison.diff.contains("-<p>Hello</p>\n+<p>Hello</p> \n"),
        "{}",
        comparison.diff
    );

    // JSON on one side only is a body difference, whatever the content type says.
    let comparison = check(&json(r#"{"a": 1}"#), &answer(200, &[], "a: 1"), &Rules::default());
    assert_eq!(comparison.fields, ["body"]);
    // Empty bodies on both sides are equal; empty against anything else is not.
    assert!(check(&answer(204, &[], ""), &answer(204, &[], ""), &Rules::default()).is_match());
    assert_eq!(
        check(&answer(200, &[], ""), &json("{}"), &Rules::default()).fields,
        ["body"]
    );
    // JSON is recognized without a content type.
    assert!(check(
        &answer(200, &[], "[1, 2.0]"),
        &answer(200, &[], "[1.0,2]"),
        &Rules::default()
    )
    .is_match());
}

#[test]
fn binary_bodies_differ_visibly_without_dumping_bytes() {
    let legacy = Captured {
        body: Bytes::from_static(b"\x89PNG\x00\xff\x01"),
        status: 200,
        ..Default::default()
    };
    let service = Captured {
        body: Bytes::from_static(b"\x89PNG\x00\xff\x02"),
        status: 200,
        ..Default::default()
    };
    let comparison = check(&legacy, &service, &Rules::default());
    assert_eq!(comparison.fields, ["body"]);
    assert!(
        comparison.diff.contains("-(binary body, 7 bytes, fnv1a "),
        "{}",
        comparison.diff
    );
    assert!(
        comparison.diff.contains("+(binary body, 7 bytes, fnv1a "),
        "{}",
        comparison.diff
    );
}

#[test]
fn bytes_that_render_alike_still_get_a_diff_that_says_why() {
    // Two different incomplete characters at the end both render as U+FFFD.
    let legacy = Captured {
        body: Bytes::from_static(b"text \xe2\x82"),
        status: 200,
        ..Default::default()
    };
    let service = Captured {
        body: Bytes::from_static(b"text \xe2"),
        status: 200,
        ..Default::default()
    };
    let comparison = check(&legacy, &service, &Rules::default());
    assert_eq!(comparison.fields, ["body"]);
    assert!(comparison.diff.contains("cannot show"), "{}", comparison.diff);
}

#[test]
fn two_answers_differing_only_in_a_timestamp_differ_in_exactly_that_path() {
    let rules = rules(&[], &["content-type"]);
    let first = json(r#"{"id": 1, "items": [{"sku": "a"}], "generated_at": "2025-01-01T00:00:00.001Z"}"#);
    let second = json(r#"{"items": [{"sku": "a"}], "id": 1, "generated_at": "2025-01-01T00:00:00.002Z"}"#);
    assert_eq!(differing_fields(&first, &second, &rules), ["$.generated_at"]);
    assert!(differing_fields(&first, &first, &rules).is_empty());

    // What is learned this way is then accepted as noise.
    let learned: BTreeSet<String> = differing_fields(&first, &second, &rules).into_iter().collect();
    let service = json(r#"{"id": 1, "items": [{"sku": "a"}], "generated_at": "later"}"#);
    assert!(compare(&first, &service, &rules, &learned).is_match());
}

#[test]
fn ignore_rules_apply_to_learning_noise_too() {
    let rules = rules(&["$..updated_at"], &[]);
    let first = json(r#"{"a": {"updated_at": 1}, "n": 1}"#);
    let second = json(r#"{"a": {"updated_at": 2}, "n": 2}"#);
    assert_eq!(differing_fields(&first, &second, &rules), ["$.n"]);
}

#[test]
fn bad_rules_name_the_entry_and_what_to_write() {
    let owned = |entries: &[&str]| {
        entries
            .iter()
            .map(|entry| (*entry).to_owned())
            .collect::<Vec<String>>()
    };
    let error = Rules::new(&owned(&["$.updated_at", "$.items[*].unit-price"]), &[]).unwrap_err();
    assert!(matches!(error, RuleError::Path { ref entry, .. } if entry == "$.items[*].unit-price"));
    assert_eq!(
        error.to_string(),
        "ignore entry `$.items[*].unit-price` is not a valid JSON path: key `unit-price` is not a plain \
         identifier (letters, digits and `_`, not starting with a digit); write `$.items[*][\"unit-price\"]` \
         instead"
    );

    let error = Rules::new(&owned(&["x request id"]), &[]).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("ignore entry `x request id` is not a valid header name"),
        "{error}"
    );

    let error = Rules::new(&[], &owned(&["content type"])).unwrap_err();
    assert!(matches!(error, RuleError::Header { ref entry, .. } if entry == "content type"));
    assert!(
        error
            .to_string()
            .contains("write a header name such as `content-type`"),
        "{error}"
    );
}

#[test]
fn garbage_never_panics() {
    let inputs: [&[u8]; 8] = [
        b"",
        b"{",
        b"\xff\xfe",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        b"1e400",
        b"{\"a\": 1, \"a\": 2}",
        b"-0.0",
        b"\"\\ud800\"",
    ];
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let inputs = inputs
        .iter()
        .copied()
        .chain([deep.as_bytes()])
        .collect::<Vec<_>>();
    let rules = rules(&["$..a", "$[0][*]", "$.*"], &["etag"]);
    for &left in &inputs {
        for &right in &inputs {
            let primary = Captured {
                status: 200,
                body: Bytes::copy_from_slice(left),
                ..Default::default()
            };
            let candidate = Captured {
                status: 500,
                body: Bytes::copy_from_slice(right),
                ..Default::default()
            };
            let comparison = compare(&primary, &candidate, &rules, &noise(&["$", "$[", "nonsense"]));
            assert!(comparison.fields.contains(&"status".to_owned()));
            let _ = differing_fields(&primary, &candidate, &rules);
        }
    }
}

#[test]
fn a_mebibyte_of_json_compares_quickly() {
    let items = |changed: usize| -> String {
        let rows: Vec<String> = (0..15_000)
            .map(|index| {
                let price = if index == changed { 1 } else { index * 10 };
                format!(r#"{{"id": {index}, "name": "item number {index}", "price_cents": {price}, "tags": ["x", "y"]}}"#)
            })
            .collect();
        format!(r#"{{"items": [{}]}}"#, rows.join(","))
    };
    let legacy = json(&items(usize::MAX));
    let service = json(&items(7_500));
    assert!(legacy.body.len() > 1024 * 1024);
    let started = Instant::now();
    let comparison = check(&legacy, &service, &Rules::default());
    let elapsed = started.elapsed();
    assert_eq!(comparison.fields, ["$.items[*].price_cents"]);
    assert!(
        comparison.diff.contains("-      \"price_cents\": 75000,"),
        "{}",
        comparison.diff
    );
    // Generous: this runs unoptimized on shared machines; the release build takes milliseconds.
    assert!(elapsed.as_secs() < 10, "took {elapsed:?}");
}

#[test]
fn grpc_status_is_compared_whenever_an_answer_carries_one() {
    let ok = answer(
        200,
        &[("content-type", "application/grpc"), ("grpc-status", "0")],
        "\0\0\0\0\x02hi",
    );
    let not_found = answer(
        200,
        &[("content-type", "application/grpc"), ("grpc-status", "5")],
        "\0\0\0\0\x02hi",
    );
    let none = rules(&[], &[]);
    assert!(compare(&ok, &ok, &none, &no_noise()).is_match());
    let comparison = compare(&ok, &not_found, &none, &no_noise());
    assert_eq!(comparison.fields, vec!["header:grpc-status".to_owned()]);
    // Learned as noise, it is no longer reported.
    let noise: BTreeSet<String> = ["header:grpc-status".to_owned()].into();
    assert!(compare(&ok, &not_found, &none, &noise).is_match());
    // Protobuf bytes are compared as bytes.
    let other_bytes = answer(
        200,
        &[("content-type", "application/grpc"), ("grpc-status", "0")],
        "\0\0\0\0\x02ho",
    );
    assert_eq!(
        compare(&ok, &other_bytes, &none, &no_noise()).fields,
        vec!["body".to_owned()]
    );
}
