//! Missed calls of CC-CMS (cec-api.md 2.12, `callin/queryMissedCalls`): the calls of each
//! VDN that were never answered.
//!
//! Readings of what the documentation leaves open:
//! - Times are `yyyy-MM-dd HH:mm:ss` in UTC, as the request's. `beginTime` and `endTime`
//!   bound `waitBegin`, both inclusive; either may be left out (an open side).
//! - The order is by `waitBegin`, then `callId`.
//! - Only the documented fields are served (the rest of the table was not retrieved).
//! - The platform keeps little history. With a retention of N days, the platform's "now"
//!   is the end of the simulator's last month, and calls that began more than N days
//!   before it are gone: older ranges answer an empty success, as a client would see it.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::cms_daily::Direction;
use super::seeding::{mix, ordinal};
use crate::calendar::Month;

/// The text form of every time of the interface.
pub(crate) const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// One missed call.
#[derive(Debug, Clone)]
struct MissedCall {
    vdn: u32,
    call_id: String,
    caller: String,
    callee: String,
    /// Epoch seconds.
    wait_begin: i64,
    /// Epoch seconds.
    call_end: i64,
}

impl MissedCall {
    fn wire(&self) -> Value {
        json!({
            "callId": self.call_id,
            "callerNo": self.caller,
            "calleeNo": self.callee,
            "waitBegin": utc_text(self.wait_begin),
            "callEnd": utc_text(self.call_end),
        })
    }
}

/// `seconds` since the epoch as `yyyy-MM-dd HH:mm:ss` in UTC.
fn utc_text(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format(TIME_FORMAT).to_string())
        .unwrap_or_default()
}

/// A validated missed-call query; times in epoch seconds.
#[derive(Debug)]
pub(crate) struct MissedQuery {
    pub(crate) vdn: u32,
    pub(crate) begin: Option<i64>,
    pub(crate) end: Option<i64>,
    pub(crate) offset: u64,
    pub(crate) limit: u64,
}

/// Every missed call still kept, ordered by `waitBegin` then `callId`.
#[derive(Debug)]
pub(crate) struct MissedStore {
    calls: Vec<MissedCall>,
}

/// The sizes of the missed-call data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MissedSizes {
    /// Missed calls per VDN and day.
    pub(crate) per_day: u32,
    /// Called numbers of each VDN the calls are spread over.
    pub(crate) numbers: u32,
    /// Days kept before the end of the last month; `None` keeps everything.
    pub(crate) retention_days: Option<u32>,
}

impl MissedStore {
    /// Missed calls of `vdns` on every day of `first..=last` (days in `zone`).
    pub(crate) fn new(
        seed: u64,
        zone: FixedOffset,
        vdns: &[u32],
        (first, last): (Month, Month),
        sizes: MissedSizes,
    ) -> Self {
        let mut calls = Vec::new();
        for month in first.through(last) {
            let slice = month.slice(zone);
            let (begin, end) = (slice.begin_ms / 1000, slice.end_ms / 1000 + 1);
            let count = i64::from(sizes.per_day) * (end - begin) / 86_400;
            for &vdn in vdns {
                let mut rng =
                    SmallRng::seed_from_u64(mix(&[seed, 0x5ed, ordinal(month), u64::from(vdn)]));
                let step = (end - begin) / count.max(1);
                for i in 0..count {
                    let wait_begin = begin + i * step + rng.random_range(0..step.max(1));
                    let callee =
                        Direction::Inbound.number(vdn, rng.random_range(0..sizes.numbers.max(1)));
                    // Unique: calls of one VDN and month differ in `i`, months in time.
                    let serial = u64::from(vdn) * 10_000_000 + i as u64;
                    calls.push(MissedCall {
                        vdn,
                        call_id: format!("{wait_begin}-{serial}"),
                        caller: format!(
                            "1{:010}",
                            rng.random_range(3_000_000_000_u64..9_999_999_999)
                        ),
                        callee,
                        wait_begin,
                        call_end: wait_begin + rng.random_range(3..180),
                    });
                }
            }
        }
        if let Some(days) = sizes.retention_days {
            let now = last.slice(zone).end_ms / 1000 + 1;
            calls.retain(|c| c.wait_begin >= now - i64::from(days) * 86_400);
        }
        calls.sort_by(|a, b| (a.wait_begin, &a.call_id).cmp(&(b.wait_begin, &b.call_id)));
        Self { calls }
    }

    /// The page of `query` and how many calls match in all.
    pub(crate) fn page(&self, query: &MissedQuery) -> (u64, Vec<Value>) {
        let matching: Vec<&MissedCall> = self
            .calls
            .iter()
            .filter(|c| c.vdn == query.vdn)
            .filter(|c| query.begin.is_none_or(|b| c.wait_begin >= b))
            .filter(|c| query.end.is_none_or(|e| c.wait_begin <= e))
            .collect();
        let skip = usize::try_from(query.offset).unwrap_or(usize::MAX);
        let take = usize::try_from(query.limit).unwrap_or(usize::MAX);
        (matching.len() as u64, matching.iter().skip(skip).take(take).map(|c| c.wire()).collect())
    }

    /// Ground truth: the kept calls whose `waitBegin` falls in one of `months` of `zone`,
    /// keyed by `callId`, each as served plus its `vdn`.
    pub(crate) fn rows(&self, zone: FixedOffset, months: &[Month]) -> BTreeMap<String, Value> {
        self.calls
            .iter()
            .filter(|c| {
                Month::containing_ms(c.wait_begin * 1000, zone).is_some_and(|m| months.contains(&m))
            })
            .map(|c| {
                let mut row = c.wire();
                row["vdn"] = json!(c.vdn);
                (c.call_id.clone(), row)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CST: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
        Some(zone) => zone,
        None => panic!(),
    };

    fn months() -> (Month, Month) {
        (Month::new(2025, 1).unwrap(), Month::new(2025, 2).unwrap())
    }

    fn sizes(retention_days: Option<u32>) -> MissedSizes {
        MissedSizes { per_day: 3, numbers: 2, retention_days }
    }

    /// Each VDN has its calls per day, ids are unique, bounds are inclusive on both sides,
    /// and the retention drops what began too long before the end of the data.
    #[test]
    fn calls_are_spread_and_kept_as_configured() {
        let store = MissedStore::new(7, CST, &[170, 171], months(), sizes(None));
        let all = store.rows(CST, &[months().0, months().1]);
        assert_eq!(all.len(), 2 * 3 * (31 + 28));
        let query = |begin, end| MissedQuery { vdn: 170, begin, end, offset: 0, limit: 5000 };
        let (total, page) = store.page(&query(None, None));
        assert_eq!((total, page.len()), (3 * 59, 3 * 59));
        let first = &page[10];
        let at = chrono::NaiveDateTime::parse_from_str(
            first["waitBegin"].as_str().unwrap(),
            TIME_FORMAT,
        )
        .unwrap()
        .and_utc()
        .timestamp();
        let (_, exact) = store.page(&query(Some(at), Some(at)));
        assert_eq!(exact, vec![first.clone()]);

        let kept = MissedStore::new(7, CST, &[170, 171], months(), sizes(Some(2)));
        let rows = kept.rows(CST, &[months().0, months().1]);
        assert_eq!(rows.len(), 2 * 3 * 2);
        assert!(rows.keys().all(|k| all.contains_key(k)));
    }
}
