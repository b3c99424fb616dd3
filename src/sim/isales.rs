//! The HTTP handlers of CC-iSales (cec-api.md 2.16, 4.4), behind the C2 signature check of
//! [`signed`](super::signed): `GET /rest/isales/v1/openapi/campaigns/{vdnId}` and
//! `POST /rest/isales/v1/openapi/campaigns/{vdnId}/callresult/{campaignId}`.
//!
//! Readings of what the documentation leaves open:
//! - The source asks for at most 10 requests in flight; beyond
//!   [`SimOptions::isales_max_in_flight`](super::SimOptions) a request is answered HTTP 429
//!   with `Retry-After: 1` and code "429" in the iSales envelope (no code is documented).
//!   The spacing of batches (1 s) is a recommendation and is not enforced.
//! - `pageNum` counts from [`SimOptions::isales_first_page`](super::SimOptions) (1 by
//!   default; the base is not documented); a smaller one is refused. Without `pageSize`
//!   and `pageNum` the first 2000 rows are served; `pageNum` without `pageSize` is refused.
//! - `totalCount` counts every matching row, whatever the page.
//! - An unknown campaign answers success with no rows.
//! - Codes: "0200000" success; "02000001" a mandatory value is empty (`endTime` without
//!   `beginTime` and the like); "0200001" any other parameter error, the details in
//!   `resultDesc`/`returnDesc`.
//! - Campaign list (response objects not retrieved): `data` holds `campaignId`, `name`,
//!   `status`, `deviceType`, `vdnId`, `beginTime`, `endTime`, with `totalCount`; `curPage`
//!   below 1 is 1, `rowsPerPage` is 1 to 100 (default 10); `name` matches a part of the
//!   name; `beginTime`/`endTime`/`ccId` are accepted and ignored.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde_json::{json, Value};

use super::isales_data::CampaignFilter;
use super::params::{self, int, text, Fields, ParamError};
use super::signed::{error_envelope, Family};
use super::simulator::Simulator;
use super::stats::Event;

/// The iSales success code.
const SUCCESS: &str = "0200000";
/// A mandatory value is empty (table 4.4).
const EMPTY: &str = "02000001";
/// Any other parameter error (table 4.4).
const BAD_PARAMETER: &str = "0200001";
/// The largest page of results with `showDetail` 0.
pub(crate) const MAX_PAGE_SIZE: i64 = 500;
/// The largest page of results with `showDetail` 1.
pub(crate) const MAX_DETAIL_PAGE_SIZE: i64 = 100;
/// Rows served without `pageSize`/`pageNum`.
pub(crate) const UNPAGED_ROWS: usize = 2000;
/// The longest results window, in days.
pub(crate) const MAX_WINDOW_DAYS: i64 = 30;
/// The largest campaign-list page.
pub(crate) const MAX_ROWS_PER_PAGE: i64 = 100;

/// `GET /rest/isales/v1/openapi/campaigns/{vdnId}`.
pub(crate) async fn campaigns(
    State(sim): State<Arc<Simulator>>,
    Path(vdn): Path<String>,
    uri: Uri,
) -> Response {
    respond(&sim, || {
        let vdn = vdn_id(&vdn)?;
        let query: HashMap<String, String> =
            form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let number = |field: &'static str| -> Result<Option<i64>, ParamError> {
            match query.get(field).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| ParamError::invalid(field, "must be an integer")),
            }
        };
        let one_of = |field: &'static str, allowed: &[i64]| -> Result<i64, ParamError> {
            match number(field)?.unwrap_or(0) {
                v if allowed.contains(&v) => Ok(v),
                v => {
                    Err(ParamError::invalid(field, format!("must be one of {allowed:?}, got {v}")))
                }
            }
        };
        let filter = CampaignFilter {
            status: one_of("status", &[0, 2, 3, 4])?,
            device_type: one_of("deviceType", &[0, 1, 2, 3, 5, 6])?,
            name: query.get("name").filter(|n| !n.is_empty()).cloned(),
        };
        let page = number("curPage")?.unwrap_or(1).max(1) as usize;
        let rows = match number("rowsPerPage")?.unwrap_or(10) {
            rows @ 1..=MAX_ROWS_PER_PAGE => rows as usize,
            rows => {
                let problem = format!("must be 1 to {MAX_ROWS_PER_PAGE}, got {rows}");
                return Err(ParamError::invalid("rowsPerPage", problem));
            }
        };
        let all = sim.isales().campaigns(vdn, &filter);
        let total = all.len();
        Ok((total, all.into_iter().skip((page - 1).saturating_mul(rows)).take(rows).collect()))
    })
    .await
}

/// `POST /rest/isales/v1/openapi/campaigns/{vdnId}/callresult/{campaignId}`.
pub(crate) async fn call_results(
    State(sim): State<Arc<Simulator>>,
    Path((vdn, campaign)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond(&sim, || {
        let vdn = vdn_id(&vdn)?;
        let fields = params::object(&body)?;
        let request = results_request(&fields, sim.options().isales_first_page)?;
        let rows = sim.isales().results(vdn, &campaign, request.window).unwrap_or_default();
        let total = rows.len();
        let (skip, take) = match request.page {
            Some((number, size)) => (number.saturating_mul(size), size),
            None => (0, UNPAGED_ROWS),
        };
        Ok((total, rows.into_iter().skip(skip).take(take).collect()))
    })
    .await
}

/// A validated `callresult` request.
#[derive(Debug, PartialEq)]
struct ResultsRequest {
    window: Option<(NaiveDate, NaiveDate)>,
    /// The page counted from 0 and its size; `None` without paging.
    page: Option<(usize, usize)>,
}

fn results_request(f: &Fields, first_page: u64) -> Result<ResultsRequest, ParamError> {
    let max_size = match int(f, "showDetail")?.unwrap_or(0) {
        0 => MAX_PAGE_SIZE,
        1 => MAX_DETAIL_PAGE_SIZE,
        other => {
            return Err(ParamError::invalid("showDetail", format!("must be 0 or 1, got {other}")))
        }
    };
    if text(f, "sessionId")?.is_some_and(|s| s.chars().count() > 32) {
        return Err(ParamError::invalid("sessionId", "is longer than 32 characters"));
    }
    let page = match (int(f, "pageSize")?, int(f, "pageNum")?) {
        (None, None) => None,
        (None, Some(_)) => return Err(ParamError::Missing("pageSize")),
        (Some(size), _) if !(1..=max_size).contains(&size) => {
            let problem = format!("must be 1 to {max_size} with this showDetail, got {size}");
            return Err(ParamError::invalid("pageSize", problem));
        }
        (Some(size), number) => {
            let number = number.unwrap_or(first_page as i64);
            let Some(index) = number.checked_sub(first_page as i64).filter(|i| *i >= 0) else {
                let problem = format!("must be {first_page} or more, got {number}");
                return Err(ParamError::invalid("pageNum", problem));
            };
            Some((index as usize, size as usize))
        }
    };
    let window = match (day(f, "beginTime")?, day(f, "endTime")?) {
        (None, None) => None,
        (Some(_), None) => return Err(ParamError::Missing("endTime")),
        (None, Some(_)) => return Err(ParamError::Missing("beginTime")),
        (Some(begin), Some(end)) => {
            let days = (end - begin).num_days();
            if days < 1 {
                return Err(ParamError::invalid("endTime", "must be after beginTime"));
            }
            if days > MAX_WINDOW_DAYS {
                let problem = format!(
                    "is {days} days after beginTime; at most {MAX_WINDOW_DAYS} are allowed"
                );
                return Err(ParamError::invalid("endTime", problem));
            }
            Some((begin, end))
        }
    };
    Ok(ResultsRequest { window, page })
}

/// An optional `YYYY-MM-DD` day.
fn day(f: &Fields, field: &'static str) -> Result<Option<NaiveDate>, ParamError> {
    text(f, field)?
        .map(|t| {
            NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .filter(|_| t.len() == 10)
                .ok_or_else(|| ParamError::invalid(field, "must be a day written YYYY-MM-DD"))
        })
        .transpose()
}

/// The `{vdnId}` of a path: 1 to 9999.
fn vdn_id(text: &str) -> Result<u32, ParamError> {
    text.parse().ok().filter(|v| (1..=9999).contains(v)).ok_or_else(|| {
        let shown: String = text.chars().take(16).collect();
        ParamError::invalid("vdnId", format!("must be 1 to 9999, got '{shown}'"))
    })
}

/// Counts the request, holds one of the in-flight slots while `answer` runs (or refuses
/// with 429 when none is free), and writes the answer in the iSales envelope.
async fn respond(
    sim: &Simulator,
    answer: impl FnOnce() -> Result<(usize, Vec<Value>), ParamError>,
) -> Response {
    sim.counters().record(Event::IsalesRequest);
    let Some(_slot) = sim.counters().enter_isales(sim.options().isales_max_in_flight) else {
        sim.counters().record(Event::IsalesThrottled);
        let body = Family::Isales.error_body("429", "too many requests in flight; retry later");
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], Json(body))
            .into_response();
    };
    let latency = sim.options().isales_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match answer() {
        Ok((total, data)) => {
            sim.counters().record(Event::PageServed);
            Json(
                json!({"resultCode": SUCCESS, "returnCode": SUCCESS, "resultDesc": "Query Success!",
                        "returnDesc": "Query Success!", "totalCount": total, "data": data}),
            )
            .into_response()
        }
        Err(e) => {
            let code = if matches!(e, ParamError::Missing(_)) { EMPTY } else { BAD_PARAMETER };
            error_envelope(sim, Family::Isales, code, &e.to_string())
        }
    }
}

#[cfg(test)]
mod tests;
