//! Inspection calls (`appraise_calls`) over real HTTP: nested groups flattened with their
//! group id, `page`/`limit` paging at a server cap below the asked limit with a total that
//! counts calls, month slices on `call_from`/`call_to` in epoch seconds, and an incremental
//! sync on the `upload_from`/`upload_to` cursor whose rows land in the months of their
//! `call_time` — read back from Parquet and compared with the served calls.
//!
//! The API here is a small stand-in served by axum that keeps its calls in memory; the
//! pipeline is the built-in one with the OIFDE body token in place of the API Fabric token
//! (a catalog_dir pipeline of the same name).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::Json;
use cecsync::calendar::Month;
use cecsync::engine::progress::LogProgress;
use cecsync::engine::Engine;
use cecsync::sim::SimOptions;
use cecsync::state::{PartitionCheckpoint, SliceState};
use serde_json::{json, Value};

use crate::common::{engine_for, lake_rows, Harness};

/// Groups served per page at most, whatever `limit` asks.
const SERVER_CAP: usize = 3;
/// 2025-01-31 16:00:00 UTC = 2025-02-01 00:00:00 at +08:00, in epoch seconds.
const FEB_START_S: i64 = 1_738_339_200;

/// The stand-in API's calls (each a JSON object with its `call_group_id`), and every
/// request body it received.
#[derive(Default)]
struct Calls {
    calls: Vec<Value>,
    requests: Vec<Value>,
}

type Shared = Arc<Mutex<Calls>>;

fn call(group: usize, n: usize, call_time: i64, upload_time: i64, status: i64) -> Value {
    let uuid = format!("c-{group}-{n}");
    json!({
        "call_group_id": format!("g-{group}"), "call_uuid": uuid, "call_id": uuid,
        "call_time": call_time, "upload_time": upload_time, "create_time": call_time,
        "call_type": 0, "status": status, "inspect_status": 0, "review_status": -1,
        "complain_status": -1, "duration": 164.22 + n as f64, "file_name": "咨询",
        "staff_id": "1600226440112042215", "staff_name": "张三", "left_channel": "customer",
        "right_channel": "staff", "left_silence_time": 88.46, "right_silence_time": 110.82,
        "left_speech_ratio": 0.4613, "right_speech_ratio": 0.3252, "left_speed": 241.552,
        "right_speed": 165.169, "deal": 1
    })
}

/// Answers `appraisecall/details`: the calls inside the asked call or upload range (epoch
/// seconds) and status/type filters, whole groups, SERVER_CAP groups a page (pages from 1),
/// `paging.total` counting calls. A wrong token is a 401.
async fn details(
    State(shared): State<Shared>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut state = shared.lock().unwrap();
    state.requests.push(body.clone());
    if body["authToken"] != "tok" {
        return (axum::http::StatusCode::UNAUTHORIZED, "check purchased services").into_response();
    }
    let within = |call: &Value, field: &str, from: &str, to: &str| {
        let t = call[field].as_i64().unwrap();
        body[from].as_i64().is_none_or(|f| t >= f) && body[to].as_i64().is_none_or(|e| t <= e)
    };
    let listed = |field: &str, v: &Value| body[field].as_array().unwrap().contains(v);
    let matching: Vec<&Value> = state
        .calls
        .iter()
        .filter(|c| within(c, "call_time", "call_from", "call_to"))
        .filter(|c| within(c, "upload_time", "upload_from", "upload_to"))
        .filter(|c| listed("status", &c["status"]) && listed("call_types", &c["call_type"]))
        .collect();
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for c in &matching {
        let id = c["call_group_id"].as_str().unwrap().to_string();
        let mut inner = (*c).clone();
        inner.as_object_mut().unwrap().remove("call_group_id");
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, calls)) => calls.push(inner),
            None => groups.push((id, vec![inner])),
        }
    }
    let per_page = (body["limit"].as_u64().unwrap() as usize).min(SERVER_CAP);
    let page = body["page"].as_u64().unwrap() as usize;
    let data: Vec<Value> = groups
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(id, calls)| json!({"call_group_id": id, "calls": calls}))
        .collect();
    Json(json!({"data": data, "paging": {"total": matching.len()}})).into_response()
}

/// The lake's `appraise_calls` rows by `call_uuid`: (partition month, row).
fn lake_calls(h: &Harness) -> BTreeMap<String, (String, Value)> {
    lake_rows(&h.lake(), "appraise_calls")
        .into_iter()
        .map(|(month, row)| {
            (row["call_uuid"].as_str().unwrap().to_string(), (month, Value::Object(row)))
        })
        .collect()
}

/// Asserts that the lake holds exactly the served calls, each in the month of its
/// `call_time` at +08:00, every field equal (times as epoch ms).
fn assert_lake_equals(h: &Harness, shared: &Shared) {
    let lake = lake_calls(h);
    let calls = shared.lock().unwrap().calls.clone();
    assert_eq!(lake.len(), calls.len(), "one row per call: {:?}", lake.keys().collect::<Vec<_>>());
    let zone = cecsync::calendar::parse_zone("+08:00").unwrap();
    for c in calls {
        let uuid = c["call_uuid"].as_str().unwrap();
        let (month, row) = lake.get(uuid).unwrap_or_else(|| panic!("{uuid} is in the lake"));
        let want_month =
            Month::containing_ms(c["call_time"].as_i64().unwrap() * 1000, zone).unwrap();
        assert_eq!(*month, want_month.to_string(), "{uuid}");
        for (field, value) in c.as_object().unwrap() {
            let want = match field.as_str() {
                "call_time" | "upload_time" | "create_time" => {
                    json!(value.as_i64().unwrap() * 1000)
                }
                _ => value.clone(),
            };
            assert_eq!(row[field], want, "{uuid}.{field}");
        }
    }
}

/// A catalog_dir holding the built-in pipeline on the OIFDE body token, with `records`
/// (lines of its `[records]` table) added.
fn catalog_dir(h: &Harness, records: &str) -> std::path::PathBuf {
    let dir = h.dir.path().join("catalog");
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    let builtin = include_str!("../../pipelines/appraise_calls.toml")
        .replace("source = \"fabric\"", "source = \"oifde\"")
        .replace("style = \"fabric_token\"", "style = \"body_token\"\nfield = \"authToken\"")
        .replace("event_time = \"call_time\"", &format!("event_time = \"call_time\"\n{records}"));
    std::fs::write(dir.join("pipelines/appraise_calls.toml"), builtin).unwrap();
    dir
}

/// Serves the stand-in API over `shared` on a free loopback port: its base URL and task.
async fn serve(shared: &Shared) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(axum::routing::post(details)).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    (base_url, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

/// An engine whose `appraise_calls` (the catalog_dir pipeline with `records` added) reads
/// the stand-in at `base_url`; `extra` is appended to the configuration.
fn appraise_engine(h: &Harness, base_url: &str, records: &str, extra: &str) -> Engine {
    let text = format!(
        "catalog_dir = \"{}\"\n{}",
        catalog_dir(h, records).display(),
        h.config_text(extra)
    )
    .replace(&h.running.base_url, base_url)
    .replace(&format!("auth_token = \"{}\"", h.opts.auth_token), "auth_token = \"tok\"");
    engine_for(h, &text)
}

/// The checkpoint of the `appraise_calls` partition of `month`.
async fn partition(engine: &Engine, month: Month) -> PartitionCheckpoint {
    let id = engine.partition_id("appraise_calls", month);
    engine.state().partition(&id).await.unwrap().unwrap_or_else(|| panic!("{month} checkpoint"))
}

/// A backfill across the January/February boundary (at +08:00) pages past the server cap
/// and writes each call once in its month; then late uploads and status changes are
/// picked up by the cursor sync and merged into the months of their calls.
#[tokio::test]
async fn appraise_calls_backfill_and_cursor_sync_follow_the_served_calls() {
    let h = Harness::start(SimOptions::default()).await;
    let shared: Shared = Arc::default();
    {
        let mut s = shared.lock().unwrap();
        // 14 groups of 1 to 3 calls: some just before, some just after the month edge.
        for g in 0..14usize {
            for n in 0..=(g % 3) {
                let t = FEB_START_S + (g as i64 - 7) * 3_600 + n as i64;
                s.calls.push(call(g, n, t, t + 60, if g % 4 == 0 { 1 } else { 2 }));
            }
        }
    }
    let (base_url, server) = serve(&shared).await;
    let engine = appraise_engine(&h, &base_url, "", "");
    let (jan, feb) = (Month::new(2025, 1).unwrap(), Month::new(2025, 2).unwrap());
    let report = engine.backfill("appraise_calls", jan, feb, false, &LogProgress).await.unwrap();
    assert_eq!(report.slices.len(), 2);
    assert_eq!(report.rows(), shared.lock().unwrap().calls.len() as u64);
    assert_lake_equals(&h, &shared);
    {
        let s = shared.lock().unwrap();
        let backfill = &s.requests;
        assert!(backfill.iter().all(|b| b["limit"] == 100 && b["upload_from"].is_null()));
        assert!(backfill.iter().any(|b| b["page"] == 2), "pages past the server cap");
        assert!(backfill.iter().any(|b| b["call_from"] == FEB_START_S
            && b["call_to"].as_i64()
                == Some(
                    Month::new(2025, 3)
                        .unwrap()
                        .start(cecsync::calendar::parse_zone("+08:00").unwrap())
                        .timestamp()
                        - 1
                )));
        assert_eq!(
            backfill[0]["status"],
            json!([0, 1, 2, 3, 9, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40])
        );
    }

    // Inspections finish and a January call arrives late, all uploaded now.
    let now_s = chrono::Utc::now().timestamp();
    {
        let mut s = shared.lock().unwrap();
        s.requests.clear();
        for c in s.calls.iter_mut().filter(|c| c["status"] == 1) {
            c["status"] = json!(2);
            c["review_status"] = json!(0);
            c["upload_time"] = json!(now_s - 5);
        }
        s.calls.push(call(3, 7, FEB_START_S - 86_400, now_s - 3, 2));
        s.calls.push(call(40, 0, FEB_START_S + 86_400, now_s - 2, 0));
    }
    let backfilled = [partition(&engine, jan).await, partition(&engine, feb).await];
    let report = engine.sync("appraise_calls", &LogProgress).await.unwrap();
    assert_eq!(
        report.slices.iter().filter_map(|s| s.partition.month()).collect::<Vec<_>>(),
        [jan, feb]
    );
    assert_lake_equals(&h, &shared);
    {
        let s = shared.lock().unwrap();
        assert!(s.requests.iter().all(|b| b["call_from"].is_null() && b["upload_from"].is_i64()));
    }

    // The merge leaves both months whole: still complete, with the whole-month fetch's
    // window and total, the new rows and content; a backfill skips them.
    for (before, month) in backfilled.into_iter().zip([jan, feb]) {
        let after = partition(&engine, month).await;
        assert_eq!(after.state, SliceState::Complete, "{month}");
        assert_eq!(
            (after.window_begin_ms, after.window_end_ms, after.api_total),
            (before.window_begin_ms, before.window_end_ms, before.api_total),
            "{month}"
        );
        assert_ne!(after.content_sha256, before.content_sha256, "{month} was rewritten");
    }
    let again = engine.backfill("appraise_calls", jan, feb, false, &LogProgress).await.unwrap();
    assert_eq!((again.slices.len(), again.skipped), (0, vec![jan, feb]));
    let verify = cecsync::engine::report::verify(&engine).await.unwrap();
    assert!(verify.findings.is_empty(), "{:?}", verify.findings);
    server.abort();
}

/// A pipeline with a cursor and an open condition (`status` below 2: not inspected yet)
/// remembers the event time of the oldest open call of its window and starts the next
/// window no later, so a call whose status changes without a new upload time is read
/// again; merges keep an open month open and make a month without a checkpoint partial.
#[tokio::test]
async fn cursor_sync_reads_open_calls_again_until_they_close() {
    let h = Harness::start(SimOptions::default()).await;
    let shared: Shared = Arc::default();
    let zone = cecsync::calendar::parse_zone("+08:00").unwrap();
    let now_s = chrono::Utc::now().timestamp();
    let current = Month::containing_ms(now_s * 1000, zone).unwrap();
    // Inside the current month and the first sync's window (from the month's start).
    let recent = (now_s - 3 * 3_600).max(current.start(zone).timestamp());
    // Called at least a month before, uploaded only now and not inspected yet.
    let open_call_time = recent - 40 * 86_400;
    let old = Month::containing_ms(open_call_time * 1000, zone).unwrap();
    assert!(old < current);
    {
        let mut s = shared.lock().unwrap();
        s.calls.push(call(1, 0, recent, recent + 1, 2));
        s.calls.push(call(2, 0, open_call_time, recent + 2, 1));
    }
    let (base_url, server) = serve(&shared).await;
    let open_while = "open_while = { field = \"status\", below = 2 }";
    let extra = "[pipelines.appraise_calls]\nlookback_hours = 0\n";
    let engine = appraise_engine(&h, &base_url, open_while, extra);
    let open_since = || async {
        let cp = engine.state().pipeline("appraise_calls", &h.opts.tenant_id).await.unwrap();
        cp.unwrap().open_since_ms
    };

    engine.backfill("appraise_calls", current, current, false, &LogProgress).await.unwrap();
    assert_eq!(partition(&engine, current).await.state, SliceState::Open);
    let report = engine.sync("appraise_calls", &LogProgress).await.unwrap();
    assert_eq!(
        report.slices.iter().filter_map(|s| s.partition.month()).collect::<Vec<_>>(),
        [old, current]
    );
    assert_eq!(report.oldest_open_ms(), Some(open_call_time * 1000));
    assert_eq!(open_since().await, Some(open_call_time * 1000), "the open call is remembered");
    assert_lake_equals(&h, &shared);
    assert_eq!(partition(&engine, current).await.state, SliceState::Open);
    assert_eq!(partition(&engine, old).await.state, SliceState::Partial);

    // The call is inspected; its upload time stays before the last sync.
    let seen = {
        let mut s = shared.lock().unwrap();
        s.calls[1]["status"] = json!(2);
        s.requests.len()
    };
    engine.sync("appraise_calls", &LogProgress).await.unwrap();
    {
        let s = shared.lock().unwrap();
        let from = s.requests[seen..].iter().map(|b| b["upload_from"].as_i64().unwrap()).min();
        assert_eq!(from, Some(open_call_time), "the window starts at the open call's time");
    }
    assert_lake_equals(&h, &shared);
    assert_eq!(open_since().await, None, "no call is open any more");
    assert_eq!(partition(&engine, current).await.state, SliceState::Open);
    assert_eq!(partition(&engine, old).await.state, SliceState::Partial);
    server.abort();
}
