//! One request per day and per chunk of a configured list, as the CMS daily statistics
//! want: a catalog_dir pipeline with `max_window_days = 1`, days written `yyyy-MM-dd`, the
//! called numbers from the configuration's `request_body` sent in chunks inside a
//! `queryParam` object (or flat, as a source may ask), no paging, and
//! the records read from `resultDesc` or, when absent, the legacy `resultDatas` — against a
//! stand-in served by axum, the lake read back.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::Json;
use cecsync::engine::progress::LogProgress;
use cecsync::sim::SimOptions;
use chrono::{NaiveDate, TimeZone};
use serde_json::{json, Value};

use crate::common::{engine_for, lake_rows, month, serve_stand_in, Harness};

const PIPELINE: &str = r#"
name = "daily_test"
description = "Daily figures per called number"
source = "oifde"
[request]
path = "/rest/cmsapp/v1/callinday/querymanualindexesbycondition"
body = { callTypes = [0] }
chunk = { field = "calleeNos", size = 2 }
wrap_in = "queryParam"
[auth]
style = "body_token"
field = "authToken"
[paging]
style = "none"
[slicing]
style = "calendar_month"
begin_field = "beginLogDay"
end_field = "endLogDay"
time_format = "date"
max_window_days = 1
[records]
path = "resultDesc | resultDatas"
primary_key = ["calleeNo", "logDay"]
event_time = "logTime"
"#;

const SCHEMA: &str = r#"{"dataset": "daily_test", "description": "x", "fields": [
  {"name": "calleeNo", "type": "utf8", "nullable": false, "doc": "called number"},
  {"name": "logDay", "type": "utf8", "nullable": false, "doc": "the day asked for"},
  {"name": "logTime", "type": "timestamp_ms", "nullable": false, "doc": "its start"},
  {"name": "calls", "type": "int64", "nullable": true, "doc": "calls"}]}"#;

/// Answers one day for each called number of the request: `resultDesc` on even days,
/// only the legacy `resultDatas` on odd ones; keeps every body.
async fn daily(
    State(bodies): State<Arc<Mutex<Vec<Value>>>>,
    Json(sent): Json<Value>,
) -> Json<Value> {
    bodies.lock().unwrap().push(sent.clone());
    let body = sent.get("queryParam").unwrap_or(&sent);
    let day = body["beginLogDay"].as_str().unwrap().to_string();
    let date = NaiveDate::parse_from_str(&day, "%Y-%m-%d").unwrap();
    let zone = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let start = zone.from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap()).unwrap();
    let rows: Vec<Value> = body["calleeNos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| json!({"calleeNo": n, "logDay": day, "logTime": start.timestamp_millis(), "calls": 3}))
        .collect();
    let array = if date.format("%d").to_string().parse::<u32>().unwrap() % 2 == 0 {
        "resultDesc"
    } else {
        "resultDatas"
    };
    Json(json!({"result": "0", "resultCode": "0100000", array: rows}))
}

/// January asked day by day (31 days x 2 chunks of the 3 configured numbers), each row in
/// January with its number's leading zero; a configuration without the numbers is refused
/// naming the key to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_and_chunks_are_asked_one_by_one() {
    let h = Harness::start(SimOptions::default()).await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new().fallback(axum::routing::post(daily)).with_state(bodies.clone());
    let base_url = serve_stand_in(app).await;
    let catalog = h.catalog_line("daily_test", PIPELINE, SCHEMA);
    let engine = |extra: &str| {
        let text =
            format!("{catalog}{}", h.config_text(extra)).replace(&h.running.base_url, &base_url);
        engine_for(&h, &text)
    };
    let jan = month("2025-01");

    let numbers =
        "[pipelines.daily_test]\nrequest_body = { calleeNos = [\"0755\", \"0756\", \"0757\"] }\n";
    let report =
        engine(numbers).backfill("daily_test", jan, jan, false, &LogProgress).await.unwrap();
    assert_eq!(report.rows(), 93);
    let seen = bodies.lock().unwrap().clone();
    assert_eq!(seen.len(), 62, "31 days x 2 chunks");
    let seen: Vec<Value> = seen.iter().map(|b| b["queryParam"].clone()).collect();
    for body in &seen {
        assert_eq!(body["beginLogDay"], body["endLogDay"], "one day a request: {body}");
        assert_eq!(body["callTypes"], json!([0]));
    }
    let first_day: Vec<&Value> = seen.iter().filter(|b| b["beginLogDay"] == "2025-01-01").collect();
    let mut chunks: Vec<Value> = first_day.iter().map(|b| b["calleeNos"].clone()).collect();
    chunks.sort_by_key(|c| c.to_string());
    assert_eq!(chunks, [json!(["0755", "0756"]), json!(["0757"])]);
    let rows = lake_rows(&h.lake(), "daily_test");
    assert_eq!(rows.len(), 93);
    assert!(rows.iter().all(|(m, _)| m == "2025-01"));
    assert!(rows.iter().any(|(_, r)| r["calleeNo"] == "0755" && r["logDay"] == "2025-01-31"));

    bodies.lock().unwrap().clear();
    let text = format!("{catalog}{}", h.config_text(numbers))
        .replace(&h.running.base_url, &base_url)
        .replace("[sources.oifde.retry]", "flat_body = true\n[sources.oifde.retry]");
    engine_for(&h, &text).backfill("daily_test", jan, jan, true, &LogProgress).await.unwrap();
    let sent = bodies.lock().unwrap().clone();
    assert_eq!(sent.len(), 62, "the same requests");
    assert!(sent.iter().all(|b| b.get("queryParam").is_none() && b["calleeNos"].is_array()));

    let err = engine("").backfill("daily_test", jan, jan, true, &LogProgress).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("request_body") && message.contains("calleeNos"), "{message}");
}

const OVERLAP_PIPELINE: &str = r#"
name = "overlap_test"
description = "Rows by day, asked for as [beginTime, endTime) windows"
source = "oifde"
[request]
path = "/results"
[auth]
style = "body_token"
field = "authToken"
[paging]
style = "none"
[slicing]
style = "calendar_month"
begin_field = "beginTime"
end_field = "endTime"
time_format = "date"
end_exclusive = true
max_window_days = 10
[records]
path = "data"
primary_key = ["id"]
event_time = "day"
"#;

const OVERLAP_SCHEMA: &str = r#"{"dataset": "overlap_test", "description": "x", "fields": [
  {"name": "id", "type": "utf8", "nullable": false, "doc": "one row a day"},
  {"name": "day", "type": "date", "nullable": false, "doc": "its day"}]}"#;

/// Answers one row per day from `beginTime` to `endTime`, both included: the other reading
/// of an end date, under which consecutive `[begin, end)` windows share a day.
async fn inclusive_days(Json(sent): Json<Value>) -> Json<Value> {
    let day = |field: &str| NaiveDate::parse_from_str(sent[field].as_str().unwrap(), "%Y-%m-%d");
    let (begin, end) = (day("beginTime").unwrap(), day("endTime").unwrap());
    let rows: Vec<Value> = begin
        .iter_days()
        .take_while(|d| *d <= end)
        .map(|d| json!({"id": d.to_string(), "day": d.to_string()}))
        .collect();
    Json(json!({"data": rows}))
}

/// When the platform includes the end date, windows share their boundary days and the last
/// one reaches into the next month: each window still reconciles with its own total, the
/// month holds each day once, and the next month's day is set aside as outside the month.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_sharing_a_day_still_add_up() {
    let h = Harness::start(SimOptions::default()).await;
    let app = axum::Router::new().fallback(axum::routing::post(inclusive_days));
    let base_url = serve_stand_in(app).await;
    let catalog = h.catalog_line("overlap_test", OVERLAP_PIPELINE, OVERLAP_SCHEMA);
    let text = format!("{catalog}{}", h.config_text("")).replace(&h.running.base_url, &base_url);
    let jan = month("2025-01");
    let report = engine_for(&h, &text)
        .backfill("overlap_test", jan, jan, false, &LogProgress)
        .await
        .unwrap();
    assert_eq!((report.rows(), report.rejects()), (31, 1), "31 days, February 1st set aside");
    let rows = lake_rows(&h.lake(), "overlap_test");
    let mut days: Vec<String> =
        rows.iter().map(|(_, r)| r["day"].as_str().unwrap().to_string()).collect();
    days.sort();
    days.dedup();
    assert_eq!((rows.len(), days.len()), (31, 31));
}
