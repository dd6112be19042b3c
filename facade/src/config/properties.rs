//! Property tests of `strangler.toml` parsing ([`FacadeConfig::parse`]):
//! arbitrary text, TOML-shaped text, and mutations of the demo's
//! configuration (tokens of every TOML kind put over values or inserted,
//! lines deleted or repeated, bytes removed, the text cut short) never
//! make it panic, and every `Invalid` error names a line of the text.
//! There is no oracle beyond that: what a valid file means is the unit
//! tests' business.

use std::path::Path;

use proptest::prelude::*;
use test_harness::properties::{config, edit, line_in_text, mutate, TOKENS};

use super::{ConfigError, FacadeConfig};

/// The demo's configuration, a valid file with most sections.
const DEMO: &str = include_str!("../../../demo/strangler.toml");

/// Parses `text`; a panic fails the case (proptest catches it), an
/// `Invalid` error must name a line of it.
fn check(text: &str) -> Result<(), TestCaseError> {
    if let Err(ConfigError::Invalid { line, message, .. }) =
        FacadeConfig::parse(Path::new("/nonexistent/strangler.toml"), text)
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
    fn mutated_demo_configuration_never_panics(edits in prop::collection::vec(edit(), 1..5)) {
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
                prop::sample::select(vec!["[facade]", "[store]", "[backends.a]", "[capabilities.c]", "[[routes]]", "[limits]", "[tls]", "[capabilities.c.shadow]", "[capabilities.c.gates]"]).prop_map(str::to_owned),
                ("[a-z_]{1,18}", prop::sample::select(TOKENS.to_vec())).prop_map(|(k, v)| format!("{k} = {v}")),
            ],
            0..12,
        )
    ) {
        check(&lines.join("\n"))?;
    }
}

#[test]
fn the_demo_configuration_parses_or_fails_only_for_its_token() {
    // The seed is valid: mutations start from a file that gets far.
    match FacadeConfig::parse(Path::new("demo/strangler.toml"), DEMO) {
        Ok(_)
        | Err(
            ConfigError::NoAdminToken | ConfigError::TokenFile { .. } | ConfigError::EmptyTokenFile { .. },
        ) => {}
        Err(other) => panic!("the demo configuration is refused: {other}"),
    }
}

#[test]
fn a_syntax_error_toml_gives_no_words_for_still_says_what_is_wrong() {
    // Found by the mapping file's twin of `arbitrary_text_never_panics`:
    // toml's message for a stray carriage return is empty.
    let Err(ConfigError::Invalid { line, message, .. }) = FacadeConfig::parse(Path::new("s.toml"), "\r")
    else {
        panic!("a lone carriage return is refused");
    };
    assert_eq!(line, 1);
    assert!(!message.is_empty());
}
