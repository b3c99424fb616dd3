//! Injected network and server faults: server errors, throttling, truncated bodies, slow
//! answers and connections closed without an answer.
//!
//! Each API request draws its fate from a seeded generator. A delay can come with any other
//! outcome; of the other faults at most one hits a request, tried in the order reset, error,
//! throttle, truncation. A reset marks the request's connection as broken: the next write
//! fails, and the socket is closed with a TCP reset before any answer leaves.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::simulator::Simulator;
use super::stats::Event;

/// How often each fault hits a request: rates from 0.0 (never) to 1.0 (always).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultOptions {
    /// HTTP 500, 502 or 503 with an HTML error page.
    pub error_rate: f64,
    /// HTTP 429 with `Retry-After: 1`.
    pub throttle_rate: f64,
    /// HTTP 200 whose body is cut in half.
    pub truncate_rate: f64,
    /// Answers held back for [`FaultOptions::delay`].
    pub delay_rate: f64,
    /// How long a delayed answer is held back.
    pub delay: Duration,
    /// Connections closed without an answer.
    pub reset_rate: f64,
}

/// A fault that replaces or spoils the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Reset,
    Error(StatusCode),
    Throttle,
    Truncate,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fate {
    delay: bool,
    fault: Option<Fault>,
}

/// Draws the fate of each request from a seeded generator.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    options: FaultOptions,
    rng: Mutex<StdRng>,
}

impl FaultInjector {
    /// An injector with the given rates; `seed` makes the sequence of fates repeatable.
    pub(crate) fn new(options: FaultOptions, seed: u64) -> Self {
        Self { options, rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0xfa17_5eed)) }
    }

    fn draw(&self) -> Fate {
        let o = &self.options;
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let mut hit = |rate: f64| rng.random::<f64>() < rate;
        let delay = hit(o.delay_rate);
        let fault = if hit(o.reset_rate) {
            Some(Fault::Reset)
        } else if hit(o.error_rate) {
            let codes = [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
            ];
            Some(Fault::Error(codes[rng.random_range(0..codes.len())]))
        } else if hit(o.throttle_rate) {
            Some(Fault::Throttle)
        } else if hit(o.truncate_rate) {
            Some(Fault::Truncate)
        } else {
            None
        };
        Fate { delay, fault }
    }
}

/// Middleware on the API routes that applies each request's fate.
pub(crate) async fn inject(
    State(sim): State<Arc<Simulator>>,
    ConnectInfo(connection): ConnectInfo<ConnectionHandle>,
    request: Request,
    next: Next,
) -> Response {
    let fate = sim.faults().draw();
    if fate.delay {
        sim.counters().record(Event::Delay);
        tokio::time::sleep(sim.faults().options.delay).await;
    }
    let Some(fault) = fate.fault else {
        return next.run(request).await;
    };
    match fault {
        Fault::Reset => {
            sim.counters().record(Event::Reset);
            connection.reset();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Fault::Error(status) => {
            sim.counters().record(Event::Error);
            let reason = status.canonical_reason().unwrap_or("Error");
            let page = format!(
                "<html><head><title>{code} {reason}</title></head><body><center><h1>{code} \
                 {reason}</h1></center><hr><center>nginx</center></body></html>",
                code = status.as_u16()
            );
            (status, Html(page)).into_response()
        }
        Fault::Throttle => {
            sim.counters().record(Event::Throttle);
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "Too Many Requests")
                .into_response()
        }
        Fault::Truncate => {
            sim.counters().record(Event::Truncation);
            let (mut parts, body) = next.run(request).await.into_parts();
            match axum::body::to_bytes(body, usize::MAX).await {
                Ok(bytes) => {
                    parts.headers.remove(header::CONTENT_LENGTH);
                    Response::from_parts(parts, Body::from(bytes.slice(..bytes.len() / 2)))
                }
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
    }
}

/// A handle on one connection that lets a request break it.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionHandle(Arc<AtomicBool>);

impl ConnectionHandle {
    /// Breaks the connection: nothing more is written, and it closes with a TCP reset.
    fn reset(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A TCP stream that a [`ConnectionHandle`] can break.
#[derive(Debug)]
pub(crate) struct ResettableStream {
    inner: TcpStream,
    broken: Arc<AtomicBool>,
}

impl ResettableStream {
    /// Wraps an accepted stream.
    pub(crate) fn new(inner: TcpStream) -> Self {
        Self { inner, broken: Arc::default() }
    }

    /// The handle that breaks this stream.
    pub(crate) fn handle(&self) -> ConnectionHandle {
        ConnectionHandle(self.broken.clone())
    }

    /// The error to answer with once broken; arranges for a reset when the socket closes.
    fn broken(&self) -> Option<io::Error> {
        self.broken.load(Ordering::SeqCst).then(|| {
            // Best effort: without it, the socket closes with a plain FIN.
            let _ = self.inner.set_zero_linger();
            io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by fault injection")
        })
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.broken() {
            Some(e) => Poll::Ready(Err(e)),
            None => Pin::new(&mut self.inner).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.broken() {
            Some(e) => Poll::Ready(Err(e)),
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.broken() {
            Some(e) => Poll::Ready(Err(e)),
            None => Pin::new(&mut self.inner).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::test_support::{send, start, Reply};
    use crate::sim::{SimOptions, SimStats};
    use serde_json::{json, Value};
    use std::time::Instant;

    /// Sends one query to a fresh simulator with `faults`; returns the reply or the
    /// transport error, how long it took and the simulator's counters.
    async fn run_with(faults: FaultOptions) -> (Result<Reply, reqwest::Error>, Duration, SimStats) {
        let options = SimOptions { records_per_month: 50, faults, ..SimOptions::default() };
        let sim = Arc::new(Simulator::new(options));
        let running = start(&sim).await;
        let body = json!({"beginTime": 1735660800000_i64, "endTime": 1738339199999_i64,
                          "tenantId": "202401150001", "authToken": "sim-token"});
        let started = Instant::now();
        let url = format!("{}/oifde/rest/api/queryRbtRecognitionResult", running.base_url);
        let reply = send(&url, &body).await;
        let elapsed = started.elapsed();
        let stats = sim.stats();
        running.shutdown().await;
        (reply, elapsed, stats)
    }

    /// Rate 1.0 of server errors gives a 5xx HTML page.
    #[tokio::test]
    async fn errors_answer_5xx_html() {
        let faults = FaultOptions { error_rate: 1.0, ..Default::default() };
        let (reply, _, stats) = run_with(faults).await;
        let reply = reply.unwrap();
        assert!([500, 502, 503].contains(&reply.status), "{}", reply.status);
        assert!(reply.body.starts_with(b"<html>"));
        assert_eq!((stats.faults.errors, stats.pages_served), (1, 0));
    }

    /// Rate 1.0 of throttling gives 429 with Retry-After: 1.
    #[tokio::test]
    async fn throttles_answer_429_with_retry_after() {
        let faults = FaultOptions { throttle_rate: 1.0, ..Default::default() };
        let (reply, _, stats) = run_with(faults).await;
        let reply = reply.unwrap();
        assert_eq!(reply.status, 429);
        assert_eq!(reply.headers["retry-after"], "1");
        assert_eq!(stats.faults.throttles, 1);
    }

    /// Rate 1.0 of truncation gives a 200 whose body is half a JSON document.
    #[tokio::test]
    async fn truncations_cut_the_body_in_half() {
        let faults = FaultOptions { truncate_rate: 1.0, ..Default::default() };
        let (reply, _, stats) = run_with(faults).await;
        let reply = reply.unwrap();
        assert_eq!(reply.status, 200);
        assert!(reply.body.len() > 1000);
        assert!(serde_json::from_slice::<Value>(&reply.body).is_err());
        assert_eq!(stats.faults.truncations, 1);
    }

    /// Rate 1.0 of delays holds the answer back for the delay, then answers normally.
    #[tokio::test]
    async fn delays_hold_the_answer_back() {
        let faults = FaultOptions {
            delay_rate: 1.0,
            delay: Duration::from_millis(300),
            ..Default::default()
        };
        let (reply, elapsed, stats) = run_with(faults).await;
        assert_eq!(reply.unwrap().status, 200);
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert_eq!((stats.faults.delays, stats.pages_served), (1, 1));
    }

    /// Rate 1.0 of resets closes the connection without any answer.
    #[tokio::test]
    async fn resets_close_without_an_answer() {
        let faults = FaultOptions { reset_rate: 1.0, ..Default::default() };
        let (reply, _, stats) = run_with(faults).await;
        assert!(reply.is_err(), "{:?}", reply.map(|r| r.status));
        assert_eq!(stats.faults.resets, 1);
    }

    /// The same seed draws the same sequence of fates.
    #[test]
    fn fates_are_repeatable() {
        let options = FaultOptions { error_rate: 0.3, delay_rate: 0.5, ..Default::default() };
        let draw = |seed| {
            let injector = FaultInjector::new(options.clone(), seed);
            (0..50).map(|_| injector.draw()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert!(
            draw(1).iter().any(|f| f.fault.is_some()) && draw(1).iter().any(|f| f.fault.is_none())
        );
    }
}
