//! Readers of the JSON request fields of the C2-signed interfaces, with errors that name
//! the field.

use serde_json::{Map, Value};

/// The fields of a request body.
pub(crate) type Fields = Map<String, Value>;

/// Why a request field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParamError {
    /// The body is not a JSON object.
    #[error("the request body is not a JSON object")]
    NotAnObject,
    /// A mandatory field is absent, null or empty.
    #[error("{0} is empty")]
    Missing(&'static str),
    /// A field is present but not of its form.
    #[error("{field} {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong, e.g. "must be an integer".
        problem: String,
    },
}

impl ParamError {
    pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid { field, problem: problem.into() }
    }
}

/// The body as fields; an empty body has none.
pub(crate) fn object(body: &[u8]) -> Result<Fields, ParamError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Fields::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(ParamError::NotAnObject),
    }
}

/// An optional integer: a JSON number without a fraction; `null` is absent.
pub(crate) fn int(fields: &Fields, field: &'static str) -> Result<Option<i64>, ParamError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            value.as_i64().map(Some).ok_or_else(|| ParamError::invalid(field, "must be an integer"))
        }
    }
}

/// A mandatory integer in `range`.
pub(crate) fn int_in(
    fields: &Fields,
    field: &'static str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ParamError> {
    let value = int(fields, field)?.ok_or(ParamError::Missing(field))?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ParamError::invalid(
            field,
            format!("must be {} to {}, got {value}", range.start(), range.end()),
        ))
    }
}

/// An optional string; `null` and "" are absent.
pub(crate) fn text<'a>(
    fields: &'a Fields,
    field: &'static str,
) -> Result<Option<&'a str>, ParamError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
        Some(_) => Err(ParamError::invalid(field, "must be a string")),
    }
}

/// A mandatory, non-empty array of at most `max` items, each read by `item`.
pub(crate) fn array<T>(
    fields: &Fields,
    field: &'static str,
    max: usize,
    item: impl Fn(&Value) -> Option<T>,
    expected: &str,
) -> Result<Vec<T>, ParamError> {
    let items = match fields.get(field) {
        None | Some(Value::Null) => return Err(ParamError::Missing(field)),
        Some(Value::Array(items)) if items.is_empty() => return Err(ParamError::Missing(field)),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ParamError::invalid(field, format!("must be an array of {expected}")))
        }
    };
    if items.len() > max {
        return Err(ParamError::invalid(
            field,
            format!("has {} entries; at most {max} are allowed", items.len()),
        ));
    }
    items
        .iter()
        .map(|v| {
            item(v).ok_or_else(|| {
                ParamError::invalid(field, format!("must be an array of {expected}"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Fields {
        value.as_object().unwrap().clone()
    }

    /// Each reader accepts its form and names the field otherwise.
    #[test]
    fn readers_name_the_field() {
        let f = fields(json!({"n": 5, "s": "x", "e": "", "a": [1, 2, 3], "bad": 1.5}));
        assert_eq!(int(&f, "n"), Ok(Some(5)));
        assert_eq!(int(&f, "none"), Ok(None));
        assert!(matches!(int(&f, "bad"), Err(ParamError::Invalid { field: "bad", .. })));
        assert_eq!(int_in(&f, "n", 1..=5), Ok(5));
        assert!(int_in(&f, "n", 6..=9).unwrap_err().to_string().contains("6 to 9"));
        assert_eq!(int_in(&f, "zz", 1..=5), Err(ParamError::Missing("zz")));
        assert_eq!((text(&f, "s"), text(&f, "e")), (Ok(Some("x")), Ok(None)));
        assert_eq!(array(&f, "a", 3, Value::as_i64, "integers"), Ok(vec![1, 2, 3]));
        assert!(array(&f, "a", 2, Value::as_i64, "integers")
            .unwrap_err()
            .to_string()
            .contains("at most 2"));
        assert!(array(&f, "a", 3, |v| v.as_str().map(String::from), "strings").is_err());
        assert_eq!(object(b" "), Ok(Fields::new()));
        assert_eq!(object(b"[1]"), Err(ParamError::NotAnObject));
    }
}
