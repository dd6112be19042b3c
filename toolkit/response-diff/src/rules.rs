//! The per-capability comparison rules: which JSON paths and headers are left out of the
//! comparison and which headers are compared at all. Rules are checked once, when they are
//! made, so a typo in a route's configuration is reported to the operator instead of quietly
//! comparing the wrong thing.

use http::header::HeaderName;

use crate::headers::parse_name;
use crate::json_path::PathPattern;

/// Per-capability comparison rules.
///
/// `Rules::default()` compares the status and the body and no header.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Places in JSON bodies that are removed before comparing and rendering.
    pub(crate) ignored_paths: Vec<PathPattern>,
    /// Headers compared besides the status, sorted by name, without the ignored ones.
    pub(crate) compared_headers: Vec<HeaderName>,
    /// The `ignore` entries as the configuration wrote them, for display.
    ignore: Vec<String>,
}

/// A rule that cannot be used, with the entry, what is wrong and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// An `ignore` entry starts with `$` but is not a JSON path this crate understands.
    #[error("ignore entry `{entry}` is not a valid JSON path: {problem}; {fix}")]
    Path {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        problem: String,
        /// What to write instead.
        fix: String,
    },
    /// An `ignore` entry does not start with `$`, so it names a header, but not a valid one.
    #[error(
        "ignore entry `{entry}` is not a valid header name: {problem}; write a header name such as \
         `x-request-id`, or a JSON path starting with `$` such as `$.updated_at`"
    )]
    IgnoredHeader {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A `headers` entry is not a valid header name.
    #[error(
        "headers entry `{entry}` is not a valid header name: {problem}; write a header name such as \
         `content-type`"
    )]
    Header {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl Rules {
    /// Makes rules from a capability's configuration.
    ///
    /// `ignore`: entries starting with `$` are JSON paths whose values are not compared:
    /// `$.updated_at`, `$.items[*].updated_at` (every element), `$.items[0].note` (one element),
    /// `$..updated_at` (that key at any depth), `$.meta.*` (every child), `$["odd key"]`.
    /// Any other entry is a header name that is not compared.
    ///
    /// `headers`: header names compared besides the status (for example `["content-type"]`),
    /// in any case; an ignored header is removed from that set.
    ///
    /// Fails on the first entry that is not a valid path or header name, naming it.
    pub fn new(ignore: &[String], headers: &[String]) -> Result<Rules, RuleError> {
        let mut ignored_paths = Vec::new();
        let mut ignored_headers = Vec::new();
        for entry in ignore {
            if entry.starts_with('$') {
                let pattern = PathPattern::parse(entry).map_err(|error| RuleError::Path {
                    entry: entry.clone(),
                    problem: error.problem,
                    fix: error.fix,
                })?;
                ignored_paths.push(pattern);
            } else {
                let name = parse_name(entry).map_err(|problem| RuleError::IgnoredHeader {
                    entry: entry.clone(),
                    problem,
                })?;
                ignored_headers.push(name);
            }
        }
        let mut compared_headers = Vec::new();
        for entry in headers {
            let name = parse_name(entry).map_err(|problem| RuleError::Header {
                entry: entry.clone(),
                problem,
            })?;
            if !ignored_headers.contains(&name) {
                compared_headers.push(name);
            }
        }
        compared_headers.sort_unstable_by(|left, right| left.as_str().cmp(right.as_str()));
        compared_headers.dedup();
        Ok(Rules {
            ignored_paths,
            compared_headers,
            ignore: ignore.to_vec(),
        })
    }

    /// The `ignore` entries (JSON paths and header names) as configured.
    pub fn ignore_entries(&self) -> &[String] {
        &self.ignore
    }

    /// The headers compared besides the status, lower-case and sorted.
    pub fn compared_headers(&self) -> impl Iterator<Item = &str> {
        self.compared_headers.iter().map(HeaderName::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|entry| (*entry).to_owned()).collect()
    }

    #[test]
    fn ignored_headers_leave_the_compared_set_and_names_are_normalized() {
        let rules = Rules::new(
            &strings(&["$.updated_at", "X-Request-Id"]),
            &strings(&["Content-Type", "x-request-id", "content-type", "etag"]),
        )
        .unwrap();
        assert_eq!(
            rules.compared_headers().collect::<Vec<_>>(),
            ["content-type", "etag"]
        );
        assert_eq!(rules.ignored_paths.len(), 1);
    }

    #[test]
    fn bad_entries_are_named_with_what_to_write_instead() {
        let error = Rules::new(&strings(&["$.ok", "$.items[*.price"]), &[]).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("ignore entry `$.items[*.price` is not a valid JSON path"),
            "{message}"
        );
        assert!(message.contains("[*]"), "{message}");

        let error = Rules::new(&strings(&["updated at"]), &[]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "ignore entry `updated at` is not a valid header name: it contains ' ', which a header name \
             cannot contain; write a header name such as `x-request-id`, or a JSON path starting with `$` \
             such as `$.updated_at`"
        );

        let error = Rules::new(&[], &strings(&["content-type", ""])).unwrap_err();
        assert_eq!(
            error,
            RuleError::Header {
                entry: String::new(),
                problem: "it is empty".to_owned()
            }
        );
        let error = Rules::new(&[], &strings(&["content:type"])).unwrap_err();
        assert!(error.to_string().contains("it contains `:`"), "{error}");
    }
}
