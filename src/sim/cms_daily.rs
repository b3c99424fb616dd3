//! The daily settlement tables of CC-CMS (cec-api.md 2.7): indicators per VDN, day, called
//! (inbound) or calling (outbound) number and call type, computed on the fly from the seed,
//! so that a year of 5,000 numbers costs no memory. Only the revision of each recomputed
//! day is stored.
//!
//! Readings of what the documentation leaves open:
//! - A (number, day, call type) without calls has no row (about one in five).
//! - The outbound table, not retrieved, is served with the inbound indicators and
//!   `callerNo` in place of `calleeNo`.
//! - Each row also carries [`UNLISTED`], a field the table does not list (the example ends
//!   with "......").
//! - A range of days answers one aggregate per group: counts and durations summed, `max*`
//!   the largest, `min*` the smallest, `current*` those of the last day with calls, and the
//!   range echoed.
//! - A recomputed day changes its figures: `inOccupyNum` grows by the revision, the rest is
//!   drawn anew.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use chrono::{Datelike, NaiveDate};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

use super::seeding::mix;
use crate::calendar::Month;

/// The first VDN id; the others follow it.
pub(crate) const FIRST_VDN: u32 = 170;
/// The call center id of every VDN.
pub(crate) const CC_ID: i64 = 1;
/// A field of every row that the reference does not list.
pub(crate) const UNLISTED: &str = "transferOutNum";
/// Indicators that are durations (seconds), summed over days.
const DURATIONS: &[&str] = &[
    "failQueueWaitTime",
    "waitAnsTime",
    "succWaitAnsTime",
    "failWaitAnsTime",
    "succQueueWaitTime",
    "queueWaitTime",
    "queOverToIvrTime",
    "hangUpTime",
    "inCallTime",
    "inVdnTime",
    "ivrCallTime",
    "ivrOnlyTime",
    "autoAnsTime",
];
/// Counts summed over days.
const COUNTS: &[&str] = &[
    "failQueueWaitNum",
    "waitAnsNum",
    "succWaitAnsNum",
    "noAckNum",
    "succQueueWaitNum",
    "queOverToIvrNum",
    "hangUpNum",
    "hangUpReleaseNum",
    "inOccupyNum",
    "inCallSuccNum",
    "agentToQueueNum",
    "agentToAgentNum",
    "succAckTimeLt3",
    "succAckTimeLt5",
    "succAckTimeLt10",
    "succAckTimeLt30",
    "succAckTimeLt60",
    "succAckTimeGt10",
    "succAckTimeGt60",
    "callTimeLt3",
    "callTimeLt5",
    "callTimeLt10",
    "callTimeLt30",
    "callTimeLt60",
    "callTimeGt10",
    "callTimeGt60",
    "failTimeLt3",
    "failTimeLt5",
    "failTimeLt10",
    "failTimeLt30",
    "failTimeLt60",
    "failTimeGt10",
    "failTimeGt60",
    "ivrOccupyNum",
    "ivrCallSuccNum",
    "ivrOnlyNum",
    "ivrOnlySuccNum",
    "autoCallNum",
    "autoCallSuccNum",
    "autoTransferNum",
    "autoUserAbandonNum",
    "netCallNum",
    "netCallSuccNum",
    "inCallCostMinute",
    "inCallAllCostMinute",
    UNLISTED,
];
/// The custom indicators, summed over days; `reserved_col3` counts calls answered within
/// 15 s, the others are 0 (not configured).
const RESERVED: &[&str] = &[
    "reserved_col1",
    "reserved_col2",
    "reserved_col3",
    "reserved_col4",
    "reserved_col5",
    "reserved_col6",
    "reserved_col7",
    "reserved_col8",
    "reserved_col9",
    "reserved_col10",
    "reserved_col11",
    "reserved_col12",
    "reserved_col13",
    "reserved_col14",
    "reserved_col15",
    "reserved_col16",
    "reserved_col17",
    "reserved_col18",
    "reserved_col19",
    "reserved_col20",
];
/// Indicators that keep the largest value of a range.
const MAXIMA: &[&str] = &["maxQueueWaitTime", "maxWaitAnsTime", "maxCallTime", "maxIvrCallTime"];
/// Indicators that keep the smallest value of a range.
const MINIMA: &[&str] = &["minQueueWaitTime", "minWaitAnsTime", "minCallTime", "minIvrCallTime"];
/// Fields of the call's last record, kept from the last day of a range.
const CURRENT: &[&str] = &["currentAgentId", "currentSkillId"];

/// How a figure folds over the days of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fold {
    Sum,
    Max,
    Min,
    Last,
}

/// Every figure of a row and its fold, in the order [`DailyStore::day`] draws them.
fn layout() -> impl Iterator<Item = (&'static str, Fold)> {
    let sums = DURATIONS.iter().chain(COUNTS).chain(RESERVED).map(|n| (*n, Fold::Sum));
    sums.chain(MAXIMA.iter().map(|n| (*n, Fold::Max)))
        .chain(MINIMA.iter().map(|n| (*n, Fold::Min)))
        .chain(CURRENT.iter().map(|n| (*n, Fold::Last)))
}

/// Which settlement table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// `callinday`, by called number.
    Inbound,
    /// `calloutday`, by calling number.
    Outbound,
}

impl Direction {
    /// The request field that lists the numbers.
    pub(crate) fn numbers_field(self) -> &'static str {
        match self {
            Self::Inbound => "calleeNos",
            Self::Outbound => "callerNos",
        }
    }

    /// The row field that names the number.
    pub(crate) fn number_field(self) -> &'static str {
        match self {
            Self::Inbound => "calleeNo",
            Self::Outbound => "callerNo",
        }
    }

    /// Number `index` of `vdn`: `4008VVVNNNN` called, `0755VVVNNNN` calling.
    pub(crate) fn number(self, vdn: u32, index: u32) -> String {
        let prefix = match self {
            Self::Inbound => "4008",
            Self::Outbound => "0755",
        };
        format!("{prefix}{vdn:03}{index:04}")
    }

    /// The index of `number` among the numbers of `vdn`, if it is one of the first `count`.
    fn index(self, vdn: u32, number: &str, count: u32) -> Option<u32> {
        let rest = number.strip_prefix(&self.number(vdn, 0)[..7])?;
        let index: u32 = rest.parse().ok().filter(|_| rest.len() == 4)?;
        (index < count).then_some(index)
    }
}

/// One group of a query: a number of a VDN and a call type.
#[derive(Debug, Clone, Copy)]
struct Group {
    direction: Direction,
    vdn: u32,
    index: u32,
    call_type: i64,
}

/// The settlement tables: sizes, and the revision of every recomputed day.
#[derive(Debug)]
pub(crate) struct DailyStore {
    seed: u64,
    vdns: u32,
    numbers: u32,
    call_types: u32,
    days: (NaiveDate, NaiveDate),
    revisions: Mutex<BTreeMap<NaiveDate, u32>>,
}

/// A validated daily query.
#[derive(Debug)]
pub(crate) struct DailyQuery {
    pub(crate) direction: Direction,
    /// The VDNs asked for (one, or every VDN of the tenant).
    pub(crate) vdns: Vec<u32>,
    pub(crate) numbers: Vec<String>,
    pub(crate) call_types: Vec<i64>,
    pub(crate) begin: NaiveDate,
    pub(crate) end: NaiveDate,
}

impl DailyStore {
    /// Tables of `vdns` VDNs with `numbers` numbers each and call types `0..call_types`,
    /// with data on every day of the months `first..=last`.
    pub(crate) fn new(
        seed: u64,
        vdns: u32,
        numbers: u32,
        call_types: u32,
        months: (Month, Month),
    ) -> Self {
        let first = NaiveDate::from_ymd_opt(months.0.year(), months.0.month(), 1);
        let after = months.1.next();
        let after = NaiveDate::from_ymd_opt(after.year(), after.month(), 1);
        let days = first.zip(after.and_then(|d| d.pred_opt())).expect("months are valid dates");
        Self {
            seed,
            vdns: vdns.min(800),
            numbers: numbers.min(10_000),
            call_types,
            days,
            revisions: Mutex::default(),
        }
    }

    /// Called (and calling) numbers of each VDN.
    pub(crate) fn numbers_per_vdn(&self) -> u32 {
        self.numbers
    }

    /// The VDN ids.
    pub(crate) fn vdns(&self) -> Vec<u32> {
        (FIRST_VDN..FIRST_VDN + self.vdns).collect()
    }

    /// The numbers of `vdn` for `direction` (empty for an unknown VDN).
    pub(crate) fn numbers(&self, direction: Direction, vdn: u32) -> Vec<String> {
        if !self.vdns().contains(&vdn) {
            return Vec::new();
        }
        (0..self.numbers).map(|i| direction.number(vdn, i)).collect()
    }

    /// The call types with data.
    pub(crate) fn call_types(&self) -> Vec<i64> {
        (0..i64::from(self.call_types)).collect()
    }

    /// Recomputes `day`: its figures change in both tables. Returns the day's new revision.
    pub(crate) fn recompute(&self, day: NaiveDate) -> u32 {
        let mut revisions = self.revisions.lock().unwrap_or_else(PoisonError::into_inner);
        let revision = revisions.entry(day).or_default();
        *revision += 1;
        *revision
    }

    /// The answer to `query`: one row per group with calls in the range, ordered by VDN,
    /// number (as asked) and call type.
    pub(crate) fn answer(&self, query: &DailyQuery) -> Vec<Value> {
        let mut rows = Vec::new();
        for &vdn in &query.vdns {
            for number in &query.numbers {
                let Some(index) = query.direction.index(vdn, number, self.numbers) else {
                    continue;
                };
                for &call_type in &query.call_types {
                    let group = Group { direction: query.direction, vdn, index, call_type };
                    rows.extend(self.aggregate(group, query.begin, query.end));
                }
            }
        }
        rows
    }

    /// Ground truth: every row of the days of `months`, one day each, keyed
    /// `vdn/day/number/callType`.
    pub(crate) fn rows(&self, direction: Direction, months: &[Month]) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for day in self.days.0.iter_days().take_while(|d| *d <= self.days.1) {
            if !months.iter().any(|m| (m.year(), m.month()) == (day.year(), day.month())) {
                continue;
            }
            for vdn in self.vdns() {
                for index in 0..self.numbers {
                    for call_type in self.call_types() {
                        let group = Group { direction, vdn, index, call_type };
                        if let Some(row) = self.aggregate(group, day, day) {
                            let number = direction.number(vdn, index);
                            out.insert(format!("{vdn}/{day}/{number}/{call_type}"), row);
                        }
                    }
                }
            }
        }
        out
    }

    /// The row of `group` over `begin..=end`, or `None` when it had no calls then.
    fn aggregate(&self, group: Group, begin: NaiveDate, end: NaiveDate) -> Option<Value> {
        let days = begin.iter_days().take_while(|d| *d <= end);
        let mut figures: Option<Vec<i64>> = None;
        for day in days.filter_map(|d| self.day(group, d)) {
            let Some(sofar) = figures.as_mut() else {
                figures = Some(day);
                continue;
            };
            for ((value, new), (_, fold)) in sofar.iter_mut().zip(day).zip(layout()) {
                *value = match fold {
                    Fold::Sum => *value + new,
                    Fold::Max => (*value).max(new),
                    Fold::Min => (*value).min(new),
                    Fold::Last => new,
                };
            }
        }
        let figures = figures?;
        let direction = group.direction;
        let mut row = Map::new();
        for (name, value) in [
            ("beginLogDay", Value::from(begin.to_string())),
            ("endLogDay", Value::from(end.to_string())),
            (direction.number_field(), Value::from(direction.number(group.vdn, group.index))),
            ("callType", Value::from(group.call_type)),
            ("vdn", Value::from(group.vdn)),
            ("serviceNo", Value::from(65535)),
            ("orgCcNo", Value::from(1)),
            ("subCcNo", Value::from(1)),
            ("serCcNo", Value::from(1)),
        ] {
            row.insert(name.to_string(), value);
        }
        for ((name, _), value) in layout().zip(figures) {
            row.insert(name.to_string(), Value::from(value));
        }
        Some(Value::Object(row))
    }

    /// The figures of `group` on `day` in [`layout`] order, or `None` without calls.
    fn day(&self, group: Group, day: NaiveDate) -> Option<Vec<i64>> {
        if day < self.days.0 || day > self.days.1 {
            return None;
        }
        let ordinal = u64::try_from(day.num_days_from_ce()).unwrap_or_default();
        let salt = match group.direction {
            Direction::Inbound => 0x0ca1_1001,
            Direction::Outbound => 0x0ca1_1002,
        };
        let place = [self.seed, salt, u64::from(group.vdn), ordinal, u64::from(group.index)];
        let place = mix(&[mix(&place), group.call_type as u64]);
        if place.is_multiple_of(5) {
            return None;
        }
        let revision = self
            .revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&day)
            .copied()
            .unwrap_or_default();
        let mut rng = SmallRng::seed_from_u64(mix(&[place, u64::from(revision)]));
        // Recomputation counts late calls: the occupied calls grow with the revision.
        let occupy = rng.random_range(1..80) + i64::from(revision);
        let figures = layout().map(|(name, fold)| match (name, fold) {
            ("inOccupyNum", _) => occupy,
            ("inCallSuccNum", _) => rng.random_range(0..=occupy),
            ("reserved_col3", _) => rng.random_range(0..40),
            ("currentAgentId", _) => rng.random_range(101..2000),
            ("currentSkillId", _) if rng.random_ratio(1, 3) => -1,
            ("currentSkillId", _) => rng.random_range(1..50),
            (name, Fold::Sum) if name.starts_with("reserved_col") => 0,
            (name, Fold::Sum) if DURATIONS.contains(&name) => rng.random_range(0..7200),
            (_, Fold::Sum) => rng.random_range(0..60),
            (_, Fold::Max) => rng.random_range(60..900),
            (_, Fold::Min | Fold::Last) => rng.random_range(0..30),
        });
        Some(figures.collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> DailyStore {
        let months = (Month::new(2025, 1).unwrap(), Month::new(2025, 2).unwrap());
        DailyStore::new(7, 2, 4, 3, months)
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    /// A range answers the sums, maxima and minima of its days, echoing the range; days
    /// outside the data have no rows; numbers of another VDN or beyond the count match none.
    #[test]
    fn ranges_aggregate_their_days() {
        let store = store();
        let number = Direction::Inbound.number(170, 1);
        let query = |begin: &str, end: &str, numbers: Vec<String>| DailyQuery {
            direction: Direction::Inbound,
            vdns: vec![170],
            numbers,
            call_types: vec![0, 1, 2],
            begin: day(begin),
            end: day(end),
        };
        let single = |d: &str| store.answer(&query(d, d, vec![number.clone()]));
        let days: Vec<Vec<Value>> = ["2025-01-30", "2025-01-31", "2025-02-01"].map(single).into();
        let range = store.answer(&query("2025-01-30", "2025-02-01", vec![number.clone()]));
        for row in &range {
            let of_type: Vec<&Value> =
                days.iter().flatten().filter(|r| r["callType"] == row["callType"]).collect();
            let sum: i64 = of_type.iter().map(|r| r["inCallTime"].as_i64().unwrap()).sum();
            let max = of_type.iter().map(|r| r["maxCallTime"].as_i64().unwrap()).max();
            let min = of_type.iter().map(|r| r["minCallTime"].as_i64().unwrap()).min();
            assert_eq!(row["inCallTime"], sum);
            assert_eq!((row["maxCallTime"].as_i64(), row["minCallTime"].as_i64()), (max, min));
            assert_eq!(
                (&row["beginLogDay"], &row["endLogDay"]),
                (&"2025-01-30".into(), &"2025-02-01".into())
            );
        }
        assert!(!range.is_empty());
        assert!(single("2024-12-31").is_empty() && single("2025-03-01").is_empty());
        let foreign = vec![Direction::Inbound.number(171, 1), Direction::Inbound.number(170, 4)];
        assert!(store.answer(&query("2025-01-30", "2025-01-30", foreign)).is_empty());
    }

    /// The truth holds one row per day, about four in five groups; a recomputed day changes
    /// its figures (more occupied calls) and no other day's, in both tables.
    #[test]
    fn recomputing_a_day_changes_only_that_day() {
        let store = store();
        let jan = [Month::new(2025, 1).unwrap()];
        let before = store.rows(Direction::Inbound, &jan);
        let groups = 31 * 2 * 4 * 3;
        assert!(
            before.len() > groups * 7 / 10 && before.len() < groups * 9 / 10,
            "{}",
            before.len()
        );
        let out_before = store.rows(Direction::Outbound, &jan);
        assert!(out_before.values().all(|r| r["callerNo"].as_str().unwrap().starts_with("0755")));
        assert_eq!(store.recompute(day("2025-01-15")), 1);
        let after = store.rows(Direction::Inbound, &jan);
        assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
        for (key, row) in &after {
            let changed = key.contains("/2025-01-15/");
            assert_eq!(row != &before[key], changed, "{key}");
        }
        assert_ne!(store.rows(Direction::Outbound, &jan), out_before);
    }
}
