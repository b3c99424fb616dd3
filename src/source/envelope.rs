//! Reading a response page: the API's error code (when the family sends one), the records
//! array at its dotted path, and the total row count — without parsing the records
//! themselves, which stay raw JSON for the normalizer.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::error::SourceError;
use crate::catalog::pipeline::EnvelopeSpec;

/// One page of a response, its records still raw JSON borrowed from the body.
#[derive(Debug)]
pub struct Page<'a> {
    /// The records, in API order.
    pub records: Vec<&'a RawValue>,
    /// The total row count the API reported, when the pipeline reads one.
    pub total: Option<u64>,
}

type Object<'a> = BTreeMap<String, &'a RawValue>;

fn object<'a>(raw: &'a str, url: &str, path: &str) -> Result<Object<'a>, SourceError> {
    serde_json::from_str(raw).map_err(|_| SourceError::Shape {
        url: url.to_string(),
        path: path.to_string(),
        problem: format!("expected a JSON object, found {}", kind(raw)),
    })
}

fn kind(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(_) => "a number",
        None => "nothing",
    }
}

/// Finds the value at a dotted path (`result.data`) below the already parsed top-level
/// object; `None` when a segment is absent. Only the objects on the path are parsed again.
fn lookup<'a>(
    top: &Object<'a>,
    dotted: &str,
    url: &str,
) -> Result<Option<&'a RawValue>, SourceError> {
    let mut segments = dotted.split('.');
    let first = segments.next().unwrap_or_default();
    let Some(mut current) = top.get(first).copied() else { return Ok(None) };
    let mut walked = first.to_string();
    for segment in segments {
        let obj = object(current.get(), url, &walked)?;
        walked.push('.');
        walked.push_str(segment);
        match obj.get(segment) {
            Some(v) => current = v,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// Text of a scalar code or message: strings unquoted, numbers as written.
fn scalar_text(raw: &RawValue) -> String {
    serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_string())
}

/// What the result code of a body says.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Success, or no code: read the body.
    Data,
    /// A code that means "no data".
    Empty,
}

/// Reads the result code of the top-level object: an error code that is neither a success
/// nor a "no data" code fails with the API's message.
fn check_envelope(
    top: &Object<'_>,
    spec: &EnvelopeSpec,
    url: &str,
) -> Result<Verdict, SourceError> {
    for field in &spec.code_fields {
        let Some(raw) = top.get(field) else { continue };
        if raw.get() == "null" {
            continue;
        }
        let code = scalar_text(raw);
        if spec.empty_codes.contains(&code) {
            return Ok(Verdict::Empty);
        }
        if !spec.success_codes.contains(&code) {
            let message = spec
                .message_fields
                .iter()
                .find_map(|m| top.get(m).map(|v| scalar_text(v)))
                .unwrap_or_else(|| "(no message)".into());
            return Err(SourceError::Api {
                url: url.to_string(),
                field: field.clone(),
                code,
                message,
            });
        }
    }
    Ok(Verdict::Data)
}

/// Reads a count that may be a number or a string of digits.
fn count(raw: &RawValue, url: &str, path: &str) -> Result<u64, SourceError> {
    let text = scalar_text(raw);
    text.trim().parse::<u64>().map_err(|_| SourceError::Shape {
        url: url.to_string(),
        path: path.to_string(),
        problem: format!("expected a non-negative whole number, found {}", raw.get()),
    })
}

/// Parses a page: checks the envelope, then reads the records at `records_path` and the
/// total at `total_path` (when given). A missing or `null` records array is an empty page
/// only when the API also says the total is 0; otherwise it is a shape error. A "no data"
/// code of the envelope is an empty page with a total of 0.
pub fn parse_page<'a>(
    body: &'a str,
    envelope: &EnvelopeSpec,
    records_path: &str,
    total_path: Option<&str>,
    url: &str,
) -> Result<Page<'a>, SourceError> {
    let top = object(body, url, "$")?;
    if check_envelope(&top, envelope, url)? == Verdict::Empty {
        return Ok(Page { records: Vec::new(), total: total_path.map(|_| 0) });
    }
    let total = match total_path {
        Some(path) => match lookup(&top, path, url)? {
            Some(raw) if raw.get() != "null" => Some(count(raw, url, path)?),
            _ => {
                return Err(SourceError::Shape {
                    url: url.to_string(),
                    path: path.to_string(),
                    problem: "the total row count is missing".into(),
                })
            }
        },
        None => None,
    };
    let records = match lookup(&top, records_path, url)? {
        Some(raw) if raw.get() != "null" => serde_json::from_str::<Vec<&RawValue>>(raw.get())
            .map_err(|_| SourceError::Shape {
                url: url.to_string(),
                path: records_path.to_string(),
                problem: format!("expected an array of records, found {}", kind(raw.get())),
            })?,
        _ if total == Some(0) => Vec::new(),
        _ => {
            return Err(SourceError::Shape {
                url: url.to_string(),
                path: records_path.to_string(),
                problem: "the records array is missing".into(),
            })
        }
    };
    Ok(Page { records, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oifde() -> EnvelopeSpec {
        EnvelopeSpec {
            code_fields: vec!["errorCode".into()],
            success_codes: vec!["0".into()],
            message_fields: vec!["errorMsg".into()],
            empty_codes: Vec::new(),
        }
    }

    fn cc_management() -> EnvelopeSpec {
        EnvelopeSpec {
            code_fields: vec!["retCode".into()],
            success_codes: vec!["0".into()],
            message_fields: vec!["retMsg".into()],
            empty_codes: vec!["1".into()],
        }
    }

    /// A "no data" code is an empty page with a total of 0, even without a result object;
    /// any other code than success or "no data" is an error carrying the API's message.
    #[test]
    fn no_data_codes_are_empty_pages_and_other_codes_errors() {
        let env = cc_management();
        fn page<'a>(body: &'a str, env: &EnvelopeSpec) -> Result<Page<'a>, SourceError> {
            parse_page(body, env, "result.callInfo", Some("result.total"), "u")
        }
        let empty = page(r#"{"retCode":"1","retMsg":"no data"}"#, &env).unwrap();
        assert_eq!((empty.records.len(), empty.total), (0, Some(0)));
        let empty =
            page(r#"{"retCode":1,"result":{"total":5,"callInfo":[{"a":1}]}}"#, &env).unwrap();
        assert_eq!((empty.records.len(), empty.total), (0, Some(0)));
        let ok =
            page(r#"{"retCode":"0","result":{"total":"1","callInfo":[{"a":1}]}}"#, &env).unwrap();
        assert_eq!((ok.records.len(), ok.total), (1, Some(1)));
        for (code, msg) in [("2", "startTime format error"), ("4", "limit or offset invalid")] {
            let body = format!(r#"{{"retCode":"{code}","retMsg":"{msg}"}}"#);
            match page(&body, &env) {
                Err(e @ SourceError::Api { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains(&format!("retCode = {code}")) && text.contains(msg));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        let err = page(r#"{"retCode":"0","result":{"callInfo":[]}}"#, &env).unwrap_err();
        assert!(matches!(err, SourceError::Shape { ref path, .. } if path == "result.total"));
        let err =
            page(r#"{"retCode":"0","result":{"total":1,"callInfo":{"a":1}}}"#, &env).unwrap_err();
        assert!(matches!(err, SourceError::Shape { ref path, .. } if path == "result.callInfo"));
        let err = page(r#"{"retCode":"0","result":[]}"#, &env).unwrap_err();
        assert!(matches!(err, SourceError::Shape { ref path, .. } if path == "result"), "{err}");
    }

    /// Records stay raw and in order; the total may be a number or a string.
    #[test]
    fn reads_records_and_total() {
        let body =
            r#"{"rbtRecognitions":[{"a":1},{"a":953730645354352640}],"total":"2","pageNum":1}"#;
        let p = parse_page(body, &oifde(), "rbtRecognitions", Some("total"), "u").unwrap();
        assert_eq!(p.total, Some(2));
        assert_eq!(p.records[1].get(), r#"{"a":953730645354352640}"#);
        let nested = r#"{"result":{"data":[{"x":1}],"total":7}}"#;
        let p = parse_page(nested, &oifde(), "result.data", Some("result.total"), "u").unwrap();
        assert_eq!((p.records.len(), p.total), (1, Some(7)));
    }

    /// An error code is an error with the API's message, never an empty page.
    #[test]
    fn error_codes_are_errors() {
        let body = r#"{"errorCode":"401","errorMsg":"authToken is invalid"}"#;
        let err = parse_page(body, &oifde(), "rbtRecognitions", Some("total"), "u").unwrap_err();
        assert!(err.to_string().contains("authToken is invalid"), "{err}");
        let ok = r#"{"errorCode":0,"rbtRecognitions":[],"total":0}"#;
        assert!(parse_page(ok, &oifde(), "rbtRecognitions", Some("total"), "u").is_ok());
    }

    /// Wrong shapes name the offending path.
    #[test]
    fn wrong_shapes_name_the_path() {
        let cases = [
            (r#"{"rbtRecognitions":{},"total":1}"#, "rbtRecognitions"),
            (r#"{"rbtRecognitions":[]}"#, "total"),
            (r#"{"total":3}"#, "rbtRecognitions"),
            (r#"{"rbtRecognitions":[],"total":-1}"#, "total"),
            (r#"[1,2]"#, "$"),
        ];
        for (body, path) in cases {
            match parse_page(body, &oifde(), "rbtRecognitions", Some("total"), "u") {
                Err(SourceError::Shape { path: p, .. }) => assert_eq!(p, path, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let empty = r#"{"rbtRecognitions":null,"total":0}"#;
        assert!(parse_page(empty, &oifde(), "rbtRecognitions", Some("total"), "u")
            .unwrap()
            .records
            .is_empty());
    }
}
