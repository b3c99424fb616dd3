//! The retry decision, kept apart from the backoff timing.
//!
//! A response or a transport error is classified into a [`RetryAction`]; a [`Backoff`]
//! then gives the wait before the next attempt: an exponentially growing delay with full
//! jitter (a uniform draw in `[0, delay]`, so clients that recover together do not overload
//! the server again), never less than what `Retry-After` asks for, until the configured
//! attempts or total time are used up. The jitter's random source is a [`Jitter`], which
//! tests replace with a fixed draw.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use rand::Rng;
use reqwest::StatusCode;
use tokio::time::Instant;

use crate::config::RetryConfig;

/// What to do after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAction {
    /// Transient: try again, after at least the given server-requested delay if any.
    Retry {
        /// Why, for the log.
        reason: String,
        /// The delay the server asked for (`Retry-After`).
        after: Option<Duration>,
    },
    /// Permanent: fail now.
    DontRetry,
}

/// Classifies an HTTP status: 408, 429 and 5xx (but 501) are transient.
///
/// ```
/// # use cecsync::source::retry::{classify_status, RetryAction};
/// # use reqwest::StatusCode;
/// assert!(matches!(classify_status(StatusCode::TOO_MANY_REQUESTS, None), RetryAction::Retry { .. }));
/// assert_eq!(classify_status(StatusCode::BAD_REQUEST, None), RetryAction::DontRetry);
/// assert_eq!(classify_status(StatusCode::NOT_IMPLEMENTED, None), RetryAction::DontRetry);
/// ```
pub fn classify_status(status: StatusCode, retry_after: Option<Duration>) -> RetryAction {
    let transient = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED);
    if transient {
        RetryAction::Retry { reason: format!("HTTP {status}"), after: retry_after }
    } else {
        RetryAction::DontRetry
    }
}

/// Classifies a transport error: timeouts, connection failures and broken bodies are
/// transient; a request that could not even be built, and a server certificate that TLS
/// refused, are not.
pub fn classify_transport(err: &reqwest::Error) -> RetryAction {
    if err.is_builder() || err.is_redirect() || is_certificate_error(err) {
        return RetryAction::DontRetry;
    }
    RetryAction::Retry { reason: transport_kind(err).to_string(), after: None }
}

/// What kind of transport failure `err` is, for messages.
pub fn transport_kind(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "response body broken"
    } else if err.is_builder() || err.is_redirect() {
        "request could not be sent"
    } else {
        "connection closed without an answer"
    }
}

/// Whether TLS refused a certificate somewhere in the causes of `err`: a permanent failure,
/// since every retry meets the same certificate.
pub fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            );
        }
        // An I/O error's `source` skips the error it wraps, so look at that one first.
        current = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// Parses `Retry-After` given in seconds (the HTTP-date form is read as "no hint").
///
/// ```
/// # use cecsync::source::retry::parse_retry_after;
/// assert_eq!(parse_retry_after("3"), Some(std::time::Duration::from_secs(3)));
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
/// ```
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s.min(300)))
}

/// Full jitter: a uniform draw in `[0, delay]`, but never less than the server's hint.
pub fn jittered(delay: Duration, hint: Option<Duration>, unit: f64) -> Duration {
    let drawn = delay.mul_f64(unit.clamp(0.0, 1.0));
    match hint {
        Some(h) => h.max(drawn),
        None => drawn,
    }
}

/// The random source of the jitter: each call draws a number in `[0, 1]`.
#[derive(Clone)]
pub struct Jitter(Arc<dyn Fn() -> f64 + Send + Sync>);

impl Jitter {
    /// Uniform draws from the thread's random generator (the default).
    pub fn random() -> Self {
        Self(Arc::new(|| rand::rng().random::<f64>()))
    }

    /// Draws from `draw`, e.g. a constant to make the waits predictable.
    pub fn from_fn(draw: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(draw))
    }

    fn draw(&self) -> f64 {
        (self.0)()
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::random()
    }
}

impl fmt::Debug for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Jitter")
    }
}

/// The waits between the attempts at one request; it starts counting the total time when
/// it is created, before the first attempt.
#[derive(Debug)]
pub struct Backoff {
    schedule: ExponentialBackoff,
    jitter: Jitter,
    started: Instant,
    max_elapsed: Duration,
}

impl Backoff {
    /// The schedule of `config`, jittered by `jitter`.
    pub fn new(config: &RetryConfig, jitter: Jitter) -> Self {
        let schedule = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(config.initial_backoff_ms))
            .with_max_delay(Duration::from_millis(
                config.max_backoff_ms.max(config.initial_backoff_ms),
            ))
            .with_max_times(config.max_attempts.saturating_sub(1))
            .build();
        Self {
            schedule,
            jitter,
            started: Instant::now(),
            max_elapsed: Duration::from_secs(config.max_elapsed_secs),
        }
    }

    /// The wait before the next attempt, at least `hint` (the server's `Retry-After`); `None`
    /// when the attempts are used up or the wait would end past the total time allowed.
    pub fn next_wait(&mut self, hint: Option<Duration>) -> Option<Duration> {
        let delay = self.schedule.next()?;
        let wait = jittered(delay, hint, self.jitter.draw());
        (self.started.elapsed() + wait <= self.max_elapsed).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jitter stays in [0, delay] and never undercuts Retry-After.
    #[test]
    fn full_jitter_bounds() {
        let d = Duration::from_millis(800);
        assert_eq!(jittered(d, None, 0.0), Duration::ZERO);
        assert_eq!(jittered(d, None, 1.0), d);
        assert_eq!(jittered(d, None, 0.5), Duration::from_millis(400));
        assert_eq!(jittered(d, Some(Duration::from_secs(2)), 0.5), Duration::from_secs(2));
    }

    /// A refused certificate is found inside the I/O error that carries it, and only a
    /// certificate problem counts.
    #[test]
    fn certificate_errors_are_found_in_the_causes() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
        assert!(is_certificate_error(&wrapped));
        let other =
            std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert!(!is_certificate_error(&other));
        assert!(!is_certificate_error(&std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
    }

    /// Permanent statuses are not retried; transient ones carry the server's hint.
    #[test]
    fn statuses_are_classified() {
        for s in [400u16, 401, 403, 404, 501] {
            assert_eq!(
                classify_status(StatusCode::from_u16(s).unwrap(), None),
                RetryAction::DontRetry
            );
        }
        let hint = Some(Duration::from_secs(1));
        assert_eq!(
            classify_status(StatusCode::TOO_MANY_REQUESTS, hint),
            RetryAction::Retry { reason: "HTTP 429 Too Many Requests".into(), after: hint }
        );
        assert!(matches!(
            classify_status(StatusCode::BAD_GATEWAY, None),
            RetryAction::Retry { .. }
        ));
    }

    fn config(max_attempts: usize, max_elapsed_secs: u64) -> RetryConfig {
        RetryConfig {
            max_attempts,
            max_elapsed_secs,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        }
    }

    fn millis(wait: Option<Duration>) -> Option<u128> {
        // The schedule multiplies in f32, which can add a few nanoseconds.
        wait.map(|w| (w + Duration::from_micros(1)).as_millis())
    }

    /// The waits double from the initial delay up to the cap, scaled by the jitter's draw,
    /// and stop after `max_attempts - 1` retries.
    #[tokio::test(start_paused = true)]
    async fn waits_grow_exponentially_with_full_jitter() {
        let mut full = Backoff::new(&config(7, 3600), Jitter::from_fn(|| 1.0));
        let waits: Vec<_> =
            std::iter::from_fn(|| full.next_wait(None)).map(Some).map(millis).collect();
        let want = [100, 200, 400, 800, 1000, 1000].map(Some);
        assert_eq!(waits, want);

        let mut half = Backoff::new(&config(7, 3600), Jitter::from_fn(|| 0.5));
        let waits: Vec<_> =
            std::iter::from_fn(|| half.next_wait(None)).map(Some).map(millis).collect();
        assert_eq!(waits, [50, 100, 200, 400, 500, 500].map(Some));

        let mut none = Backoff::new(&config(1, 3600), Jitter::from_fn(|| 1.0));
        assert_eq!(none.next_wait(None), None, "one attempt allows no retry");
    }

    /// Retry-After raises the wait above the jittered delay, never lowers it.
    #[tokio::test(start_paused = true)]
    async fn retry_after_is_a_floor() {
        let mut b = Backoff::new(&config(5, 3600), Jitter::from_fn(|| 0.0));
        assert_eq!(b.next_wait(Some(Duration::from_secs(2))), Some(Duration::from_secs(2)));
        assert_eq!(b.next_wait(None), Some(Duration::ZERO));
        let mut b = Backoff::new(&config(5, 3600), Jitter::from_fn(|| 1.0));
        assert_eq!(millis(b.next_wait(Some(Duration::from_millis(10)))), Some(100));
    }

    /// No wait may end past the total time allowed, counted from the first attempt.
    #[tokio::test(start_paused = true)]
    async fn the_total_time_caps_the_retries() {
        let mut b = Backoff::new(&config(100, 2), Jitter::from_fn(|| 1.0));
        assert_eq!(millis(b.next_wait(None)), Some(100));
        tokio::time::advance(Duration::from_millis(1850)).await;
        assert_eq!(b.next_wait(None), None, "200 ms more would end past 2 s");
        let mut b = Backoff::new(&config(100, 2), Jitter::from_fn(|| 0.0));
        assert_eq!(b.next_wait(Some(Duration::from_secs(3))), None, "Retry-After beyond the limit");
    }
}
