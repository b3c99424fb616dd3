//! The iSales routes over real HTTP on loopback, signed as a client signs them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::calendar::Month;
use crate::sim::test_support::{collect_by_call_id, signed_get, signed_post, start};
use crate::sim::SimOptions;

fn month(text: &str) -> Month {
    text.parse().unwrap()
}

fn options() -> SimOptions {
    SimOptions {
        first_month: month("2025-01"),
        last_month: month("2025-02"),
        ..SimOptions::default()
    }
}

fn results_url(base: &str, vdn: u32, campaign: &str) -> String {
    format!("{base}/rest/isales/v1/openapi/campaigns/{vdn}/callresult/{campaign}")
}

/// Reads every page of `window` with pages of `size` numbered from `first`; returns the
/// totals seen and the rows by callId.
async fn all_pages(
    url: &str,
    window: (&str, &str),
    size: u64,
    first: u64,
) -> (Vec<u64>, BTreeMap<String, Value>) {
    let (mut totals, mut rows) = (Vec::new(), BTreeMap::new());
    for page in first.. {
        let body = json!({"beginTime": window.0, "endTime": window.1, "pageSize": size,
                          "pageNum": page, "showDetail": 0});
        let (status, reply) = signed_post(url, &body).await;
        assert_eq!(
            (status, &reply["resultCode"], &reply["returnCode"]),
            (200, &json!("0200000"), &json!("0200000")),
            "{reply}"
        );
        totals.push(reply["totalCount"].as_u64().unwrap());
        if !collect_by_call_id(&reply, "data", &mut rows) {
            break;
        }
    }
    (totals, rows)
}

/// Windows of at most 30 days that never cross the month edge, read in pages of 7, equal
/// the truth of both months for every campaign; `callStatus` is typed per campaign and
/// `failCode` keeps its zeros.
#[tokio::test]
async fn pages_of_every_campaign_equal_the_truth() {
    let sim = Arc::new(Simulator::new(options()));
    let running = start(&sim).await;
    let windows =
        [("2025-01-01", "2025-01-31"), ("2025-01-31", "2025-02-01"), ("2025-02-01", "2025-03-01")];
    let mut got = BTreeMap::new();
    for campaign in sim.campaigns() {
        let vdn = campaign["vdnId"].as_u64().unwrap() as u32;
        let id = campaign["campaignId"].as_str().unwrap();
        let url = results_url(&running.base_url, vdn, id);
        for window in windows {
            let (totals, rows) = all_pages(&url, window, 7, 1).await;
            assert!(totals.windows(2).all(|t| t[0] == t[1]) && totals[0] == rows.len() as u64);
            for (call_id, row) in rows {
                assert_eq!(
                    row["callStatus"].is_string(),
                    id.parse::<u32>().unwrap() % 2 == 1,
                    "{row}"
                );
                assert!(got.insert(call_id, row).is_none(), "windows do not overlap");
            }
        }
    }
    let truth = sim.campaign_call_results([month("2025-01"), month("2025-02")]);
    let normalized: BTreeMap<_, _> = got
        .into_iter()
        .map(|(k, mut row)| {
            row["callStatus"] = json!(row["callStatus"].to_string().trim_matches('"'));
            (k, row)
        })
        .collect();
    assert_eq!(normalized, truth);
    assert!(truth.values().all(|r| r["failCode"].as_str().unwrap().len() == 5));
    assert!(truth.values().any(|r| r["failCode"] == "00000" && r["callStatus"] == "6"));
    running.shutdown().await;
}

/// The documented limits are refused with the iSales codes; without paging at most 2000
/// rows are served; another page base can be configured.
#[tokio::test]
async fn request_rules_and_page_base() {
    let sim = Arc::new(Simulator::new(SimOptions { campaign_calls_per_month: 2100, ..options() }));
    let running = start(&sim).await;
    let url = results_url(&running.base_url, 170, "1");
    let cases = [
        (json!({"beginTime": "2025-01-01", "endTime": "2025-02-01"}), BAD_PARAMETER, "at most 30"),
        (
            json!({"beginTime": "2025-01-02", "endTime": "2025-01-02"}),
            BAD_PARAMETER,
            "after beginTime",
        ),
        (json!({"beginTime": "2025-01-02"}), EMPTY, "endTime is empty"),
        (json!({"endTime": "2025-01-02"}), EMPTY, "beginTime is empty"),
        (json!({"beginTime": "2025-1-2", "endTime": "2025-01-03"}), BAD_PARAMETER, "YYYY-MM-DD"),
        (json!({"pageSize": 501, "pageNum": 1}), BAD_PARAMETER, "1 to 500"),
        (json!({"pageSize": 101, "pageNum": 1, "showDetail": 1}), BAD_PARAMETER, "1 to 100"),
        (json!({"pageSize": 10, "pageNum": 0}), BAD_PARAMETER, "pageNum must be 1 or more"),
        (json!({"pageNum": 1}), EMPTY, "pageSize is empty"),
        (json!({"showDetail": 2}), BAD_PARAMETER, "showDetail"),
    ];
    for (body, code, message) in cases {
        let (status, reply) = signed_post(&url, &body).await;
        assert_eq!(
            (status, &reply["resultCode"], &reply["returnCode"]),
            (200, &json!(code), &json!(code)),
            "{body}"
        );
        assert!(reply["resultDesc"].as_str().unwrap().contains(message), "{body}: {reply}");
    }
    let (_, reply) =
        signed_post(&url, &json!({"pageSize": 100, "pageNum": 1, "showDetail": 1})).await;
    assert_eq!(reply["data"].as_array().unwrap().len(), 100);
    let (_, reply) = signed_post(&url, &json!({})).await;
    assert_eq!(reply["data"].as_array().unwrap().len(), UNPAGED_ROWS);
    assert!(reply["totalCount"].as_u64().unwrap() > 4000);
    let (_, bad_vdn) = signed_post(&results_url(&running.base_url, 10_000, "1"), &json!({})).await;
    assert_eq!(bad_vdn["resultCode"], BAD_PARAMETER);
    let (_, unknown) = signed_post(&results_url(&running.base_url, 170, "77"), &json!({})).await;
    assert_eq!((&unknown["resultCode"], &unknown["totalCount"]), (&json!(SUCCESS), &json!(0)));
    running.shutdown().await;

    let sim = Arc::new(Simulator::new(SimOptions { isales_first_page: 0, ..options() }));
    let running = start(&sim).await;
    let url = results_url(&running.base_url, 171, "2");
    let (_, rows) = all_pages(&url, ("2025-01-01", "2025-01-31"), 4, 0).await;
    let (_, all) =
        signed_post(&url, &json!({"beginTime": "2025-01-01", "endTime": "2025-01-31"})).await;
    assert_eq!(rows.len(), all["data"].as_array().unwrap().len());
    running.shutdown().await;
}

/// Calls still running at the end of the data are served once they finish.
#[tokio::test]
async fn running_calls_appear_once_finished() {
    let sim = Arc::new(Simulator::new(options()));
    let running = start(&sim).await;
    let url = results_url(&running.base_url, 170, "2");
    let window = ("2025-02-01", "2025-03-01");
    let (_, before) = all_pages(&url, window, 500, 1).await;
    let finished = sim.finish_campaign_calls();
    assert_eq!(finished.len(), 2 * 2);
    let (_, after) = all_pages(&url, window, 500, 1).await;
    let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert_eq!(new.len(), 1);
    assert!(finished.contains(new[0]));
    running.shutdown().await;
}

/// The campaign list pages with curPage/rowsPerPage (at most 100, curPage below 1 read as
/// 1) and filters by status.
#[tokio::test]
async fn campaign_list_pages_and_filters() {
    let sim = Arc::new(Simulator::new(SimOptions { campaigns_per_vdn: 5, ..options() }));
    let running = start(&sim).await;
    let url = format!("{}/rest/isales/v1/openapi/campaigns/171", running.base_url);
    let mut got = Vec::new();
    for page in ["0", "2", "3", "4"] {
        let (status, reply) = signed_get(&url, &[("curPage", page), ("rowsPerPage", "2")]).await;
        assert_eq!(
            (status, &reply["returnCode"], &reply["totalCount"]),
            (200, &json!(SUCCESS), &json!(5))
        );
        got.extend(reply["data"].as_array().unwrap().clone());
    }
    let truth: Vec<Value> = sim.campaigns().into_iter().filter(|c| c["vdnId"] == 171).collect();
    assert_eq!(got, truth);
    let (_, reply) = signed_get(&url, &[("rowsPerPage", "101")]).await;
    assert_eq!(reply["resultCode"], BAD_PARAMETER);
    let (_, reply) = signed_get(&url, &[("status", "2"), ("name", "")]).await;
    let started = reply["data"].as_array().unwrap();
    assert!(!started.is_empty() && started.iter().all(|c| c["status"] == 2));
    running.shutdown().await;
}

/// With answers that take 2 s (all 16 arrive within it, even on a busy machine), 16
/// requests at once see 10 served and 6 answered 429 in the iSales envelope, counted in the
/// stats.
#[tokio::test]
async fn more_than_ten_in_flight_are_throttled() {
    let options = SimOptions { isales_latency: Duration::from_secs(2), ..options() };
    let sim = Arc::new(Simulator::new(options));
    let running = start(&sim).await;
    let url = results_url(&running.base_url, 170, "1");
    let body = json!({"pageSize": 10, "pageNum": 1});
    let replies = futures::future::join_all((0..16).map(|_| signed_post(&url, &body))).await;
    let throttled: Vec<&Value> =
        replies.iter().filter(|(s, _)| *s == 429).map(|(_, r)| r).collect();
    assert_eq!(throttled.len(), 6);
    assert!(throttled.iter().all(|r| r["returnCode"] == "429"));
    let stats = sim.stats();
    assert_eq!(
        (stats.isales_requests, stats.isales_throttled, stats.isales_max_in_flight),
        (16, 6, 10)
    );
    running.shutdown().await;
}
