//! What the property tests share: their case count, and hostile TOML text
//! for the parsers of the files people write (`strangler.toml`, mapping
//! files): tokens of every TOML kind and bytes that break the syntax, and
//! edits that put them over values, insert them, delete or repeat lines,
//! remove bytes or cut the text short.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// Case count: small in the ordinary suite (256 per property),
/// `STRANGLER_PROPTEST_CASES` for long runs. Failures are not persisted to
/// files: proptest prints the shrunk input, and a real bug gets a plain
/// regression test.
pub fn config() -> ProptestConfig {
    static CASES: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let cases = *CASES.get_or_init(|| {
        std::env::var("STRANGLER_PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256)
    });
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One edit of a TOML text: (where, as a share of its length; what; a
/// pick among replacement tokens).
pub fn edit() -> impl Strategy<Value = (f64, u8, usize)> {
    (0.0..1.0f64, 0..6u8, any::<usize>())
}

/// Replacement tokens: values of every TOML kind and none, and bytes that
/// break the syntax.
pub const TOKENS: &[&str] = &[
    "0",
    "-1",
    "1_000",
    "99999999999999999999",
    "1.5",
    "nan",
    "inf",
    "true",
    "\"\"",
    "\"x\"",
    "'/'",
    "\"\\u00e9\"",
    "[]",
    "[1, \"a\"]",
    "{}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    "\"[::1]:0\"",
    "\"http://\"",
    "\"0.0.0.0:99999\"",
    "\"$.a[\"",
    "=",
    "[",
    "]",
    "[[x]]",
    "[x]",
    "\"",
    "'''",
    "#",
    "\n",
    "\r\n",
    "\t",
    "\u{0}",
    "é",
    "a.b.c = 1",
    "x = ",
    "urls = []",
    "[backends.x]",
    "[capabilities.y]",
];

/// Applies `edits` to `text`: a token inserted or put over a value, a
/// line deleted or repeated, a byte removed, or the text cut short.
pub fn mutate(text: &str, edits: &[(f64, u8, usize)]) -> String {
    let mut text = text.to_owned();
    for &(at, op, pick) in edits {
        let mut i = ((text.len() as f64) * at) as usize;
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        let token = TOKENS[pick % TOKENS.len()];
        let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
        let line_end = text[i..].find('\n').map_or(text.len(), |n| i + n + 1);
        match op {
            0 => text.insert_str(i, token),
            1 => {
                // Over the value on this line, if it has one.
                if let Some(eq) = text[line_start..line_end].find('=') {
                    let end = if text[..line_end].ends_with('\n') {
                        line_end - 1
                    } else {
                        line_end
                    };
                    text.replace_range(line_start + eq + 1..end, &format!(" {token}"));
                }
            }
            2 => text.replace_range(line_start..line_end, ""),
            3 => {
                let line = text[line_start..line_end].to_owned();
                text.insert_str(line_end, &line);
            }
            4 => {
                if let Some(c) = text[i..].chars().next() {
                    text.replace_range(i..i + c.len_utf8(), "");
                }
            }
            _ => text.truncate(i),
        }
    }
    text
}

/// Whether a reported line is one of the text's (the last one may be
/// empty, after a final line end).
pub fn line_in_text(line: usize, text: &str) -> bool {
    (1..=text.split('\n').count()).contains(&line)
}
