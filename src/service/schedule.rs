//! The schedule math: cron expressions (seconds field allowed) read in a fixed zone, when the
//! next run is due given the last one, and which months a refresh rewrites.
//!
//! Everything here is a pure function of instants, so it is tested without waiting. A
//! missed run is caught up once, not once per missed occurrence: after a restart whose
//! last run is older than the latest occurrence, the next run is due at once and the one
//! after it follows the expression from there.

use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;

use crate::calendar::Month;

/// Parses a cron expression: five fields, or six with seconds first.
///
/// ```
/// # use cecsync::service::schedule::parse_cron;
/// assert!(parse_cron("0 */15 * * * *").is_ok());
/// assert!(parse_cron("*/15 * * * *").is_ok());
/// assert!(parse_cron("every minute").unwrap_err().contains("every minute"));
/// ```
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(text)
        .map_err(|e| format!("'{text}' is not a cron expression ({e})"))
}

/// A cron expression read in one zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    text: String,
    zone: FixedOffset,
}

impl Schedule {
    /// A schedule of `text` in `zone`.
    pub fn new(text: &str, zone: FixedOffset) -> Result<Self, String> {
        Ok(Self { cron: parse_cron(text)?, text: text.to_string(), zone })
    }

    /// The expression as configured.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first occurrence strictly after `after`, if there is one.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// When the next run is due. Without a last run (a new deployment) it is the first
    /// occurrence after `now`; when an occurrence after the last run has already passed
    /// (the service was down) it is `now`, once; otherwise the next occurrence.
    pub fn next_due(
        &self,
        last_run: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match last_run {
            None => self.next_after(now),
            Some(last) => match self.next_after(last) {
                Some(next) if next <= now => Some(now),
                other => other,
            },
        }
    }
}

/// The months a refresh at `now` rewrites: the open month of `zone`, and the month before
/// it while fewer than `previous_days` days have passed since it ended.
///
/// ```
/// # use cecsync::{calendar::{parse_zone, Month}, service::schedule::refresh_months};
/// let zone = parse_zone("+08:00").unwrap();
/// let now = "2025-03-02T00:00:00Z".parse().unwrap(); // 08:00 on March 2nd in +08:00
/// let (feb, mar) = (Month::new(2025, 2).unwrap(), Month::new(2025, 3).unwrap());
/// assert_eq!(refresh_months(now, zone, 3), (feb, mar));
/// assert_eq!(refresh_months(now, zone, 1), (mar, mar));
/// ```
pub fn refresh_months(now: DateTime<Utc>, zone: FixedOffset, previous_days: u32) -> (Month, Month) {
    let open = Month::containing(now, zone);
    let since_end = now - open.start(zone);
    if since_end < ChronoDuration::days(i64::from(previous_days)) {
        (open.prev(), open)
    } else {
        (open, open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_zone;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn cst() -> FixedOffset {
        parse_zone("+08:00").unwrap()
    }

    /// Occurrences are read in the schedule's zone: 02:30 nightly in +08:00 is 18:30 UTC,
    /// and each night fires once.
    #[test]
    fn nightly_runs_in_the_schedule_zone_once_a_day() {
        let s = Schedule::new("0 30 2 * * *", cst()).unwrap();
        let first = s.next_after(at("2025-06-01T12:00:00Z")).unwrap();
        assert_eq!(first, at("2025-06-01T18:30:00Z"));
        let second = s.next_after(first).unwrap();
        assert_eq!(second - first, ChronoDuration::days(1));
        let utc = Schedule::new("0 30 2 * * *", parse_zone("UTC").unwrap()).unwrap();
        assert_eq!(utc.next_after(at("2025-06-01T12:00:00Z")).unwrap(), at("2025-06-02T02:30:00Z"));
    }

    /// A seconds field fires every few seconds, strictly after the given instant.
    #[test]
    fn seconds_field_is_supported() {
        let s = Schedule::new("*/2 * * * * *", cst()).unwrap();
        assert_eq!(s.next_after(at("2025-06-01T00:00:00Z")).unwrap(), at("2025-06-01T00:00:02Z"));
        assert_eq!(
            s.next_after(at("2025-06-01T00:00:01.500Z")).unwrap(),
            at("2025-06-01T00:00:02Z")
        );
    }

    /// A service down for many occurrences catches up once, at restart, then follows the
    /// expression; with no last run the first run waits for the next occurrence.
    #[test]
    fn missed_runs_are_caught_up_once() {
        let s = Schedule::new("0 */15 * * * *", cst()).unwrap();
        let now = at("2025-06-01T10:07:00Z");
        assert_eq!(s.next_due(None, now), Some(at("2025-06-01T10:15:00Z")));
        let long_ago = at("2025-05-30T00:00:00Z");
        assert_eq!(s.next_due(Some(long_ago), now), Some(now), "one catch-up run, now");
        assert_eq!(s.next_due(Some(now), now), Some(at("2025-06-01T10:15:00Z")), "then on time");
        let recent = at("2025-06-01T10:00:00Z");
        assert_eq!(s.next_due(Some(recent), now), Some(at("2025-06-01T10:15:00Z")));
    }

    /// The previous month is refreshed for `previous_days` days after it ends, in the zone.
    #[test]
    fn refresh_covers_the_previous_month_for_a_few_days() {
        let m = |y, n| Month::new(y, n).unwrap();
        // April began at 2025-03-31T16:00Z in +08:00: 2 days 23:59 later March still counts.
        assert_eq!(refresh_months(at("2025-04-03T15:59:00Z"), cst(), 3), (m(2025, 3), m(2025, 4)));
        assert_eq!(refresh_months(at("2025-04-03T16:00:00Z"), cst(), 3), (m(2025, 4), m(2025, 4)));
        assert_eq!(refresh_months(at("2025-01-01T00:00:00Z"), cst(), 0), (m(2025, 1), m(2025, 1)));
        // Mid-January in +08:00 can still be December in UTC: the zone decides.
        assert_eq!(refresh_months(at("2024-12-31T17:00:00Z"), cst(), 2), (m(2024, 12), m(2025, 1)));
    }

    /// A bad expression is refused with the expression in the message.
    #[test]
    fn bad_expressions_are_refused() {
        assert!(Schedule::new("61 * * * * *", cst()).unwrap_err().contains("61 * * * * *"));
    }
}
