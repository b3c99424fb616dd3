//! The control API (axum), on `[service] control_listen`, loopback by default:
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /healthz` | 200 while the process runs (never needs the token) |
//! | `GET /readyz` | 200 once the service holds the lease and the lake answers, else 503 |
//! | `GET /metrics` | Prometheus text |
//! | `GET /status` | JSON: every pipeline's months, freshness, errors and jobs |
//! | `GET /` | the status page (one embedded HTML file, no external assets) |
//! | `POST /backfill` | queues `{"pipeline", "from", "to", "refresh"}`; 202 with its id |
//! | `GET /backfill/{id}` | the job: state, slices done of total, rows, errors |
//!
//! With `[service] control_token` set, every endpoint but `/healthz` needs
//! `Authorization: Bearer TOKEN`; the page itself may instead be opened as `/?token=TOKEN`
//! (its script then sends the header and removes the token from the address bar).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::context::Service;
use super::executor::SubmitError;
use super::jobs::{JobKind, JobRequest};
use super::status::status;
use crate::calendar::Month;
use crate::sink::store::probe;
use crate::telemetry;

/// The status page: HTML, CSS and script in one file, built into the binary.
const PAGE: &str = include_str!("status.html");

/// The routes, with the token check on all but `/healthz`.
pub fn router(service: Arc<Service>) -> Router {
    let protected = Router::new()
        .route("/", get(page))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .route("/backfill", post(post_backfill))
        .route("/backfill/{id}", get(get_backfill))
        .route_layer(middleware::from_fn_with_state(service.clone(), authorize));
    Router::new().route("/healthz", get(healthz)).merge(protected).with_state(service)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Compares without stopping at the first difference, so timing tells nothing.
fn same_token(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn authorize(State(service): State<Arc<Service>>, request: Request, next: Next) -> Response {
    let Some(token) = &service.engine.settings().service.control_token else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same_token(t.trim(), token.expose()));
    let page_query = request.uri().path() == "/"
        && request.uri().query().is_some_and(|q| {
            reqwest::Url::parse(&format!("http://page/?{q}")).is_ok_and(|url| {
                url.query_pairs().any(|(k, v)| k == "token" && same_token(&v, token.expose()))
            })
        });
    if bearer || page_query {
        return next.run(request).await;
    }
    let mut response = error(StatusCode::UNAUTHORIZED, "send Authorization: Bearer TOKEN");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

async fn healthz(State(service): State<Arc<Service>>) -> Response {
    Json(json!({
        "status": "ok",
        "name": "cecsync",
        "service": service.lease.holder().service_id,
    }))
    .into_response()
}

async fn readyz(State(service): State<Arc<Service>>) -> Response {
    if service.shutdown.is_stopping() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    if !service.is_leader() {
        let reason = match service.lease.current().await {
            Ok(Some(lease)) => {
                format!(
                    "waiting for the lake's lease, held by {} until {}",
                    lease.holder, lease.expires_at
                )
            }
            _ => "waiting for the lake's lease".to_string(),
        };
        return error(StatusCode::SERVICE_UNAVAILABLE, reason);
    }
    let engine = &service.engine;
    if let Err(e) = probe(engine.store().as_ref(), &engine.settings().destination).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    Json(json!({ "ready": true })).into_response()
}

async fn metrics(State(service): State<Arc<Service>>) -> Response {
    // Refreshes the freshness gauges; a lake that cannot be read shows in /readyz.
    let _ = status(&service).await;
    let engine = &service.engine;
    for name in engine.settings().sources.keys() {
        if let Some(client) = engine.client(name) {
            for (code, count) in client.stats().by_status() {
                let code = code.to_string();
                let labels = [("source", name.as_str()), ("status", code.as_str())];
                service.telemetry.set(telemetry::SOURCE_REQUESTS, &labels, count as f64);
            }
            let retries = client.stats().retries.load(std::sync::atomic::Ordering::Relaxed);
            service.telemetry.set(telemetry::SOURCE_RETRIES, &[("source", name)], retries as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        service.telemetry.render(),
    )
        .into_response()
}

async fn status_json(State(service): State<Arc<Service>>) -> Response {
    match status(&service).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// What `POST /backfill` expects, for error messages.
const BACKFILL_SHAPE: &str =
    r#"{"pipeline": "NAME", "from": "YYYY-MM", "to": "YYYY-MM", "refresh": false}"#;

/// The body of `POST /backfill`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody {
    pipeline: String,
    from: String,
    to: String,
    #[serde(default)]
    refresh: bool,
}

async fn post_backfill(State(service): State<Arc<Service>>, body: axum::body::Bytes) -> Response {
    let body: BackfillBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e}; send {BACKFILL_SHAPE}")),
    };
    let parsed = body.from.parse::<Month>().map_err(|e| format!("from: {e}")).and_then(|from| {
        body.to.parse::<Month>().map(|to| (from, to)).map_err(|e| format!("to: {e}"))
    });
    let (from, to) = match parsed {
        Ok(range) => range,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let req = JobRequest {
        kind: JobKind::Backfill,
        pipeline: body.pipeline,
        range: Some((from, to)),
        refresh: body.refresh,
        occurrence: None,
    };
    match service.submit(req) {
        Ok(id) => (
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "status_url": format!("/backfill/{id}") })),
        )
            .into_response(),
        Err(e @ (SubmitError::Stopping | SubmitError::NotLeader)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn get_backfill(State(service): State<Arc<Service>>, Path(id): Path<u64>) -> Response {
    match service.jobs.get(id) {
        Some(job) => Json(job).into_response(),
        None => {
            error(StatusCode::NOT_FOUND, format!("no job {id} (the service keeps the last 200)"))
        }
    }
}
