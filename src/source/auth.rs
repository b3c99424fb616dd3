//! Auth strategies: how a pipeline's requests prove who sends them.
//!
//! - `body_token`: the OIFDE token (C3) as a field of the JSON body, either fixed in the
//!   configuration or obtained with `gettoken` from the tenant's app key and API password.
//! - `fabric_token`: the API Fabric token (C1) obtained with `tokenByAkSk` from the app key
//!   and app secret, sent as `Authorization: Bearer`, with `x-app-key` and, when
//!   configured, `X-UserId` headers.
//! - `aksk_signature`: the C2 AK/SK signature of every request (see [`super::signature`]),
//!   computed anew at each attempt; no token, no login.
//! - `gateway_guid`: the CC-Gateway session GUID (C5) in the `Guid` header (see
//!   [`super::gateway`]).
//!
//! Every strategy sends `POST` and `GET` requests alike ([`super::outgoing`]): the fields
//! a `POST` carries as its JSON body, a `GET` carries as its query.
//!
//! Login tokens of either kind are cached, refreshed ahead of expiry and once on a 401 of a
//! business call, which is then retried; one refresh is shared by every request in flight
//! (the login runs under the cache's lock).
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

use super::client::{complete_json, BodyCheck, CheckedBody, SourceClient};
use super::error::{excerpt, SourceError};
use super::gateway::GatewayAuth;
use super::outgoing::Outgoing;
use super::signature::Signer;
use crate::catalog::pipeline::{AuthSpec, RequestMethod};
use crate::config::{FabricLogin, Source, SourceAuth};
use crate::secret::Secret;

/// The C3 token endpoint, relative to the source's base URL.
pub const GETTOKEN_PATH: &str = "/oifde/rest/api/gettoken";

/// Token lifetime assumed when `gettoken` does not say.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(600);

/// The longest a `gettoken` token is used: the lifetime documented for the OIFDE token of
/// the sibling interface (C6). A longer `expireTime` (or one in another unit) is read as
/// this, so a token is renewed at least hourly.
const MAX_GETTOKEN_TTL: Duration = Duration::from_secs(3600);

/// Where tokens come from.
#[derive(Debug)]
enum TokenSource {
    Fixed(Secret),
    Login(TokenCache),
}

/// Which login endpoint a cache uses.
#[derive(Debug)]
enum LoginKind {
    /// OIFDE `gettoken` (C3) on the source's base URL.
    Gettoken,
    /// API Fabric `tokenByAkSk` (C1).
    Fabric(FabricLogin),
}

/// A cached login token.
#[derive(Debug)]
struct TokenCache {
    kind: LoginKind,
    app_key: String,
    app_secret: Secret,
    current: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GettokenAnswer {
    #[serde(default)]
    error_code: Option<Value>,
    #[serde(default)]
    error_msg: Option<String>,
    #[serde(default)]
    auth_token: Option<String>,
    #[serde(default)]
    expire_time: Option<Value>,
}

/// The answer of `tokenByAkSk`. `Expires` and `CreateTime` are documented as strings of
/// seconds; numbers are accepted too.
#[derive(Deserialize)]
struct FabricAnswer {
    #[serde(rename = "AccessToken", default)]
    access_token: Option<String>,
    #[serde(rename = "Expires", default)]
    expires: Option<Value>,
    #[serde(rename = "CreateTime", default)]
    create_time: Option<Value>,
}

impl TokenCache {
    fn new(kind: LoginKind, app_key: &str, app_secret: &Secret) -> Self {
        Self {
            kind,
            app_key: app_key.to_string(),
            app_secret: app_secret.clone(),
            current: Mutex::new(None),
        }
    }

    async fn get(&self, client: &SourceClient) -> Result<Secret, SourceError> {
        let mut current = self.current.lock().await;
        if let Some((token, expires)) = current.as_ref() {
            if Instant::now() < *expires {
                return Ok(token.clone());
            }
        }
        let (token, ttl) = match &self.kind {
            LoginKind::Gettoken => self.gettoken(client).await?,
            LoginKind::Fabric(login) => self.token_by_ak_sk(client, login).await?,
        };
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

    /// A refusal of the login by the token endpoint.
    fn refusal(
        &self,
        client: &SourceClient,
        url: String,
        status: u16,
        message: String,
    ) -> SourceError {
        SourceError::Unauthorized {
            source_name: client.name().to_string(),
            url,
            status,
            credential: self.credential(),
            message,
        }
        .redacted(self.app_secret.expose())
    }

    async fn gettoken(&self, client: &SourceClient) -> Result<(Secret, Duration), SourceError> {
        let body =
            serde_json::json!({"appKey": self.app_key, "appSecret": self.app_secret.expose()});
        let bytes = client
            .post_json(GETTOKEN_PATH, body.to_string().as_bytes())
            .await
            .map_err(|e| e.redacted(self.app_secret.expose()).refused(&self.credential()))?;
        let url = client.url(GETTOKEN_PATH);
        let answer: GettokenAnswer =
            serde_json::from_slice(&bytes).map_err(|e| SourceError::Shape {
                url: url.clone(),
                path: "$".into(),
                problem: format!("not a gettoken answer: {e}"),
            })?;
        let code = answer.error_code.as_ref().map(value_text).unwrap_or_else(|| "0".into());
        let token = match answer.auth_token {
            Some(t) if code == "0" && !t.is_empty() => t,
            _ => {
                let message = format!(
                    "gettoken answered errorCode {code}: {}",
                    answer.error_msg.unwrap_or_else(|| excerpt(&bytes))
                );
                return Err(self.refusal(client, url, 200, message));
            }
        };
        let now = chrono::Utc::now().timestamp();
        let ttl = gettoken_ttl(answer.expire_time.as_ref().and_then(seconds), now);
        info!(source = %client.name(), ttl_secs = ttl.as_secs(), "Obtained an OIFDE token.");
        Ok((Secret::new(token), ttl))
    }

    /// Logs in with `tokenByAkSk`. A 400, 401 or 403 of the token endpoint, or an answer
    /// without `AccessToken`, is a refusal of the app key and secret.
    async fn token_by_ak_sk(
        &self,
        client: &SourceClient,
        login: &FabricLogin,
    ) -> Result<(Secret, Duration), SourceError> {
        let url = login.token_url.as_str();
        let body =
            serde_json::json!({"app_key": self.app_key, "app_secret": self.app_secret.expose()});
        let lifetime = login.token_lifetime.as_secs().to_string();
        let headers = [("X-Token-Expire", lifetime.as_str())];
        let bytes = match client.post_json_to(url, &headers, body.to_string().as_bytes()).await {
            Ok(bytes) => bytes,
            Err(SourceError::Http { status: 400, body, .. }) => {
                return Err(self.refusal(client, url.to_string(), 400, body))
            }
            Err(e) => return Err(e.redacted(self.app_secret.expose()).refused(&self.credential())),
        };
        let answer = serde_json::from_slice::<FabricAnswer>(&bytes).ok();
        let Some((token, answer)) =
            answer.and_then(|a| a.access_token.clone().filter(|t| !t.is_empty()).map(|t| (t, a)))
        else {
            let message =
                format!("tokenByAkSk answered without an AccessToken: {}", excerpt(&bytes));
            return Err(self.refusal(client, url.to_string(), 200, message));
        };
        let ttl = fabric_ttl(&answer, login.token_lifetime);
        info!(source = %client.name(), ttl_secs = ttl.as_secs(), "Obtained an API Fabric token.");
        Ok((Secret::new(token), ttl))
    }
}

/// The lifetime of a `gettoken` token whose answer says `expire_time` at `now` (epoch
/// seconds). `expireTime` is documented as seconds: a lifetime, or, when it is as large as
/// an instant, the epoch second (or, larger still, the epoch millisecond) it ends at. It is
/// capped at [`MAX_GETTOKEN_TTL`]; none, zero or an instant already past gives
/// [`DEFAULT_TOKEN_TTL`].
fn gettoken_ttl(expire_time: Option<u64>, now: i64) -> Duration {
    /// 2001-09-09 in epoch seconds: no lifetime is this long, every instant in use larger.
    const EPOCH_SECONDS: u64 = 1_000_000_000;
    let now = u64::try_from(now).unwrap_or(0);
    let secs = match expire_time {
        Some(t) if t >= EPOCH_SECONDS * 1000 => (t / 1000).saturating_sub(now),
        Some(t) if t >= EPOCH_SECONDS => t.saturating_sub(now),
        Some(t) => t,
        None => 0,
    };
    match secs {
        0 => DEFAULT_TOKEN_TTL,
        secs => Duration::from_secs(secs).min(MAX_GETTOKEN_TTL),
    }
}

/// The lifetime of a `tokenByAkSk` token: `Expires` seconds (the documented reading); when
/// `Expires` is larger than `CreateTime` it is read as an instant and the lifetime is their
/// difference. Either way it is capped at the lifetime `asked` for, which is also used when
/// the answer gives none.
fn fabric_ttl(answer: &FabricAnswer, asked: Duration) -> Duration {
    let expires = answer.expires.as_ref().and_then(seconds);
    let created = answer.create_time.as_ref().and_then(seconds);
    let granted = match (expires, created) {
        (Some(expires), Some(created)) if expires > created => Some(expires - created),
        (expires, _) => expires,
    };
    granted.filter(|s| *s > 0).map(Duration::from_secs).map_or(asked, |g| g.min(asked))
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A count of seconds written as a number or a string, whole or not.
fn seconds(v: &Value) -> Option<u64> {
    let text = value_text(v);
    let text = text.trim();
    text.parse::<u64>().ok().or_else(|| {
        text.parse::<f64>().ok().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64)
    })
}

/// How business requests carry the token.
#[derive(Debug, Clone)]
enum Carrier {
    /// A field of the JSON body.
    BodyField(String),
    /// `Authorization: Bearer`, `x-app-key` and, when set, `X-UserId`.
    Bearer { app_key: String, user_id: Option<String> },
}

/// The auth strategy of one pipeline on one source.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// C3 and C1: a token, fixed or obtained by login, carried by every request.
    Token(TokenAuth),
    /// C2: every request signed with the source's AK/SK.
    Signature(Arc<Signer>),
    /// C5: the CC-Gateway session GUID in the `Guid` header.
    Gateway(GatewayAuth),
}

impl Authenticator {
    /// Builds the strategy a pipeline asks for from the source's credentials.
    pub fn new(spec: &AuthSpec, source: &Source) -> Result<Self, SourceError> {
        let missing = |needed: &'static str| SourceError::NoCredentials {
            source_name: source.name.clone(),
            needed,
        };
        let token =
            |carrier, tokens| Ok(Self::Token(TokenAuth { carrier, tokens: Arc::new(tokens) }));
        match (spec, &source.auth) {
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
            (AuthSpec::BodyToken { field }, SourceAuth::StaticToken(t)) => {
                token(Carrier::BodyField(field.clone()), TokenSource::Fixed(t.clone()))
            }
            (AuthSpec::BodyToken { field }, SourceAuth::AppCredentials { app_key, app_secret }) => {
                token(
                    Carrier::BodyField(field.clone()),
                    TokenSource::Login(TokenCache::new(LoginKind::Gettoken, app_key, app_secret)),
                )
            }
            (
                AuthSpec::BodyToken { .. },
                SourceAuth::AkSk { .. } | SourceAuth::Gateway(_) | SourceAuth::None,
            ) => Err(missing("auth_token, or app_key and app_secret")),
            (AuthSpec::FabricToken, SourceAuth::AppCredentials { app_key, app_secret }) => token(
                Carrier::Bearer {
                    app_key: app_key.clone(),
                    user_id: source.fabric.user_id.clone(),
                },
                TokenSource::Login(TokenCache::new(
                    LoginKind::Fabric(source.fabric.clone()),
                    app_key,
                    app_secret,
                )),
            ),
            (AuthSpec::FabricToken, SourceAuth::StaticToken(_)) => Err(SourceError::Setup {
                source_name: source.name.clone(),
                problem: "the pipeline's auth style fabric_token logs in with tokenByAkSk: \
                          set app_key and app_secret instead of auth_token"
                    .into(),
            }),
            (
                AuthSpec::FabricToken,
                SourceAuth::AkSk { .. } | SourceAuth::Gateway(_) | SourceAuth::None,
            ) => Err(missing("app_key and app_secret")),
            (AuthSpec::GatewayGuid, SourceAuth::Gateway(login)) => {
                Ok(Self::Gateway(GatewayAuth::new(login)))
            }
            (AuthSpec::GatewayGuid, _) => Err(missing("gateway_account and gateway_password")),
        }
    }

    /// The same error without any secret this strategy knows: for errors built from a
    /// response body after [`Self::send`] returned it.
    pub async fn redact(&self, error: SourceError) -> SourceError {
        match self {
            Self::Token(auth) => auth.redact(error).await,
            Self::Signature(signer) => error.redacted(signer.sk().expose()),
            Self::Gateway(auth) => auth.redact(error),
        }
    }

    /// Sends `fields` to `path` with `method` (a `POST` as its JSON body, a `GET` as its
    /// query), authenticated. C3 and C1: see [`TokenAuth`]. C2: the request is built once
    /// and signed anew at each attempt; a refusal (401 or 403) fails at once as
    /// [`SourceError::SignatureRefused`], naming the AK. C5: see [`GatewayAuth`].
    pub async fn send(
        &self,
        client: &SourceClient,
        method: RequestMethod,
        path: &str,
        fields: Map<String, Value>,
    ) -> Result<Bytes, SourceError> {
        let checked = self.send_checked(client, method, path, fields, &mut complete_json).await;
        checked.map(|(body, ())| body)
    }

    /// [`Self::send`] with each answer's body passed to `check`, and what the check read
    /// from the body returned (see [`SourceClient::send_checked`]).
    pub async fn send_checked<T: CheckedBody>(
        &self,
        client: &SourceClient,
        method: RequestMethod,
        path: &str,
        fields: Map<String, Value>,
        check: BodyCheck<'_, T>,
    ) -> Result<(Bytes, T), SourceError> {
        match self {
            Self::Token(auth) => auth.send(client, method, path, fields, check).await,
            Self::Signature(signer) => {
                let request = Outgoing::new(method, &client.url(path), &fields);
                client
                    .send_checked(&request, &[], Some(signer), check)
                    .await
                    .map(|(reply, read)| (reply.body, read))
                    .map_err(|e| e.redacted(signer.sk().expose()).signature_refused(signer.ak()))
            }
            Self::Gateway(auth) => auth.send(client, method, path, fields, check).await,
        }
    }
}

/// C3 and C1: a token, fixed or obtained by login, and how requests carry it.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    carrier: Carrier,
    tokens: Arc<TokenSource>,
}

impl TokenAuth {
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

    /// Sends one business request carrying `token`.
    async fn send_once<T>(
        &self,
        client: &SourceClient,
        method: RequestMethod,
        path: &str,
        fields: &mut Map<String, Value>,
        token: &Secret,
        check: BodyCheck<'_, T>,
    ) -> Result<(Bytes, T), SourceError> {
        let url = client.url(path);
        let reply = match &self.carrier {
            Carrier::BodyField(field) => {
                fields.insert(field.clone(), Value::String(token.expose().to_string()));
                client.send_checked(&Outgoing::new(method, &url, fields), &[], None, check).await
            }
            Carrier::Bearer { app_key, user_id } => {
                let bearer = format!("Bearer {}", token.expose());
                let mut headers = vec![("Authorization", bearer.as_str()), ("x-app-key", app_key)];
                if let Some(user) = user_id {
                    headers.push(("X-UserId", user));
                }
                let request = Outgoing::new(method, &url, fields);
                client.send_checked(&request, &headers, None, check).await
            }
        };
        reply.map(|(reply, read)| (reply.body, read))
    }

    /// Sends `fields` with the token added; on 401 with a login token, logs in again once
    /// and retries. An answer carrying an API error code does the same: how an expired
    /// OIFDE token is reported is not documented, and a real error comes back again. A
    /// fixed token that is refused, or a 403, fails at once.
    async fn send<T: CheckedBody>(
        &self,
        client: &SourceClient,
        method: RequestMethod,
        path: &str,
        mut fields: Map<String, Value>,
        check: BodyCheck<'_, T>,
    ) -> Result<(Bytes, T), SourceError> {
        let mut refreshed = false;
        loop {
            let token = self.token(client).await?;
            let sent = self.send_once(client, method, path, &mut fields, &token, check).await;
            if let (TokenSource::Login(cache), false) = (&*self.tokens, refreshed) {
                if let Some(why) = token_doubt(&sent) {
                    info!(source = %client.name(), "Token refused ({why}); logging in again.");
                    cache.invalidate(&token).await;
                    refreshed = true;
                    continue;
                }
            }
            return sent.map_err(|e| e.redacted(token.expose()).refused(&self.credential()));
        }
    }
}

/// Why an answer says the login token sent may be stale, if it does: HTTP 401, or an API
/// error code (how an expired OIFDE token is reported is not documented).
fn token_doubt<T: CheckedBody>(sent: &Result<(Bytes, T), SourceError>) -> Option<String> {
    match sent {
        Err(SourceError::Unauthorized { status: 401, .. }) => Some("HTTP 401".into()),
        Ok((_, read)) => read.error_code().map(|code| format!("API error code {code}")),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::config::FABRIC_TOKEN_PATH;
    use crate::source::scripted::{
        client, queue, source, Answer, Received, Script, ScriptedServer,
    };
    use crate::source::signature::Authorization;

    const QUERY: &str = "/oifde/rest/api/queryRbtRecognitionResult";
    const OK: &str = r#"{"errorCode":"0","rbtRecognitions":[],"total":0}"#;
    const EXPIRED: &str = r#"{"errorCode":"401","errorMsg":"authToken is invalid or expired"}"#;
    const APP_KEY: &str = "202401150001";
    const SECRET: &str = "pa55word";
    const USER_ID: &str = "1611917095665261978";

    /// The two login styles: OIFDE `gettoken` with the token in the body, API Fabric
    /// `tokenByAkSk` with a bearer header.
    #[derive(Debug, Clone, Copy)]
    enum Style {
        Gettoken,
        Fabric,
    }

    const STYLES: [Style; 2] = [Style::Gettoken, Style::Fabric];

    impl Style {
        fn spec(self) -> AuthSpec {
            match self {
                Style::Gettoken => AuthSpec::BodyToken { field: "authToken".into() },
                Style::Fabric => AuthSpec::FabricToken,
            }
        }

        fn token_path(self) -> &'static str {
            match self {
                Style::Gettoken => GETTOKEN_PATH,
                Style::Fabric => FABRIC_TOKEN_PATH,
            }
        }

        /// The answer of the token endpoint issuing `token` for `ttl_secs`.
        fn token_answer(self, token: &str, ttl_secs: u64) -> String {
            match self {
                Style::Gettoken => json!({"errorCode": 0, "errorMsg": "success",
                                          "authToken": token, "expireTime": ttl_secs}),
                Style::Fabric => json!({"AccessToken": token, "ApplyType": "Bearer",
                                        "CreateTime": "1545650171", "Expires": ttl_secs.to_string(),
                                        "AppKey": APP_KEY, "UserID": "Anonymous"}),
            }
            .to_string()
        }

        /// The token a business request carried.
        fn carried(self, r: &Received) -> String {
            match self {
                Style::Gettoken => r.body["authToken"].as_str().unwrap_or_default().to_string(),
                Style::Fabric => r
                    .header("authorization")
                    .first()
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .unwrap_or_default()
                    .to_string(),
            }
        }
    }

    /// The authenticator of `style` with app credentials, its token endpoint on `base_url`
    /// and, for the fabric style, `X-UserId` configured.
    fn login_auth(style: Style, base_url: &str) -> Authenticator {
        let mut src = source(base_url, Duration::from_secs(5), 3);
        src.auth =
            SourceAuth::AppCredentials { app_key: APP_KEY.into(), app_secret: Secret::new(SECRET) };
        src.fabric.user_id = Some(USER_ID.into());
        Authenticator::new(&style.spec(), &src).unwrap()
    }

    /// A token endpoint of `style` that issues `t1`, `t2`, ... living `ttl_secs`, in front
    /// of a query that `accepts` some tokens and answers 401 to the others. Returns the
    /// script and the login counter.
    fn token_server(
        style: Style,
        ttl_secs: u64,
        accepts: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> (Script, Arc<AtomicUsize>) {
        let logins = Arc::new(AtomicUsize::new(0));
        let counter = logins.clone();
        let script = Arc::new(move |r: &Received| {
            if r.path == style.token_path() {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                Answer::status(200, &style.token_answer(&format!("t{n}"), ttl_secs))
            } else if accepts(&style.carried(r)) {
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
    fn query_tokens(style: Style, server: &ScriptedServer) -> Vec<String> {
        let received = server.received();
        received.iter().filter(|r| r.path == QUERY).map(|r| style.carried(r)).collect()
    }

    /// Concurrent requests share one login; when eight requests in flight are refused with
    /// 401, they share one refresh and each is retried once with the new token.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_login_and_one_refresh() {
        for style in STYLES {
            let revoked = Arc::new(AtomicBool::new(false));
            let revoked_t1 = revoked.clone();
            let accepts = move |token: &str| token != "t1" || !revoked_t1.load(Ordering::SeqCst);
            let (script, logins) = token_server(style, 3600, accepts);
            let server = ScriptedServer::start(script).await;
            let client = client(&server.base_url, Duration::from_secs(5), 3);
            let auth = login_auth(style, &server.base_url);
            let posts = |n: usize| {
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let (client, auth) = (client.clone(), auth.clone());
                        tokio::spawn(async move {
                            auth.send(&client, RequestMethod::Post, QUERY, Map::new()).await
                        })
                    })
                    .collect();
                async move {
                    for task in tasks {
                        assert_eq!(&task.await.unwrap().unwrap()[..], OK.as_bytes());
                    }
                }
            };
            posts(4).await;
            assert_eq!(logins.load(Ordering::SeqCst), 1, "{style:?}: one login, four requests");

            revoked.store(true, Ordering::SeqCst);
            posts(8).await;
            assert_eq!(logins.load(Ordering::SeqCst), 2, "{style:?}: one refresh, 8 refusals");
            let tokens = query_tokens(style, &server);
            let count = |t: &str| tokens.iter().filter(|x| *x == t).count();
            assert_eq!((count("t1"), count("t2")), (4 + 8, 8), "{style:?}: refused once each");
        }
    }

    /// A token is reused while it lives and replaced before it expires (here, a 1 s token
    /// after 850 ms), without waiting for a 401.
    #[tokio::test]
    async fn tokens_are_cached_and_refreshed_ahead_of_expiry() {
        for style in STYLES {
            let (script, logins) = token_server(style, 1, |_| true);
            let server = ScriptedServer::start(script).await;
            let client = client(&server.base_url, Duration::from_secs(5), 3);
            let auth = login_auth(style, &server.base_url);
            for _ in 0..3 {
                auth.send(&client, RequestMethod::Post, QUERY, Map::new()).await.unwrap();
            }
            assert_eq!(logins.load(Ordering::SeqCst), 1, "{style:?}: the token is cached");
            tokio::time::sleep(Duration::from_millis(850)).await;
            auth.send(&client, RequestMethod::Post, QUERY, Map::new()).await.unwrap();
            assert_eq!(logins.load(Ordering::SeqCst), 2, "{style:?}: refreshed ahead of expiry");
            assert_eq!(query_tokens(style, &server), ["t1", "t1", "t1", "t2"], "{style:?}");
        }
    }

    /// A token refused again right after a refresh fails (no second refresh, no loop).
    #[tokio::test]
    async fn a_second_401_fails() {
        for style in STYLES {
            let (script, logins) = token_server(style, 3600, |_| false);
            let server = ScriptedServer::start(script).await;
            let client = client(&server.base_url, Duration::from_secs(5), 3);
            let auth = login_auth(style, &server.base_url);
            let err = auth.send(&client, RequestMethod::Post, QUERY, Map::new()).await.unwrap_err();
            assert!(matches!(err, SourceError::Unauthorized { status: 401, .. }), "{err:?}");
            assert_eq!(logins.load(Ordering::SeqCst), 2);
            assert_eq!(query_tokens(style, &server), ["t1", "t2"]);
            let text = err.to_string();
            assert!(text.contains("the token obtained with app key '202401150001'"), "{text}");
            assert!(!text.contains("t2") && !text.contains(SECRET), "{text}");
        }
    }

    /// Wrong credentials fail after one gettoken request, whether the server answers 401 or
    /// 200 with an error code; the message names the source and the app key, not the secret.
    #[tokio::test]
    async fn wrong_gettoken_credentials_fail_at_once_naming_the_app_key() {
        let refusal = r#"{"errorCode":1,"errorMsg":"appKey or appSecret is incorrect"}"#;
        for status in [401, 200] {
            let script: Script = Arc::new(move |_| Answer::status(status, refusal));
            let server = ScriptedServer::start(script).await;
            let client = client(&server.base_url, Duration::from_secs(5), 5);
            let auth = login_auth(Style::Gettoken, &server.base_url);
            let err = auth.send(&client, RequestMethod::Post, QUERY, Map::new()).await.unwrap_err();
            assert!(matches!(err, SourceError::Unauthorized { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("source 'oifde'"), "{text}");
            assert!(text.contains("app key '202401150001'"), "{text}");
            assert!(text.contains("appKey or appSecret is incorrect"), "{text}");
            assert!(!text.contains(SECRET), "{text}");
            assert_eq!(server.received().len(), 1, "HTTP {status}: not retried");
        }
    }

    fn signing_auth(sk: &str) -> Authenticator {
        let spec = AuthSpec::AkskSignature {
            signed_headers: vec!["host".into(), "content-type".into(), "content-length".into()],
            timestamp_precision: Default::default(),
        };
        let mut src = source("http://127.0.0.1:9", Duration::from_secs(5), 3);
        src.auth = SourceAuth::AkSk { ak: "cmsAK01".into(), sk: Secret::new(sk) };
        Authenticator::new(&spec, &src).unwrap()
    }

    /// A GET sends no body: the fields go to the query as plain text (strings unquoted,
    /// numbers in digits, arrays repeated, null left out), percent-encoded, whatever carries
    /// the credentials (a bearer header, or a token field, which joins the query).
    #[tokio::test]
    async fn get_requests_carry_the_fields_in_the_query() {
        let fields: Map<String, Value> = json!({
            "curPage": 2, "rowsPerPage": 100, "name": "测试 a&b", "status": [2, 3], "ccId": null
        })
        .as_object()
        .unwrap()
        .clone();
        for style in STYLES {
            let (script, _) = token_server(style, 3600, |_| true);
            let server = ScriptedServer::start(script).await;
            let client = client(&server.base_url, Duration::from_secs(5), 3);
            let auth = login_auth(style, &server.base_url);
            let answer = auth.send(&client, RequestMethod::Get, QUERY, fields.clone()).await;
            assert_eq!(&answer.unwrap()[..], OK.as_bytes(), "{style:?}");
            let received = server.received();
            let query = received.iter().find(|r| r.method == "GET").unwrap();
            let token = match style {
                Style::Gettoken => "authToken=t1&",
                Style::Fabric => "",
            };
            let want = format!(
                "{QUERY}?{token}curPage=2&name=%E6%B5%8B%E8%AF%95%20a%26b&rowsPerPage=100&status=2&status=3"
            );
            assert_eq!(query.path, want, "{style:?}");
            assert!(query.header("content-length").is_empty(), "{style:?}: no body");
            assert_eq!(query.header("content-type"), ["application/json; charset=UTF-8"]);
        }
    }

    /// A C2-signed GET of the iSales campaign list, with its paging fields in the query,
    /// passes the simulator's signature check (`host;content-type` signed: a GET has no
    /// Content-Length) and is answered; a wrong SK is refused, naming the AK.
    #[tokio::test]
    async fn signed_get_requests_pass_the_simulators_verifier() {
        use crate::sim::{serve, SimOptions, Simulator};
        let sim = Arc::new(Simulator::new(SimOptions::default()));
        let running = serve(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let client = client(&running.base_url, Duration::from_secs(5), 3);
        let signer = |sk: &str| {
            let mut src = source(&running.base_url, Duration::from_secs(5), 3);
            src.auth = SourceAuth::AkSk { ak: sim.options().c2_ak.clone(), sk: Secret::new(sk) };
            let spec = AuthSpec::AkskSignature {
                signed_headers: crate::source::signature::DEFAULT_SIGNED_HEADERS
                    .map(String::from)
                    .to_vec(),
                timestamp_precision: Default::default(),
            };
            Authenticator::new(&spec, &src).unwrap()
        };
        let path = format!("/rest/isales/v1/openapi/campaigns/{}", sim.vdns()[0]);
        let fields = json!({"curPage": 1, "rowsPerPage": 1}).as_object().unwrap().clone();
        let auth = signer(&sim.options().c2_sk);
        let answer = auth.send(&client, RequestMethod::Get, &path, fields.clone()).await.unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["returnCode"], "0200000", "{answer}");
        assert_eq!(answer["data"].as_array().map(Vec::len), Some(1), "rowsPerPage was read");
        let per_vdn = sim.options().campaigns_per_vdn as u64;
        assert_eq!(answer["totalCount"], json!(per_vdn), "{answer}");
        let err = signer("wrong-sk").send(&client, RequestMethod::Get, &path, fields).await;
        let err = err.unwrap_err();
        assert!(matches!(&err, SourceError::SignatureRefused { status: 401, .. }), "{err:?}");
        assert!(!err.to_string().contains("wrong-sk"), "{err}");
        assert_eq!(sim.stats().unauthorized, 1);
        running.shutdown().await;
    }

    /// A C2-signed request carries the signature with the AK, Host with the port, and one
    /// Content-Length of the body sent (not chunked); the body has no token field.
    #[tokio::test]
    async fn signed_requests_carry_the_signed_headers() {
        let server = ScriptedServer::start(queue(vec![Answer::status(200, OK)])).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let mut body = Map::new();
        body.insert("vdn".into(), json!(170));
        let answer = signing_auth("cms-sk-0001")
            .send(&client, RequestMethod::Post, QUERY, body)
            .await
            .unwrap();
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
            let err = signing_auth("cms-sk-0001")
                .send(&client, RequestMethod::Post, QUERY, Map::new())
                .await
                .unwrap_err();
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
        let mut src = source("http://127.0.0.1:9", Duration::from_secs(5), 3);
        src.auth = SourceAuth::AkSk { ak: "a".into(), sk: Secret::new("s") };
        let body = AuthSpec::BodyToken { field: "authToken".into() };
        let err = Authenticator::new(&body, &src).unwrap_err().to_string();
        assert!(err.contains("source 'oifde'") && err.contains("set auth_token"), "{err}");
        let err = Authenticator::new(&AuthSpec::FabricToken, &src).unwrap_err().to_string();
        assert!(err.contains("set app_key and app_secret"), "{err}");
        let signed = AuthSpec::AkskSignature {
            signed_headers: vec!["host".into()],
            timestamp_precision: Default::default(),
        };
        src.name = "cms".into();
        let token = SourceAuth::StaticToken(Secret::new("t"));
        let app = SourceAuth::AppCredentials { app_key: "k".into(), app_secret: Secret::new("s") };
        for creds in [token, app, SourceAuth::None] {
            src.auth = creds;
            let err = Authenticator::new(&signed, &src).unwrap_err().to_string();
            assert!(err.contains("source 'cms'") && err.contains("set ak and sk"), "{err}");
        }
    }

    /// A wrong app key or secret fails after one tokenByAkSk request and no business
    /// request, whether the endpoint answers 400, 401, 403, or 200 without an AccessToken
    /// (even when it echoes the secret): the error names the source and the app key, never
    /// the secret.
    #[tokio::test]
    async fn wrong_fabric_credentials_fail_at_once_naming_the_app_key() {
        let refusals = [
            (400, r#"{"error_code":"APIGW.0101","error_msg":"app_key or app_secret invalid"}"#),
            (401, r#"{"error_code":"APIGW.0301","error_msg":"Incorrect app authentication"}"#),
            (403, r#"{"error_code":"APIGW.0302","error_msg":"app_key or app_secret invalid"}"#),
            (200, r#"{"ApplyType":"Bearer","retMsg":"app_secret pa55word is invalid"}"#),
        ];
        for (status, body) in refusals {
            let script: Script = Arc::new(move |_| Answer::status(status, body));
            let server = ScriptedServer::start(script).await;
            let client = client(&server.base_url, Duration::from_secs(5), 5);
            let auth = login_auth(Style::Fabric, &server.base_url);
            let err = auth.send(&client, RequestMethod::Post, QUERY, Map::new()).await.unwrap_err();
            assert!(
                matches!(err, SourceError::Unauthorized { status: s, .. } if s == status),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(text.contains("source 'oifde'") && text.contains(FABRIC_TOKEN_PATH), "{text}");
            assert!(text.contains("app key '202401150001'"), "{text}");
            assert!(text.contains("invalid") || text.contains("Incorrect"), "{text}");
            assert!(!text.contains(SECRET) && !format!("{err:?}").contains(SECRET), "{text}");
            let received = server.received();
            assert_eq!(received.len(), 1, "HTTP {status}: one login, not retried");
            assert_eq!(received[0].path, FABRIC_TOKEN_PATH);
        }
    }

    /// The tokenByAkSk request carries the app key and secret in its body and the lifetime
    /// in `X-Token-Expire`; business requests carry `Authorization: Bearer <token>`,
    /// `x-app-key` and `X-UserId`, and no token in the body.
    #[tokio::test]
    async fn fabric_requests_carry_the_documented_headers() {
        let (script, _) = token_server(Style::Fabric, 600, |_| true);
        let server = ScriptedServer::start(script).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let mut src = source(&server.base_url, Duration::from_secs(5), 3);
        src.auth =
            SourceAuth::AppCredentials { app_key: APP_KEY.into(), app_secret: Secret::new(SECRET) };
        src.fabric.token_lifetime = Duration::from_secs(900);
        src.fabric.user_id = Some(USER_ID.into());
        let with_user = Authenticator::new(&AuthSpec::FabricToken, &src).unwrap();
        src.fabric.user_id = None;
        let without_user = Authenticator::new(&AuthSpec::FabricToken, &src).unwrap();
        let body: Map<String, Value> = json!({"offset": "0"}).as_object().unwrap().clone();
        with_user.send(&client, RequestMethod::Post, QUERY, body.clone()).await.unwrap();
        without_user.send(&client, RequestMethod::Post, QUERY, body).await.unwrap();

        let received = server.received();
        let paths: Vec<_> = received.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, [FABRIC_TOKEN_PATH, QUERY, FABRIC_TOKEN_PATH, QUERY]);
        let login = &received[0];
        assert_eq!(login.body, json!({"app_key": APP_KEY, "app_secret": SECRET}));
        assert_eq!(login.header("x-token-expire"), ["900"]);
        let query = &received[1];
        assert_eq!(query.header("authorization"), ["Bearer t1"]);
        assert_eq!(query.header("x-app-key"), [APP_KEY]);
        assert_eq!(query.header("x-userid"), [USER_ID]);
        assert_eq!(query.body, json!({"offset": "0"}), "the token is not in the body");
        assert_eq!(received[3].header("authorization"), ["Bearer t2"]);
        assert!(received[3].header("x-userid").is_empty(), "X-UserId only when configured");
    }

    /// `Expires` and `CreateTime` are read as strings or numbers; an `Expires` larger than
    /// `CreateTime` is an instant; the lifetime never exceeds the one asked for, which is
    /// also used when the answer gives none.
    #[test]
    fn fabric_token_lifetimes_accept_strings_and_numbers() {
        let asked = Duration::from_secs(3600);
        let cases = [
            (json!({"Expires": "600", "CreateTime": "1545650171"}), 600),
            (json!({"Expires": 600, "CreateTime": 1545650171}), 600),
            (json!({"Expires": "1545650771", "CreateTime": 1545650171}), 600),
            (json!({"Expires": 7200}), 3600),
            (json!({"Expires": "soon"}), 3600),
            (json!({}), 3600),
        ];
        for (answer, want) in cases {
            let answer: FabricAnswer = serde_json::from_value(answer.clone()).unwrap();
            assert_eq!(fabric_ttl(&answer, asked), Duration::from_secs(want));
        }
    }

    /// `expireTime` is read as a lifetime in seconds, or, as large as an instant, as the
    /// epoch second or millisecond it ends at; capped at an hour, the default when missing,
    /// zero or past.
    #[test]
    fn gettoken_lifetimes_read_every_unit() {
        let now = 1_765_000_000;
        let cases = [
            (Some(600), 600),
            (Some(7200), 3600),
            (Some(now as u64 + 900), 900),
            (Some((now as u64 + 900) * 1000), 900),
            (Some(now as u64 - 5), 600),
            (Some(3_600_000), 3600),
            (Some(0), 600),
            (None, 600),
        ];
        for (expire_time, want) in cases {
            let ttl = gettoken_ttl(expire_time, now);
            assert_eq!(ttl, Duration::from_secs(want), "{expire_time:?}");
        }
    }

    /// An error code in a 200 answer renews a login token once and asks again; a second
    /// error code is the answer (no second renewal, no loop). A fixed token is not renewed.
    #[tokio::test]
    async fn an_error_code_renews_a_login_token_once() {
        struct Code(Option<String>);
        impl CheckedBody for Code {
            fn error_code(&self) -> Option<&str> {
                self.0.as_deref()
            }
        }
        let mut read = |body: &Bytes| -> Result<Code, String> {
            let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            let code = v["errorCode"].as_str().filter(|c| *c != "0");
            Ok(Code(code.map(str::to_string)))
        };
        for (refused, answered, logins_wanted) in
            [(&["t1"][..], None, 2), (&["t1", "t2"][..], Some("401"), 2)]
        {
            for style in STYLES {
                let refused: Vec<String> = refused.iter().map(|t| t.to_string()).collect();
                let (script, logins) = token_server(style, 3600, |_| true);
                let script: Script = Arc::new(move |r: &Received| {
                    if r.path == QUERY && refused.contains(&style.carried(r)) {
                        Answer::status(200, EXPIRED)
                    } else {
                        script(r)
                    }
                });
                let server = ScriptedServer::start(script).await;
                let client = client(&server.base_url, Duration::from_secs(5), 3);
                let auth = login_auth(style, &server.base_url);
                let (_, code) = auth
                    .send_checked(&client, RequestMethod::Post, QUERY, Map::new(), &mut read)
                    .await
                    .unwrap();
                assert_eq!(code.0.as_deref(), answered, "{style:?}");
                assert_eq!(logins.load(Ordering::SeqCst), logins_wanted, "{style:?}");
                assert_eq!(query_tokens(style, &server), ["t1", "t2"], "{style:?}");
            }
        }
        let server = ScriptedServer::start(queue(vec![Answer::status(200, EXPIRED)])).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let mut src = source(&server.base_url, Duration::from_secs(5), 3);
        src.auth = SourceAuth::StaticToken(Secret::new("fixed"));
        let auth = Authenticator::new(&Style::Gettoken.spec(), &src).unwrap();
        let (_, code) = auth
            .send_checked(&client, RequestMethod::Post, QUERY, Map::new(), &mut read)
            .await
            .unwrap();
        assert_eq!(code.0.as_deref(), Some("401"), "a fixed token is not renewed");
        assert_eq!(server.received().len(), 1);
    }

    /// The fabric style needs an app key and secret: a fixed token or no credentials is
    /// refused when the pipeline is set up.
    #[test]
    fn fabric_style_needs_app_credentials() {
        let mut src = source("http://127.0.0.1:9", Duration::from_secs(5), 3);
        let err = Authenticator::new(&AuthSpec::FabricToken, &src).unwrap_err();
        assert!(matches!(err, SourceError::NoCredentials { .. }), "{err:?}");
        src.auth = SourceAuth::StaticToken(Secret::new("static-tok"));
        let err = Authenticator::new(&AuthSpec::FabricToken, &src).unwrap_err().to_string();
        assert!(err.contains("app_key and app_secret") && !err.contains("static-tok"), "{err}");
    }

    /// A fixed token that is refused fails at once, without a login, and is not shown.
    #[tokio::test]
    async fn a_refused_fixed_token_fails_at_once() {
        let (script, logins) = token_server(Style::Gettoken, 3600, |_| false);
        let server = ScriptedServer::start(script).await;
        let client = client(&server.base_url, Duration::from_secs(5), 3);
        let mut src = source(&server.base_url, Duration::from_secs(5), 3);
        src.auth = SourceAuth::StaticToken(Secret::new("static-tok"));
        let auth = Authenticator::new(&Style::Gettoken.spec(), &src).unwrap();
        let err = auth
            .send(&client, RequestMethod::Post, QUERY, Map::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("the configured auth_token") && !err.contains("static-tok"), "{err}");
        assert_eq!(logins.load(Ordering::SeqCst), 0);
        assert_eq!(query_tokens(Style::Gettoken, &server), ["static-tok"]);
    }
}
