//! The HTTP client of one source: timeouts, TLS (system roots plus an optional CA bundle),
//! a bound on requests in flight, and retries of transient failures with exponential
//! backoff, full jitter and `Retry-After`.
//!
//! A failure is never turned into an empty page: the caller gets either the bytes of a
//! complete JSON body from a 2xx answer, or an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use tracing::warn;

use super::error::{excerpt, SourceError};
use super::retry::{classify_status, classify_transport, jittered, parse_retry_after, RetryAction};
use crate::config::{RetryConfig, Source};

/// Counters of one source's traffic.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Requests sent, retries included.
    pub requests: AtomicU64,
    /// Attempts that failed transiently and were retried.
    pub retries: AtomicU64,
    /// Answers received, by HTTP status.
    pub statuses: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl ClientStats {
    /// Answers received so far, by HTTP status.
    pub fn by_status(&self) -> std::collections::BTreeMap<u16, u64> {
        self.statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// An HTTP client bound to one configured source.
#[derive(Debug, Clone)]
pub struct SourceClient {
    name: String,
    base_url: String,
    http: reqwest::Client,
    retry: RetryConfig,
    permits: Arc<Semaphore>,
    stats: Arc<ClientStats>,
}

/// One failed attempt: the error and whether to try again.
struct Failure {
    action: RetryAction,
    error: SourceError,
}

impl SourceClient {
    /// Builds the client of a configured source.
    pub fn new(source: &Source) -> Result<Self, SourceError> {
        let setup =
            |problem: String| SourceError::Setup { source_name: source.name.clone(), problem };
        let mut builder = reqwest::Client::builder()
            .timeout(source.timeout)
            .connect_timeout(source.timeout.min(std::time::Duration::from_secs(10)))
            .pool_max_idle_per_host(source.max_concurrency.max(1))
            .user_agent(concat!("cecsync/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &source.ca_bundle {
            let pem = std::fs::read(path)
                .map_err(|e| setup(format!("cannot read ca_bundle {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                setup(format!("ca_bundle {} is not a PEM bundle: {e}", path.display()))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        if source.insecure_skip_verify {
            warn!(
                source = %source.name,
                "TLS certificate verification is OFF for this source (insecure_skip_verify). Use it for testing only."
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http =
            builder.build().map_err(|e| setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            name: source.name.clone(),
            base_url: source.base_url.clone(),
            http,
            retry: source.retry.clone(),
            permits: Arc::new(Semaphore::new(source.max_concurrency)),
            stats: Arc::new(ClientStats::default()),
        })
    }

    /// The configured name of the source.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full URL of `path` on this source.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }

    /// Traffic counters.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// POSTs `body` as JSON to `path` and returns the body of a 2xx answer that is complete
    /// JSON, retrying transient failures. 401 and 403 come back as
    /// [`SourceError::Unauthorized`] at once, so that the auth layer can refresh a token.
    pub async fn post_json(&self, path: &str, body: &[u8]) -> Result<Bytes, SourceError> {
        let url = self.url(path);
        let mut schedule = ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(self.retry.initial_backoff_ms))
            .with_max_delay(std::time::Duration::from_millis(self.retry.max_backoff_ms))
            .with_max_times(self.retry.max_attempts.saturating_sub(1))
            .with_total_delay(Some(std::time::Duration::from_secs(self.retry.max_elapsed_secs)))
            .build();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let failure = match self.attempt(&url, body).await {
                Ok(bytes) => return Ok(bytes),
                Err(failure) => failure,
            };
            let RetryAction::Retry { reason, after } = failure.action else {
                return Err(with_attempts(failure.error, attempts));
            };
            let Some(delay) = schedule.next() else {
                return Err(with_attempts(failure.error, attempts));
            };
            let wait = jittered(delay, after, rand::rng().random::<f64>());
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            warn!(source = %self.name, %url, attempt = attempts, %reason, wait_ms = wait.as_millis() as u64, "Retrying request after a transient failure.");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, url: &str, body: &[u8]) -> Result<Bytes, Failure> {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let transport = |e: reqwest::Error| Failure {
            action: classify_transport(&e),
            error: SourceError::Transport {
                url: url.to_string(),
                reason: "request failed".into(),
                detail: e.without_url().to_string(),
                attempts: 0,
            },
        };
        let response = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json; charset=UTF-8")
            .body(body.to_vec())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        *self
            .stats
            .statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(status.as_u16())
            .or_default() += 1;
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = response.bytes().await.map_err(transport)?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure {
                action: RetryAction::DontRetry,
                error: SourceError::Unauthorized {
                    source_name: self.name.clone(),
                    url: url.to_string(),
                    status: status.as_u16(),
                    message: excerpt(&bytes),
                },
            });
        }
        if !status.is_success() {
            return Err(Failure {
                action: classify_status(status, retry_after),
                error: SourceError::Http {
                    url: url.to_string(),
                    status: status.as_u16(),
                    body: excerpt(&bytes),
                    attempts: 0,
                },
            });
        }
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            return Err(Failure {
                action: RetryAction::Retry {
                    reason: "body is not complete JSON".into(),
                    after: None,
                },
                error: SourceError::Shape {
                    url: url.to_string(),
                    path: "$".into(),
                    problem: format!("the body is not complete JSON ({e}): {}", excerpt(&bytes)),
                },
            });
        }
        Ok(bytes)
    }
}

fn with_attempts(error: SourceError, n: usize) -> SourceError {
    match error {
        SourceError::Http { url, status, body, .. } => {
            SourceError::Http { url, status, body, attempts: n }
        }
        SourceError::Transport { url, reason, detail, .. } => {
            SourceError::Transport { url, reason, detail, attempts: n }
        }
        other => other,
    }
}
