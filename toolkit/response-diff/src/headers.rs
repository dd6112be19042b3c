//! Headers as the comparison sees them: checking the header names written in rules, and
//! reading one header of a response as a single value.

use http::header::HeaderName;
use http::HeaderMap;

/// Parses a header name from a rule; the error says what is wrong with it.
pub(crate) fn parse_name(entry: &str) -> Result<HeaderName, String> {
    if entry.is_empty() {
        return Err("it is empty".to_owned());
    }
    // `HeaderName` only says "invalid", so find the offending character ourselves.
    if let Some(bad) = entry.chars().find(|character| !is_token_character(*character)) {
        let shown = if bad.is_whitespace() || bad.is_control() {
            format!("{bad:?}")
        } else {
            format!("`{bad}`")
        };
        return Err(format!("it contains {shown}, which a header name cannot contain"));
    }
    HeaderName::from_bytes(entry.as_bytes()).map_err(|_| "it is not a valid header name".to_owned())
}

/// The characters of an HTTP token (RFC 9110, section 5.6.2), which is what a header name is.
fn is_token_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(character)
}

/// All values of one header joined with `, ` (how HTTP folds repeated headers), or `None` when
/// the response does not have it.
pub(crate) fn joined_value(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter();
    let mut joined = values.next()?.as_bytes().to_vec();
    for value in values {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(value.as_bytes());
    }
    Some(joined)
}
