//! C3 tokens of the OIFDE interfaces (cec-api.md 1.3): `POST /oifde/rest/api/gettoken`
//! issues them for an appKey/appSecret pair, and query bodies carry them as `authToken`.
//!
//! A fixed token is accepted as well, as a tenant's static integration token would be.
//! Tokens and secrets are never echoed in answers or logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;

use super::simulator::Simulator;
use super::stats::Event;

/// Why a token request or a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// The token request is not `{"appKey": .., "appSecret": ..}`.
    #[error("the body must be a JSON object with appKey and appSecret strings")]
    Malformed,
    /// appKey or appSecret is wrong.
    #[error("appKey or appSecret is incorrect")]
    BadCredentials,
    /// The `authToken` of a request is absent, unknown or expired.
    #[error("authToken is invalid or expired")]
    InvalidToken,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            Self::Malformed => {
                (StatusCode::BAD_REQUEST, Json(json!({"errorCode": 2, "errorMsg": message})))
            }
            Self::BadCredentials => {
                (StatusCode::UNAUTHORIZED, Json(json!({"errorCode": 1, "errorMsg": message})))
            }
            Self::InvalidToken => {
                (StatusCode::UNAUTHORIZED, Json(json!({"errorCode": "401", "errorMsg": message})))
            }
        }
        .into_response()
    }
}

/// The accepted credentials and the tokens issued so far.
#[derive(Debug)]
pub(crate) struct TokenStore {
    static_token: String,
    app_key: String,
    app_secret: String,
    ttl: Duration,
    issued: Mutex<HashMap<String, Instant>>,
}

impl TokenStore {
    /// A store that accepts `static_token` and issues tokens living `ttl` to the holder of
    /// `app_key`/`app_secret`.
    pub(crate) fn new(static_token: &str, app_key: &str, app_secret: &str, ttl: Duration) -> Self {
        Self {
            static_token: static_token.to_string(),
            app_key: app_key.to_string(),
            app_secret: app_secret.to_string(),
            ttl,
            issued: Mutex::default(),
        }
    }

    /// Issues a fresh random token living the store's lifetime for valid credentials;
    /// expired tokens are forgotten.
    pub(crate) fn issue(&self, app_key: &str, app_secret: &str) -> Result<String, AuthError> {
        self.issue_living(app_key, app_secret, self.ttl)
    }

    /// Issues a fresh random token living `ttl` for valid credentials; expired tokens are
    /// forgotten.
    pub(crate) fn issue_living(
        &self,
        app_key: &str,
        app_secret: &str,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        if app_key != self.app_key || app_secret != self.app_secret {
            return Err(AuthError::BadCredentials);
        }
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued.retain(|_, expires| *expires > now);
        issued.insert(token.clone(), now + ttl);
        Ok(token)
    }

    /// Accepts the static token and unexpired issued tokens.
    pub(crate) fn check(&self, token: Option<&str>) -> Result<(), AuthError> {
        let token = token.ok_or(AuthError::InvalidToken)?;
        if !self.static_token.is_empty() && token == self.static_token {
            return Ok(());
        }
        let issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        match issued.get(token) {
            Some(expires) if *expires > Instant::now() => Ok(()),
            _ => Err(AuthError::InvalidToken),
        }
    }

    /// The lifetime announced in `expireTime`, in whole seconds.
    pub(crate) fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }
}

/// The body of a token request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    app_key: String,
    app_secret: String,
}

/// `POST /oifde/rest/api/gettoken`.
pub(crate) async fn get_token(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    let issued = serde_json::from_slice::<TokenRequest>(&body)
        .map_err(|_| AuthError::Malformed)
        .and_then(|request| sim.tokens().issue(&request.app_key, &request.app_secret));
    match issued {
        Ok(token) => {
            sim.counters().record(Event::TokenIssued);
            Json(json!({"errorCode": 0, "errorMsg": "success", "authToken": token,
                        "expireTime": sim.tokens().ttl_secs()}))
            .into_response()
        }
        Err(e) => {
            sim.counters().record(match e {
                AuthError::Malformed => Event::BadRequest,
                AuthError::BadCredentials | AuthError::InvalidToken => Event::Unauthorized,
            });
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::test_support::{post, start};
    use crate::sim::SimOptions;
    use serde_json::Value;

    const QUERY: &str = "/oifde/rest/api/queryRbtRecognitionResult";

    fn options(ttl: Duration) -> SimOptions {
        SimOptions {
            app_key: "202401150001".into(),
            app_secret: "api-password".into(),
            token_ttl: ttl,
            records_per_month: 5,
            ..SimOptions::default()
        }
    }

    fn query(token: &str) -> Value {
        json!({"beginTime": 1735660800000_i64, "endTime": 1738339199999_i64,
               "tenantId": "202401150001", "authToken": token})
    }

    async fn get_token(base: &str, secret: &str) -> (u16, Value) {
        let body = json!({"appKey": "202401150001", "appSecret": secret});
        let (status, reply) = post(&format!("{base}/oifde/rest/api/gettoken"), &body).await;
        (status, serde_json::from_slice(&reply).unwrap())
    }

    /// An issued token opens the query; a made-up token gets 401 with the documented body.
    #[tokio::test]
    async fn issued_tokens_work_and_bad_tokens_do_not() {
        let sim = Arc::new(Simulator::new(options(Duration::from_secs(3600))));
        let running = start(&sim).await;
        let (status, reply) = get_token(&running.base_url, "api-password").await;
        assert_eq!((status, reply["errorCode"].as_i64()), (200, Some(0)));
        assert_eq!(reply["expireTime"], 3600);
        let token = reply["authToken"].as_str().unwrap();
        let (status, page) = post(&format!("{}{QUERY}", running.base_url), &query(token)).await;
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_slice::<Value>(&page).unwrap()["total"], 5);

        let (status, reply) = post(&format!("{}{QUERY}", running.base_url), &query("nope")).await;
        assert_eq!(status, 401);
        assert_eq!(
            serde_json::from_slice::<Value>(&reply).unwrap(),
            json!({"errorCode": "401", "errorMsg": "authToken is invalid or expired"})
        );
        let (status, reply) = get_token(&running.base_url, "wrong").await;
        assert_eq!((status, reply["errorCode"].as_i64()), (401, Some(1)));
        assert!(!reply.to_string().contains("api-password"), "secrets are not echoed");
        assert_eq!((sim.stats().tokens_issued, sim.stats().unauthorized), (1, 2));
        running.shutdown().await;
    }

    /// A token past its lifetime gets 401, while the static token keeps working.
    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let sim = Arc::new(Simulator::new(options(Duration::from_millis(5))));
        let running = start(&sim).await;
        let (_, reply) = get_token(&running.base_url, "api-password").await;
        let token = reply["authToken"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (status, _) = post(&format!("{}{QUERY}", running.base_url), &query(&token)).await;
        assert_eq!(status, 401);
        let (status, _) = post(&format!("{}{QUERY}", running.base_url), &query("sim-token")).await;
        assert_eq!(status, 200);
        running.shutdown().await;
    }

    /// The store forgets expired tokens when it issues new ones, so it does not grow.
    #[test]
    fn expired_tokens_are_pruned() {
        let store = TokenStore::new("", "k", "s", Duration::ZERO);
        for _ in 0..10 {
            store.issue("k", "s").unwrap();
        }
        assert!(store.issued.lock().unwrap().len() <= 1);
        assert_eq!(store.check(Some("")), Err(AuthError::InvalidToken), "empty never matches");
        assert_eq!(store.issue("k", "x"), Err(AuthError::BadCredentials));
    }
}
