//! Property tests of mapping file parsing ([`Mapping::parse`]):
//! arbitrary text, TOML-shaped text, and mutations of the demo's
//! mapping file (tokens of every TOML kind put over values or inserted,
//! lines deleted or repeated, bytes removed, the text cut short) never
//! make it panic, and every `Invalid` error names a line of the text.
//! There is no oracle beyond that: what a valid file means is the unit
//! tests' business.

use std::path::Path;

use proptest::prelude::*;
use test_harness::properties::{config, edit, line_in_text, mutate, TOKENS};

use crate::{Mapping, MappingError};

/// The demo's mapping file, a valid file with most sections.
const DEMO: &str = include_str!("../../../demo/mapping.toml");

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
