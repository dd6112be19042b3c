//! Property tests of mapping file parsing ([`Mapping::parse`]):
//! arbitrary text, TOML-shaped text, and mutations of the demo's
//! mapping file (tokens of every TOML kind put over values or inserted,
//! lines deleted or repeated, bytes removed, the text cut short) never
//! make it panic, and every `Invalid` error names a line of the text.
//! There is no oracle beyond that: what a valid file means is the unit
//! tests' business.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use crate::{Mapping, MappingError};

/// The demo's mapping file, a valid file with most sections.
const DEMO: &str = include_str!("../../../demo/mapping.toml");

/// Case count: small in the ordinary suite, `STRANGLER_PROPTEST_CASES` for
/// long runs. Failures are not persisted to files.
fn config() -> ProptestConfig {
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
fn edit() -> impl Strategy<Value = (f64, u8, usize)> {
    (0.0..1.0f64, 0..6u8, any::<usize>())
}

/// Replacement tokens: values of every TOML kind and none, and bytes that
/// break the syntax.
const TOKENS: &[&str] = &[
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
fn mutate(text: &str, edits: &[(f64, u8, usize)]) -> String {
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
fn line_in_text(line: usize, text: &str) -> bool {
    (1..=text.split('\n').count()).contains(&line)
}

/// Parses `text`; a panic fails the case (proptest catches it), an
/// `Invalid` error must name a line of it.
fn check(text: &str) -> Result<(), TestCaseError> {
    if let Err(MappingError::Invalid { line, message, .. }) =
        Mapping::parse(Path::new("/nonexistent/mapping.toml"), text)
    {
        prop_assert!(
            line_in_text(line, text),
            "line {} of {:?}: {}",
            line,
            text,
            message
        );
        prop_assert!(!message.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_demo_mapping_never_panics(edits in prop::collection::vec(edit(), 1..5)) {
        check(&mutate(DEMO, &edits))?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        check(&text)?;
    }

    #[test]
    fn toml_shaped_text_never_panics(
        lines in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec!["[capabilities.c]", "[capabilities.c.legacy]", "[capabilities.c.service]", "[[capabilities.c.tables]]", "[capabilities.c.tables.columns]", "[capabilities.c.tables.compare]", "[capabilities.c.tables.repair]", "[capabilities.c.tables.follower_defaults]", "[x]"]).prop_map(str::to_owned),
                ("[a-z_]{1,18}", prop::sample::select(TOKENS.to_vec())).prop_map(|(k, v)| format!("{k} = {v}")),
            ],
            0..12,
        )
    ) {
        check(&lines.join("\n"))?;
    }
}

#[test]
fn the_demo_mapping_parses() {
    // The seed is valid: mutations start from a file that gets far.
    if let Err(error) = Mapping::parse(Path::new("demo/mapping.toml"), DEMO) {
        panic!("the demo mapping is refused: {error}");
    }
}

#[test]
fn a_syntax_error_toml_gives_no_words_for_still_says_what_is_wrong() {
    // Found by `arbitrary_text_never_panics`: toml's message for a stray
    // carriage return is empty, which left `mapping.toml:1: ` and nothing.
    let Err(MappingError::Invalid { line, message, .. }) = Mapping::parse(Path::new("m.toml"), "\r") else {
        panic!("a lone carriage return is refused");
    };
    assert_eq!(line, 1);
    assert!(!message.is_empty());
}
