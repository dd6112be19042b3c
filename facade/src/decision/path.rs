//! Request-path normalization, for routing and refusal.
//!
//! Routing on the raw path invites bypasses: `/products/../admin` or
//! `/%2e%2e/admin` must not reach a route it should not. So the facade
//! decodes percent-encoded unreserved characters (RFC 3986 §2.3, which
//! includes `.`), collapses duplicate slashes, removes dot segments
//! (§5.2.4), and refuses encodings it cannot read safely: a malformed `%`
//! escape, an encoded `/` or `\`, or an encoded NUL.
//!
//! The upstream gets the target as the client sent it, byte for byte
//! (upstreams that check request signatures need that), unless a dot
//! segment had to be removed: then the upstream could read the raw path
//! as a different resource than the one the facade matched, and it gets
//! the normalized path instead ([`Normalized::dot_segments_removed`]).

use std::fmt;

/// Why a path was refused; answered with 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    MalformedEncoding,
    /// `%2F`, `%5C` or `%00`: a separator or NUL hidden in a segment.
    EncodedSeparator,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the request path must start with `/`",
            PathError::MalformedEncoding => {
                "the request path has a malformed percent-encoding (`%` must be followed by two hex digits)"
            }
            PathError::EncodedSeparator => {
                "the request path encodes `/`, `\\` or NUL (%2F, %5C, %00), which the facade refuses to route"
            }
        })
    }
}

impl std::error::Error for PathError {}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// A path as the facade routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The normalized path.
    pub path: String,
    /// Whether a `.` or `..` segment (perhaps percent-encoded) was
    /// removed: the raw path may then name something else upstream.
    pub dot_segments_removed: bool,
}

/// Returns the normalized form of `path` (no query string).
pub fn normalize(path: &str) -> Result<String, PathError> {
    normalize_for_routing(path).map(|normalized| normalized.path)
}

/// Normalizes `path` (no query string) and says whether dot segments were
/// removed on the way.
pub fn normalize_for_routing(path: &str) -> Result<Normalized, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Some upstreams read `\` as `/`: a literal one could hide a dot
    // segment from the facade's matching.
    if bytes.contains(&b'\\') {
        return Err(PathError::EncodedSeparator);
    }
    // Fast path, in one pass: nothing to decode, no dot segment, no empty
    // segment.
    let plain = bytes
        .windows(2)
        .all(|pair| pair[0] != b'%' && !(pair[0] == b'/' && matches!(pair[1], b'/' | b'.')))
        && bytes.last() != Some(&b'%');
    if plain {
        return Ok(Normalized {
            path: path.to_owned(),
            dot_segments_removed: false,
        });
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::MalformedEncoding);
            };
            let value = hi * 16 + lo;
            if matches!(value, b'/' | b'\\' | 0) {
                return Err(PathError::EncodedSeparator);
            }
            if is_unreserved(value) {
                decoded.push(value);
            } else {
                decoded.push(b'%');
                decoded.extend_from_slice(format!("{value:02X}").as_bytes());
            }
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    // Only ASCII was decoded, and the rest came from a &str: still UTF-8.
    let decoded = String::from_utf8_lossy(&decoded);
    // A path ending in `/`, `/.` or `/..` names a directory: keep the slash.
    let last = decoded.rsplit('/').next().unwrap_or("");
    let ends_in_directory = matches!(last, "" | "." | "..");
    let mut segments: Vec<&str> = Vec::new();
    let mut dot_segments_removed = false;
    for segment in decoded.split('/') {
        match segment {
            "" => {}
            "." => dot_segments_removed = true,
            ".." => {
                dot_segments_removed = true;
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut normalized = String::with_capacity(decoded.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() || ends_in_directory {
        normalized.push('/');
    }
    Ok(Normalized {
        path: normalized,
        dot_segments_removed,
    })
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_ordinary_paths_alone() {
        for path in ["/", "/products", "/products/42", "/orders/7/cancel", "/a/b/"] {
            assert_eq!(normalize(path).unwrap(), path);
        }
    }

    #[test]
    fn says_when_a_dot_segment_was_removed() {
        for (path, removed) in [
            ("/products/1", false),
            ("/%41pi//x", false),
            ("/a/./b", true),
            ("/a/../b", true),
            ("/a/%2e%2E/b", true),
            ("/a/..", true),
        ] {
            assert_eq!(
                normalize_for_routing(path).unwrap().dot_segments_removed,
                removed,
                "{path}"
            );
        }
    }

    #[test]
    fn removes_dot_segments_and_duplicate_slashes() {
        assert_eq!(normalize("/products/../admin").unwrap(), "/admin");
        assert_eq!(normalize("/products/./1").unwrap(), "/products/1");
        assert_eq!(normalize("//products///1").unwrap(), "/products/1");
        assert_eq!(normalize("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(normalize("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize("/a/.").unwrap(), "/a/");
    }

    #[test]
    fn decodes_encoded_dots_before_removing_dot_segments() {
        assert_eq!(normalize("/products/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(normalize("/products/%2E%2E/admin").unwrap(), "/admin");
        assert_eq!(normalize("/products/.%2e/admin").unwrap(), "/admin");
        assert_eq!(normalize("/%70roducts/1").unwrap(), "/products/1");
    }

    #[test]
    fn keeps_reserved_encodings_encoded_in_one_canonical_case() {
        assert_eq!(normalize("/search/a%20b%3f").unwrap(), "/search/a%20b%3F");
    }

    #[test]
    fn refuses_what_it_cannot_read_safely() {
        assert_eq!(
            normalize("/products%2f..%2fadmin"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(normalize("/a%5Cb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a%00"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/public/..\\admin"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a%zz"), Err(PathError::MalformedEncoding));
        assert_eq!(normalize("/a%2"), Err(PathError::MalformedEncoding));
        assert_eq!(normalize("products"), Err(PathError::NotAbsolute));
    }
}
