//! Why a record cannot become a row, in sentences that name the field and the value seen.

use std::fmt;

use chrono::{DateTime, SecondsFormat};

use super::value::Mismatch;
use crate::catalog::schema::FieldKind;

/// Most characters of a value quoted in a reason; a longer value is cut and ends with `…`.
const SEEN_MAX_CHARS: usize = 80;

/// Why a record could not become a row: a sentence naming the field and the value seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectReason(pub String);

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Reject> for RejectReason {
    fn from(reject: Reject) -> Self {
        Self(reject.to_string())
    }
}

/// The ways a record fails to become a row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Reject {
    /// The record is a JSON value other than an object.
    #[error("the record is not a JSON object but {seen}")]
    NotAnObject { seen: String },
    /// A non-nullable field is absent.
    #[error("field '{field}' is required but missing")]
    Missing { field: String },
    /// A non-nullable field is `null`.
    #[error("field '{field}' is required but is null")]
    Null { field: String },
    /// A key appears more than once in the record.
    #[error("field '{field}' appears more than once in the record")]
    Duplicate { field: String },
    /// A value does not fit its column.
    #[error("field '{field}' expects {} but got {seen}{}", kind_name(*kind), mismatch.clause())]
    Value { field: String, kind: FieldKind, seen: String, mismatch: Mismatch },
    /// The event time lies outside the window being synced.
    #[error("field '{field}' is {value}, outside the window [{begin}, {end}]")]
    OutsideWindow { field: String, value: String, begin: String, end: String },
    /// The event time is null, so the record belongs to no window.
    #[error(
        "field '{field}' is null, so the record cannot be placed in the window [{begin}, {end}]"
    )]
    NoEventTime { field: String, begin: String, end: String },
    /// The event window names a field the schema cannot check.
    #[error("the event window names field '{field}', which dataset {dataset} {problem}")]
    WindowField { field: String, dataset: String, problem: &'static str },
    /// The JSON decoder gave up on the record.
    #[error("the record could not be decoded: {detail}")]
    Undecodable { detail: String },
}

/// The schema-file name of a field kind.
fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Int32 => "int32",
        FieldKind::Int64 => "int64",
        FieldKind::Float64 => "float64",
        FieldKind::Utf8 => "utf8",
        FieldKind::Boolean => "boolean",
        FieldKind::TimestampMs => "timestamp_ms",
        FieldKind::TimestampS => "timestamp_s",
        FieldKind::Date => "date (yyyy-MM-dd)",
        FieldKind::DatetimeUtc => "datetime_utc (yyyy-MM-dd HH:mm:ss, UTC)",
        FieldKind::DatetimeLocal => "datetime_local (yyyy-MM-dd HH:mm:ss)",
    }
}

/// A raw JSON value as quoted in a reason: verbatim, cut after [`SEEN_MAX_CHARS`] characters.
pub(crate) fn seen(raw: &str) -> String {
    match raw.char_indices().nth(SEEN_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &raw[..cut]),
        None => raw.to_string(),
    }
}

/// Epoch milliseconds as an ISO-8601 instant in UTC (`2021-09-10T02:40:00.000Z`).
pub(crate) fn instant(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value reason names the field, the expected type, the value seen and what is wrong.
    #[test]
    fn value_reasons_name_field_type_and_value() {
        let reject = Reject::Value {
            field: "agentId".into(),
            kind: FieldKind::Int32,
            seen: seen("3000000000"),
            mismatch: Mismatch::Range,
        };
        assert_eq!(
            RejectReason::from(reject).to_string(),
            "field 'agentId' expects int32 but got 3000000000, which is out of range"
        );
    }

    /// Long values are cut on a character boundary, short ones are kept whole.
    #[test]
    fn seen_cuts_long_values_on_char_boundaries() {
        let long = "中".repeat(200);
        let quoted = seen(&long);
        assert_eq!(quoted.chars().count(), SEEN_MAX_CHARS + 1);
        assert!(quoted.ends_with('…'));
        assert_eq!(seen("\"0086\""), "\"0086\"");
    }

    /// Instants print as ISO-8601 UTC with milliseconds; those beyond chrono's range as ms.
    #[test]
    fn instants_are_iso_utc() {
        assert_eq!(instant(1_631_241_600_000), "2021-09-10T02:40:00.000Z");
        assert_eq!(instant(i64::MAX), format!("{} ms after the epoch", i64::MAX));
    }
}
