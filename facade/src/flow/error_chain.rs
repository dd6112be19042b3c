//! Errors written for logs with every cause, since `Display` shows only the
//! outermost.

use std::error::Error;

/// Formats an error and its sources as `outer: inner: innermost`.
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
