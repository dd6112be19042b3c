//! Timestamps as the sample apps store them: RFC 3339 UTC text with
//! millisecond precision (`2026-11-23T13:15:02.123Z`). Text compares and
//! sorts correctly, reads the same on SQLite and PostgreSQL, and is what many
//! legacy schemas really hold.
//!
//! Code whose logic depends on the time (expiry, timeouts) takes the current
//! time as a [`DateTime<Utc>`] argument, so that tests can inject it.

use std::time::Duration;

pub use chrono::{DateTime, Utc};
use chrono::{SecondsFormat, TimeDelta};

/// The current time in the stored format.
pub fn now() -> String {
    format(Utc::now())
}

/// `at` in the stored format.
pub fn format(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The earliest stored time: sorts before every other.
const EARLIEST: &str = "0000-01-01T00:00:00.000Z";
/// The latest stored time: sorts after every other.
const LATEST: &str = "9999-12-31T23:59:59.999Z";

/// `at` moved back by `ago`, in the stored format; [`EARLIEST`] when that
/// leaves the four-digit years that sort as text.
pub fn before(at: DateTime<Utc>, ago: Duration) -> String {
    TimeDelta::from_std(ago)
        .ok()
        .and_then(|delta| at.checked_sub_signed(delta))
        .map(format)
        .filter(|text| text.as_str() >= EARLIEST && text.len() == EARLIEST.len())
        .unwrap_or_else(|| EARLIEST.to_owned())
}

/// `at` moved forward by `ahead`, in the stored format; [`LATEST`] when
/// that leaves the four-digit years that sort as text.
pub fn after(at: DateTime<Utc>, ahead: Duration) -> String {
    TimeDelta::from_std(ahead)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .map(format)
        .filter(|text| text.as_str() <= LATEST && text.len() == LATEST.len())
        .unwrap_or_else(|| LATEST.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_and_formats_sortable_text() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T13:15:02.123Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        assert_eq!(format(at), "2026-11-23T13:15:02.123Z");
        assert_eq!(before(at, Duration::from_secs(60)), "2026-11-23T13:14:02.123Z");
        assert_eq!(after(at, Duration::from_millis(900)), "2026-11-23T13:15:03.023Z");
        assert!(before(at, Duration::from_secs(1)) < format(at));
        assert_eq!(before(at, Duration::MAX), EARLIEST);
        assert_eq!(after(at, Duration::MAX), LATEST);
        assert_eq!(after(at, Duration::from_secs(10_000 * 366 * 86_400)), LATEST);
    }
}
