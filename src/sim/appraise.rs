//! The HTTP handlers of the quality-inspection interfaces (cec-api.md 2.4, 2.5):
//! `POST /apiaccess/{CCSQM|CCISQM}/rest/ccisqm/v1/appraisecall/details` and `.../detail`.
//!
//! Readings of what the documentation leaves open:
//! - `page` is 1-based (the example uses 1); `limit` counts call groups and is capped at
//!   [`MAX_LIMIT`]: larger values are served as 100 without saying so, as the documentation
//!   gives no maximum and no error for it. A page never splits a group.
//! - `paging.total` counts the matching calls (the table says "total number of calls"), or
//!   the matching groups when `SimOptions::paging_total_counts_groups` is set.
//! - `status`, `call_types`, `call_from`/`call_to` and the other filters select calls; a group
//!   is listed with its matching calls only, and not at all when none matches. An empty or
//!   missing `status` or `call_types` array is a 400.
//! - `upload_from`/`upload_to` (unit not documented) are epoch seconds; values of 10^11 or
//!   more are read as epoch milliseconds. `null` or absent leaves that side open (the
//!   example sends `null` though the table says mandatory).
//! - Queries are not confined to one month: the documentation says nothing of monthly tables
//!   for this family.
//! - Both prefixes serve the same answers (the CCISQM variant's numeric `speaker` is not
//!   modelled).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::appraise_data::{CallFilter, DetailsPage};
use super::fabric_auth::{authorize, check_user, reject, Envelope, FabricError};
use super::simulator::Simulator;
use super::stats::Event;

/// The most call groups a `details` page holds.
pub(crate) const MAX_LIMIT: u64 = 100;
/// Epoch values from here on are milliseconds (10^11 s is the year 5138).
const MILLISECONDS_FROM: i64 = 100_000_000_000;

/// `POST /apiaccess/{service}/rest/ccisqm/v1/appraisecall/details`.
pub(crate) async fn details(
    State(sim): State<Arc<Simulator>>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.counters().record(Event::DetailsRequest);
    match answer_details(&sim, &service, &headers, &body) {
        Ok(page) => {
            sim.counters().record(Event::PageServed);
            Json(json!({"data": page.groups, "paging": {"total": page.total}})).into_response()
        }
        Err(e) => reject(&sim, &e, Envelope::ResultCode),
    }
}

fn answer_details(
    sim: &Simulator,
    service: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DetailsPage, FabricError> {
    check_service(service)?;
    authorize(sim, headers)?;
    check_user(sim, headers, true)?;
    let body = json_object(body)?;
    let page = positive(&body, "page")?;
    let limit = positive(&body, "limit")?.min(MAX_LIMIT);
    let filter = CallFilter {
        call_from: integer(&body, "call_from")?,
        call_to: integer(&body, "call_to")?,
        upload_from: integer(&body, "upload_from")?.map(|t| seconds(t, Rounding::Up)),
        upload_to: integer(&body, "upload_to")?.map(|t| seconds(t, Rounding::Down)),
        statuses: integers(&body, "status")?,
        call_types: integers(&body, "call_types")?,
        staff_id: text(&body, "staff_id")?,
        staff_name: text(&body, "staff_name")?,
        duration_min: number(&body, "duration_min")?,
        duration_max: number(&body, "duration_max")?,
        keyword: text(&body, "keyword")?,
    };
    let count_groups = sim.options().paging_total_counts_groups;
    Ok(sim.appraise().details(&filter, page, limit, count_groups))
}

/// `POST /apiaccess/{service}/rest/ccisqm/v1/appraisecall/detail`: body `{"call_uuid"}`;
/// an unknown call_uuid is answered with HTTP 404 ("the requested content is not found",
/// one of the documented statuses). `x-UserId` is optional here, as documented.
pub(crate) async fn detail(
    State(sim): State<Arc<Simulator>>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.counters().record(Event::DetailRequest);
    let answer = check_service(&service)
        .and_then(|()| authorize(&sim, &headers))
        .and_then(|()| check_user(&sim, &headers, false))
        .and_then(|()| json_object(&body))
        .and_then(|body| match body.get("call_uuid") {
            Some(Value::String(uuid)) if !uuid.is_empty() => Ok(uuid.clone()),
            _ => Err(FabricError::BadParameter("call_uuid (a string) is required".into())),
        })
        .and_then(|uuid| sim.appraise().detail(&uuid).ok_or(FabricError::UnknownCall(uuid)));
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(e) => reject(&sim, &e, Envelope::ResultCode),
    }
}

/// The two documented service prefixes.
fn check_service(service: &str) -> Result<(), FabricError> {
    match service {
        "CCSQM" | "CCISQM" => Ok(()),
        other => Err(FabricError::UnknownService(other.chars().take(64).collect())),
    }
}

fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, FabricError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(FabricError::BadParameter("the request body is not a JSON object".into())),
    }
}

type Fields = serde_json::Map<String, Value>;

/// An optional integer (a JSON number without a fraction); `null` is absent.
fn integer(body: &Fields, field: &str) -> Result<Option<i64>, FabricError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => as_integer(value)
            .map(Some)
            .ok_or_else(|| FabricError::BadParameter(format!("{field} must be an integer"))),
    }
}

fn as_integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}

/// A mandatory integer of 1 or more.
fn positive(body: &Fields, field: &str) -> Result<u64, FabricError> {
    match integer(body, field)? {
        Some(value) if value >= 1 => Ok(value as u64),
        Some(value) => {
            Err(FabricError::BadParameter(format!("{field} must be 1 or more, got {value}")))
        }
        None => Err(FabricError::BadParameter(format!("{field} is required"))),
    }
}

/// A mandatory, non-empty array of integers.
fn integers(body: &Fields, field: &str) -> Result<Vec<i64>, FabricError> {
    let bad =
        || FabricError::BadParameter(format!("{field} must be a non-empty array of integers"));
    let Some(Value::Array(items)) = body.get(field) else { return Err(bad()) };
    let values: Option<Vec<i64>> = items.iter().map(as_integer).collect();
    values.filter(|v| !v.is_empty()).ok_or_else(bad)
}

/// An optional string; `null` and "" are absent.
fn text(body: &Fields, field: &str) -> Result<Option<String>, FabricError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        Some(_) => Err(FabricError::BadParameter(format!("{field} must be a string"))),
    }
}

/// An optional number; `null` is absent.
fn number(body: &Fields, field: &str) -> Result<Option<f64>, FabricError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or_else(|| FabricError::BadParameter(format!("{field} must be a number"))),
    }
}

/// Which way a bound in milliseconds rounds to whole seconds.
#[derive(Clone, Copy)]
enum Rounding {
    /// Lower bounds: a call at 1000 s is not at or after 1000500 ms.
    Up,
    /// Upper bounds.
    Down,
}

/// Epoch seconds of an epoch value in seconds or (from 10^11) milliseconds.
fn seconds(value: i64, rounding: Rounding) -> i64 {
    match rounding {
        _ if value < MILLISECONDS_FROM => value,
        Rounding::Up => -(-value).div_euclid(1000),
        Rounding::Down => value.div_euclid(1000),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::calendar::Month;
    use crate::sim::test_support::{fabric_post, fabric_token, start};
    use crate::sim::SimOptions;

    const DETAILS: &str = "/apiaccess/CCSQM/rest/ccisqm/v1/appraisecall/details";
    /// Every inspection status of table 4.2.
    const ALL_STATUSES: [i64; 15] = [0, 1, 2, 3, 9, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40];
    const DETAIL: &str = "/apiaccess/CCISQM/rest/ccisqm/v1/appraisecall/detail";

    fn month(text: &str) -> Month {
        text.parse().unwrap()
    }

    fn options(per_month: u64) -> SimOptions {
        SimOptions {
            appraise_calls_per_month: per_month,
            first_month: month("2025-01"),
            last_month: month("2025-03"),
            ..SimOptions::default()
        }
    }

    /// A query of every status and type for calls made in `month`.
    fn month_query(sim: &Simulator, month: Month, limit: u64) -> Value {
        let slice = month.slice(sim.options().zone);
        json!({"page": 1, "limit": limit, "status": ALL_STATUSES, "call_types": [0, 2],
               "call_from": slice.begin_ms / 1000, "call_to": slice.end_ms / 1000,
               "staff_id": null, "upload_from": null, "upload_to": null})
    }

    /// Reads every page of `query`; returns the totals seen and the pages' groups.
    async fn all_pages(url: &str, token: &str, query: &Value) -> (BTreeSet<u64>, Vec<Vec<Value>>) {
        let (mut totals, mut pages) = (BTreeSet::new(), Vec::new());
        for page in 1.. {
            let mut query = query.clone();
            query["page"] = json!(page);
            let (status, reply) = fabric_post(url, token, &query).await;
            assert_eq!(status, 200, "{reply}");
            totals.insert(reply["paging"]["total"].as_u64().unwrap());
            let groups = reply["data"].as_array().unwrap().clone();
            if groups.is_empty() {
                break;
            }
            pages.push(groups);
        }
        (totals, pages)
    }

    /// The calls of `groups`, with their group id, by call_uuid.
    fn flatten(groups: &[Value]) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for group in groups {
            for call in group["calls"].as_array().unwrap() {
                let mut row = call.clone();
                row["call_group_id"] = group["call_group_id"].clone();
                let uuid = call["call_uuid"].as_str().unwrap().to_string();
                assert!(out.insert(uuid, row).is_none(), "a call is listed once");
            }
        }
        out
    }

    /// Pages of 7 groups read back a month exactly: no group split or repeated, the total
    /// counts calls on every page, and the union equals the ground truth (calls of groups
    /// that straddle the month's end included only when made inside the month).
    #[tokio::test]
    async fn pages_hold_whole_groups_and_equal_the_truth() {
        let sim = Arc::new(Simulator::new(options(90)));
        let running = start(&sim).await;
        let (url, token) =
            (format!("{}{DETAILS}", running.base_url), fabric_token(&running.base_url).await);
        let feb = month("2025-02");
        let (totals, pages) = all_pages(&url, &token, &month_query(&sim, feb, 7)).await;
        let truth = sim.appraise_calls([feb]);
        assert_eq!(totals, BTreeSet::from([truth.len() as u64]), "total counts calls");
        assert!(pages.iter().all(|p| p.len() <= 7));
        assert!(pages[..pages.len() - 1].iter().all(|p| p.len() == 7));
        let groups: Vec<Value> = pages.concat();
        let ids: BTreeSet<_> = groups.iter().map(|g| g["call_group_id"].to_string()).collect();
        assert_eq!(ids.len(), groups.len(), "no group is on two pages");
        assert!(groups.iter().any(|g| g["calls"].as_array().unwrap().len() > 1));
        assert_eq!(flatten(&groups), truth);
        let jan_edge = flatten(
            &all_pages(&url, &token, &month_query(&sim, month("2025-01"), 100)).await.1.concat(),
        );
        let straddling = jan_edge
            .values()
            .filter(|c| groups.iter().any(|g| g["call_group_id"] == c["call_group_id"]));
        assert!(straddling.count() >= 1, "January's last group has a call in February");

        let sim = Arc::new(Simulator::new(SimOptions {
            paging_total_counts_groups: true,
            ..options(90)
        }));
        let running2 = start(&sim).await;
        let url = format!("{}{DETAILS}", running2.base_url);
        let token = fabric_token(&running2.base_url).await;
        let (totals, pages) = all_pages(&url, &token, &month_query(&sim, feb, 7)).await;
        assert_eq!(totals, BTreeSet::from([pages.concat().len() as u64]), "total counts groups");
        assert!(totals.first().copied() < Some(sim.appraise_calls([feb]).len() as u64));
        running.shutdown().await;
        running2.shutdown().await;
    }

    /// status and call_types leave out the calls that do not match (a group keeps only its
    /// matching calls); upload bounds filter upload_time in seconds or milliseconds; a limit
    /// over 100 is served as 100; a query spans months.
    #[tokio::test]
    async fn filters_select_calls() {
        let sim = Arc::new(Simulator::new(options(150)));
        let running = start(&sim).await;
        let (url, token) =
            (format!("{}{DETAILS}", running.base_url), fabric_token(&running.base_url).await);
        let all = sim.appraise_calls(month("2025-01").through(month("2025-04")));

        let mut query = month_query(&sim, month("2025-01"), 100);
        query["status"] = json!([2]);
        query["call_types"] = json!([0]);
        let got = flatten(&all_pages(&url, &token, &query).await.1.concat());
        let want: BTreeMap<_, _> = sim
            .appraise_calls([month("2025-01")])
            .into_iter()
            .filter(|(_, c)| c["status"] == 2 && c["call_type"] == 0)
            .collect();
        assert_eq!(got, want);

        let uploads: Vec<i64> = all.values().map(|c| c["upload_time"].as_i64().unwrap()).collect();
        let (from, to) = (uploads[10].min(uploads[20]), uploads[10].max(uploads[20]));
        let in_window = |c: &Value| (from..=to).contains(&c["upload_time"].as_i64().unwrap());
        let want: BTreeMap<_, _> = all.clone().into_iter().filter(|(_, c)| in_window(c)).collect();
        for (lo, hi) in [(json!(from), json!(to)), (json!(from * 1000), json!(to * 1000 + 999))] {
            let query = json!({"page": 1, "limit": 100, "status": ALL_STATUSES, "call_types": [0, 2],
                               "upload_from": lo, "upload_to": hi});
            assert_eq!(flatten(&all_pages(&url, &token, &query).await.1.concat()), want);
        }

        let query = json!({"page": 1, "limit": 500, "status": ALL_STATUSES, "call_types": [0, 2]});
        let (status, reply) = fabric_post(&url, &token, &query).await;
        assert_eq!(status, 200);
        assert_eq!(reply["data"].as_array().unwrap().len(), 100, "limit is capped at 100");
        assert!(reply["paging"]["total"].as_u64().unwrap() >= all.len() as u64, "no month limit");

        for (field, value) in
            [("status", json!([])), ("call_types", Value::Null), ("page", json!(0))]
        {
            let mut bad = query.clone();
            bad[field] = value;
            let (status, reply) = fabric_post(&url, &token, &bad).await;
            assert_eq!(status, 400, "{field}");
            assert!(reply["resultDesc"].as_str().unwrap().contains(field), "{reply}");
        }
        let wrong = url.replace("CCSQM", "CCXQM");
        assert_eq!(fabric_post(&wrong, &token, &query).await.0, 404);
        running.shutdown().await;
    }

    /// detail answers an inspected call with its segments and emotions as the ground truth
    /// has them, a call still being inspected with empty arrays, an unknown call with 404;
    /// answers are counted per call_uuid.
    #[tokio::test]
    async fn detail_answers_segments_and_emotions() {
        let sim = Arc::new(Simulator::new(options(60)));
        let running = start(&sim).await;
        let (url, token) =
            (format!("{}{DETAIL}", running.base_url), fabric_token(&running.base_url).await);
        let mar = month("2025-03");
        let calls = sim.appraise_calls([mar]);
        let segments = sim.appraise_segments([mar]);
        let emotions = sim.appraise_emotions([mar]);
        let inspected = calls.values().find(|c| c["status"] == 2).unwrap();
        let uuid = inspected["call_uuid"].as_str().unwrap();
        let (status, detail) = fabric_post(&url, &token, &json!({"call_uuid": uuid})).await;
        assert_eq!(status, 200);
        for field in ["call_id", "call_time", "duration", "left_speed", "staff_name", "status"] {
            assert_eq!(detail[field], inspected[field], "{field}");
        }
        assert!(detail["rule_severity_violation_count"].is_i64());
        let served = detail["segments"].as_array().unwrap();
        assert!(served.len() >= 3);
        for (i, segment) in served.iter().enumerate() {
            assert_eq!(segment["segment_id"], i as i64 + 1);
            let mut row = segment.clone();
            row["call_uuid"] = json!(uuid);
            row["call_time"] = inspected["call_time"].clone();
            assert_eq!(segments[&format!("{uuid}/{}", i + 1)], row);
        }
        for channel in ["left", "right"] {
            for e in detail[format!("{channel}_emotions")].as_array().unwrap() {
                let key = format!("{uuid}/{channel}/{}", e["type"].as_str().unwrap());
                assert_eq!(emotions[&key]["score"], e["score"]);
            }
        }

        let waiting = calls.values().find(|c| [0, 1, 3].contains(&c["status"].as_i64().unwrap()));
        let uuid = waiting.unwrap()["call_uuid"].as_str().unwrap();
        let (status, detail) = fabric_post(&url, &token, &json!({"call_uuid": uuid})).await;
        assert_eq!(status, 200);
        assert_eq!(detail["segments"], json!([]));
        assert!(detail.get("rule_severity_violation_count").is_none());
        assert!(!segments.keys().any(|k| k.starts_with(uuid)), "no segments in the truth either");

        let (status, reply) = fabric_post(&url, &token, &json!({"call_uuid": "missing"})).await;
        assert_eq!(status, 404);
        assert!(reply["resultDesc"].as_str().unwrap().contains("missing"));
        assert_eq!(fabric_post(&url, &token, &json!({})).await.0, 400);
        let counts = sim.appraise_detail_requests();
        assert_eq!(counts.values().sum::<u64>(), 2);
        assert_eq!(counts.get(uuid), Some(&1));
        assert_eq!(sim.stats().detail_requests, 4);
        running.shutdown().await;
    }
}
