//! The atomic partition commit: the winning rows of a stage become the partition's single
//! Parquet object, replaced in one PUT or one multipart completion; plus reading an existing
//! partition back (for a merge or for verification) and the rejects object.
//!
//! The bytes go through `object_store::buffered::BufWriter` (one PUT when small, a multipart
//! upload when large) and are hashed on the way, so the checkpoint can record the SHA-256 of
//! exactly what was stored. On any error the upload is aborted and the old object stays.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::async_writer::{AsyncArrowWriter, AsyncFileWriter};
use parquet::arrow::ProjectionMask;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::key::KeyColumns;
use super::layout::PartitionId;
use super::stage::{PartitionStage, Winners};
use super::SinkError;

/// Rows per batch when reading a partition back.
const READ_BATCH_ROWS: usize = 8192;
/// Zstandard level of the data objects.
const ZSTD_LEVEL: i32 = 3;

/// A partition object that was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenPartition {
    /// Rows in the object (one per key).
    pub rows: u64,
    /// Size of the object in bytes.
    pub bytes: u64,
    /// SHA-256 of the object's bytes, lowercase hex.
    pub sha256: String,
    /// The object.
    pub path: Path,
    /// The newest update time among the rows (epoch ms), if any.
    pub max_update_ms: Option<i64>,
}

/// What a partition object holds, read back for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFacts {
    /// The object.
    pub path: Path,
    /// Rows read.
    pub rows: u64,
    /// Size of the object in bytes.
    pub bytes: u64,
    /// SHA-256 of the object's bytes, lowercase hex.
    pub sha256: String,
    /// Rows whose key appeared earlier in the object (0 when the key is unique).
    pub duplicate_keys: u64,
}

impl PartitionFacts {
    /// True when no two rows share a primary key.
    pub fn key_is_unique(&self) -> bool {
        self.duplicate_keys == 0
    }
}

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

/// Streams the winning rows of `stage` (in staging order, losers filtered out with
/// arrow's filter kernel) into `id.data_path()` as zstd Parquet with statistics, replacing
/// the object atomically, with the default [`WriteLimits`]. On error the upload is aborted
/// and the old object stays. A stage with no rows still writes a valid, empty file.
pub async fn write_partition(
    store: &Arc<dyn ObjectStore>,
    id: &PartitionId,
    stage: PartitionStage,
) -> Result<WrittenPartition, SinkError> {
    write_partition_with(store, id, stage, WriteLimits::default()).await
}

/// [`write_partition`] with explicit row-group limits.
pub async fn write_partition_with(
    store: &Arc<dyn ObjectStore>,
    id: &PartitionId,
    stage: PartitionStage,
    limits: WriteLimits,
) -> Result<WrittenPartition, SinkError> {
    let path = id.data_path();
    let parquet_err = |source| SinkError::Parquet { path: path.to_string(), source };
    let winners = stage.into_winners()?;
    let (rows, max_update_ms) = (winners.rows(), winners.max_update_ms());
    let upload = HashingUpload::new(BufWriter::new(Arc::clone(store), path.clone()));
    let mut writer =
        AsyncArrowWriter::try_new(upload, winners.schema().clone(), Some(properties(limits)?))
            .map_err(parquet_err)?;
    match write_rows(&mut writer, winners, limits, &path).await {
        Ok(()) => {
            let upload = writer.into_inner();
            Ok(WrittenPartition {
                rows,
                bytes: upload.bytes,
                sha256: hex::encode(upload.hasher.finalize()),
                path,
                max_update_ms,
            })
        }
        Err(e) => {
            writer.into_inner().abort(&path).await;
            Err(e)
        }
    }
}

async fn write_rows(
    writer: &mut AsyncArrowWriter<HashingUpload>,
    winners: Winners,
    limits: WriteLimits,
    path: &Path,
) -> Result<(), SinkError> {
    let parquet_err = |source| SinkError::Parquet { path: path.to_string(), source };
    for batch in winners {
        writer.write(&batch?).await.map_err(parquet_err)?;
        if writer.in_progress_size() > limits.max_row_group_bytes {
            writer.flush().await.map_err(parquet_err)?;
        }
    }
    writer.finish().await.map_err(parquet_err)?;
    Ok(())
}

fn properties(limits: WriteLimits) -> Result<WriterProperties, SinkError> {
    let level = ZstdLevel::try_new(ZSTD_LEVEL)
        .map_err(|source| SinkError::Parquet { path: String::new(), source })?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(true)
        .set_max_row_group_row_count(Some(limits.max_row_group_rows.max(1)))
        .set_created_by(format!("cecsync {}", env!("CARGO_PKG_VERSION")))
        .build())
}

/// The upload of a data object: a `BufWriter` that also hashes and counts the bytes.
struct HashingUpload {
    inner: BufWriter,
    hasher: Sha256,
    bytes: u64,
    completing: bool,
}

impl HashingUpload {
    fn new(inner: BufWriter) -> Self {
        Self { inner, hasher: Sha256::new(), bytes: 0, completing: false }
    }

    /// Cleans up a partial multipart upload. Once completion has started the upload can no
    /// longer be aborted, and a failed completion publishes nothing.
    async fn abort(mut self, path: &Path) {
        if !self.completing {
            if let Err(error) = self.inner.abort().await {
                tracing::warn!(path = %path, %error, "Could not abort a failed upload.");
            }
        }
    }
}

impl AsyncFileWriter for HashingUpload {
    fn write(&mut self, bs: Bytes) -> BoxFuture<'_, parquet::errors::Result<()>> {
        self.hasher.update(&bs);
        self.bytes += bs.len() as u64;
        async move { self.inner.put(bs).await.map_err(|e| ParquetError::External(Box::new(e))) }
            .boxed()
    }

    fn complete(&mut self) -> BoxFuture<'_, parquet::errors::Result<()>> {
        self.completing = true;
        async move { self.inner.shutdown().await.map_err(|e| ParquetError::External(Box::new(e))) }
            .boxed()
    }
}

/// Appends the rows of the existing partition object (if any) to `stage`, batch by batch,
/// so that a merge keeps old rows whose keys the new fetch did not return. Columns are
/// matched by name: a column the object lacks is filled with nulls when nullable, a column
/// the schema no longer has is dropped, and anything else is an error. Returns the rows read
/// (0 when the object is absent).
pub async fn stage_existing(
    store: &Arc<dyn ObjectStore>,
    id: &PartitionId,
    stage: &mut PartitionStage,
) -> Result<u64, SinkError> {
    let path = id.data_path();
    let Some(reader) = ObjectReader::open(store, &path).await? else {
        return Ok(0);
    };
    let parquet_err = |source| SinkError::Parquet { path: path.to_string(), source };
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(parquet_err)?;
    let target = stage.schema().clone();
    let file_schema = builder.schema().clone();
    let wanted = column_sources(&file_schema, &target, &path)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().flatten().copied());
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(parquet_err)?;
    let mut rows = 0;
    while let Some(batch) = stream.try_next().await.map_err(parquet_err)? {
        stage.append(&conform(&batch, &target, &path)?)?;
        rows += batch.num_rows() as u64;
    }
    Ok(rows)
}

/// For each target column, the index of the file column of that name (None: fill with
/// nulls); refuses type changes and new non-nullable columns.
fn column_sources(
    file: &Schema,
    target: &Schema,
    path: &Path,
) -> Result<Vec<Option<usize>>, SinkError> {
    target
        .fields()
        .iter()
        .map(|field| {
            let bad = |problem: String| SinkError::ExistingSchema {
                path: path.to_string(),
                column: field.name().clone(),
                problem,
            };
            match file.index_of(field.name()) {
                Ok(i) if file.field(i).data_type() == field.data_type() => Ok(Some(i)),
                Ok(i) => Err(bad(format!(
                    "stored as {}, the schema says {}; rewrite the partition with a backfill",
                    file.field(i).data_type(),
                    field.data_type()
                ))),
                Err(_) if field.is_nullable() => Ok(None),
                Err(_) => Err(bad(
                    "the column is new and not nullable, so the stored rows have no value".into(),
                )),
            }
        })
        .collect()
}

/// Rebuilds a batch read from an existing object with the target schema, by column name.
fn conform(batch: &RecordBatch, target: &SchemaRef, path: &Path) -> Result<RecordBatch, SinkError> {
    let columns: Vec<ArrayRef> = target
        .fields()
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .cloned()
                .unwrap_or_else(|| new_null_array(f.data_type(), batch.num_rows()))
        })
        .collect();
    RecordBatch::try_new(target.clone(), columns).map_err(|source| SinkError::Arrow {
        context: format!("existing partition {path}"),
        source,
    })
}

/// Writes (or, when `lines` is empty, deletes) the partition's rejects object: one JSON
/// document per line.
pub async fn write_rejects(
    store: &Arc<dyn ObjectStore>,
    id: &PartitionId,
    lines: &[String],
) -> Result<(), SinkError> {
    let path = id.rejects_path();
    if lines.is_empty() {
        return match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(SinkError::Store { action: "delete", path: path.to_string(), source }),
        };
    }
    let mut body = lines.join("\n");
    body.push('\n');
    store.put(&path, PutPayload::from(body)).await.map_err(|source| SinkError::Store {
        action: "write",
        path: path.to_string(),
        source,
    })?;
    Ok(())
}

/// Reads a partition back for verification: row count, SHA-256 of the object bytes, and
/// whether the primary key is unique (reading the key columns only, streaming).
pub async fn inspect_partition(
    store: &Arc<dyn ObjectStore>,
    id: &PartitionId,
    key_columns: &[String],
) -> Result<PartitionFacts, SinkError> {
    let path = id.data_path();
    let store_err = |source| SinkError::Store { action: "read", path: path.to_string(), source };
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut chunks = store.get(&path).await.map_err(store_err)?.into_stream();
    while let Some(chunk) = chunks.try_next().await.map_err(store_err)? {
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
    }
    let parquet_err = |source| SinkError::Parquet { path: path.to_string(), source };
    let reader = ObjectReader { store: Arc::clone(store), path: path.clone(), size: bytes };
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(parquet_err)?;
    let keys = KeyColumns::new(builder.schema(), key_columns)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), keys.indices().iter().copied());
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(parquet_err)?;
    let mut seen: HashSet<Box<[u8]>> = HashSet::new();
    let (mut rows, mut duplicate_keys) = (0u64, 0u64);
    while let Some(batch) = stream.try_next().await.map_err(parquet_err)? {
        let columns = key_columns
            .iter()
            .map(|name| {
                batch.column_by_name(name).cloned().ok_or_else(|| SinkError::KeyColumn {
                    column: name.clone(),
                    problem: format!("missing from {path}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for key in keys.encode_columns(columns)?.iter() {
            if !seen.insert(key.as_ref().into()) {
                duplicate_keys += 1;
            }
        }
        rows += batch.num_rows() as u64;
    }
    Ok(PartitionFacts { path, rows, bytes, sha256: hex::encode(hasher.finalize()), duplicate_keys })
}

/// Ranged reads of one Parquet object, for parquet's async reader.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl ObjectReader {
    /// The reader of the object at `path`, or None when there is none.
    async fn open(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Option<Self>, SinkError> {
        match store.head(path).await {
            Ok(meta) => {
                Ok(Some(Self { store: Arc::clone(store), path: path.clone(), size: meta.size }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(SinkError::Store { action: "read", path: path.to_string(), source }),
        }
    }
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new().load_and_finish(self, size).await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
