//! The push receivers (axum): check a push, spool its records, then answer.
//!
//! | path (configurable) | interface | checks | success |
//! |---|---|---|---|
//! | `[push.privatenumber] cdr_path`, `event_path` | Private Number CDRs (3.2) and call events (3.3), told apart by `eventType` | `X-AKSK` or `X-WSSE` UsernameToken of a configured app, `Created` within the skew window, nonce not replayed | 200, empty body |
//! | `[push.outbound_results] path` `/` secret | iSales outbound results (3.1) | peer in `allow_ips`, the secret path segment | 200 `{"retCode":"0","retMsg":"success"}` |
//!
//! The success answer is sent only once the push's records are fsynced in the spool; a
//! failure to spool answers 503, so the platform pushes again. A failed check answers 401;
//! a body that is not JSON of the documented shape 400 (more than 50 CDRs, an object where
//! an array is expected, an unknown `eventType`); a content type other than JSON 415; a body
//! over `push.max_body_bytes` 413. Nothing is spooled then. A `callin` event in `Block` mode
//! expects call-control instructions, which a data receiver must not give: it is refused
//! with 403 and a log line saying to configure the app in `Notify` mode.
//!
//! Logs name the interface, the peer and the reason, never a secret: not the app secret,
//! not the digest, not the request path (which holds the callback's secret segment).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::IncomingStream;
use axum::Router;
use chrono::Utc;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tracing::{debug, error, warn};

use super::aksk::PushVerifier;
use super::kind::{PushKind, SpooledPush};
use super::spool::Spool;
use crate::config::{OutboundPush, PushSettings};
use crate::secret::constant_time_eq;
use crate::telemetry::{Telemetry, PUSH_NONCES, PUSH_RECORDS, PUSH_REQUESTS, PUSH_SPOOL_SYNCS};
use crate::tls::TlsListener;

/// Most CDRs one message may carry (`feeLst` is FeeInfo[1-50]).
pub const MAX_CDRS_PER_MESSAGE: usize = 50;

/// The call events a receiver accepts (cec-api.md 3.3).
const EVENT_TYPES: &[&str] =
    &["callin", "callout", "alerting", "answer", "disconnect", "collectInfo"];

/// The address a connection comes from, for the outbound callback's allow-list.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener<TcpListener>>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener<TcpListener>>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// Everything the receivers share.
pub struct Receivers {
    spool: Spool,
    verifier: Option<PushVerifier>,
    outbound: Option<OutboundPush>,
    telemetry: Arc<Telemetry>,
}

/// A refused push: its status and the reason (logged, and sent back).
struct Refusal {
    status: StatusCode,
    reason: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self { status, reason: reason.into() }
    }
}

impl Receivers {
    /// The receivers of `settings`, spooling into `spool`, counting in `telemetry`.
    pub fn new(settings: &PushSettings, spool: Spool, telemetry: Arc<Telemetry>) -> Self {
        let verifier = settings
            .privatenumber
            .as_ref()
            .map(|p| PushVerifier::new(p.apps.clone(), p.max_clock_skew));
        Self { spool, verifier, outbound: settings.outbound_results.clone(), telemetry }
    }

    /// The routes of the configured receivers, with the body limit of `settings`. Serve it
    /// with `into_make_service_with_connect_info::<PeerAddr>()`.
    pub fn router(self: Arc<Self>, settings: &PushSettings) -> Router {
        let mut router = Router::new();
        if let Some(p) = &settings.privatenumber {
            router = router
                .route(&p.cdr_path, post(privatenumber))
                .route(&p.event_path, post(privatenumber));
        }
        if let Some(o) = &settings.outbound_results {
            router = match &o.path_secret {
                Some(_) => router.route(
                    &format!("{}/{{segment}}", o.path.trim_end_matches('/')),
                    post(outbound),
                ),
                None => router.route(&o.path, post(outbound)),
            };
        }
        router.layer(DefaultBodyLimit::max(settings.max_body_bytes)).with_state(self)
    }

    /// Spools `records_json` (a JSON array of `count` records) of `kind`; the error is the
    /// refusal to answer.
    async fn spool(&self, kind: PushKind, records_json: &str, count: usize) -> Result<(), Refusal> {
        let entry = SpooledPush::encode(kind, Utc::now().timestamp_millis(), records_json);
        self.spool.append(entry).await.map_err(|e| {
            error!(interface = %kind, error = %e, "Push not spooled; answering 503 so that it is pushed again.");
            Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "the push could not be stored; push it again")
        })?;
        self.telemetry.add(PUSH_RECORDS, &[("interface", &kind.to_string())], count as f64);
        self.telemetry.set(PUSH_SPOOL_SYNCS, &[], self.spool.stats().syncs as f64);
        Ok(())
    }

    /// Counts and logs the outcome of a push of `interface` from `peer`.
    fn outcome(&self, interface: &str, peer: SocketAddr, result: &Result<(), Refusal>) {
        // A failed check is worth a warning; bad input a debug line; a server error was
        // logged where it happened.
        let outcome = match result {
            Ok(()) => "accepted".to_string(),
            Err(Refusal { status, reason }) => {
                match status.as_u16() {
                    401 | 403 => {
                        warn!(interface, %peer, status = status.as_u16(), %reason, "Push refused.")
                    }
                    400..=499 => {
                        debug!(interface, %peer, status = status.as_u16(), %reason, "Push refused.")
                    }
                    _ => {}
                }
                status.as_u16().to_string()
            }
        };
        self.telemetry.add(PUSH_REQUESTS, &[("interface", interface), ("outcome", &outcome)], 1.0);
    }
}

/// A JSON content type, or none (the Private Number pushes send
/// `application/json;charset=UTF-8`).
fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(value) = headers.get(CONTENT_TYPE) else { return Ok(()) };
    let media =
        value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "application/json" || media == "text/json" || media.ends_with("+json") {
        return Ok(());
    }
    Err(Refusal::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("content type '{media}' is not JSON: send application/json;charset=UTF-8"),
    ))
}

/// A Private Number push: `{"eventType": ..., "feeLst": [...]}` or `{"eventType": ..., "statusInfo": {...}}`.
#[derive(Deserialize)]
struct PrivateNumberBody<'a> {
    #[serde(rename = "eventType")]
    event_type: String,
    #[serde(rename = "feeLst", borrow, default)]
    fee_list: Option<&'a RawValue>,
    #[serde(rename = "statusInfo", borrow, default)]
    status_info: Option<&'a RawValue>,
}

async fn privatenumber(
    State(receivers): State<Arc<Receivers>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = match body_of(body) {
        Ok(body) => receive_privatenumber(&receivers, &headers, &body).await,
        Err(refusal) => Err(refusal),
    };
    let interface = match &result {
        Ok((kind, _)) => kind.to_string(),
        Err(_) => "privatenumber".to_string(),
    };
    let result = result.map(|_| ());
    receivers.outcome(&interface, peer, &result);
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(refusal) => (refusal.status, refusal.reason).into_response(),
    }
}

async fn receive_privatenumber(
    receivers: &Receivers,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(PushKind, usize), Refusal> {
    check_content_type(headers)?;
    let verifier = receivers.verifier.as_ref().ok_or_else(|| {
        Refusal::new(StatusCode::NOT_FOUND, "no Private Number receiver is configured")
    })?;
    let verified = verifier
        .check(headers, Utc::now())
        .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let parsed: PrivateNumberBody = serde_json::from_slice(body).map_err(|e| {
        Refusal::new(StatusCode::BAD_REQUEST, format!("the body is not a Private Number push: {e}"))
    })?;
    let (kind, records, count) = match parsed.event_type.as_str() {
        "fee" => {
            let list = parsed.fee_list.ok_or_else(|| {
                Refusal::new(StatusCode::BAD_REQUEST, "a fee push carries no feeLst")
            })?;
            let count = count_objects(list, "feeLst")?;
            if count == 0 || count > MAX_CDRS_PER_MESSAGE {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "feeLst holds {count} CDRs; a message carries 1 to {MAX_CDRS_PER_MESSAGE}"
                    ),
                ));
            }
            (PushKind::PrivateNumberCdr, with_app_key(list, &verified.app_key)?, count)
        }
        event if EVENT_TYPES.contains(&event) => {
            let info = parsed.status_info.ok_or_else(|| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("a {event} event carries no statusInfo"),
                )
            })?;
            let record = event_record(event, info, &verified.app_key)?;
            (PushKind::PrivateNumberEvent, format!("[{record}]"), 1)
        }
        other => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "eventType '{other}' is unknown: expected fee or one of {}",
                    EVENT_TYPES.join(", ")
                ),
            ))
        }
    };
    receivers.spool(kind, &records, count).await?;
    verifier.remember(&verified);
    receivers.telemetry.set(PUSH_NONCES, &[], verifier.remembered() as f64);
    Ok((kind, count))
}

/// The record of a call event: its `statusInfo` with its `eventType` and the app key that
/// signed it. A `callin` in `Block` mode is refused.
fn event_record(event: &str, info: &RawValue, app_key: &str) -> Result<String, Refusal> {
    let mut fields: Map<String, Value> = serde_json::from_str(info.get())
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "statusInfo is not a JSON object"))?;
    let mode = fields.get("notifyMode").and_then(Value::as_str).unwrap_or_default();
    if event == "callin" && mode.eq_ignore_ascii_case("block") {
        error!(
            "A Block-mode callin event asks for call-control instructions (connect or close), \
             which a data receiver must not give: refused with 403. Configure the app's call \
             events in Notify mode for this receiver."
        );
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "Block-mode callin events are not served here: this receiver keeps data and gives no call-control instructions",
        ));
    }
    fields.insert("eventType".into(), Value::String(event.to_string()));
    fields.entry("appKey").or_insert_with(|| Value::String(app_key.to_string()));
    Ok(Value::Object(fields).to_string())
}

/// The CDRs of `list` (a JSON array of objects), each with an `appKey`: a CDR that sends
/// none gets the app key that signed the push (half of its key).
fn with_app_key(list: &RawValue, app_key: &str) -> Result<String, Refusal> {
    let cdrs: Vec<&RawValue> = serde_json::from_str(list.get())
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "feeLst is not a JSON array"))?;
    if cdrs.iter().all(|cdr| cdr.get().contains("\"appKey\"")) {
        return Ok(list.get().to_string());
    }
    let mut filled = Vec::with_capacity(cdrs.len());
    for cdr in cdrs {
        let mut fields: Map<String, Value> = serde_json::from_str(cdr.get()).map_err(|_| {
            Refusal::new(StatusCode::BAD_REQUEST, "a feeLst element is not a JSON object")
        })?;
        fields.entry("appKey").or_insert_with(|| Value::String(app_key.to_string()));
        filled.push(Value::Object(fields));
    }
    Ok(Value::Array(filled).to_string())
}

/// The number of elements of `list`, which must be a JSON array of objects.
fn count_objects(list: &RawValue, name: &str) -> Result<usize, Refusal> {
    let items: Vec<&RawValue> = serde_json::from_str(list.get()).map_err(|_| {
        Refusal::new(StatusCode::BAD_REQUEST, format!("{name} is not a JSON array"))
    })?;
    if let Some(i) = items.iter().position(|item| !item.get().starts_with('{')) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("{name}[{i}] is not a JSON object"),
        ));
    }
    Ok(items.len())
}

/// The body of an outbound-result answer.
fn outbound_answer(result: Result<(), Refusal>) -> Response {
    match result {
        Ok(()) => {
            (StatusCode::OK, axum::Json(serde_json::json!({"retCode": "0", "retMsg": "success"})))
                .into_response()
        }
        Err(refusal) => (
            refusal.status,
            axum::Json(serde_json::json!({"retCode": "1", "retMsg": refusal.reason})),
        )
            .into_response(),
    }
}

async fn outbound(
    State(receivers): State<Arc<Receivers>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    segment: Option<Path<String>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let segment = segment.map(|Path(segment)| segment);
    let result = match body_of(body) {
        Ok(body) => receive_outbound(&receivers, peer.ip(), segment.as_deref(), &body).await,
        Err(refusal) => Err(refusal),
    };
    receivers.outcome(&PushKind::OutboundResult.to_string(), peer, &result);
    outbound_answer(result)
}

/// The body, or the refusal of one that could not be read (over `push.max_body_bytes`: 413).
fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Refusal> {
    body.map_err(|rejection| {
        let reason = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                "the body is larger than push.max_body_bytes".to_string()
            }
            _ => format!("the body could not be read: {}", rejection.body_text()),
        };
        Refusal::new(rejection.status(), reason)
    })
}

async fn receive_outbound(
    receivers: &Receivers,
    peer: IpAddr,
    segment: Option<&str>,
    body: &[u8],
) -> Result<(), Refusal> {
    let settings = receivers.outbound.as_ref().ok_or_else(|| {
        Refusal::new(StatusCode::NOT_FOUND, "no outbound-result receiver is configured")
    })?;
    if !settings.allow_ips.allows(peer) {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            format!("{peer} is not in push.outbound_results.allow_ips"),
        ));
    }
    let matches = match (&settings.path_secret, segment) {
        (None, _) => true,
        (Some(secret), Some(segment)) => {
            constant_time_eq(secret.expose().as_bytes(), segment.as_bytes())
        }
        (Some(_), None) => false,
    };
    if !matches {
        return Err(Refusal::new(StatusCode::UNAUTHORIZED, "the path's secret segment is wrong"));
    }
    // The callback documents no header: any content type is taken if the body is JSON.
    let text = std::str::from_utf8(body)
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "the body is not UTF-8 text"))?;
    let list: &RawValue = serde_json::from_str(text)
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?;
    if !list.get().starts_with('[') {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON array of call results, not an object",
        ));
    }
    let count = count_objects(list, "the body")?;
    if count == 0 {
        return Ok(());
    }
    receivers.spool(PushKind::OutboundResult, list.get(), count).await
}
