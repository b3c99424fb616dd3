//! Call history of bidirectional calls, `POST /apiaccess/CC-Management/v1/mobileAgent/
//! queryCallDetailRecord` (cec-api.md 2.13): the records and the handler.
//!
//! Readings of what the documentation leaves open:
//! - Body values are strings as documented; numbers are accepted too. `startTime` and
//!   `endTime` bound `startTime` of the records, both inclusive; a missing or unreadable
//!   bound, `endTime` before `startTime` or a span over 7 days is `retCode "2"`.
//! - `limit` defaults to 100 and is at most [`MAX_LIMIT`]; above it, or an unreadable or
//!   negative `offset`/`limit`, is `retCode "4"` (the documented code for bad paging)
//!   rather than a silently smaller page.
//! - No matching record is `retCode "1"` with a `retMsg` and no `result`; an `offset` past
//!   the end of existing data is `retCode "0"` with an empty `callInfo`.
//! - The response does not name a record's task type. Every record is of task type 1, 2 or 3,
//!   so `taskType` "0" or absent selects all of them and "4" (ITA calls) none; another value
//!   is `retCode "4"` with a message naming `taskType` (no code is documented for it).
//! - Records are typed as the table says (strings for times and durations), as the example
//!   does (numbers), or with `state`/`reasonCode` as strings, mixed by record from the seed.
//!   Phone numbers are always strings (some have leading zeros).
//! - The last records of the last month, in its final half hour ("now" of the data set), are
//!   still in progress (`state` 0, 1 or 2) without their end fields.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::FixedOffset;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::fabric_auth::{authorize, reject, Envelope, FabricError};
use super::seeding::{mix, ordinal};
use super::simulator::Simulator;
use super::stats::Event;
use crate::calendar::Month;

/// The largest `limit` served.
pub(crate) const MAX_LIMIT: u64 = 1000;
/// `limit` when the request gives none.
const DEFAULT_LIMIT: u64 = 100;
/// The longest `endTime - startTime` accepted, in milliseconds.
pub(crate) const MAX_SPAN_MS: i64 = 7 * 86_400_000;
/// The serial number of the documented example; others count up from it.
const SERIAL_BASE: i64 = 1_037_058_396_471_308_289;
/// Serial numbers of consecutive months lie this far apart.
const SERIALS_PER_MONTH: i64 = 10_000_000;
/// Third-party call data attached to calls.
const CALL_DATA: &[&str] =
    &["", "回访任务", "{\"orderId\":\"20250108001\"}", "campaign=春季促销;batch=3", "VIP客户"];

/// How a record types its fields on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Typing {
    /// As the table: times and durations are strings, `state`/`reasonCode` numbers.
    AsTable,
    /// As the example: everything numeric is a number.
    AsExample,
    /// Times are strings, durations numbers, and `state`/`reasonCode` strings.
    Swapped,
}

/// One call record with every time it will have once ended; `state` decides which are
/// shown.
#[derive(Debug, Clone, PartialEq)]
struct Cdr {
    serial: String,
    caller: String,
    called: String,
    caller_present: String,
    agent_present: String,
    call_data: &'static str,
    task_type: u8,
    typing: Typing,
    state: i64,
    reason_code: i64,
    start: i64,
    agent_alerting: i64,
    agent_talking: i64,
    alerting: i64,
    /// None when the customer never answered.
    talking: Option<i64>,
    release: i64,
}

/// The value of a field: a time or count (typed per record), a state code, or text.
enum Field {
    Time(Option<i64>),
    Code(Option<i64>),
    Text(String),
}

impl Cdr {
    /// The documented fields, `None` where the call has not got that far.
    fn fields(&self) -> Vec<(&'static str, Field)> {
        let ended = self.state >= 3;
        let shown = |value: i64, from_state: i64| (self.state >= from_state).then_some(value);
        let talk = self.talking.filter(|_| ended).map(|t| (self.release - t) / 1000);
        let agent_talk = ended.then_some((self.release - self.agent_talking) / 1000);
        vec![
            ("callSerialNo", Field::Text(self.serial.clone())),
            ("caller", Field::Text(self.caller.clone())),
            ("called", Field::Text(self.called.clone())),
            ("startTime", Field::Time(Some(self.start))),
            ("endTime", Field::Time(shown(self.release, 3))),
            ("state", Field::Code(Some(self.state))),
            ("reasonCode", Field::Code(shown(self.reason_code, 3))),
            ("callData", Field::Text(self.call_data.to_string())),
            ("callerPresent", Field::Text(self.caller_present.clone())),
            ("alertingTime", Field::Time(shown(self.alerting, 1))),
            ("talkingTime", Field::Time(self.talking.filter(|_| self.state >= 2))),
            ("releaseTime", Field::Time(shown(self.release, 3))),
            ("talkDuration", Field::Time(talk.or(ended.then_some(0)))),
            ("agentAlertingTime", Field::Time(Some(self.agent_alerting))),
            ("agentTalkingTime", Field::Time(shown(self.agent_talking, 1))),
            ("agentReleaseTime", Field::Time(shown(self.release, 3))),
            ("agentTalkDuration", Field::Time(agent_talk)),
            ("agentPresent", Field::Text(self.agent_present.clone())),
        ]
    }

    /// The record as the API sends it: typed per [`Typing`], unknown values left out.
    fn wire(&self) -> Value {
        let mut out = Map::new();
        for (name, field) in self.fields() {
            let is_duration = name.ends_with("Duration");
            let value = match field {
                Field::Text(text) => Value::from(text),
                Field::Time(None) | Field::Code(None) => continue,
                Field::Time(Some(v)) => match self.typing {
                    Typing::AsExample => json!(v),
                    Typing::Swapped if is_duration => json!(v),
                    Typing::AsTable | Typing::Swapped => json!(v.to_string()),
                },
                Field::Code(Some(v)) => match self.typing {
                    Typing::Swapped => json!(v.to_string()),
                    Typing::AsTable | Typing::AsExample => json!(v),
                },
            };
            out.insert(name.to_string(), value);
        }
        Value::Object(out)
    }

    /// The lake row: every documented field, times, durations and codes as numbers, null
    /// where unknown.
    fn row(&self) -> Value {
        let mut out = Map::new();
        for (name, field) in self.fields() {
            let value = match field {
                Field::Text(text) => Value::from(text),
                Field::Time(v) | Field::Code(v) => v.map_or(Value::Null, Value::from),
            };
            out.insert(name.to_string(), value);
        }
        Value::Object(out)
    }
}

/// Every call record of the tenant, ascending by `startTime`, then serial number.
#[derive(Debug)]
pub(crate) struct CdrStore {
    zone: FixedOffset,
    records: RwLock<Vec<Cdr>>,
}

/// A validated query.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    start: i64,
    end: i64,
    offset: u64,
    limit: u64,
    caller: Option<String>,
    task_type: u8,
}

/// A refusal inside the `retCode` envelope (HTTP 200).
#[derive(Debug, PartialEq, Eq)]
struct RetError {
    code: &'static str,
    message: String,
}

impl CdrStore {
    /// Records for months `first..=last`, `per_month` each.
    pub(crate) fn new(
        seed: u64,
        zone: FixedOffset,
        (first, last): (Month, Month),
        per_month: u64,
    ) -> Self {
        let mut records = Vec::new();
        for month in first.through(last) {
            records.extend(generate_month(seed, zone, month, per_month, month == last));
        }
        records.sort_by(|a, b| (a.start, &a.serial).cmp(&(b.start, &b.serial)));
        Self { zone, records: RwLock::new(records) }
    }

    /// Ground truth: the records whose `startTime` falls in one of `months`, by serial.
    pub(crate) fn rows(&self, months: &[Month]) -> BTreeMap<String, Value> {
        let records = self.records.read().unwrap_or_else(PoisonError::into_inner);
        records
            .iter()
            .filter(|r| {
                Month::containing_ms(r.start, self.zone).is_some_and(|m| months.contains(&m))
            })
            .map(|r| (r.serial.clone(), r.row()))
            .collect()
    }

    /// Ends every call still in progress (`state` 3, end fields set); returns their serials.
    pub(crate) fn end_in_progress(&self) -> Vec<String> {
        let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
        records
            .iter_mut()
            .filter(|r| r.state < 3)
            .map(|r| {
                r.state = 3;
                r.serial.clone()
            })
            .collect()
    }

    /// The matching records in `offset..offset + limit` and how many match in all.
    fn page(&self, query: &Query) -> (u64, Vec<Value>) {
        let records = self.records.read().unwrap_or_else(PoisonError::into_inner);
        let matching: Vec<&Cdr> = records
            .iter()
            .filter(|r| r.start >= query.start && r.start <= query.end)
            .filter(|r| query.caller.as_ref().is_none_or(|c| *c == r.caller))
            .filter(|r| query.task_type == 0 || query.task_type == r.task_type)
            .collect();
        let skip = usize::try_from(query.offset).unwrap_or(usize::MAX);
        let take = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let page = matching.iter().skip(skip).take(take).map(|r| r.wire()).collect();
        (matching.len() as u64, page)
    }
}

/// The records of `month`; in the `last` month, the final ones are still in progress.
fn generate_month(
    seed: u64,
    zone: FixedOffset,
    month: Month,
    per_month: u64,
    last: bool,
) -> Vec<Cdr> {
    let mut rng = SmallRng::seed_from_u64(mix(&[seed, ordinal(month), 0xcd2]));
    let slice = month.slice(zone);
    let n = per_month.min(SERIALS_PER_MONTH as u64) as i64;
    let in_progress = if last { (n / 20).max(2).min(n) } else { 0 };
    let span = slice.end_ms - slice.begin_ms;
    // Calls in progress start in the month's final half hour, spread evenly.
    let step = (1_800_000 / in_progress.max(1)).max(2);
    (0..n)
        .map(|i| {
            let from_end = n - i;
            let start = if from_end <= in_progress {
                slice.end_ms - from_end * step + rng.random_range(0..step / 2)
            } else if i == 0 {
                slice.begin_ms
            } else {
                slice.begin_ms + i * (span / n) + rng.random_range(0..(span / n / 2).max(1))
            };
            let serial = SERIAL_BASE + ordinal(month) as i64 * SERIALS_PER_MONTH + i;
            let mut record = generate(&mut rng, serial, start);
            if from_end <= in_progress {
                record.state = from_end % 3;
                if record.talking.is_none() && record.state == 2 {
                    record.state = 1;
                }
            }
            record
        })
        .collect()
}

/// An ended call started at `start` with serial number `serial`.
fn generate(rng: &mut SmallRng, serial: i64, start: i64) -> Cdr {
    let agent_talking = start + rng.random_range(1_000..4_000);
    let alerting = agent_talking + rng.random_range(0..2_000);
    let answered = rng.random_ratio(4, 5);
    let talking = answered.then(|| alerting + rng.random_range(1_000..20_000));
    let release = match talking {
        Some(t) => t + rng.random_range(5_000..600_000),
        None => alerting + rng.random_range(5_000..60_000),
    };
    let reason_code = if answered { rng.random_range(0..2) } else { rng.random_range(2..7) };
    let number = |rng: &mut SmallRng| match rng.random_range(0..4) {
        0 => format!("8888{:04}", rng.random_range(0..10_000)),
        1 => format!("0755{:08}", rng.random_range(0..100_000_000)),
        2 => format!("00861{:010}", rng.random_range(3_000_000_000_u64..9_999_999_999)),
        _ => format!("1{:010}", rng.random_range(3_000_000_000_u64..9_999_999_999)),
    };
    let typing = *[Typing::AsTable, Typing::AsExample, Typing::Swapped]
        .choose(rng)
        .unwrap_or(&Typing::AsExample);
    Cdr {
        serial: serial.to_string(),
        caller: number(rng),
        called: number(rng),
        caller_present: format!("6400{:02}", rng.random_range(0..100)),
        agent_present: format!("6400{:02}", rng.random_range(0..100)),
        call_data: CALL_DATA.choose(rng).unwrap_or(&""),
        task_type: *[1, 1, 1, 2, 3].choose(rng).unwrap_or(&1),
        typing,
        state: 3,
        reason_code,
        start,
        agent_alerting: start,
        agent_talking,
        alerting,
        talking,
        release,
    }
}

/// `POST /apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord`.
pub(crate) async fn query(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.counters().record(Event::CdrRequest);
    if let Err(e) = authorize(&sim, &headers) {
        return reject(&sim, &e, Envelope::RetCode);
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        let e = FabricError::BadParameter("the request body is not a JSON object".into());
        return reject(&sim, &e, Envelope::RetCode);
    };
    let query = match parse(&fields) {
        Ok(query) => query,
        Err(e) => {
            sim.counters().record(Event::BadRequest);
            return Json(json!({"retCode": e.code, "retMsg": e.message})).into_response();
        }
    };
    let (total, page) = sim.cdrs().page(&query);
    sim.counters().record(Event::PageServed);
    if total == 0 {
        return Json(json!({"retCode": "1", "retMsg": "No call detail record is found"}))
            .into_response();
    }
    Json(json!({"result": {"total": total, "callInfo": page}, "retCode": "0",
                "retMsg": "Query call detail record successfully"}))
    .into_response()
}

/// Reads the documented request fields.
fn parse(fields: &Map<String, Value>) -> Result<Query, RetError> {
    let time = |name: &str| {
        integer(fields.get(name)).flatten().ok_or_else(|| RetError {
            code: "2",
            message: format!("{name} is required: epoch milliseconds, e.g. \"1572794607000\""),
        })
    };
    let (start, end) = (time("startTime")?, time("endTime")?);
    if end < start || end - start > MAX_SPAN_MS {
        return Err(RetError {
            code: "2",
            message: format!(
                "endTime must not be before startTime, and endTime - startTime must not exceed \
                 7 days ({MAX_SPAN_MS} ms); got {start}..{end}"
            ),
        });
    }
    let paging = |name: &str, default: u64, most: u64| match integer(fields.get(name)) {
        None => Ok(default),
        Some(Some(v)) if v >= 0 && (v as u64) <= most && !(name == "limit" && v == 0) => {
            Ok(v as u64)
        }
        Some(_) => Err(RetError {
            code: "4",
            message: format!(
                "{name} must be a whole number of 0 to {most} (limit 1 to {MAX_LIMIT})"
            ),
        }),
    };
    let offset = paging("offset", 0, u64::MAX >> 1)?;
    let limit = paging("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let caller = match fields.get("caller") {
        Some(Value::String(c)) if !c.is_empty() => Some(c.clone()),
        _ => None,
    };
    let task_type = match integer(fields.get("taskType")) {
        None => 0,
        Some(Some(t @ 0..=4)) => t as u8,
        Some(_) => {
            return Err(RetError { code: "4", message: "taskType must be 0, 1, 2, 3 or 4".into() })
        }
    };
    Ok(Query { start, end, offset, limit, caller, task_type })
}

/// `None` when absent or null; `Some(None)` when present but not an integer (as a string or
/// a number).
fn integer(value: Option<&Value>) -> Option<Option<i64>> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.trim().parse().ok()),
        Value::Number(n) => Some(n.as_i64()),
        _ => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::test_support::{fabric_post, fabric_token, start};
    use crate::sim::SimOptions;

    const CDR: &str = "/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord";

    fn month(text: &str) -> Month {
        text.parse().unwrap()
    }

    fn options(per_month: u64) -> SimOptions {
        SimOptions {
            cdrs_per_month: per_month,
            first_month: month("2025-01"),
            last_month: month("2025-02"),
            ..SimOptions::default()
        }
    }

    /// A served record with its times, durations and codes as numbers, as the truth has
    /// them, and every documented field (null when absent).
    fn normalise(record: &Value, like: &Value) -> Value {
        let mut out = Map::new();
        for (name, want) in like.as_object().unwrap() {
            let got = record.get(name).cloned().unwrap_or(Value::Null);
            let got = match (&got, want) {
                (Value::String(s), Value::Number(_)) => json!(s.parse::<i64>().unwrap()),
                _ => got,
            };
            out.insert(name.clone(), got);
        }
        Value::Object(out)
    }

    /// Reads `startTime..=endTime` with `limit`, page by page, until `result.total`.
    async fn read_window(url: &str, token: &str, start: i64, end: i64, limit: &str) -> Vec<Value> {
        let mut rows = Vec::new();
        loop {
            let body = json!({"startTime": start.to_string(), "endTime": end.to_string(),
                              "offset": rows.len().to_string(), "limit": limit, "taskType": "0"});
            let (status, reply) = fabric_post(url, token, &body).await;
            assert_eq!(status, 200);
            if reply["retCode"] == "1" {
                return rows;
            }
            assert_eq!(reply["retCode"], "0", "{reply}");
            let page = reply["result"]["callInfo"].as_array().unwrap();
            assert!(page.len() <= limit.parse().unwrap());
            rows.extend(page.iter().cloned());
            if rows.len() as u64 >= reply["result"]["total"].as_u64().unwrap() {
                return rows;
            }
        }
    }

    /// Windows of up to 7 days paged by offset read back a month exactly, the records
    /// equal to the truth once their mixed typing is read both ways.
    #[tokio::test]
    async fn windows_read_back_the_truth() {
        let sim = Arc::new(Simulator::new(options(150)));
        let running = start(&sim).await;
        let (url, token) =
            (format!("{}{CDR}", running.base_url), fabric_token(&running.base_url).await);
        let jan = month("2025-01").slice(sim.options().zone);
        let mut got = BTreeMap::new();
        let mut from = jan.begin_ms;
        while from <= jan.end_ms {
            let to = (from + MAX_SPAN_MS).min(jan.end_ms);
            for record in read_window(&url, &token, from, to, "7").await {
                let serial = record["callSerialNo"].as_str().unwrap().to_string();
                got.insert(serial, record);
            }
            from = to + 1;
        }
        let truth = sim.call_detail_records([month("2025-01")]);
        assert_eq!(got.len(), truth.len());
        for (serial, want) in &truth {
            assert_eq!(&normalise(&got[serial], want), want, "{serial}");
        }
        assert_eq!(truth.values().next().unwrap()["startTime"], jan.begin_ms);
        running.shutdown().await;
    }

    /// Spans over 7 days and bad times are retCode 2, bad paging retCode 4, no data retCode
    /// 1 with a message; numbers are accepted where strings are documented.
    #[tokio::test]
    async fn documented_codes() {
        let sim = Arc::new(Simulator::new(options(1000)));
        let running = start(&sim).await;
        let (url, token) =
            (format!("{}{CDR}", running.base_url), fabric_token(&running.base_url).await);
        let begin = month("2025-01").slice(sim.options().zone).begin_ms;
        let ask = |body: Value| {
            let (url, token) = (url.clone(), token.clone());
            async move { fabric_post(&url, &token, &body).await.1 }
        };
        let week =
            json!({"startTime": begin.to_string(), "endTime": (begin + MAX_SPAN_MS).to_string()});
        let reply = ask(week.clone()).await;
        assert_eq!(reply["retCode"], "0");
        assert_eq!(reply["result"]["callInfo"].as_array().unwrap().len(), 100, "default limit");
        let total = reply["result"]["total"].as_u64().unwrap();
        assert!(total > 200, "{total}");
        let numbers =
            json!({"startTime": begin, "endTime": begin + MAX_SPAN_MS, "offset": 0, "limit": 5});
        assert_eq!(ask(numbers).await["result"]["callInfo"].as_array().unwrap().len(), 5);
        let cases = [
            (
                json!({"startTime": begin.to_string(), "endTime": (begin + MAX_SPAN_MS + 1).to_string()}),
                "2",
            ),
            (json!({"startTime": begin.to_string(), "endTime": (begin - 1).to_string()}), "2"),
            (json!({"startTime": "yesterday", "endTime": begin.to_string()}), "2"),
            (json!({"endTime": begin.to_string()}), "2"),
            (json!({"startTime": "0", "endTime": "86400000"}), "1"),
        ];
        for (body, code) in cases {
            let reply = ask(body.clone()).await;
            assert_eq!(reply["retCode"], code, "{body}");
            assert!(reply["retMsg"].as_str().is_some_and(|m| !m.is_empty()));
            assert!(reply.get("result").is_none());
        }
        for (field, value) in
            [("limit", "1001"), ("limit", "0"), ("offset", "-1"), ("limit", "ten")]
        {
            let mut body = week.clone();
            body[field] = json!(value);
            assert_eq!(ask(body).await["retCode"], "4", "{field} = {value}");
        }
        let mut past_end = week.clone();
        past_end["offset"] = json!(total.to_string());
        let reply = ask(past_end).await;
        assert_eq!(
            (reply["retCode"].as_str(), reply["result"]["total"].as_u64()),
            (Some("0"), Some(total))
        );
        assert_eq!(reply["result"]["callInfo"], json!([]));
        let mut ita = week;
        ita["taskType"] = json!("4");
        assert_eq!(ask(ita).await["retCode"], "1");
        running.shutdown().await;
    }

    /// Records arrive typed as the table, as the example, and swapped, decided by the seed;
    /// phone numbers stay strings, leading zeros included; the last records of the last
    /// month are in progress until ended.
    #[tokio::test]
    async fn typing_is_mixed_and_open_calls_end() {
        let sim = Arc::new(Simulator::new(options(200)));
        let running = start(&sim).await;
        let (url, token) =
            (format!("{}{CDR}", running.base_url), fabric_token(&running.base_url).await);
        let feb = month("2025-02").slice(sim.options().zone);
        let (start_ms, end_ms) = (feb.end_ms - MAX_SPAN_MS, feb.end_ms);
        let served = read_window(&url, &token, start_ms, end_ms, "1000").await;
        let any = |f: &dyn Fn(&Value) -> bool| served.iter().any(f);
        assert!(any(&|r| r["startTime"].is_string()) && any(&|r| r["startTime"].is_i64()));
        assert!(any(&|r| r["state"].is_string()) && any(&|r| r["state"].is_i64()));
        assert!(any(&|r| r["talkDuration"].is_string()) && any(&|r| r["talkDuration"].is_i64()));
        assert!(served.iter().all(|r| r["caller"].is_string() && r["called"].is_string()));
        assert!(any(&|r| r["called"].as_str().unwrap().starts_with('0')));
        assert!(served.iter().all(|r| r["callSerialNo"].is_string()));

        let state = |r: &Value| match &r["state"] {
            Value::String(s) => s.parse::<i64>().unwrap(),
            n => n.as_i64().unwrap(),
        };
        let open: Vec<&Value> = served.iter().filter(|r| state(r) < 3).collect();
        assert!(open.len() >= 3, "calls in progress near the end of the data set");
        assert!(open.iter().all(|r| r.get("endTime").is_none() && r.get("releaseTime").is_none()));
        let first_open = open
            .iter()
            .map(|r| normalise(r, &json!({"startTime": 0}))["startTime"].as_i64().unwrap());
        assert!(first_open.min().unwrap() >= end_ms - 1_800_000);
        let ended = sim.end_in_progress_cdrs();
        assert_eq!(ended.len(), open.len());
        let truth = sim.call_detail_records([month("2025-02")]);
        for serial in &ended {
            let row = &truth[serial];
            assert_eq!(row["state"], 3);
            assert!(
                row["endTime"].as_i64() >= row["startTime"].as_i64() && row["reasonCode"].is_i64()
            );
        }
        assert!(sim.end_in_progress_cdrs().is_empty());
        running.shutdown().await;
    }
}
