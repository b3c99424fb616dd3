//! Outbound campaigns of CC-iSales and their call results (cec-api.md 2.16, 4.3), the
//! results generated on the fly per campaign and month so that millions cost no memory.
//!
//! Readings of what the documentation leaves open:
//! - Times are in the simulator's zone (the VDN zone): `callTimeStr` is written in it, and
//!   a window `beginTime..endTime` (`YYYY-MM-DD`, begin < end) covers
//!   `[beginTime 00:00, endTime 00:00)` there, so that one-day windows are `D..D+1`.
//! - Results are ordered by `callTimeStr`, then `callId`.
//! - `callStatus` is an int (5 or 6) as the `callresult` table says in even-numbered
//!   campaigns, and a string ("5"/"6") as the `callresultdetail` example shows in odd ones.
//!   `failCode` is always a five-digit string of table 4.3 ("00000" on success).
//! - The last twentieth of each campaign's calls in the last month are still running: they
//!   are not served (only finished calls are) until [`IsalesStore::finish_calls`].
//! - `showDetail` 1 answers the same rows (one attempt per call is modelled).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::seeding::{mix, ordinal};
use crate::calendar::Month;

/// The failure causes of table 4.3 (success, "00000", is drawn apart).
const FAIL_CODES: &[&str] = &[
    "00531", "00537", "00538", "00548", "00549", "00551", "00601", "00603", "00604", "00701",
    "00702", "01040", "01043", "01046", "01049", "34601", "34605", "34606", "34608", "00602",
    "00605", "01048", "00606", "34611",
];
/// Campaign names; the campaign id is appended.
const NAMES: &[&str] = &["春季回访", "账单提醒", "满意度调查", "新品推介", "逾期催缴", "会员续费"];
/// `status` of the campaigns, in turn: started, completed, suspended.
const STATUSES: &[i64] = &[2, 4, 3];
/// `deviceType` of the campaigns, in turn.
const DEVICE_TYPES: &[i64] = &[1, 2, 3, 5, 6];
/// The text form of `callTimeStr` and of the campaign times.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// One campaign of one VDN.
#[derive(Debug, Clone)]
struct Campaign {
    vdn: u32,
    /// Per VDN, from 1.
    id: u32,
    /// Across VDNs, from 0: keeps call ids unique.
    index: u64,
    status: i64,
    device_type: i64,
    /// `callStatus` is sent as a string.
    status_as_text: bool,
}

/// One finished (or running) call of a campaign.
#[derive(Debug, Clone)]
struct CallResult {
    call_id: String,
    session_id: String,
    called: String,
    /// Epoch seconds.
    time: i64,
    fail_code: &'static str,
    running: bool,
}

/// A validated filter of the campaign list.
#[derive(Debug, Default)]
pub(crate) struct CampaignFilter {
    /// 0 for all.
    pub(crate) status: i64,
    /// 0 for all.
    pub(crate) device_type: i64,
    pub(crate) name: Option<String>,
}

/// The campaigns and the sizes of their results.
#[derive(Debug)]
pub(crate) struct IsalesStore {
    seed: u64,
    zone: FixedOffset,
    months: (Month, Month),
    per_month: u64,
    campaigns: Vec<Campaign>,
    finished: AtomicBool,
}

impl IsalesStore {
    /// `per_vdn` campaigns for each of `vdns`, each with `per_month` calls in every month.
    pub(crate) fn new(
        seed: u64,
        zone: FixedOffset,
        vdns: &[u32],
        months: (Month, Month),
        (per_vdn, per_month): (u32, u64),
    ) -> Self {
        let mut campaigns = Vec::new();
        for &vdn in vdns {
            for id in 1..=per_vdn {
                let index = campaigns.len() as u64;
                let turn = |n: usize| index as usize % n;
                campaigns.push(Campaign {
                    vdn,
                    id,
                    index,
                    status: STATUSES[turn(STATUSES.len())],
                    device_type: DEVICE_TYPES[turn(DEVICE_TYPES.len())],
                    status_as_text: id % 2 == 1,
                });
            }
        }
        let per_month = per_month.min(999_999);
        Self { seed, zone, months, per_month, campaigns, finished: AtomicBool::new(false) }
    }

    /// The campaigns of `vdn` that pass `filter`, as the list interface serves them.
    pub(crate) fn campaigns(&self, vdn: u32, filter: &CampaignFilter) -> Vec<Value> {
        self.campaigns
            .iter()
            .filter(|c| c.vdn == vdn)
            .filter(|c| filter.status == 0 || filter.status == c.status)
            .filter(|c| filter.device_type == 0 || filter.device_type == c.device_type)
            .map(|c| self.campaign_wire(c))
            .filter(|c| {
                filter
                    .name
                    .as_ref()
                    .is_none_or(|n| c["name"].as_str().unwrap_or("").contains(n.as_str()))
            })
            .collect()
    }

    /// Ground truth of the campaign list: every campaign of every VDN.
    pub(crate) fn all_campaigns(&self) -> Vec<Value> {
        self.campaigns.iter().map(|c| self.campaign_wire(c)).collect()
    }

    /// The finished calls of campaign `id` of `vdn` made in `window` (`None`: any time), in
    /// order. `None` when there is no such campaign.
    pub(crate) fn results(
        &self,
        vdn: u32,
        id: &str,
        window: Option<(NaiveDate, NaiveDate)>,
    ) -> Option<Vec<Value>> {
        let campaign = self.campaigns.iter().find(|c| c.vdn == vdn && c.id.to_string() == id)?;
        let (mut first, mut last) = self.months;
        let (begin, end) = match window {
            Some((b, e)) => (self.midnight(b), self.midnight(e)),
            None => (i64::MIN, i64::MAX),
        };
        if window.is_some() {
            let month = |s: i64| Month::containing_ms(s.saturating_mul(1000), self.zone);
            first = month(begin).map_or(first, |m| m.max(first));
            last = month(end - 1).map_or(last, |m| m.min(last));
        }
        let calls = first.through(last).flat_map(|m| self.month_calls(campaign, m));
        let mut calls: Vec<CallResult> =
            calls.filter(|c| !c.running && (begin..end).contains(&c.time)).collect();
        calls.sort_by(|a, b| (a.time, &a.call_id).cmp(&(b.time, &b.call_id)));
        Some(calls.iter().map(|c| self.result_wire(campaign, c, false)).collect())
    }

    /// Ground truth: the finished calls of every campaign made in `months`, keyed by
    /// `callId`, as served but with `callStatus` always a string.
    pub(crate) fn rows(&self, months: &[Month]) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for campaign in &self.campaigns {
            for &month in months {
                for call in self.month_calls(campaign, month).iter().filter(|c| !c.running) {
                    out.insert(call.call_id.clone(), self.result_wire(campaign, call, true));
                }
            }
        }
        out
    }

    /// Ends every running call; returns their `callId`s.
    pub(crate) fn finish_calls(&self) -> Vec<String> {
        if self.finished.swap(true, Ordering::SeqCst) {
            return Vec::new();
        }
        let mut ended = Vec::new();
        for campaign in &self.campaigns {
            let calls = self.calls_of(campaign, self.months.1, false);
            ended.extend(calls.into_iter().filter(|c| c.running).map(|c| c.call_id));
        }
        ended
    }

    /// The calls of `campaign` in `month` (none outside the data range).
    fn month_calls(&self, campaign: &Campaign, month: Month) -> Vec<CallResult> {
        if month < self.months.0 || month > self.months.1 {
            return Vec::new();
        }
        self.calls_of(campaign, month, self.finished.load(Ordering::SeqCst))
    }

    fn calls_of(&self, campaign: &Campaign, month: Month, all_finished: bool) -> Vec<CallResult> {
        let mut rng =
            SmallRng::seed_from_u64(mix(&[self.seed, 0x15a1e5, campaign.index, ordinal(month)]));
        let slice = month.slice(self.zone);
        let (begin, end) = (slice.begin_ms / 1000, slice.end_ms / 1000 + 1);
        let n = self.per_month as i64;
        let step = (end - begin) / n.max(1);
        let running_from =
            if month == self.months.1 && !all_finished { n - (n / 20).max(1) } else { n };
        (0..n)
            .map(|i| {
                let time = begin + i * step + rng.random_range(0..step.max(1));
                let serial = campaign.index * 1_000_000 + i as u64;
                let called = if rng.random_ratio(1, 4) {
                    format!("0755{:08}", rng.random_range(0..100_000_000))
                } else {
                    format!("1{:010}", rng.random_range(3_000_000_000_u64..9_999_999_999))
                };
                let fail_code = if rng.random_ratio(11, 20) {
                    "00000"
                } else {
                    FAIL_CODES.choose(&mut rng).copied().unwrap_or("34611")
                };
                CallResult {
                    call_id: format!("{time}-{serial}"),
                    session_id: format!("{}_c{}_{month}_{i:06}", campaign.vdn, campaign.id),
                    called,
                    time,
                    fail_code,
                    running: i >= running_from,
                }
            })
            .collect()
    }

    fn result_wire(&self, campaign: &Campaign, call: &CallResult, status_as_text: bool) -> Value {
        let success = call.fail_code == "00000";
        let status = if success { 6 } else { 5 };
        let status = if status_as_text || campaign.status_as_text {
            json!(status.to_string())
        } else {
            json!(status)
        };
        let local = self.local(call.time);
        let record_path = if success {
            format!(
                "Y:/1/{}/{}/{}/{}.V3",
                campaign.vdn,
                &local[..10].replace('-', ""),
                campaign.id,
                call.call_id
            )
        } else {
            String::new()
        };
        json!({
            "campaignId": campaign.id.to_string(),
            "sessionId": call.session_id,
            "called": call.called,
            "callTimeStr": local,
            "callStatus": status,
            "failCode": call.fail_code,
            "resultCode": if success { "OB99999".to_string() } else { format!("OB{}", call.fail_code) },
            "vdnId": campaign.vdn,
            "callId": call.call_id,
            "recordPath": record_path,
        })
    }

    fn campaign_wire(&self, campaign: &Campaign) -> Value {
        let first = self.months.0.slice(self.zone).begin_ms / 1000;
        let last = self.months.1.slice(self.zone).end_ms / 1000;
        json!({
            "campaignId": campaign.id.to_string(),
            "name": format!("{}{}", NAMES[campaign.index as usize % NAMES.len()], campaign.id),
            "status": campaign.status,
            "deviceType": campaign.device_type,
            "vdnId": campaign.vdn,
            "beginTime": self.local(first),
            "endTime": self.local(last),
        })
    }

    /// `seconds` as local text in the zone.
    fn local(&self, seconds: i64) -> String {
        let time = DateTime::from_timestamp(seconds, 0).unwrap_or_default();
        time.with_timezone(&self.zone).format(TIME_FORMAT).to_string()
    }

    /// The first second of `day` in the zone.
    fn midnight(&self, day: NaiveDate) -> i64 {
        let local = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        self.zone.from_local_datetime(&local).single().map_or(0, |t| t.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> IsalesStore {
        let zone = FixedOffset::east_opt(8 * 3600).unwrap();
        let months = (Month::new(2025, 1).unwrap(), Month::new(2025, 2).unwrap());
        IsalesStore::new(7, zone, &[170, 171], months, (3, 40))
    }

    /// Results are in time order and equal the truth; calls still running are left out of
    /// both until they finish; call ids are unique across campaigns and months.
    #[test]
    fn results_hold_finished_calls_only() {
        let store = store();
        let (jan, feb) = (Month::new(2025, 1).unwrap(), Month::new(2025, 2).unwrap());
        let truth = store.rows(&[jan, feb]);
        assert_eq!(truth.len(), 6 * 80 - 6 * 2);
        let all = store.results(171, "2", None).unwrap();
        assert_eq!(all.len(), 80 - 2);
        let times: Vec<&str> = all.iter().map(|r| r["callTimeStr"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        for row in &all {
            let mut expected = truth[row["callId"].as_str().unwrap()].clone();
            assert!(row["callStatus"].is_number(), "campaign 2 sends numbers");
            expected["callStatus"] = row["callStatus"].clone();
            assert_eq!(row, &expected);
        }
        assert!(store.results(170, "1", None).unwrap()[0]["callStatus"].is_string());
        assert!(
            truth.values().any(|r| r["failCode"] == "00000")
                && truth.values().any(|r| r["failCode"] != "00000")
        );
        let window = Some(("2025-01-31".parse().unwrap(), "2025-02-01".parse().unwrap()));
        let day = store.results(171, "2", window).unwrap();
        assert!(day.iter().all(|r| r["callTimeStr"].as_str().unwrap().starts_with("2025-01-31")));
        assert!(store.results(171, "9", None).is_none());
        assert_eq!(store.finish_calls().len(), 12);
        assert_eq!(store.rows(&[feb]).len(), 6 * 40);
        assert!(store.finish_calls().is_empty());
    }

    /// The list filters by status, device type and name.
    #[test]
    fn campaigns_filter() {
        let store = store();
        assert_eq!(store.campaigns(170, &CampaignFilter::default()).len(), 3);
        let started = CampaignFilter { status: 2, ..CampaignFilter::default() };
        assert!(store.campaigns(170, &started).iter().all(|c| c["status"] == 2));
        let named = CampaignFilter { name: Some("账单".into()), ..CampaignFilter::default() };
        assert_eq!(store.campaigns(170, &named).len(), 1);
        assert_eq!(store.all_campaigns().len(), 6);
    }
}
