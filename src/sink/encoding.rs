//! How a data object is encoded: zstd Parquet with page statistics, dictionaries only for
//! columns of few distinct values, and row groups bounded in rows and in bytes.

use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

/// Zstandard level of the data objects. Level 1 compresses a month of `rbt_recognition`
/// as small as level 3 did (with [`DICTIONARY_LIMIT_BYTES`], smaller), in less time.
const ZSTD_LEVEL: i32 = 1;
/// A column chunk's dictionary grows to this size at most; past it the column falls back to
/// plain encoding. Columns of few distinct values (codes, types, tenant) stay dictionary
/// encoded, while ids, times and phone numbers, nearly all distinct, stop paying for a
/// dictionary that saves nothing after the first few thousand rows.
const DICTIONARY_LIMIT_BYTES: usize = 64 * 1024;

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
    /// The writer properties of a data object with these limits.
    pub(crate) fn properties(self) -> Result<WriterProperties, ParquetError> {
        Ok(WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_dictionary_enabled(true)
            .set_dictionary_page_size_limit(DICTIONARY_LIMIT_BYTES)
            .set_max_row_group_row_count(Some(self.max_row_group_rows.max(1)))
            .set_created_by(format!("cecsync {}", env!("CARGO_PKG_VERSION")))
            .build())
    }
}
