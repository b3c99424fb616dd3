//! The harness's `[sources.fabric]` table against the simulator's API Fabric routes: what
//! an engine reading that table would send reaches data, over real HTTP on loopback.

use std::collections::{BTreeMap, BTreeSet};

use cecsync::calendar::Month;
use cecsync::engine::progress::LogProgress;
use cecsync::sim::SimOptions;
use serde_json::{json, Value};

use crate::common::{assert_dataset_equals, lake_rows, month, Harness, Row};

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

/// A truth value of the inspection datasets in its lake form: epoch seconds as ms.
fn seconds_as_ms(field: &str, value: &Value) -> Value {
    match value.as_i64() {
        Some(s) if CALL_SECONDS.contains(&field) => json!(s * 1000),
        _ => value.clone(),
    }
}

/// The event time of an inspection row (its call's `call_time`), epoch ms.
fn call_ms(row: &Row) -> i64 {
    row["call_time"].as_i64().unwrap()
}

/// Simulator options with `calls` inspection calls a month in `first..=last`.
fn inspection_options(calls: u64, first: Month, last: Month) -> SimOptions {
    SimOptions {
        appraise_calls_per_month: calls,
        first_month: first,
        last_month: last,
        ..SimOptions::default()
    }
}

/// The calls of `months` in the lake equal the simulator's ground truth.
fn assert_calls_equal(h: &Harness, months: &[Month]) {
    let truth = h.sim.appraise_calls(months.iter().copied());
    assert_dataset_equals(h, "appraise_calls", &["call_uuid"], &truth, seconds_as_ms, call_ms);
}

/// The segments and emotions of `months` in the lake equal the simulator's ground truth.
fn assert_fan_out_equals(h: &Harness, months: &[Month]) {
    let segments = h.sim.appraise_segments(months.iter().copied());
    assert!(!segments.is_empty(), "inspected calls have segments");
    let key = ["call_uuid", "segment_id"];
    assert_dataset_equals(h, "appraise_segments", &key, &segments, seconds_as_ms, call_ms);
    let emotions = h.sim.appraise_emotions(months.iter().copied());
    assert!(!emotions.is_empty(), "inspected calls have emotion scores");
    let key = ["call_uuid", "channel", "type"];
    assert_dataset_equals(h, "appraise_emotions", &key, &emotions, seconds_as_ms, call_ms);
}

/// Both API Fabric datasets backfilled from the simulator across a month edge equal its
/// ground truth row by row: inspection calls over several pages of whole groups (each call
/// in the month of its `call_time`, groups straddling the edge included), call records over
/// several pages of 7-day windows; tokens die after a second, so the backfill logs in again
/// as it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fabric_datasets_equal_the_simulator_truth() {
    let mut options = SimOptions {
        appraise_calls_per_month: 400,
        cdrs_per_month: 700,
        fabric_token_lifetime: Some(std::time::Duration::from_millis(1000)),
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

    let calls = h.sim.appraise_calls([from, to]).len();
    assert!(calls > 700, "{calls} calls");
    assert_calls_equal(&h, &[from, to]);
    assert_fan_out_equals(&h, &[from, to]);

    let truth = h.sim.call_detail_records([from, to]);
    assert!(truth.len() > 1300, "{} call records", truth.len());
    let start_ms = |row: &Row| row["startTime"].as_i64().unwrap();
    assert_dataset_equals(
        &h,
        "call_detail_records",
        &["callSerialNo"],
        &truth,
        |_, v| v.clone(),
        start_ms,
    );
    h.running.shutdown().await;
}

/// The call_uuids of the inspected calls (status 2) of `months`, as the simulator has them.
fn inspected(h: &Harness, months: &[Month]) -> BTreeSet<String> {
    let calls = h.sim.appraise_calls(months.iter().copied());
    calls.into_iter().filter(|(_, call)| call["status"] == 2).map(|(uuid, _)| uuid).collect()
}

/// The calls asked for with `appraisecall/detail` since `before` (a copy of the
/// simulator's counts), each asked once.
fn asked_since(h: &Harness, before: &BTreeMap<String, u64>) -> BTreeSet<String> {
    let now = h.sim.appraise_detail_requests();
    let mut asked = BTreeSet::new();
    for (uuid, count) in now {
        let new = count - before.get(&uuid).copied().unwrap_or(0);
        assert!(new <= 1, "{uuid} was asked for {new} times in one run");
        if new == 1 {
            asked.insert(uuid);
        }
    }
    asked
}

/// Details are asked for once per inspected call by a backfill; a refresh asks again for
/// exactly the calls whose inspection finished or whose review changed (and nothing when
/// nothing changed); an incremental sync asks for exactly the late uploads that are
/// inspected. After each run, segments and emotions equal the simulator's ground truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn details_are_asked_for_new_or_changed_inspected_calls_only() {
    let (jan, feb) = (month("2025-01"), month("2025-02"));
    let h = Harness::start(inspection_options(80, jan, feb)).await;
    let engine = h.engine(&h.fabric_source_text());
    engine.backfill("appraise_calls", jan, feb, false, &LogProgress).await.unwrap();
    let asked = asked_since(&h, &BTreeMap::new());
    assert_eq!(asked, inspected(&h, &[jan, feb]), "every inspected call, and only those");
    assert_fan_out_equals(&h, &[jan, feb]);

    let before = h.sim.appraise_detail_requests();
    let changed: BTreeSet<String> = h.sim.appraise_advance(jan, 4, 4).into_iter().collect();
    assert!(changed.len() >= 4, "{changed:?}");
    engine.backfill("appraise_calls", jan, jan, true, &LogProgress).await.unwrap();
    assert_eq!(asked_since(&h, &before), changed, "exactly the changed calls");
    assert_fan_out_equals(&h, &[jan, feb]);

    let before = h.sim.appraise_detail_requests();
    engine.backfill("appraise_calls", jan, feb, true, &LogProgress).await.unwrap();
    assert_eq!(asked_since(&h, &before), BTreeSet::new(), "nothing changed, nothing asked");

    let before = h.sim.appraise_detail_requests();
    let uploaded = chrono::Utc::now().timestamp() - 3600;
    let late: BTreeSet<String> =
        h.sim.appraise_add_late_uploads(jan, 12, uploaded).into_iter().collect();
    engine.sync("appraise_calls", &LogProgress).await.unwrap();
    let late_inspected: BTreeSet<String> =
        late.intersection(&inspected(&h, &[jan])).cloned().collect();
    assert!(!late_inspected.is_empty(), "some late uploads are inspected: {late:?}");
    assert_eq!(asked_since(&h, &before), late_inspected, "exactly the inspected late uploads");
    assert_fan_out_equals(&h, &[jan, feb]);
    h.running.shutdown().await;
}

/// A fan-out dataset runs within its parent's slices, not on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_dataset_is_run_through_its_parent() {
    let h = Harness::start(SimOptions::default()).await;
    let engine = h.engine(&h.fabric_source_text());
    let jan = month("2025-01");
    let err = engine.backfill("appraise_segments", jan, jan, false, &LogProgress).await;
    let message = err.unwrap_err().to_string();
    assert!(message.contains("appraise_calls"), "{message}");
    let standalone = engine.enabled_pipelines();
    assert!(standalone.contains(&"appraise_calls".to_string()), "{standalone:?}");
    assert!(!standalone.iter().any(|p| p.starts_with("appraise_segments")), "{standalone:?}");
    h.running.shutdown().await;
}

/// A backfill of the real binary killed while the fan-out datasets and their parent are
/// committed never shows an inspected call without its segments and emotions, and the
/// next run ends with exactly the simulator's rows in all three datasets.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_details_and_calls_never_shows_calls_without_details() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    use cecsync::sink::crash::{self, CRASH_AT_VARIABLE};

    let jan = month("2025-01");
    // The first child's checkpoint, both children committed, the parent's data object.
    for (point, hit) in
        [(crash::AFTER_CHECKPOINT, 1), (crash::CHILDREN_COMMITTED, 1), (crash::AFTER_DATA, 3)]
    {
        let h = Harness::start(inspection_options(60, jan, jan)).await;
        let config = h.config_file(&h.fabric_source_text());
        let backfill = |crash_at: Option<String>| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_cecsync"));
            cmd.args(["backfill", "--config"])
                .arg(&config)
                .args(["--pipeline", "appraise_calls", "--from", "2025-01", "--to", "2025-01"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(at) = crash_at {
                cmd.env(CRASH_AT_VARIABLE, at);
            }
            cmd.status().unwrap()
        };
        let killed = backfill(Some(format!("{point}:{hit}")));
        assert!(killed.signal().is_some(), "{point}:{hit} was reached: {killed:?}");
        let segments: BTreeSet<String> = lake_rows(&h.lake(), "appraise_segments")
            .into_iter()
            .map(|(_, row)| row["call_uuid"].as_str().unwrap().to_string())
            .collect();
        let emotions: BTreeSet<String> = lake_rows(&h.lake(), "appraise_emotions")
            .into_iter()
            .map(|(_, row)| row["call_uuid"].as_str().unwrap().to_string())
            .collect();
        let segments_truth = h.sim.appraise_segments([jan]);
        let with_segments: BTreeSet<&str> =
            segments_truth.values().map(|s| s["call_uuid"].as_str().unwrap()).collect();
        let visible_calls = lake_rows(&h.lake(), "appraise_calls");
        for (_, call) in &visible_calls {
            let uuid = call["call_uuid"].as_str().unwrap();
            if with_segments.contains(uuid) {
                assert!(
                    segments.contains(uuid),
                    "{point}: call {uuid} is visible without segments"
                );
                assert!(
                    emotions.contains(uuid),
                    "{point}: call {uuid} is visible without emotions"
                );
            }
        }
        if point != crash::AFTER_DATA {
            assert!(visible_calls.is_empty(), "{point}: the calls are not committed yet");
        }
        assert!(backfill(None).success(), "the next run after {point} succeeds");
        assert_calls_equal(&h, &[jan]);
        assert_fan_out_equals(&h, &[jan]);
        h.running.shutdown().await;
    }
}

/// A fan-out dataset enabled after its parent's month was complete is filled by the next
/// backfill without `--refresh`: the month is not skipped, and every inspected call is
/// asked for once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_dataset_enabled_later_is_filled_by_the_next_backfill() {
    let jan = month("2025-01");
    let h = Harness::start(inspection_options(50, jan, jan)).await;
    let without =
        format!("{}[pipelines.appraise_emotions]\nenabled = false\n", h.fabric_source_text());
    let engine = h.engine(&without);
    engine.backfill("appraise_calls", jan, jan, false, &LogProgress).await.unwrap();
    assert!(lake_rows(&h.lake(), "appraise_emotions").is_empty(), "emotions were off");
    assert!(!lake_rows(&h.lake(), "appraise_segments").is_empty());

    let before = h.sim.appraise_detail_requests();
    let engine = h.engine(&h.fabric_source_text());
    let report = engine.backfill("appraise_calls", jan, jan, false, &LogProgress).await.unwrap();
    assert!(report.skipped.is_empty(), "the month is fetched again for its emotions");
    assert_eq!(asked_since(&h, &before), inspected(&h, &[jan]), "every inspected call");
    assert_fan_out_equals(&h, &[jan]);
    h.running.shutdown().await;
}
