//! Where the engine reads the time: the system clock, or an instant a test fixes (so that
//! "today", for a snapshot, can be another day without waiting for one).

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

/// The engine's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    fixed: Option<DateTime<Utc>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { fixed: None }
    }

    /// A clock that always reads `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self { fixed: Some(at) }
    }

    /// The time now.
    pub fn now(&self) -> DateTime<Utc> {
        self.fixed.unwrap_or_else(Utc::now)
    }

    /// The calendar day it is now in `zone`.
    ///
    /// ```
    /// # use cecsync::engine::clock::Clock;
    /// let zone = cecsync::calendar::parse_zone("+08:00").unwrap();
    /// let late = "2025-03-04T17:00:00Z".parse().unwrap();
    /// assert_eq!(Clock::fixed(late).today(zone).to_string(), "2025-03-05");
    /// ```
    pub fn today(&self, zone: FixedOffset) -> NaiveDate {
        self.now().with_timezone(&zone).date_naive()
    }
}
