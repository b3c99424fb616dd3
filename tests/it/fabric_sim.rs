//! The harness's `[sources.fabric]` table against the simulator's API Fabric routes: what
//! an engine reading that table would send reaches data, over real HTTP on loopback.

use std::collections::BTreeMap;

use cecsync::calendar::Month;
use cecsync::engine::progress::LogProgress;
use cecsync::sim::SimOptions;
use serde_json::{json, Value};

use crate::common::{lake_rows, month, Harness, Row};

/// POSTs `body` as JSON to `url` with `headers`; returns the status and the JSON answer.
async fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json; charset=UTF-8")
        .body(serde_json::to_vec(body).unwrap());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    (status, serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap())
}

/// Resolves a `${NAME}` reference the way the configuration does.
fn resolve(value: &str) -> String {
    match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        Some(name) => std::env::var(name).unwrap(),
        None => value.to_string(),
    }
}

/// A token from `token_url` with the table's credentials opens `base_url`'s routes for the
/// table's operator; the answers hold the simulator's ground truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fabric_source_table_reaches_the_simulator() {
    let h =
        Harness::start(SimOptions { appraise_calls_per_month: 12, ..SimOptions::default() }).await;
    let table: toml::Table = toml::from_str(&h.fabric_source_text()).unwrap();
    let fabric = table["sources"]["fabric"].as_table().unwrap();
    let text = |key: &str| resolve(fabric[key].as_str().unwrap());
    let credentials = json!({"app_key": text("app_key"), "app_secret": text("app_secret")});
    let (status, login) =
        post(&text("token_url"), &[("X-Token-Expire", "600")], &credentials).await;
    assert_eq!(status, 200);
    assert_eq!(login["Expires"], "600");
    let bearer = format!("Bearer {}", login["AccessToken"].as_str().unwrap());
    let (key, user) = (text("app_key"), text("user_id"));
    let headers = [("Authorization", bearer.as_str()), ("x-app-key", &key), ("X-UserId", &user)];

    let jan = month("2025-01").slice(h.opts.zone);
    let query = json!({"page": 1, "limit": 100, "status": [0, 1, 2, 3, 9, 31, 32, 33, 34, 35, 36,
                       37, 38, 39, 40], "call_types": [0, 2], "call_from": jan.begin_ms / 1000,
                       "call_to": jan.end_ms / 1000, "upload_from": null, "upload_to": null});
    let url = format!("{}/CCSQM/rest/ccisqm/v1/appraisecall/details", text("base_url"));
    let (status, details) = post(&url, &headers, &query).await;
    assert_eq!(status, 200, "{details}");
    let truth = h.sim.appraise_calls([month("2025-01")]);
    assert_eq!(details["paging"]["total"], truth.len());

    let url = format!("{}/CC-Management/v1/mobileAgent/queryCallDetailRecord", text("base_url"));
    let day = json!({"startTime": jan.begin_ms.to_string(),
                     "endTime": (jan.begin_ms + 86_400_000).to_string()});
    let (status, records) = post(&url, &headers[..1], &day).await;
    assert_eq!((status, records["retCode"].as_str()), (200, Some("0")), "{records}");
    assert_eq!(h.sim.stats().fabric_token_requests, 1);
    h.running.shutdown().await;
}

/// Epoch-seconds fields of an inspection call; the lake holds them as timestamps (ms).
const CALL_SECONDS: [&str; 3] = ["call_time", "upload_time", "create_time"];

/// Asserts that `dataset` holds exactly `truth` (rows by key), every field of the truth
/// equal (after `expected` adapts a truth value to its lake form), each row in the partition
/// of `event_ms(row)`'s month at +08:00.
fn assert_dataset_equals(
    h: &Harness,
    dataset: &str,
    key: &str,
    truth: &BTreeMap<String, Value>,
    expected: impl Fn(&str, &Value) -> Value,
    event_ms: impl Fn(&Row) -> i64,
) {
    let mut seen = BTreeMap::new();
    for (partition, row) in lake_rows(&h.lake(), dataset) {
        let id = row[key].as_str().unwrap().to_string();
        let want = truth.get(&id).unwrap_or_else(|| panic!("{dataset} {id} is not in the API"));
        for (field, value) in want.as_object().unwrap() {
            let got = row.get(field).unwrap_or(&Value::Null);
            assert_eq!(*got, expected(field, value), "{dataset} {id}.{field}");
        }
        let month = Month::containing_ms(event_ms(&row), h.opts.zone).unwrap();
        assert_eq!(month.to_string(), partition, "{dataset} {id} partition");
        assert!(seen.insert(id.clone(), ()).is_none(), "{dataset} {id} appears twice");
    }
    assert_eq!(seen.len(), truth.len(), "{dataset}: the lake holds every row of the API");
}

/// Both API Fabric datasets backfilled from the simulator across a month edge equal its
/// ground truth row by row: inspection calls over several pages of whole groups (each call
/// in the month of its `call_time`, groups straddling the edge included), call records over
/// several pages of 7-day windows; tokens die after 400 ms, so the backfill logs in again
/// as it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fabric_datasets_equal_the_simulator_truth() {
    let mut options = SimOptions {
        appraise_calls_per_month: 400,
        cdrs_per_month: 700,
        fabric_token_lifetime: Some(std::time::Duration::from_millis(400)),
        ..SimOptions::default()
    };
    // Half the answers held back, so that the run outlives several tokens; a token lives
    // long enough for the retry that follows a renewal, even on a busy machine.
    options.faults.delay_rate = 0.5;
    options.faults.delay = std::time::Duration::from_millis(150);
    let h = Harness::start(options).await;
    let engine = h.engine(&h.fabric_source_text());
    let (from, to) = (month("2025-01"), month("2025-02"));
    let calls = engine.backfill("appraise_calls", from, to, false, &LogProgress).await.unwrap();
    let records =
        engine.backfill("call_detail_records", from, to, false, &LogProgress).await.unwrap();
    assert!(calls.pages() > 4, "inspection calls took several pages a month");
    assert!(records.pages() > 10, "call records took several pages");
    let logins = h.sim.stats().fabric_token_requests;
    println!("API Fabric logins during the backfill: {logins}");
    assert!(logins > 1, "tokens expired and were renewed");

    let truth = h.sim.appraise_calls([from, to]);
    assert!(truth.len() > 700, "{} calls", truth.len());
    let seconds_as_ms = |field: &str, value: &Value| match value.as_i64() {
        Some(s) if CALL_SECONDS.contains(&field) => json!(s * 1000),
        _ => value.clone(),
    };
    let call_ms = |row: &Row| row["call_time"].as_i64().unwrap();
    assert_dataset_equals(&h, "appraise_calls", "call_uuid", &truth, seconds_as_ms, call_ms);

    let truth = h.sim.call_detail_records([from, to]);
    assert!(truth.len() > 1300, "{} call records", truth.len());
    let start_ms = |row: &Row| row["startTime"].as_i64().unwrap();
    assert_dataset_equals(
        &h,
        "call_detail_records",
        "callSerialNo",
        &truth,
        |_, v| v.clone(),
        start_ms,
    );
    h.running.shutdown().await;
}
