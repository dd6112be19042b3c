//! Timestamps as the sample apps store them: RFC 3339 UTC text with
//! millisecond precision (`2026-11-23T13:15:02.123Z`). Text compares and
//! sorts correctly, reads the same on SQLite and PostgreSQL, and is what many
//! legacy schemas really hold.

use chrono::{SecondsFormat, Utc};

/// The current time in the stored format.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
