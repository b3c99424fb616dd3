//! The harness's `[sources.fabric]` table against the simulator's API Fabric routes: what
//! an engine reading that table would send reaches data, over real HTTP on loopback.

use cecsync::sim::SimOptions;
use serde_json::{json, Value};

use crate::common::{month, Harness};

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
