//! Decoding one record: a single pass over the record's JSON object ([`walk_object`]) looks
//! each key up in the schema and stages the value in the matching column, or in `_extra`.
//!
//! Keys are borrowed from the record unless they contain escapes. Values are taken as raw
//! JSON slices of the record, so undeclared ones are kept byte for byte and declared ones are
//! read from their exact text.

use serde_json::value::RawValue;

use super::columns::Columns;
use super::members::{walk_object, Key, Visit};
use super::reason::{seen, Reject};
use crate::catalog::schema::DatasetSchema;
use crate::json_scan::{self as scan, Malformed, Token};

/// Finds the field of each key, first by guessing from the key order of earlier records
/// (one comparison with the record's text when records share a layout), then through the
/// schema's index.
#[derive(Debug)]
pub(crate) struct KeyOrder {
    /// `follows[p]`: the field that followed field `p` last time; `follows[n]` is the first.
    follows: Vec<usize>,
    /// Whether field `p`'s name is written in JSON without escapes, so that it can be found
    /// by comparing the text.
    plain: Vec<bool>,
}

impl KeyOrder {
    /// A guess of schema order to start with.
    pub(crate) fn new(schema: &DatasetSchema) -> Self {
        let n = schema.fields().len();
        let plain = schema
            .fields()
            .iter()
            .map(|f| !f.name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20))
            .collect();
        Self { follows: (1..=n).chain(std::iter::once(0)).collect(), plain }
    }

    /// The field guessed to follow the field at `previous` (`n` at the start), with its
    /// name, when that name can be compared with the text.
    fn guess<'s>(&self, schema: &'s DatasetSchema, previous: usize) -> Option<(usize, &'s str)> {
        let guess = self.follows[previous];
        let field = schema.fields().get(guess).filter(|_| self.plain[guess])?;
        Some((guess, field.name.as_str()))
    }

    /// The guessed field that follows the field at `previous`, which the record's key turned
    /// out to be; moves `previous` on to it.
    fn take_guess(&self, previous: &mut usize) -> usize {
        *previous = self.follows[*previous];
        *previous
    }

    /// The position of field `key`, which follows the field at `previous` (`n` at the start);
    /// moves `previous` on when the key is declared.
    fn find(&mut self, schema: &DatasetSchema, key: &str, previous: &mut usize) -> Option<usize> {
        let guess = self.follows[*previous];
        let found = match schema.fields().get(guess) {
            Some(field) if field.name == key => Some(guess),
            _ => schema.index_of(key),
        };
        if let Some(index) = found {
            self.follows[*previous] = index;
            *previous = index;
        }
        found
    }
}

/// A column filled from the request over what each record sends: its raw JSON value,
/// scanned once rather than for every record.
#[derive(Debug)]
pub(crate) struct FixedValue {
    index: usize,
    raw: Box<RawValue>,
    token: Token,
}

impl FixedValue {
    /// `raw` for the column at `index` of the schema.
    pub(crate) fn new(index: usize, raw: Box<RawValue>) -> Self {
        let token = scan::token(raw.get().as_bytes(), 0, 0).map_or(Token::Other, |(_, t)| t);
        Self { index, raw, token }
    }
}

/// Stages the record whose text starts at byte `at` of `text` (after any whitespace) in
/// `columns`, with the `fixed` values over what the record sends for those columns;
/// returns the position just past the record, or says why it cannot be a row. On a reject, part of the record may be staged: the caller discards it.
pub(crate) fn stage_record(
    text: &str,
    at: usize,
    schema: &DatasetSchema,
    keys: &mut KeyOrder,
    columns: &mut Columns,
    fixed: &[FixedValue],
) -> Result<usize, Reject> {
    let start = scan::whitespace(text.as_bytes(), at);
    if text.as_bytes().get(start) != Some(&b'{') {
        let end = scan::value(text.as_bytes(), start, 0).unwrap_or(text.len());
        let value = text.get(start..end).unwrap_or_default();
        return Err(Reject::NotAnObject { seen: seen(value.trim()) });
    }
    let mut record = RecordWalk { schema, keys, columns, fixed, previous: schema.fields().len() };
    let end = walk_object(text, start, &mut record)?;
    for value in fixed {
        columns.stage(value.index, value.raw.get(), value.token)?;
    }
    columns.check()?;
    Ok(end)
}

/// The walk of one record: each member staged in its column.
struct RecordWalk<'w> {
    schema: &'w DatasetSchema,
    keys: &'w mut KeyOrder,
    columns: &'w mut Columns,
    fixed: &'w [FixedValue],
    /// The field of the previous member (`n` at the start), from which the next is guessed.
    previous: usize,
}

impl<'r> Visit<'r> for RecordWalk<'_> {
    type Error = Reject;

    fn guess(&self) -> Option<&str> {
        self.keys.guess(self.schema, self.previous).map(|(_, name)| name)
    }

    fn member(&mut self, key: Key<'r>, raw: &'r str, token: Token) -> Result<(), Reject> {
        let index = match key {
            Key::Guessed => self.keys.take_guess(&mut self.previous),
            Key::Read(key) => match self.keys.find(self.schema, &key, &mut self.previous) {
                Some(index) => index,
                None => {
                    self.columns.stage_extra(&key, raw);
                    return Ok(());
                }
            },
        };
        if self.fixed.iter().any(|value| value.index == index) {
            return Ok(());
        }
        self.columns.stage(index, raw, token)
    }
}

impl From<Malformed> for Reject {
    fn from(malformed: Malformed) -> Self {
        Reject::Undecodable { detail: malformed.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> DatasetSchema {
        DatasetSchema::parse(
            "t.json",
            r#"{"dataset":"t","fields":[{"name":"a","type":"int64"},{"name":"b","type":"utf8"},
                {"name":"c","type":"int32"}]}"#,
        )
        .unwrap()
    }

    /// The guess follows the order of the last record, and a wrong guess still finds the field.
    #[test]
    fn key_order_learns_and_falls_back() {
        let s = schema();
        let mut keys = KeyOrder::new(&s);
        let mut previous = 3;
        assert_eq!(keys.find(&s, "c", &mut previous), Some(2));
        assert_eq!(keys.find(&s, "zz", &mut previous), None);
        assert_eq!(keys.find(&s, "a", &mut previous), Some(0));
        assert_eq!(keys.follows[3], 2, "the record started with c");
        assert_eq!(keys.follows[2], 0, "a followed c, past the unknown key");
        let mut previous = 3;
        assert_eq!(keys.find(&s, "b", &mut previous), Some(1));
    }

    /// Keys with escapes are decoded before the lookup, so they find their field.
    #[test]
    fn escaped_keys_are_decoded() {
        let s = schema();
        let mut keys = KeyOrder::new(&s);
        let mut columns = Columns::new(&s, 4, chrono::FixedOffset::east_opt(0).unwrap());
        let record = r#"{"\u0061": 5, "b": "x"} "#;
        assert_eq!(stage_record(record, 0, &s, &mut keys, &mut columns, &[]), Ok(record.len() - 1));
        assert_eq!(columns.staged_timestamp(0), None, "a is an int64, not a timestamp");
        let again = r#"{"a": 5, "\u0061": 6}"#;
        columns.discard();
        assert_eq!(
            stage_record(again, 0, &s, &mut keys, &mut columns, &[]),
            Err(Reject::Duplicate { field: "a".into() })
        );
    }
}
