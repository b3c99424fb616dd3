//! The control API (axum), on `[service] control_listen`, loopback by default:
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /healthz` | 200 while the process runs (never needs the token) |
//! | `GET /readyz` | 200 once the service holds the lease and the lake answers, else 503 |
//! | `GET /metrics` | Prometheus text |
//! | `GET /status` | JSON: every pipeline's months, freshness, errors and jobs |
//! | `GET /` | the status page (one embedded HTML file, no external assets) |
//! | `POST /backfill` | queues `{"pipeline", "from", "to", "refresh"}` (JSON, at most 120 months); 202 with its id |
//! | `GET /backfill/{id}` | the job: state, slices done of total, rows, errors |
//!
//! With `[service] control_token` set, every endpoint but `/healthz` needs
//! `Authorization: Bearer TOKEN`; the page itself may instead be opened as `/?token=TOKEN`
//! (its script then sends the header and removes the token from the address bar).
//!
//! `POST /backfill` writes, so it also refuses what a page of another site could send:
//! a body not declared `Content-Type: application/json` (415; a cross-site "simple"
//! request cannot declare it without a preflight, which this API does not answer) and a
//! request whose `Origin` is not the service's own (403).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
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
use crate::secret::constant_time_eq;
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

async fn authorize(State(service): State<Arc<Service>>, request: Request, next: Next) -> Response {
    let Some(token) = &service.engine.settings().service.control_token else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.expose().as_bytes()));
    let page_query = request.uri().path() == "/"
        && request.uri().query().is_some_and(|q| {
            reqwest::Url::parse(&format!("http://page/?{q}")).is_ok_and(|url| {
                url.query_pairs().any(|(k, v)| {
                    k == "token" && constant_time_eq(v.as_bytes(), token.expose().as_bytes())
                })
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

/// The most months one backfill may span (ten years).
pub const MAX_BACKFILL_MONTHS: i64 = 120;

/// Whether the request's body is declared as JSON. Browsers send a cross-site POST without
/// a preflight only as a "simple" request, whose content type cannot be JSON.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether the request comes from another origin than the service's own (the page it
/// serves): an `Origin` header that is not `http(s)://HOST` of the request. Requests
/// without an `Origin` (command-line clients) are not cross-origin.
fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin.to_str().ok(), host) {
        (Some(origin), Some(host)) => !["http", "https"]
            .iter()
            .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}://{host}"))),
        _ => true,
    }
}

async fn post_backfill(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if cross_origin(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "cross-origin requests are refused; queue backfills from the status page or the CLI",
        );
    }
    if !is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send the body as Content-Type: application/json: {BACKFILL_SHAPE}"),
        );
    }
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
    let months = i64::from(to.year() - from.year()) * 12 + i64::from(to.month())
        - i64::from(from.month())
        + 1;
    if months > MAX_BACKFILL_MONTHS {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "{from} to {to} is {months} months; a backfill spans at most \
                 {MAX_BACKFILL_MONTHS}: queue several"
            ),
        );
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Settings;
    use crate::engine::Engine;
    use crate::service::lease::{tenant_store, Backend, Holder, Lease};
    use crate::service::shutdown::Shutdown;

    /// The control API of a service that holds no lease, on a free loopback port.
    async fn serve(lake: &std::path::Path) -> String {
        let text = format!(
            "tenant_id = \"t\"\n[destination]\nurl = \"file://{}\"\n\
             [sources.oifde]\nbase_url = \"http://127.0.0.1:9\"\nauth_token = \"x\"\n",
            lake.display()
        );
        let path = std::path::Path::new("c.toml");
        let settings = Settings::parse(path, &text, &|_| None).unwrap();
        let engine = Arc::new(Engine::open(settings).unwrap());
        let lease = Lease::new(
            tenant_store(engine.store(), "t"),
            Backend::Terms,
            Holder::this_process(),
            Duration::from_secs(30),
        );
        let service = Arc::new(Service::new(engine, lease, Shutdown::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(service)).await });
        format!("http://{addr}")
    }

    async fn post(
        base: &str,
        content_type: Option<&str>,
        origin: Option<&str>,
        from: &str,
    ) -> (u16, String) {
        let body = json!({ "pipeline": "rbt_recognition", "from": from, "to": "2025-01" });
        let mut req =
            reqwest::Client::new().post(format!("{base}/backfill")).body(body.to_string());
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if let Some(origin) = origin {
            req = req.header(header::ORIGIN, origin);
        }
        let answer = req.send().await.unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }

    /// `POST /backfill` takes only JSON (a page elsewhere cannot send it as a simple
    /// request), only from the service's own origin or without one, and at most
    /// `MAX_BACKFILL_MONTHS` months. The service holds no lease, so a request that passes
    /// the checks is refused with 503 by the submission.
    #[tokio::test]
    async fn backfill_needs_json_from_its_own_origin_and_a_bounded_range() {
        let dir = tempfile::tempdir().unwrap();
        let base = serve(dir.path()).await;
        let json = Some("application/json");
        assert_eq!(post(&base, json, None, "2024-01").await.0, 503);
        let own = Some(base.as_str());
        let charset = Some("application/json; charset=utf-8");
        assert_eq!(post(&base, charset, own, "2024-01").await.0, 503);

        for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
            let (code, text) = post(&base, content_type, None, "2024-01").await;
            assert_eq!(code, 415, "{content_type:?}: {text}");
            assert!(text.contains("application/json"), "{text}");
        }
        for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
            let (code, text) = post(&base, json, Some(origin), "2024-01").await;
            assert_eq!(code, 403, "{origin}: {text}");
        }
        let (code, text) = post(&base, json, None, "2000-01").await;
        assert_eq!(code, 400, "{text}");
        assert!(text.contains("301 months") && text.contains("120"), "{text}");
        assert_eq!(post(&base, json, None, "2015-02").await.0, 503, "120 months are fine");
    }
}
