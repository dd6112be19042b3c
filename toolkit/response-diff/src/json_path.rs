//! JSON paths: the patterns of `ignore` entries and learned noise (`$.items[*].updated_at`,
//! `$..updated_at`, `$.meta.*`, `$["odd key"]`), matching them against the concrete places of a
//! body while it is walked, and writing the generalized names that `Comparison::fields` reports.
//!
//! Matching is done as a small automaton over every pattern at once, advanced one step per
//! child, so a body is walked once however many patterns there are and `..key` costs no
//! backtracking.

use std::fmt;

/// One step from a JSON value to one of its children.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step<'a> {
    /// An object member.
    Key(&'a str),
    /// An array element.
    Index(usize),
}

/// A step in a generalized name: array indices are all the same place.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GeneralStep<'a> {
    /// An object member.
    Key(&'a str),
    /// Any array element, written `[*]`.
    AnyIndex,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    Key(String),
    /// `*`: every child, member or element, as "every child" is what people mean by `$.meta.*`.
    AnyChild,
    Index(usize),
    AnyIndex,
}

impl Selector {
    fn selects(&self, step: Step<'_>) -> bool {
        match (self, step) {
            (Selector::Key(key), Step::Key(name)) => key == name,
            (Selector::Index(index), Step::Index(at)) => *index == at,
            (Selector::AnyChild, _) | (Selector::AnyIndex, Step::Index(_)) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    /// Written `..`: the selector may apply at this depth or any deeper one.
    at_any_depth: bool,
    selector: Selector,
}

/// A parsed JSON path pattern; `$` alone is the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathPattern {
    segments: Vec<Segment>,
}

/// Why a pattern does not parse, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathSyntaxError {
    pub(crate) problem: String,
    pub(crate) fix: String,
}

impl fmt::Display for PathSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.problem, self.fix)
    }
}

const GENERAL_FIX: &str =
    "write a path such as `$.updated_at`, `$.items[*].updated_at`, `$.items[0].note`, `$..updated_at`, \
     `$.meta.*` or `$[\"odd key\"]`";

fn syntax_error(problem: impl Into<String>, fix: impl Into<String>) -> PathSyntaxError {
    PathSyntaxError {
        problem: problem.into(),
        fix: fix.into(),
    }
}

fn is_identifier_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Whether a key can be written after a dot; any other key is written `["..."]`.
pub(crate) fn is_identifier(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.first().is_some_and(|first| is_identifier_start(*first))
        && bytes.iter().all(|byte| is_identifier_byte(*byte))
}

/// Appends one key of a generalized name: `.key`, or `["odd key"]` when it is not an identifier.
pub(crate) fn push_key(out: &mut String, key: &str) {
    if is_identifier(key) {
        out.push('.');
        out.push_str(key);
    } else {
        out.push('[');
        crate::canonical::push_json_string(out, key);
        out.push(']');
    }
}

/// The generalized name of a place: `$`, then each step.
pub(crate) fn general_name(path: &[GeneralStep<'_>]) -> String {
    let mut name = String::from("$");
    for step in path {
        match step {
            GeneralStep::Key(key) => push_key(&mut name, key),
            GeneralStep::AnyIndex => name.push_str("[*]"),
        }
    }
    name
}

impl PathPattern {
    /// Parses a pattern; `text` starts with `$` (the caller decides what is a path).
    pub(crate) fn parse(text: &str) -> Result<PathPattern, PathSyntaxError> {
        let bytes = text.as_bytes();
        if bytes.first() != Some(&b'$') {
            return Err(syntax_error("a JSON path starts with `$`", GENERAL_FIX));
        }
        let mut segments = Vec::new();
        let mut at = 1;
        while at < bytes.len() {
            let (segment, next) = if text[at..].starts_with("..") {
                let (selector, next) = parse_selector(text, at + 2, "..")?;
                (
                    Segment {
                        at_any_depth: true,
                        selector,
                    },
                    next,
                )
            } else if bytes[at] == b'.' {
                let (selector, next) = parse_selector(text, at + 1, ".")?;
                (
                    Segment {
                        at_any_depth: false,
                        selector,
                    },
                    next,
                )
            } else if bytes[at] == b'[' {
                let (selector, next) = parse_bracket(text, at)?;
                (
                    Segment {
                        at_any_depth: false,
                        selector,
                    },
                    next,
                )
            } else {
                return Err(unexpected_character(text, at));
            };
            segments.push(segment);
            at = next;
        }
        Ok(PathPattern { segments })
    }
}

fn unexpected_character(text: &str, at: usize) -> PathSyntaxError {
    let found = text[at..].chars().next().unwrap_or(' ');
    if at == 1 {
        syntax_error(
            format!("`{found}` right after `$`; every step starts with `.` or `[`"),
            format!("write `$.{}` instead", &text[1..]),
        )
    } else {
        syntax_error(
            format!("unexpected `{found}` at byte {at}; every step starts with `.`, `..` or `[`"),
            GENERAL_FIX,
        )
    }
}

/// Parses what follows `.` or `..`: `*`, an identifier, or (after `..` only) a bracket.
fn parse_selector(text: &str, at: usize, lead: &str) -> Result<(Selector, usize), PathSyntaxError> {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.get(at) else {
        return Err(syntax_error(
            format!("it ends with `{lead}` and no key after it"),
            format!("name a key after `{lead}`, or write `{lead}*` for every child"),
        ));
    };
    if first == b'*' {
        return Ok((Selector::AnyChild, at + 1));
    }
    if first == b'[' {
        if lead == ".." {
            return parse_bracket(text, at);
        }
        return Err(syntax_error(
            "`.[` is not a step",
            format!("drop the dot: write `{}{}`", &text[..at - 1], &text[at..]),
        ));
    }
    let end = bytes[at..]
        .iter()
        .position(|byte| !is_identifier_byte(*byte))
        .map_or(bytes.len(), |offset| at + offset);
    let ends_cleanly = end == bytes.len() || bytes[end] == b'.' || bytes[end] == b'[';
    if is_identifier_start(first) && ends_cleanly {
        return Ok((Selector::Key(text[at..end].to_owned()), end));
    }
    // Not an identifier: show the bracket form of the whole raw key.
    let raw_end = bytes[at..]
        .iter()
        .position(|byte| *byte == b'.' || *byte == b'[')
        .map_or(bytes.len(), |offset| at + offset);
    let raw = &text[at..raw_end];
    let mut quoted = String::new();
    crate::canonical::push_json_string(&mut quoted, raw);
    let prefix = &text[..at - 1];
    let prefix = if lead == ".." { &text[..at] } else { prefix };
    if raw.is_empty() {
        return Err(syntax_error(
            format!("`{lead}` is followed by no key name"),
            GENERAL_FIX,
        ));
    }
    let mut fix = format!("write `{prefix}[{quoted}]{}` instead", &text[raw_end..]);
    if raw.bytes().all(|byte| byte.is_ascii_digit()) {
        fix.push_str(&format!(
            " (or `{prefix}[{raw}]{}` for an array index)",
            &text[raw_end..]
        ));
    }
    let problem =
        format!("key `{raw}` is not a plain identifier (letters, digits and `_`, not starting with a digit)");
    Err(syntax_error(problem, fix))
}

/// Parses `[*]`, `[3]` or `["key"]` starting at the `[`.
fn parse_bracket(text: &str, open: usize) -> Result<(Selector, usize), PathSyntaxError> {
    let bytes = text.as_bytes();
    let inner = open + 1;
    let close_fix = "close it: `[*]`, `[0]` or `[\"key\"]`";
    match bytes.get(inner) {
        Some(b'*') => {
            expect_close(bytes, inner + 1, close_fix)?;
            Ok((Selector::AnyIndex, inner + 2))
        }
        Some(b'"') => {
            let mut at = inner + 1;
            let mut closed = None;
            while at < bytes.len() {
                match bytes[at] {
                    b'\\' => at += 2,
                    b'"' => {
                        closed = Some(at);
                        break;
                    }
                    _ => at += 1,
                }
            }
            let Some(quote) = closed else {
                return Err(syntax_error("the quoted key is never closed", close_fix));
            };
            let key: String = serde_json::from_str(&text[inner..=quote]).map_err(|error| {
                syntax_error(
                    format!("the quoted key is not a valid JSON string ({error})"),
                    "escape `\"` and `\\` with a backslash",
                )
            })?;
            expect_close(bytes, quote + 1, close_fix)?;
            Ok((Selector::Key(key), quote + 2))
        }
        Some(b'\'') => Err(syntax_error(
            "keys in brackets are quoted with `'`",
            "use double quotes: `[\"key\"]`",
        )),
        Some(digit) if digit.is_ascii_digit() => {
            let end = bytes[inner..]
                .iter()
                .position(|byte| !byte.is_ascii_digit())
                .map_or(bytes.len(), |offset| inner + offset);
            let index = text[inner..end].parse::<usize>().map_err(|_| {
                syntax_error(format!("index `{}` is too large", &text[inner..end]), GENERAL_FIX)
            })?;
            expect_close(bytes, end, close_fix)?;
            Ok((Selector::Index(index), end + 1))
        }
        None => Err(syntax_error("a `[` is not closed by `]`", close_fix)),
        _ => Err(syntax_error(
            "`[` must hold `*`, an index or a double-quoted key",
            "write `[*]` for every element, `[0]` for one, or `[\"key\"]` for a key",
        )),
    }
}

fn expect_close(bytes: &[u8], at: usize, fix: &str) -> Result<(), PathSyntaxError> {
    if bytes.get(at) == Some(&b']') {
        Ok(())
    } else {
        Err(syntax_error("a `[` is not closed by `]`", fix))
    }
}

/// Where the walk stands in every pattern: (pattern, next segment) pairs still alive.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cursor {
    states: Vec<(usize, usize)>,
}

/// Every pattern that removes parts of a body, matched together.
#[derive(Debug, Clone, Default)]
pub(crate) struct Matcher<'p> {
    patterns: Vec<&'p PathPattern>,
}

impl<'p> Matcher<'p> {
    /// A matcher for these patterns.
    pub(crate) fn new(patterns: impl IntoIterator<Item = &'p PathPattern>) -> Matcher<'p> {
        Matcher {
            patterns: patterns.into_iter().collect(),
        }
    }

    /// The cursor at the root, or `None` when a pattern removes the whole body.
    pub(crate) fn root(&self) -> Option<Cursor> {
        if self.patterns.iter().any(|pattern| pattern.segments.is_empty()) {
            return None;
        }
        Some(Cursor {
            states: (0..self.patterns.len()).map(|pattern| (pattern, 0)).collect(),
        })
    }

    /// The cursor at a child, or `None` when a pattern removes that child.
    pub(crate) fn descend(&self, cursor: &Cursor, step: Step<'_>) -> Option<Cursor> {
        let mut next = Cursor::default();
        for &(pattern, position) in &cursor.states {
            let segments = &self.patterns[pattern].segments;
            let Some(segment) = segments.get(position) else {
                continue;
            };
            if segment.at_any_depth {
                next.add((pattern, position));
            }
            if segment.selector.selects(step) {
                if position + 1 == segments.len() {
                    return None;
                }
                next.add((pattern, position + 1));
            }
        }
        Some(next)
    }
}

impl Cursor {
    fn add(&mut self, state: (usize, usize)) {
        // Few patterns are alive at once, so a linear check beats hashing.
        if !self.states.contains(&state) {
            self.states.push(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removed(pattern: &str, path: &[Step<'_>]) -> bool {
        let Ok(pattern) = PathPattern::parse(pattern) else {
            panic!("pattern {pattern} does not parse");
        };
        let matcher = Matcher::new([&pattern]);
        let Some(mut cursor) = matcher.root() else {
            return true;
        };
        for step in path {
            match matcher.descend(&cursor, *step) {
                Some(next) => cursor = next,
                None => return true,
            }
        }
        false
    }

    #[test]
    fn patterns_match_the_places_they_name() {
        use Step::{Index, Key};
        assert!(removed("$.updated_at", &[Key("updated_at")]));
        assert!(!removed("$.updated_at", &[Key("meta"), Key("updated_at")]));
        assert!(removed(
            "$.items[*].updated_at",
            &[Key("items"), Index(7), Key("updated_at")]
        ));
        assert!(removed("$.items[0].note", &[Key("items"), Index(0), Key("note")]));
        assert!(!removed(
            "$.items[0].note",
            &[Key("items"), Index(1), Key("note")]
        ));
        assert!(removed("$..updated_at", &[Key("updated_at")]));
        assert!(removed(
            "$..updated_at",
            &[Key("a"), Index(2), Key("b"), Key("updated_at")]
        ));
        assert!(!removed("$..updated_at", &[Key("a"), Key("created_at")]));
        assert!(removed("$.meta.*", &[Key("meta"), Key("anything")]));
        assert!(removed("$.meta.*", &[Key("meta"), Index(3)]));
        assert!(!removed("$.meta.*", &[Key("other"), Key("anything")]));
        assert!(!removed("$.items[*]", &[Key("items"), Key("a")]));
        assert!(removed("$[\"odd key\"].x", &[Key("odd key"), Key("x")]));
        assert!(removed("$..a.b", &[Key("x"), Key("a"), Key("b")]));
        assert!(removed("$..a.b", &[Key("a"), Key("a"), Key("b")]));
        assert!(removed("$", &[]));
    }

    #[test]
    fn generalized_names_parse_back_as_patterns_of_the_same_place() {
        let name = general_name(&[
            GeneralStep::Key("items"),
            GeneralStep::AnyIndex,
            GeneralStep::Key("odd \"key\""),
            GeneralStep::Key("9lives"),
        ]);
        assert_eq!(name, r#"$.items[*]["odd \"key\""]["9lives"]"#);
        assert!(removed(
            &name,
            &[
                Step::Key("items"),
                Step::Index(4),
                Step::Key("odd \"key\""),
                Step::Key("9lives")
            ]
        ));
    }

    #[test]
    fn syntax_errors_say_what_to_write() {
        let error = |text: &str| match PathPattern::parse(text) {
            Ok(pattern) => panic!("{text} parsed as {pattern:?}"),
            Err(error) => error.to_string(),
        };
        assert!(error("$.foo-bar.x").contains(r#"write `$["foo-bar"].x` instead"#));
        assert!(error("$..foo-bar").contains(r#"write `$..["foo-bar"]` instead"#));
        assert!(error("$.items.0").contains("`$.items[0]` for an array index"));
        assert!(error("$items").contains("write `$.items` instead"));
        assert!(error("$.items[").contains("not closed"));
        assert!(error("$.items[x]").contains("[*]"));
        assert!(error("$['a']").contains("double quotes"));
        assert!(error("$.").contains("ends with `.`"));
        assert!(error("$..").contains("ends with `..`"));
        assert!(error("$.a.[0]").contains("write `$.a[0]`"));
        assert!(error("$[\"open").contains("never closed"));
        assert!(error("$[99999999999999999999999]").contains("too large"));
        assert!(error("$.é").contains("not a plain identifier"));
    }
}
