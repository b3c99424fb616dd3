//! Dataset schemas (`schemas/*.json`): the columns, their types and nullability, and the
//! Arrow schema written to Parquet.
//!
//! ```json
//! {"dataset": "rbt_recognition",
//!  "fields": [{"name": "rbtRecognitionId", "type": "int64", "nullable": false, "doc": "Result ID"}]}
//! ```
//!
//! Every Parquet file also carries two columns of its own: [`EXTRA_COLUMN`] (fields the
//! schema does not name, as a JSON object) and [`SYNCED_AT_COLUMN`].

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

/// Column holding, as one JSON object, every field of a record that the schema does not name.
pub const EXTRA_COLUMN: &str = "_extra";
/// Column holding the instant the row was synced.
pub const SYNCED_AT_COLUMN: &str = "_synced_at";
/// Time zone of every timestamp column.
pub const UTC: &str = "UTC";

/// How a source field is read and which Arrow type it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// 32-bit integer (codes, enumerations); a JSON number or a string of digits.
    Int32,
    /// 64-bit integer (ids); a JSON number or a string of digits, never through f64.
    Int64,
    /// Double; a JSON number or a numeric string.
    Float64,
    /// Text, kept as sent (phone numbers keep leading zeros; a number is kept as its digits).
    Utf8,
    /// `true`/`false` (also `0`/`1` and their strings).
    Boolean,
    /// Epoch milliseconds, written as `Timestamp(ms, UTC)`.
    TimestampMs,
    /// Epoch seconds, written as `Timestamp(ms, UTC)`.
    TimestampS,
    /// A calendar day `yyyy-MM-dd` (a statistics day in the source zone), written as
    /// `Date32`; as an event time it stands for the day's first instant in the source zone.
    Date,
    /// `yyyy-MM-dd HH:mm:ss` in UTC (or epoch milliseconds), written as `Timestamp(ms, UTC)`.
    DatetimeUtc,
    /// `yyyy-MM-dd HH:mm:ss` in the source zone (or epoch milliseconds), written as
    /// `Timestamp(ms, UTC)`.
    DatetimeLocal,
}

impl FieldKind {
    /// Whether a value of this kind is an instant or a day, so that it can be an event time.
    pub fn is_time(self) -> bool {
        !matches!(
            self,
            FieldKind::Int32
                | FieldKind::Int64
                | FieldKind::Float64
                | FieldKind::Utf8
                | FieldKind::Boolean
        )
    }

    /// The Arrow type this kind is written as.
    pub fn arrow_type(self) -> DataType {
        match self {
            FieldKind::Int32 => DataType::Int32,
            FieldKind::Int64 => DataType::Int64,
            FieldKind::Float64 => DataType::Float64,
            FieldKind::Utf8 => DataType::Utf8,
            FieldKind::Boolean => DataType::Boolean,
            FieldKind::TimestampMs
            | FieldKind::TimestampS
            | FieldKind::DatetimeUtc
            | FieldKind::DatetimeLocal => timestamp_type(),
            FieldKind::Date => DataType::Date32,
        }
    }
}

/// The Arrow type of every timestamp column: milliseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()))
}

/// One column of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The field name in the API's JSON, also the column name.
    pub name: String,
    /// How the value is read.
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// Whether the API may omit the field or send `null`.
    #[serde(default = "default_nullable")]
    pub nullable: bool,
    /// What the field means, from the API reference.
    #[serde(default)]
    pub doc: Option<String>,
}

fn default_nullable() -> bool {
    true
}

/// Why a schema file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file is not valid schema JSON.
    #[error("schema {file}: {source}")]
    Parse { file: String, source: serde_json::Error },
    /// Two fields share a name.
    #[error("schema {file}: field '{field}' is declared twice")]
    DuplicateField { file: String, field: String },
    /// A field uses a name reserved for cecsync's own columns.
    #[error(
        "schema {file}: field '{field}' is reserved (names starting with '_' are cecsync's own)"
    )]
    ReservedField { file: String, field: String },
    /// The schema declares no field.
    #[error("schema {file}: it declares no field")]
    Empty { file: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    dataset: String,
    #[serde(default)]
    description: Option<String>,
    fields: Vec<FieldSpec>,
}

/// A dataset's columns, as declared in its schema file.
#[derive(Debug, Clone)]
pub struct DatasetSchema {
    dataset: String,
    description: Option<String>,
    fields: Vec<FieldSpec>,
    index: HashMap<String, usize>,
    arrow: SchemaRef,
}

impl DatasetSchema {
    /// Parses a schema file; `file` names it in errors.
    pub fn parse(file: &str, json: &str) -> Result<Self, SchemaError> {
        let parsed: SchemaFile = serde_json::from_str(json)
            .map_err(|source| SchemaError::Parse { file: file.to_string(), source })?;
        Self::new(file, parsed.dataset, parsed.description, parsed.fields)
    }

    /// Builds a schema from its fields.
    pub fn new(
        file: &str,
        dataset: String,
        description: Option<String>,
        fields: Vec<FieldSpec>,
    ) -> Result<Self, SchemaError> {
        if fields.is_empty() {
            return Err(SchemaError::Empty { file: file.to_string() });
        }
        let mut index = HashMap::new();
        for (i, f) in fields.iter().enumerate() {
            if f.name.starts_with('_') {
                return Err(SchemaError::ReservedField {
                    file: file.into(),
                    field: f.name.clone(),
                });
            }
            if index.insert(f.name.clone(), i).is_some() {
                return Err(SchemaError::DuplicateField {
                    file: file.into(),
                    field: f.name.clone(),
                });
            }
        }
        let mut columns: Vec<Field> =
            fields.iter().map(|f| Field::new(&f.name, f.kind.arrow_type(), f.nullable)).collect();
        columns.push(Field::new(EXTRA_COLUMN, DataType::Utf8, true));
        columns.push(Field::new(SYNCED_AT_COLUMN, timestamp_type(), false));
        let arrow = Arc::new(Schema::new(columns));
        Ok(Self { dataset, description, fields, index, arrow })
    }

    /// The dataset this schema describes.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// What the dataset holds.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The declared fields, in column order.
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// The position of a declared field.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.index_of(name).map(|i| &self.fields[i])
    }

    /// The Arrow schema of the Parquet files: the declared fields, then `_extra` and
    /// `_synced_at`.
    pub fn arrow_schema(&self) -> SchemaRef {
        self.arrow.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_schema_appends_the_bookkeeping_columns() {
        let s = DatasetSchema::parse(
            "t.json",
            r#"{"dataset":"d","fields":[{"name":"id","type":"int64","nullable":false},
               {"name":"at","type":"timestamp_ms"}]}"#,
        )
        .unwrap();
        let a = s.arrow_schema();
        let names: Vec<_> = a.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "at", EXTRA_COLUMN, SYNCED_AT_COLUMN]);
        assert_eq!(a.field(0).data_type(), &DataType::Int64);
        assert!(!a.field(0).is_nullable());
        assert_eq!(a.field(1).data_type(), &timestamp_type());
        assert_eq!(s.index_of("at"), Some(1));
    }

    #[test]
    fn bad_schemas_are_refused_with_the_file_name() {
        let dup =
            r#"{"dataset":"d","fields":[{"name":"a","type":"utf8"},{"name":"a","type":"utf8"}]}"#;
        assert!(DatasetSchema::parse("x.json", dup).unwrap_err().to_string().contains("x.json"));
        let reserved = r#"{"dataset":"d","fields":[{"name":"_extra","type":"utf8"}]}"#;
        assert!(matches!(
            DatasetSchema::parse("x.json", reserved),
            Err(SchemaError::ReservedField { .. })
        ));
        let bad_type = r#"{"dataset":"d","fields":[{"name":"a","type":"decimal"}]}"#;
        assert!(matches!(DatasetSchema::parse("x.json", bad_type), Err(SchemaError::Parse { .. })));
    }
}
