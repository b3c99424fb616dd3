//! C1 API Fabric tokens (cec-api.md 1.3) and the checks every API Fabric route shares.
//!
//! `POST /apigovernance/api/oauth/tokenByAkSk` issues a Bearer token for the configured
//! `app_key`/`app_secret`; business routes answer HTTP 401 without `Authorization: Bearer
//! <AccessToken>` naming an unexpired token. The CCSQM routes also read the operator's
//! `x-UserId` header (any letter case, as HTTP header names are).
//!
//! Error bodies of these routes are not documented. The simulator answers in the envelope the
//! family documents for its other answers: `{"resultCode", "resultDesc"}` (the CCSQM write
//! operations' envelope) on the token route and the CCSQM routes, `{"retCode", "retMsg"}` on
//! CC-Management, with the HTTP status as the code. Tokens and secrets are never echoed.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::seeding::mix;
use super::simulator::Simulator;
use super::stats::Event;

/// The longest token lifetime the documentation allows (`X-Token-Expire`), in seconds.
pub(crate) const MAX_TOKEN_LIFETIME_SECS: u64 = 3600;

/// Why an API Fabric request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FabricError {
    /// The token request is not `{"app_key": .., "app_secret": ..}`.
    #[error("the body must be a JSON object with app_key and app_secret strings")]
    MalformedTokenRequest,
    /// `X-Token-Expire` is not a whole number of seconds from 1.
    #[error("X-Token-Expire must be a whole number of seconds from 1 to 3600, got '{0}'")]
    BadTokenLifetime(String),
    /// app_key or app_secret is wrong.
    #[error("app_key or app_secret is incorrect")]
    BadCredentials,
    /// No `Authorization: Bearer` header naming an unexpired token.
    #[error("unauthorized: the Bearer token is missing, invalid or expired")]
    InvalidToken,
    /// A CCSQM route that needs the operator got no `x-UserId` header.
    #[error("the x-UserId header is required")]
    MissingUserId,
    /// `x-UserId` names no operator of the tenant.
    #[error("x-UserId '{0}' is not an operator of this tenant")]
    UnknownUserId(String),
    /// A request parameter is missing or invalid.
    #[error("{0}")]
    BadParameter(String),
    /// `appraisecall/detail` for a call_uuid that does not exist.
    #[error("no call with call_uuid '{0}' was found")]
    UnknownCall(String),
    /// A path under `/apiaccess/` whose service prefix is neither CCSQM nor CCISQM.
    #[error("the requested content is not found: no service '{0}' (use CCSQM or CCISQM)")]
    UnknownService(String),
}

impl FabricError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MalformedTokenRequest
            | Self::BadTokenLifetime(_)
            | Self::MissingUserId
            | Self::UnknownUserId(_)
            | Self::BadParameter(_) => StatusCode::BAD_REQUEST,
            Self::BadCredentials | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::UnknownCall(_) | Self::UnknownService(_) => StatusCode::NOT_FOUND,
        }
    }
}

/// The error envelope of an interface family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Envelope {
    /// `{"resultCode": "401", "resultDesc": ".."}`: the token route and CCSQM.
    ResultCode,
    /// `{"retCode": "401", "retMsg": ".."}`: CC-Management.
    RetCode,
}

/// Counts and renders a refusal in `envelope`.
pub(crate) fn reject(sim: &Simulator, error: &FabricError, envelope: Envelope) -> Response {
    let status = error.status();
    match status {
        StatusCode::UNAUTHORIZED => sim.counters().record(Event::Unauthorized),
        StatusCode::BAD_REQUEST => sim.counters().record(Event::BadRequest),
        _ => {}
    }
    let code = status.as_u16().to_string();
    let body = match envelope {
        Envelope::ResultCode => json!({"resultCode": code, "resultDesc": error.to_string()}),
        Envelope::RetCode => json!({"retCode": code, "retMsg": error.to_string()}),
    };
    (status, Json(body)).into_response()
}

/// Accepts `Authorization: Bearer <AccessToken>` (one space, as documented) naming a token
/// issued by `tokenByAkSk` that has not expired.
pub(crate) fn authorize(sim: &Simulator, headers: &HeaderMap) -> Result<(), FabricError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty());
    sim.fabric_tokens().check(token).map_err(|_| FabricError::InvalidToken)
}

/// Checks the operator header `x-UserId` when present; `required` refuses its absence.
pub(crate) fn check_user(
    sim: &Simulator,
    headers: &HeaderMap,
    required: bool,
) -> Result<(), FabricError> {
    match headers.get("x-userid").map(|v| v.to_str().unwrap_or_default().trim()) {
        None | Some("") if required => Err(FabricError::MissingUserId),
        None | Some("") => Ok(()),
        Some(user) if user == sim.options().fabric_user_id => Ok(()),
        Some(user) => Err(FabricError::UnknownUserId(user.to_string())),
    }
}

/// The body of a token request.
#[derive(Deserialize)]
struct TokenRequest {
    app_key: String,
    app_secret: String,
}

/// `POST /apigovernance/api/oauth/tokenByAkSk`.
///
/// The lifetime is `X-Token-Expire` seconds. The documentation gives 3600 as the maximum
/// without saying what happens above it: the simulator grants 3600 and announces that in
/// `Expires`, so a client that believes `Expires` stays correct. Without the header the
/// token lives 3600 s. [`SimOptions::fabric_token_lifetime`](super::SimOptions) makes every
/// token die sooner than announced, as a server that revokes tokens early would.
pub(crate) async fn token_by_ak_sk(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.counters().record(Event::FabricTokenRequest);
    match issue(&sim, &headers, &body) {
        Ok((token, granted)) => {
            sim.counters().record(Event::TokenIssued);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            let scope = format!("{:016x}{:016x}", mix(&[sim.options().seed, 1]), mix(&[2]));
            Json(json!({
                "AccessToken": token,
                "ApplyType": "Bearer",
                "CreateTime": now.to_string(),
                "Expires": granted.to_string(),
                "Scope": scope,
                "AppKey": sim.options().fabric_app_key,
                "UserID": "Anonymous",
            }))
            .into_response()
        }
        Err(e) => reject(&sim, &e, Envelope::ResultCode),
    }
}

/// Validates a token request; returns the token and the lifetime granted, in seconds.
fn issue(sim: &Simulator, headers: &HeaderMap, body: &[u8]) -> Result<(String, u64), FabricError> {
    let granted = match headers.get("x-token-expire") {
        None => MAX_TOKEN_LIFETIME_SECS,
        Some(value) => {
            let text = value.to_str().unwrap_or_default().trim();
            match text.parse::<u64>() {
                Ok(secs) if secs >= 1 => secs.min(MAX_TOKEN_LIFETIME_SECS),
                _ => return Err(FabricError::BadTokenLifetime(text.chars().take(32).collect())),
            }
        }
    };
    let request: TokenRequest =
        serde_json::from_slice(body).map_err(|_| FabricError::MalformedTokenRequest)?;
    let lives = sim.options().fabric_token_lifetime.unwrap_or(Duration::from_secs(granted));
    let token = sim
        .fabric_tokens()
        .issue_living(&request.app_key, &request.app_secret, lives)
        .map_err(|_| FabricError::BadCredentials)?;
    Ok((token, granted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Month;
    use crate::sim::test_support::{fabric_post, fabric_token, send_with, start};
    use crate::sim::SimOptions;
    use serde_json::Value;

    const TOKEN: &str = "/apigovernance/api/oauth/tokenByAkSk";
    const DETAILS: &str = "/apiaccess/CCSQM/rest/ccisqm/v1/appraisecall/details";
    const DETAIL: &str = "/apiaccess/CCSQM/rest/ccisqm/v1/appraisecall/detail";
    const CDR: &str = "/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord";

    fn details_body() -> Value {
        json!({"page": 1, "limit": 5, "status": [0, 1, 2, 3], "call_types": [0, 2],
               "upload_from": null, "upload_to": null})
    }

    fn cdr_body() -> Value {
        json!({"startTime": "1735660800000", "endTime": "1736265600000"})
    }

    async fn login(base: &str, secret: &str, expire: Option<&str>) -> (u16, Value) {
        let headers: Vec<(&str, &str)> =
            expire.map(|e| ("X-Token-Expire", e)).into_iter().collect();
        let body = json!({"app_key": "sim-fabric-ak", "app_secret": secret});
        let reply = send_with(&format!("{base}{TOKEN}"), &headers, &body).await.unwrap();
        (reply.status, serde_json::from_slice(&reply.body).unwrap())
    }

    /// The token answer has the documented fields and string types; X-Token-Expire is
    /// granted up to 3600 and clamped above; a bad lifetime or secret is refused without
    /// echoing the secret.
    #[tokio::test]
    async fn tokens_have_the_documented_body_and_lifetimes() {
        let sim = Arc::new(Simulator::new(SimOptions::default()));
        let running = start(&sim).await;
        let (status, reply) = login(&running.base_url, "sim-fabric-sk", Some("600")).await;
        assert_eq!(status, 200);
        assert_eq!(reply["ApplyType"], "Bearer");
        assert_eq!(reply["Expires"], "600");
        assert_eq!(reply["AppKey"], "sim-fabric-ak");
        assert_eq!(reply["UserID"], "Anonymous");
        assert!(reply["AccessToken"].as_str().is_some_and(|t| t.len() >= 32));
        assert!(reply["Scope"].is_string());
        let created: u64 = reply["CreateTime"].as_str().unwrap().parse().unwrap();
        assert!(created > 1_700_000_000);
        for (asked, granted) in [(Some("7200"), "3600"), (None, "3600"), (Some("1"), "1")] {
            let (status, reply) = login(&running.base_url, "sim-fabric-sk", asked).await;
            assert_eq!((status, reply["Expires"].as_str()), (200, Some(granted)), "{asked:?}");
        }
        for bad in ["0", "-5", "soon"] {
            let (status, reply) = login(&running.base_url, "sim-fabric-sk", Some(bad)).await;
            assert_eq!((status, reply["resultCode"].as_str()), (400, Some("400")), "{bad}");
        }
        let (status, reply) = login(&running.base_url, "sim-fabric-sk-wrong", None).await;
        assert_eq!(status, 401);
        assert!(!reply.to_string().contains("sim-fabric-sk"), "{reply}");
        let stats = sim.stats();
        assert_eq!((stats.fabric_token_requests, stats.tokens_issued), (8, 4));
        running.shutdown().await;
    }

    /// Every business route answers 401 without a Bearer token, with a made-up one, or with
    /// an OIFDE token, and 200 with a token from tokenByAkSk.
    #[tokio::test]
    async fn business_routes_need_a_bearer_token() {
        let sim = Arc::new(Simulator::new(SimOptions::default()));
        let running = start(&sim).await;
        let base = &running.base_url;
        let token = fabric_token(base).await;
        let detail = json!({"call_uuid": "not-a-call"});
        for (path, body) in [(DETAILS, details_body()), (DETAIL, detail), (CDR, cdr_body())] {
            let url = format!("{base}{path}");
            for bad in ["nope", "sim-token", ""] {
                let (status, _) = fabric_post(&url, bad, &body).await;
                assert_eq!(status, 401, "{path} with '{bad}'");
            }
            let reply = send_with(&url, &[("x-UserId", "1611917095665261978")], &body).await;
            assert_eq!(reply.unwrap().status, 401, "{path} without Authorization");
            let (status, _) = fabric_post(&url, &token, &body).await;
            assert_ne!(status, 401, "{path} with a valid token");
        }
        let (_, reply) = fabric_post(&format!("{base}{CDR}"), "nope", &cdr_body()).await;
        assert_eq!(reply["retCode"], "401", "CC-Management answers in its own envelope");
        running.shutdown().await;
    }

    /// A token dies after X-Token-Expire seconds; with the lifetime override it dies sooner
    /// than its Expires announces.
    #[tokio::test]
    async fn tokens_expire() {
        let sim = Arc::new(Simulator::new(SimOptions::default()));
        let running = start(&sim).await;
        let url = format!("{}{DETAILS}", running.base_url);
        let (_, reply) = login(&running.base_url, "sim-fabric-sk", Some("1")).await;
        let token = reply["AccessToken"].as_str().unwrap().to_string();
        assert_eq!(fabric_post(&url, &token, &details_body()).await.0, 200);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(fabric_post(&url, &token, &details_body()).await.0, 401);
        running.shutdown().await;

        // Long enough for the first request even on a busy machine.
        let lifetime = Some(Duration::from_millis(600));
        let sim = Arc::new(Simulator::new(SimOptions {
            fabric_token_lifetime: lifetime,
            ..SimOptions::default()
        }));
        let running = start(&sim).await;
        let url = format!("{}{DETAILS}", running.base_url);
        let (_, reply) = login(&running.base_url, "sim-fabric-sk", Some("3600")).await;
        assert_eq!(reply["Expires"], "3600");
        let token = reply["AccessToken"].as_str().unwrap().to_string();
        assert_eq!(fabric_post(&url, &token, &details_body()).await.0, 200);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(fabric_post(&url, &token, &details_body()).await.0, 401);
        running.shutdown().await;
    }

    /// details needs x-UserId (any letter case) naming the operator; detail does not.
    #[tokio::test]
    async fn the_operator_header_is_required_on_details() {
        let sim = Arc::new(Simulator::new(SimOptions::default()));
        let running = start(&sim).await;
        let token = fabric_token(&running.base_url).await;
        let bearer = format!("Bearer {token}");
        let url = format!("{}{DETAILS}", running.base_url);
        let answer = |headers: Vec<(&'static str, &'static str)>| {
            let (url, bearer) = (url.clone(), bearer.clone());
            async move {
                let mut all = vec![("authorization", bearer.as_str())];
                all.extend(headers);
                let reply = send_with(&url, &all, &details_body()).await.unwrap();
                (reply.status, serde_json::from_slice::<Value>(&reply.body).unwrap())
            }
        };
        let (status, reply) = answer(vec![]).await;
        assert_eq!(status, 400);
        assert!(reply["resultDesc"].as_str().unwrap().contains("x-UserId"), "{reply}");
        for name in ["x-UserId", "X-USERID", "X-UserID", "x-userid"] {
            assert_eq!(answer(vec![(name, "1611917095665261978")]).await.0, 200, "{name}");
        }
        assert_eq!(answer(vec![("x-UserId", "42")]).await.0, 400);

        let uuid = sim.appraise_calls([Month::new(2025, 3).unwrap()]).into_keys().next().unwrap();
        let detail = format!("{}{DETAIL}", running.base_url);
        let body = json!({"call_uuid": uuid});
        let reply = send_with(&detail, &[("authorization", &bearer)], &body).await.unwrap();
        assert_eq!(reply.status, 200, "detail without x-UserId");
        running.shutdown().await;
    }
}
