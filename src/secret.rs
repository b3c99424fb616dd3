//! A string that must never reach a log, an error message or a status page.

use std::fmt;

/// A secret value (token, password, key). `Debug` and `Display` print `**REDACTED**`;
/// the value is read only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// `a == b`, in a time that depends on the lengths only (not on where they first differ),
/// for comparing what a request sends with a secret.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("tok-123");
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "**REDACTED** **REDACTED** Some(**REDACTED**)"
        );
        assert_eq!(s.expose(), "tok-123");
    }
}
