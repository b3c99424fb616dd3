//! Auth strategies: the C2 AK/SK signature of every request (see
//! [`super::signature`]), and the OIFDE token (C3) carried as a field of the JSON body,
//! either fixed in the configuration or obtained with `gettoken` from the tenant's app key
//! and API password, cached, refreshed ahead of expiry and once on 401 (one refresh shared
//! by every request in flight: the login runs under the cache's lock).
//!
//! Refused credentials are not retried: the error names the source and the app key or the
//! AK (never a token or a secret), and the engine stops the pipeline on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tracing::info;

use super::client::SourceClient;
use super::error::{excerpt, SourceError};
use super::signature::Signer;
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

    /// Names the credential of the login, without the secret.
    fn credential(&self) -> String {
        format!("app key '{}' with its app_secret", self.app_key)
    }

    async fn login(&self, client: &SourceClient) -> Result<(Secret, Duration), SourceError> {
        let body =
            serde_json::json!({"appKey": self.app_key, "appSecret": self.app_secret.expose()});
        let bytes = client
            .post_json(GETTOKEN_PATH, body.to_string().as_bytes())
            .await
            .map_err(|e| e.redacted(self.app_secret.expose()).refused(&self.credential()))?;
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
                    credential: self.credential(),
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
pub enum Authenticator {
    /// C3: a token in a field of the JSON body.
    BodyToken(BodyTokenAuth),
    /// C2: every request signed with the source's AK/SK.
    Signature(Arc<Signer>),
}

impl Authenticator {
    /// Builds the strategy a pipeline asks for from the source's credentials.
    pub fn new(
        spec: &AuthSpec,
        source_name: &str,
        creds: &SourceAuth,
    ) -> Result<Self, SourceError> {
        let missing =
            |needed| SourceError::NoCredentials { source_name: source_name.to_string(), needed };
        match (spec, creds) {
            (AuthSpec::BodyToken { field }, creds) => BodyTokenAuth::new(field, creds)
                .map(Self::BodyToken)
                .ok_or_else(|| missing("auth_token, or app_key and app_secret")),
            (
                AuthSpec::AkskSignature { signed_headers, timestamp_precision },
                SourceAuth::AkSk { ak, sk },
            ) => Ok(Self::Signature(Arc::new(Signer::new(
                ak.clone(),
                sk.clone(),
                signed_headers.as_slice(),
                *timestamp_precision,
            )))),
            (AuthSpec::AkskSignature { .. }, _) => Err(missing("ak and sk")),
        }
    }

    /// The same error without any secret this strategy knows: for errors built from a
    /// response body after [`Self::post`] returned it.
    pub async fn redact(&self, error: SourceError) -> SourceError {
        match self {
            Self::BodyToken(auth) => auth.redact(error).await,
            Self::Signature(signer) => error.redacted(signer.sk().expose()),
        }
    }

    /// POSTs `body` as JSON, authenticated. C3: see [`BodyTokenAuth`]. C2: the body is
    /// serialised once and those bytes are signed and sent; a refusal (401 or 403) fails at
    /// once as [`SourceError::SignatureRefused`], naming the AK.
    pub async fn post(
        &self,
        client: &SourceClient,
        path: &str,
        body: Map<String, Value>,
    ) -> Result<Bytes, SourceError> {
        match self {
            Self::BodyToken(auth) => auth.post(client, path, body).await,
            Self::Signature(signer) => {
                let bytes = serde_json::to_vec(&body).expect("a JSON map always serialises");
                client
                    .post_json_signed(path, &bytes, signer)
                    .await
                    .map_err(|e| e.redacted(signer.sk().expose()).signature_refused(signer.ak()))
            }
        }
    }
}

/// C3: the OIFDE token sent as a field of the JSON body, fixed or obtained by login.
#[derive(Debug, Clone)]
pub struct BodyTokenAuth {
    field: String,
    tokens: Arc<TokenSource>,
}

impl BodyTokenAuth {
    /// The strategy for body field `field`, or `None` when `creds` hold no token source.
    fn new(field: &str, creds: &SourceAuth) -> Option<Self> {
        let tokens = match creds {
            SourceAuth::StaticToken(t) => TokenSource::Fixed(t.clone()),
            SourceAuth::AppCredentials { app_key, app_secret } => TokenSource::Login(TokenCache {
                app_key: app_key.clone(),
                app_secret: app_secret.clone(),
                current: Mutex::new(None),
            }),
            SourceAuth::AkSk { .. } | SourceAuth::None => return None,
        };
        Some(Self { field: field.to_string(), tokens: Arc::new(tokens) })
    }

    /// The same error without the fixed token, or the current login token and the app
    /// secret.
    async fn redact(&self, error: SourceError) -> SourceError {
        match &*self.tokens {
            TokenSource::Fixed(t) => error.redacted(t.expose()),
            TokenSource::Login(cache) => {
                let current = cache.current.lock().await.as_ref().map(|(t, _)| t.clone());
                let error = error.redacted(cache.app_secret.expose());
                match current {
                    Some(token) => error.redacted(token.expose()),
                    None => error,
                }
            }
        }
    }

    async fn token(&self, client: &SourceClient) -> Result<Secret, SourceError> {
        match &*self.tokens {
            TokenSource::Fixed(t) => Ok(t.clone()),
            TokenSource::Login(cache) => cache.get(client).await,
        }
    }

    /// Names the token a request carries, without its value.
    fn credential(&self) -> String {
        match &*self.tokens {
            TokenSource::Fixed(_) => "the configured auth_token".into(),
            TokenSource::Login(cache) => {
                format!("the token obtained with app key '{}'", cache.app_key)
            }
        }
    }

    /// POSTs `body` with the token added; on 401 with a login token, logs in again once and
    /// retries. A fixed token that is refused, or a 403, fails at once.
    async fn post(
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
                (Err(SourceError::Unauthorized { status: 401, .. }), TokenSource::Login(cache))
                    if !refreshed =>
                {
                    info!(source = %client.name(), "Token refused (HTTP 401); logging in again.");
                    cache.invalidate(&token).await;
                    refreshed = true;
                }
                (Err(e), _) => return Err(e.redacted(token.expose()).refused(&self.credential())),
                (ok, _) => return ok,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::source::scripted::{client, queue, Answer, Received, Script, ScriptedServer};
    use crate::source::signature::Authorization;

    const QUERY: &str = "/oifde/rest/api/queryRbtRecognitionResult";
    const OK: &str = r#"{"errorCode":"0","rbtRecognitions":[],"total":0}"#;
    const EXPIRED: &str = r#"{"errorCode":"401","errorMsg":"authToken is invalid or expired"}"#;

    fn login_auth() -> Authenticator {
        let creds = SourceAuth::AppCredentials {
            app_key: "202401150001".into(),
            app_secret: Secret::new("pa55word"),
        };
        Authenticator::new(&AuthSpec::BodyToken { field: "authToken".into() }, "oifde", &creds)
            .unwrap()
    }

    /// A gettoken endpoint that issues `t1`, `t2`, ... living `ttl_secs`, in front of a
    /// query that `accepts` some tokens and answers 401 to the others. Returns the script and
    /// the login counter.
    fn token_server(
        ttl_secs: u64,
        accepts: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> (Script, Arc<AtomicUsize>) {
        let logins = Arc::new(AtomicUsize::new(0));
        let counter = logins.clone();
        let script = Arc::new(move |r: &Received| {
            if r.path == GETTOKEN_PATH {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let body = json!({"errorCode": 0, "errorMsg": "success",
                                  "authToken": format!("t{n}"), "expireTime": ttl_secs});
                Answer::status(200, &body.to_string())
            } else if accepts(r.body["authToken"].as_str().unwrap_or_default()) {
                Answer::status(200, OK)
            } else {
                // Slow refusals, so that concurrent requests are all refused before the
                // first refusal is answered.
                Answer::status(401, EXPIRED).after(Duration::from_millis(300))
            }
        });
        (script, logins)
    }

    /// The token each query carried, in arrival order.
    fn query_tokens(server: &ScriptedServer) -> Vec<String> {
        let received = server.received();
        let queries = received.iter().filter(|r| r.path == QUERY);
        queries.map(|r| r.body["authToken"].as_str().unwrap_or_default().to_string()).collect()
    }

    /// Concurrent requests share one login; when eight requests in flight are refused with
    /// 401, they share one refresh and each is retried once with the new token.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_login_and_one_refresh() {
        let revoked = Arc::new(AtomicBool::new(false));
        let revoked_t1 = revoked.clone();
        let accepts = move |token: &str| token != "t1" || !revoked_t1.load(Ordering::SeqCst);
        let (script, logins) = token_server(3600, accepts);
        let server = ScriptedServer::start(script).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let auth = login_auth();
        let posts = |n: usize| {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let (client, auth) = (client.clone(), auth.clone());
                    tokio::spawn(async move { auth.post(&client, QUERY, Map::new()).await })
                })
                .collect();
            async move {
                for task in tasks {
                    assert_eq!(&task.await.unwrap().unwrap()[..], OK.as_bytes());
                }
            }
        };
        posts(4).await;
        assert_eq!(logins.load(Ordering::SeqCst), 1, "one login for four cold requests");

        revoked.store(true, Ordering::SeqCst);
        posts(8).await;
        assert_eq!(logins.load(Ordering::SeqCst), 2, "one refresh for eight refusals");
        let tokens = query_tokens(&server);
        let count = |t: &str| tokens.iter().filter(|x| *x == t).count();
        assert_eq!((count("t1"), count("t2")), (4 + 8, 8), "each refused once, then accepted");
    }

    /// A token is reused while it lives and replaced before it expires (here, a 1 s token
    /// after 850 ms), without waiting for a 401.
    #[tokio::test]
    async fn tokens_are_cached_and_refreshed_ahead_of_expiry() {
        let (script, logins) = token_server(1, |_| true);
        let server = ScriptedServer::start(script).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let auth = login_auth();
        for _ in 0..3 {
            auth.post(&client, QUERY, Map::new()).await.unwrap();
        }
        assert_eq!(logins.load(Ordering::SeqCst), 1, "the token is cached");
        tokio::time::sleep(Duration::from_millis(850)).await;
        auth.post(&client, QUERY, Map::new()).await.unwrap();
        assert_eq!(logins.load(Ordering::SeqCst), 2, "refreshed ahead of expiry");
        assert_eq!(query_tokens(&server), ["t1", "t1", "t1", "t2"]);
    }

    /// A token refused again right after a refresh fails (no second refresh, no loop).
    #[tokio::test]
    async fn a_second_401_fails() {
        let (script, logins) = token_server(3600, |_| false);
        let server = ScriptedServer::start(script).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let err = login_auth().post(&client, QUERY, Map::new()).await.unwrap_err();
        assert!(matches!(err, SourceError::Unauthorized { status: 401, .. }), "{err:?}");
        assert_eq!(logins.load(Ordering::SeqCst), 2);
        assert_eq!(query_tokens(&server), ["t1", "t2"]);
        let text = err.to_string();
        assert!(text.contains("the token obtained with app key '202401150001'"), "{text}");
        assert!(!text.contains("t2") && !text.contains("pa55word"), "{text}");
    }

    /// Wrong credentials fail after one gettoken request, whether the server answers 401 or
    /// 200 with an error code; the message names the source and the app key, not the secret.
    #[tokio::test]
    async fn wrong_credentials_fail_at_once_naming_the_app_key() {
        let refusal = r#"{"errorCode":1,"errorMsg":"appKey or appSecret is incorrect"}"#;
        for status in [401, 200] {
            let script: Script = Arc::new(move |_| Answer::status(status, refusal));
            let server = ScriptedServer::start(script).await;
            let client = client(&server.base_url, Duration::from_secs(5), 5);
            let err = login_auth().post(&client, QUERY, Map::new()).await.unwrap_err();
            assert!(matches!(err, SourceError::Unauthorized { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("source 'oifde'"), "{text}");
            assert!(text.contains("app key '202401150001'"), "{text}");
            assert!(text.contains("appKey or appSecret is incorrect"), "{text}");
            assert!(!text.contains("pa55word"), "{text}");
            assert_eq!(server.received().len(), 1, "HTTP {status}: not retried");
        }
    }

    fn signing_auth(sk: &str) -> Authenticator {
        let spec = AuthSpec::AkskSignature {
            signed_headers: vec!["host".into(), "content-type".into(), "content-length".into()],
            timestamp_precision: Default::default(),
        };
        let creds = SourceAuth::AkSk { ak: "cmsAK01".into(), sk: Secret::new(sk) };
        Authenticator::new(&spec, "cms", &creds).unwrap()
    }

    /// A C2-signed request carries the signature with the AK, Host with the port, and one
    /// Content-Length of the body sent (not chunked); the body has no token field.
    #[tokio::test]
    async fn signed_requests_carry_the_signed_headers() {
        let server = ScriptedServer::start(queue(vec![Answer::status(200, OK)])).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let mut body = Map::new();
        body.insert("vdn".into(), json!(170));
        let answer = signing_auth("cms-sk-0001").post(&client, QUERY, body).await.unwrap();
        assert_eq!(&answer[..], OK.as_bytes());
        let received = server.received();
        let request = &received[0];
        let host = server.base_url.trim_start_matches("http://");
        assert_eq!(request.header("host"), [host]);
        assert_eq!(request.header("content-length"), ["11"]);
        assert_eq!(request.header("content-type"), ["application/json; charset=UTF-8"]);
        assert!(request.header("transfer-encoding").is_empty());
        let auth = request.header("authorization");
        assert_eq!(auth.len(), 1, "{auth:?}");
        let parsed = Authorization::parse(auth[0]).unwrap();
        assert_eq!(parsed.ak, "cmsAK01");
        assert_eq!(parsed.signed_headers, "content-length;content-type;host");
        assert!(parsed.timestamp.len() == 24 && parsed.timestamp.ends_with('Z'), "{parsed:?}");
        assert_eq!(request.body, json!({"vdn": 170}));
    }

    /// HTTP 401 to a C2-signed request fails at once, after one request, with an error that
    /// names the source, the AK and the likely causes, and never the SK.
    #[tokio::test]
    async fn a_refused_signature_is_a_hard_error_naming_the_ak() {
        let refusal = r#"{"resultCode":"0100401","resultDesc":"authentication failed"}"#;
        for status in [401, 403] {
            let server = ScriptedServer::start(queue(vec![Answer::status(status, refusal)])).await;
            let client = client(&server.base_url, Duration::from_secs(5), 5);
            let err =
                signing_auth("cms-sk-0001").post(&client, QUERY, Map::new()).await.unwrap_err();
            assert!(
                matches!(&err, SourceError::SignatureRefused { status: s, ak, .. } if *s == status && ak == "cmsAK01"),
                "{err:?}"
            );
            assert!(err.is_auth_failure());
            let text = err.to_string();
            for part in [
                "source 'oifde'",
                "AK 'cmsAK01'",
                &format!("HTTP {status}"),
                "authentication failed",
                "wrong ak or sk",
                "clock",
                "rewrites the Host header",
            ] {
                assert!(text.contains(part), "{part}: {text}");
            }
            assert!(!text.contains("cms-sk-0001") && !format!("{err:?}").contains("cms-sk-0001"));
            assert_eq!(server.received().len(), 1, "HTTP {status}: not retried");
        }
    }

    /// A pipeline's style needs credentials of its kind: the error says which keys to set.
    #[test]
    fn a_style_without_its_credentials_names_the_keys_to_set() {
        let aksk = SourceAuth::AkSk { ak: "a".into(), sk: Secret::new("s") };
        let body = AuthSpec::BodyToken { field: "authToken".into() };
        let err = Authenticator::new(&body, "oifde", &aksk).unwrap_err().to_string();
        assert!(err.contains("source 'oifde'") && err.contains("set auth_token"), "{err}");
        let signed = AuthSpec::AkskSignature {
            signed_headers: vec!["host".into()],
            timestamp_precision: Default::default(),
        };
        let token = SourceAuth::StaticToken(Secret::new("t"));
        for creds in [token, SourceAuth::None] {
            let err = Authenticator::new(&signed, "cms", &creds).unwrap_err().to_string();
            assert!(err.contains("source 'cms'") && err.contains("set ak and sk"), "{err}");
        }
    }

    /// A fixed token that is refused fails at once, without a login, and is not shown.
    #[tokio::test]
    async fn a_refused_fixed_token_fails_at_once() {
        let (script, logins) = token_server(3600, |_| false);
        let server = ScriptedServer::start(script).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let creds = SourceAuth::StaticToken(Secret::new("static-tok"));
        let auth =
            Authenticator::new(&AuthSpec::BodyToken { field: "authToken".into() }, "oifde", &creds)
                .unwrap();
        let err = auth.post(&client, QUERY, Map::new()).await.unwrap_err().to_string();
        assert!(err.contains("the configured auth_token") && !err.contains("static-tok"), "{err}");
        assert_eq!(logins.load(Ordering::SeqCst), 0);
        assert_eq!(query_tokens(&server), ["static-tok"]);
    }
}
