//! The CC-Gateway session (cec-api.md 1.3 C4 and C5): the configuration login
//! `POST {base}/agentgateway/resource/config/login` with `{"agentId": N, "password": ".."}`
//! answers `{"result": {"guid": ".."}, "retcode": "0"}`, and every business request then
//! carries the header `Guid: <guid>`.
//!
//! - The GUID is the source's session ([`SourceClient::session`]): one login serves every
//!   pipeline of the source, and a login runs under the session's lock, so there is one at
//!   a time.
//! - A `Set-GUID: JSESSIONID=<guid>` response header (the dynamic mode of C4 rotates the
//!   GUID) replaces the GUID that request carried.
//! - A business answer that refuses the GUID — `retcode` `100-006` or `000-003` in a 2xx
//!   body, or HTTP 401 — drops it, logs in again once and retries; a second refusal, a 403,
//!   or a login answered with another `retcode` than "0" is a [`SourceError::GatewayRefused`]
//!   naming the account, never the password or the GUID.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::{debug, info};

use super::client::SourceClient;
use super::error::{excerpt, SourceError};
use super::outgoing::Outgoing;
use crate::catalog::pipeline::RequestMethod;
use crate::config::GatewayLogin;
use crate::secret::Secret;

/// The `retcode`s by which the CC-Gateway refuses a GUID (table 4.5).
pub const REFUSED_GUID_CODES: [&str; 2] = ["100-006", "000-003"];

/// The response header that carries a new GUID.
const SET_GUID: &str = "set-guid";

/// The envelope fields the session reads: the login's answer, and the code of every
/// business answer.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    retcode: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    result: Option<Value>,
}

impl Envelope {
    fn code(&self) -> Option<String> {
        self.retcode.as_ref().map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// How a GUID or the login was refused: `HTTP 401` or `retcode X`, and the API's message.
struct Refusal {
    status: String,
    message: String,
}

/// The `gateway_guid` strategy of one pipeline on a CC-Gateway source.
#[derive(Debug, Clone)]
pub struct GatewayAuth {
    login: Arc<GatewayLogin>,
    /// The GUID this strategy last sent, for redacting it from errors built later.
    last: Arc<Mutex<Option<Secret>>>,
}

impl GatewayAuth {
    /// The strategy of `login`.
    pub fn new(login: &GatewayLogin) -> Self {
        Self { login: Arc::new(login.clone()), last: Arc::default() }
    }

    /// The same error without the password or the last GUID sent.
    pub fn redact(&self, error: SourceError) -> SourceError {
        let error = error.redacted(self.login.password.expose());
        match self.last.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(guid) => error.redacted(guid.expose()),
            None => error,
        }
    }

    /// Sends `fields` to `path` with the session's GUID; a refused GUID is renewed once.
    pub async fn send(
        &self,
        client: &SourceClient,
        method: RequestMethod,
        path: &str,
        fields: Map<String, Value>,
    ) -> Result<Bytes, SourceError> {
        let request = Outgoing::new(method, &client.url(path), &fields);
        let mut renewed = false;
        loop {
            let guid = self.guid(client).await?;
            *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(guid.clone());
            let refusal = match client.send(&request, &[("Guid", guid.expose())], None).await {
                Ok(reply) => {
                    self.rotate(client, &guid, &reply.headers).await;
                    match refused_guid(&reply.body) {
                        None => return Ok(reply.body),
                        Some(refusal) => refusal,
                    }
                }
                Err(SourceError::Unauthorized { status, message, .. }) => {
                    let refusal = Refusal { status: format!("HTTP {status}"), message };
                    if status != 401 {
                        return Err(self.refused(client, &request.url, refusal));
                    }
                    refusal
                }
                Err(e) => return Err(self.redact(e)),
            };
            forget(client, &guid).await;
            if renewed {
                let message = format!("a fresh GUID was refused as well: {}", refusal.message);
                return Err(self.refused(client, &request.url, Refusal { message, ..refusal }));
            }
            info!(
                source = %client.name(), account = self.login.account, refusal = %refusal.status,
                "The CC-Gateway refused the session GUID; logging in again."
            );
            renewed = true;
        }
    }

    /// The source's GUID, logging in when there is none.
    async fn guid(&self, client: &SourceClient) -> Result<Secret, SourceError> {
        let mut session = client.session().lock().await;
        if let Some(guid) = session.as_ref() {
            return Ok(guid.clone());
        }
        let guid = self.log_in(client).await?;
        *session = Some(guid.clone());
        Ok(guid)
    }

    /// The configuration login (C5): the GUID of `result.guid`, else of a `Set-GUID`
    /// header, from an answer whose `retcode` is "0".
    async fn log_in(&self, client: &SourceClient) -> Result<Secret, SourceError> {
        let body = serde_json::json!({
            "agentId": self.login.account,
            "password": self.login.password.expose(),
        });
        let url = client.url(&self.login.login_path);
        let request = Outgoing::new(RequestMethod::Post, &url, body.as_object().expect("an object"));
        let reply = match client.send(&request, &[], None).await {
            Ok(reply) => reply,
            Err(SourceError::Unauthorized { status, message, .. }) => {
                let refusal = Refusal { status: format!("HTTP {status}"), message };
                return Err(self.refused(client, &url, refusal));
            }
            Err(e) => return Err(self.redact(e)),
        };
        let answer = serde_json::from_slice::<Envelope>(&reply.body).ok();
        let code = answer.as_ref().and_then(Envelope::code);
        let guid = answer
            .as_ref()
            .and_then(|a| a.result.as_ref()?.get("guid")?.as_str().map(str::to_string))
            .or_else(|| set_guid(&reply.headers))
            .filter(|g| !g.trim().is_empty());
        match (code.as_deref(), guid) {
            (Some("0"), Some(guid)) => {
                info!(source = %client.name(), account = self.login.account, "Logged in to the CC-Gateway.");
                Ok(Secret::new(guid))
            }
            (code, _) => {
                let message = answer.and_then(|a| a.message).unwrap_or_else(|| excerpt(&reply.body));
                let status = match code {
                    Some(code) => format!("login retcode {code}"),
                    None => "a login answer without retcode".into(),
                };
                let message = if code == Some("0") {
                    format!("the login answered without a GUID: {message}")
                } else {
                    message
                };
                Err(self.refused(client, &url, Refusal { status, message }))
            }
        }
    }

    /// Takes the GUID of a `Set-GUID` header in place of `sent`, unless another request
    /// has already replaced `sent`.
    async fn rotate(&self, client: &SourceClient, sent: &Secret, headers: &HeaderMap) {
        let Some(new) = set_guid(headers).filter(|g| g != sent.expose()) else { return };
        let mut session = client.session().lock().await;
        if session.as_ref() == Some(sent) {
            debug!(source = %client.name(), "The CC-Gateway rotated the session GUID.");
            *session = Some(Secret::new(new));
        }
    }

    /// The hard error of a refusal, without the password or the GUID.
    fn refused(&self, client: &SourceClient, url: &str, refusal: Refusal) -> SourceError {
        self.redact(SourceError::GatewayRefused {
            source_name: client.name().to_string(),
            url: url.to_string(),
            status: refusal.status,
            account: self.login.account,
            message: refusal.message,
        })
    }
}

/// Drops `stale` from the source's session, unless another request has already replaced it.
async fn forget(client: &SourceClient, stale: &Secret) {
    let mut session = client.session().lock().await;
    if session.as_ref() == Some(stale) {
        *session = None;
    }
}

/// The refusal of a 2xx answer whose `retcode` says the GUID is no longer valid.
fn refused_guid(body: &[u8]) -> Option<Refusal> {
    let answer = serde_json::from_slice::<Envelope>(body).ok()?;
    let code = answer.code().filter(|c| REFUSED_GUID_CODES.contains(&c.as_str()))?;
    Some(Refusal {
        status: format!("retcode {code}"),
        message: answer.message.unwrap_or_else(|| excerpt(body)),
    })
}

/// The GUID of a `Set-GUID: JSESSIONID=<guid>` header (attributes after `;` ignored; a
/// bare value is the GUID itself).
fn set_guid(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(SET_GUID)?.to_str().ok()?;
    let first = value.split(';').next()?.trim();
    let guid = first.strip_prefix("JSESSIONID=").unwrap_or(first).trim();
    (!guid.is_empty()).then(|| guid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(SET_GUID, value.parse().unwrap());
        map
    }

    /// `Set-GUID` gives its JSESSIONID value, with or without attributes, or a bare value.
    #[test]
    fn set_guid_headers_are_read() {
        assert_eq!(set_guid(&headers("JSESSIONID=27ab.AgentGateway0")).as_deref(), Some("27ab.AgentGateway0"));
        assert_eq!(set_guid(&headers("JSESSIONID=g1; Path=/; HttpOnly")).as_deref(), Some("g1"));
        assert_eq!(set_guid(&headers("g2")).as_deref(), Some("g2"));
        assert_eq!(set_guid(&headers("JSESSIONID=")), None);
        assert_eq!(set_guid(&HeaderMap::new()), None);
    }

    /// Only the documented codes refuse a GUID; other codes are for the envelope to judge.
    #[test]
    fn refused_guids_are_recognised_by_their_codes() {
        for code in REFUSED_GUID_CODES {
            let body = format!(r#"{{"retcode":"{code}","message":"guid invalid"}}"#);
            let refusal = refused_guid(body.as_bytes()).unwrap();
            assert_eq!((refusal.status, refusal.message), (format!("retcode {code}"), "guid invalid".into()));
        }
        for body in [r#"{"retcode":"0","result":[]}"#, r#"{"retcode":"100-007"}"#, "[1]", "{}"] {
            assert!(refused_guid(body.as_bytes()).is_none(), "{body}");
        }
    }
}
