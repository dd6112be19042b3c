//! Compares two answers to the same request, for shadow traffic: the monolith answers the
//! client, a copy of the request goes to the extracted service, and this crate says whether
//! the service answered the same and, if not, what differs. It does no I/O; the facade
//! captures both responses and hands them over.
//!
//! What is compared: the status, the headers the [`Rules`] name, and the body. When both bodies
//! parse as JSON (whatever their content type) they are compared structurally: member order
//! does not matter, numbers compare by value (`10`, `10.0` and `1e1` are equal), arrays compare
//! element by element, and each difference is named by its deepest place with array indices
//! generalized (`$.items[3].price` is reported as `$.items[*].price`), so that many requests
//! that differ the same way produce the same field name. Other bodies compare byte-wise and are
//! reported as `body`.
//!
//! Some differences are expected: timestamps, request ids, generated ids. Rules drop those
//! places explicitly; noise learned the way Twitter's Diffy does it (two answers of the
//! monolith to the same request, compared with [`differing_fields`]) drops the rest. Dropped
//! places are removed before comparing and before rendering, so the diff never shows them.

mod canonical;
mod headers;
mod json_compare;
mod json_path;
#[cfg(test)]
mod properties;
mod render;
mod rules;

use std::collections::BTreeSet;

use crate::canonical::{parse_canonical, Node};
use crate::headers::joined_value;
use crate::json_path::{Matcher, PathPattern};
use crate::render::{render, unified_diff, BodyView};
use http::header::HeaderName;

pub use crate::rules::{RuleError, Rules};

/// The field name of a status difference.
pub const STATUS_FIELD: &str = "status";
/// The field name of a difference between bodies that are not both JSON.
pub const BODY_FIELD: &str = "body";
/// The prefix of the field name of a header difference, followed by the lower-case name.
pub const HEADER_FIELD_PREFIX: &str = "header:";

/// The diff of two answers whose differences do not show in their renderings, such as bytes
/// of invalid UTF-8 that both render as U+FFFD.
const INVISIBLE_DIFFERENCE: &str = "--- legacy\n+++ service\n\
    (the answers differ in bytes that the normalized rendering cannot show, such as invalid UTF-8)\n";

/// One response as captured by the facade (body possibly cut to a cap by the caller).
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// The status code.
    pub status: u16,
    /// The headers; the same type as `hyper::HeaderMap`.
    pub headers: http::HeaderMap,
    /// The body, possibly cut to a cap by the caller.
    pub body: bytes::Bytes,
}

/// The result of comparing two responses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Generalized names of what differs, sorted, deduplicated: `status`, `header:content-type`,
    /// JSON paths with array indices generalized to `[*]` (e.g. `$.items[*].price_cents`,
    /// `$.title`), `body` when a non-JSON body differs (or one side is JSON and the other is not).
    pub fields: Vec<String>,
    /// A readable unified diff (headers `legacy` and `service`, 3 lines of context) of the two
    /// normalized renderings, cut near 64 KiB with a last line saying so; empty when they match.
    pub diff: String,
}

impl Comparison {
    /// Whether nothing counted differs.
    pub fn is_match(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Compares `primary` (the monolith's answer) with `candidate` (the service's answer).
///
/// `noise` holds generalized field names (as in [`Comparison::fields`]) learned as noise: they
/// are not counted and not shown. A JSON path in `noise` removes that place from both bodies,
/// `status` stops comparing the status, `header:<name>` that header, and `body` a body that is
/// not JSON on both sides. Entries that are none of these are not used.
pub fn compare(
    primary: &Captured,
    candidate: &Captured,
    rules: &Rules,
    noise: &BTreeSet<String>,
) -> Comparison {
    compare_with(primary, candidate, rules, noise, true)
}

/// Generalized names of what differs between two answers of the same side, with the same
/// rules applied: the fields to learn as noise when two calls to the monolith disagree.
pub fn differing_fields(a: &Captured, b: &Captured, rules: &Rules) -> Vec<String> {
    compare_with(a, b, rules, &BTreeSet::new(), false).fields
}

fn compare_with(
    primary: &Captured,
    candidate: &Captured,
    rules: &Rules,
    noise: &BTreeSet<String>,
    with_diff: bool,
) -> Comparison {
    let mut fields = BTreeSet::new();

    let status_compared = !noise.contains(STATUS_FIELD);
    if status_compared && primary.status != candidate.status {
        fields.insert(STATUS_FIELD.to_owned());
    }

    let mut header_names: Vec<&HeaderName> = rules
        .compared_headers
        .iter()
        .filter(|name| !noise.contains(&header_field(name)))
        .collect();
    // A gRPC answer's outcome is its `grpc-status` (a trailer, kept with the
    // headers), not its HTTP status, which is 200 either way: it is always
    // compared when either side has one.
    let grpc = primary.headers.contains_key(&GRPC_STATUS) || candidate.headers.contains_key(&GRPC_STATUS);
    if grpc && !header_names.contains(&&GRPC_STATUS) && !noise.contains(&header_field(&GRPC_STATUS)) {
        header_names.push(&GRPC_STATUS);
    }
    for name in &header_names {
        if joined_value(&primary.headers, name) != joined_value(&candidate.headers, name) {
            fields.insert(header_field(name));
        }
    }

    // Noise names are our own output, so one that does not parse cannot match anything anyway.
    let noise_paths: Vec<PathPattern> = noise
        .iter()
        .filter(|field| field.starts_with('$'))
        .filter_map(|field| PathPattern::parse(field).ok())
        .collect();
    let matcher = Matcher::new(rules.ignored_paths.iter().chain(&noise_paths));
    let parse_both = || match (
        parse_canonical(&primary.body, &matcher),
        parse_canonical(&candidate.body, &matcher),
    ) {
        (Some(left), Some(right)) => Some((left, right)),
        _ => None,
    };
    // Identical bytes cannot differ however they are read; most shadowed answers are like that,
    // so parsing waits until a diff has to be rendered.
    let identical_bodies = primary.body == candidate.body;
    let mut json = if identical_bodies { None } else { parse_both() };
    match &json {
        Some((Some(left), Some(right))) => json_compare::differing_places(left, right, &mut fields),
        // Both sides go through the same matcher, so the root is removed on both or neither.
        Some(_) => {}
        None => {
            if !identical_bodies && !noise.contains(BODY_FIELD) {
                fields.insert(BODY_FIELD.to_owned());
            }
        }
    }

    // Each kind of noise is already left out above; this keeps the promise that a noise name is
    // never reported even if a later kind of field slips past that.
    fields.retain(|field| !noise.contains(field));
    let fields: Vec<String> = fields.into_iter().collect();
    if !with_diff || fields.is_empty() {
        return Comparison {
            fields,
            diff: String::new(),
        };
    }

    if identical_bodies {
        json = parse_both();
    }
    let body_compared = json.is_some() || !noise.contains(BODY_FIELD);
    let view = |captured: &'_ Captured, node: Option<&Option<Node>>| -> String {
        let body = match node {
            Some(node) => BodyView::Json(node.as_ref()),
            None if body_compared => BodyView::Raw(&captured.body),
            None => BodyView::NotCompared,
        };
        render(
            status_compared.then_some(captured.status),
            &captured.headers,
            &header_names,
            body,
        )
    };
    let legacy = view(primary, json.as_ref().map(|(left, _)| left));
    let service = view(candidate, json.as_ref().map(|(_, right)| right));
    let mut diff = unified_diff(&legacy, &service);
    if diff.is_empty() {
        diff = INVISIBLE_DIFFERENCE.to_owned();
    }
    Comparison { fields, diff }
}

/// `grpc-status`, compared whenever an answer carries it.
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

fn header_field(name: &HeaderName) -> String {
    format!("{HEADER_FIELD_PREFIX}{}", name.as_str())
}
