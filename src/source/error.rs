//! Errors of the source side: every variant says which request failed and why.

/// A failure to get a usable page from a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server kept answering with an error status, or answered with a permanent one.
    #[error("{url}: HTTP {status} after {attempts} attempt(s): {body}")]
    Http {
        /// The request URL.
        url: String,
        /// The last status.
        status: u16,
        /// The start of the last response body (the API's own message).
        body: String,
        /// Attempts made.
        attempts: usize,
    },
    /// The network or the server kept failing (timeouts, resets, broken bodies).
    #[error("{url}: {reason} after {attempts} attempt(s): {detail}")]
    Transport {
        /// The request URL.
        url: String,
        /// What kind of failure.
        reason: String,
        /// The transport's own message.
        detail: String,
        /// Attempts made.
        attempts: usize,
    },
    /// The credentials were refused.
    #[error("{url}: the source '{source_name}' refused {credential} (HTTP {status}): {message}; check the source's auth_token, or app_key and app_secret, in the configuration")]
    Unauthorized {
        /// The configured source.
        source_name: String,
        /// The request URL.
        url: String,
        /// The status.
        status: u16,
        /// Which credential, without its secret part (e.g. "app key '202401150001'").
        credential: String,
        /// The API's message.
        message: String,
    },
    /// A request signed with an AK/SK (C2) was refused.
    #[error("{url}: the source '{source_name}' refused the request signed with AK '{ak}' (HTTP {status}): {message}; likely causes: a wrong ak or sk in the source's configuration, a host clock off from the server's (keep it NTP-synced), or a proxy or load balancer that rewrites the Host header")]
    SignatureRefused {
        /// The configured source.
        source_name: String,
        /// The request URL.
        url: String,
        /// The status.
        status: u16,
        /// The AK of the signature.
        ak: String,
        /// The API's message.
        message: String,
    },
    /// The CC-Gateway refused the configuration login, or refused a fresh session GUID.
    #[error("{url}: the source '{source_name}' refused the CC-Gateway session of account {account} ({status}): {message}; check the source's gateway_account and gateway_password (and that the account may use the configuration interfaces)")]
    GatewayRefused {
        /// The configured source.
        source_name: String,
        /// The request URL.
        url: String,
        /// How it was refused: `HTTP 401`, or `retcode 100-006` in an HTTP 200 answer.
        status: String,
        /// The gateway account (`agentId` of the login), never the password or the GUID.
        account: u64,
        /// The API's message.
        message: String,
    },
    /// The API answered with an error code in its envelope.
    #[error("{url}: the API answered {field} = {code}: {message}")]
    Api {
        /// The request URL.
        url: String,
        /// The field that carried the code.
        field: String,
        /// The code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The response is not of the documented shape.
    #[error("{url}: response does not have the expected shape at '{path}': {problem}")]
    Shape {
        /// The request URL.
        url: String,
        /// Where in the body.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The client could not be built (CA bundle, TLS settings).
    #[error("source '{source_name}': {problem}")]
    Setup {
        /// The configured source.
        source_name: String,
        /// What is wrong.
        problem: String,
    },
    /// The source has no credentials of the kind the pipeline needs.
    #[error("source '{source_name}' has no credentials for this pipeline: set {needed}")]
    NoCredentials {
        /// The configured source.
        source_name: String,
        /// The configuration keys to set.
        needed: &'static str,
    },
}

impl SourceError {
    /// The same error with every occurrence of `secret` in its texts replaced by
    /// `**REDACTED**`: a server may echo the request, token and all, in its answer. A text
    /// that ends with the start of the secret (an excerpt cut inside it) loses that tail too.
    pub fn redacted(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let r = |text: String| redact_text(text, secret);
        match self {
            Self::Http { url, status, body, attempts } => {
                Self::Http { url: r(url), status, body: r(body), attempts }
            }
            Self::Transport { url, reason, detail, attempts } => {
                Self::Transport { url: r(url), reason, detail: r(detail), attempts }
            }
            Self::Unauthorized { source_name, url, status, credential, message } => {
                Self::Unauthorized {
                    source_name,
                    url: r(url),
                    status,
                    credential,
                    message: r(message),
                }
            }
            Self::SignatureRefused { source_name, url, status, ak, message } => {
                Self::SignatureRefused { source_name, url: r(url), status, ak, message: r(message) }
            }
            Self::GatewayRefused { source_name, url, status, account, message } => {
                Self::GatewayRefused {
                    source_name,
                    url: r(url),
                    status,
                    account,
                    message: r(message),
                }
            }
            Self::Api { url, field, code, message } => {
                Self::Api { url: r(url), field, code: r(code), message: r(message) }
            }
            Self::Shape { url, path, problem } => {
                Self::Shape { url: r(url), path: r(path), problem: r(problem) }
            }
            other @ (Self::Setup { .. } | Self::NoCredentials { .. }) => other,
        }
    }

    /// The same error, saying how many attempts were made (for the kinds that count them).
    pub fn with_attempts(self, n: usize) -> Self {
        match self {
            Self::Http { url, status, body, .. } => Self::Http { url, status, body, attempts: n },
            Self::Transport { url, reason, detail, .. } => {
                Self::Transport { url, reason, detail, attempts: n }
            }
            other => other,
        }
    }

    /// Whether the credentials are missing or refused: retrying cannot help, and the
    /// pipeline stops.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            Self::Unauthorized { .. }
                | Self::SignatureRefused { .. }
                | Self::GatewayRefused { .. }
                | Self::NoCredentials { .. }
        )
    }

    /// The same error, for a refused request signed with `ak` (for
    /// [`SourceError::Unauthorized`]).
    pub fn signature_refused(self, ak: &str) -> Self {
        match self {
            Self::Unauthorized { source_name, url, status, message, .. } => {
                Self::SignatureRefused { source_name, url, status, ak: ak.to_string(), message }
            }
            other => other,
        }
    }

    /// The same error, naming the refused credential (for [`SourceError::Unauthorized`]).
    pub fn refused(self, what: &str) -> Self {
        match self {
            Self::Unauthorized { source_name, url, status, message, .. } => Self::Unauthorized {
                source_name,
                url,
                status,
                credential: what.to_string(),
                message,
            },
            other => other,
        }
    }
}

/// Replaces `secret` in `text`, and a trailing start of it of 4 or more bytes.
fn redact_text(text: String, secret: &str) -> String {
    const MARK: &str = "**REDACTED**";
    let mut text = text.replace(secret, MARK);
    let longest = (4..secret.len())
        .rev()
        .filter(|&k| secret.is_char_boundary(k))
        .find(|&k| text.ends_with(&secret[..k]));
    if let Some(k) = longest {
        text.truncate(text.len() - k);
        text.push_str(MARK);
    }
    text
}

/// Cuts a response body to a readable excerpt for an error message.
pub fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if body.len() > MAX {
        format!("{}…", flat.trim())
    } else {
        flat.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer that echoes the token loses it in the error text.
    #[test]
    fn redaction_removes_the_secret_everywhere() {
        let err = SourceError::Http {
            url: "u".into(),
            status: 500,
            body: r#"echo {"authToken":"t0k3n"} t0k3n"#.into(),
            attempts: 1,
        };
        let text = err.redacted("t0k3n").to_string();
        assert!(!text.contains("t0k3n") && text.contains("**REDACTED**"), "{text}");
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    /// A secret is removed whole, and also when an excerpt cut it after its first bytes.
    #[test]
    fn whole_and_cut_secrets_are_removed() {
        let secret = "tok-0123456789";
        assert_eq!(redact_text(format!("a {secret} b"), secret), "a **REDACTED** b");
        assert_eq!(redact_text("echo: tok-0123".into(), secret), "echo: **REDACTED**");
        assert_eq!(redact_text("no secret, tok".into(), secret), "no secret, tok");
    }
}
