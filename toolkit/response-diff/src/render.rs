//! The normalized rendering of a response, which the diff is computed on, and the diff itself.
//!
//! A rendering shows only what is compared, the way it is compared: the status, the compared
//! headers (a missing one shown as `(absent)`), and the body in canonical form with ignored
//! and noisy places already removed. Two answers that match therefore render identically,
//! and every line of the diff is something that counted.

use std::fmt::{self, Write as _};
use std::time::Duration;

use http::header::HeaderName;
use http::HeaderMap;
use similar::{Algorithm, TextDiff};

use crate::canonical::{push_pretty, Node};
use crate::headers::joined_value;

/// The diff is cut near this size: it is for a person to read, and is stored per sample.
pub(crate) const DIFF_LIMIT: usize = 64 * 1024;

/// The line that ends a diff that was cut.
pub(crate) const TRUNCATED_LINE: &str = "[diff truncated: the full diff is larger than 64 KiB]";

/// Myers diffing is quadratic when everything differs; past this it settles for a coarser diff.
const DIFF_TIMEOUT: Duration = Duration::from_millis(100);

/// What the body of a rendering shows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BodyView<'a> {
    /// A JSON body in canonical form; `None` when an ignore rule or noise removed all of it.
    Json(Option<&'a Node>),
    /// A body compared byte-wise.
    Raw(&'a [u8]),
    /// A non-JSON body whose differences were learned as noise.
    NotCompared,
}

/// The normalized rendering of one response; `status` is `None` when it is not compared.
pub(crate) fn render(
    status: Option<u16>,
    headers: &HeaderMap,
    names: &[&HeaderName],
    body: BodyView<'_>,
) -> String {
    let mut out = String::new();
    match status {
        Some(status) => out.push_str(&format!("HTTP {status}\n")),
        None => out.push_str("HTTP (status not compared: learned as noise)\n"),
    }
    for name in names {
        out.push_str(name.as_str());
        out.push_str(": ");
        match joined_value(headers, name) {
            Some(value) => out.push_str(&String::from_utf8_lossy(&value)),
            None => out.push_str("(absent)"),
        }
        out.push('\n');
    }
    out.push('\n');
    match body {
        BodyView::Json(Some(node)) => {
            push_pretty(&mut out, node, 0);
            out.push('\n');
        }
        BodyView::Json(None) => out.push_str("(JSON body ignored)\n"),
        BodyView::Raw(bytes) => push_raw_body(&mut out, bytes),
        BodyView::NotCompared => out.push_str("(body not compared: learned as noise)\n"),
    }
    out
}

fn push_raw_body(out: &mut String, bytes: &[u8]) {
    if bytes.is_empty() {
        out.push_str("(empty body)\n");
        return;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        // Only the last character is incomplete: the capture cap cut it, the body is text.
        Err(error) if error.error_len().is_none() => out.push_str(&String::from_utf8_lossy(bytes)),
        Err(_) => out.push_str(&format!(
            "(binary body, {} bytes, fnv1a {})\n",
            bytes.len(),
            short_hash(bytes)
        )),
    }
}

/// FNV-1a: enough to tell two binary bodies apart in a diff, and needs no dependency.
fn short_hash(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The unified diff (headers `legacy` and `service`, 3 lines of context) of two renderings,
/// cut near [`DIFF_LIMIT`] with a last line saying so; empty when they are equal.
pub(crate) fn unified_diff(legacy: &str, service: &str) -> String {
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .timeout(DIFF_TIMEOUT)
        .diff_lines(legacy, service);
    let mut unified = diff.unified_diff();
    unified.context_radius(3).header("legacy", "service");
    let mut out = Capped {
        text: String::new(),
        limit: DIFF_LIMIT,
    };
    // Stops formatting as soon as the limit is reached, so a huge diff is never built whole.
    if write!(out, "{unified}").is_err() {
        let mut text = out.text;
        match text.rfind('\n') {
            Some(end) => text.truncate(end + 1),
            None => text.push('\n'),
        }
        text.push_str(TRUNCATED_LINE);
        text.push('\n');
        return text;
    }
    out.text
}

/// A string that refuses to grow past `limit`, failing the write that would.
struct Capped {
    text: String,
    limit: usize,
}

impl fmt::Write for Capped {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        let room = self.limit.saturating_sub(self.text.len());
        if piece.len() <= room {
            self.text.push_str(piece);
            return Ok(());
        }
        let mut cut = room;
        while !piece.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&piece[..cut]);
        Err(fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONTENT_TYPE;
    use http::HeaderValue;

    #[test]
    fn rendering_shows_status_compared_headers_and_body() {
        let mut headers = HeaderMap::new();
        headers.append(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.append(CONTENT_TYPE, HeaderValue::from_static("charset=utf-8"));
        let etag = HeaderName::from_static("etag");
        let text = render(
            Some(200),
            &headers,
            &[&CONTENT_TYPE, &etag],
            BodyView::Raw(b"hello\n"),
        );
        assert_eq!(
            text,
            "HTTP 200\ncontent-type: text/plain, charset=utf-8\netag: (absent)\n\nhello\n"
        );
    }

    #[test]
    fn raw_bodies_render_as_text_binary_or_empty() {
        let render_body = |bytes: &[u8]| render(Some(200), &HeaderMap::new(), &[], BodyView::Raw(bytes));
        assert_eq!(render_body(b""), "HTTP 200\n\n(empty body)\n");
        // "é" cut after its first byte by a capture cap is still text.
        assert_eq!(render_body(b"caf\xc3"), "HTTP 200\n\ncaf\u{fffd}");
        let binary = render_body(b"\x89PNG\r\n\x1a\n\x00\xff");
        assert!(
            binary.starts_with("HTTP 200\n\n(binary body, 10 bytes, fnv1a "),
            "{binary}"
        );
        assert_eq!(
            binary.len(),
            "HTTP 200\n\n(binary body, 10 bytes, fnv1a )\n".len() + 16
        );
    }

    #[test]
    fn long_diffs_are_cut_with_a_last_line_saying_so() {
        let legacy: String = (0..20_000).map(|line| format!("line {line}\n")).collect();
        let service: String = (0..20_000).map(|line| format!("other {line}\n")).collect();
        let diff = unified_diff(&legacy, &service);
        assert!(diff.len() <= DIFF_LIMIT + TRUNCATED_LINE.len() + 1);
        assert!(
            diff.starts_with("--- legacy\n+++ service\n@@"),
            "{}",
            &diff[..100]
        );
        assert!(diff.ends_with(&format!("\n{TRUNCATED_LINE}\n")));
        assert_eq!(unified_diff("same\n", "same\n"), "");
    }
}
