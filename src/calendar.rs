//! Calendar months in a source's time zone: the unit of slicing, checkpointing and
//! partitioning.
//!
//! The outbound failure-analysis API keeps one table per month and queries only the table of
//! the month that contains `beginTime`, so every requested range is cut into
//! [`MonthSlice`]s that never cross a month edge in the *server's* zone.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

/// Why a month or zone could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    /// The text is not a `YYYY-MM` month.
    #[error("'{0}' is not a month: write it as YYYY-MM, for example 2025-01")]
    BadMonth(String),
    /// The text is not a fixed UTC offset.
    #[error("'{0}' is not a time zone offset: write it as +08:00, UTC+08:00 or UTC")]
    BadZone(String),
}

impl Month {
    /// Builds a month; `month` is 1 to 12.
    ///
    /// ```
    /// # use cecsync::calendar::Month;
    /// assert_eq!(Month::new(2025, 2).unwrap().to_string(), "2025-02");
    /// assert!(Month::new(2025, 13).is_none());
    /// ```
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1..=12).contains(&month) && (1000..=9999).contains(&year)).then_some(Self { year, month })
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month of the year, 1 to 12.
    pub fn month(self) -> u32 {
        self.month
    }

    /// The following month.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self { year: self.year + 1, month: 1 }
        } else {
            Self { year: self.year, month: self.month + 1 }
        }
    }

    /// The preceding month.
    pub fn prev(self) -> Self {
        if self.month == 1 {
            Self { year: self.year - 1, month: 12 }
        } else {
            Self { year: self.year, month: self.month - 1 }
        }
    }

    /// Every month from `self` to `last`, both included (empty when `last` is earlier).
    pub fn through(self, last: Month) -> impl Iterator<Item = Month> {
        std::iter::successors(Some(self), |m| Some(m.next())).take_while(move |m| *m <= last)
    }

    /// The month that contains `instant` in `zone`.
    pub fn containing(instant: DateTime<Utc>, zone: FixedOffset) -> Self {
        let local = instant.with_timezone(&zone);
        Self { year: local.year(), month: local.month() }
    }

    /// The month that contains the epoch millisecond `ms` in `zone`.
    pub fn containing_ms(ms: i64, zone: FixedOffset) -> Option<Self> {
        DateTime::from_timestamp_millis(ms).map(|t| Self::containing(t, zone))
    }

    /// The first instant of the month in `zone`.
    pub fn start(self, zone: FixedOffset) -> DateTime<Utc> {
        let day = NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid month");
        zone.from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
            .single()
            .expect("fixed offsets are never ambiguous")
            .with_timezone(&Utc)
    }

    /// The month as a whole slice of time in `zone`.
    pub fn slice(self, zone: FixedOffset) -> MonthSlice {
        let begin_ms = self.start(zone).timestamp_millis();
        let end_ms = self.next().start(zone).timestamp_millis() - 1;
        MonthSlice { month: self, begin_ms, end_ms }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = CalendarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CalendarError::BadMonth(s.to_string());
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        Month::new(y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?).ok_or_else(bad)
    }
}

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// A time range that lies inside one calendar month: the unit of work of an extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthSlice {
    /// The month the range lies in.
    pub month: Month,
    /// First millisecond of the range, inclusive.
    pub begin_ms: i64,
    /// Last millisecond of the range, inclusive.
    pub end_ms: i64,
}

impl MonthSlice {
    /// True when the slice covers its whole month.
    pub fn is_whole_month(&self, zone: FixedOffset) -> bool {
        *self == self.month.slice(zone)
    }

    /// The first instant of the slice.
    pub fn begin(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.begin_ms).expect("slice bounds are valid instants")
    }

    /// The last instant of the slice.
    pub fn end(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.end_ms).expect("slice bounds are valid instants")
    }

    /// The slice widened to whole days of `zone`: from the first instant of the day it
    /// begins in to the last of the day it ends in (still inside its month, whose edges are
    /// midnights). For interfaces that take days: their windows must start at midnight.
    ///
    /// ```
    /// # use cecsync::calendar::{Month, MonthSlice, parse_zone};
    /// let cst = parse_zone("+08:00").unwrap();
    /// let feb = Month::new(2025, 2).unwrap();
    /// // 2025-02-03 10:30 to 2025-02-05 09:00 at +08:00
    /// let slice = MonthSlice { month: feb, begin_ms: 1738549800000, end_ms: 1738717200000 };
    /// let days = slice.whole_days(cst);
    /// assert_eq!(days.begin_ms, 1738512000000); // 2025-02-03 00:00 +08:00
    /// assert_eq!(days.end_ms, 1738771199999); // 2025-02-05 23:59:59.999 +08:00
    /// assert_eq!(feb.slice(cst).whole_days(cst), feb.slice(cst));
    /// ```
    pub fn whole_days(&self, zone: FixedOffset) -> MonthSlice {
        let offset = i64::from(zone.local_minus_utc()) * 1000;
        let day_start = |ms: i64| (ms + offset).div_euclid(DAY_MS) * DAY_MS - offset;
        MonthSlice {
            month: self.month,
            begin_ms: day_start(self.begin_ms),
            end_ms: day_start(self.end_ms) + DAY_MS - 1,
        }
    }

    /// The slice as consecutive inclusive ranges `(begin_ms, end_ms)` of at most `max_days`
    /// days each, from its start (the whole slice when `None`).
    ///
    /// ```
    /// # use cecsync::calendar::{Month, parse_zone};
    /// let slice = Month::new(2025, 2).unwrap().slice(parse_zone("+08:00").unwrap());
    /// let windows = slice.windows(Some(7));
    /// assert_eq!(windows.len(), 4); // 28 days
    /// assert_eq!(windows[0], (slice.begin_ms, slice.begin_ms + 7 * 86_400_000 - 1));
    /// assert_eq!(windows[3].1, slice.end_ms);
    /// assert_eq!(slice.windows(None), [(slice.begin_ms, slice.end_ms)]);
    /// ```
    pub fn windows(&self, max_days: Option<u32>) -> Vec<(i64, i64)> {
        let Some(days) = max_days.filter(|d| *d > 0) else {
            return vec![(self.begin_ms, self.end_ms)];
        };
        let span = i64::from(days) * DAY_MS;
        let mut windows = Vec::new();
        let mut begin = self.begin_ms;
        while begin <= self.end_ms {
            let end = (begin + span - 1).min(self.end_ms);
            windows.push((begin, end));
            begin = end + 1;
        }
        windows
    }
}

/// Splits the inclusive range `[begin_ms, end_ms]` into slices that never cross a month
/// edge in `zone`.
///
/// ```
/// # use cecsync::calendar::{split_by_month, parse_zone};
/// let cst = parse_zone("+08:00").unwrap();
/// // 2025-01-15 00:00 to 2025-03-15 00:00, China Standard Time
/// let slices = split_by_month(1736870400000, 1741968000000, cst);
/// let months: Vec<String> = slices.iter().map(|s| s.month.to_string()).collect();
/// assert_eq!(months, ["2025-01", "2025-02", "2025-03"]);
/// assert_eq!(slices[0].begin_ms, 1736870400000);
/// assert_eq!(slices[0].end_ms, 1738339199999); // 2025-01-31 23:59:59.999 +08:00
/// assert_eq!(slices[1].begin_ms, 1738339200000);
/// assert_eq!(slices[2].end_ms, 1741968000000);
/// ```
pub fn split_by_month(begin_ms: i64, end_ms: i64, zone: FixedOffset) -> Vec<MonthSlice> {
    let (Some(first), Some(last)) =
        (Month::containing_ms(begin_ms, zone), Month::containing_ms(end_ms, zone))
    else {
        return Vec::new();
    };
    if begin_ms > end_ms {
        return Vec::new();
    }
    first
        .through(last)
        .map(|month| {
            let whole = month.slice(zone);
            MonthSlice {
                month,
                begin_ms: whole.begin_ms.max(begin_ms),
                end_ms: whole.end_ms.min(end_ms),
            }
        })
        .collect()
}

/// Parses a fixed UTC offset: `+08:00`, `UTC+08:00`, `UTC+8`, `-05:30`, `UTC` or `Z`.
///
/// ```
/// # use cecsync::calendar::parse_zone;
/// assert_eq!(parse_zone("UTC+08:00").unwrap().local_minus_utc(), 8 * 3600);
/// assert_eq!(parse_zone("-05:30").unwrap().local_minus_utc(), -(5 * 3600 + 1800));
/// assert!(parse_zone("Asia/Shanghai").is_err());
/// ```
pub fn parse_zone(text: &str) -> Result<FixedOffset, CalendarError> {
    let bad = || CalendarError::BadZone(text.to_string());
    let t = text.trim();
    let t = t.strip_prefix("UTC").or_else(|| t.strip_prefix("GMT")).unwrap_or(t);
    if t.is_empty() || t == "Z" {
        return Ok(FixedOffset::east_opt(0).expect("zero offset"));
    }
    let (sign, rest) = match t.as_bytes()[0] {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let hours: i32 = h.parse().map_err(|_| bad())?;
    let minutes: i32 = m.parse().map_err(|_| bad())?;
    if !(0..=14).contains(&hours) || !(0..60).contains(&minutes) {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or_else(bad)
}

/// Splits each inclusive range `(begin_ms, end_ms)` again at the month edges of every zone
/// of `zones`, so that no part crosses a month edge of any of them. The parts tile each
/// range in order, with no gap and no overlap.
///
/// ```
/// # use cecsync::calendar::{split_at_month_edges, parse_zone, Month};
/// let (cst, utc) = (parse_zone("+08:00").unwrap(), parse_zone("UTC").unwrap());
/// let march = Month::new(2025, 3).unwrap().slice(cst);
/// let parts = split_at_month_edges(vec![(march.begin_ms, march.end_ms)], &[utc]);
/// // 2025-03-01 00:00 UTC is 08:00 on the 1st at +08:00.
/// assert_eq!(parts, [(march.begin_ms, 1740787199999), (1740787200000, march.end_ms)]);
/// assert_eq!(split_at_month_edges(vec![(march.begin_ms, march.end_ms)], &[cst]).len(), 1);
/// ```
pub fn split_at_month_edges(ranges: Vec<(i64, i64)>, zones: &[FixedOffset]) -> Vec<(i64, i64)> {
    if zones.is_empty() {
        return ranges;
    }
    let mut parts = Vec::with_capacity(ranges.len() * 2);
    for (begin, end) in ranges {
        let mut edges: Vec<i64> = zones
            .iter()
            .filter_map(|&zone| {
                let first = Month::containing_ms(begin, zone)?;
                let last = Month::containing_ms(end, zone)?;
                Some(first.through(last).skip(1).map(move |m| m.start(zone).timestamp_millis()))
            })
            .flatten()
            .collect();
        edges.sort_unstable();
        edges.dedup();
        let mut from = begin;
        for edge in edges {
            parts.push((from, edge - 1));
            from = edge;
        }
        parts.push((from, end));
    }
    parts
}

/// Formats an offset the way the configuration writes it, e.g. `+08:00`.
pub fn format_zone(zone: FixedOffset) -> String {
    let secs = zone.local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let secs = secs.abs();
    format!("{sign}{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cst() -> FixedOffset {
        parse_zone("+08:00").unwrap()
    }

    /// Month edges are computed in the server zone, not in UTC.
    #[test]
    fn month_slice_uses_the_server_zone() {
        let jan = Month::new(2025, 1).unwrap().slice(cst());
        // 2024-12-31T16:00:00Z is 2025-01-01T00:00:00+08:00
        assert_eq!(jan.begin_ms, 1735660800000);
        assert_eq!(jan.end_ms, 1738339199999);
        assert!(jan.is_whole_month(cst()));
        let utc = Month::new(2025, 1).unwrap().slice(parse_zone("UTC").unwrap());
        assert_eq!(utc.begin_ms, 1735689600000);
    }

    /// Adjacent slices tile the range with no gap and no overlap.
    #[test]
    fn slices_tile_the_range() {
        let begin = 1704067200000; // 2024-01-01T00:00Z
        let end = 1735689599999; // 2024-12-31T23:59:59.999Z
        let slices = split_by_month(begin, end, cst());
        assert_eq!(slices.len(), 13, "UTC year spans 13 months in +08:00");
        assert_eq!(slices.first().unwrap().begin_ms, begin);
        assert_eq!(slices.last().unwrap().end_ms, end);
        for pair in slices.windows(2) {
            assert_eq!(pair[0].end_ms + 1, pair[1].begin_ms);
            assert_eq!(pair[0].month.next(), pair[1].month);
        }
    }

    /// Parts tile each range, cross no month edge of any zone given, and are cut only at
    /// such edges.
    #[test]
    fn parts_cross_no_month_edge_of_any_zone() {
        let zones = [parse_zone("UTC").unwrap(), parse_zone("-05:30").unwrap()];
        let year = Month::new(2025, 1).unwrap().slice(cst()).begin_ms;
        let ranges = vec![(year, year + 400 * 86_400_000), (year - 5, year + 5)];
        let parts = split_at_month_edges(ranges.clone(), &zones);
        let month_in = |ms, zone| Month::containing_ms(ms, zone).unwrap();
        for zone in zones {
            let crossing = parts.iter().filter(|(b, e)| month_in(*b, zone) != month_in(*e, zone));
            assert_eq!(crossing.count(), 0, "parts crossing a month edge of {zone}");
        }
        // From 2024-12-31 16:00 UTC, 400 days hold the starts of 2025-01 to 2026-02 in
        // each zone; the short range around the +08:00 new year holds none.
        assert_eq!(parts.len(), 2 * 14 + 1 + 1);
        let (long, short) = parts.split_at(29);
        assert_eq!((long[0].0, long[28].1), ranges[0]);
        assert_eq!(short, [ranges[1]]);
        for pair in long.windows(2) {
            assert_eq!(pair[0].1 + 1, pair[1].0, "no gap, no overlap");
            assert!(zones
                .iter()
                .any(|z| month_in(pair[1].0, *z).start(*z).timestamp_millis() == pair[1].0));
        }
        assert_eq!(split_at_month_edges(ranges.clone(), &[]), ranges);
    }

    #[test]
    fn empty_and_reversed_ranges_give_no_slices() {
        assert!(split_by_month(10, 5, cst()).is_empty());
        assert_eq!(split_by_month(5, 5, cst()).len(), 1);
    }

    #[test]
    fn months_parse_and_reject_garbage() {
        assert_eq!("2024-12".parse::<Month>().unwrap().next().to_string(), "2025-01");
        assert_eq!("2025-01".parse::<Month>().unwrap().prev().to_string(), "2024-12");
        for bad in ["2024-13", "2024-1", "24-01", "2024/01", "", "2024-00"] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
        let m: Month = "2024-11".parse().unwrap();
        let all: Vec<_> = m.through("2025-02".parse().unwrap()).map(|m| m.to_string()).collect();
        assert_eq!(all, ["2024-11", "2024-12", "2025-01", "2025-02"]);
    }

    #[test]
    fn zones_round_trip() {
        for z in ["+08:00", "-05:30", "+00:00"] {
            assert_eq!(format_zone(parse_zone(z).unwrap()), z);
        }
        assert!(parse_zone("+15:00").is_err());
        assert!(parse_zone("8").is_err());
    }
}
