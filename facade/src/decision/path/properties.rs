//! Property tests of path normalization ([`normalize_for_routing`]).
//!
//! The oracle is a reference model written here from RFC 3986 alone
//! ([`reference`]): decode the unreserved escapes (§2.3), split on `/`,
//! drop empty segments, apply §5.2.4's dot-segment removal with a stack.
//! Checked, on generated paths built from segments, dots (plain and
//! encoded in any case), repeated slashes, escapes good and bad:
//! - the result equals the model's, or both refuse;
//! - normalizing is idempotent, and a normalized path has nothing left to
//!   remove (the second pass reports no dot segment and returns it as is);
//! - it is never above the root: it starts with `/`, holds no `.`, `..`
//!   or empty segment, and every segment it holds is one of the input's;
//! - equivalent spellings of a path (unreserved bytes percent-encoded,
//!   `./` and `x/../` inserted, slashes doubled) normalize to the same
//!   path, so they route the same (`RouteTable::decide` sees only it);
//! - `dot_segments_removed` is exact: true if and only if the decoded
//!   input has a `.` or `..` segment. `handle.rs` forwards the client's
//!   own bytes exactly when it is false, so the property says the raw
//!   bytes are forwarded only when an upstream resolving dot segments
//!   itself could not reach a different resource than the one routed.

use proptest::prelude::*;
use test_harness::properties::config;

use super::{normalize, normalize_for_routing, PathError};

/// The model's decoding: unreserved escapes decoded, others upper-cased;
/// an error where the facade must refuse.
fn decode(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // A literal `\` anywhere is refused before any escape is read.
    if bytes.contains(&b'\\') {
        return Err(PathError::EncodedSeparator);
    }
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            let ch = path[i..].chars().next().expect("a char boundary");
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let hex = path
            .get(i + 1..i + 3)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
            return Err(PathError::MalformedEncoding);
        };
        if matches!(value, b'/' | b'\\' | 0) {
            return Err(PathError::EncodedSeparator);
        }
        if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
            out.push(char::from(value));
        } else {
            out.push_str(&format!("%{value:02X}"));
        }
        i += 3;
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on the decoded path, with empty segments dropped and a
/// trailing `/`, `/.` or `/..` kept as a slash.
fn reference(path: &str) -> Result<(String, bool), PathError> {
    let decoded = decode(path)?;
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let directory = matches!(segments.last(), Some(&("" | "." | "..")));
    let mut stack = Vec::new();
    let mut dots = false;
    for segment in segments {
        match segment {
            "" => {}
            "." => dots = true,
            ".." => {
                dots = true;
                stack.pop();
            }
            other => stack.push(other),
        }
    }
    let mut out = stack.iter().map(|s| format!("/{s}")).collect::<String>();
    if out.is_empty() || directory {
        out.push('/');
    }
    Ok((out, dots))
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z0-9_~-]{1,5}",
        2 => prop::sample::select(vec![".", "..", "%2e", "%2E", "%2e%2E", ".%2e", "%2e."]).prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            "", "...", ".a", "a.", "%41", "%7e", "%20", "%3f", "%3F", "%2f", "%2F", "%5c", "%00",
            "%", "%4", "%zz", "\\", "é", "a%2", ";x", ":", "@", "!$&'()*+,=",
        ]).prop_map(str::to_owned),
    ]
}

/// A path: `/` and segments joined by one or more slashes, sometimes with
/// no leading slash.
fn path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((segment(), 1..3usize), 0..10),
        prop::bool::weighted(0.97),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(parts, absolute, trailing)| {
            let mut out = String::new();
            for (i, (segment, slashes)) in parts.into_iter().enumerate() {
                if i > 0 || absolute {
                    out.push_str(&"/".repeat(slashes));
                }
                out.push_str(&segment);
            }
            if trailing || out.is_empty() {
                out.push('/');
            }
            out
        })
}

/// Spells `path` another way that names the same resource: each edit
/// percent-encodes an unreserved byte (in either case), inserts `./` or
/// `x/../` at a slash, or doubles a slash.
fn respell(path: &str, edits: &[(usize, u8)]) -> String {
    let mut out = path.to_owned();
    for &(at, op) in edits {
        let slashes: Vec<usize> = out.match_indices('/').map(|(i, _)| i).collect();
        if slashes.is_empty() {
            continue;
        }
        let slash = slashes[at % slashes.len()];
        match op {
            0 => out.insert_str(slash + 1, "./"),
            1 => out.insert_str(slash + 1, "x/../"),
            2 => out.insert(slash, '/'),
            _ => {
                // Encode an unreserved byte outside any escape.
                let candidates: Vec<usize> = out
                    .char_indices()
                    .filter(|&(i, c)| {
                        (c.is_ascii_alphanumeric() || "-_~".contains(c))
                            && !out[..i].ends_with('%')
                            && !out[..i.saturating_sub(1)].ends_with('%')
                    })
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&i) = candidates.get(at % candidates.len().max(1)) {
                    let byte = out.as_bytes()[i];
                    let escape = if op == 3 {
                        format!("%{byte:02X}")
                    } else {
                        format!("%{byte:02x}")
                    };
                    out.replace_range(i..i + 1, &escape);
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn matches_the_rfc_3986_model(path in path()) {
        let model = reference(&path);
        let facade = normalize_for_routing(&path).map(|n| (n.path, n.dot_segments_removed));
        prop_assert_eq!(facade, model, "path {:?}", path);
    }

    #[test]
    fn is_idempotent(path in path()) {
        if let Ok(once) = normalize(&path) {
            let twice = normalize_for_routing(&once).expect("a normalized path normalizes");
            prop_assert_eq!(&twice.path, &once);
            prop_assert!(!twice.dot_segments_removed, "{:?} -> {:?}", path, once);
        }
    }

    #[test]
    fn never_goes_above_the_root(path in path()) {
        if let Ok(normalized) = normalize(&path) {
            prop_assert!(normalized.starts_with('/'));
            let inner = normalized.strip_suffix('/').unwrap_or(&normalized);
            let decoded = decode(&path).expect("refused by the model too");
            for segment in inner.split('/').skip(1) {
                prop_assert!(!matches!(segment, "" | "." | ".."), "{:?} -> {:?}", path, normalized);
                prop_assert!(decoded.split('/').any(|s| s == segment), "{:?} -> {:?}", path, normalized);
            }
        }
    }

    #[test]
    fn equivalent_spellings_route_the_same(path in path(), edits in prop::collection::vec((any::<usize>(), 0..5u8), 0..6)) {
        let other = respell(&path, &edits);
        match normalize(&path) {
            Ok(normalized) => prop_assert_eq!(normalize(&other), Ok(normalized), "{:?} and {:?}", path, other),
            Err(_) => prop_assert!(normalize(&other).is_err(), "{:?} refused, {:?} not", path, other),
        }
    }

    #[test]
    fn raw_bytes_are_forwarded_only_without_dot_segments(path in path()) {
        if let Ok(normalized) = normalize_for_routing(&path) {
            let decoded = decode(&path).expect("refused by the model too");
            let has_dots = decoded.split('/').any(|s| s == "." || s == "..");
            prop_assert_eq!(normalized.dot_segments_removed, has_dots, "{:?}", path);
            if !normalized.dot_segments_removed {
                // What goes upstream is the client's path: it names what
                // was routed once empty segments are collapsed.
                prop_assert_eq!(normalize(&path), Ok(normalized.path));
            }
        }
    }
}
