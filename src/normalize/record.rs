//! Decoding one record: a serde visitor walks the record's JSON object, looks each key up in
//! the schema and stages the value in the matching column, or in `_extra`.
//!
//! Keys are borrowed from the record unless they contain escapes. Values are taken as raw
//! JSON slices of the record, so undeclared ones are kept byte for byte and declared ones are
//! read from their exact text.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::columns::Columns;
use super::reason::{seen, Reject};
use crate::catalog::schema::DatasetSchema;

/// Finds the field of each key, first by guessing from the key order of earlier records
/// (one string comparison when records share a layout), then through the schema's index.
#[derive(Debug)]
pub(crate) struct KeyOrder {
    /// `follows[p]`: the field that followed field `p` last time; `follows[n]` is the first.
    follows: Vec<usize>,
}

impl KeyOrder {
    /// A guess of schema order to start with.
    pub(crate) fn new(schema: &DatasetSchema) -> Self {
        let n = schema.fields().len();
        Self { follows: (1..=n).chain(std::iter::once(0)).collect() }
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

/// Stages `record` in `columns`, with the `fixed` values (column index, raw JSON) over
/// what the record sends for those columns, or says why it cannot be a row. On a reject,
/// part of the record may be staged: the caller discards it.
pub(crate) fn stage_record(
    record: &RawValue,
    schema: &DatasetSchema,
    keys: &mut KeyOrder,
    columns: &mut Columns,
    fixed: &[(usize, Box<RawValue>)],
) -> Result<(), Reject> {
    let text = record.get();
    if !text.trim_start().starts_with('{') {
        return Err(Reject::NotAnObject { seen: seen(text.trim()) });
    }
    let mut json = serde_json::Deserializer::from_str(text);
    let visitor = RecordVisitor { schema, keys, columns, fixed };
    json.deserialize_map(visitor)
        .unwrap_or_else(|e| Err(Reject::Undecodable { detail: e.to_string() }))
}

/// Walks the entries of a record's object.
struct RecordVisitor<'a> {
    schema: &'a DatasetSchema,
    keys: &'a mut KeyOrder,
    columns: &'a mut Columns,
    fixed: &'a [(usize, Box<RawValue>)],
}

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = Result<(), Reject>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut previous = self.schema.fields().len();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let raw: &'de RawValue = map.next_value()?;
            let staged = match self.keys.find(self.schema, &key, &mut previous) {
                Some(index) if self.fixed.iter().any(|(i, _)| *i == index) => Ok(()),
                Some(index) => self.columns.stage(index, raw.get()),
                None => {
                    self.columns.stage_extra(&key, raw.get());
                    Ok(())
                }
            };
            if let Err(reject) = staged {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(Err(reject));
            }
        }
        for (index, raw) in self.fixed {
            if let Err(reject) = self.columns.stage(*index, raw.get()) {
                return Ok(Err(reject));
            }
        }
        Ok(self.columns.check())
    }
}

/// Reads a key, borrowing it from the record when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
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
        let record = RawValue::from_string(r#"{"\u0061": 5, "b": "x"}"#.into()).unwrap();
        assert_eq!(stage_record(&record, &s, &mut keys, &mut columns, &[]), Ok(()));
        assert_eq!(columns.staged_timestamp(0), None, "a is an int64, not a timestamp");
        let again = RawValue::from_string(r#"{"a": 5, "\u0061": 6}"#.into()).unwrap();
        columns.discard();
        assert_eq!(
            stage_record(&again, &s, &mut keys, &mut columns, &[]),
            Err(Reject::Duplicate { field: "a".into() })
        );
    }
}
