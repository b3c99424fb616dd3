//! The control API seen from the command line: `cecsync backfill` queues its backfill on a
//! running service when one answers at `[service] control_url` (or the control listen
//! address), so the backfill shares the service's source limits and partition locks.

use std::time::Duration;

use serde_json::json;

use super::jobs::JobView;
use crate::calendar::Month;
use crate::config::ServiceSettings;
use crate::secret::Secret;

/// How long finding a running service may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a queued job is polled.
const POLL: Duration = Duration::from_millis(500);

/// A request to the control API failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// No answer.
    #[error("control API {url}: {detail}")]
    Request {
        /// The URL (never with a token).
        url: String,
        /// What failed.
        detail: String,
    },
    /// The service refused.
    #[error("control API {url} answered {status}: {message}")]
    Refused {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The service's message.
        message: String,
    },
}

/// A running service's control API.
#[derive(Debug, Clone)]
pub struct Remote {
    base: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl Remote {
    /// The service named by `settings`, if a cecsync service answers its `/healthz`.
    pub async fn find(settings: &ServiceSettings) -> Option<Remote> {
        let http = reqwest::Client::builder().timeout(PROBE_TIMEOUT).build().ok()?;
        let remote = Remote {
            base: settings.control_base_url(),
            token: settings.control_token.clone(),
            http,
        };
        let answer: serde_json::Value =
            remote.call(reqwest::Method::GET, "/healthz", None).await.ok()?;
        (answer["name"] == "cecsync").then_some(remote)
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, RemoteError> {
        let url = format!("{}{path}", self.base);
        let failed = |detail: String| RemoteError::Request { url: url.clone(), detail };
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| failed(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| failed(e.without_url().to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            return Err(RemoteError::Refused { url, status: status.as_u16(), message });
        }
        serde_json::from_slice(&bytes).map_err(|e| failed(format!("unexpected answer: {e}")))
    }

    /// Queues a backfill; returns its job id.
    pub async fn backfill(
        &self,
        pipeline: &str,
        from: Month,
        to: Month,
        refresh: bool,
    ) -> Result<u64, RemoteError> {
        let body = json!({
            "pipeline": pipeline, "from": from.to_string(), "to": to.to_string(), "refresh": refresh,
        });
        let answer: serde_json::Value =
            self.call(reqwest::Method::POST, "/backfill", Some(body)).await?;
        answer["id"].as_u64().ok_or_else(|| RemoteError::Request {
            url: format!("{}/backfill", self.base),
            detail: format!("the answer has no job id: {answer}"),
        })
    }

    /// A job's view.
    pub async fn job(&self, id: u64) -> Result<JobView, RemoteError> {
        self.call(reqwest::Method::GET, &format!("/backfill/{id}"), None).await
    }

    /// Polls a job until it ends, calling `on_change` whenever its progress moves.
    pub async fn wait(
        &self,
        id: u64,
        mut on_change: impl FnMut(&JobView),
    ) -> Result<JobView, RemoteError> {
        let mut seen = None;
        loop {
            let view = self.job(id).await?;
            let key = (view.state, view.slices_done, view.slices_total);
            if seen != Some(key) {
                on_change(&view);
                seen = Some(key);
            }
            if !view.state.is_active() {
                return Ok(view);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
