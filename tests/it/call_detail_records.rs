//! call_detail_records end to end: API Fabric tokens, 7-day windows, offset/limit paging,
//! retCode "1" windows and the re-reading of calls in progress, against a stand-in of the
//! token endpoint and of `queryCallDetailRecord` on loopback that follows cec-api.md 1.3 C1
//! and 2.13 (every request value a string, at most 7 days a request, at most 100 rows a
//! page, retCode "1" when a range holds no call, values sent as numbers or as strings).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use cecsync::calendar::{parse_zone, Month};
use cecsync::engine::progress::LogProgress;
use cecsync::engine::Engine;
use cecsync::sim::SimOptions;
use serde_json::{json, Value};

use crate::common::{current_month, engine_for, lake_rows, month, Harness};

const DATASET: &str = "call_detail_records";
const APP_KEY: &str = "cdr-app-key";
const APP_SECRET: &str = "cdr-app-secret";
const USER_ID: &str = "1611917095665261978";
const DAY_MS: i64 = 86_400_000;
/// The most rows the stand-in returns a page.
const MAX_LIMIT: usize = 100;

/// What the stand-in holds and saw.
#[derive(Default)]
struct Api {
    /// The calls, as the lake must hold them (numbers as numbers, text as text).
    calls: BTreeMap<String, Value>,
    /// Business requests each issued token still serves (a token "expires" after them).
    tokens: HashMap<String, u32>,
    /// Business requests a new token serves.
    token_uses: u32,
    logins: u32,
    refused_tokens: u32,
    /// Bodies of the answered queries, and the retCode of each answer.
    queries: Vec<(Value, String)>,
}

type Shared = Arc<Mutex<Api>>;

async fn token_by_ak_sk(
    State(api): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut api = api.lock().unwrap();
    if body["app_key"] != APP_KEY || body["app_secret"] != APP_SECRET {
        let refusal =
            json!({"error_code": "APIGW.0301", "error_msg": "Incorrect app authentication"});
        return (StatusCode::UNAUTHORIZED, Json(refusal));
    }
    let expire = headers.get("x-token-expire").and_then(|v| v.to_str().ok());
    let Some(expire) =
        expire.and_then(|v| v.parse::<u64>().ok()).filter(|s| (1..=3600).contains(s))
    else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error_msg": "X-Token-Expire"})));
    };
    api.logins += 1;
    let token = format!("token-{}", api.logins);
    let uses = api.token_uses;
    api.tokens.insert(token.clone(), uses);
    let answer = json!({"AccessToken": token, "ApplyType": "Bearer", "CreateTime": "1545650171",
                        "Expires": expire.to_string(), "AppKey": APP_KEY, "UserID": "Anonymous"});
    (StatusCode::OK, Json(answer))
}

/// A call as the interface sends it: the reference's example sends numbers where its table
/// says strings, so every other call comes with its numbers as strings.
fn wire(call: &Value, as_strings: bool) -> Value {
    let mut out = call.clone();
    if as_strings {
        for value in out.as_object_mut().unwrap().values_mut() {
            if value.is_number() {
                *value = Value::String(value.to_string());
            }
        }
    }
    out
}

async fn query_call_detail_record(
    State(api): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut api = api.lock().unwrap();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token = header("authorization").strip_prefix("Bearer ").unwrap_or_default().to_string();
    let live = api.tokens.get_mut(&token).filter(|uses| **uses > 0);
    let Some(uses) = live.filter(|_| header("x-app-key") == APP_KEY) else {
        api.refused_tokens += 1;
        let expired = json!({"error_code": "APIGW.0307", "error_msg": "The token is expired"});
        return (StatusCode::UNAUTHORIZED, Json(expired));
    };
    *uses -= 1;
    let text = |field: &str| body[field].as_str().and_then(|v| v.parse::<i64>().ok());
    let reply = match (text("startTime"), text("endTime"), text("offset"), text("limit")) {
        (Some(start), Some(end), _, _) if end < start || end - start > 7 * DAY_MS => {
            json!({"retCode": "2", "retMsg": "startTime/endTime invalid or more than 7 days apart"})
        }
        (Some(start), Some(end), Some(offset), Some(limit)) if offset >= 0 && limit > 0 => {
            let in_range: Vec<&Value> = api
                .calls
                .values()
                .filter(|c| (start..=end).contains(&c["startTime"].as_i64().unwrap()))
                .collect();
            if in_range.is_empty() {
                json!({"retCode": "1", "retMsg": "no data"})
            } else {
                let page: Vec<Value> = in_range
                    .iter()
                    .enumerate()
                    .skip(offset as usize)
                    .take((limit as usize).min(MAX_LIMIT))
                    .map(|(i, c)| wire(c, i % 2 == 1))
                    .collect();
                json!({"retCode": "0", "retMsg": "Query call detail record successfully",
                       "result": {"total": in_range.len(), "callInfo": page}})
            }
        }
        (None, _, _, _) | (_, None, _, _) => {
            json!({"retCode": "2", "retMsg": "startTime or endTime format error"})
        }
        _ => json!({"retCode": "4", "retMsg": "limit or offset invalid"}),
    };
    let code = reply["retCode"].as_str().unwrap().to_string();
    api.queries.push((body, code));
    (StatusCode::OK, Json(reply))
}

/// The stand-in, serving on loopback until the test ends; `base_url` is its `/apiaccess`.
struct CdrApi {
    api: Shared,
    base_url: String,
    task: tokio::task::JoinHandle<()>,
}

impl CdrApi {
    async fn start(calls: Vec<Value>, token_uses: u32) -> Self {
        let calls = calls.into_iter().map(|c| (c["callSerialNo"].as_str().unwrap().into(), c));
        let api =
            Arc::new(Mutex::new(Api { calls: calls.collect(), token_uses, ..Api::default() }));
        let app = Router::new()
            .route("/apigovernance/api/oauth/tokenByAkSk", post(token_by_ak_sk))
            .route(
                "/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord",
                post(query_call_detail_record),
            )
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/apiaccess", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { api, base_url, task }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Api) -> T) -> T {
        f(&mut self.api.lock().unwrap())
    }
}

impl Drop for CdrApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An engine on `h`'s lake whose `fabric` source is the stand-in.
fn engine(h: &Harness, api: &CdrApi, extra: &str) -> Engine {
    let text = h.config_text(&format!(
        "[sources.fabric]\nbase_url = \"{}\"\napp_key = \"{APP_KEY}\"\napp_secret = \"{APP_SECRET}\"\n\
         user_id = \"{USER_ID}\"\ntoken_lifetime_secs = 600\n\
         [sources.fabric.retry]\ninitial_backoff_ms = 10\n{extra}",
        api.base_url
    ));
    engine_for(h, &text)
}

/// A call of the reference's shape starting at `start_ms`.
fn call(serial: u64, start_ms: i64, state: i64) -> Value {
    let ended = state == 3;
    let end = start_ms + 30_000;
    json!({
        "callSerialNo": format!("10370583964713{serial:05}"),
        "caller": format!("8888{:04}", serial % 10_000),
        "called": format!("0{}", 88_889_060 + serial),
        "startTime": start_ms,
        "endTime": if ended { json!(end) } else { Value::Null },
        "state": state,
        "reasonCode": serial % 7,
        "callData": format!("客户回访 #{serial}"),
        "callerPresent": "640003",
        "alertingTime": start_ms + 2_000,
        "talkingTime": start_ms + 3_000,
        "releaseTime": if ended { json!(end) } else { Value::Null },
        "talkDuration": if ended { json!(27) } else { Value::Null },
        "agentAlertingTime": start_ms + 1_000,
        "agentTalkingTime": start_ms + 2_000,
        "agentReleaseTime": if ended { json!(end) } else { Value::Null },
        "agentTalkDuration": if ended { json!(28) } else { Value::Null },
        "agentPresent": "640060",
    })
}

/// Asserts that the lake holds exactly `calls`, each in the partition of its start month.
fn assert_lake_holds(h: &Harness, calls: &BTreeMap<String, Value>) {
    let zone = parse_zone("+08:00").unwrap();
    let mut seen = BTreeMap::new();
    for (partition, row) in lake_rows(&h.lake(), DATASET) {
        let serial = row["callSerialNo"].as_str().unwrap().to_string();
        let want =
            calls.get(&serial).unwrap_or_else(|| panic!("{serial} is not a call of the API"));
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(row.get(field).unwrap_or(&Value::Null), value, "{serial} {field}");
        }
        assert_eq!(row["_extra"], Value::Null, "{serial}: every field is declared");
        let start = row["startTime"].as_i64().unwrap();
        assert_eq!(Month::containing_ms(start, zone).unwrap().to_string(), partition, "{serial}");
        assert!(seen.insert(serial.clone(), ()).is_none(), "{serial} appears twice");
    }
    assert_eq!(seen.len(), calls.len(), "the lake holds every call");
}

/// A backfill of January and February 2025 equals the API's calls row by row: the first
/// January week needs three pages, calls sit on both sides of the month edge, a February
/// week without calls answers retCode "1", and tokens stop being accepted after a few
/// requests, so the backfill logs in again (once per refusal) and goes on.
#[tokio::test]
async fn backfill_across_a_month_edge_with_expiring_tokens() {
    let zone = parse_zone("+08:00").unwrap();
    let jan = month("2025-01").start(zone).timestamp_millis();
    let feb = month("2025-02").start(zone).timestamp_millis();
    let mut calls = Vec::new();
    // 230 calls in the first week of January: three pages of one window.
    calls.extend((0..230).map(|i| call(i, jan + 3_600_000 + i as i64 * 1_800_000, 3)));
    // A few calls in the rest of January, the last half a second before February.
    calls.extend((230..240).map(|i| call(i, jan + 8 * DAY_MS + (i as i64 - 230) * DAY_MS * 2, 3)));
    calls.push(call(240, feb - 500, 3));
    calls.push(call(241, feb, 2));
    calls.push(call(242, feb + 1, 0));
    // February: calls in weeks 1, 3 and 4; the second week (from Feb 8) has none.
    calls.extend((243..300).map(|i| {
        let week = [0, 14, 21][(i % 3) as usize];
        call(i, feb + week * DAY_MS + (i as i64) * 60_000, (i % 4) as i64)
    }));
    let api = CdrApi::start(calls.clone(), 4).await;
    let h = Harness::start(SimOptions::default()).await;
    let report = engine(&h, &api, "")
        .backfill(DATASET, month("2025-01"), month("2025-02"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!(report.rows(), calls.len() as u64);
    let truth = calls.into_iter().map(|c| (c["callSerialNo"].as_str().unwrap().into(), c));
    assert_lake_holds(&h, &truth.collect());

    api.with(|api| {
        // January: windows from the 1st, 8th, 15th, 22nd and 29th; February: 4 weeks.
        let windows: Vec<_> = api.queries.iter().filter(|(q, _)| q["offset"] == "0").collect();
        assert_eq!(windows.len(), 5 + 4, "one request range per window");
        let empty = api.queries.iter().filter(|(_, code)| code == "1").count();
        assert_eq!(empty, 1, "the second February week answered retCode 1");
        for (q, _) in &api.queries {
            assert_eq!((&q["limit"], &q["taskType"]), (&json!("100"), &json!("0")));
            assert!(q["offset"].is_string() && q["startTime"].is_string(), "{q}");
        }
        let offsets: Vec<_> = api.queries.iter().map(|(q, _)| q["offset"].clone()).collect();
        assert_eq!(offsets.iter().filter(|o| **o == "200").count(), 1, "the third January page");
        assert!(api.logins >= 3, "tokens expired mid-backfill: {} logins", api.logins);
        assert!(api.refused_tokens >= api.logins - 1, "each new token followed a refusal");
    });
}

/// A wrong app secret stops the backfill after one login, naming the app key and not the
/// secret; no business request is sent.
#[tokio::test]
async fn a_wrong_secret_stops_the_pipeline() {
    let api = CdrApi::start(Vec::new(), 100).await;
    let h = Harness::start(SimOptions::default()).await;
    let text = h.config_text(&format!(
        "[sources.fabric]\nbase_url = \"{}\"\napp_key = \"{APP_KEY}\"\napp_secret = \"wrong-secret\"\n",
        api.base_url
    ));
    let err = engine_for(&h, &text)
        .backfill(DATASET, month("2025-01"), month("2025-03"), false, &LogProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(APP_KEY) && err.contains("tokenByAkSk"), "{err}");
    assert!(!err.contains("wrong-secret"), "{err}");
    api.with(|api| assert_eq!((api.logins, api.queries.len()), (0, 0)));
}

/// Calls in progress (state < 3) are read again by the next sync even when they started
/// before its lookback, until they end; once ended they are not read again.
#[tokio::test]
async fn calls_in_progress_are_read_again_until_they_end() {
    let now = chrono::Utc::now().timestamp_millis();
    let zone = parse_zone("+08:00").unwrap();
    // Inside the first sync's window (the current month, from an hour before its start).
    let open_at = (now - 3 * 3_600_000).max(current_month().start(zone).timestamp_millis());
    let calls = vec![call(1, open_at + 30_000, 3), call(2, open_at, 1), call(3, now - 60_000, 3)];
    let api = CdrApi::start(calls.clone(), 1000).await;
    let h = Harness::start(SimOptions::default()).await;
    let engine = engine(&h, &api, "[pipelines.call_detail_records]\nlookback_hours = 0\n");
    let as_map = |calls: &[Value]| -> BTreeMap<String, Value> {
        calls.iter().map(|c| (c["callSerialNo"].as_str().unwrap().to_string(), c.clone())).collect()
    };
    let checkpoint = || async {
        engine.state().pipeline(DATASET, &h.opts.tenant_id).await.unwrap().unwrap().open_since_ms
    };
    let first_start = |api: &Api, from: usize| -> i64 {
        api.queries[from..]
            .iter()
            .map(|(q, _)| q["startTime"].as_str().unwrap().parse::<i64>().unwrap())
            .min()
            .unwrap()
    };

    engine.sync(DATASET, &LogProgress).await.unwrap();
    assert_lake_holds(&h, &as_map(&calls));
    assert_eq!(checkpoint().await, Some(open_at), "the open call is remembered");

    // The call ends; a new one starts. The next sync starts at the open call, not later.
    let mut now_calls = calls.clone();
    now_calls[1] = call(2, open_at, 3);
    now_calls.push(call(4, chrono::Utc::now().timestamp_millis() - 1_000, 3));
    let seen = api.with(|api| {
        api.calls = as_map(&now_calls);
        api.queries.len()
    });
    engine.sync(DATASET, &LogProgress).await.unwrap();
    assert_lake_holds(&h, &as_map(&now_calls));
    api.with(|api| assert!(first_start(api, seen) <= open_at, "the open call was read again"));
    assert_eq!(checkpoint().await, None, "no call is open any more");

    // Nothing is open: the next sync starts at the last one (no lookback).
    let seen = api.with(|api| api.queries.len());
    engine.sync(DATASET, &LogProgress).await.unwrap();
    api.with(|api| assert!(first_start(api, seen) > open_at, "ended calls are not read again"));
    assert_lake_holds(&h, &as_map(&now_calls));
}
