//! The one reading of a `Content-Length` field value, for every place the
//! facade frames a body by it: a client's request head (the fast path's
//! and, after hyper, the proxy's own check), an upstream's response head,
//! and an answer written to the client.
//!
//! RFC 9110 §8.6: `Content-Length = 1*DIGIT`. A sender that merged
//! repeated fields may send a list of identical values (`5, 5`), which a
//! recipient may read as that one value; whether to is the caller's
//! choice ([`Lists`]). Anything else is invalid: a sign (`+5`, `-1`), a
//! space inside a number, an empty value or list member, a number that
//! does not fit in a `u64`, or list members that differ. Where two
//! parsers disagree on a body's length a request can be smuggled past one
//! of them, so the rules are the strictest the RFC allows and the same
//! everywhere; `str::parse` is not used, as it takes `+5`.

/// How a field value that is a comma-separated list is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lists {
    /// A list is invalid, even of identical values: for a reader that
    /// leaves every unusual head to another parser.
    Refused,
    /// A list of identical values is read as that value (RFC 9110 §8.6).
    Identical,
}

/// The length a `Content-Length` field value declares, or `None` if it is
/// invalid. Optional whitespace around the value and around a list's
/// commas is allowed, as the field syntax has it; inside a number it is
/// not.
#[inline]
pub(crate) fn parse(value: &[u8], lists: Lists) -> Option<u64> {
    // The usual value: a few digits and nothing else. Nineteen digits
    // always fit in a u64.
    if (1..=19).contains(&value.len()) && value.iter().all(u8::is_ascii_digit) {
        return Some(value.iter().fold(0, |n, &b| n * 10 + u64::from(b - b'0')));
    }
    let mut members = value.split(|&b| b == b',');
    let first = members.next().and_then(member)?;
    match lists {
        Lists::Refused => members.next().is_none().then_some(first),
        Lists::Identical => members.all(|m| member(m) == Some(first)).then_some(first),
    }
}

/// One list member: `1*DIGIT` between optional whitespace.
#[inline]
fn member(text: &[u8]) -> Option<u64> {
    let digits = trim_ows(text);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// `text` without leading and trailing `OWS` (spaces and tabs only, RFC
/// 9110 §5.6.3).
#[inline]
fn trim_ows(mut text: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = text {
        text = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = text {
        text = rest;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(value: &str) -> (Option<u64>, Option<u64>) {
        (
            parse(value.as_bytes(), Lists::Refused),
            parse(value.as_bytes(), Lists::Identical),
        )
    }

    #[test]
    fn reads_digits_with_leading_zeros() {
        assert_eq!(both("0"), (Some(0), Some(0)));
        assert_eq!(both("5"), (Some(5), Some(5)));
        assert_eq!(both("1048576"), (Some(1_048_576), Some(1_048_576)));
        assert_eq!(both("007"), (Some(7), Some(7)));
        assert_eq!(both("00000000000000000000000000042"), (Some(42), Some(42)));
    }

    #[test]
    fn refuses_signs_and_other_characters() {
        for value in ["+5", "-1", "5a", "0x10", "1e3", "5.0", "٣", "5\u{0}"] {
            assert_eq!(both(value), (None, None), "{value:?}");
        }
    }

    #[test]
    fn allows_whitespace_around_the_value_but_not_inside_it() {
        assert_eq!(both(" 5"), (Some(5), Some(5)));
        assert_eq!(both("5 "), (Some(5), Some(5)));
        assert_eq!(both("\t5\t"), (Some(5), Some(5)));
        assert_eq!(both("5 5"), (None, None));
        assert_eq!(both("1 000"), (None, None));
    }

    #[test]
    fn refuses_empty_values_and_members() {
        for value in ["", " ", ",", "5,", ",5", "5,,5", "5, ,5"] {
            assert_eq!(both(value), (None, None), "{value:?}");
        }
    }

    #[test]
    fn reads_a_list_of_identical_values_only_when_asked_to() {
        assert_eq!(both("1,1"), (None, Some(1)));
        assert_eq!(both("5, 5"), (None, Some(5)));
        assert_eq!(both("5 ,5 , 5"), (None, Some(5)));
        assert_eq!(
            both("5, 05"),
            (None, Some(5)),
            "the same length, spelled otherwise"
        );
        assert_eq!(both("1,2"), (None, None));
        assert_eq!(both("5, 5, 6"), (None, None));
        assert_eq!(both("5, +5"), (None, None));
    }

    #[test]
    fn refuses_lengths_beyond_u64() {
        assert_eq!(both("18446744073709551615"), (Some(u64::MAX), Some(u64::MAX)));
        assert_eq!(both("18446744073709551616"), (None, None));
        assert_eq!(both("99999999999999999999"), (None, None));
        assert_eq!(both("184467440737095516150"), (None, None));
    }
}
