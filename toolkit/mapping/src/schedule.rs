//! A capability's `schedule`: a cron expression with seconds
//! (`0 */5 * * * *`), parsed once when the mapping is loaded. The scheduler
//! asks the parsed [`croner::Cron`] for each next occurrence; the text is
//! kept for logs and messages.

use std::fmt;

use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// A parsed cron expression with seconds, and the text it was parsed from.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: Cron,
}

impl Schedule {
    /// Parses a cron expression with seconds, in which a day must match
    /// both the day of month and the day of week; the error says what a
    /// valid expression looks like.
    pub fn parse(expression: &str) -> Result<Self, String> {
        CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expression)
            .map(|cron| Self {
                expression: expression.to_owned(),
                cron,
            })
            .map_err(|error| {
                format!(
                    "schedule `{expression}` is not a cron expression with seconds (like `0 */5 * * * *`): {error}"
                )
            })
    }

    /// The expression as written in the mapping file.
    pub fn as_str(&self) -> &str {
        &self.expression
    }

    /// The parsed expression, to find its occurrences.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }
}

/// Two schedules are equal when they were written alike.
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl Eq for Schedule {}

/// The expression as written.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_text_and_the_parsed_expression() {
        let schedule = Schedule::parse("*/30 * * * * *").unwrap();
        assert_eq!(schedule.as_str(), "*/30 * * * * *");
        assert_eq!(schedule.to_string(), "*/30 * * * * *");
        assert_eq!(schedule, Schedule::parse("*/30 * * * * *").unwrap());
        assert!(schedule
            .cron()
            .is_time_matching(
                &"2026-01-01T00:00:30Z"
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .unwrap()
            )
            .unwrap());
    }

    #[test]
    fn seconds_are_required() {
        let error = Schedule::parse("*/5 * * * *").unwrap_err();
        assert!(
            error.starts_with("schedule `*/5 * * * *` is not a cron expression with seconds"),
            "{error}"
        );
    }
}
