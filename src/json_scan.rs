//! Finding where a JSON token ends, checking it on the way as strictly as a JSON parser:
//! strings without raw control characters and with valid escapes, numbers of JSON's
//! grammar, the three literals, and objects and arrays nested at most
//! [`MAX_DEPTH`] deep. The text is `str`, so it is valid UTF-8 already.
//!
//! Strings are scanned eight bytes at a time: the bytes that end a run of plain text (`"`,
//! `\` and control characters) are found with word arithmetic, without a branch per byte.

use std::fmt;

/// How deep objects and arrays may nest in a value; deeper ones are refused rather than
/// walked by ever deeper recursion. serde_json's `Value` refuses the same depths; its raw
/// values do not, so a record nested this deep is a reject, kept in `_rejects/`.
pub(crate) const MAX_DEPTH: usize = 128;

/// The text is not JSON at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// Byte offset in the text.
    pub(crate) at: usize,
    /// What was expected.
    pub(crate) expected: &'static str,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {} at byte {}", self.expected, self.at)
    }
}

fn malformed<T>(at: usize, expected: &'static str) -> Result<T, Malformed> {
    Err(Malformed { at, expected })
}

/// Each byte of a word set to one value.
const fn splat(byte: u8) -> u64 {
    u64::from_le_bytes([byte; 8])
}

/// The high bit of each byte of `word` that is `"`, `\` or below 0x20, and possibly of
/// bytes after such a byte: the lowest set bit is always the first such byte.
fn stops(word: u64) -> u64 {
    let zero_in = |w: u64| w.wrapping_sub(splat(1)) & !w;
    let quote = zero_in(word ^ splat(b'"'));
    let backslash = zero_in(word ^ splat(b'\\'));
    let control = word.wrapping_sub(splat(0x20)) & !word;
    (quote | backslash | control) & splat(0x80)
}

/// The first position from `at` whose byte may end a run of plain string text (it is `"`,
/// `\` or a control character, or the position is within the last seven bytes).
fn plain_run_end(bytes: &[u8], mut at: usize) -> usize {
    while let Some(word) = bytes.get(at..at + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
        let stops = stops(u64::from_le_bytes(word));
        if stops != 0 {
            return at + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at
}

/// The end of the string whose opening quote is at `at` (just past its closing quote), and
/// whether it holds escapes.
#[inline(always)]
pub(crate) fn string(bytes: &[u8], at: usize) -> Result<(usize, bool), Malformed> {
    if bytes.get(at) != Some(&b'"') {
        return malformed(at, "a string");
    }
    let mut pos = at + 1;
    let mut escaped = false;
    loop {
        pos = plain_run_end(bytes, pos);
        match bytes.get(pos) {
            Some(b'"') => return Ok((pos + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                pos = escape(bytes, pos)?;
            }
            Some(0..=0x1f) => return malformed(pos, "an escape for a control character"),
            Some(_) => pos += 1,
            None => return malformed(pos, "the end of a string"),
        }
    }
}

/// The end of the escape whose backslash is at `at`.
fn escape(bytes: &[u8], at: usize) -> Result<usize, Malformed> {
    match bytes.get(at + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
        Some(b'u') => match bytes.get(at + 2..at + 6) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(at + 6),
            _ => malformed(at, "four hex digits after \\u"),
        },
        _ => malformed(at, "a valid escape"),
    }
}

/// The end of the digits from `at`.
fn digits(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    at
}

/// The end of at least one digit from `at`.
fn some_digits(bytes: &[u8], at: usize) -> Result<usize, Malformed> {
    match digits(bytes, at) {
        end if end > at => Ok(end),
        _ => malformed(at, "a digit"),
    }
}

/// The end of the number that starts at `at` (`-`, an integer part without leading zeros,
/// then an optional fraction and exponent), and its [`Token`].
#[inline(always)]
fn number(bytes: &[u8], at: usize) -> Result<(usize, Token), Malformed> {
    let negative = bytes.get(at) == Some(&b'-');
    let start = at + usize::from(negative);
    let (mut pos, magnitude) = match bytes.get(start) {
        Some(b'0') => (start + 1, 0),
        Some(b'1'..=b'9') => integer_digits(bytes, start),
        _ => return malformed(start, "a value"),
    };
    let mut integer = pos - start <= MAX_INTEGER_DIGITS;
    if bytes.get(pos) == Some(&b'.') {
        pos = some_digits(bytes, pos + 1)?;
        integer = false;
    }
    if matches!(bytes.get(pos), Some(b'e' | b'E')) {
        pos += 1 + usize::from(matches!(bytes.get(pos + 1), Some(b'+' | b'-')));
        pos = some_digits(bytes, pos)?;
        integer = false;
    }
    let token = match i64::try_from(magnitude) {
        Ok(magnitude) if integer => Token::Integer(if negative { -magnitude } else { magnitude }),
        _ => Token::Other,
    };
    Ok((pos, token))
}

/// The end of the digits from `at`, and their value (wrapped past `u64`: it is read only
/// for at most [`MAX_INTEGER_DIGITS`] digits).
fn integer_digits(bytes: &[u8], mut at: usize) -> (usize, u64) {
    let mut value = 0u64;
    while let Some(digit) = bytes.get(at).map(|b| b.wrapping_sub(b'0')).filter(|d| *d <= 9) {
        value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
        at += 1;
    }
    (at, value)
}

/// The end of `literal`, which must be written at `at`.
fn literal(bytes: &[u8], at: usize, literal: &'static str) -> Result<usize, Malformed> {
    match bytes.get(at..at + literal.len()) {
        Some(text) if text == literal.as_bytes() => Ok(at + literal.len()),
        _ => malformed(at, literal),
    }
}

/// The position of the first byte from `at` that is not whitespace.
pub(crate) fn whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        at += 1;
    }
    at
}

/// What the scan of a value learned of it on the way, so that its reader need not look at
/// its text again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    /// A string, and whether it holds escapes.
    String {
        /// The string holds at least one escape.
        escaped: bool,
    },
    /// A number without fraction or exponent, of at most [`MAX_INTEGER_DIGITS`] digits
    /// (so within `i64`), and its value.
    Integer(i64),
    /// Any other value: a longer number or one with a fraction or exponent, a literal, an
    /// object or an array.
    Other,
}

/// The most digits of a [`Token::Integer`]: any 18 digits fit in an `i64`.
pub(crate) const MAX_INTEGER_DIGITS: usize = 18;

/// The end of the value that starts at `at`, inside `depth` enclosing objects or arrays.
pub(crate) fn value(bytes: &[u8], at: usize, depth: usize) -> Result<usize, Malformed> {
    token(bytes, at, depth).map(|(end, _)| end)
}

/// The end of the value that starts at `at` (as [`value`]), and its [`Token`].
///
/// Always inlined, as are [`string`] and [`number`], so that the record walk (compiled in
/// another codegen unit) reads each member's value without a call.
#[inline(always)]
pub(crate) fn token(bytes: &[u8], at: usize, depth: usize) -> Result<(usize, Token), Malformed> {
    let other = |end| (end, Token::Other);
    match bytes.get(at) {
        Some(b'"') => string(bytes, at).map(|(end, escaped)| (end, Token::String { escaped })),
        Some(b'{' | b'[') => composite(bytes, at, depth + 1).map(other),
        Some(b't') => literal(bytes, at, "true").map(other),
        Some(b'f') => literal(bytes, at, "false").map(other),
        Some(b'n') => literal(bytes, at, "null").map(other),
        _ => number(bytes, at),
    }
}

/// The end of the object or array that opens at `at`, at nesting `depth` (1 for a
/// top-level one).
fn composite(bytes: &[u8], at: usize, depth: usize) -> Result<usize, Malformed> {
    if depth > MAX_DEPTH {
        return malformed(at, "objects and arrays nested less deeply");
    }
    match bytes.get(at) {
        Some(b'{') => elements(bytes, at, |pos| {
            let value_at = after_colon(bytes, string(bytes, pos)?.0)?;
            value(bytes, value_at, depth)
        }),
        _ => elements(bytes, at, |pos| value(bytes, pos, depth)),
    }
}

/// Walks the elements of the object or array that opens at `at`: `element` reads the one
/// that starts at a position (a member of an object: its key, `:` and value) and returns
/// where it ends; the walk checks the brackets and the commas between elements, and
/// returns the position just past the closing bracket. Inlined into each caller, so that
/// `element` is too: the walk of a record's members is the normalizer's hottest loop (a
/// call per member costs 7% of it).
#[inline(always)]
pub(crate) fn elements<E: From<Malformed>>(
    bytes: &[u8],
    at: usize,
    mut element: impl FnMut(usize) -> Result<usize, E>,
) -> Result<usize, E> {
    let (close, expected) = match bytes.get(at) {
        Some(b'{') => (b'}', "',' or '}'"),
        Some(b'[') => (b']', "',' or ']'"),
        _ => return Err(Malformed { at, expected: "an object or an array" }.into()),
    };
    let mut pos = whitespace(bytes, at + 1);
    if bytes.get(pos) == Some(&close) {
        return Ok(pos + 1);
    }
    loop {
        pos = whitespace(bytes, element(pos)?);
        match bytes.get(pos) {
            Some(b',') => pos = whitespace(bytes, pos + 1),
            Some(&byte) if byte == close => return Ok(pos + 1),
            _ => return Err(Malformed { at: pos, expected }.into()),
        }
    }
}

/// The start of a member's value, after the `:` that follows its key (which ends at `at`).
pub(crate) fn after_colon(bytes: &[u8], at: usize) -> Result<usize, Malformed> {
    let colon = whitespace(bytes, at);
    match bytes.get(colon) {
        Some(b':') => Ok(whitespace(bytes, colon + 1)),
        _ => malformed(colon, "':'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `text` is one JSON value, by this module, surrounded by whitespace only.
    fn accepts(text: &str) -> bool {
        let bytes = text.as_bytes();
        let start = whitespace(bytes, 0);
        value(bytes, start, 0).is_ok_and(|end| whitespace(bytes, end) == bytes.len())
    }

    /// Every kind of token, valid and not, is judged as serde_json judges it.
    #[test]
    fn tokens_are_checked_like_serde_json() {
        let cases = [
            "0",
            "-0",
            "12",
            "-12.5e3",
            "1E+2",
            "1e-2",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "1.e3",
            "--1",
            "true",
            "false",
            "null",
            "tru",
            "nul",
            "True",
            r#""""#,
            r#""a\"b""#,
            r#""\u00e9\n""#,
            r#""\u00g9""#,
            r#""\x""#,
            "\"a\u{1}b\"",
            "\"tab\tin\"",
            r#""a"#,
            r#""\"#,
            "\"中文 and more than eight bytes\"",
            "[]",
            "{}",
            "[1,2]",
            "[1,]",
            "[,1]",
            r#"{"a":1,"b":[{"c":null}]}"#,
            r#"{"a":1,}"#,
            r#"{"a"1}"#,
            r#"{a:1}"#,
            r#"{"a":}"#,
            "[1 2]",
            " [ 1 , { } ] ",
            "[",
            "]",
            "{\"a\":1",
            r#"{"a":"\ud800"}"#,
        ];
        for case in cases {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(case).is_ok();
            assert_eq!(accepts(case), serde, "{case:?}");
        }
    }

    /// Nesting is bounded: 128 levels are read, 129 are refused, and a very deep text is
    /// refused without exhausting the stack.
    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| "[".repeat(depth) + &"]".repeat(depth);
        assert!(accepts(&nested(MAX_DEPTH)));
        assert!(!accepts(&nested(MAX_DEPTH + 1)));
        let deep = nested(100_000);
        assert_eq!(
            value(deep.as_bytes(), 0, 0).map_err(|e| e.at),
            Err(MAX_DEPTH),
            "refused where it gets too deep, without recursing further"
        );
    }

    /// The word scan stops at the first quote, backslash or control character wherever it
    /// lies in a word, and never past the text.
    #[test]
    fn plain_runs_end_at_the_first_stop() {
        for len in 0..20 {
            for stop in ["\"", "\\", "\u{1f}", "\n"] {
                let text = "é".repeat(len) + stop + "\"";
                let end = plain_run_end(text.as_bytes(), 0);
                assert!(end <= 2 * len, "{len} {stop:?}");
                let after = text.as_bytes()[end..]
                    .iter()
                    .position(|b| matches!(b, b'"' | b'\\') || *b < 0x20);
                assert_eq!(after, Some(2 * len - end), "{len} {stop:?}");
            }
        }
        assert_eq!(plain_run_end(b"abc", 0), 0, "fewer than eight bytes are left to the caller");
    }

    /// A token tells what its text holds: strings whether they have escapes, integers of up
    /// to 18 digits their value, everything else nothing.
    #[test]
    fn tokens_tell_what_their_text_holds() {
        let cases = [
            (r#""plain""#, Token::String { escaped: false }),
            (r#""a\b""#, Token::String { escaped: true }),
            (r#""\u00e9""#, Token::String { escaped: true }),
            ("0", Token::Integer(0)),
            ("-0", Token::Integer(0)),
            ("953754947354353694", Token::Integer(953_754_947_354_353_694)),
            ("-999999999999999999", Token::Integer(-999_999_999_999_999_999)),
            ("1000000000000000000", Token::Other),
            ("9223372036854775807", Token::Other),
            ("5.0", Token::Other),
            ("1e3", Token::Other),
            ("true", Token::Other),
            ("null", Token::Other),
            ("[1]", Token::Other),
        ];
        for (text, expected) in cases {
            assert_eq!(token(text.as_bytes(), 0, 0), Ok((text.len(), expected)), "{text:?}");
        }
    }

    proptest::proptest! {
        /// Any integer of up to 18 digits is a token of its value; a longer one, or one
        /// with a fraction or an exponent, is a valid number without a value.
        #[test]
        fn integers_are_read_as_rust_reads_them(
            n in -999_999_999_999_999_999i64..=999_999_999_999_999_999,
            longer in 1_000_000_000_000_000_000u64..,
            suffix in proptest::sample::select(vec![".0", ".25", "e2", "E-1", "e+0"]),
        ) {
            let text = n.to_string();
            proptest::prop_assert_eq!(
                token(text.as_bytes(), 0, 0), Ok((text.len(), Token::Integer(n)))
            );
            for text in [longer.to_string(), format!("{n}{suffix}")] {
                proptest::prop_assert_eq!(
                    token(text.as_bytes(), 0, 0), Ok((text.len(), Token::Other))
                );
            }
        }
    }
}
