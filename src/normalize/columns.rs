//! The Arrow builders of one dataset, and the row staged in them until the whole record is
//! known to be valid.
//!
//! Each declared column stages at most one value per record; [`Columns::commit`] appends
//! the staged row to every builder at once and [`Columns::discard`] forgets it, so the
//! builders always hold whole rows.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMillisecondArray, TimestampMillisecondBuilder,
};
use chrono::FixedOffset;

use super::json_text::push_json_string;
use super::reason::{seen, Reject};
use super::value::{self, Mismatch};
use crate::catalog::schema::{DatasetSchema, FieldKind, UTC};
use crate::json_scan::Token;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Bytes reserved per row for each text column.
const TEXT_BYTES_PER_ROW: usize = 32;

/// Whether a column holds a value for the record being staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staged {
    /// The record has not named the field (yet).
    Absent,
    /// The record holds `null` for it.
    Null,
    /// The builder's staged value is the field's value.
    Value,
}

/// A builder and the value staged for it.
#[derive(Debug)]
enum Builder {
    Int32 {
        builder: Int32Builder,
        value: i32,
    },
    Int64 {
        builder: Int64Builder,
        value: i64,
    },
    Float64 {
        builder: Float64Builder,
        value: f64,
    },
    Utf8 {
        builder: StringBuilder,
        value: String,
    },
    Boolean {
        builder: BooleanBuilder,
        value: bool,
    },
    TimestampMs {
        builder: TimestampMillisecondBuilder,
        value: i64,
    },
    TimestampS {
        builder: TimestampMillisecondBuilder,
        value: i64,
    },
    /// Days since 1970-01-01; `offset_secs`: the zone the days are of.
    Date {
        builder: Date32Builder,
        value: i32,
        offset_secs: i32,
    },
    /// Epoch ms read from datetimes written at `offset_secs` east of UTC.
    Datetime {
        builder: TimestampMillisecondBuilder,
        value: i64,
        offset_secs: i32,
    },
}

impl Builder {
    /// An empty builder for `kind` with room for `rows`; local days and datetimes are of
    /// `zone`.
    fn new(kind: FieldKind, rows: usize, zone: FixedOffset) -> Self {
        let offset_secs = zone.local_minus_utc();
        let timestamps = || TimestampMillisecondBuilder::with_capacity(rows).with_timezone(UTC);
        match kind {
            FieldKind::Int32 => {
                Builder::Int32 { builder: Int32Builder::with_capacity(rows), value: 0 }
            }
            FieldKind::Int64 => {
                Builder::Int64 { builder: Int64Builder::with_capacity(rows), value: 0 }
            }
            FieldKind::Float64 => {
                Builder::Float64 { builder: Float64Builder::with_capacity(rows), value: 0.0 }
            }
            FieldKind::Utf8 => Builder::Utf8 {
                builder: StringBuilder::with_capacity(rows, rows * TEXT_BYTES_PER_ROW),
                value: String::new(),
            },
            FieldKind::Boolean => {
                Builder::Boolean { builder: BooleanBuilder::with_capacity(rows), value: false }
            }
            FieldKind::TimestampMs => Builder::TimestampMs { builder: timestamps(), value: 0 },
            FieldKind::TimestampS => Builder::TimestampS { builder: timestamps(), value: 0 },
            FieldKind::Date => {
                Builder::Date { builder: Date32Builder::with_capacity(rows), value: 0, offset_secs }
            }
            FieldKind::DatetimeUtc => {
                Builder::Datetime { builder: timestamps(), value: 0, offset_secs: 0 }
            }
            FieldKind::DatetimeLocal => {
                Builder::Datetime { builder: timestamps(), value: 0, offset_secs }
            }
        }
    }

    /// Reads `raw`, whose scan gave `token`, into the staged value; `false` when it is
    /// `null`.
    fn read(&mut self, raw: &str, token: Token) -> Result<bool, Mismatch> {
        match self {
            Builder::Int32 { value, .. } => stage(value, value::read_i32(raw, token)),
            Builder::Int64 { value, .. } | Builder::TimestampMs { value, .. } => {
                stage(value, value::read_i64(raw, token))
            }
            Builder::TimestampS { value, .. } => {
                stage(value, value::read_seconds_as_ms(raw, token))
            }
            Builder::Date { value, .. } => stage(value, value::read_date(raw, token)),
            Builder::Datetime { value, offset_secs, .. } => {
                stage(value, value::read_datetime(raw, *offset_secs, token))
            }
            Builder::Float64 { value, .. } => stage(value, value::read_f64(raw, token)),
            Builder::Boolean { value, .. } => stage(value, value::read_bool(raw, token)),
            Builder::Utf8 { value, .. } => {
                value.clear();
                value::read_text_into(raw, token, value)
            }
        }
    }

    /// Appends the staged value, or a null.
    fn append(&mut self, present: bool) {
        match self {
            Builder::Int32 { builder, value } => builder.append_option(present.then_some(*value)),
            Builder::Int64 { builder, value } => builder.append_option(present.then_some(*value)),
            Builder::Float64 { builder, value } => builder.append_option(present.then_some(*value)),
            Builder::Utf8 { builder, value } => {
                builder.append_option(present.then_some(value.as_str()))
            }
            Builder::Boolean { builder, value } => builder.append_option(present.then_some(*value)),
            Builder::TimestampMs { builder, value }
            | Builder::TimestampS { builder, value }
            | Builder::Datetime { builder, value, .. } => {
                builder.append_option(present.then_some(*value))
            }
            Builder::Date { builder, value, .. } => {
                builder.append_option(present.then_some(*value))
            }
        }
    }

    /// The staged value of a time column, in epoch milliseconds (a day: its first instant
    /// in its zone).
    fn timestamp(&self) -> Option<i64> {
        match self {
            Builder::TimestampMs { value, .. }
            | Builder::TimestampS { value, .. }
            | Builder::Datetime { value, .. } => Some(*value),
            Builder::Date { value, offset_secs, .. } => {
                Some(i64::from(*value) * DAY_MS - i64::from(*offset_secs) * 1000)
            }
            _ => None,
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Int32 { builder, .. } => Arc::new(builder.finish()),
            Builder::Int64 { builder, .. } => Arc::new(builder.finish()),
            Builder::Float64 { builder, .. } => Arc::new(builder.finish()),
            Builder::Utf8 { builder, .. } => Arc::new(builder.finish()),
            Builder::Boolean { builder, .. } => Arc::new(builder.finish()),
            Builder::TimestampMs { builder, .. }
            | Builder::TimestampS { builder, .. }
            | Builder::Datetime { builder, .. } => Arc::new(builder.finish()),
            Builder::Date { builder, .. } => Arc::new(builder.finish()),
        }
    }
}

/// Stores a read value in `slot`; `false` when the value is null.
fn stage<T>(slot: &mut T, read: Result<Option<T>, Mismatch>) -> Result<bool, Mismatch> {
    Ok(read?.map(|value| *slot = value).is_some())
}

/// One declared column.
#[derive(Debug)]
struct Column {
    name: String,
    kind: FieldKind,
    nullable: bool,
    staged: Staged,
    builder: Builder,
}

/// The `_extra` column: the undeclared fields of each record as one JSON object.
#[derive(Debug)]
struct Extra {
    builder: StringBuilder,
    /// The staged object without its closing brace; empty when the record has no extra field.
    json: String,
    /// Where each staged key (a JSON string, quotes included) lies in `json`.
    keys: Vec<Range<usize>>,
}

impl Extra {
    fn stage(&mut self, key: &str, raw: &str) {
        self.json.push(if self.json.is_empty() { '{' } else { ',' });
        let start = self.json.len();
        push_json_string(&mut self.json, key);
        self.keys.push(start..self.json.len());
        self.json.push(':');
        self.json.push_str(raw);
    }

    /// Refuses a key staged twice. Keys are compared in their escaped form, which is
    /// canonical (one spelling per text), so equal texts compare equal.
    fn check(&mut self) -> Result<(), Reject> {
        if self.keys.len() < 2 {
            return Ok(());
        }
        let json = &self.json;
        self.keys.sort_unstable_by(|a, b| json[a.clone()].cmp(&json[b.clone()]));
        match self.keys.windows(2).find(|pair| json[pair[0].clone()] == json[pair[1].clone()]) {
            Some(pair) => {
                let quoted = &json[pair[0].clone()];
                let field = quoted.get(1..quoted.len() - 1).unwrap_or(quoted).to_string();
                Err(Reject::Duplicate { field })
            }
            None => Ok(()),
        }
    }

    fn commit(&mut self) {
        if self.json.is_empty() {
            self.builder.append_null();
        } else {
            self.json.push('}');
            self.builder.append_value(&self.json);
        }
        self.discard();
    }

    fn discard(&mut self) {
        self.json.clear();
        self.keys.clear();
    }
}

/// Every column of a dataset: the declared ones, then `_extra`.
#[derive(Debug)]
pub(crate) struct Columns {
    columns: Vec<Column>,
    extra: Extra,
    rows: usize,
}

impl Columns {
    /// Empty builders for `schema`, with room for `rows` rows; local days and datetimes are
    /// of `zone`.
    pub(crate) fn new(schema: &DatasetSchema, rows: usize, zone: FixedOffset) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name.clone(),
                kind: f.kind,
                nullable: f.nullable,
                staged: Staged::Absent,
                builder: Builder::new(f.kind, rows, zone),
            })
            .collect();
        let extra = Extra {
            builder: StringBuilder::with_capacity(rows, 0),
            json: String::new(),
            keys: Vec::new(),
        };
        Self { columns, extra, rows: 0 }
    }

    /// Stages the raw JSON value of declared field `index` (a position in the schema these
    /// columns were built from), whose scan gave `token`.
    pub(crate) fn stage(&mut self, index: usize, raw: &str, token: Token) -> Result<(), Reject> {
        let column = &mut self.columns[index];
        if column.staged != Staged::Absent {
            return Err(Reject::Duplicate { field: column.name.clone() });
        }
        let present = column.builder.read(raw, token).map_err(|mismatch| Reject::Value {
            field: column.name.clone(),
            kind: column.kind,
            seen: seen(raw),
            mismatch,
        })?;
        if !present && !column.nullable {
            return Err(Reject::Null { field: column.name.clone() });
        }
        column.staged = if present { Staged::Value } else { Staged::Null };
        Ok(())
    }

    /// Stages an undeclared field for `_extra`, its value verbatim.
    pub(crate) fn stage_extra(&mut self, key: &str, raw: &str) {
        self.extra.stage(key, raw);
    }

    /// Checks what only the whole record shows: required fields present, no repeated key.
    pub(crate) fn check(&mut self) -> Result<(), Reject> {
        if let Some(missing) =
            self.columns.iter().find(|c| c.staged == Staged::Absent && !c.nullable)
        {
            return Err(Reject::Missing { field: missing.name.clone() });
        }
        self.extra.check()
    }

    /// The staged epoch milliseconds of time column `index` (a day: its first instant);
    /// `None` if it is null, absent or not a time column.
    pub(crate) fn staged_timestamp(&self, index: usize) -> Option<i64> {
        self.columns
            .get(index)
            .filter(|c| c.staged == Staged::Value)
            .and_then(|c| c.builder.timestamp())
    }

    /// Appends the staged row; absent nullable fields become nulls.
    pub(crate) fn commit(&mut self) {
        for column in &mut self.columns {
            column.builder.append(column.staged == Staged::Value);
            column.staged = Staged::Absent;
        }
        self.extra.commit();
        self.rows += 1;
    }

    /// Forgets the staged row.
    pub(crate) fn discard(&mut self) {
        for column in &mut self.columns {
            column.staged = Staged::Absent;
        }
        self.extra.discard();
    }

    /// Rows appended so far.
    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// The arrays of every column, in schema order, ending with `_synced_at`.
    pub(crate) fn finish(mut self, synced_at_ms: i64) -> Vec<ArrayRef> {
        let mut arrays: Vec<ArrayRef> =
            self.columns.iter_mut().map(|c| c.builder.finish()).collect();
        arrays.push(Arc::new(self.extra.builder.finish()));
        let synced = TimestampMillisecondArray::from_value(synced_at_ms, self.rows);
        arrays.push(Arc::new(synced.with_timezone(UTC)));
        arrays
    }
}
