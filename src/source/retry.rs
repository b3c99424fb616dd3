//! The retry decision, kept apart from the backoff timing.
//!
//! A response or a transport error is classified into a [`RetryAction`]; the client's loop
//! waits an exponentially growing delay with full jitter (a uniform draw in `[0, delay]`, so
//! clients that recover together do not overload the server again), or what `Retry-After`
//! asks for, and stops at the configured attempts or total time.

use std::time::Duration;

use reqwest::StatusCode;

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
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "response body broken"
    } else {
        "transport error"
    };
    RetryAction::Retry { reason: kind.to_string(), after: None }
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
}
