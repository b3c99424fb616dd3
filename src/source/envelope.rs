//! Reading a response page: the API's error code (when the family sends one), the records
//! array at its path, and the total row count — without parsing the records themselves,
//! which stay raw JSON for the normalizer.
//!
//! Nested records (`data[].calls[]`) are flattened: one record per innermost element, with
//! the chosen fields of its enclosing objects copied in (the only records that are
//! rewritten; flat records stay borrowed from the body).
//!
//! Flat records in a top-level array can instead be taken in the pass that reads the page
//! ([`parse_page`] with a walk): the body is walked once, and the caller's [`RecordsWalk`]
//! walks the records array where the walk of the page meets it, so that no record is
//! scanned twice.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::error::SourceError;

use crate::catalog::pipeline::{EnvelopeSpec, RecordsPath, RecordsPaths};
use crate::json_scan::{self as scan, Malformed};

/// One page of a response, its records still raw JSON (borrowed from the body unless they
/// were flattened from nested arrays).
#[derive(Debug)]
pub struct Page<'a> {
    /// The records, in API order.
    pub records: Vec<Cow<'a, RawValue>>,
    /// For nested records, one identity per group of the page, in page order: the values of
    /// the parent fields the group carries, or its whole text when it carries none. Empty
    /// for flat records.
    pub groups: Vec<String>,
    /// The page's length in the unit the API pages by: records, or groups when nested.
    pub length: usize,
    /// The total row count the API reported, when the pipeline reads one.
    pub total: Option<u64>,
    /// Records taken by the page's [`RecordsWalk`] (they are not in `records`).
    pub walked: usize,
}

impl Page<'_> {
    /// Every record of the page: those walked and those in `records`.
    pub fn record_count(&self) -> usize {
        self.walked + self.records.len()
    }
}

/// Takes the records of a page in the pass that reads the page, instead of as raw values
/// read again afterwards (see [`parse_page`]).
pub trait RecordsWalk {
    /// Takes the records of the array whose `[` is at byte `at` of `body`; returns the
    /// position just past the array and its number of records, or `None` when the text is
    /// not JSON there (the page is then read as raw values, after
    /// [`abandon`](Self::abandon)).
    fn walk(&mut self, body: &str, at: usize) -> Option<(usize, usize)>;

    /// Forgets every record taken so far.
    fn abandon(&mut self);
}

type Object<'a> = BTreeMap<String, &'a RawValue>;

fn object<'a>(raw: &'a str, url: &str, path: &str) -> Result<Object<'a>, SourceError> {
    serde_json::from_str(raw).map_err(|_| SourceError::Shape {
        url: url.to_string(),
        path: path.to_string(),
        problem: format!("expected a JSON object, found {}", kind(raw)),
    })
}

/// The top-level object of a body, read in one pass: every field as raw JSON, except the
/// field of the outer records array (when it is a top-level field), whose elements are
/// read at once rather than skipped over and read again.
struct TopLevel<'a> {
    fields: Object<'a>,
    /// The records field, when it was asked for and is present.
    records: Option<RecordsField<'a>>,
}

/// The value of the records field.
enum RecordsField<'a> {
    Array(Vec<&'a RawValue>),
    /// Taken by a [`RecordsWalk`]: this many records.
    Walked(usize),
    Null,
    /// Not an array: what it is, for the error.
    Other(&'static str),
}

/// Reads `body` as a [`TopLevel`], the records at field `records_key` if given.
fn top_level<'a>(
    body: &'a str,
    records_key: Option<&str>,
    url: &str,
) -> Result<TopLevel<'a>, SourceError> {
    let mut json = serde_json::Deserializer::from_str(body);
    TopLevelSeed { records_key }
        .deserialize(&mut json)
        .and_then(|top| json.end().map(|()| top))
        .map_err(|_| SourceError::Shape {
            url: url.to_string(),
            path: "$".into(),
            problem: format!("expected a JSON object, found {}", kind(body)),
        })
}

/// Reads `body` as a [`TopLevel`] in one walk, `walk` taking the records array at field
/// `records_key`; `None` when the body is not an object of JSON, or its records field is
/// not one array (the page is then read by [`top_level`]).
fn walked_top_level<'a>(
    body: &'a str,
    records_key: &str,
    walk: &mut dyn RecordsWalk,
) -> Option<TopLevel<'a>> {
    let bytes = body.as_bytes();
    let (mut fields, mut records) = (Object::new(), None);
    let start = scan::whitespace(bytes, 0);
    if bytes.get(start) != Some(&b'{') {
        return None;
    }
    // Any way the walk goes wrong hands the page back, whatever went wrong.
    let end = scan::elements(bytes, start, |pos| {
        let handed_back = || Malformed { at: pos, expected: "a member this walk reads" };
        let (key_end, escaped) = scan::string(bytes, pos)?;
        let quoted = body.get(pos..key_end).ok_or_else(handed_back)?;
        let key: String = match escaped {
            true => serde_json::from_str(quoted).map_err(|_| handed_back())?,
            false => quoted[1..quoted.len() - 1].to_string(),
        };
        let value_at = scan::after_colon(bytes, key_end)?;
        if key != records_key {
            let end = scan::value(bytes, value_at, 1)?;
            let raw = body.get(value_at..end).ok_or_else(handed_back)?;
            fields.insert(key, serde_json::from_str(raw).map_err(|_| handed_back())?);
            return Ok(end);
        }
        if records.is_some() || bytes.get(value_at) != Some(&b'[') {
            return Err(handed_back());
        }
        let (end, count) = walk.walk(body, value_at).ok_or_else(handed_back)?;
        records = Some(RecordsField::Walked(count));
        Ok(end)
    })
    .ok()?;
    (scan::whitespace(bytes, end) == bytes.len()).then_some(TopLevel { fields, records })
}

struct TopLevelSeed<'k> {
    records_key: Option<&'k str>,
}

impl<'de> DeserializeSeed<'de> for TopLevelSeed<'_> {
    type Value = TopLevel<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevelSeed<'_> {
    type Value = TopLevel<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut fields, mut records) = (Object::new(), None);
        while let Some(key) = map.next_key::<String>()? {
            if Some(key.as_str()) == self.records_key {
                records = Some(map.next_value_seed(RecordsSeed)?);
            } else {
                fields.insert(key, map.next_value()?);
            }
        }
        Ok(TopLevel { fields, records })
    }
}

/// Reads the records field: the elements of an array as raw JSON, else what it is.
struct RecordsSeed;

impl<'de> DeserializeSeed<'de> for RecordsSeed {
    type Value = RecordsField<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed {
    type Value = RecordsField<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(record) = seq.next_element()? {
            records.push(record);
        }
        Ok(RecordsField::Array(records))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(RecordsField::Other("an object"))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(RecordsField::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RecordsField::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RecordsField::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RecordsField::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RecordsField::Other("a number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RecordsField::Other("a string"))
    }
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

/// Reads the array at `raw`, which was found at `path`.
fn array<'a>(raw: &'a RawValue, url: &str, path: &str) -> Result<Vec<&'a RawValue>, SourceError> {
    serde_json::from_str::<Vec<&RawValue>>(raw.get())
        .map_err(|_| not_an_array(url, path, kind(raw.get())))
}

/// The error for a records field at `path` that is `what` rather than an array.
fn not_an_array(url: &str, path: &str, what: &str) -> SourceError {
    SourceError::Shape {
        url: url.to_string(),
        path: path.to_string(),
        problem: format!("expected an array of records, found {what}"),
    }
}

/// A group's identity: the values of the parent fields it carries, else its whole text.
fn group_identity(group: &Object<'_>, raw: &RawValue, parent_fields: &[String]) -> String {
    let values: Vec<&str> =
        parent_fields.iter().filter_map(|f| group.get(f).map(|v| v.get())).collect();
    if values.is_empty() {
        raw.get().to_string()
    } else {
        values.join("\u{1f}")
    }
}

/// An element still to flatten: the element, the parent fields inherited by it, the path
/// walked to it, and its depth (1 for a group).
type Pending<'a, 'p> = (&'a RawValue, Vec<(&'p str, &'a RawValue)>, String, usize);

/// How [`flatten`] treats a missing inner array.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MissingArray {
    /// A shape error: the array is part of every group.
    Error,
    /// No records: the array is optional (the emotions of a channel without any).
    Empty,
}

/// Flattens the elements of `outer` (the groups at `levels[0]`) down to the innermost
/// records, copying `parent_fields` from every enclosing object (the nearest one wins, and a
/// field the record has itself is kept), then setting `forced` in every record over
/// anything it had.
fn flatten<'a, 'p>(
    outer: Vec<&'a RawValue>,
    levels: &[String],
    parent_fields: &'p [String],
    forced: &[(&'p str, &'a RawValue)],
    missing: MissingArray,
    url: &str,
) -> Result<(Vec<Cow<'a, RawValue>>, Vec<String>), SourceError> {
    let mut records = Vec::new();
    let mut groups = Vec::with_capacity(outer.len());
    // (element, inherited fields, path walked so far)
    let mut pending: Vec<Pending<'a, 'p>> = outer
        .into_iter()
        .enumerate()
        .map(|(i, g)| (g, Vec::new(), format!("{}[{i}]", levels[0]), 1))
        .collect();
    pending.reverse();
    while let Some((element, inherited, walked, depth)) = pending.pop() {
        let obj = object(element.get(), url, &walked)?;
        if depth == 1 {
            groups.push(group_identity(&obj, element, parent_fields));
        }
        if depth == levels.len() {
            let mut record: BTreeMap<&str, &RawValue> =
                obj.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            for (field, value) in inherited.iter().rev() {
                record.entry(field).or_insert(value);
            }
            record.extend(forced.iter().copied());
            records.push(Cow::Owned(rewrite(&record, url, &walked)?));
            continue;
        }
        let mut carried = inherited;
        for field in parent_fields {
            if let Some(value) = obj.get(field) {
                carried.push((field.as_str(), *value));
            }
        }
        let inner_path = format!("{walked}.{}", levels[depth]);
        let inner = match lookup(&obj, &levels[depth], url)? {
            Some(raw) if raw.get() != "null" => array(raw, url, &inner_path)?,
            _ if missing == MissingArray::Empty => Vec::new(),
            _ => {
                return Err(SourceError::Shape {
                    url: url.to_string(),
                    path: inner_path,
                    problem: "the nested records array is missing".into(),
                })
            }
        };
        for (i, child) in inner.into_iter().enumerate().rev() {
            pending.push((child, carried.clone(), format!("{inner_path}[{i}]"), depth + 1));
        }
    }
    Ok((records, groups))
}

/// A record written anew from its fields.
fn rewrite(
    fields: &BTreeMap<&str, &RawValue>,
    url: &str,
    path: &str,
) -> Result<Box<RawValue>, SourceError> {
    let problem = |e: serde_json::Error| SourceError::Shape {
        url: url.to_string(),
        path: path.to_string(),
        problem: format!("the record could not be rewritten: {e}"),
    };
    RawValue::from_string(serde_json::to_string(fields).map_err(problem)?).map_err(problem)
}

/// The text of a response body from `url`, which must be UTF-8. Checked with SIMD
/// instructions (`simdutf8`): every byte of every page passes through this check, four
/// times faster than the standard library's.
pub fn body_text<'b>(bytes: &'b [u8], url: &str) -> Result<&'b str, SourceError> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| SourceError::Shape {
        url: url.to_string(),
        path: "$".into(),
        problem: "the body is not UTF-8".into(),
    })
}

/// Parses a page: checks the envelope, then reads the records at `records` (flattening
/// nested records, with `parent_fields` copied in) and the total at `total_path` (when
/// given). A missing or `null` records array is an empty page only when the API also says
/// the total is 0; otherwise it is a shape error. A "no data" code of the envelope is an
/// empty page with a total of 0.
///
/// With a `walk`, flat records in a top-level array are taken by it in the pass that reads
/// the page (counted in [`Page::walked`]); other records, or every record when the body is
/// not JSON there, are read as raw values into [`Page::records`], after
/// [`RecordsWalk::abandon`].
pub fn parse_page<'a>(
    body: &'a str,
    envelope: &EnvelopeSpec,
    records: &RecordsPath,
    parent_fields: &[String],
    total_path: Option<&str>,
    url: &str,
    walk: Option<&mut dyn RecordsWalk>,
) -> Result<Page<'a>, SourceError> {
    let key = top_level_records_key(records);
    let top = match walk {
        Some(walk) => {
            let walkable = key.filter(|_| !records.is_nested());
            let walked = walkable.and_then(|key| walked_top_level(body, key, walk));
            let page =
                walked.map(|top| page_of(top, envelope, records, parent_fields, total_path, url));
            if !matches!(page, Some(Ok(Page { walked: 1.., .. }))) {
                // Not walked, an error of the API, "no data", or an empty array: nothing
                // walked is kept.
                walk.abandon();
            }
            if let Some(page) = page {
                return page;
            }
            top_level(body, key, url)?
        }
        None => top_level(body, key, url)?,
    };
    page_of(top, envelope, records, parent_fields, total_path, url)
}

/// The field of the outer records array when it is a top-level field (not a dotted path,
/// without alternatives): it is then read in the same pass as the top level.
fn top_level_records_key(records: &RecordsPath) -> Option<&str> {
    let single = records.outer_names().nth(1).is_none();
    Some(records.levels()[0].as_str()).filter(|key| single && !key.contains('.'))
}

/// The page of a read top-level object: its envelope checked, its total and its records.
fn page_of<'a>(
    top: TopLevel<'a>,
    envelope: &EnvelopeSpec,
    records: &RecordsPath,
    parent_fields: &[String],
    total_path: Option<&str>,
    url: &str,
) -> Result<Page<'a>, SourceError> {
    let levels = records.levels();
    let records_key = top_level_records_key(records);
    if check_envelope(&top.fields, envelope, url)? == Verdict::Empty {
        let total = total_path.map(|_| 0);
        return Ok(Page { records: Vec::new(), groups: Vec::new(), length: 0, total, walked: 0 });
    }
    let total = match total_path {
        Some(path) => match lookup(&top.fields, path, url)? {
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
    let found = match (records_key, top.records) {
        (Some(_), Some(RecordsField::Walked(walked))) => {
            let (records, groups) = (Vec::new(), Vec::new());
            return Ok(Page { records, groups, length: walked, total, walked });
        }
        (Some(_), Some(RecordsField::Array(outer))) => Some(outer),
        (Some(_), Some(RecordsField::Other(what))) => {
            return Err(not_an_array(url, &levels[0], what));
        }
        (Some(_), Some(RecordsField::Null) | None) => None,
        (None, _) => {
            // The first alternative that holds an array; another value under an earlier
            // name (a `resultDesc` that is a message) is passed over, and reported only
            // when no alternative holds an array.
            let mut found = None;
            let mut not_array = None;
            for name in records.outer_names() {
                let Some(raw) = lookup(&top.fields, name, url)?.filter(|r| r.get() != "null")
                else {
                    continue;
                };
                match array(raw, url, name) {
                    Ok(outer) => {
                        found = Some(outer);
                        break;
                    }
                    Err(e) => {
                        not_array.get_or_insert(e);
                    }
                }
            }
            match (found, not_array) {
                (None, Some(e)) => return Err(e),
                (found, _) => found,
            }
        }
    };
    let outer = match found {
        Some(outer) => outer,
        None if total == Some(0) => Vec::new(),
        None => {
            return Err(SourceError::Shape {
                url: url.to_string(),
                path: records.to_string(),
                problem: "the records array is missing".into(),
            })
        }
    };
    if !records.is_nested() {
        let length = outer.len();
        let records = outer.into_iter().map(Cow::Borrowed).collect();
        return Ok(Page { records, groups: Vec::new(), length, total, walked: 0 });
    }
    let (records, groups) = flatten(outer, levels, parent_fields, &[], MissingArray::Error, url)?;
    Ok(Page { length: groups.len(), records, groups, total, walked: 0 })
}

/// Reads the records of a response object (the detail of a fan-out request): checks the
/// envelope, then reads every array of `paths` inside the object, copying `parent_fields`
/// of the object into each record, then setting `request_fields` (what identified the
/// request: the parent's key) and, for labelled arrays, the array's label in
/// `label_field`, over anything the record had. A single array must be present (a missing
/// one is a shape error, never an empty detail); a missing or `null` labelled array holds
/// no records (a detail omits the emotions of a channel without any).
pub fn object_records(
    body: &str,
    envelope: &EnvelopeSpec,
    paths: &RecordsPaths,
    parent_fields: &[String],
    request_fields: &Map<String, Value>,
    label_field: Option<&str>,
    url: &str,
) -> Result<Vec<Box<RawValue>>, SourceError> {
    let top = object(body, url, "$")?;
    if check_envelope(&top, envelope, url)? == Verdict::Empty {
        return Ok(Vec::new());
    }
    let shape =
        |problem: String| SourceError::Shape { url: url.to_string(), path: "$".into(), problem };
    let root: &RawValue =
        serde_json::from_str(body).map_err(|e| shape(format!("the body is not JSON: {e}")))?;
    let raw = |value: &Value| {
        RawValue::from_string(value.to_string())
            .map_err(|e| shape(format!("a request field could not be written: {e}")))
    };
    let request: Vec<(&str, Box<RawValue>)> =
        request_fields.iter().map(|(k, v)| Ok((k.as_str(), raw(v)?))).collect::<Result<_, _>>()?;
    let missing = match paths {
        RecordsPaths::One(_) => MissingArray::Error,
        RecordsPaths::Labelled(_) => MissingArray::Empty,
    };
    let mut records = Vec::new();
    for (label, path) in paths.arrays() {
        let levels: Vec<String> =
            std::iter::once("$".to_string()).chain(path.levels().iter().cloned()).collect();
        let label = label.map(|l| raw(&Value::from(l))).transpose()?;
        let mut forced: Vec<(&str, &RawValue)> =
            request.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        if let (Some(field), Some(label)) = (label_field, &label) {
            forced.push((field, label.as_ref()));
        }
        let (found, _) = flatten(vec![root], &levels, parent_fields, &forced, missing, url)?;
        records.extend(found.into_iter().map(Cow::into_owned));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A body is text exactly when the standard library reads it as UTF-8, whatever
        /// its bytes: cut sequences, overlong forms and encoded surrogates are refused.
        #[test]
        fn bodies_are_text_as_the_standard_library_reads_them(
            mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            text in "\\PC{0,100}",
            cut in 0usize..400,
        ) {
            for candidate in [bytes.clone(), text.clone().into_bytes(), {
                bytes.splice(0..0, text.bytes());
                bytes.truncate(cut);
                bytes
            }] {
                let read = body_text(&candidate, "u");
                match std::str::from_utf8(&candidate) {
                    Ok(expected) => proptest::prop_assert_eq!(read.ok(), Some(expected)),
                    Err(_) => {
                        let refused = matches!(read, Err(SourceError::Shape { ref problem, .. })
                            if problem == "the body is not UTF-8");
                        proptest::prop_assert!(refused, "{:?}", candidate);
                    }
                }
            }
        }
    }

    fn path(p: &str) -> RecordsPath {
        RecordsPath::try_from(p.to_string()).unwrap()
    }

    /// A page of `rbtRecognitions` records with a `total`, read as raw values.
    fn rbt_page(body: &str) -> Result<Page<'_>, SourceError> {
        parse_page(body, &oifde(), &path("rbtRecognitions"), &[], Some("total"), "u", None)
    }

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
            parse_page(body, env, &path("result.callInfo"), &[], Some("result.total"), "u", None)
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
        let p = rbt_page(body).unwrap();
        assert_eq!(p.total, Some(2));
        assert_eq!(p.records[1].get(), r#"{"a":953730645354352640}"#);
        let nested = r#"{"result":{"data":[{"x":1}],"total":7}}"#;
        let p = parse_page(
            nested,
            &oifde(),
            &path("result.data"),
            &[],
            Some("result.total"),
            "u",
            None,
        )
        .unwrap();
        assert_eq!((p.records.len(), p.total), (1, Some(7)));
    }

    /// An error code is an error with the API's message, never an empty page.
    #[test]
    fn error_codes_are_errors() {
        let body = r#"{"errorCode":"401","errorMsg":"authToken is invalid"}"#;
        let err = rbt_page(body).unwrap_err();
        assert!(err.to_string().contains("authToken is invalid"), "{err}");
        let ok = r#"{"errorCode":0,"rbtRecognitions":[],"total":0}"#;
        assert!(rbt_page(ok).is_ok());
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
        for (body, at) in cases {
            match rbt_page(body) {
                Err(SourceError::Shape { path: p, .. }) => assert_eq!(p, at, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let empty = r#"{"rbtRecognitions":null,"total":0}"#;
        assert!(rbt_page(empty).unwrap().records.is_empty());
    }

    /// The records field, read in the same pass as the top level, says what it is when it
    /// is not an array; a null one with records to come is missing; a body cut short is not
    /// an object.
    #[test]
    fn records_fields_that_are_not_arrays_say_what_they_are() {
        let cases = [
            (r#"{"rbtRecognitions":"x","total":1}"#, "rbtRecognitions", "found a string"),
            (r#"{"rbtRecognitions":7.5,"total":1}"#, "rbtRecognitions", "found a number"),
            (r#"{"total":1,"rbtRecognitions":{"a":[1]}}"#, "rbtRecognitions", "found an object"),
            (r#"{"rbtRecognitions":true,"total":1}"#, "rbtRecognitions", "found a boolean"),
            (r#"{"rbtRecognitions":null,"total":3}"#, "rbtRecognitions", "missing"),
            (r#"{"rbtRecognitions":[{"a":1}"#, "$", "found an object"),
        ];
        for (body, at, says) in cases {
            match rbt_page(body) {
                Err(e @ SourceError::Shape { .. }) => {
                    let SourceError::Shape { path: p, .. } = &e else { unreachable!() };
                    assert_eq!(p, at, "{body}");
                    assert!(e.to_string().contains(says), "{body}: {e}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    /// Nested records become one record per inner element with the group's fields copied
    /// in (a field the record has wins); the page length counts groups; numbers and
    /// Chinese text pass through untouched.
    #[test]
    fn nested_records_are_flattened_with_parent_fields() {
        let body = r#"{"data":[
            {"call_group_id":"g1","calls":[{"call_uuid":"a","duration":164.22,"big":953730645354352640},
                                           {"call_uuid":"b","call_group_id":"own","t":"请问"}]},
            {"call_group_id":"g2","calls":[{"call_uuid":"c"}]}],
            "paging":{"total":3}}"#;
        let parents = ["call_group_id".to_string()];
        let p = parse_page(
            body,
            &EnvelopeSpec::default(),
            &path("data[].calls[]"),
            &parents,
            Some("paging.total"),
            "u",
            None,
        )
        .unwrap();
        let texts: Vec<&str> = p.records.iter().map(|r| r.get()).collect();
        assert_eq!(
            texts,
            [
                r#"{"big":953730645354352640,"call_group_id":"g1","call_uuid":"a","duration":164.22}"#,
                r#"{"call_group_id":"own","call_uuid":"b","t":"请问"}"#,
                r#"{"call_group_id":"g2","call_uuid":"c"}"#,
            ]
        );
        assert_eq!((p.groups.len(), p.length, p.total), (2, 2, Some(3)));
        assert_eq!(p.groups, [r#""g1""#, r#""g2""#]);

        let no_calls = r#"{"data":[{"call_group_id":"g1"}],"paging":{"total":1}}"#;
        match parse_page(
            no_calls,
            &EnvelopeSpec::default(),
            &path("data[].calls[]"),
            &parents,
            Some("paging.total"),
            "u",
            None,
        ) {
            Err(SourceError::Shape { path, .. }) => assert_eq!(path, "data[0].calls"),
            other => panic!("{other:?}"),
        }
        let not_object = r#"{"data":[{"calls":[1]}],"paging":{"total":1}}"#;
        match parse_page(
            not_object,
            &EnvelopeSpec::default(),
            &path("data[].calls[]"),
            &parents,
            Some("paging.total"),
            "u",
            None,
        ) {
            Err(SourceError::Shape { path, .. }) => assert_eq!(path, "data[0].calls[0]"),
            other => panic!("{other:?}"),
        }
        let empty = r#"{"data":[],"paging":{"total":0}}"#;
        let p = parse_page(
            empty,
            &EnvelopeSpec::default(),
            &path("data[].calls[]"),
            &parents,
            Some("paging.total"),
            "u",
            None,
        )
        .unwrap();
        assert_eq!((p.records.len(), p.length), (0, 0));
    }

    /// A detail object's arrays become records carrying the object's chosen fields, the
    /// request's fields (over the record's own) and, for labelled arrays, their label; a
    /// missing labelled array has no records, a missing single array is an error; an error
    /// code or a body that is not an object is an error, never an empty detail.
    #[test]
    fn object_records_read_labelled_arrays_of_a_detail() {
        let detail = r#"{"call_uuid":"u1","call_time":1635318854,"staff_name":"x",
            "segments":[{"segment_id":1,"asr_text":"请问"},{"segment_id":2,"call_uuid":"own"}],
            "left_emotions":[{"type":"negative","score":65.0}],"right_emotions":null}"#;
        let parents = ["call_time".to_string()];
        let request: Map<String, Value> =
            [("call_uuid".to_string(), Value::from("u1"))].into_iter().collect();
        let paths = |text: &str| -> RecordsPaths {
            toml::from_str::<toml::Table>(&format!("p = {text}")).unwrap()["p"]
                .clone()
                .try_into()
                .unwrap()
        };
        let read = |text: &str, label: Option<&str>| {
            object_records(
                detail,
                &EnvelopeSpec::default(),
                &paths(text),
                &parents,
                &request,
                label,
                "u",
            )
            .map(|records| records.iter().map(|r| r.get().to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            read(r#""segments[]""#, None).unwrap(),
            [
                r#"{"asr_text":"请问","call_time":1635318854,"call_uuid":"u1","segment_id":1}"#,
                r#"{"call_time":1635318854,"call_uuid":"u1","segment_id":2}"#,
            ]
        );
        let emotions =
            r#"{ left = "left_emotions[]", right = "right_emotions[]", both = "absent[]" }"#;
        assert_eq!(
            read(emotions, Some("channel")).unwrap(),
            [
                r#"{"call_time":1635318854,"call_uuid":"u1","channel":"left","score":65.0,"type":"negative"}"#
            ]
        );
        let err = read(r#""utterances[]""#, None).unwrap_err();
        assert!(err.to_string().contains("utterances"), "{err}");
        let one = RecordsPaths::One(path("segments[]"));
        let coded = EnvelopeSpec {
            code_fields: vec!["resultCode".into()],
            message_fields: vec!["resultDesc".into()],
            ..EnvelopeSpec::default()
        };
        let refused = r#"{"resultCode":"500","resultDesc":"inspection store unavailable"}"#;
        let err = object_records(refused, &coded, &one, &parents, &request, None, "u").unwrap_err();
        assert!(err.to_string().contains("inspection store unavailable"), "{err}");
        let err = object_records("[1]", &coded, &one, &parents, &request, None, "u").unwrap_err();
        assert!(matches!(err, SourceError::Shape { .. }), "{err:?}");
    }

    /// A path with alternatives reads the first array present: `resultDesc`, else the
    /// legacy `resultDatas`; neither is a shape error naming both, unless the total is 0.
    #[test]
    fn alternative_arrays_are_read_in_order() {
        let either = path("resultDesc | resultDatas");
        let read = |body: &str| {
            parse_page(body, &EnvelopeSpec::default(), &either, &[], None, "u", None)
                .map(|p| p.records.iter().map(|r| r.get().to_string()).collect::<Vec<_>>())
        };
        let both = r#"{"resultDesc":[{"a":1}],"resultDatas":[{"a":2}]}"#;
        assert_eq!(read(both).unwrap(), [r#"{"a":1}"#]);
        let legacy = r#"{"resultDesc":null,"resultDatas":[{"a":2}]}"#;
        assert_eq!(read(legacy).unwrap(), [r#"{"a":2}"#]);
        let err = read(r#"{"result":"0"}"#).unwrap_err().to_string();
        assert!(err.contains("resultDesc | resultDatas") && err.contains("missing"), "{err}");
        let message = r#"{"resultDesc":"Query Success!","resultDatas":[{"a":3}]}"#;
        assert_eq!(read(message).unwrap(), [r#"{"a":3}"#], "a message is passed over");
        let err = read(r#"{"resultDesc":"failed"}"#).unwrap_err().to_string();
        assert!(err.contains("resultDesc") && err.contains("string"), "{err}");
    }

    /// A walk that keeps the text of each record, as a normalizer would walk them.
    #[derive(Default)]
    struct Texts {
        records: Vec<String>,
        abandoned: usize,
    }

    impl RecordsWalk for Texts {
        fn walk(&mut self, body: &str, at: usize) -> Option<(usize, usize)> {
            let bytes = body.as_bytes();
            let end = scan::value(bytes, at, 0).ok()?;
            let array: Vec<&RawValue> = serde_json::from_str(&body[at..end]).ok()?;
            self.records.extend(array.iter().map(|r| r.get().to_string()));
            Some((end, array.len()))
        }

        fn abandon(&mut self) {
            self.records.clear();
            self.abandoned += 1;
        }
    }

    /// The page read with a walk and read as raw values: the same records, total and
    /// length, or the same error; and whether the walk took the records.
    fn both_ways(body: &str, records: &str, envelope: &EnvelopeSpec) -> (Texts, bool) {
        let (path, total) = (path(records), Some("total"));
        let mut walk = Texts::default();
        let walked = parse_page(body, envelope, &path, &[], total, "u", Some(&mut walk));
        let raw = parse_page(body, envelope, &path, &[], total, "u", None);
        match (walked, raw) {
            (Ok(walked), Ok(raw)) => {
                let raw_texts: Vec<String> =
                    raw.records.iter().map(|r| r.get().to_string()).collect();
                let walked_texts: Vec<String> = walk
                    .records
                    .iter()
                    .cloned()
                    .chain(walked.records.iter().map(|r| r.get().to_string()))
                    .collect();
                assert_eq!(walked_texts, raw_texts, "{body}");
                assert_eq!((walked.total, walked.length), (raw.total, raw.length), "{body}");
                assert_eq!(walked.record_count(), raw.records.len(), "{body}");
                assert_eq!(walked.walked, walk.records.len(), "{body}");
                let took = walked.walked > 0;
                (walk, took)
            }
            (Err(walked), Err(raw)) => {
                assert_eq!(walked.to_string(), raw.to_string(), "{body}");
                assert!(walk.records.is_empty(), "nothing walked is kept: {body}");
                (walk, false)
            }
            (walked, raw) => panic!("{body}: walked {walked:?}, raw {raw:?}"),
        }
    }

    /// Flat records in a top-level array are taken by the walk, whatever surrounds them:
    /// fields before and after, escaped keys, whitespace.
    #[test]
    fn flat_records_are_walked() {
        let bodies = [
            r#"{"rbtRecognitions":[{"a":1},{"b":"x]"}],"total":2,"errorCode":"0"}"#,
            " {\n \"total\" : \"2\" ,\"errorMsg\":\"\\u006f\\\"k\", \"rbtRecognitions\" : [ {\"a\":[1,{}]} ,\n{} ] } \n",
            r#"{"\u0074otal":1,"rbtRecognitions":[{"\u0061":null}],"extra":{"x":[true,false]}}"#,
        ];
        for body in bodies {
            let (walk, took) = both_ways(body, "rbtRecognitions", &oifde());
            assert!(took && walk.abandoned == 0, "{body}");
        }
    }

    /// Pages the walk does not take are read as raw values, with the same outcome: nested
    /// records, no data, a null or missing array, a records field that is not an array or
    /// comes twice, a body cut short or not JSON, an API error.
    #[test]
    fn other_pages_are_read_as_raw_values() {
        let cases = [
            (r#"{"rbtRecognitions":[],"total":0}"#, "rbtRecognitions"),
            (r#"{"rbtRecognitions":null,"total":0}"#, "rbtRecognitions"),
            (r#"{"total":0}"#, "rbtRecognitions"),
            (r#"{"rbtRecognitions":{"a":1},"total":1}"#, "rbtRecognitions"),
            (
                r#"{"rbtRecognitions":[{"a":1}],"rbtRecognitions":[{"b":2}],"total":1}"#,
                "rbtRecognitions",
            ),
            (r#"{"rbtRecognitions":[{"a":1}],"total":1"#, "rbtRecognitions"),
            (r#"{"rbtRecognitions":[{"a":01}],"total":1}"#, "rbtRecognitions"),
            (r#"{"rbtRecognitions":[{"a":1}],"total":1} x"#, "rbtRecognitions"),
            (
                r#"{"errorCode":"9","errorMsg":"no","rbtRecognitions":[{"a":1}],"total":1}"#,
                "rbtRecognitions",
            ),
            (r#"{"data":[{"id":1,"calls":[{"c":1},{"c":2}]}],"total":1}"#, "data[].calls"),
            (r#"{"result":{"rbtRecognitions":[{"a":1}]},"total":1}"#, "result.rbtRecognitions"),
        ];
        for (body, records) in cases {
            let (walk, took) = both_ways(body, records, &oifde());
            assert!(!took && walk.records.is_empty(), "{body}");
        }
        let (walk, took) = both_ways(
            r#"{"errorCode":"1","rbtRecognitions":[{"a":1}]}"#,
            "rbtRecognitions",
            &EnvelopeSpec { empty_codes: vec!["1".into()], ..oifde() },
        );
        assert!(!took && walk.abandoned == 1, "a \"no data\" code drops what was walked");
    }
}
