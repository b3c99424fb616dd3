//! The HTTP handlers of the CC-CMS interfaces (cec-api.md 2.7, 2.9, 2.12), behind the C2
//! signature check of [`signed`](super::signed):
//! `POST /rest/cmsapp/v1/callinday/querymanualindexesbycondition`, its sibling
//! `calloutday/...`, `POST /rest/cmsapp/v1/callin/queryMissedCalls` and
//! `POST /rest/cmsapp/v1/openapi/vdn/queryivrprocessinnoinfo`.
//!
//! Readings of what the documentation leaves open:
//! - Every body may wrap its fields in `{"queryParam": {...}}` (the examples) or give them
//!   flat (the tables).
//! - Daily statistics: the range is echoed and aggregated (see
//!   [`cms_daily`](super::cms_daily)); a range of more than [`MAX_RANGE_DAYS`] days, or
//!   `endLogDay` before `beginLogDay`, is refused. `vdn` selects one VDN; without it,
//!   `tenantId` selects every VDN of the tenant (another tenant has no data). A `ccId`
//!   other than 1 has no data. `skillIds` is checked (at most 1000) but rows are not split
//!   by skill.
//! - Success is `{"result": "0", "resultCode": "0100000", "resultDatas": [..],
//!   "resultDesc": [..]}` as in the examples, or one half of it
//!   ([`CmsEnvelope`]).
//! - Missed calls: `limit` is mandatory (1 to 5000), `offset` defaults to 0; success is
//!   `{"returnCode": "0", "returnDesc": "success", "total": n, "missedCalls": [..]}`.
//! - Refused parameters are HTTP 200 with code [`CMS_BAD_PARAMETER`] in every code field
//!   ([`Family::error_body`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{json, Value};

use super::cms_daily::{DailyQuery, Direction, CC_ID};
use super::cms_missed::{MissedQuery, TIME_FORMAT};
use super::params::{self, array, int, int_in, text, Fields, ParamError};
use super::signed::{error_envelope, Family, CMS_BAD_PARAMETER};
use super::simulator::{CmsEnvelope, Simulator};
use super::stats::Event;

/// The most days one daily-statistics request may span (not documented).
pub(crate) const MAX_RANGE_DAYS: i64 = 31;
/// The most numbers, call types or skills in one daily-statistics request.
pub(crate) const MAX_ITEMS: usize = 1000;
/// The largest missed-calls page.
pub(crate) const MAX_MISSED_LIMIT: i64 = 5000;
/// The CMS success code.
const SUCCESS: &str = "0100000";

/// `POST /rest/cmsapp/v1/callinday/querymanualindexesbycondition`.
pub(crate) async fn callin_day(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    daily(&sim, Direction::Inbound, &body)
}

/// `POST /rest/cmsapp/v1/calloutday/querymanualindexesbycondition`.
pub(crate) async fn callout_day(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    daily(&sim, Direction::Outbound, &body)
}

/// `POST /rest/cmsapp/v1/callin/queryMissedCalls`.
pub(crate) async fn missed_calls(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    sim.counters().record(Event::CmsRequest);
    match query_params(&body).and_then(|f| missed_query(&f)) {
        Ok(query) => {
            let (total, calls) = sim.missed().page(&query);
            sim.counters().record(Event::PageServed);
            Json(json!({"returnCode": "0", "returnDesc": "success", "total": total,
                        "missedCalls": calls}))
            .into_response()
        }
        Err(e) => refuse(&sim, &e),
    }
}

/// `POST /rest/cmsapp/v1/openapi/vdn/queryivrprocessinnoinfo`.
pub(crate) async fn ivr_flows(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    sim.counters().record(Event::CmsRequest);
    let asked = query_params(&body)
        .and_then(|f| Ok((int_in(&f, "ccId", 1..=65_535)?, int_in(&f, "vdn", 1..=5000)?)));
    match asked {
        Ok((cc_id, vdn)) => {
            let flows = sim.ivr().flows(cc_id, vdn as u32);
            success(&sim, flows)
        }
        Err(e) => refuse(&sim, &e),
    }
}

fn daily(sim: &Simulator, direction: Direction, body: &[u8]) -> Response {
    sim.counters().record(Event::CmsRequest);
    match query_params(body).and_then(|f| daily_query(sim, direction, &f)) {
        Ok(query) => {
            let rows = sim.daily().answer(&query);
            success(sim, rows)
        }
        Err(e) => refuse(sim, &e),
    }
}

/// The fields of a body, unwrapped from `queryParam` when they are wrapped.
fn query_params(body: &[u8]) -> Result<Fields, ParamError> {
    let mut fields = params::object(body)?;
    match fields.remove("queryParam") {
        Some(Value::Object(inner)) => Ok(inner),
        Some(_) => Err(ParamError::invalid("queryParam", "must be an object")),
        None => Ok(fields),
    }
}

fn daily_query(
    sim: &Simulator,
    direction: Direction,
    f: &Fields,
) -> Result<DailyQuery, ParamError> {
    let numbers_field = direction.numbers_field();
    let digits = |v: &Value| {
        v.as_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .map(String::from)
    };
    let numbers = array(f, numbers_field, MAX_ITEMS, digits, "digit strings")?;
    let call_types = array(f, "callTypes", MAX_ITEMS, Value::as_i64, "integers")?;
    if !matches!(f.get("skillIds"), None | Some(Value::Null)) {
        array(f, "skillIds", MAX_ITEMS, Value::as_i64, "integers")?;
    }
    let begin = day(f, "beginLogDay")?;
    let end = day(f, "endLogDay")?;
    let span = (end - begin).num_days();
    if !(0..MAX_RANGE_DAYS).contains(&span) {
        let problem = format!("must be on or after beginLogDay, {MAX_RANGE_DAYS} days at most");
        return Err(ParamError::invalid("endLogDay", problem));
    }
    let tenant = text(f, "tenantId")?;
    let vdns = match (int(f, "vdn")?, tenant) {
        (Some(vdn), _) if (1..=5000).contains(&vdn) => vec![vdn as u32],
        (Some(vdn), _) => {
            return Err(ParamError::invalid("vdn", format!("must be 1 to 5000, got {vdn}")))
        }
        (None, Some(tenant)) if tenant == sim.options().tenant_id => sim.daily().vdns(),
        (None, Some(_)) => Vec::new(),
        (None, None) => return Err(ParamError::Missing("vdn")),
    };
    let vdns = if int(f, "ccId")?.is_none_or(|cc| cc == CC_ID) { vdns } else { Vec::new() };
    Ok(DailyQuery { direction, vdns, numbers, call_types, begin, end })
}

/// A mandatory `yyyy-MM-dd` day.
fn day(f: &Fields, field: &'static str) -> Result<NaiveDate, ParamError> {
    let text = text(f, field)?.ok_or(ParamError::Missing(field))?;
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
        .ok_or_else(|| ParamError::invalid(field, "must be a day written yyyy-MM-dd"))
}

fn missed_query(f: &Fields) -> Result<MissedQuery, ParamError> {
    let vdn = int_in(f, "vdn", 1..=5000)? as u32;
    let limit = int_in(f, "limit", 1..=MAX_MISSED_LIMIT)? as u64;
    let offset = match int(f, "offset")? {
        None => 0,
        Some(offset) if offset >= 0 => offset as u64,
        Some(_) => return Err(ParamError::invalid("offset", "must be 0 or more")),
    };
    let time = |field: &'static str| -> Result<Option<i64>, ParamError> {
        text(f, field)?
            .map(|t| {
                NaiveDateTime::parse_from_str(t, TIME_FORMAT)
                    .map(|t| t.and_utc().timestamp())
                    .map_err(|_| ParamError::invalid(field, "must be yyyy-MM-dd HH:mm:ss (UTC)"))
            })
            .transpose()
    };
    let (begin, end) = (time("beginTime")?, time("endTime")?);
    if begin.zip(end).is_some_and(|(b, e)| e < b) {
        return Err(ParamError::invalid("endTime", "is before beginTime"));
    }
    Ok(MissedQuery { vdn, begin, end, offset, limit })
}

/// A success in the configured envelope, holding `rows` (serialized once, even when both
/// arrays carry them).
fn success(sim: &Simulator, rows: Vec<Value>) -> Response {
    sim.counters().record(Event::PageServed);
    let rows = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
    let body = match sim.options().cms_envelope {
        CmsEnvelope::Both => format!(
            r#"{{"result":"0","resultCode":"{SUCCESS}","resultDatas":{rows},"resultDesc":{rows}}}"#
        ),
        CmsEnvelope::Current => format!(r#"{{"resultCode":"{SUCCESS}","resultDesc":{rows}}}"#),
        CmsEnvelope::Legacy => format!(r#"{{"result":"0","resultDatas":{rows}}}"#),
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn refuse(sim: &Simulator, error: &ParamError) -> Response {
    error_envelope(sim, Family::Cms, CMS_BAD_PARAMETER, &error.to_string())
}

#[cfg(test)]
mod tests;
