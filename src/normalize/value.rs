//! Reading one JSON value, given as its raw text, as the type of a column.
//!
//! Values are classified by their first byte (a raw value is valid JSON without leading
//! whitespace), so numbers keep their decimal text for exact reading, and strings without
//! escapes are borrowed from the record. Each reader also takes the [`Token`] the walk's
//! scan gave the value, so that it does not look at the text again for what the scan
//! already learned (an integer's value, whether a string has escapes); [`Token::Other`]
//! tells nothing, and the text is then looked at. The readers of the common columns (integers,
//! times, text) are always inlined: the columns call them once per value, from another codegen
//! unit.

use std::borrow::Cow;

use super::number;
use crate::json_scan::Token;

/// Why a JSON value cannot be stored in a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// The JSON type (or the text of a string) does not fit the column.
    Type,
    /// A number with a fraction where an integer is expected.
    Fraction,
    /// A number beyond what the column holds.
    Range,
    /// `NaN` or an infinity where a float is expected.
    NotFinite,
    /// A string whose escapes do not decode to Unicode text (a lone surrogate).
    Text,
}

impl Mismatch {
    /// What a reason adds after quoting the value.
    pub(crate) fn clause(self) -> &'static str {
        match self {
            Mismatch::Type => "",
            Mismatch::Fraction => ", which is not a whole number",
            Mismatch::Range => ", which is out of range",
            Mismatch::NotFinite => ", which is not a finite number",
            Mismatch::Text => ", whose escapes are not valid Unicode",
        }
    }
}

/// The JSON type of a raw value, with the text needed to read it.
enum Json<'r> {
    Null,
    Bool(bool),
    /// The literal, e.g. `-12.5e3`.
    Number(&'r str),
    /// The decoded text.
    String(Cow<'r, str>),
    /// An object or an array.
    Composite,
}

impl<'r> Json<'r> {
    fn of(raw: &'r str, token: Token) -> Result<Self, Mismatch> {
        Ok(match raw.as_bytes().first() {
            Some(b'n') => Json::Null,
            Some(b't') => Json::Bool(true),
            Some(b'f') => Json::Bool(false),
            Some(b'"') => Json::String(decode_string(raw, token)?),
            Some(b'{' | b'[') => Json::Composite,
            _ => Json::Number(raw),
        })
    }
}

/// The inside of a raw JSON string, between its quotes.
#[inline(always)]
fn string_inside(raw: &str) -> Result<&str, Mismatch> {
    raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')).ok_or(Mismatch::Type)
}

/// The text of a raw JSON string: borrowed when it has no escapes, decoded otherwise.
fn decode_string(raw: &str, token: Token) -> Result<Cow<'_, str>, Mismatch> {
    let inner = string_inside(raw)?;
    let escaped = match token {
        Token::String { escaped } => escaped,
        _ => inner.contains('\\'),
    };
    if escaped {
        unescape(inner).map(Cow::Owned).ok_or(Mismatch::Text)
    } else {
        Ok(Cow::Borrowed(inner))
    }
}

/// Decodes the escapes of the inside of a JSON string (Windows paths in file names are
/// full of them); `None` when an escape is not valid (a lone surrogate, a bad hex digit).
pub(crate) fn unescape(inner: &str) -> Option<String> {
    let mut text = String::with_capacity(inner.len());
    unescape_into(inner, &mut text).map(|()| text)
}

/// [`unescape`] appending to `text`; on `None`, `text` holds part of the decoded string.
pub(crate) fn unescape_into(inner: &str, text: &mut String) -> Option<()> {
    let mut rest = inner;
    while let Some(at) = rest.bytes().position(|b| b == b'\\') {
        text.push_str(&rest[..at]);
        let (decoded, length) = match rest.as_bytes().get(at + 1)? {
            b'"' => ('"', 2),
            b'\\' => ('\\', 2),
            b'/' => ('/', 2),
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let high = hex4(rest.get(at + 2..at + 6)?)?;
                if (0xD800..0xDC00).contains(&high) {
                    // A surrogate pair: the low half must follow as another escape.
                    let low = rest.get(at + 6..at + 12)?.strip_prefix("\\u").and_then(hex4)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    (char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?, 12)
                } else {
                    (char::from_u32(high)?, 6)
                }
            }
            _ => return None,
        };
        text.push(decoded);
        rest = &rest[at + length..];
    }
    text.push_str(rest);
    Some(())
}

/// Four hex digits.
fn hex4(digits: &str) -> Option<u32> {
    let valid = digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| u32::from_str_radix(digits, 16).ok()).flatten()
}

/// An `int64` or `timestamp_ms`: a JSON integer or a string holding one. `None` is null.
#[inline(always)]
pub(crate) fn read_i64(raw: &str, token: Token) -> Result<Option<i64>, Mismatch> {
    if let Token::Integer(n) = token {
        return Ok(Some(n));
    }
    match Json::of(raw, token)? {
        Json::Null => Ok(None),
        Json::Number(text) => number::integer(text).map(Some),
        Json::String(text) => number::integer(&text).map(Some),
        Json::Bool(_) | Json::Composite => Err(Mismatch::Type),
    }
}

/// An `int32`: as [`read_i64`], within the range of i32.
#[inline(always)]
pub(crate) fn read_i32(raw: &str, token: Token) -> Result<Option<i32>, Mismatch> {
    read_i64(raw, token)?.map(|v| i32::try_from(v).map_err(|_| Mismatch::Range)).transpose()
}

/// A `timestamp_s`: epoch seconds as [`read_i64`], returned as epoch milliseconds.
pub(crate) fn read_seconds_as_ms(raw: &str, token: Token) -> Result<Option<i64>, Mismatch> {
    read_i64(raw, token)?.map(|s| s.checked_mul(1000).ok_or(Mismatch::Range)).transpose()
}

/// A `date`: a `yyyy-MM-dd` string, as days since 1970-01-01.
pub(crate) fn read_date(raw: &str, token: Token) -> Result<Option<i32>, Mismatch> {
    let text = match Json::of(raw, token)? {
        Json::Null => return Ok(None),
        Json::String(text) => text,
        Json::Bool(_) | Json::Number(_) | Json::Composite => return Err(Mismatch::Type),
    };
    let date =
        chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| Mismatch::Type)?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
    i32::try_from((date - epoch).num_days()).map(Some).map_err(|_| Mismatch::Range)
}

/// Below this, an epoch number of a datetime is read as seconds: as milliseconds it would be
/// an instant before March 1973, which no record of these interfaces carries.
const SMALLEST_EPOCH_MS: i64 = 100_000_000_000;

/// A `datetime_utc` or `datetime_local`: a `yyyy-MM-dd HH:mm:ss` string (a `T` instead of
/// the space and a fraction of a second are accepted) read at `offset_secs` east of UTC, or
/// an epoch number as [`read_i64`] (an interface whose time type the reference leaves open
/// may send either): milliseconds, or seconds when below [`SMALLEST_EPOCH_MS`] (the
/// Private Number events' "UNIX timestamp"). An empty string is a time not set (null).
/// Returned as epoch milliseconds.
pub(crate) fn read_datetime(
    raw: &str,
    offset_secs: i32,
    token: Token,
) -> Result<Option<i64>, Mismatch> {
    let text = match Json::of(raw, token)? {
        Json::Null => return Ok(None),
        Json::String(text) if text.trim().is_empty() => return Ok(None),
        Json::String(text) if !text.bytes().all(|b| b.is_ascii_digit()) => text,
        _ => {
            return read_i64(raw, token)?
                .map(|n| match n.abs() < SMALLEST_EPOCH_MS {
                    true => n.checked_mul(1000).ok_or(Mismatch::Range),
                    false => Ok(n),
                })
                .transpose()
        }
    };
    let text = text.trim();
    let local = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
        .ok_or(Mismatch::Type)?;
    let utc_ms = local.and_utc().timestamp_millis();
    utc_ms.checked_sub(i64::from(offset_secs) * 1000).map(Some).ok_or(Mismatch::Range)
}

/// A `float64`: a JSON number or a numeric string.
pub(crate) fn read_f64(raw: &str, token: Token) -> Result<Option<f64>, Mismatch> {
    match Json::of(raw, token)? {
        Json::Null => Ok(None),
        Json::Number(text) => number::float(text).map(Some),
        Json::String(text) => number::float(&text).map(Some),
        Json::Bool(_) | Json::Composite => Err(Mismatch::Type),
    }
}

/// A `boolean`: `true`/`false`, `0`/`1`, or those four as strings.
pub(crate) fn read_bool(raw: &str, token: Token) -> Result<Option<bool>, Mismatch> {
    let text = match Json::of(raw, token)? {
        Json::Null => return Ok(None),
        Json::Bool(value) => return Ok(Some(value)),
        Json::Number(text) => Cow::Borrowed(text),
        Json::String(text) => text,
        Json::Composite => return Err(Mismatch::Type),
    };
    match text.as_ref() {
        "true" | "1" => Ok(Some(true)),
        "false" | "0" => Ok(Some(false)),
        _ => Err(Mismatch::Type),
    }
}

/// A `utf8`: a string as decoded, a number as its literal digits, a bool as `true`/`false`.
fn read_text(raw: &str, token: Token) -> Result<Option<Cow<'_, str>>, Mismatch> {
    match Json::of(raw, token)? {
        Json::Null => Ok(None),
        Json::String(text) => Ok(Some(text)),
        Json::Number(text) => Ok(Some(Cow::Borrowed(text))),
        Json::Bool(value) => Ok(Some(Cow::Borrowed(if value { "true" } else { "false" }))),
        Json::Composite => Err(Mismatch::Type),
    }
}

/// A `utf8` as [`read_text`], appended to `text`; `false` when it is null. A string's
/// escapes are decoded straight into `text`, without a string of their own.
#[inline(always)]
pub(crate) fn read_text_into(raw: &str, token: Token, text: &mut String) -> Result<bool, Mismatch> {
    match token {
        Token::String { escaped: false } => text.push_str(string_inside(raw)?),
        Token::String { escaped: true } => {
            unescape_into(string_inside(raw)?, text).ok_or(Mismatch::Text)?
        }
        _ => {
            let value = read_text(raw, token)?;
            text.push_str(value.as_deref().unwrap_or_default());
            return Ok(value.is_some());
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_scan;

    /// What the scan of `raw` tells of it (nothing when `raw` is not JSON).
    fn scanned(raw: &str) -> Token {
        json_scan::token(raw.as_bytes(), 0, 0).map_or(Token::Other, |(_, token)| token)
    }

    /// `reader` on `raw` with the token of its scan, checked to read the same without it
    /// (`Token::Other`: the reader looks at the text itself).
    fn read<T: PartialEq + std::fmt::Debug>(reader: impl Fn(&str, Token) -> T, raw: &str) -> T {
        let with_token = reader(raw, scanned(raw));
        assert_eq!(with_token, reader(raw, Token::Other), "{raw}");
        with_token
    }

    /// The text [`read_text_into`] appends for `raw` (`None` for null), checked to be the
    /// same without the scan's token and the same as [`read_text`] reads.
    fn as_text(raw: &str) -> Result<Option<String>, Mismatch> {
        const BEFORE: &str = "kept ";
        let into = |token| {
            let mut out = String::from(BEFORE);
            let present = read_text_into(raw, token, &mut out)?;
            assert!(out.starts_with(BEFORE), "{raw}: appended, not replaced");
            Ok(present.then(|| out[BEFORE.len()..].to_string()))
        };
        let appended = into(scanned(raw));
        assert_eq!(appended, into(Token::Other), "{raw}");
        let read = read_text(raw, scanned(raw));
        assert_eq!(read, read_text(raw, Token::Other), "{raw}");
        assert_eq!(appended, read.map(|t| t.map(Cow::into_owned)), "{raw}");
        appended
    }

    proptest::proptest! {
        /// Any text written as a JSON string, plainly or with every character as a `\u`
        /// escape (surrogate pairs beyond the BMP), reads back as the same text.
        #[test]
        fn escaped_strings_decode_to_their_text(text in "\\PC*") {
            let plain = serde_json::to_string(&text).unwrap();
            proptest::prop_assert_eq!(as_text(&plain).unwrap().unwrap(), text.as_str());
            let mut escaped = String::from('"');
            for unit in text.encode_utf16() {
                escaped.push_str(&format!("\\u{unit:04x}"));
            }
            escaped.push('"');
            proptest::prop_assert_eq!(as_text(&escaped).unwrap().unwrap(), text.as_str());
        }
    }

    /// Dates are `yyyy-MM-dd` strings; datetimes are strings of the zone given or epoch ms.
    #[test]
    fn dates_and_datetimes() {
        assert_eq!(read(read_date, "\"1970-01-02\""), Ok(Some(1)));
        assert_eq!(read(read_date, "\"2025-01-31\""), Ok(Some(20119)));
        assert_eq!(read(read_date, "null"), Ok(None));
        assert_eq!(read(read_date, "\"2025-02-30\""), Err(Mismatch::Type));
        assert_eq!(read(read_date, "20250131"), Err(Mismatch::Type));
        let utc = read(|r, t| read_datetime(r, 0, t), "\"2025-01-31 16:00:00\"");
        assert_eq!(utc, Ok(Some(1_738_339_200_000)));
        // 2025-02-01 00:00:00 at +08:00 is the same instant.
        assert_eq!(read(|r, t| read_datetime(r, 8 * 3600, t), "\"2025-02-01 00:00:00\""), utc);
        assert_eq!(
            read(|r, t| read_datetime(r, 8 * 3600, t), "\"2025-02-01T00:00:00.250\""),
            Ok(Some(1_738_339_200_250))
        );
        assert_eq!(read(|r, t| read_datetime(r, 8 * 3600, t), "1738339200000"), utc);
        assert_eq!(read(|r, t| read_datetime(r, 0, t), "\"1738339200000\""), utc);
        assert_eq!(read(|r, t| read_datetime(r, 0, t), "\"31/01/2025\""), Err(Mismatch::Type));
        // Epoch seconds (a "UNIX timestamp") and an empty string (a time not set).
        assert_eq!(read(|r, t| read_datetime(r, 0, t), "1738339200"), utc);
        assert_eq!(read(|r, t| read_datetime(r, 8 * 3600, t), "\"1738339200\""), utc);
        assert_eq!(read(|r, t| read_datetime(r, 0, t), "\"\""), Ok(None));
        assert_eq!(read(|r, t| read_datetime(r, 0, t), "\" \""), Ok(None));
        assert_eq!(read(|r, t| read_datetime(r, 0, t), "true"), Err(Mismatch::Type));
    }

    /// Integers come from JSON numbers or strings; other JSON types are type mismatches.
    #[test]
    fn integers_from_numbers_and_strings() {
        assert_eq!(read(read_i64, "953730645354352640"), Ok(Some(953_730_645_354_352_640)));
        assert_eq!(read(read_i64, "\"953730645354352640\""), Ok(Some(953_730_645_354_352_640)));
        assert_eq!(read(read_i64, "\"\\u0034\\u0032\""), Ok(Some(42)));
        assert_eq!(read(read_i64, "null"), Ok(None));
        for raw in ["true", "false", "{}", "[1]", "\"\"", "\"12 \"", "\"abc\""] {
            assert_eq!(read(read_i64, raw), Err(Mismatch::Type), "{raw}");
        }
        assert_eq!(read(read_i64, "1.5"), Err(Mismatch::Fraction));
    }

    /// int32 refuses values beyond i32; seconds become milliseconds, checked.
    #[test]
    fn narrow_and_scaled_integers() {
        assert_eq!(read(read_i32, "2147483647"), Ok(Some(i32::MAX)));
        assert_eq!(read(read_i32, "2147483648"), Err(Mismatch::Range));
        assert_eq!(read(read_i32, "\"-7\""), Ok(Some(-7)));
        assert_eq!(read(read_seconds_as_ms, "1631241600"), Ok(Some(1_631_241_600_000)));
        assert_eq!(read(read_seconds_as_ms, "9223372036854776"), Err(Mismatch::Range));
        assert_eq!(read(read_seconds_as_ms, "null"), Ok(None));
    }

    /// Floats come from numbers and numeric strings, never from bools or composites.
    #[test]
    fn floats_from_numbers_and_strings() {
        assert_eq!(read(read_f64, "0.1"), Ok(Some(0.1)));
        assert_eq!(read(read_f64, "\"-3.25\""), Ok(Some(-3.25)));
        assert_eq!(read(read_f64, "7"), Ok(Some(7.0)));
        assert_eq!(read(read_f64, "\"NaN\""), Err(Mismatch::NotFinite));
        assert_eq!(read(read_f64, "true"), Err(Mismatch::Type));
        assert_eq!(read(read_f64, "[]"), Err(Mismatch::Type));
    }

    /// Booleans accept exactly true/false/0/1 and their strings.
    #[test]
    fn booleans() {
        for (raw, want) in [("true", true), ("0", false), ("1", true), ("\"false\"", false)] {
            assert_eq!(read(read_bool, raw), Ok(Some(want)), "{raw}");
        }
        for raw in ["2", "1.0", "\"yes\"", "\"TRUE\"", "{}"] {
            assert_eq!(read(read_bool, raw), Err(Mismatch::Type), "{raw}");
        }
        assert_eq!(read(read_bool, "null"), Ok(None));
    }

    /// Text keeps strings exactly (escapes decoded), numbers as literals, bools as words.
    #[test]
    fn text_is_kept_exactly() {
        assert_eq!(as_text("\"0086138\"").unwrap().unwrap(), "0086138");
        assert_eq!(as_text(r#""Y:\\268\\0\\x.V3""#).unwrap().unwrap(), r"Y:\268\0\x.V3");
        assert_eq!(as_text("\"中文\\n\\u00e9\"").unwrap().unwrap(), "中文\né");
        assert_eq!(as_text("13800138000").unwrap().unwrap(), "13800138000");
        assert_eq!(as_text("1.50e3").unwrap().unwrap(), "1.50e3");
        assert_eq!(as_text("false").unwrap().unwrap(), "false");
        let plain = "\"plain\"";
        assert!(matches!(read_text(plain, scanned(plain)), Ok(Some(Cow::Borrowed("plain")))));
        assert_eq!(as_text("{\"a\":1}"), Err(Mismatch::Type));
        assert_eq!(as_text("\"\\ud800\""), Err(Mismatch::Text));
        assert_eq!(as_text("\"\\udc00\""), Err(Mismatch::Text));
        assert_eq!(as_text("\"\\ud800\\u0041\""), Err(Mismatch::Text));
        assert_eq!(as_text("\"\\x\""), Err(Mismatch::Text));
        assert_eq!(
            as_text(r#""\ud83d\ude00 \" \/ \t\b\f\r""#).unwrap().unwrap(),
            "😀 \" / \t\u{8}\u{c}\r"
        );
    }
}
