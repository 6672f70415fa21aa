//! [`CronSchedule`]: a schedule's cron expression (`croner`), read in
//! UTC or its own time zone (`chrono-tz`), and its instants — whole
//! seconds, so every host computes the same ones. A leaf.

use std::str::FromStr;

use chrono::{DateTime, Timelike, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A schedule's expression, parsed, in its time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: chrono_tz::Tz,
}

impl CronSchedule {
    /// Parses `expression` read in `timezone` (UTC when `None`); the error
    /// says what is wrong.
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "has {fields} fields: give five (minute hour day-of-month month day-of-week) or six (seconds first)"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|err| format!("is not a cron expression: {err}"))?;
        let zone = match timezone {
            None => chrono_tz::UTC,
            Some(name) => chrono_tz::Tz::from_str(name)
                .map_err(|_| format!("`{name}` is not an IANA time zone"))?,
        };
        Ok(Self { cron, zone })
    }

    /// The first instant strictly after `after`. Instants are whole
    /// seconds, whatever the fraction of `after`: every host computes the
    /// same ones.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = whole_second(after).with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The last instant at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = whole_second(at).with_timezone(&self.zone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|previous| previous.with_timezone(&Utc))
    }
}

/// `at` without its fraction of a second.
fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(0).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_field_expressions_give_their_instants() {
        let every_five = CronSchedule::parse("*/5 * * * *", None).unwrap();
        assert_eq!(
            every_five.next_after(at("2026-12-04T10:02:30Z")),
            Some(at("2026-12-04T10:05:00Z"))
        );
        assert_eq!(
            every_five.latest_at_or_before(at("2026-12-04T10:05:00Z")),
            Some(at("2026-12-04T10:05:00Z"))
        );
        let every_second = CronSchedule::parse("* * * * * *", None).unwrap();
        assert_eq!(
            every_second.next_after(at("2026-12-04T10:02:30Z")),
            Some(at("2026-12-04T10:02:31Z"))
        );
        // Whole seconds, whatever the fraction of the time asked from.
        assert_eq!(
            every_second.next_after(at("2026-12-04T10:02:30.889Z")),
            Some(at("2026-12-04T10:02:31Z"))
        );
        assert_eq!(
            every_five.latest_at_or_before(at("2026-12-04T10:07:59.999Z")),
            Some(at("2026-12-04T10:05:00Z"))
        );
        let paris = CronSchedule::parse("0 9 * * *", Some("Europe/Paris")).unwrap();
        assert_eq!(
            paris.next_after(at("2026-12-04T00:00:00Z")),
            Some(at("2026-12-04T08:00:00Z"))
        );
    }
}
