//! Auth strategies. So far: the OIFDE token (C3) carried as a field of the JSON body,
//! either fixed in the configuration or obtained with `gettoken` from the tenant's app key
//! and API password, cached, refreshed ahead of expiry and once on 401 (one refresh shared
//! by every request in flight).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tracing::info;

use super::client::SourceClient;
use super::error::{excerpt, SourceError};
use crate::catalog::pipeline::AuthSpec;
use crate::config::SourceAuth;
use crate::secret::Secret;

/// The C3 token endpoint, relative to the source's base URL.
pub const GETTOKEN_PATH: &str = "/oifde/rest/api/gettoken";

/// Token lifetime assumed when `gettoken` does not say.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(600);

/// Where tokens come from.
#[derive(Debug)]
enum TokenSource {
    Fixed(Secret),
    Login(TokenCache),
}

/// A cached login token.
#[derive(Debug)]
struct TokenCache {
    app_key: String,
    app_secret: Secret,
    current: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    #[serde(default)]
    error_code: Option<Value>,
    #[serde(default)]
    error_msg: Option<String>,
    #[serde(default)]
    auth_token: Option<String>,
    #[serde(default)]
    expire_time: Option<Value>,
}

impl TokenCache {
    async fn get(&self, client: &SourceClient) -> Result<Secret, SourceError> {
        let mut current = self.current.lock().await;
        if let Some((token, expires)) = current.as_ref() {
            if Instant::now() < *expires {
                return Ok(token.clone());
            }
        }
        let (token, ttl) = self.login(client).await?;
        // Refresh ahead of expiry: a fifth of the lifetime, at most a minute, early.
        let margin = (ttl / 5).min(Duration::from_secs(60));
        *current = Some((token.clone(), Instant::now() + ttl - margin));
        Ok(token)
    }

    async fn invalidate(&self, stale: &Secret) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(t, _)| t == stale) {
            *current = None;
        }
    }

    async fn login(&self, client: &SourceClient) -> Result<(Secret, Duration), SourceError> {
        let body =
            serde_json::json!({"appKey": self.app_key, "appSecret": self.app_secret.expose()});
        let bytes = client
            .post_json(GETTOKEN_PATH, body.to_string().as_bytes())
            .await
            .map_err(|e| e.redacted(self.app_secret.expose()))?;
        let url = client.url(GETTOKEN_PATH);
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|e| SourceError::Shape {
                url: url.clone(),
                path: "$".into(),
                problem: format!("not a gettoken answer: {e}"),
            })?;
        let code = answer.error_code.as_ref().map(value_text).unwrap_or_else(|| "0".into());
        let token = match answer.auth_token {
            Some(t) if code == "0" && !t.is_empty() => t,
            _ => {
                return Err(SourceError::Unauthorized {
                    source_name: client.name().to_string(),
                    url,
                    status: 200,
                    message: format!(
                        "gettoken answered errorCode {code}: {}",
                        answer.error_msg.unwrap_or_else(|| excerpt(&bytes))
                    ),
                })
            }
        };
        let ttl = answer
            .expire_time
            .as_ref()
            .and_then(|v| value_text(v).parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_TTL);
        info!(source = %client.name(), ttl_secs = ttl.as_secs(), "Obtained an OIFDE token.");
        Ok((Secret::new(token), ttl))
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The auth strategy of one pipeline on one source.
#[derive(Debug, Clone)]
pub struct Authenticator {
    field: String,
    tokens: Arc<TokenSource>,
}

impl Authenticator {
    /// Builds the strategy a pipeline asks for from the source's credentials.
    pub fn new(
        spec: &AuthSpec,
        source_name: &str,
        creds: &SourceAuth,
    ) -> Result<Self, SourceError> {
        let AuthSpec::BodyToken { field } = spec;
        let tokens = match creds {
            SourceAuth::StaticToken(t) => TokenSource::Fixed(t.clone()),
            SourceAuth::AppCredentials { app_key, app_secret } => TokenSource::Login(TokenCache {
                app_key: app_key.clone(),
                app_secret: app_secret.clone(),
                current: Mutex::new(None),
            }),
            SourceAuth::None => {
                return Err(SourceError::NoCredentials { source_name: source_name.to_string() })
            }
        };
        Ok(Self { field: field.clone(), tokens: Arc::new(tokens) })
    }

    async fn token(&self, client: &SourceClient) -> Result<Secret, SourceError> {
        match &*self.tokens {
            TokenSource::Fixed(t) => Ok(t.clone()),
            TokenSource::Login(cache) => cache.get(client).await,
        }
    }

    /// POSTs `body` with the token added; on 401/403 with a login token, logs in again once
    /// and retries. A fixed token that is refused fails at once.
    pub async fn post(
        &self,
        client: &SourceClient,
        path: &str,
        mut body: Map<String, Value>,
    ) -> Result<Bytes, SourceError> {
        let mut refreshed = false;
        loop {
            let token = self.token(client).await?;
            body.insert(self.field.clone(), Value::String(token.expose().to_string()));
            let bytes = serde_json::to_vec(&body).expect("a JSON map always serialises");
            match (client.post_json(path, &bytes).await, &*self.tokens) {
                (Err(SourceError::Unauthorized { .. }), TokenSource::Login(cache))
                    if !refreshed =>
                {
                    cache.invalidate(&token).await;
                    refreshed = true;
                }
                (other, _) => return other.map_err(|e| e.redacted(token.expose())),
            }
        }
    }
}
