//! How a data object is encoded: zstd Parquet with page statistics, dictionaries only for
//! columns of few distinct values, integers and times that are not dictionary encoded
//! stored as deltas, and row groups bounded in rows and in bytes.

use arrow::datatypes::{DataType, Schema};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// Zstandard level of the data objects. Level 1 compresses a month of `rbt_recognition`
/// as small as level 3 did (with [`DICTIONARY_LIMIT_BYTES`], smaller), in less time.
const ZSTD_LEVEL: i32 = 1;
/// A column chunk's dictionary grows to this size at most; past it the column falls back to
/// plain encoding. Columns of few distinct values (codes, types, tenant) stay dictionary
/// encoded, while ids, times and phone numbers, nearly all distinct, stop paying for a
/// dictionary that saves nothing after the first few thousand rows.
const DICTIONARY_LIMIT_BYTES: usize = 32 * 1024;

/// Row-group limits of the Parquet writer; the defaults keep memory flat however large the
/// partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Most rows in a row group.
    pub max_row_group_rows: usize,
    /// A row group is flushed once its encoded size in progress passes this many bytes.
    pub max_row_group_bytes: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self { max_row_group_rows: 128 * 1024, max_row_group_bytes: 64 * 1024 * 1024 }
    }
}

impl WriteLimits {
    /// The writer properties of a data object of `schema` with these limits.
    pub(crate) fn properties(self, schema: &Schema) -> Result<WriterProperties, ParquetError> {
        let builder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_dictionary_enabled(true)
            .set_dictionary_page_size_limit(DICTIONARY_LIMIT_BYTES)
            .set_max_row_group_row_count(Some(self.max_row_group_rows.max(1)))
            .set_created_by(format!("cecsync {}", env!("CARGO_PKG_VERSION")));
        let integers = schema.fields().iter().filter(|f| stored_as_integers(f.data_type()));
        Ok(integers
            .fold(builder, |builder, field| {
                let column = ColumnPath::from(field.name().as_str());
                builder.set_column_encoding(column, Encoding::DELTA_BINARY_PACKED)
            })
            .build())
    }
}

/// Whether Parquet stores a column of `data_type` as INT32 or INT64 values. Past its
/// dictionary, such a column (ids, epoch times, counters, days) is delta encoded: ids and
/// times that grow record after record take a few bits each before compression, which is
/// both smaller and cheaper to compress than their plain eight bytes.
fn stored_as_integers(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int32 | DataType::Int64 | DataType::Timestamp(_, _) | DataType::Date32
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::Field;
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

    use super::*;

    /// Ids too many for a dictionary fall back to deltas; a column of few values keeps its
    /// dictionary; text falls back to plain, not to deltas; and every value reads back.
    #[test]
    fn integers_past_their_dictionary_are_deltas() {
        let rows = 20_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("vdn", DataType::Int64, false),
            Field::new("call", DataType::Utf8, false),
        ]));
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(
            (0..rows).map(|i| 953_754_947_354_353_694 + i * 3),
        ));
        let vdns: ArrayRef = Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i % 7)));
        let calls: ArrayRef =
            Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("1741322807-{i}"))));
        let batch = RecordBatch::try_new(schema.clone(), vec![ids, vdns, calls]).unwrap();
        let properties = WriteLimits::default().properties(&schema).unwrap();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();

        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
        let chunk =
            |i: usize| reader.metadata().row_group(0).column(i).encodings().collect::<Vec<_>>();
        assert!(chunk(0).contains(&Encoding::DELTA_BINARY_PACKED), "{:?}", chunk(0));
        assert!(!chunk(1).contains(&Encoding::DELTA_BINARY_PACKED), "{:?}", chunk(1));
        assert!(chunk(1).contains(&Encoding::RLE_DICTIONARY), "{:?}", chunk(1));
        let deltas = [Encoding::DELTA_BINARY_PACKED, Encoding::DELTA_LENGTH_BYTE_ARRAY];
        assert!(!chunk(2).iter().any(|e| deltas.contains(e)), "{:?}", chunk(2));
        let read: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(arrow::compute::concat_batches(&batch.schema(), &read).unwrap(), batch);
    }
}
