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

use super::client::{BodyCheck, SourceClient};
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

    /// Sends `fields` to `path` with the session's GUID, each answer's body passed to
    /// `check` (see [`SourceClient::send_checked`]); a refused GUID is renewed once.
    pub async fn send<T>(
        &self,
        client: &SourceClient,
        method: RequestMethod,
        path: &str,
        fields: Map<String, Value>,
        check: BodyCheck<'_, T>,
    ) -> Result<(Bytes, T), SourceError> {
        let request = Outgoing::new(method, &client.url(path), &fields);
        let mut renewed = false;
        loop {
            let guid = self.guid(client).await?;
            *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(guid.clone());
            let headers = [("Guid", guid.expose())];
            let refusal = match client.send_checked(&request, &headers, None, check).await {
                Ok((reply, read)) => {
                    self.rotate(client, &guid, &reply.headers).await;
                    match refused_guid(&reply.body) {
                        None => return Ok((reply.body, read)),
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
        let request =
            Outgoing::new(RequestMethod::Post, &url, body.as_object().expect("an object"));
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
                let message =
                    answer.and_then(|a| a.message).unwrap_or_else(|| excerpt(&reply.body));
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::catalog::pipeline::AuthSpec;
    use crate::config::{SourceAuth, GATEWAY_LOGIN_PATH};
    use crate::source::auth::Authenticator;
    use crate::source::scripted::{client, source, Answer, Received, Script, ScriptedServer};

    const SKILLS: &str = "/agentgateway/resource/onlineagent/100001/agentskillsbyworkno/101";
    const ACCOUNT: u64 = 100001;
    const PASSWORD: &str = "gw-pa55word";
    const OK: &str =
        r#"{"result":[{"name":"voice","id":1,"mediatype":5}],"message":"success","retcode":"0"}"#;

    /// How the scripted gateway refuses a GUID it no longer accepts.
    #[derive(Debug, Clone, Copy)]
    enum Refuse {
        Code(&'static str),
        Http(u16),
    }

    /// A gateway whose login issues `GUID-1`, `GUID-2`, ... for the right password (and
    /// `retcode` 100-003 for a wrong one), in front of a business route that accepts the
    /// GUIDs `accepts` says and refuses the others as `refuse` says. Returns the script and
    /// the login counter.
    fn gateway(
        refuse: Refuse,
        accepts: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> (Script, Arc<AtomicUsize>) {
        let logins = Arc::new(AtomicUsize::new(0));
        let counter = logins.clone();
        let script = Arc::new(move |r: &Received| {
            if r.path == GATEWAY_LOGIN_PATH {
                if r.body != json!({"agentId": ACCOUNT, "password": PASSWORD}) {
                    return Answer::status(
                        200,
                        r#"{"retcode":"100-003","message":"the password is incorrect"}"#,
                    );
                }
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let body = json!({"result": {"guid": format!("GUID-{n}.AgentGateway1")},
                                  "message": "success", "retcode": "0"});
                return Answer::status(200, &body.to_string());
            }
            let guid = r.header("guid").first().copied().unwrap_or_default().to_string();
            if accepts(&guid) {
                return Answer::status(200, OK);
            }
            // The refusal echoes the GUID, as a careless server might.
            let message = format!("guid {guid} is invalid");
            match refuse {
                Refuse::Code(code) => {
                    Answer::status(200, &json!({"retcode": code, "message": message}).to_string())
                }
                Refuse::Http(status) => {
                    Answer::status(status, &json!({"message": message}).to_string())
                }
            }
        });
        (script, logins)
    }

    fn login() -> GatewayLogin {
        GatewayLogin {
            account: ACCOUNT,
            password: Secret::new(PASSWORD),
            login_path: GATEWAY_LOGIN_PATH.into(),
        }
    }

    fn auth(login: GatewayLogin) -> Authenticator {
        let mut src = source("http://127.0.0.1:9", Duration::from_secs(5), 3);
        src.auth = SourceAuth::Gateway(login);
        Authenticator::new(&AuthSpec::GatewayGuid, &src).unwrap()
    }

    async fn get(auth: &Authenticator, client: &SourceClient) -> Result<Bytes, SourceError> {
        auth.send(client, RequestMethod::Get, SKILLS, Map::new()).await
    }

    /// The login sends the account and password; every business request carries the GUID
    /// in `Guid`; two pipelines of one source (two strategies, one client) share one login,
    /// also when their first requests run at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_login_serves_every_pipeline_of_the_source() {
        let (script, logins) = gateway(Refuse::Code("100-006"), |_| true);
        let server = ScriptedServer::start(script).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let (a, b) = (auth(login()), auth(login()));
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let (client, auth) =
                    (client.clone(), if i % 2 == 0 { a.clone() } else { b.clone() });
                tokio::spawn(async move { get(&auth, &client).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(&task.await.unwrap().unwrap()[..], OK.as_bytes());
        }
        assert_eq!(logins.load(Ordering::SeqCst), 1);
        let received = server.received();
        let login = &received[0];
        assert_eq!((login.method.as_str(), login.path.as_str()), ("POST", GATEWAY_LOGIN_PATH));
        for query in &received[1..] {
            assert_eq!((query.method.as_str(), query.path.as_str()), ("GET", SKILLS));
            assert_eq!(query.header("guid"), ["GUID-1.AgentGateway1"]);
            assert!(query.header("content-length").is_empty(), "a GET has no body");
        }
    }

    /// A GUID refused with 100-006, 000-003 or HTTP 401 is dropped: one login more, and
    /// the request is sent again with the new GUID.
    #[tokio::test]
    async fn a_refused_guid_is_renewed_once() {
        for refuse in [Refuse::Code("100-006"), Refuse::Code("000-003"), Refuse::Http(401)] {
            let (script, logins) = gateway(refuse, |guid| guid != "GUID-1.AgentGateway1");
            let server = ScriptedServer::start(script).await;
            let client = client(&server.base_url, Duration::from_secs(5), 3);
            let auth = auth(login());
            assert_eq!(&get(&auth, &client).await.unwrap()[..], OK.as_bytes(), "{refuse:?}");
            assert_eq!(&get(&auth, &client).await.unwrap()[..], OK.as_bytes(), "{refuse:?}");
            assert_eq!(logins.load(Ordering::SeqCst), 2, "{refuse:?}");
            let guids: Vec<_> = server
                .received()
                .iter()
                .filter(|r| r.path == SKILLS)
                .map(|r| r.header("guid")[0].to_string())
                .collect();
            assert_eq!(
                guids,
                ["GUID-1.AgentGateway1", "GUID-2.AgentGateway1", "GUID-2.AgentGateway1"]
            );
        }
    }

    /// A fresh GUID refused as well is one hard error that names the source, the account
    /// and the refusal, never the password or a GUID (even when the server echoes it).
    #[tokio::test]
    async fn a_second_refusal_is_a_hard_error_naming_the_account() {
        for refuse in [Refuse::Code("100-006"), Refuse::Http(401)] {
            let (script, logins) = gateway(refuse, |_| false);
            let server = ScriptedServer::start(script).await;
            let client = client(&server.base_url, Duration::from_secs(5), 3);
            let err = get(&auth(login()), &client).await.unwrap_err();
            assert!(matches!(err, SourceError::GatewayRefused { account: ACCOUNT, .. }), "{err:?}");
            assert!(err.is_auth_failure());
            assert_eq!(logins.load(Ordering::SeqCst), 2, "{refuse:?}: renewed once, no loop");
            let text = format!("{err} {err:?}");
            for part in ["source 'oifde'", "account 100001", "gateway_password", "is invalid"] {
                assert!(text.contains(part), "{part}: {text}");
            }
            assert!(!text.contains("GUID-") && !text.contains(PASSWORD), "{text}");
        }
    }

    /// HTTP 403 is no expired GUID: it fails at once, without a second login.
    #[tokio::test]
    async fn a_403_fails_without_a_new_login() {
        let (script, logins) = gateway(Refuse::Http(403), |_| false);
        let server = ScriptedServer::start(script).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let err = get(&auth(login()), &client).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SourceError::GatewayRefused { .. }), "{err:?}");
        assert!(text.contains("HTTP 403") && !text.contains("GUID-1"), "{text}");
        assert_eq!((logins.load(Ordering::SeqCst), server.received().len()), (1, 2));
    }

    /// A wrong password fails after one login request and no business request, with one
    /// error that names the account and the gateway's message, not the password.
    #[tokio::test]
    async fn a_wrong_password_fails_at_once() {
        let (script, logins) = gateway(Refuse::Code("100-006"), |_| true);
        let server = ScriptedServer::start(script).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let wrong = GatewayLogin { password: Secret::new("not-the-password"), ..login() };
        let err = get(&auth(wrong), &client).await.unwrap_err();
        assert!(matches!(err, SourceError::GatewayRefused { .. }), "{err:?}");
        let text = err.to_string();
        for part in ["account 100001", "login retcode 100-003", "the password is incorrect"] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert!(!text.contains("not-the-password"), "{text}");
        assert_eq!((logins.load(Ordering::SeqCst), server.received().len()), (0, 1));
    }

    /// A `Set-GUID` header replaces the GUID without a login; the rotated GUID is redacted
    /// from later errors too.
    #[tokio::test]
    async fn set_guid_rotates_the_session() {
        let logins = Arc::new(AtomicUsize::new(0));
        let counter = logins.clone();
        let script: Script = Arc::new(move |r: &Received| {
            if r.path == GATEWAY_LOGIN_PATH {
                counter.fetch_add(1, Ordering::SeqCst);
                return Answer::status(200, r#"{"result":{"guid":"G-old"},"retcode":"0"}"#);
            }
            match r.header("guid")[0] {
                "G-old" => Answer::Reply {
                    status: 200,
                    headers: vec![("Set-GUID".into(), "JSESSIONID=G-new; Path=/".into())],
                    body: OK.into(),
                },
                guid => Answer::status(
                    200,
                    &json!({"retcode": "100-007", "message": format!("{guid} busy")}).to_string(),
                ),
            }
        });
        let server = ScriptedServer::start(script).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let auth = auth(login());
        get(&auth, &client).await.unwrap();
        let second = get(&auth, &client).await.unwrap();
        let guids: Vec<_> =
            server.received().iter().skip(1).map(|r| r.header("guid")[0].to_string()).collect();
        assert_eq!(guids, ["G-old", "G-new"]);
        assert_eq!(logins.load(Ordering::SeqCst), 1);
        let err = SourceError::Api {
            url: "u".into(),
            field: "retcode".into(),
            code: "100-007".into(),
            message: String::from_utf8_lossy(&second).into(),
        };
        let text = auth.redact(err).await.to_string();
        assert!(!text.contains("G-new") && text.contains("**REDACTED**"), "{text}");
    }

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(SET_GUID, value.parse().unwrap());
        map
    }

    /// `Set-GUID` gives its JSESSIONID value, with or without attributes, or a bare value.
    #[test]
    fn set_guid_headers_are_read() {
        assert_eq!(
            set_guid(&headers("JSESSIONID=27ab.AgentGateway0")).as_deref(),
            Some("27ab.AgentGateway0")
        );
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
            assert_eq!(
                (refusal.status, refusal.message),
                (format!("retcode {code}"), "guid invalid".into())
            );
        }
        for body in [r#"{"retcode":"0","result":[]}"#, r#"{"retcode":"100-007"}"#, "[1]", "{}"] {
            assert!(refused_guid(body.as_bytes()).is_none(), "{body}");
        }
    }
}
