//! The Private Number UsernameToken (cec-api.md 1.3): how the platform signs its pushes,
//! and how the receiver checks them.
//!
//! ```text
//! Authorization: AKSK realm="SDP",profile="UsernameToken",type="Appkey"
//! X-AKSK: UsernameToken Username="<APP_Key>", PasswordDigest="<digest>", Nonce="<nonce>", Created="<created>"
//!   digest = Base64(HMAC-SHA256(key = APP_Secret, msg = Nonce + Created))
//! ```
//! The older variant names the scheme `WSSE`, sends the token in `X-WSSE` and digests
//! `Base64(SHA256(Nonce + Created + APP_Secret))`; both are accepted.
//!
//! [`PushVerifier::check`] refuses an unknown app key, a missing or garbled token, a bad
//! `Nonce` or `Created`, a `Created` outside `now ± max_skew`, a wrong digest (compared in
//! constant time) and a nonce already used. A nonce counts as used only once the receiver
//! calls [`PushVerifier::remember`], after the push is durably spooled: a push that failed
//! before that may be re-sent with the same nonce. No error, log or `Debug` output shows
//! a secret or a digest.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::header::{InvalidHeaderValue, AUTHORIZATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::secret::{constant_time_eq, Secret};

/// The text form of `Created`: UTC `yyyy-MM-dd'T'HH:mm:ss'Z'`.
const CREATED_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";
/// The longest `Nonce` allowed.
const MAX_NONCE_LEN: usize = 128;
/// The longest piece of a request echoed in an error message.
const MAX_ECHO_LEN: usize = 64;
/// The parameters of the `Authorization` header that follow the scheme.
const AUTHORIZATION_PARAMS: &str = r#"realm="SDP",profile="UsernameToken",type="Appkey""#;

/// The two variants of the UsernameToken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScheme {
    /// `Authorization: AKSK ...`, `X-AKSK`, HMAC-SHA256 digest (the current documentation).
    Aksk,
    /// `Authorization: WSSE ...`, `X-WSSE`, plain SHA-256 digest (older documentation).
    Wsse,
}

impl TokenScheme {
    /// The header that carries the token: `x-aksk` or `x-wsse`.
    pub fn token_header(self) -> HeaderName {
        HeaderName::from_static(match self {
            Self::Aksk => "x-aksk",
            Self::Wsse => "x-wsse",
        })
    }

    /// The scheme word of the `Authorization` header: `AKSK` or `WSSE`.
    pub fn authorization_scheme(self) -> &'static str {
        match self {
            Self::Aksk => "AKSK",
            Self::Wsse => "WSSE",
        }
    }
}

/// The four parts of a UsernameToken header, as sent. `Debug` hides the digest.
#[derive(Clone, PartialEq, Eq)]
pub struct UsernameToken {
    /// Which header carried it.
    pub scheme: TokenScheme,
    /// `Username`: the APP_Key.
    pub username: String,
    /// `PasswordDigest`, Base64.
    pub password_digest: String,
    /// `Nonce`.
    pub nonce: String,
    /// `Created`, as text.
    pub created: String,
}

impl fmt::Debug for UsernameToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsernameToken")
            .field("scheme", &self.scheme)
            .field("username", &self.username)
            .field("password_digest", &"**REDACTED**")
            .field("nonce", &self.nonce)
            .field("created", &self.created)
            .finish()
    }
}

impl UsernameToken {
    /// Reads the token of a request: the `X-AKSK` or the `X-WSSE` header (not both), its
    /// four `Key="value"` parts in any order and spacing, with or without quotes (unknown
    /// parts are ignored). The `Authorization` header is optional, but when present its
    /// scheme word must be the one of the token header.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, AuthRejection> {
        let scheme = match (
            headers.get(TokenScheme::Aksk.token_header()),
            headers.get(TokenScheme::Wsse.token_header()),
        ) {
            (Some(_), Some(_)) => return Err(AuthRejection::AmbiguousToken),
            (Some(_), None) => TokenScheme::Aksk,
            (None, Some(_)) => TokenScheme::Wsse,
            (None, None) => return Err(AuthRejection::MissingToken),
        };
        if let Some(authorization) = headers.get(AUTHORIZATION) {
            let text = String::from_utf8_lossy(authorization.as_bytes());
            let word = text.split_whitespace().next().unwrap_or_default();
            if !word.eq_ignore_ascii_case(scheme.authorization_scheme()) {
                return Err(AuthRejection::SchemeMismatch { authorization: echo(word), scheme });
            }
        }
        let malformed =
            |problem: &str| AuthRejection::MalformedToken { scheme, problem: problem.to_string() };
        let value =
            headers[scheme.token_header()].to_str().map_err(|_| malformed("not ASCII text"))?;
        let parts = value
            .trim_start()
            .strip_prefix("UsernameToken")
            .filter(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
            .ok_or_else(|| malformed("does not start with `UsernameToken`"))?;
        let mut found: [Option<String>; 4] = Default::default();
        const NAMES: [&str; 4] = ["Username", "PasswordDigest", "Nonce", "Created"];
        for part in parts.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let (key, value) =
                part.split_once('=').ok_or_else(|| malformed("a part is not Key=\"value\""))?;
            let Some(slot) = NAMES.iter().position(|name| name.eq_ignore_ascii_case(key.trim()))
            else {
                continue;
            };
            if found[slot].is_some() {
                return Err(malformed(&format!("`{}` appears twice", NAMES[slot])));
            }
            found[slot] = Some(unquote(value.trim()).to_string());
        }
        let [username, password_digest, nonce, created] = found;
        let take = |value: Option<String>, slot: usize| {
            value.ok_or_else(|| malformed(&format!("`{}` is missing", NAMES[slot])))
        };
        Ok(Self {
            scheme,
            username: take(username, 0)?,
            password_digest: take(password_digest, 1)?,
            nonce: take(nonce, 2)?,
            created: take(created, 3)?,
        })
    }
}

/// `value` without one pair of surrounding double quotes.
fn unquote(value: &str) -> &str {
    value.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')).unwrap_or(value)
}

/// A piece of a request, shortened and escaped, for an error message.
fn echo(text: &str) -> String {
    let short: String = text.chars().take(MAX_ECHO_LEN).collect();
    short.escape_debug().to_string()
}

/// The `PasswordDigest` of `nonce` and `created` under `secret`, Base64-encoded.
pub fn password_digest(scheme: TokenScheme, secret: &Secret, nonce: &str, created: &str) -> String {
    let digest = match scheme {
        TokenScheme::Aksk => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
                .expect("HMAC accepts a key of any length");
            mac.update(nonce.as_bytes());
            mac.update(created.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        TokenScheme::Wsse => {
            let mut sha = Sha256::new();
            sha.update(nonce.as_bytes());
            sha.update(created.as_bytes());
            sha.update(secret.expose().as_bytes());
            sha.finalize().to_vec()
        }
    };
    BASE64.encode(digest)
}

/// `instant` as a `Created` value, e.g. `2018-02-12T15:30:20Z`.
pub fn format_created(instant: DateTime<Utc>) -> String {
    instant.format(CREATED_FORMAT).to_string()
}

/// The `Authorization` and token headers of a push signed by `app_key` with `secret`,
/// exactly as documented. Fails only when `app_key`, `nonce` or `created` cannot be sent
/// in a header (control characters).
pub fn sign(
    scheme: TokenScheme,
    app_key: &str,
    secret: &Secret,
    nonce: &str,
    created: &str,
) -> Result<[(HeaderName, HeaderValue); 2], InvalidHeaderValue> {
    let digest = password_digest(scheme, secret, nonce, created);
    let authorization = format!("{} {AUTHORIZATION_PARAMS}", scheme.authorization_scheme());
    let token = format!(
        r#"UsernameToken Username="{app_key}", PasswordDigest="{digest}", Nonce="{nonce}", Created="{created}""#
    );
    let mut token = HeaderValue::from_str(&token)?;
    token.set_sensitive(true);
    Ok([(AUTHORIZATION, HeaderValue::from_str(&authorization)?), (scheme.token_header(), token)])
}

/// Why a push was refused. The message names the app key and the nonce, never the
/// secret or a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRejection {
    /// Neither `X-AKSK` nor `X-WSSE` was sent.
    #[error("no X-AKSK (or X-WSSE) UsernameToken header")]
    MissingToken,
    /// Both token headers were sent.
    #[error("both X-AKSK and X-WSSE headers were sent; send one")]
    AmbiguousToken,
    /// The token header could not be read.
    #[error("the {} token header is garbled: {problem}", scheme.token_header())]
    MalformedToken {
        /// The header that was read.
        scheme: TokenScheme,
        /// What is wrong with it.
        problem: String,
    },
    /// `Authorization` names another scheme than the token header.
    #[error(
        "Authorization scheme `{authorization}` does not match the {} header (expected {})",
        scheme.token_header(),
        scheme.authorization_scheme()
    )]
    SchemeMismatch {
        /// The scheme word that was sent.
        authorization: String,
        /// The scheme of the token header.
        scheme: TokenScheme,
    },
    /// No secret is configured for the app key.
    #[error("unknown app key `{app_key}`")]
    UnknownAppKey {
        /// The `Username` that was sent.
        app_key: String,
    },
    /// `Nonce` is not 1-128 visible ASCII characters (the reference asks senders for
    /// `[0-9A-Za-z]`; a receiver accepts any that a header can carry).
    #[error("app key `{app_key}`: Nonce `{nonce}` is not 1-128 visible ASCII characters")]
    BadNonce {
        /// The app key.
        app_key: String,
        /// The nonce, shortened.
        nonce: String,
    },
    /// `Created` is not UTC `yyyy-MM-dd'T'HH:mm:ss'Z'`.
    #[error("app key `{app_key}`: Created `{created}` is not UTC yyyy-MM-ddTHH:mm:ssZ")]
    BadCreated {
        /// The app key.
        app_key: String,
        /// The value that was sent, shortened.
        created: String,
    },
    /// `Created` lies outside the accepted window around the receiver's clock.
    #[error(
        "app key `{app_key}`, nonce `{nonce}`: Created {created} is more than {}s away from now ({now}); check the clocks",
        max_skew.as_secs()
    )]
    Skewed {
        /// The app key.
        app_key: String,
        /// The nonce.
        nonce: String,
        /// When the token says it was made.
        created: DateTime<Utc>,
        /// The receiver's clock.
        now: DateTime<Utc>,
        /// The accepted distance.
        max_skew: Duration,
    },
    /// The digest is not the one of the app's secret.
    #[error("app key `{app_key}`, nonce `{nonce}`: wrong PasswordDigest (wrong secret or scheme)")]
    WrongDigest {
        /// The app key.
        app_key: String,
        /// The nonce.
        nonce: String,
    },
    /// The nonce was used by an earlier push of the same app.
    #[error("app key `{app_key}`: nonce `{nonce}` was already used (replayed push)")]
    Replayed {
        /// The app key.
        app_key: String,
        /// The nonce.
        nonce: String,
    },
}

/// A push whose token passed [`PushVerifier::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The app that signed it.
    pub app_key: String,
    /// Its nonce.
    pub nonce: String,
    /// Its `Created`.
    pub created: DateTime<Utc>,
    /// The clock of the check, to prune the remembered nonces with.
    checked_at: DateTime<Utc>,
}

/// The nonces of accepted pushes whose `Created` is still inside the window.
#[derive(Debug, Default)]
struct UsedNonces {
    /// (app key, nonce).
    keys: HashSet<(String, String)>,
    /// The same, ordered by `Created` for pruning.
    by_created: BTreeSet<(DateTime<Utc>, String, String)>,
}

impl UsedNonces {
    /// Forgets every nonce created before `cutoff`: its `Created` check fails from now on.
    fn prune(&mut self, cutoff: DateTime<Utc>) {
        while let Some(first) = self.by_created.first() {
            if first.0 >= cutoff {
                break;
            }
            let (_, app_key, nonce) = self.by_created.pop_first().expect("first exists");
            self.keys.remove(&(app_key, nonce));
        }
    }
}

/// Checks the UsernameToken of Private Number pushes against the configured apps, with a
/// replay window. Shared by the receiver's tasks (`&self`, internally locked).
///
/// A nonce is refused once remembered, for as long as its `Created` can pass the skew
/// check; the remembered set holds only pushes of the last `2 x max_skew`. Two copies of a
/// push checked at the same time, before either is remembered, both pass: the lake's
/// merge by natural key absorbs that.
#[derive(Debug)]
pub struct PushVerifier {
    apps: BTreeMap<String, Secret>,
    max_skew: TimeDelta,
    used: Mutex<UsedNonces>,
}

impl PushVerifier {
    /// A verifier of the apps `apps` (app key -> APP_Secret) accepting a `Created` at most
    /// `max_skew` away from the receiver's clock.
    pub fn new(apps: BTreeMap<String, Secret>, max_skew: Duration) -> Self {
        Self {
            apps,
            max_skew: TimeDelta::from_std(max_skew).unwrap_or(TimeDelta::MAX),
            used: Mutex::default(),
        }
    }

    /// Checks the token of a push received at `now` (see the module doc for the order of
    /// the checks). Does not mark the nonce as used: see [`Self::remember`].
    pub fn check(
        &self,
        headers: &HeaderMap,
        now: DateTime<Utc>,
    ) -> Result<Verified, AuthRejection> {
        let token = UsernameToken::from_headers(headers)?;
        let app_key = token.username;
        let Some(secret) = self.apps.get(&app_key) else {
            return Err(AuthRejection::UnknownAppKey { app_key: echo(&app_key) });
        };
        let nonce = token.nonce;
        if nonce.is_empty()
            || nonce.len() > MAX_NONCE_LEN
            || !nonce.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b',')
        {
            return Err(AuthRejection::BadNonce { app_key, nonce: echo(&nonce) });
        }
        let created = NaiveDateTime::parse_from_str(&token.created, CREATED_FORMAT)
            .map_err(|_| AuthRejection::BadCreated {
                app_key: app_key.clone(),
                created: echo(&token.created),
            })?
            .and_utc();
        if (now - created).abs() > self.max_skew {
            return Err(AuthRejection::Skewed {
                app_key,
                nonce,
                created,
                now,
                max_skew: self.max_skew.to_std().unwrap_or(Duration::MAX),
            });
        }
        let expected = password_digest(token.scheme, secret, &nonce, &token.created);
        if !constant_time_eq(expected.as_bytes(), token.password_digest.as_bytes()) {
            return Err(AuthRejection::WrongDigest { app_key, nonce });
        }
        let mut used = self.used.lock().expect("nonce set lock");
        used.prune(self.window_start(now));
        if used.keys.contains(&(app_key.clone(), nonce.clone())) {
            return Err(AuthRejection::Replayed { app_key, nonce });
        }
        Ok(Verified { app_key, nonce, created, checked_at: now })
    }

    /// Marks the nonce of `verified` as used: later pushes of the same app with it are
    /// refused. Call it only once the push is durably stored.
    pub fn remember(&self, verified: &Verified) {
        let mut used = self.used.lock().expect("nonce set lock");
        let window_start = self.window_start(verified.checked_at);
        used.prune(window_start);
        if verified.created < window_start {
            return;
        }
        let key = (verified.app_key.clone(), verified.nonce.clone());
        if used.keys.insert(key) {
            used.by_created.insert((
                verified.created,
                verified.app_key.clone(),
                verified.nonce.clone(),
            ));
        }
    }

    /// The oldest `Created` that passes at `now`.
    fn window_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_sub_signed(self.max_skew).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// How many nonces are remembered (for metrics).
    pub fn remembered(&self) -> usize {
        self.used.lock().expect("nonce set lock").keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const APP_KEY: &str = "sim-app-key";
    const SECRET: &str = "sim-app-secret-0123";
    const NONCE: &str = "a1B2c3D4e5";
    const CREATED: &str = "2018-02-12T15:30:20Z";
    /// python3 -c "import hmac,hashlib,base64; print(base64.b64encode(hmac.new(
    ///   b'sim-app-secret-0123', b'a1B2c3D4e5' + b'2018-02-12T15:30:20Z',
    ///   hashlib.sha256).digest()).decode())"
    const AKSK_DIGEST: &str = "eq8Zi1UoGDY9jOhrke/NUtyiEXbwQx+ZorxolKTpDE8=";
    /// python3 -c "import hashlib,base64; print(base64.b64encode(hashlib.sha256(
    ///   b'a1B2c3D4e5' + b'2018-02-12T15:30:20Z' + b'sim-app-secret-0123').digest()).decode())"
    const WSSE_DIGEST: &str = "E4VhNvI9gdXV3OF89JX7X1wodL+W7+YfefeqSPI5Gyw=";

    fn created_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2018, 2, 12, 15, 30, 20).unwrap()
    }

    fn verifier() -> PushVerifier {
        let apps = BTreeMap::from([(APP_KEY.to_string(), Secret::new(SECRET))]);
        PushVerifier::new(apps, Duration::from_secs(300))
    }

    fn signed(scheme: TokenScheme, secret: &str, nonce: &str, created: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in sign(scheme, APP_KEY, &Secret::new(secret), nonce, created).unwrap() {
            headers.insert(name, value);
        }
        headers
    }

    fn raw(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (HeaderName::from_static(name), HeaderValue::from_str(value).unwrap())
            })
            .collect()
    }

    /// Both digests match the vectors computed with Python's hmac/hashlib.
    #[test]
    fn digests_match_independent_vectors() {
        let secret = Secret::new(SECRET);
        assert_eq!(password_digest(TokenScheme::Aksk, &secret, NONCE, CREATED), AKSK_DIGEST);
        assert_eq!(password_digest(TokenScheme::Wsse, &secret, NONCE, CREATED), WSSE_DIGEST);
        assert_eq!(format_created(created_at()), CREATED);
    }

    /// `sign` writes exactly the documented headers of both schemes.
    #[test]
    fn sign_writes_the_documented_headers() {
        let aksk = signed(TokenScheme::Aksk, SECRET, NONCE, CREATED);
        assert_eq!(
            aksk["authorization"],
            r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#
        );
        assert_eq!(
            aksk["x-aksk"],
            format!(
                r#"UsernameToken Username="{APP_KEY}", PasswordDigest="{AKSK_DIGEST}", Nonce="{NONCE}", Created="{CREATED}""#
            )
            .as_str()
        );
        let wsse = signed(TokenScheme::Wsse, SECRET, NONCE, CREATED);
        assert_eq!(
            wsse["authorization"],
            r#"WSSE realm="SDP",profile="UsernameToken",type="Appkey""#
        );
        assert!(wsse["x-wsse"].to_str().unwrap().contains(WSSE_DIGEST));
        assert_eq!(wsse.len(), 2);
    }

    /// A correctly signed push passes with either scheme.
    #[test]
    fn both_schemes_verify() {
        let v = verifier();
        for scheme in [TokenScheme::Aksk, TokenScheme::Wsse] {
            let ok = v.check(&signed(scheme, SECRET, NONCE, CREATED), created_at()).unwrap();
            assert_eq!((ok.app_key.as_str(), ok.nonce.as_str()), (APP_KEY, NONCE));
            assert_eq!(ok.created, created_at());
        }
    }

    /// A wrong secret, a tampered digest or a digest of the other scheme is refused, and
    /// the message shows neither the secret nor a digest.
    #[test]
    fn wrong_digests_are_refused_without_leaking() {
        let v = verifier();
        let wrong_secret = signed(TokenScheme::Aksk, "not-the-secret", NONCE, CREATED);
        let other_scheme = raw(&[(
            "x-wsse",
            &format!(
                r#"UsernameToken Username="{APP_KEY}", PasswordDigest="{AKSK_DIGEST}", Nonce="{NONCE}", Created="{CREATED}""#
            ),
        )]);
        let tampered = raw(&[(
            "x-aksk",
            &format!(
                r#"UsernameToken Username="{APP_KEY}", PasswordDigest="{}", Nonce="{NONCE}", Created="{CREATED}""#,
                AKSK_DIGEST.replace('e', "f")
            ),
        )]);
        for headers in [wrong_secret, other_scheme, tampered] {
            let err = v.check(&headers, created_at()).unwrap_err();
            assert_eq!(
                err,
                AuthRejection::WrongDigest { app_key: APP_KEY.into(), nonce: NONCE.into() }
            );
            let shown = format!("{err} {err:?}");
            for hidden in [SECRET, AKSK_DIGEST, WSSE_DIGEST, "not-the-secret"] {
                assert!(!shown.contains(hidden), "{shown}");
            }
        }
        let token = UsernameToken::from_headers(&signed(TokenScheme::Aksk, SECRET, NONCE, CREATED));
        assert!(!format!("{token:?}").contains(AKSK_DIGEST));
    }

    /// `Created` is accepted up to `max_skew` either side of now, and refused beyond.
    #[test]
    fn created_must_be_within_the_skew() {
        let v = verifier();
        let headers = signed(TokenScheme::Aksk, SECRET, NONCE, CREATED);
        let skew = TimeDelta::seconds(300);
        assert!(v.check(&headers, created_at() + skew).is_ok());
        assert!(v.check(&headers, created_at() - skew).is_ok());
        let too_old = v.check(&headers, created_at() + skew + TimeDelta::seconds(1));
        assert!(matches!(too_old, Err(AuthRejection::Skewed { .. })), "{too_old:?}");
        let future = v.check(&headers, created_at() - skew - TimeDelta::seconds(1));
        assert!(matches!(future, Err(AuthRejection::Skewed { .. })), "{future:?}");
        assert!(future.unwrap_err().to_string().contains("300s"));
    }

    /// A nonce may be re-sent until it is remembered, then it is refused for this app
    /// only.
    #[test]
    fn replay_is_refused_after_remember_only() {
        let mut apps = BTreeMap::from([(APP_KEY.to_string(), Secret::new(SECRET))]);
        apps.insert("other-app".into(), Secret::new("other-secret"));
        let v = PushVerifier::new(apps, Duration::from_secs(300));
        let headers = signed(TokenScheme::Aksk, SECRET, NONCE, CREATED);
        let first = v.check(&headers, created_at()).unwrap();
        let again = v.check(&headers, created_at()).unwrap();
        v.remember(&first);
        assert_eq!(
            v.check(&headers, created_at() + TimeDelta::seconds(5)),
            Err(AuthRejection::Replayed { app_key: APP_KEY.into(), nonce: NONCE.into() })
        );
        v.remember(&again);
        assert_eq!(v.remembered(), 1);
        let mut other = HeaderMap::new();
        for (name, value) in
            sign(TokenScheme::Wsse, "other-app", &Secret::new("other-secret"), NONCE, CREATED)
                .unwrap()
        {
            other.insert(name, value);
        }
        assert!(v.check(&other, created_at()).is_ok());
    }

    /// A skew too large for the calendar accepts any `Created` instead of overflowing.
    #[test]
    fn huge_skew_does_not_overflow() {
        let apps = BTreeMap::from([(APP_KEY.to_string(), Secret::new(SECRET))]);
        let v = PushVerifier::new(apps, Duration::MAX);
        let ok = v.check(&signed(TokenScheme::Aksk, SECRET, NONCE, CREATED), Utc::now()).unwrap();
        v.remember(&ok);
        assert_eq!(v.remembered(), 1);
    }

    /// Remembered nonces are forgotten once their `Created` is out of the window, and a
    /// pruned nonce still cannot pass again.
    #[test]
    fn old_nonces_are_pruned() {
        let v = verifier();
        let start = created_at();
        for i in 0..10 {
            let created = start + TimeDelta::seconds(60 * i);
            let nonce = format!("n{i}");
            let headers = signed(TokenScheme::Aksk, SECRET, &nonce, &format_created(created));
            let ok = v.check(&headers, created).unwrap();
            v.remember(&ok);
        }
        // At start + 540 s, nonces created before start + 240 s are outside the window.
        assert_eq!(v.remembered(), 6);
        let replay = signed(TokenScheme::Aksk, SECRET, "n0", CREATED);
        let later = start + TimeDelta::seconds(540);
        assert!(matches!(v.check(&replay, later), Err(AuthRejection::Skewed { .. })));
    }

    /// Header names and part names in any case, parts in any order and spacing, values
    /// with or without quotes; an `Authorization` of the other scheme is refused.
    #[test]
    fn header_parsing_variants() {
        let v = verifier();
        let loose = format!(
            "UsernameToken   created={CREATED},nonce = {NONCE} ,  USERNAME=\"{APP_KEY}\",PasswordDigest={AKSK_DIGEST}"
        );
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_bytes(b"X-AKSK").unwrap(), loose.parse().unwrap());
        assert!(v.check(&headers, created_at()).is_ok());
        headers.insert(AUTHORIZATION, "aksk realm=\"SDP\"".parse().unwrap());
        assert!(v.check(&headers, created_at()).is_ok());
        headers.insert(AUTHORIZATION, "WSSE realm=\"SDP\"".parse().unwrap());
        assert!(matches!(
            v.check(&headers, created_at()),
            Err(AuthRejection::SchemeMismatch { .. })
        ));
        let missing = raw(&[("x-aksk", "UsernameToken Username=a, Nonce=b, Created=c")]);
        let err = UsernameToken::from_headers(&missing).unwrap_err();
        assert!(err.to_string().contains("`PasswordDigest` is missing"), "{err}");
        let not_token = raw(&[("x-aksk", "Basic abc")]);
        assert!(matches!(
            UsernameToken::from_headers(&not_token),
            Err(AuthRejection::MalformedToken { .. })
        ));
        assert_eq!(
            UsernameToken::from_headers(&HeaderMap::new()),
            Err(AuthRejection::MissingToken)
        );
        let both = raw(&[("x-aksk", &loose), ("x-wsse", &loose)]);
        assert_eq!(UsernameToken::from_headers(&both), Err(AuthRejection::AmbiguousToken));
    }

    /// Unknown app keys, bad nonces and bad `Created` values get their own errors.
    #[test]
    fn bad_fields_are_named() {
        let v = verifier();
        let token = |user: &str, nonce: &str, created: &str| {
            raw(&[(
                "x-aksk",
                &format!(
                    r#"UsernameToken Username="{user}", PasswordDigest="{AKSK_DIGEST}", Nonce="{nonce}", Created="{created}""#
                ),
            )])
        };
        assert_eq!(
            v.check(&token("nobody", NONCE, CREATED), created_at()),
            Err(AuthRejection::UnknownAppKey { app_key: "nobody".into() })
        );
        // Senders are asked for [0-9A-Za-z]; a UUID with dashes passes the nonce check (and
        // fails only on the digest, which was made for another nonce).
        let dashed = "6f1c9a7e-3b2d-4c55-9e0f-1a2b3c4d5e6f";
        let dashed = v.check(&token(APP_KEY, dashed, CREATED), created_at());
        assert!(matches!(dashed, Err(AuthRejection::WrongDigest { .. })), "{dashed:?}");
        for nonce in ["", "has space", "tab\there", &"x".repeat(129)] {
            let err = v.check(&token(APP_KEY, nonce, CREATED), created_at()).unwrap_err();
            assert!(matches!(err, AuthRejection::BadNonce { .. }), "{err:?}");
        }
        for created in ["2018-02-12 15:30:20", "2018-02-12T15:30:20+08:00", "yesterday"] {
            let err = v.check(&token(APP_KEY, NONCE, created), created_at()).unwrap_err();
            assert!(matches!(err, AuthRejection::BadCreated { .. }), "{err:?}");
        }
    }
}
