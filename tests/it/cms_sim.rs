//! The CC-CMS datasets against the built-in simulator, every request C2-signed and checked
//! by it: daily statistics by called and by calling number (one request per day, numbers in
//! chunks of 1000, `queryParam` wrapper or flat), their settlement recomputed upstream and
//! replaced by the next sync, and missed calls paged by offset/limit; the lake read back.

use std::collections::BTreeMap;

use cecsync::engine::progress::LogProgress;
use cecsync::engine::Engine;
use cecsync::sim::SimOptions;
use chrono::{Duration, NaiveDate, Utc};
use serde_json::Value;

use crate::common::{assert_dataset_equals, current_month, engine_for, month, Harness, Row};

/// The day of a daily-statistics row, as the lake holds it, at midnight of +08:00 in ms.
fn day_ms(row: &Row) -> i64 {
    let day = NaiveDate::parse_from_str(row["logDay"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    day.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis() - 8 * 3_600_000
}

/// A truth value in its lake form: the same.
fn same(_: &str, value: &Value) -> Value {
    value.clone()
}

/// A TOML array of strings.
fn toml_strings(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The engine of `h` with its CMS source (`flat`: bodies without the wrapper) and both
/// daily datasets asking for every number and call type of the simulator.
fn daily_engine(h: &Harness, flat: bool) -> Engine {
    let vdns = h.sim.vdns();
    let callees: Vec<String> = vdns.iter().flat_map(|v| h.sim.called_numbers(*v)).collect();
    let callers: Vec<String> = vdns.iter().flat_map(|v| h.sim.caller_numbers(*v)).collect();
    let types: Vec<String> = h.sim.call_types().iter().map(i64::to_string).collect();
    let types = format!("[{}]", types.join(", "));
    let extra = format!(
        "{}[pipelines.inbound_daily_by_callee]\nrequest_body = {{ calleeNos = {}, callTypes = {types} }}\n\
         [pipelines.outbound_daily_by_caller]\nrequest_body = {{ callerNos = {}, callTypes = {types} }}\n",
        h.cms_source_text(flat),
        toml_strings(&callees),
        toml_strings(&callers),
    );
    engine_for(h, &h.config_text(&extra))
}

/// Both daily datasets equal the simulator's truth across a month edge: 1,040 numbers
/// asked in chunks of 1,000 and 40, one day a request; `logDay` is the day asked for, the
/// field the table does not list is kept in `_extra`, and each row is in its day's month.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_statistics_equal_the_truth_across_a_month_edge() {
    let (jan, feb) = (month("2025-01"), month("2025-02"));
    let opts = SimOptions {
        vdns: 2,
        called_numbers: 520,
        call_types: 2,
        first_month: jan,
        last_month: feb,
        ..SimOptions::default()
    };
    let h = Harness::start(opts).await;
    let engine = daily_engine(&h, false);
    let before = h.sim.stats().cms_requests;
    let report =
        engine.backfill("inbound_daily_by_callee", jan, feb, false, &LogProgress).await.unwrap();
    assert_eq!(h.sim.stats().cms_requests - before, 59 * 2, "59 days x 2 chunks of numbers");
    let truth = h.sim.inbound_daily_by_callee([jan, feb]);
    assert_eq!(report.rows(), truth.len() as u64);
    let key = ["vdn", "logDay", "calleeNo", "callType"];
    assert_dataset_equals(&h, "inbound_daily_by_callee", &key, &truth, same, day_ms);

    let flat = daily_engine(&h, true);
    flat.backfill("outbound_daily_by_caller", jan, feb, false, &LogProgress).await.unwrap();
    let truth = h.sim.outbound_daily_by_caller([jan, feb]);
    let key = ["vdn", "logDay", "callerNo", "callType"];
    assert_dataset_equals(&h, "outbound_daily_by_caller", &key, &truth, same, day_ms);
    assert_eq!(h.sim.stats().unauthorized, 0, "every request was signed right");
}

/// A recomputed day among the last three is replaced by the next sync (which reads the
/// last three days again), with its new figures and no duplicate key; days before the
/// lookback are not asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recomputed_settlement_is_replaced_by_the_next_sync() {
    let this_month = current_month();
    let previous = this_month.prev();
    let opts = SimOptions {
        vdns: 1,
        called_numbers: 30,
        call_types: 2,
        first_month: previous,
        last_month: this_month,
        ..SimOptions::default()
    };
    let h = Harness::start(opts).await;
    let engine = daily_engine(&h, false);
    let name = "inbound_daily_by_callee";
    engine.backfill(name, previous, this_month, false, &LogProgress).await.unwrap();
    engine.sync(name, &LogProgress).await.unwrap();

    let yesterday = (Utc::now() + Duration::hours(8)).date_naive() - Duration::days(1);
    h.sim.cms_recompute_day(yesterday);
    let before = h.sim.stats().cms_requests;
    engine.sync(name, &LogProgress).await.unwrap();
    let asked = h.sim.stats().cms_requests - before;
    assert!((4..=5).contains(&asked), "the last 3 days and today, one request each: {asked}");

    let truth = h.sim.inbound_daily_by_callee([previous, this_month]);
    let key = ["vdn", "logDay", "calleeNo", "callType"];
    assert_dataset_equals(&h, name, &key, &truth, same, day_ms);
    let day = yesterday.format("%Y-%m-%d").to_string();
    assert!(truth.keys().any(|k| k.contains(&day)), "the recomputed day has rows");
}

/// Missed calls of one VDN across a month edge, more than one 5,000-row page a month,
/// equal the truth; the VDN asked about is in every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_calls_equal_the_truth_across_a_month_edge() {
    let (jan, feb) = (month("2025-01"), month("2025-02"));
    let opts = SimOptions {
        vdns: 2,
        missed_calls_per_day: 200,
        first_month: jan,
        last_month: feb,
        ..SimOptions::default()
    };
    let h = Harness::start(opts).await;
    let vdn = h.sim.vdns()[1];
    let extra = format!(
        "{}[pipelines.missed_calls]\nrequest_body = {{ vdn = {vdn} }}\n",
        h.cms_source_text(false)
    );
    let engine = engine_for(&h, &h.config_text(&extra));
    let report = engine.backfill("missed_calls", jan, feb, false, &LogProgress).await.unwrap();
    assert_eq!(report.pages(), 4, "two pages of at most 5,000 calls a month");
    let truth: BTreeMap<String, Value> =
        h.sim.missed_calls([jan, feb]).into_iter().filter(|(_, row)| row["vdn"] == vdn).collect();
    assert_eq!(truth.len(), 59 * 200);
    let utc_ms = |field: &str, value: &Value| match (field, value.as_str()) {
        ("waitBegin" | "callEnd", Some(text)) => {
            let at = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap();
            Value::from(at.and_utc().timestamp_millis())
        }
        _ => value.clone(),
    };
    let wait_ms = |row: &Row| row["waitBegin"].as_i64().unwrap();
    assert_dataset_equals(&h, "missed_calls", &["callId"], &truth, utc_ms, wait_ms);
}

/// A wrong SK stops the backfill at its first request with one error that names the AK
/// (never the SK) and the likely causes; nothing is written and nothing retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sk_stops_with_one_clear_error() {
    let jan = month("2025-01");
    let opts = SimOptions { first_month: jan, last_month: jan, ..SimOptions::default() };
    let h = Harness::start(opts).await;
    let wrong = "not-the-sk-0123456789";
    let extra = format!(
        "{}[pipelines.missed_calls]\nrequest_body = {{ vdn = {} }}\n",
        h.cms_source_text(false).replace("${CECSYNC_TEST_C2_SK}", wrong),
        h.sim.vdns()[0]
    );
    let engine = engine_for(&h, &h.config_text(&extra));
    let err = engine.backfill("missed_calls", jan, jan, false, &LogProgress).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&h.opts.c2_ak), "names the AK: {message}");
    assert!(message.contains("clock"), "says the likely causes: {message}");
    assert!(!message.contains(wrong), "never the SK: {message}");
    assert_eq!(h.sim.stats().unauthorized, 1, "refused once, not retried");
    assert!(!h.lake().join("missed_calls").exists(), "nothing written");
}

/// A configuration without the call types, which the platform requires, is refused before
/// any request, naming the key to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_types_are_required() {
    let jan = month("2025-01");
    let opts = SimOptions { first_month: jan, last_month: jan, ..SimOptions::default() };
    let h = Harness::start(opts).await;
    let extra = format!(
        "{}[pipelines.inbound_daily_by_callee]\nrequest_body = {{ calleeNos = [\"40081700000\"] }}\n",
        h.cms_source_text(false)
    );
    let engine = engine_for(&h, &h.config_text(&extra));
    let before = h.sim.stats().cms_requests;
    let err = engine.backfill("inbound_daily_by_callee", jan, jan, false, &LogProgress).await;
    let message = err.unwrap_err().to_string();
    assert!(message.contains("callTypes") && message.contains("request_body"), "{message}");
    assert_eq!(h.sim.stats().cms_requests, before, "nothing was sent");
}
