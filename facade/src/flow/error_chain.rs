//! Errors written for logs with every cause, since `Display` shows only the
//! outermost.

use std::error::Error;

/// Formats an error and its sources as `outer: inner: innermost`.
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    std::iter::successors(Some(error), |&e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
