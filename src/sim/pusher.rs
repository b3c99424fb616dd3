//! The simulator as the pushing platform: sends the messages of a [`PushLoad`] to the
//! receiver's three endpoints over real HTTP(S), as the platforms do (cec-api.md 1.3, 3).
//!
//! - Private Number CDRs and call events are signed with `X-AKSK` (or `X-WSSE`), with a
//!   fresh `Nonce` and `Created` on every attempt; success is HTTP 200.
//! - Outbound results carry no signature; success is HTTP 200 with
//!   `{"retCode":"0","retMsg":"success"}`.
//! - Anything else fails the attempt, and the message is re-sent after 1, 4, 9, 106, 203
//!   and 300 minutes (the Private Number schedule) multiplied by
//!   [`PusherOptions::time_scale`], up to [`PusherOptions::max_attempts`].
//!
//! ```no_run
//! # async fn run() -> Result<(), cecsync::sim::PusherError> {
//! use cecsync::secret::Secret;
//! use cecsync::sim::{PushPlan, PushTargets, Pusher, PusherOptions};
//! let targets = PushTargets {
//!     cdr_url: "http://127.0.0.1:9100/pn/cdr".into(),
//!     event_url: "http://127.0.0.1:9100/pn/event".into(),
//!     outbound_url: "http://127.0.0.1:9100/isales/results".into(),
//! };
//! let pusher = Pusher::new(PusherOptions::new(targets, "sim-app-key", Secret::new("sim-app-secret")))?;
//! let report = pusher.push(&PushPlan::default().load()).await;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use rand::distr::Alphanumeric;
use rand::Rng;
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::Value;

use super::push_data::{PushLoad, PushMessage};
use crate::push::aksk::{format_created, sign, TokenScheme};
use crate::push::kind::PushKind;
use crate::secret::Secret;

/// Minutes the platform waits before each re-push (cec-api.md 3.2); the last repeats.
const RETRY_MINUTES: [f64; 6] = [1.0, 4.0, 9.0, 106.0, 203.0, 300.0];
/// The documented content type of every push.
const JSON_UTF8: &str = "application/json;charset=UTF-8";
/// Length of a generated nonce.
const NONCE_LEN: usize = 32;

/// The receiver's URL of each interface (http or https).
#[derive(Debug, Clone)]
pub struct PushTargets {
    /// Private Number CDR endpoint.
    pub cdr_url: String,
    /// Private Number call-event endpoint.
    pub event_url: String,
    /// Outbound-result callback (with its secret path segment, if any).
    pub outbound_url: String,
}

/// How the pusher sends.
#[derive(Debug, Clone)]
pub struct PusherOptions {
    /// Where to send.
    pub targets: PushTargets,
    /// The `Username` of the signature.
    pub app_key: String,
    /// The APP_Secret that signs.
    pub app_secret: Secret,
    /// `X-AKSK` (current) or `X-WSSE` (older) signatures.
    pub scheme: TokenScheme,
    /// Messages in flight at once.
    pub concurrency: usize,
    /// Multiplier of the re-push schedule: 1.0 is the real one (minutes), 1e-5 turns a
    /// minute into 0.6 ms.
    pub time_scale: f64,
    /// Attempts per message at most (the platform makes 1 plus 6 re-pushes).
    pub max_attempts: u32,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Extra trusted root certificates (PEM), e.g. of a self-signed test receiver.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Accept any certificate (tests only).
    pub insecure_skip_verify: bool,
}

impl PusherOptions {
    /// Options with the platform's defaults: X-AKSK, 16 in flight, the real schedule and 7
    /// attempts, 30 s per attempt, the system roots.
    pub fn new(targets: PushTargets, app_key: impl Into<String>, app_secret: Secret) -> Self {
        Self {
            targets,
            app_key: app_key.into(),
            app_secret,
            scheme: TokenScheme::Aksk,
            concurrency: 16,
            time_scale: 1.0,
            max_attempts: 7,
            timeout: Duration::from_secs(30),
            ca_bundle_pem: None,
            insecure_skip_verify: false,
        }
    }
}

/// The pusher could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PusherError {
    /// The HTTP client could not be built (e.g. a CA bundle that is not PEM).
    #[error("cannot build the pusher's HTTP client: {problem}")]
    Client {
        /// What failed.
        problem: String,
    },
    /// An option is out of range.
    #[error("pusher option {option}: {problem}")]
    Option {
        /// The option.
        option: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// Why one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PushFailure {
    /// No answer: refused or reset connection, TLS failure.
    Connection,
    /// No answer within the timeout.
    Timeout,
    /// An answer other than HTTP 200.
    Status(u16),
    /// HTTP 200 from the outbound callback without `retCode` "0".
    Refused,
}

impl fmt::Display for PushFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connection => f.write_str("connection"),
            Self::Timeout => f.write_str("timeout"),
            Self::Status(status) => write!(f, "HTTP {status}"),
            Self::Refused => f.write_str("retCode not 0"),
        }
    }
}

/// Answer latencies of the attempts that got an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| {
            let last = samples.len().saturating_sub(1);
            samples.get((last as f64 * q).round() as usize).copied().unwrap_or_default()
        };
        Self { p50: at(0.5), p99: at(0.99), max: at(1.0) }
    }
}

/// What a push run achieved.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// Messages of the load.
    pub messages: usize,
    /// Messages that got a success answer.
    pub acknowledged: usize,
    /// Acknowledged messages that needed more than one attempt.
    pub retried: usize,
    /// Attempts made, re-pushes included.
    pub attempts: u64,
    /// Failed attempts by cause.
    pub failures: BTreeMap<PushFailure, u64>,
    /// Natural keys of the records of acknowledged messages, per interface.
    pub acknowledged_records: BTreeMap<PushKind, BTreeSet<String>>,
    /// Answer latencies.
    pub latency: Latency,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl PushReport {
    /// Acknowledged messages per second of the run.
    pub fn pushes_per_sec(&self) -> f64 {
        self.acknowledged as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

impl fmt::Display for PushReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "messages {} acknowledged {} (retried {}), attempts {}, {:.1} pushes/s over {:.2?}",
            self.messages,
            self.acknowledged,
            self.retried,
            self.attempts,
            self.pushes_per_sec(),
            self.elapsed
        )?;
        let Latency { p50, p99, max } = self.latency;
        writeln!(f, "answer latency p50 {p50:.2?} p99 {p99:.2?} max {max:.2?}")?;
        for (failure, count) in &self.failures {
            writeln!(f, "failed attempts, {failure}: {count}")?;
        }
        for (interface, keys) in &self.acknowledged_records {
            writeln!(f, "{}: {} distinct records acknowledged", interface.dataset(), keys.len())?;
        }
        Ok(())
    }
}

/// The outcome of one message.
struct Delivery<'a> {
    message: &'a PushMessage,
    acknowledged: bool,
    failures: Vec<PushFailure>,
    latencies: Vec<Duration>,
}

/// Sends push loads to a receiver.
#[derive(Debug)]
pub struct Pusher {
    options: PusherOptions,
    http: reqwest::Client,
}

impl Pusher {
    /// A pusher with `options`; fails on a bad CA bundle, an app key that cannot be sent
    /// in a header, no concurrency or a negative time scale.
    pub fn new(options: PusherOptions) -> Result<Self, PusherError> {
        let option = |option, problem| PusherError::Option { option, problem };
        if options.concurrency == 0 {
            return Err(option("concurrency", "must be at least 1"));
        }
        if !(options.time_scale.is_finite() && options.time_scale >= 0.0) {
            return Err(option("time_scale", "must be a finite number >= 0"));
        }
        if options.max_attempts == 0 {
            return Err(option("max_attempts", "must be at least 1"));
        }
        if sign(options.scheme, &options.app_key, &options.app_secret, "n", "c").is_err() {
            return Err(option("app_key", "contains characters a header cannot carry"));
        }
        let client = |problem: String| PusherError::Client { problem };
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .pool_max_idle_per_host(options.concurrency)
            .user_agent(concat!("cecsync-sim-pusher/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| client(format!("the CA bundle is not PEM: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        if options.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| client(e.to_string()))?;
        Ok(Self { options, http })
    }

    /// Pushes every message of `load`, [`PusherOptions::concurrency`] at a time, each
    /// until acknowledged or out of attempts.
    pub async fn push(&self, load: &PushLoad) -> PushReport {
        let started = Instant::now();
        let deliveries: Vec<Delivery<'_>> = futures::stream::iter(&load.messages)
            .map(|message| self.deliver(message))
            .buffer_unordered(self.options.concurrency)
            .collect()
            .await;
        let mut report = PushReport { messages: load.messages.len(), ..PushReport::default() };
        let mut latencies = Vec::new();
        for delivery in deliveries {
            report.attempts +=
                (delivery.failures.len() + usize::from(delivery.acknowledged)) as u64;
            for failure in &delivery.failures {
                *report.failures.entry(*failure).or_default() += 1;
            }
            latencies.extend(delivery.latencies);
            if delivery.acknowledged {
                report.acknowledged += 1;
                report.retried += usize::from(!delivery.failures.is_empty());
                let keys = report.acknowledged_records.entry(delivery.message.interface);
                keys.or_default().extend(delivery.message.keys.iter().cloned());
            }
        }
        report.latency = Latency::of(latencies);
        report.elapsed = started.elapsed();
        report
    }

    /// Sends `message` until it is acknowledged or out of attempts.
    async fn deliver<'a>(&self, message: &'a PushMessage) -> Delivery<'a> {
        let body = Bytes::from(serde_json::to_vec(&message.body).expect("JSON values serialize"));
        let mut delivery =
            Delivery { message, acknowledged: false, failures: Vec::new(), latencies: Vec::new() };
        for attempt in 0..self.options.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(self.retry_wait(attempt as usize - 1)).await;
            }
            let sent = Instant::now();
            let outcome = self.attempt(message.interface, body.clone()).await;
            if !matches!(outcome, Err(PushFailure::Connection | PushFailure::Timeout)) {
                delivery.latencies.push(sent.elapsed());
            }
            match outcome {
                Ok(()) => {
                    delivery.acknowledged = true;
                    break;
                }
                Err(failure) => delivery.failures.push(failure),
            }
        }
        delivery
    }

    /// The wait before re-push number `retry` (0-based).
    fn retry_wait(&self, retry: usize) -> Duration {
        let minutes = RETRY_MINUTES[retry.min(RETRY_MINUTES.len() - 1)];
        Duration::from_secs_f64(minutes * 60.0 * self.options.time_scale)
    }

    /// One attempt: a freshly signed POST and the check of its answer.
    async fn attempt(&self, interface: PushKind, body: Bytes) -> Result<(), PushFailure> {
        let targets = &self.options.targets;
        let url = match interface {
            PushKind::PrivateNumberCdr => &targets.cdr_url,
            PushKind::PrivateNumberEvent => &targets.event_url,
            PushKind::OutboundResult => &targets.outbound_url,
        };
        let mut request = self.http.post(url).header(CONTENT_TYPE, JSON_UTF8).body(body);
        if interface != PushKind::OutboundResult {
            let nonce: String =
                rand::rng().sample_iter(Alphanumeric).take(NONCE_LEN).map(char::from).collect();
            let created = format_created(Utc::now());
            let o = &self.options;
            let headers = sign(o.scheme, &o.app_key, &o.app_secret, &nonce, &created)
                .expect("the app key was checked by Pusher::new");
            for (name, value) in headers {
                request = request.header(name, value);
            }
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                PushFailure::Timeout
            } else {
                PushFailure::Connection
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let answer = response.bytes().await.map_err(transport)?;
        if status != StatusCode::OK {
            return Err(PushFailure::Status(status.as_u16()));
        }
        if interface == PushKind::OutboundResult {
            let answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
            if answer["retCode"] != "0" {
                return Err(PushFailure::Refused);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::sync::{Arc, Mutex};

    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::json;

    use super::super::push_data::record_key;
    use super::*;
    use crate::push::aksk::{PushVerifier, UsernameToken};
    use crate::sim::push_data::PushPlan;

    const APP_KEY: &str = "sim-app-key";
    const SECRET: &str = "sim-app-secret";

    /// What the stand-in receiver saw.
    #[derive(Default)]
    struct Seen {
        /// Every nonce of every signed attempt.
        nonces: Vec<String>,
        /// Bodies already answered once (the first attempt of a third of them fails).
        bodies: HashSet<Bytes>,
        /// Bodies answered with success, per interface.
        accepted: Vec<(PushKind, Value)>,
        /// Attempts failed on purpose.
        failed_on_purpose: usize,
    }

    /// A receiver on loopback that checks signatures with [`PushVerifier`] and fails the
    /// first attempt of a third of the messages with 503.
    struct StandIn {
        verifier: PushVerifier,
        seen: Mutex<Seen>,
    }

    impl StandIn {
        fn answer(&self, interface: PushKind, headers: &HeaderMap, body: Bytes) -> StatusCode {
            let verified = if interface == PushKind::OutboundResult {
                None
            } else {
                let token = UsernameToken::from_headers(headers).expect("a token");
                self.seen.lock().unwrap().nonces.push(token.nonce);
                match self.verifier.check(headers, Utc::now()) {
                    Ok(verified) => Some(verified),
                    Err(_) => return StatusCode::UNAUTHORIZED,
                }
            };
            let mut seen = self.seen.lock().unwrap();
            if seen.bodies.insert(body.clone()) && crc32fast::hash(&body).is_multiple_of(3) {
                seen.failed_on_purpose += 1;
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            seen.accepted.push((interface, serde_json::from_slice(&body).unwrap()));
            if let Some(verified) = verified {
                self.verifier.remember(&verified);
            }
            StatusCode::OK
        }
    }

    /// Serves a stand-in receiver whose app secret is `secret`; returns it and the targets.
    async fn stand_in(secret: &str) -> (Arc<StandIn>, PushTargets) {
        let apps = BTreeMap::from([(APP_KEY.to_string(), Secret::new(secret))]);
        let state = Arc::new(StandIn {
            verifier: PushVerifier::new(apps, Duration::from_secs(300)),
            seen: Mutex::default(),
        });
        let route = |interface| {
            let state = state.clone();
            post(move |headers: HeaderMap, body: Bytes| async move {
                let status = state.answer(interface, &headers, body);
                let ok = json!({"retCode": "0", "retMsg": "success"});
                match (status, interface) {
                    (StatusCode::OK, PushKind::OutboundResult) => {
                        (status, Json(ok)).into_response()
                    }
                    _ => status.into_response(),
                }
            })
        };
        let app = Router::new()
            .route("/pn/cdr", route(PushKind::PrivateNumberCdr))
            .route("/pn/event", route(PushKind::PrivateNumberEvent))
            .route("/isales/s3cret/results", route(PushKind::OutboundResult));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let targets = PushTargets {
            cdr_url: format!("{base}/pn/cdr"),
            event_url: format!("{base}/pn/event"),
            outbound_url: format!("{base}/isales/s3cret/results"),
        };
        (state, targets)
    }

    fn options(targets: PushTargets) -> PusherOptions {
        PusherOptions {
            concurrency: 8,
            time_scale: 1e-5,
            ..PusherOptions::new(targets, APP_KEY, Secret::new(SECRET))
        }
    }

    fn plan() -> PushPlan {
        PushPlan {
            messages: 40,
            max_cdrs_per_message: 50,
            duplicate_rate: 0.15,
            ..PushPlan::default()
        }
    }

    /// Every message ends acknowledged although some first attempts fail; re-pushes are
    /// re-signed with fresh nonces; the acknowledged records are the truth; duplicates
    /// reach the receiver. Both signature schemes.
    #[tokio::test]
    async fn every_message_is_acknowledged_after_retries() {
        for scheme in [TokenScheme::Aksk, TokenScheme::Wsse] {
            let (receiver, targets) = stand_in(SECRET).await;
            let pusher = Pusher::new(PusherOptions { scheme, ..options(targets) }).unwrap();
            let load = plan().load();
            let report = pusher.push(&load).await;

            let seen = receiver.seen.lock().unwrap();
            assert_eq!(report.acknowledged, load.messages.len(), "{report}");
            assert!(seen.failed_on_purpose > 0);
            assert_eq!(report.retried, seen.failed_on_purpose);
            assert_eq!(
                report.failures,
                BTreeMap::from([(PushFailure::Status(503), seen.failed_on_purpose as u64)])
            );
            assert_eq!(report.attempts, (load.messages.len() + seen.failed_on_purpose) as u64);

            let nonces: HashSet<&String> = seen.nonces.iter().collect();
            assert_eq!(nonces.len(), seen.nonces.len(), "a nonce was sent twice");
            let signed = load.messages.iter().filter(|m| m.interface != PushKind::OutboundResult);
            assert!(seen.nonces.len() > signed.count());

            for (interface, truth) in &load.truth {
                let truth: BTreeSet<String> = truth.keys().cloned().collect();
                assert_eq!(report.acknowledged_records[interface], truth, "{interface}");
            }
            let received: Vec<String> = seen
                .accepted
                .iter()
                .flat_map(|(interface, body)| match interface {
                    PushKind::PrivateNumberCdr => body["feeLst"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| record_key(*interface, r))
                        .collect(),
                    PushKind::PrivateNumberEvent => vec![record_key(*interface, body)],
                    PushKind::OutboundResult => {
                        body.as_array().unwrap().iter().map(|r| record_key(*interface, r)).collect()
                    }
                })
                .collect();
            let distinct: usize = load.truth.values().map(BTreeMap::len).sum();
            assert!(received.len() > distinct, "no duplicate reached the receiver");
            assert_eq!(received.iter().collect::<HashSet<_>>().len(), distinct);
            assert!(
                report.latency.p50 <= report.latency.p99
                    && report.latency.p99 <= report.latency.max
            );
        }
    }

    /// A wrong secret gets 401 on every attempt, and the report says so.
    #[tokio::test]
    async fn a_wrong_secret_is_never_acknowledged() {
        let (_receiver, targets) = stand_in("another-secret").await;
        let pusher = Pusher::new(PusherOptions { max_attempts: 3, ..options(targets) }).unwrap();
        let plan = PushPlan { messages: 2, duplicate_rate: 0.0, ..plan() };
        let report = pusher.push(&plan.load()).await;
        assert_eq!(report.failures[&PushFailure::Status(401)], 12);
        assert_eq!(report.acknowledged, 2, "only the unsigned outbound callbacks pass");
        let unavailable = report.failures.get(&PushFailure::Status(503)).copied().unwrap_or(0);
        assert_eq!(report.attempts, 12 + 2 + unavailable);
        assert!(!report.acknowledged_records.contains_key(&PushKind::PrivateNumberCdr));
    }

    /// An unreachable receiver counts as a connection failure on each of the attempts.
    #[tokio::test]
    async fn an_unreachable_receiver_is_retried() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", closed.local_addr().unwrap());
        drop(closed);
        let targets =
            PushTargets { cdr_url: url.clone(), event_url: url.clone(), outbound_url: url };
        let pusher = Pusher::new(PusherOptions { max_attempts: 2, ..options(targets) }).unwrap();
        let plan = PushPlan { messages: 1, duplicate_rate: 0.0, ..plan() };
        let report = pusher.push(&plan.load()).await;
        assert_eq!(report.acknowledged, 0);
        assert_eq!(report.failures, BTreeMap::from([(PushFailure::Connection, 6)]));
        assert!(report.to_string().contains("connection: 6"), "{report}");
    }

    /// The re-push waits follow the platform schedule, scaled.
    #[test]
    fn retry_waits_follow_the_schedule() {
        let targets = PushTargets {
            cdr_url: String::new(),
            event_url: String::new(),
            outbound_url: String::new(),
        };
        let pusher = Pusher::new(PusherOptions { time_scale: 1.0, ..options(targets) }).unwrap();
        let waits: Vec<u64> = (0..7).map(|r| pusher.retry_wait(r).as_secs()).collect();
        assert_eq!(waits, [60, 240, 540, 6360, 12180, 18000, 18000]);
        let bad = PusherOptions { concurrency: 0, ..pusher.options.clone() };
        assert!(Pusher::new(bad).unwrap_err().to_string().contains("concurrency"));
    }
}
