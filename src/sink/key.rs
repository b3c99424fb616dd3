//! Primary-key encoding shared by staging and verification: the key columns of a batch
//! become one comparable byte string per row (arrow's row format), so composite keys of
//! Int64, Int32, Utf8, Date32 and millisecond timestamp columns hash and compare as one
//! value.

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};

use super::SinkError;

/// The key columns of a schema and the converter that encodes them.
pub(crate) struct KeyColumns {
    indices: Vec<usize>,
    names: Vec<String>,
    converter: RowConverter,
}

impl KeyColumns {
    /// Finds `key_columns` in `schema`; each must exist and be Int64, Int32, Utf8 or Date32.
    pub(crate) fn new(schema: &Schema, key_columns: &[String]) -> Result<Self, SinkError> {
        if key_columns.is_empty() {
            return Err(SinkError::KeyColumn {
                column: String::new(),
                problem: "no primary key column is declared".into(),
            });
        }
        let mut indices = Vec::with_capacity(key_columns.len());
        let mut fields = Vec::with_capacity(key_columns.len());
        for name in key_columns {
            let bad = |problem: String| SinkError::KeyColumn { column: name.clone(), problem };
            let index = schema.index_of(name).map_err(|_| bad("no such column".into()))?;
            let data_type = schema.field(index).data_type();
            if !matches!(
                data_type,
                DataType::Int64
                    | DataType::Int32
                    | DataType::Utf8
                    | DataType::Date32
                    | DataType::Timestamp(TimeUnit::Millisecond, _)
            ) {
                return Err(bad(format!(
                    "type {data_type} cannot be a key (Int64, Int32, Utf8, Date32, Timestamp(ms))"
                )));
            }
            indices.push(index);
            fields.push(SortField::new(data_type.clone()));
        }
        let converter = RowConverter::new(fields)
            .map_err(|source| SinkError::Arrow { context: "key encoding".into(), source })?;
        Ok(Self { indices, names: key_columns.to_vec(), converter })
    }

    /// The positions of the key columns in the schema.
    pub(crate) fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// Encodes the key of every row of `batch`, whose key columns sit at `indices()`;
    /// a null key value is an error.
    pub(crate) fn encode(&self, batch: &RecordBatch) -> Result<Rows, SinkError> {
        self.encode_columns(self.indices.iter().map(|&i| batch.column(i).clone()).collect())
    }

    /// Refuses key columns (given in key order) that hold a null.
    pub(crate) fn check_nulls(&self, columns: &[ArrayRef]) -> Result<(), SinkError> {
        match self.names.iter().zip(columns).find(|(_, column)| column.null_count() > 0) {
            Some((name, _)) => Err(SinkError::NullKey { column: name.clone() }),
            None => Ok(()),
        }
    }

    /// Encodes key columns given in key order; a null key value is an error.
    pub(crate) fn encode_columns(&self, columns: Vec<ArrayRef>) -> Result<Rows, SinkError> {
        self.check_nulls(&columns)?;
        self.converter
            .convert_columns(&columns)
            .map_err(|source| SinkError::Arrow { context: "key encoding".into(), source })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, Int64Array, StringArray};
    use arrow::datatypes::Field;

    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Float64, true),
            Field::new("d", DataType::Int32, true),
        ])
    }

    /// Composite keys are equal exactly when every part is equal.
    #[test]
    fn composite_keys_compare_by_every_part() {
        let keys = KeyColumns::new(&schema(), &["a".into(), "b".into(), "d".into()]).unwrap();
        let rows = keys
            .encode_columns(vec![
                Arc::new(Int64Array::from(vec![1, 1, 1])),
                Arc::new(StringArray::from(vec!["x", "x", "y"])),
                Arc::new(Int32Array::from(vec![7, 7, 7])),
            ])
            .unwrap();
        assert_eq!(rows.row(0), rows.row(1));
        assert_ne!(rows.row(0), rows.row(2));
    }

    /// Missing, float and null key columns are refused with the column's name.
    #[test]
    fn unusable_keys_are_refused() {
        let missing = KeyColumns::new(&schema(), &["zz".into()]).err().unwrap();
        assert!(missing.to_string().contains("zz"));
        let float = KeyColumns::new(&schema(), &["c".into()]).err().unwrap();
        assert!(float.to_string().contains("Float64"));
        assert!(KeyColumns::new(&schema(), &[]).is_err());
        let keys = KeyColumns::new(&schema(), &["a".into()]).unwrap();
        let null = keys.encode_columns(vec![Arc::new(Int64Array::from(vec![None, Some(1)]))]);
        assert!(matches!(null, Err(SinkError::NullKey { column }) if column == "a"));
    }
}
