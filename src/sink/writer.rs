//! The atomic partition commit: the winning rows of a stage become the partition's single
//! Parquet object, replaced in one PUT or one multipart completion; plus reading an existing
//! partition back (for a merge or for verification) and the rejects object.
//!
//! The bytes go through `object_store::buffered::BufWriter` (one PUT when small, a multipart
//! upload when large) and are hashed on the way, so the checkpoint can record the SHA-256 of
//! exactly what was stored. On any error the upload is aborted and the old object stays.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
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
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::crash;
use super::encoding::WriteLimits;
use super::key::KeyColumns;
use super::layout::PartitionId;
use super::stage::{PartitionStage, StagedRows, Winners};
use super::SinkError;
use crate::task::ScopedTask;

/// Bytes of an encoded spool per upload write.
const COPY_CHUNK_BYTES: usize = 1024 * 1024;

/// Rows per batch when reading a partition back.
const READ_BATCH_ROWS: usize = 8192;
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
///
/// Encoding a partition takes a while of CPU: it runs as a task of its own, so that the
/// caller's other work (the next month's pages) goes on meanwhile. Dropping the future
/// aborts the task, and with it the upload.
pub async fn write_partition_with(
    store: &Arc<dyn ObjectStore>,
    id: &PartitionId,
    stage: PartitionStage,
    limits: WriteLimits,
) -> Result<WrittenPartition, SinkError> {
    let (store, path) = (Arc::clone(store), id.data_path());
    let task =
        ScopedTask::spawn(async move { encode_partition(&store, path, stage, limits).await });
    task.await.unwrap_or_else(|e| {
        Err(SinkError::WriterTask { path: id.data_path().to_string(), detail: e.to_string() })
    })
}

/// Writes the rows of `stage` to `path` (see [`write_partition`]): its spool as it is when
/// that is already the object's encoding, else its winning rows encoded now.
async fn encode_partition(
    store: &Arc<dyn ObjectStore>,
    path: Path,
    stage: PartitionStage,
    limits: WriteLimits,
) -> Result<WrittenPartition, SinkError> {
    let parquet_err = |source| SinkError::Parquet { path: path.to_string(), source };
    let mut upload = HashingUpload::new(BufWriter::new(Arc::clone(store), path.clone()));
    let (upload, written) = match stage.into_output(limits)? {
        StagedRows::Encoded { file, rows, max_update_ms, spool_dir } => {
            let copied = copy_encoded(&mut upload, file, &spool_dir, &path).await;
            (upload, copied.map(|()| (rows, max_update_ms)))
        }
        StagedRows::Winners(winners) => {
            let winners = *winners;
            let (rows, max_update_ms) = (winners.rows(), winners.max_update_ms());
            let properties = limits.properties(winners.schema()).map_err(parquet_err)?;
            let mut writer =
                AsyncArrowWriter::try_new(upload, winners.schema().clone(), Some(properties))
                    .map_err(parquet_err)?;
            let result = write_rows(&mut writer, winners, limits, &path).await;
            (writer.into_inner(), result.map(|()| (rows, max_update_ms)))
        }
    };
    match written {
        Ok((rows, max_update_ms)) => Ok(WrittenPartition {
            rows,
            bytes: upload.bytes,
            sha256: hex::encode(upload.hasher.finalize()),
            path,
            max_update_ms,
        }),
        Err(e) => {
            upload.abort(&path).await;
            Err(e)
        }
    }
}

/// Uploads a spool that is already the object's Parquet encoding.
async fn copy_encoded(
    upload: &mut HashingUpload,
    mut file: File,
    spool_dir: &str,
    path: &Path,
) -> Result<(), SinkError> {
    let parquet_err = |source| SinkError::Parquet { path: path.to_string(), source };
    loop {
        let mut chunk = Vec::with_capacity(COPY_CHUNK_BYTES);
        (&mut file)
            .take(COPY_CHUNK_BYTES as u64)
            .read_to_end(&mut chunk)
            .map_err(|source| SinkError::SpoolFile { dir: spool_dir.to_string(), source })?;
        if chunk.is_empty() {
            break;
        }
        upload.write(Bytes::from(chunk)).await.map_err(parquet_err)?;
        crash::point(crash::BATCH_WRITTEN);
    }
    upload.complete().await.map_err(parquet_err)
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
        crash::point(crash::BATCH_WRITTEN);
    }
    writer.finish().await.map_err(parquet_err)?;
    Ok(())
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
        crash::point(crash::BEFORE_COMPLETE);
        async move { self.inner.shutdown().await.map_err(|e| ParquetError::External(Box::new(e))) }
            .boxed()
    }
}

/// Appends the rows of the existing partition object (if any) to `stage`, batch by batch,
/// so that a merge keeps old rows whose keys the new fetch did not return. Columns are
/// matched as [`read_existing`] does. Returns the rows read (0 when the object is absent).
pub async fn stage_existing(
    store: &Arc<dyn ObjectStore>,
    id: &PartitionId,
    stage: &mut PartitionStage,
) -> Result<u64, SinkError> {
    let target = stage.schema().clone();
    read_existing(store, id, &target, |batch| stage.append(&batch)).await
}

/// Hands the rows of the existing partition object (if any) to `on_batch`, batch by batch,
/// with the columns of `target`, matched by name: a column the object lacks is filled with
/// nulls when nullable, a column the schema no longer has is dropped, and anything else is
/// an error. Returns the rows read (0 when the object is absent).
pub async fn read_existing(
    store: &Arc<dyn ObjectStore>,
    id: &PartitionId,
    target: &SchemaRef,
    mut on_batch: impl FnMut(RecordBatch) -> Result<(), SinkError>,
) -> Result<u64, SinkError> {
    let path = id.data_path();
    let Some(reader) = ObjectReader::open(store, &path).await? else {
        return Ok(0);
    };
    let parquet_err = |source| SinkError::Parquet { path: path.to_string(), source };
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(parquet_err)?;
    let file_schema = builder.schema().clone();
    let wanted = column_sources(&file_schema, target, &path)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().flatten().copied());
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(parquet_err)?;
    let mut rows = 0;
    while let Some(batch) = stream.try_next().await.map_err(parquet_err)? {
        rows += batch.num_rows() as u64;
        on_batch(conform(&batch, target, &path)?)?;
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
                Err(_) => {
                    Err(bad("the column is new and not nullable, so the stored rows have no value"
                        .into()))
                }
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
            Err(source) => Err(SinkError::Store {
                action: "delete",
                path: path.to_string(),
                source: Box::new(source),
            }),
        };
    }
    let mut body = lines.join("\n");
    body.push('\n');
    store.put(&path, PutPayload::from(body)).await.map_err(|source| SinkError::Store {
        action: "write",
        path: path.to_string(),
        source: Box::new(source),
    })?;
    Ok(())
}

/// The lines of the partition's rejects object (none when it does not exist).
pub async fn read_rejects(
    store: &Arc<dyn ObjectStore>,
    id: &PartitionId,
) -> Result<Vec<String>, SinkError> {
    let path = id.rejects_path();
    let failed = |source| SinkError::Store {
        action: "read",
        path: path.to_string(),
        source: Box::new(source),
    };
    let bytes = match store.get(&path).await {
        Ok(got) => got.bytes().await.map_err(failed)?,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(failed(e)),
    };
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect())
}

/// The raw JSON of the record that a rejects line holds, as it was received.
pub fn reject_record_text(line: &str) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        record: &'a serde_json::value::RawValue,
    }
    serde_json::from_str::<Line<'_>>(line).ok().map(|l| l.record.get())
}

/// Reads a partition back for verification: row count, SHA-256 of the object bytes, and
/// whether the primary key is unique (reading the key columns only, streaming).
pub async fn inspect_partition(
    store: &Arc<dyn ObjectStore>,
    id: &PartitionId,
    key_columns: &[String],
) -> Result<PartitionFacts, SinkError> {
    let path = id.data_path();
    let store_err = |source| SinkError::Store {
        action: "read",
        path: path.to_string(),
        source: Box::new(source),
    };
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
            Err(source) => Err(SinkError::Store {
                action: "read",
                path: path.to_string(),
                source: Box::new(source),
            }),
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

#[cfg(test)]
mod tests {
    use std::fmt;

    use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::{DataType, Field, TimeUnit};
    use futures::stream::BoxStream;
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutOptions, PutResult,
    };
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

    use super::*;
    use crate::calendar::Month;
    use crate::sink::SpoolFormat;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("upd", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
        ]))
    }

    fn batch(ids: &[i64], names: &[&str], upd: &[Option<i64>]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(TimestampMillisecondArray::from(upd.to_vec()).with_timezone("UTC")),
            ],
        )
        .unwrap()
    }

    fn stage(dir: &tempfile::TempDir) -> PartitionStage {
        PartitionStage::create(dir.path(), schema(), &["id".into()], Some("upd")).unwrap()
    }

    fn stage_as(dir: &tempfile::TempDir, format: SpoolFormat) -> PartitionStage {
        PartitionStage::create_as(dir.path(), format, schema(), &["id".into()], Some("upd"))
            .unwrap()
    }

    /// Both spool formats, the Parquet one with `limits`.
    fn formats(limits: WriteLimits) -> [SpoolFormat; 2] {
        [SpoolFormat::ArrowIpc, SpoolFormat::Parquet(limits)]
    }

    fn id() -> PartitionId {
        PartitionId::new("d", "t", Month::new(2025, 1).unwrap())
    }

    fn stores() -> Vec<(Arc<dyn ObjectStore>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap().with_fsync(true);
        vec![(Arc::new(InMemory::new()), tempfile::tempdir().unwrap()), (Arc::new(local), dir)]
    }

    /// The stored object, its batches concatenated, and its row-group count.
    async fn read_back(store: &Arc<dyn ObjectStore>, path: &Path) -> (RecordBatch, usize, Bytes) {
        let bytes = store.get(path).await.unwrap().bytes().await.unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap();
        let groups = builder.metadata().num_row_groups();
        let schema = builder.schema().clone();
        let batches: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
        (concat_batches(&schema, &batches).unwrap(), groups, bytes)
    }

    /// Duplicates keep their newest version (ties go to the later row, a null update time is
    /// oldest), the losers are absent, the order is the staging order, and the reported
    /// size and hash are those of the stored object; whichever the spool format (a Parquet
    /// spool with losers is read back and filtered like an IPC one).
    #[tokio::test]
    async fn newest_version_of_each_key_is_written() {
        let (stores, dir) = (stores(), tempfile::tempdir().unwrap());
        let cases = stores
            .iter()
            .flat_map(|(store, _)| formats(WriteLimits::default()).map(|f| (Arc::clone(store), f)));
        for (store, format) in cases {
            let mut s = stage_as(&dir, format);
            s.append(&batch(&[1, 2, 3], &["a", "b", "c"], &[Some(10), Some(10), Some(10)]))
                .unwrap();
            s.append(&batch(
                &[2, 3, 4, 1],
                &["b2", "c2", "d", "a2"],
                &[Some(10), Some(5), None, None],
            ))
            .unwrap();
            assert_eq!((s.rows_appended(), s.distinct_rows(), s.max_update_ms()), (7, 4, Some(10)));
            let written = write_partition(&store, &id(), s).await.unwrap();
            let (got, groups, bytes) = read_back(&store, &id().data_path()).await;
            let want =
                batch(&[1, 3, 2, 4], &["a", "c", "b2", "d"], &[Some(10), Some(10), Some(10), None]);
            assert_eq!(got, want);
            assert_eq!(groups, 1);
            assert_eq!(written.rows, 4);
            assert_eq!(written.max_update_ms, Some(10));
            assert_eq!(written.bytes, bytes.len() as u64);
            assert_eq!(written.sha256, hex::encode(Sha256::digest(&bytes)));
            let facts = inspect_partition(&store, &id(), &["id".into()]).await.unwrap();
            assert_eq!((facts.rows, facts.bytes, facts.key_is_unique()), (4, written.bytes, true));
            assert_eq!(facts.sha256, written.sha256);
        }
    }

    /// A partition larger than a row group streams into several row groups, and writing the
    /// partition again replaces the object: one object, holding only the new rows.
    #[tokio::test]
    async fn large_partitions_stream_and_rewrites_replace() {
        let limits = WriteLimits { max_row_group_rows: 1000, ..WriteLimits::default() };
        let (stores, dir) = (stores(), tempfile::tempdir().unwrap());
        let cases =
            stores.iter().flat_map(|(store, _)| formats(limits).map(|f| (Arc::clone(store), f)));
        for (store, format) in cases {
            let mut s = stage_as(&dir, format);
            let mut parts = Vec::new();
            for chunk in 0..5 {
                let ids: Vec<i64> = (chunk * 1000..(chunk + 1) * 1000).collect();
                let b = batch(&ids, &vec!["x"; 1000], &vec![Some(1); 1000]);
                s.append(&b).unwrap();
                parts.push(b);
            }
            write_partition_with(&store, &id(), s, limits).await.unwrap();
            let (got, groups, _) = read_back(&store, &id().data_path()).await;
            assert_eq!(got, concat_batches(&schema(), &parts).unwrap());
            assert!(groups > 1, "{groups} row groups");

            let mut s = stage_as(&dir, format);
            s.append(&batch(&[7], &["only"], &[Some(2)])).unwrap();
            write_partition_with(&store, &id(), s, limits).await.unwrap();
            let (got, _, _) = read_back(&store, &id().data_path()).await;
            assert_eq!(got, batch(&[7], &["only"], &[Some(2)]));
            let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
            assert_eq!(listed.len(), 1, "{listed:?}");
        }
    }

    /// When every row wins, a Parquet spool is uploaded as it is, and it is the very object an
    /// IPC spool of the same rows is encoded into: the same bytes, whichever the spool, so a
    /// rewrite of unchanged rows leaves the lake byte for byte as it was.
    #[tokio::test]
    async fn a_parquet_spool_is_the_object_an_ipc_spool_encodes() {
        let limits = WriteLimits { max_row_group_rows: 2500, ..WriteLimits::default() };
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = tempfile::tempdir().unwrap();
        // 4000 distinct rows in four batches, some without an update time.
        let filled = |format| {
            let mut s = stage_as(&dir, format);
            for chunk in 0..4 {
                let ids: Vec<i64> = (chunk * 1000..(chunk + 1) * 1000).collect();
                let names: Vec<String> = ids.iter().map(|i| format!("name {i:05}")).collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let upd: Vec<Option<i64>> = ids.iter().map(|&i| (i % 7 > 0).then_some(i)).collect();
                s.append(&batch(&ids, &names, &upd)).unwrap();
            }
            s
        };
        let mut objects = Vec::new();
        for format in formats(limits) {
            let encoded =
                matches!(filled(format).into_output(limits), Ok(StagedRows::Encoded { .. }));
            assert_eq!(encoded, format != SpoolFormat::ArrowIpc, "{format:?}");
            let s = filled(format);
            let written = write_partition_with(&store, &id(), s, limits).await.unwrap();
            let (got, groups, bytes) = read_back(&store, &id().data_path()).await;
            assert_eq!((got.num_rows(), groups, written.rows), (4000, 2, 4000));
            assert_eq!(written.max_update_ms, Some(3999));
            assert_eq!(written.sha256, hex::encode(Sha256::digest(&bytes)));
            objects.push(bytes);
        }
        assert!(objects[0] == objects[1], "the two spools wrote different objects");
    }

    /// Losers spread over several row groups and read batches of a Parquet spool are
    /// filtered out exactly: the object holds what an IPC spool of the same rows gives.
    #[tokio::test]
    async fn losers_across_row_groups_are_filtered_from_a_parquet_spool() {
        let limits = WriteLimits { max_row_group_rows: 2500, ..WriteLimits::default() };
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = tempfile::tempdir().unwrap();
        let rows = |ids: &[i64], name: &str, upd: i64| {
            batch(ids, &vec![name; ids.len()], &vec![Some(upd); ids.len()])
        };
        let resent: Vec<i64> = (0..15_000).filter(|i| i % 7 == 0).collect();
        let mut objects = Vec::new();
        for format in formats(limits) {
            let mut s = stage_as(&dir, format);
            for chunk in 0..3 {
                let ids: Vec<i64> = (chunk * 5000..(chunk + 1) * 5000).collect();
                s.append(&rows(&ids, "old", 1)).unwrap();
            }
            s.append(&rows(&resent, "new", 2)).unwrap();
            let written = write_partition_with(&store, &id(), s, limits).await.unwrap();
            assert_eq!(written.rows, 15_000);
            objects.push(read_back(&store, &id().data_path()).await.0);
        }
        assert_eq!(objects[0], objects[1]);
        let got = &objects[1];
        let kept: Vec<i64> = (0..15_000).filter(|i| i % 7 != 0).collect();
        let want =
            concat_batches(&schema(), &[rows(&kept, "old", 1), rows(&resent, "new", 2)]).unwrap();
        assert_eq!(got, &want);
    }

    /// A merge keeps old rows whose keys the new fetch lacks, and new versions win.
    #[tokio::test]
    async fn merge_unions_by_key_and_new_versions_win() {
        for (store, dir) in stores() {
            let mut s = stage(&dir);
            assert_eq!(stage_existing(&store, &id(), &mut s).await.unwrap(), 0);
            s.append(&batch(&[1, 2], &["a", "b"], &[Some(1), Some(1)])).unwrap();
            write_partition(&store, &id(), s).await.unwrap();

            let mut s = stage(&dir);
            assert_eq!(stage_existing(&store, &id(), &mut s).await.unwrap(), 2);
            s.append(&batch(&[2, 3], &["b2", "c"], &[Some(2), Some(2)])).unwrap();
            write_partition(&store, &id(), s).await.unwrap();
            let (got, _, _) = read_back(&store, &id().data_path()).await;
            assert_eq!(got, batch(&[1, 2, 3], &["a", "b2", "c"], &[Some(1), Some(2), Some(2)]));
        }
    }

    /// An old object is mapped by column name: a new nullable column is null-filled, a
    /// removed column is dropped, and a type change or a new required column is an error.
    #[tokio::test]
    async fn existing_objects_map_by_column_name() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = tempfile::tempdir().unwrap();
        write_partition(&store, &id(), {
            let mut s = stage(&dir);
            s.append(&batch(&[1], &["a"], &[Some(1)])).unwrap();
            s
        })
        .await
        .unwrap();
        let evolved = |extra: Field| {
            let mut fields: Vec<Field> = schema()
                .fields()
                .iter()
                .filter(|f| f.name() != "name")
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(extra);
            Arc::new(Schema::new(fields))
        };
        let added = evolved(Field::new("note", DataType::Utf8, true));
        let mut s =
            PartitionStage::create(dir.path(), added.clone(), &["id".into()], None).unwrap();
        assert_eq!(stage_existing(&store, &id(), &mut s).await.unwrap(), 1);
        write_partition(&store, &id(), s).await.unwrap();
        let (got, _, _) = read_back(&store, &id().data_path()).await;
        assert_eq!(got.schema(), added);
        assert_eq!(got.column(2).null_count(), 1);

        for bad in [
            Field::new("required", DataType::Utf8, false),
            Field::new("upd", DataType::Int64, true),
        ] {
            let mut fields = vec![Field::new("id", DataType::Int64, false)];
            fields.push(bad);
            let mut s = PartitionStage::create(
                dir.path(),
                Arc::new(Schema::new(fields)),
                &["id".into()],
                None,
            )
            .unwrap();
            let err = stage_existing(&store, &id(), &mut s).await.unwrap_err();
            assert!(matches!(err, SinkError::ExistingSchema { .. }), "{err}");
            assert!(err.to_string().contains("d/tenant_id=t/month=2025-01"), "{err}");
        }
    }

    /// A store that refuses the upload fails the write and leaves the old object intact.
    #[tokio::test]
    async fn failed_write_leaves_the_old_object() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = tempfile::tempdir().unwrap();
        let mut s = stage(&dir);
        s.append(&batch(&[1], &["old"], &[Some(1)])).unwrap();
        write_partition(&inner, &id(), s).await.unwrap();
        let (before, _, before_bytes) = read_back(&inner, &id().data_path()).await;

        let failing: Arc<dyn ObjectStore> = Arc::new(RefusingStore(inner.clone()));
        let mut s = stage(&dir);
        s.append(&batch(&[2], &["new"], &[Some(2)])).unwrap();
        let err = write_partition(&failing, &id(), s).await.unwrap_err();
        assert!(err.to_string().contains(id().data_path().as_ref()), "{err}");
        let (after, _, after_bytes) = read_back(&inner, &id().data_path()).await;
        assert_eq!((after, after_bytes), (before, before_bytes));
    }

    /// An empty stage still writes a valid Parquet file with the schema and no rows.
    #[tokio::test]
    async fn empty_partition_is_a_valid_file() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = tempfile::tempdir().unwrap();
        let written = write_partition(&store, &id(), stage(&dir)).await.unwrap();
        let (got, _, _) = read_back(&store, &id().data_path()).await;
        assert_eq!((got.num_rows(), got.schema()), (0, schema()));
        assert_eq!((written.rows, written.max_update_ms), (0, None));
    }

    /// Verification counts rows whose key repeats.
    #[tokio::test]
    async fn inspect_finds_duplicate_keys() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema(), None).unwrap();
        w.write(&batch(&[1, 2, 1, 1], &["a", "b", "c", "d"], &[None; 4])).unwrap();
        w.close().unwrap();
        store.put(&id().data_path(), PutPayload::from(buf)).await.unwrap();
        let facts = inspect_partition(&store, &id(), &["id".into()]).await.unwrap();
        assert_eq!((facts.rows, facts.duplicate_keys, facts.key_is_unique()), (4, 2, false));
    }

    /// Rejects are written one per line, and an empty list removes the object (absent or not).
    #[tokio::test]
    async fn rejects_are_written_and_removed() {
        for (store, _dir) in stores() {
            write_rejects(&store, &id(), &[]).await.unwrap();
            write_rejects(&store, &id(), &[r#"{"a":1}"#.into(), r#"{"b":2}"#.into()])
                .await
                .unwrap();
            let body = store.get(&id().rejects_path()).await.unwrap().bytes().await.unwrap();
            assert_eq!(body.as_ref(), b"{\"a\":1}\n{\"b\":2}\n");
            write_rejects(&store, &id(), &[]).await.unwrap();
            assert!(store.head(&id().rejects_path()).await.is_err());
        }
    }

    /// A store that refuses every write and delegates everything else.
    #[derive(Debug)]
    struct RefusingStore(Arc<dyn ObjectStore>);

    impl fmt::Display for RefusingStore {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "RefusingStore")
        }
    }

    fn refused() -> object_store::Error {
        object_store::Error::Generic { store: "RefusingStore", source: "write refused".into() }
    }

    #[async_trait::async_trait]
    impl ObjectStore for RefusingStore {
        async fn put_opts(
            &self,
            _: &Path,
            _: PutPayload,
            _: PutOptions,
        ) -> object_store::Result<PutResult> {
            Err(refused())
        }
        async fn put_multipart_opts(
            &self,
            _: &Path,
            _: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            Err(refused())
        }
        async fn get_opts(&self, p: &Path, o: GetOptions) -> object_store::Result<GetResult> {
            self.0.get_opts(p, o).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }
        fn list(&self, p: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.0.list(p)
        }
        async fn list_with_delimiter(&self, p: Option<&Path>) -> object_store::Result<ListResult> {
            self.0.list_with_delimiter(p).await
        }
        async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
            Err(refused())
        }
    }
}
