//! The HTTP client of one source: timeouts, TLS (system roots plus an optional CA bundle),
//! a bound on requests in flight, an optional request rate, and retries of transient
//! failures with exponential backoff, full jitter and `Retry-After`.
//!
//! A failure is never turned into an empty page: the caller gets either the bytes of a
//! complete JSON body from a 2xx answer, or an error that says how many attempts were made
//! and how the last one failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::{Mutex, Semaphore};
use tracing::warn;

use super::error::{excerpt, SourceError};
use super::limiter::RateLimiter;
use super::outgoing::Outgoing;
use super::retry::{
    classify_status, classify_transport, is_certificate_error, parse_retry_after, transport_kind,
    Backoff, Jitter, RetryAction,
};
use super::signature::{RequestParts, Signer};
use crate::catalog::pipeline::RequestMethod;
use crate::config::{RetryConfig, Source};
use crate::secret::Secret;

/// The reason given when TLS refuses the server's certificate, with the fix.
const CERTIFICATE_REFUSED: &str = "the server's TLS certificate was refused (for a private or \
     on-premise CA, set ca_bundle to the PEM file of that CA)";

/// The Content-Type of every request body.
const JSON_CONTENT_TYPE: &str = "application/json; charset=UTF-8";

/// Counters of one source's traffic.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Requests sent, retries included.
    pub requests: AtomicU64,
    /// Attempts that failed transiently and were retried.
    pub retries: AtomicU64,
    /// Answers with HTTP 429.
    pub throttled: AtomicU64,
    /// Answers received, by HTTP status.
    pub statuses: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl ClientStats {
    /// Answers received so far, by HTTP status.
    pub fn by_status(&self) -> std::collections::BTreeMap<u16, u64> {
        self.statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// An HTTP client bound to one configured source. Clones share the connection pool, the
/// bound on requests in flight, the rate limiter, the counters and the login session.
#[derive(Debug, Clone)]
pub struct SourceClient {
    name: String,
    base_url: String,
    host: String,
    http: reqwest::Client,
    retry: RetryConfig,
    jitter: Jitter,
    permits: Arc<Semaphore>,
    limiter: Option<Arc<RateLimiter>>,
    stats: Arc<ClientStats>,
    session: Arc<Mutex<Option<Secret>>>,
}

/// A 2xx answer whose body passed the check of its request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
    /// The response headers (a CC-Gateway may rotate its session GUID in `Set-GUID`).
    pub headers: HeaderMap,
}

/// Why a 2xx answer whose body does not parse is retried.
const INCOMPLETE_BODY: &str = "body is not complete JSON";

/// A check of the body of a 2xx answer, which may read the body into a `T`. `Err` (with
/// what is wrong) means only that the body is not complete JSON: the answer is then asked
/// again. Whatever else the check finds wrong with a complete body belongs in its `T`.
pub type BodyCheck<'c, T> = &'c mut (dyn FnMut(&Bytes) -> Result<T, String> + Send);

/// What a [`BodyCheck`] read from a complete body, as the token login sees it.
pub trait CheckedBody {
    /// The API error code the body carried, if the check found one: a login token is then
    /// renewed once and the request sent again (an expired token may be reported so).
    fn error_code(&self) -> Option<&str> {
        None
    }
}

/// [`complete_json`] reads nothing.
impl CheckedBody for () {}

/// The check of every answer unless the caller gives its own: the body is one JSON value.
pub fn complete_json(body: &Bytes) -> Result<(), String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map(drop).map_err(|e| e.to_string())
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
            .connect_timeout(source.timeout.min(Duration::from_secs(10)))
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
        let host = host_header(&source.base_url)
            .ok_or_else(|| setup(format!("base_url '{}' names no host", source.base_url)))?;
        Ok(Self {
            name: source.name.clone(),
            base_url: source.base_url.clone(),
            host,
            http,
            retry: source.retry.clone(),
            jitter: Jitter::random(),
            permits: Arc::new(Semaphore::new(source.max_concurrency)),
            limiter: source
                .requests_per_second
                .map(|rate| Arc::new(RateLimiter::new(&source.name, rate))),
            stats: Arc::new(ClientStats::default()),
            session: Arc::default(),
        })
    }

    /// The same client with another random source for the backoff's jitter.
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
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

    /// The source's login session (the CC-Gateway GUID), shared by every pipeline on the
    /// source; a login holds the lock, so there is one at a time.
    pub fn session(&self) -> &Mutex<Option<Secret>> {
        &self.session
    }

    /// POSTs `body` as JSON to `path` and returns the body of a 2xx answer that is complete
    /// JSON, retrying transient failures until the configured attempts or time run out.
    /// 401 and 403 come back as [`SourceError::Unauthorized`] at once, so that the auth
    /// layer can refresh a token; other permanent failures come back at once too.
    pub async fn post_json(&self, path: &str, body: &[u8]) -> Result<Bytes, SourceError> {
        self.post_json_to(&self.url(path), &[], body).await
    }

    /// [`Self::post_json`] to a full URL (which may be on another host of the platform, such
    /// as a token endpoint), with extra request headers.
    pub async fn post_json_to(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Bytes, SourceError> {
        let request =
            Outgoing { method: RequestMethod::Post, url: url.to_string(), body: body.to_vec() };
        self.send(&request, headers, None).await.map(|reply| reply.body)
    }

    /// Sends `request` with `extra_headers` and returns its 2xx answer, retrying as
    /// [`Self::post_json`] does. Every request carries the JSON Content-Type; a `POST` its
    /// body. With `signer` (C2) each attempt is signed anew and carries `Host` (with the port
    /// the base URL names, even a default one) and `Authorization` exactly as signed, and a
    /// `POST` its `Content-Length`; a `GET` has no body, so its signature leaves
    /// `content-length` out of the signed headers. The signed `Host` is that of the base
    /// URL, so signed requests go to paths of the source.
    pub async fn send(
        &self,
        request: &Outgoing,
        extra_headers: &[(&str, &str)],
        signer: Option<&Signer>,
    ) -> Result<Reply, SourceError> {
        let checked = self.send_checked(request, extra_headers, signer, &mut complete_json).await;
        checked.map(|(reply, ())| reply)
    }

    /// [`Self::send`] with the body of each 2xx answer passed to `check` instead of the
    /// complete-JSON check: a body it refuses is retried as an incomplete one, and what it
    /// reads from the body it accepts comes back with the answer. A caller that parses the
    /// body anyway so reads it once.
    pub async fn send_checked<T>(
        &self,
        request: &Outgoing,
        extra_headers: &[(&str, &str)],
        signer: Option<&Signer>,
        check: BodyCheck<'_, T>,
    ) -> Result<(Reply, T), SourceError> {
        // The query of a GET may hold a token field: logs show the URL without it.
        let url = request.url.split_once('?').map_or(request.url.as_str(), |(url, _)| url);
        let mut backoff = Backoff::new(&self.retry, self.jitter.clone());
        let mut attempts = 0;
        loop {
            attempts += 1;
            let failure = match self.attempt(request, extra_headers, signer).await {
                Ok(reply) => match check(&reply.body) {
                    Ok(read) => return Ok((reply, read)),
                    Err(problem) => Failure {
                        action: RetryAction::Retry { reason: INCOMPLETE_BODY.into(), after: None },
                        error: SourceError::Transport {
                            url: url.to_string(),
                            reason: INCOMPLETE_BODY.into(),
                            detail: format!(
                                "HTTP {}, {problem}: {}",
                                reply.status,
                                excerpt(&reply.body)
                            ),
                            attempts: 0,
                        },
                    },
                },
                Err(failure) => failure,
            };
            let RetryAction::Retry { reason, after } = failure.action else {
                return Err(failure.error.with_attempts(attempts));
            };
            let Some(wait) = backoff.next_wait(after) else {
                warn!(source = %self.name, url, attempts, %reason, "Giving up on a request: the retry limits are reached.");
                return Err(failure.error.with_attempts(attempts));
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            warn!(source = %self.name, url, attempt = attempts, %reason, wait_ms = wait.as_millis() as u64, "Retrying request after a transient failure.");
            tokio::time::sleep(wait).await;
        }
    }

    /// The headers a signed attempt adds to the Content-Type of every request, with the
    /// values its signature covers.
    fn signed_headers(
        &self,
        request: &Outgoing,
        signer: &Signer,
    ) -> Result<Vec<(reqwest::header::HeaderName, String)>, SourceError> {
        let url = request.url.as_str();
        let setup =
            |problem: String| SourceError::Setup { source_name: self.name.clone(), problem };
        let target = reqwest::Url::parse(url).map_err(|e| setup(format!("{url}: {e}")))?;
        let length = request.body.len().to_string();
        let mut headers = vec![
            ("host".into(), self.host.as_str().into()),
            ("content-type".into(), JSON_CONTENT_TYPE.into()),
        ];
        let get_signer;
        let signer = match request.method {
            RequestMethod::Post => {
                headers.push(("content-length".into(), length.as_str().into()));
                signer
            }
            RequestMethod::Get => {
                get_signer = signer.without_header("content-length");
                &get_signer
            }
        };
        let parts = RequestParts {
            method: request.method.as_str().into(),
            path: target.path().into(),
            query: target.query_pairs().collect(),
            headers,
            body: &request.body,
        };
        let authorization = signer
            .authorization(&parts, chrono::Utc::now())
            .map_err(|e| setup(format!("cannot sign {url}: {e}")))?;
        let mut sent = vec![(HOST, self.host.clone())];
        if request.method == RequestMethod::Post {
            sent.push((CONTENT_LENGTH, length));
        }
        sent.push((AUTHORIZATION, authorization));
        Ok(sent)
    }

    /// One attempt: the Content-Type of every request, `extra_headers`, and when `signer`
    /// is given the headers of a fresh signature.
    async fn attempt(
        &self,
        outgoing: &Outgoing,
        extra_headers: &[(&str, &str)],
        signer: Option<&Signer>,
    ) -> Result<Reply, Failure> {
        let url = outgoing.url.as_str();
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        if let Some(limiter) = &self.limiter {
            limiter.acquire().await;
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let transport = |e: reqwest::Error| Failure {
            action: classify_transport(&e),
            error: SourceError::Transport {
                url: url.to_string(),
                reason: if is_certificate_error(&e) {
                    CERTIFICATE_REFUSED.into()
                } else {
                    transport_kind(&e).to_string()
                },
                detail: causes(&e.without_url()),
                attempts: 0,
            },
        };
        let method = match outgoing.method {
            RequestMethod::Post => reqwest::Method::POST,
            RequestMethod::Get => reqwest::Method::GET,
        };
        let mut request = self.http.request(method, url).header(CONTENT_TYPE, JSON_CONTENT_TYPE);
        for (name, value) in extra_headers {
            request = request.header(*name, *value);
        }
        if let Some(signer) = signer {
            let headers = self
                .signed_headers(outgoing, signer)
                .map_err(|error| Failure { action: RetryAction::DontRetry, error })?;
            for (name, value) in headers {
                request = request.header(name, value);
            }
        }
        if outgoing.method == RequestMethod::Post {
            request = request.body(outgoing.body.clone());
        }
        let response = request.send().await.map_err(transport)?;
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
        let headers = response.headers().clone();
        let bytes = read_body(response).await.map_err(transport)?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure {
                action: RetryAction::DontRetry,
                error: SourceError::Unauthorized {
                    source_name: self.name.clone(),
                    url: url.to_string(),
                    status: status.as_u16(),
                    credential: "the credentials".into(),
                    message: excerpt(&bytes),
                },
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            if let Some(limiter) = &self.limiter {
                limiter.throttled();
            }
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
        Ok(Reply { status, body: bytes, headers })
    }
}

/// The `Host` header of requests to `base_url`: its host and the port it names, kept even
/// when it is the scheme's default (which HTTP clients leave out, and a C2 signature must
/// cover as the server sees it); without a named port, the host alone. `None` when the URL
/// names no host.
fn host_header(base_url: &str) -> Option<String> {
    let rest = base_url.split_once("://").map_or(base_url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host_port.is_empty() && !host_port.starts_with(':')).then(|| host_port.to_string())
}

/// An error and its causes on one line: reqwest's own message omits the cause (a refused
/// certificate, a reset connection) that an operator needs.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

/// Most bytes reserved up front for a body, whatever its `Content-Length` says; a larger
/// body still arrives whole, its buffer grown as it comes.
const MAX_BODY_RESERVE: usize = 64 * 1024 * 1024;

/// The body of `response`, each chunk appended to one buffer (sized by `Content-Length`) as
/// it arrives, while the chunk is still in the CPU's caches, rather than gathered at the end.
async fn read_body(mut response: reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let length = response.content_length().unwrap_or(0);
    let mut body = Vec::with_capacity(usize::try_from(length).unwrap_or(0).min(MAX_BODY_RESERVE));
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::source::scripted::{client, queue, Answer, ScriptedServer};

    const OK: &str = r#"{"errorCode":"0","rbtRecognitions":[{"id":1}],"total":1}"#;
    const TIMEOUT: Duration = Duration::from_millis(300);

    fn count(n: &AtomicU64) -> u64 {
        n.load(Ordering::Relaxed)
    }

    /// A 502, a 429 with Retry-After, a truncated 200, an answer slower than the timeout and
    /// a reset are each retried, and the 200 that follows is returned: six attempts, five
    /// retries.
    #[tokio::test]
    async fn transient_failures_are_retried_until_a_complete_answer() {
        let server = ScriptedServer::start(queue(vec![
            Answer::status(502, "<html><h1>502 Bad Gateway</h1></html>"),
            Answer::throttle(1),
            Answer::truncated(OK),
            Answer::status(200, OK).after(TIMEOUT * 3),
            Answer::Reset,
            Answer::status(200, OK),
        ]))
        .await;
        let client = client(&server.base_url, TIMEOUT, 10);
        let body = client.post_json("/q", b"{}").await.unwrap();
        assert_eq!(&body[..], OK.as_bytes());
        assert_eq!(server.received().len(), 6);
        let stats = client.stats();
        assert_eq!((count(&stats.requests), count(&stats.retries)), (6, 5));
        assert_eq!(count(&stats.throttled), 1);
    }

    /// When every attempt fails transiently, the error names the attempts and how the last
    /// one failed (the status, or the kind of transport failure), after exactly
    /// `max_attempts` requests.
    #[tokio::test]
    async fn exhausted_retries_name_the_attempts_and_the_failure() {
        let cases = [
            (vec![Answer::status(503, "busy"), Answer::status(502, "bad gateway")], "HTTP 502"),
            (vec![Answer::Reset, Answer::Reset], "connection"),
            (vec![Answer::truncated(OK), Answer::truncated(OK)], "body is not complete JSON"),
            (
                vec![
                    Answer::status(200, OK).after(TIMEOUT * 3),
                    Answer::throttle(0).after(TIMEOUT * 3),
                ],
                "timeout",
            ),
        ];
        for (answers, want) in cases {
            let server = ScriptedServer::start(queue(answers)).await;
            let client = client(&server.base_url, TIMEOUT, 2);
            let err = client.post_json("/q", b"{}").await.unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("after 2 attempt(s)"), "{want}: {err}");
            assert_eq!(server.received().len(), 2, "{err}");
        }
    }

    /// The Host header keeps the port the base URL names, even the scheme's default one,
    /// and leaves out user info and the path.
    #[test]
    fn the_host_header_keeps_the_named_port() {
        for (url, want) in [
            ("https://10.0.0.1:28443", Some("10.0.0.1:28443")),
            ("https://10.0.0.1:443/rest", Some("10.0.0.1:443")),
            ("http://cms.example:80?x=1", Some("cms.example:80")),
            ("https://service.besclouds.com/apiaccess", Some("service.besclouds.com")),
            ("https://user:pw@[::1]:8443/x", Some("[::1]:8443")),
            ("https://", None),
            ("https://:443/x", None),
        ] {
            assert_eq!(host_header(url).as_deref(), want, "{url}");
        }
    }

    /// 400 and 404 fail after one attempt, with the API's own message.
    #[tokio::test]
    async fn permanent_failures_fail_at_once_with_the_api_message() {
        for status in [400, 404] {
            let body = r#"{"errorCode":"OIFDE.01","errorMsg":"beginTime is required"}"#;
            let server = ScriptedServer::start(queue(vec![Answer::status(status, body)])).await;
            let client = client(&server.base_url, TIMEOUT, 5);
            match client.post_json("/q", b"{}").await {
                Err(e @ SourceError::Http { attempts: 1, .. }) => {
                    let text = e.to_string();
                    assert!(text.contains("beginTime is required"), "{text}");
                    assert!(text.contains(&format!("HTTP {status} after 1 attempt(s)")), "{text}");
                }
                other => panic!("{status}: {other:?}"),
            }
            assert_eq!(server.received().len(), 1);
            assert_eq!(count(&client.stats().retries), 0);
        }
    }
}
