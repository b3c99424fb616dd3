//! The C2 AK/SK request signature of the CC-CMS, CC-FS, CC-iSales and CC-iKBS interfaces
//! (API reference, section 1.3 "C2"): `Authorization: auth-v2/{AK}/{ts}/{SignedHeaders}/{hex}`.
//!
//! One canonical-request builder ([`canonical_request`]) serves both sides: the [`Signer`]
//! that the client uses, and the [`Verifier`] that checks a received request (CC-FS
//! callbacks, the simulator).
//!
//! Readings chosen where the reference allows several:
//! - The timestamp is written with milliseconds by default (the CEC example), or with
//!   seconds (the demo code): [`TimestampPrecision`]. The verifier accepts any timestamp
//!   text, since it travels inside the header; it does not judge clock skew (the allowed
//!   skew is not documented) and hands the timestamp back to the caller.
//! - The query is signed as decoded `name=value` pairs, each normalised with [`normalize`].
//!   The verifier decodes the received query as `application/x-www-form-urlencoded` (`+` is
//!   a space), as the demo's servlet does.
//! - Header values and query pairs are signed as text; bytes that are not UTF-8 are read
//!   lossily (the demo works on Java strings). The body is signed byte for byte.
//! - The `SignedHeaders` field of a received header is used verbatim in the canonical
//!   request, whatever its order; its names are looked up case-insensitively.
//! - The signature field is hex of either case.

use std::borrow::Cow;

use axum::http::{HeaderMap, Method, Uri};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use sha2::Sha256;

use crate::secret::Secret;

/// The first field of every C2 `Authorization` value.
pub const AUTH_VERSION: &str = "auth-v2";

/// The headers signed by default, as in the CEC example.
pub const DEFAULT_SIGNED_HEADERS: [&str; 3] = ["content-length", "content-type", "host"];

/// The headers a signed client request can carry in its signature: the ones the client
/// writes itself, byte for byte as signed. `host` is always among the signed ones.
pub const SIGNABLE_HEADERS: [&str; 3] = DEFAULT_SIGNED_HEADERS;

/// Bytes that [`normalize`] keeps as they are, besides ASCII letters and digits.
const KEPT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

type HmacSha256 = Hmac<Sha256>;

/// How the signature's timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampPrecision {
    /// `2021-08-31T09:38:50.872Z`, as in the CEC example.
    #[default]
    Milliseconds,
    /// `2021-08-31T09:38:50Z`, as in the demo code.
    Seconds,
}

impl TimestampPrecision {
    /// `instant` written in this precision, in UTC.
    pub fn format(self, instant: DateTime<Utc>) -> String {
        let pattern = match self {
            Self::Milliseconds => "%Y-%m-%dT%H:%M:%S%.3fZ",
            Self::Seconds => "%Y-%m-%dT%H:%M:%SZ",
        };
        instant.format(pattern).to_string()
    }
}

/// Why a request could not be signed, or why a signed request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request has no `Authorization` header.
    #[error("the request has no Authorization header")]
    MissingAuthorization,
    /// The header does not split into the five fields.
    #[error(
        "the Authorization header has {found} '/'-separated field(s), not the 5 of \
         auth-v2/AK/TIMESTAMP/SIGNED-HEADERS/SIGNATURE"
    )]
    FieldCount {
        /// Fields found.
        found: usize,
    },
    /// The header does not start with `auth-v2`.
    #[error("the Authorization header does not start with '{AUTH_VERSION}/'")]
    Version,
    /// One of the five fields is empty or not of its form.
    #[error("the Authorization header's {field} field {problem}")]
    Field {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The header names another AK than the one expected.
    #[error("the request is signed with AK '{received}', not the expected '{expected}'")]
    UnknownAk {
        /// The AK of the header.
        received: String,
        /// The AK expected.
        expected: String,
    },
    /// A header listed as signed is not in the request.
    #[error("the signed header '{name}' is not in the request")]
    MissingHeader {
        /// Its name.
        name: String,
    },
    /// The signature is not the one of this request under the expected AK/SK.
    #[error(
        "the signature of AK '{ak}' does not match the request (a wrong SK, or the method, \
         path, query, a signed header or the body changed after signing)"
    )]
    Mismatch {
        /// The AK of the header.
        ak: String,
    },
}

/// A request as the signature sees it.
#[derive(Debug, Clone, Default)]
pub struct RequestParts<'a> {
    /// HTTP method (upper-cased when signed).
    pub method: Cow<'a, str>,
    /// The URI path exactly as sent, without scheme, host or query, not re-encoded.
    pub path: Cow<'a, str>,
    /// The decoded query parameters, in any order.
    pub query: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Header names and their values exactly as on the wire; must hold every signed one.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The raw body.
    pub body: &'a [u8],
}

impl RequestParts<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        found.next().map(|(_, v)| v.as_ref())
    }
}

/// `N()` of the reference (`PathUtils.normalize`): keeps ASCII letters, digits and
/// `- . _ ~`, and writes every other byte as `%XX` in uppercase hex.
///
/// ```
/// # use cecsync::source::signature::normalize;
/// assert_eq!(normalize("a-._~ /:é".as_bytes()), "a-._~%20%2F%3A%C3%A9");
/// ```
pub fn normalize(bytes: &[u8]) -> String {
    percent_encode(bytes, KEPT).to_string()
}

/// The canonical query: `N(name)=N(value)` of each parameter, sorted, joined by `&`. It is
/// also a valid way to write the query on the wire.
pub fn canonical_query<K: AsRef<str>, V: AsRef<str>>(query: &[(K, V)]) -> String {
    let mut pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            format!("{}={}", normalize(k.as_ref().as_bytes()), normalize(v.as_ref().as_bytes()))
        })
        .collect();
    pairs.sort();
    pairs.join("&")
}

/// The `CanonicalRequest` of `request` under the `SignedHeaders` field `signed_headers`
/// (`;`-separated header names): method, path, the canonical query when there is one, the
/// signed header names, the canonical headers and the normalised body, joined by `\n`.
pub fn canonical_request(
    request: &RequestParts<'_>,
    signed_headers: &str,
) -> Result<String, SignatureError> {
    let mut headers = signed_headers
        .split(';')
        .map(|name| {
            let value = request
                .header(name)
                .ok_or_else(|| SignatureError::MissingHeader { name: name.to_string() })?;
            Ok(format!(
                "{}:{}",
                normalize(name.to_ascii_lowercase().as_bytes()),
                normalize(value.as_bytes())
            ))
        })
        .collect::<Result<Vec<_>, SignatureError>>()?;
    headers.sort();
    let mut lines = vec![request.method.to_ascii_uppercase(), request.path.to_string()];
    if !request.query.is_empty() {
        lines.push(canonical_query(&request.query));
    }
    lines.push(signed_headers.to_string());
    lines.push(headers.join("\n"));
    lines.push(normalize(request.body));
    Ok(lines.join("\n"))
}

/// `auth-v2/{AK}/{ts}/{SignedHeaders}`.
pub fn auth_string_prefix(ak: &str, timestamp: &str, signed_headers: &str) -> String {
    format!("{AUTH_VERSION}/{ak}/{timestamp}/{signed_headers}")
}

/// The signing key: the hex text of HMAC-SHA256 of the prefix under the SK's UTF-8 text.
pub fn signing_key(sk: &Secret, auth_string_prefix: &str) -> Secret {
    Secret::new(hex::encode(
        hmac(sk.expose().as_bytes(), auth_string_prefix).finalize().into_bytes(),
    ))
}

/// HMAC-SHA256 of `message` under `key`, not yet finalised.
fn hmac(key: &[u8], message: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message.as_bytes());
    mac
}

/// Signs client requests with one AK/SK.
#[derive(Debug, Clone)]
pub struct Signer {
    ak: String,
    sk: Secret,
    signed_headers: String,
    precision: TimestampPrecision,
}

impl Signer {
    /// A signer of `headers` (lowercased, sorted and deduplicated into `SignedHeaders`) with
    /// timestamps in `precision`.
    pub fn new(
        ak: impl Into<String>,
        sk: Secret,
        headers: &[impl AsRef<str>],
        precision: TimestampPrecision,
    ) -> Self {
        let mut names: Vec<String> =
            headers.iter().map(|h| h.as_ref().to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        Self { ak: ak.into(), sk, signed_headers: names.join(";"), precision }
    }

    /// The same signer without `name` among its signed headers (a `GET` sends no body, so
    /// no `Content-Length` to sign).
    ///
    /// ```
    /// # use cecsync::secret::Secret;
    /// # use cecsync::source::signature::{Signer, TimestampPrecision};
    /// let signer = Signer::new("ak", Secret::new("sk"), &["host", "content-length"], TimestampPrecision::Seconds);
    /// assert_eq!(signer.without_header("content-length").signed_headers(), "host");
    /// ```
    pub fn without_header(&self, name: &str) -> Self {
        let names: Vec<&str> = self.signed_headers.split(';').filter(|h| *h != name).collect();
        Self { signed_headers: names.join(";"), ..self.clone() }
    }

    /// The AK.
    pub fn ak(&self) -> &str {
        &self.ak
    }

    /// The SK, for redacting it from errors.
    pub fn sk(&self) -> &Secret {
        &self.sk
    }

    /// The `SignedHeaders` field.
    pub fn signed_headers(&self) -> &str {
        &self.signed_headers
    }

    /// The `Authorization` value of `request` signed at `now`.
    pub fn authorization(
        &self,
        request: &RequestParts<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, SignatureError> {
        self.authorization_at(request, &self.precision.format(now))
    }

    /// The `Authorization` value of `request` with the timestamp text `timestamp`.
    pub fn authorization_at(
        &self,
        request: &RequestParts<'_>,
        timestamp: &str,
    ) -> Result<String, SignatureError> {
        let prefix = auth_string_prefix(&self.ak, timestamp, &self.signed_headers);
        let canonical = canonical_request(request, &self.signed_headers)?;
        let key = signing_key(&self.sk, &prefix);
        let signature = hmac(key.expose().as_bytes(), &canonical).finalize().into_bytes();
        Ok(format!("{prefix}/{}", hex::encode(signature)))
    }
}

/// The five fields of a received `Authorization` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The AK.
    pub ak: String,
    /// The timestamp text, as the signer wrote it.
    pub timestamp: String,
    /// The `SignedHeaders` field, verbatim.
    pub signed_headers: String,
    /// The signature, decoded from hex.
    pub signature: [u8; 32],
}

impl Authorization {
    /// Splits `value` into its fields and checks their form.
    pub fn parse(value: &str) -> Result<Self, SignatureError> {
        let fields: Vec<&str> = value.trim().split('/').collect();
        let [version, ak, timestamp, signed_headers, signature] = fields[..] else {
            return Err(SignatureError::FieldCount { found: fields.len() });
        };
        if version != AUTH_VERSION {
            return Err(SignatureError::Version);
        }
        let field = |field, problem| SignatureError::Field { field, problem };
        for (name, text) in [("AK", ak), ("timestamp", timestamp)] {
            if text.is_empty() {
                return Err(field(name, "is empty"));
            }
        }
        if signed_headers.split(';').any(str::is_empty) {
            return Err(field("SignedHeaders", "has an empty header name"));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(signature, &mut bytes)
            .map_err(|_| field("signature", "is not 64 hex digits"))?;
        Ok(Self {
            ak: ak.to_string(),
            timestamp: timestamp.to_string(),
            signed_headers: signed_headers.to_string(),
            signature: bytes,
        })
    }
}

/// Checks received requests against one AK/SK.
#[derive(Debug, Clone)]
pub struct Verifier {
    ak: String,
    sk: Secret,
}

impl Verifier {
    /// A verifier of requests signed with `ak` and `sk`.
    pub fn new(ak: impl Into<String>, sk: Secret) -> Self {
        Self { ak: ak.into(), sk }
    }

    /// Checks the `Authorization` value `authorization` against `request`: the AK must be
    /// the expected one, and the signature the one of the request, compared in constant
    /// time. Returns the parsed header (its timestamp, for a skew check by the caller).
    pub fn verify(
        &self,
        authorization: &str,
        request: &RequestParts<'_>,
    ) -> Result<Authorization, SignatureError> {
        let auth = Authorization::parse(authorization)?;
        self.check(&auth, request)?;
        Ok(auth)
    }

    /// [`Self::verify`] on a request as an HTTP server receives it (e.g. in an axum
    /// middleware, with the body collected): the path and query of `uri`, the listed
    /// `headers` and the raw `body`.
    pub fn verify_http(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Authorization, SignatureError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(SignatureError::MissingAuthorization)?;
        let auth = Authorization::parse(&String::from_utf8_lossy(value.as_bytes()))?;
        let listed = auth.signed_headers.split(';').filter_map(|name| {
            let value = headers.get(name)?;
            Some((Cow::Borrowed(name), String::from_utf8_lossy(value.as_bytes())))
        });
        let request = RequestParts {
            method: Cow::Borrowed(method.as_str()),
            path: Cow::Borrowed(uri.path()),
            query: form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).collect(),
            headers: listed.collect(),
            body,
        };
        self.check(&auth, &request)?;
        Ok(auth)
    }

    fn check(
        &self,
        auth: &Authorization,
        request: &RequestParts<'_>,
    ) -> Result<(), SignatureError> {
        if auth.ak != self.ak {
            return Err(SignatureError::UnknownAk {
                received: auth.ak.clone(),
                expected: self.ak.clone(),
            });
        }
        let canonical = canonical_request(request, &auth.signed_headers)?;
        let prefix = auth_string_prefix(&auth.ak, &auth.timestamp, &auth.signed_headers);
        let key = signing_key(&self.sk, &prefix);
        hmac(key.expose().as_bytes(), &canonical)
            .verify_slice(&auth.signature)
            .map_err(|_| SignatureError::Mismatch { ak: auth.ak.clone() })
    }
}

#[cfg(test)]
mod tests;
