//! The outbound failure-cause analysis dataset (`queryRbtRecognitionResult`, cec-api.md 2.1):
//! its month tables and the HTTP handler that queries them.
//!
//! A record is a pure function of (seed, month, index): nothing is stored for the base
//! records, and a page is generated when it is served, so memory stays flat however many
//! records a month holds. `beginTime` grows with the index, which turns a time range into an
//! index range by binary search. Changes made by [`RbtTable::mutate`] live in a small overlay:
//! replaced versions of existing records and appended records, per month.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, FixedOffset};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use super::seeding::{mix, ordinal};
use super::simulator::Simulator;
use super::stats::Event;
use crate::calendar::{Month, MonthSlice};

/// The id of the first record of the first month of year 0 (the doc example's id).
const ID_BASE: i64 = 953_730_645_354_352_640;
/// Ids of consecutive months lie this far apart, so a month holds at most this many records.
pub(crate) const MAX_RECORDS_PER_MONTH: u64 = 1_000_000_000;
/// The largest page the API serves.
pub(crate) const MAX_PAGE_SIZE: u64 = 1000;

/// Failure causes of table 4.1 that follow a successful recognition, with the text an
/// operator's announcement says for each.
const RECOGNISED: &[(i32, &str)] = &[
    (101, "您拨打的号码是空号，请查证后再拨"),
    (102, "您拨打的电话已关机"),
    (103, "您拨打的电话正在通话中，请稍后再拨"),
    (105, "您拨打的用户已停机"),
    (106, "您拨打的电话正在通话中，请不要挂机"),
    (108, "您拨打的电话暂时无法接通，请稍后再拨"),
    (109, "您拨打的电话已启用来电提醒，呼叫转移中"),
    (111, "对不起，您拨打的电话无人接听，请稍后再拨"),
    (112, "您拨打的用户已设置呼入限制"),
    (114, "您拨打的电话暂时无法接通，我们将以短信形式通知机主"),
];
/// Causes of table 4.1 for which the recording did not yield a text.
const UNRECOGNISED: &[i32] = &[-1, -2, -3, -4, -5, 104, 107, 110, 113];
/// CTI release causes seen on failed outbound calls.
const RELEASE_CAUSES: &[i64] = &[531, 537, 538, 548, 549, 551, 601, 603, 604];
/// Results an agent writes when confirming a record by hand.
const CONFIRMATIONS: &[&str] = &["已关机", "空号", "停机", "用户忙", "无人接听", "识别正确"];
/// Remarks an agent leaves now and then.
const REMARKS: &[&str] = &["客户要求稍后回拨", "号码已核实", "重复外呼", "recheck"];
/// Area prefixes of the contact center's own lines.
const CALLER_PREFIXES: &[&str] = &["010", "0755", "021", "0086755"];

/// One result of the outbound failure-cause analysis, serialised exactly as the API does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RbtRecord {
    rbt_recognition_id: i64,
    call_id: String,
    file_name: String,
    caller_no: String,
    callee_no: String,
    agent_id: i64,
    record_begin_time: i64,
    record_end_time: i64,
    call_type: i32,
    media_type: i32,
    vdn_id: i64,
    tenant_id: String,
    call_center_id: i64,
    release_cause: i64,
    begin_time: i64,
    end_time: Option<i64>,
    result: Option<i32>,
    asr_trans_result: Option<String>,
    confirmed_result: Option<String>,
    confirm_status: i32,
    remark: Option<String>,
    location_id: i64,
    update_time: Option<i64>,
}

impl RbtRecord {
    /// The API's order: ascending `beginTime`, then id.
    fn key(&self) -> (i64, i64) {
        (self.begin_time, self.rbt_recognition_id)
    }
}

/// What a month table holds beyond its generated records.
#[derive(Debug, Default)]
struct Overlay {
    /// Newer versions of generated records, by index.
    updated: HashMap<u64, RbtRecord>,
    /// Records appended after the start, in API order.
    added: Vec<RbtRecord>,
    /// How many times the month was mutated; seeds the next mutation.
    mutations: u64,
}

/// The month tables of one tenant.
#[derive(Debug)]
pub(crate) struct RbtTable {
    seed: u64,
    tenant_id: String,
    zone: FixedOffset,
    first_month: Month,
    last_month: Month,
    per_month: u64,
    overlays: RwLock<HashMap<Month, Overlay>>,
}

/// One page of a query and the number of rows the whole query matches.
#[derive(Debug)]
pub(crate) struct Page {
    /// Rows the whole query matches.
    pub(crate) total: u64,
    /// The rows of this page.
    pub(crate) records: Vec<RbtRecord>,
}

impl RbtTable {
    /// Tables for months `first_month..=last_month`, each starting with `per_month` records
    /// (at most [`MAX_RECORDS_PER_MONTH`]).
    pub(crate) fn new(
        seed: u64,
        tenant_id: &str,
        zone: FixedOffset,
        (first_month, last_month): (Month, Month),
        per_month: u64,
    ) -> Self {
        Self {
            seed,
            tenant_id: tenant_id.to_string(),
            zone,
            first_month,
            last_month,
            per_month: per_month.min(MAX_RECORDS_PER_MONTH),
            overlays: RwLock::default(),
        }
    }

    /// The rows of `month`'s table whose `beginTime` lies in the inclusive `range` of epoch
    /// milliseconds, in API order, skipping `offset` rows and returning at most `limit`.
    pub(crate) fn page(&self, month: Month, range: (i64, i64), offset: u64, limit: u64) -> Page {
        let empty = Page { total: 0, records: Vec::new() };
        if month < self.first_month || month > self.last_month {
            return empty;
        }
        let slice = month.slice(self.zone);
        let (lo, hi) = (range.0.max(slice.begin_ms), range.1.min(slice.end_ms));
        if lo > hi {
            return empty;
        }
        let overlays = self.overlays.read().unwrap_or_else(PoisonError::into_inner);
        let overlay = overlays.get(&month);
        let added = overlay.map_or(&[][..], |o| o.added.as_slice());
        let base_first = self.base_count_upto(month, &slice, lo - 1);
        let base_end = self.base_count_upto(month, &slice, hi);
        let added_first = added.partition_point(|r| r.begin_time < lo);
        let added_end = added.partition_point(|r| r.begin_time <= hi);
        let total = (base_end - base_first) + (added_end - added_first) as u64;
        if offset >= total {
            return Page { total, records: Vec::new() };
        }
        // Added rows that come before `offset` in the merged order; a generated row sorts
        // before an added row with the same beginTime because its id is smaller.
        let mut added_at = added_first;
        while added_at < added_end {
            let base_before =
                self.base_count_upto(month, &slice, added[added_at].begin_time).min(base_end);
            let position = base_before.saturating_sub(base_first) + (added_at - added_first) as u64;
            if position >= offset {
                break;
            }
            added_at += 1;
        }
        let mut base_at = base_first + (offset - (added_at - added_first) as u64);
        let take = limit.min(total - offset);
        let mut records = Vec::with_capacity(usize::try_from(take).unwrap_or(0));
        while (records.len() as u64) < take {
            let base_next = (base_at < base_end).then(|| self.begin_of(month, &slice, base_at));
            let take_base = match (base_next, added.get(added_at).filter(|_| added_at < added_end))
            {
                (Some(begin), Some(a)) => begin <= a.begin_time,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_base {
                records.push(self.current(month, &slice, overlay, base_at));
                base_at += 1;
            } else {
                records.push(added[added_at].clone());
                added_at += 1;
            }
        }
        Page { total, records }
    }

    /// Every current row of `month`'s table, in API order.
    pub(crate) fn month(&self, month: Month) -> Vec<RbtRecord> {
        let slice = month.slice(self.zone);
        self.page(month, (slice.begin_ms, slice.end_ms), 0, u64::MAX).records
    }

    /// Gives `updated` existing records of `month` a newer version and appends `added` new
    /// ones; returns the ids touched. Months without a table are left alone.
    pub(crate) fn mutate(&self, month: Month, updated: u64, added: u64) -> Vec<i64> {
        if month < self.first_month || month > self.last_month {
            return Vec::new();
        }
        let slice = month.slice(self.zone);
        let mut overlays = self.overlays.write().unwrap_or_else(PoisonError::into_inner);
        let overlay = overlays.entry(month).or_default();
        let mut rng = SmallRng::seed_from_u64(mix(&[self.seed, ordinal(month), overlay.mutations]));
        overlay.mutations += 1;
        let mut touched = Vec::new();

        let existing = self.per_month + overlay.added.len() as u64;
        let count = usize::try_from(updated.min(existing)).unwrap_or(0);
        let length = usize::try_from(existing).unwrap_or(usize::MAX);
        for pick in rand::seq::index::sample(&mut rng, length, count.min(length)) {
            let pick = pick as u64;
            let record = if pick < self.per_month {
                let current = self.current(month, &slice, Some(overlay), pick);
                overlay.updated.entry(pick).or_insert(current)
            } else {
                &mut overlay.added[(pick - self.per_month) as usize]
            };
            confirm(record, &mut rng);
            touched.push(record.rbt_recognition_id);
        }

        for _ in 0..added {
            let index = self.per_month + overlay.added.len() as u64;
            if index >= MAX_RECORDS_PER_MONTH {
                break;
            }
            let begin = rng.random_range(slice.begin_ms..=slice.end_ms);
            let record = self.generate(month, index, begin);
            touched.push(record.rbt_recognition_id);
            let at = overlay.added.partition_point(|r| r.key() < record.key());
            overlay.added.insert(at, record);
        }
        touched
    }

    /// The current version of generated record `index`.
    fn current(
        &self,
        month: Month,
        slice: &MonthSlice,
        overlay: Option<&Overlay>,
        index: u64,
    ) -> RbtRecord {
        match overlay.and_then(|o| o.updated.get(&index)) {
            Some(record) => record.clone(),
            None => self.generate(month, index, self.begin_of(month, slice, index)),
        }
    }

    /// How many generated records have a `beginTime` at most `at` (binary search).
    fn base_count_upto(&self, month: Month, slice: &MonthSlice, at: i64) -> u64 {
        let (mut lo, mut hi) = (0, self.per_month);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.begin_of(month, slice, mid) <= at {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// `beginTime` of generated record `index`: evenly spread over the month with a seeded
    /// jitter that never crosses the next record's slot, so it never decreases; the first
    /// record falls on the month's first millisecond and the last on its last millisecond.
    fn begin_of(&self, month: Month, slice: &MonthSlice, index: u64) -> i64 {
        let n = self.per_month;
        if n <= 1 {
            return slice.begin_ms;
        }
        let span = (slice.end_ms - slice.begin_ms) as u128;
        let slot = |i: u64| (i as u128 * span / (n - 1) as u128) as i64;
        let here = slot(index);
        let jitter = if index == 0 || index + 1 >= n {
            0
        } else {
            let gap = (slot(index + 1) - here) as u64;
            if gap == 0 {
                0
            } else {
                (mix(&[self.seed, ordinal(month), index, 0x6a17]) % gap) as i64
            }
        };
        slice.begin_ms + here + jitter
    }

    /// Record `index` of `month` with the given `beginTime`; every other field is drawn from
    /// a generator seeded by (seed, month, index).
    fn generate(&self, month: Month, index: u64, begin_time: i64) -> RbtRecord {
        let mut rng = SmallRng::seed_from_u64(mix(&[self.seed, ordinal(month), index]));
        let record_begin_time = begin_time - rng.random_range(30_000..1_200_000);
        let record_end_time = if rng.random_ratio(1, 25) {
            // As in the doc's example, the end can be days before the start.
            record_begin_time - rng.random_range(86_400_000..259_200_000)
        } else {
            record_begin_time + rng.random_range(3_000..60_000)
        };
        let call_id = format!("{}-{}", record_begin_time / 1000, rng.random_range(10_000..100_000));
        let vdn_id = *[123, 268, 301].choose(&mut rng).unwrap_or(&268);
        let location_id = rng.random_range(0..4);
        let agent_id = rng.random_range(1000..6000);
        let day = DateTime::from_timestamp_millis(record_begin_time)
            .map(|t| t.with_timezone(&self.zone).format("%Y%m%d").to_string())
            .unwrap_or_default();
        let file_name = format!("Y:\\{vdn_id}\\{location_id}\\{day}\\{agent_id}\\{call_id}.V3");
        let caller_no = format!(
            "{}{:08}",
            CALLER_PREFIXES.choose(&mut rng).unwrap_or(&"010"),
            rng.random_range(0..100_000_000)
        );
        let callee_no = match rng.random_range(0..3) {
            0 => format!("0086138{:08}", rng.random_range(0..100_000_000)),
            1 => format!("013{:09}", rng.random_range(0..1_000_000_000)),
            _ => format!("010{:08}", rng.random_range(0..100_000_000)),
        };
        let (result, asr_trans_result) = match rng.random_range(0..12) {
            0 => (None, None),
            1 => (UNRECOGNISED.choose(&mut rng).copied(), None),
            _ => RECOGNISED
                .choose(&mut rng)
                .map_or((None, None), |(code, text)| (Some(*code), Some(text.to_string()))),
        };
        let end_time =
            (!rng.random_ratio(1, 8)).then(|| begin_time + rng.random_range(1_000..300_000));
        let remark =
            rng.random_ratio(1, 10).then(|| REMARKS.choose(&mut rng).unwrap_or(&"").to_string());
        let mut record = RbtRecord {
            rbt_recognition_id: ID_BASE
                + ordinal(month) as i64 * MAX_RECORDS_PER_MONTH as i64
                + index as i64,
            call_id,
            file_name,
            caller_no,
            callee_no,
            agent_id,
            record_begin_time,
            record_end_time,
            call_type: 7,
            media_type: 5,
            vdn_id,
            tenant_id: self.tenant_id.clone(),
            call_center_id: rng.random_range(1..3),
            release_cause: *RELEASE_CAUSES.choose(&mut rng).unwrap_or(&531),
            begin_time,
            end_time,
            result,
            asr_trans_result,
            confirmed_result: None,
            confirm_status: 0,
            remark,
            location_id,
            update_time: end_time,
        };
        if rng.random_ratio(1, 6) {
            confirm(&mut record, &mut rng);
        }
        record
    }
}

/// A manual confirmation: a newer `updateTime` and `endTime`, a status and maybe a result.
fn confirm(record: &mut RbtRecord, rng: &mut SmallRng) {
    let previous =
        record.update_time.into_iter().chain(record.end_time).fold(record.begin_time, i64::max);
    let at = previous + rng.random_range(60_000..259_200_000);
    record.update_time = Some(at);
    record.end_time = Some(at);
    record.confirm_status = rng.random_range(1..3);
    record.confirmed_result =
        (!rng.random_ratio(1, 4)).then(|| CONFIRMATIONS.choose(rng).unwrap_or(&"").to_string());
}

/// Why a query was refused with HTTP 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// The body is not a JSON object.
    #[error("the request body is not a JSON object")]
    NotJson,
    /// A required field is absent or null.
    #[error("{field} is required")]
    Missing { field: &'static str },
    /// A field is not an integer.
    #[error("{field} must be an integer")]
    NotInteger { field: &'static str },
    /// A field is an integer below 1.
    #[error("{field} must be 1 or more, got {value}")]
    TooSmall { field: &'static str, value: i64 },
}

/// A validated query.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    begin_time: i64,
    end_time: i64,
    tenant_id: String,
    page_num: u64,
    page_size: u64,
}

impl Query {
    /// Reads the documented request fields (the token is checked separately).
    fn parse(body: &Value) -> Result<Self, QueryError> {
        let required = |field| int_field(body, field)?.ok_or(QueryError::Missing { field });
        let positive = |field| match int_field(body, field)? {
            Some(value) if value < 1 => Err(QueryError::TooSmall { field, value }),
            value => Ok(value),
        };
        let tenant_id = match body.get("tenantId") {
            Some(Value::String(t)) => t.clone(),
            _ => return Err(QueryError::Missing { field: "tenantId" }),
        };
        Ok(Self {
            begin_time: required("beginTime")?,
            end_time: required("endTime")?,
            tenant_id,
            page_num: positive("pageNum")?.map_or(1, |v| v as u64),
            page_size: positive("pageSize")?.map_or(MAX_PAGE_SIZE, |v| v as u64).min(MAX_PAGE_SIZE),
        })
    }
}

/// An integer field; numeric strings are accepted too, as the server's JSON binding does.
fn int_field(body: &Value, field: &'static str) -> Result<Option<i64>, QueryError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(QueryError::NotInteger { field }),
        Some(Value::String(s)) => {
            s.trim().parse().map(Some).map_err(|_| QueryError::NotInteger { field })
        }
        Some(_) => Err(QueryError::NotInteger { field }),
    }
}

/// The response body of a query.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PageBody {
    rbt_recognitions: Vec<RbtRecord>,
    total: u64,
    page_size: u64,
    page_num: u64,
}

/// `POST /oifde/rest/api/queryRbtRecognitionResult`.
pub(crate) async fn query(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return bad_request(&sim, &QueryError::NotJson);
    };
    let body = Value::Object(fields);
    let token = body.get("authToken").and_then(Value::as_str);
    if let Err(e) = sim.tokens().check(token) {
        sim.counters().record(Event::Unauthorized);
        return e.into_response();
    }
    let query = match Query::parse(&body) {
        Ok(query) => query,
        Err(e) => return bad_request(&sim, &e),
    };
    let page = if query.tenant_id == sim.options().tenant_id {
        Month::containing_ms(query.begin_time, sim.options().zone).map(|month| {
            let offset = (query.page_num - 1).saturating_mul(query.page_size);
            sim.rbt().page(month, (query.begin_time, query.end_time), offset, query.page_size)
        })
    } else {
        None
    };
    let page = page.unwrap_or(Page { total: 0, records: Vec::new() });
    sim.counters().record(Event::PageServed);
    Json(PageBody {
        rbt_recognitions: page.records,
        total: page.total,
        page_size: query.page_size,
        page_num: query.page_num,
    })
    .into_response()
}

/// HTTP 400 with an error body.
fn bad_request(sim: &Simulator, error: &QueryError) -> Response {
    sim.counters().record(Event::BadRequest);
    let body = json!({"errorCode": "400", "errorMsg": error.to_string()});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_zone;
    use crate::sim::test_support::{post, start};
    use crate::sim::{SimOptions, Simulator};

    fn month(text: &str) -> Month {
        text.parse().unwrap()
    }

    fn table(per_month: u64) -> RbtTable {
        let zone = parse_zone("+08:00").unwrap();
        RbtTable::new(7, "t1", zone, (month("2025-01"), month("2025-12")), per_month)
    }

    fn ids(records: &[RbtRecord]) -> Vec<i64> {
        records.iter().map(|r| r.rbt_recognition_id).collect()
    }

    fn options(per_month: u64) -> SimOptions {
        SimOptions {
            records_per_month: per_month,
            first_month: month("2025-01"),
            last_month: month("2025-03"),
            ..SimOptions::default()
        }
    }

    fn query_body(begin: i64, end: i64, page_num: i64, page_size: i64) -> Value {
        json!({"beginTime": begin, "endTime": end, "tenantId": "202401150001",
               "pageNum": page_num, "pageSize": page_size, "authToken": "sim-token"})
    }

    /// Generated records are ascending by (beginTime, id), lie inside their month, start on
    /// its first millisecond and end on its last, and have ids above 2^53.
    #[test]
    fn a_month_is_ordered_and_covers_its_edges() {
        let t = table(3000);
        let jan = month("2025-01");
        let slice = jan.slice(t.zone);
        let rows = t.month(jan);
        assert_eq!(rows.len(), 3000);
        assert!(rows.windows(2).all(|w| w[0].key() < w[1].key()));
        assert_eq!(rows[0].begin_time, slice.begin_ms);
        assert_eq!(rows[2999].begin_time, slice.end_ms);
        assert!(rows.iter().filter(|r| r.begin_time < slice.begin_ms + 3_600_000).count() > 1);
        assert!(rows.iter().filter(|r| r.begin_time > slice.end_ms - 3_600_000).count() > 1);
        assert!(rows.iter().all(|r| r.rbt_recognition_id > 1 << 53));
        let feb = t.month(month("2025-02"));
        assert!(ids(&rows).iter().max() < ids(&feb).iter().min(), "ids are unique across months");
    }

    /// Records carry the documented shapes: fixed types, strings with leading zeros, Windows
    /// paths, nulls and Chinese text, negative result codes, and end-before-begin recordings.
    #[test]
    fn records_have_realistic_values() {
        let rows = table(2000).month(month("2025-06"));
        assert!(rows.iter().all(|r| r.call_type == 7 && r.media_type == 5 && r.tenant_id == "t1"));
        assert!(rows.iter().all(|r| r.callee_no.starts_with('0') && r.caller_no.starts_with('0')));
        assert!(rows
            .iter()
            .all(|r| r.file_name.starts_with("Y:\\") && r.file_name.ends_with(".V3")));
        assert!(rows.iter().any(|r| r.callee_no.starts_with("0086")));
        assert!(rows.iter().any(|r| r.update_time.is_none() && r.end_time.is_none()));
        assert!(rows.iter().any(|r| r.asr_trans_result.is_none()));
        assert!(rows.iter().any(|r| r.asr_trans_result.as_deref() == Some("您拨打的电话已关机")));
        assert!(rows.iter().any(|r| r.result.is_some_and(|c| c < 0)));
        assert!(rows.iter().any(|r| r.result.is_none()));
        assert!(rows.iter().any(|r| r.record_end_time < r.record_begin_time));
        assert!(rows.iter().any(|r| r.confirmed_result.is_some() && r.remark.is_some()));
    }

    /// Any page of any range equals the same slice of the whole month, before and after
    /// records are appended between the generated ones.
    #[test]
    fn pages_are_slices_of_the_merged_order() {
        let t = table(500);
        let jun = month("2025-06");
        t.mutate(jun, 20, 40);
        let all = t.month(jun);
        assert_eq!(all.len(), 540);
        assert!(all.windows(2).all(|w| w[0].key() < w[1].key()));
        let (from, to) = (all[100].begin_time, all[400].begin_time);
        let expected: Vec<_> =
            all.iter().filter(|r| r.begin_time >= from && r.begin_time <= to).cloned().collect();
        let mut got = Vec::new();
        for page in 0..30 {
            let p = t.page(jun, (from, to), page * 17, 17);
            assert_eq!(p.total, expected.len() as u64);
            got.extend(p.records);
        }
        assert_eq!(ids(&got), ids(&expected));
    }

    /// Same seed, same data; a mutation changes exactly the ids it returns and appends new
    /// ids.
    #[test]
    fn data_is_deterministic_and_mutations_are_exact() {
        let (a, b) = (table(800), table(800));
        let mar = month("2025-03");
        let before = a.month(mar);
        assert_eq!(before, b.month(mar));
        let touched = a.mutate(mar, 25, 5);
        assert_eq!(touched.len(), 30);
        let after = a.month(mar);
        assert_eq!(after.len(), 805);
        let old: HashMap<i64, &RbtRecord> =
            before.iter().map(|r| (r.rbt_recognition_id, r)).collect();
        for record in &after {
            let changed = old.get(&record.rbt_recognition_id) != Some(&record);
            assert_eq!(changed, touched.contains(&record.rbt_recognition_id));
            if let Some(previous) = old.get(&record.rbt_recognition_id).filter(|_| changed) {
                assert!(record.update_time > previous.update_time, "updates are newer");
                assert_eq!(record.begin_time, previous.begin_time);
            }
        }
        assert!(a.mutate(month("2024-12"), 5, 5).is_empty(), "no table, no change");
    }

    /// Paging over HTTP: 1000 + 1000 + 500 rows, total 2500 on every page, the union equals
    /// the ground truth, and pageSize 5000 is served as 1000.
    #[tokio::test]
    async fn paging_over_http_matches_the_ground_truth() {
        let sim = Arc::new(Simulator::new(options(2500)));
        let running = start(&sim).await;
        let url = format!("{}/oifde/rest/api/queryRbtRecognitionResult", running.base_url);
        let slice = month("2025-02").slice(sim.options().zone);
        let mut union = Vec::new();
        for (page, expected) in [(1, 1000), (2, 1000), (3, 500), (4, 0)] {
            let (status, body) =
                post(&url, &query_body(slice.begin_ms, slice.end_ms, page, 1000)).await;
            assert_eq!(status, 200);
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["total"], 2500);
            assert_eq!(body["pageNum"], page);
            let rows = body["rbtRecognitions"].as_array().unwrap();
            assert_eq!(rows.len(), expected, "page {page}");
            union.extend(rows.iter().cloned());
        }
        assert_eq!(union, sim.rbt_month(month("2025-02")));
        let (_, body) = post(&url, &query_body(slice.begin_ms, slice.end_ms, 1, 5000)).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["pageSize"], 1000);
        assert_eq!(body["rbtRecognitions"].as_array().unwrap().len(), 1000);
        running.shutdown().await;
    }

    /// Only the month table of beginTime is queried, and the records on a month's first and
    /// last millisecond belong to that month.
    #[tokio::test]
    async fn a_range_reads_only_the_month_of_its_begin() {
        let sim = Arc::new(Simulator::new(options(300)));
        let running = start(&sim).await;
        let url = format!("{}/oifde/rest/api/queryRbtRecognitionResult", running.base_url);
        let zone = sim.options().zone;
        let (jan, mar) = (month("2025-01").slice(zone), month("2025-03").slice(zone));
        let (_, body) = post(&url, &query_body(jan.begin_ms, mar.end_ms, 1, 1000)).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["total"], 300);
        let rows = body["rbtRecognitions"].as_array().unwrap();
        assert_eq!(rows, &sim.rbt_month(month("2025-01")));
        assert_eq!(rows[0]["beginTime"], jan.begin_ms);
        assert_eq!(rows[299]["beginTime"], jan.end_ms);
        for edge in [jan.begin_ms, jan.end_ms] {
            let (_, body) = post(&url, &query_body(edge, edge, 1, 10)).await;
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["total"], 1, "the record on {edge} is in January's table");
        }
        let (_, body) = post(&url, &query_body(jan.end_ms, jan.end_ms + 1, 1, 10)).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["total"], 1, "February's first record is not in January's table");
        assert_eq!(body["rbtRecognitions"][0]["beginTime"], jan.end_ms);
        running.shutdown().await;
    }

    /// Large ids travel as exact JSON integers, not as rounded floating-point numbers.
    #[tokio::test]
    async fn large_ids_are_exact_on_the_wire() {
        let sim = Arc::new(Simulator::new(options(10)));
        let running = start(&sim).await;
        let url = format!("{}/oifde/rest/api/queryRbtRecognitionResult", running.base_url);
        let jan = month("2025-01").slice(sim.options().zone);
        let (_, body) = post(&url, &query_body(jan.begin_ms, jan.end_ms, 2, 1)).await;
        let text = String::from_utf8(body.to_vec()).unwrap();
        let id = sim.rbt_month(month("2025-01"))[1]["rbtRecognitionId"].as_i64().unwrap();
        assert!(text.contains(&format!("\"rbtRecognitionId\":{id},")), "{text}");
        assert_ne!(id as f64 as i64, id, "the id is not representable as f64");
        running.shutdown().await;
    }

    /// Bad parameters get HTTP 400 with a message naming the field; an unknown tenant gets
    /// an empty result.
    #[tokio::test]
    async fn bad_parameters_and_unknown_tenants() {
        let sim = Arc::new(Simulator::new(options(10)));
        let running = start(&sim).await;
        let url = format!("{}/oifde/rest/api/queryRbtRecognitionResult", running.base_url);
        let jan = month("2025-01").slice(sim.options().zone);
        let good = query_body(jan.begin_ms, jan.end_ms, 1, 10);
        let cases = [
            ("beginTime", Value::Null, "beginTime is required"),
            ("endTime", json!("soon"), "endTime must be an integer"),
            ("pageNum", json!(0), "pageNum must be 1 or more"),
            ("pageSize", json!(-5), "pageSize must be 1 or more"),
        ];
        for (field, value, message) in cases {
            let mut body = good.clone();
            body[field] = value;
            let (status, reply) = post(&url, &body).await;
            assert_eq!(status, 400, "{field}");
            let reply: Value = serde_json::from_slice(&reply).unwrap();
            assert!(reply["errorMsg"].as_str().unwrap().starts_with(message), "{reply}");
        }
        let mut other = good.clone();
        other["tenantId"] = json!("someone-else");
        let (status, reply) = post(&url, &other).await;
        assert_eq!(status, 200);
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(
            (reply["total"].as_u64(), reply["rbtRecognitions"].as_array().map(Vec::len)),
            (Some(0), Some(0))
        );
        assert_eq!(sim.stats().bad_requests, 4);
        running.shutdown().await;
    }
}
