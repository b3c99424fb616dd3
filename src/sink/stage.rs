//! Staging one partition before it is written: rows are spooled to a local file (memory
//! stays flat however large the month), and an index of primary keys remembers, per key,
//! only the row number and update time of its newest version — never the row.
//!
//! The spool is Arrow IPC for a merge, whose staged existing rows are mostly replaced by the
//! fetched ones, and the data object's own Parquet encoding for a stage that starts empty:
//! when no row lost to a newer version of its key (the usual case), that file is the data
//! object as it is, and the rows are encoded once, while they arrive. Otherwise the spool is
//! read back batch by batch and the rows that lost are filtered out, so the output keeps the
//! staging order.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom};
use std::path::Path;

use arrow::array::{Array, AsArray, BooleanArray, BooleanBufferBuilder};
use arrow::buffer::BooleanBuffer;
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit, TimestampMillisecondType};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;

use super::encoding::WriteLimits;
use super::kept::KeptColumns;
use super::key::KeyColumns;
use super::key_index::KeyIndex;
use super::SinkError;

/// Rows per batch when a Parquet spool is read back.
const SPOOL_READ_ROWS: usize = 8192;

/// How a stage keeps its rows until the partition is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolFormat {
    /// Arrow IPC, cheap to write and to read back: for a stage whose rows will mostly be
    /// filtered (a merge stages the partition's existing rows before the fetched ones).
    ArrowIpc,
    /// The data object's Parquet encoding with these limits, written as rows arrive: when
    /// every staged row wins, the spool is the data object byte for byte.
    Parquet(WriteLimits),
}

/// The spool file being written.
enum Spool {
    Ipc(StreamWriter<BufWriter<File>>),
    Parquet { writer: ArrowWriter<File>, limits: WriteLimits },
}

impl Spool {
    fn create(dir: &Path, schema: &SchemaRef, format: SpoolFormat) -> Result<Self, SinkError> {
        let dir_name = || dir.display().to_string();
        // The configured folder is created on first use.
        let file = std::fs::create_dir_all(dir)
            .and_then(|()| tempfile::tempfile_in(dir))
            .map_err(|source| SinkError::SpoolFile { dir: dir_name(), source })?;
        Ok(match format {
            SpoolFormat::ArrowIpc => Spool::Ipc(
                StreamWriter::try_new_buffered(file, schema)
                    .map_err(|source| SinkError::Spool { dir: dir_name(), source })?,
            ),
            SpoolFormat::Parquet(limits) => {
                let parquet_err = |source| SinkError::ParquetSpool { dir: dir_name(), source };
                let properties = limits.properties(schema).map_err(parquet_err)?;
                let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))
                    .map_err(parquet_err)?;
                Spool::Parquet { writer, limits }
            }
        })
    }

    fn write(&mut self, batch: &RecordBatch, dir: &str) -> Result<(), SinkError> {
        match self {
            Spool::Ipc(writer) => writer
                .write(batch)
                .map_err(|source| SinkError::Spool { dir: dir.to_string(), source }),
            Spool::Parquet { writer, limits } => {
                let parquet_err = |source| SinkError::ParquetSpool { dir: dir.to_string(), source };
                writer.write(batch).map_err(parquet_err)?;
                if writer.in_progress_size() > limits.max_row_group_bytes {
                    writer.flush().map_err(parquet_err)?;
                }
                Ok(())
            }
        }
    }

    /// Completes the file and returns it rewound.
    fn finish(self, dir: &str) -> Result<File, SinkError> {
        let file_err = |source| SinkError::SpoolFile { dir: dir.to_string(), source };
        let mut file = match self {
            Spool::Ipc(mut writer) => {
                let spool_err = |source| SinkError::Spool { dir: dir.to_string(), source };
                writer.finish().map_err(spool_err)?;
                let buffered = writer.into_inner().map_err(spool_err)?;
                buffered.into_inner().map_err(|e| file_err(e.into_error()))?
            }
            Spool::Parquet { writer, .. } => writer
                .into_inner()
                .map_err(|source| SinkError::ParquetSpool { dir: dir.to_string(), source })?,
        };
        file.seek(SeekFrom::Start(0)).map_err(file_err)?;
        Ok(file)
    }

    /// Completes the file and opens it to be read back; batches take `schema`.
    fn into_reader(self, schema: &SchemaRef, dir: &str) -> Result<SpoolReader, SinkError> {
        let ipc = matches!(self, Spool::Ipc(_));
        let file = self.finish(dir)?;
        if ipc {
            let reader = StreamReader::try_new_buffered(file, None)
                .map_err(|source| SinkError::Spool { dir: dir.to_string(), source })?;
            return Ok(SpoolReader::Ipc(reader));
        }
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|builder| builder.with_batch_size(SPOOL_READ_ROWS).build())
            .map_err(|source| SinkError::ParquetSpool { dir: dir.to_string(), source })?;
        Ok(SpoolReader::Parquet { reader, schema: schema.clone() })
    }
}

/// A finished spool read back batch by batch.
enum SpoolReader {
    Ipc(StreamReader<BufReader<File>>),
    Parquet { reader: ParquetRecordBatchReader, schema: SchemaRef },
}

impl SpoolReader {
    fn next_batch(&mut self) -> Option<Result<RecordBatch, arrow::error::ArrowError>> {
        match self {
            SpoolReader::Ipc(reader) => reader.next(),
            // The batches take the stage's own schema (field metadata included).
            SpoolReader::Parquet { reader, schema } => reader.next().map(|batch| {
                batch.and_then(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
            }),
        }
    }
}

/// What a closed stage hands to the writer.
pub(crate) enum StagedRows {
    /// Every staged row won and the spool is their Parquet encoding: the data object as it is.
    Encoded {
        /// The Parquet file, rewound.
        file: File,
        /// Its rows.
        rows: u64,
        /// The newest update time among them.
        max_update_ms: Option<i64>,
        /// The spool folder, for errors.
        spool_dir: String,
    },
    /// The winning rows, to be encoded.
    Winners(Box<Winners>),
}

/// Rows of one partition being assembled: spooled to a local file (memory stays flat however
/// large the month), with an index of primary keys so that each key keeps only its newest
/// version.
pub struct PartitionStage {
    schema: SchemaRef,
    keys: KeyColumns,
    update_column: Option<usize>,
    spool: Spool,
    spool_dir: String,
    index: KeyIndex<Version>,
    rows_appended: u64,
    fetch_start: u64,
    fetch_mark: u32,
    fetched_keys: u64,
    broken: bool,
    kept: KeptColumns,
}

/// The staged version of a key: where it is in the spool and how new it is.
#[derive(Debug, Clone, Copy)]
struct Version {
    row: u64,
    update_ms: Option<i64>,
    /// The fetch mark under which the key was last appended (0: an existing row staged
    /// before any mark); the key counts as fetched when it equals the current mark.
    mark: u32,
}

impl PartitionStage {
    /// Starts an empty stage whose Arrow IPC spool file lives in `spool_dir` (it is removed
    /// when the stage is dropped, and never visible under a name).
    ///
    /// `key_columns` must be Int64, Int32 or Utf8 columns of `schema`; `update_column`, when
    /// given, a `Timestamp(ms)` or Int64 column.
    pub fn create(
        spool_dir: &Path,
        schema: SchemaRef,
        key_columns: &[String],
        update_column: Option<&str>,
    ) -> Result<Self, SinkError> {
        Self::create_as(spool_dir, SpoolFormat::ArrowIpc, schema, key_columns, update_column)
    }

    /// [`create`](Self::create) with a spool of `format`.
    pub fn create_as(
        spool_dir: &Path,
        format: SpoolFormat,
        schema: SchemaRef,
        key_columns: &[String],
        update_column: Option<&str>,
    ) -> Result<Self, SinkError> {
        let keys = KeyColumns::new(&schema, key_columns)?;
        let index = KeyIndex::new(&keys, &schema);
        let update_column = update_column.map(|name| update_index(&schema, name)).transpose()?;
        let dir = spool_dir.display().to_string();
        let spool = Spool::create(spool_dir, &schema, format)?;
        Ok(Self {
            schema,
            keys,
            update_column,
            spool,
            spool_dir: dir,
            index,
            rows_appended: 0,
            fetch_start: 0,
            fetch_mark: 0,
            fetched_keys: 0,
            broken: false,
            kept: KeptColumns::default(),
        })
    }

    /// Keeps the text columns `names` when a newer version of a key leaves them null (the
    /// newest earlier value stays; see [`KeptColumns`]). For a stage without an update
    /// column, where the later version always wins.
    pub fn keeping(mut self, names: &[String]) -> Result<Self, SinkError> {
        self.kept = KeptColumns::new(&self.schema, names)?;
        Ok(self)
    }

    /// The schema every appended batch must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Appends rows; a row whose key is already staged replaces the earlier one when its
    /// update time is >= (a null update time counts as oldest; later-appended wins ties).
    pub fn append(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.check_usable()?;
        if batch.schema().fields() != self.schema.fields() {
            return Err(SinkError::BatchSchema {
                expected: field_list(&self.schema),
                found: field_list(&batch.schema()),
            });
        }
        // Null keys are refused before anything is spooled.
        let columns: Vec<_> =
            self.keys.indices().iter().map(|&i| batch.column(i).clone()).collect();
        self.keys.check_nulls(&columns)?;
        let updates = self.update_column.map(|i| update_values(batch.column(i).as_ref()));
        // Until the spool and the index both hold the batch, the stage is unusable.
        self.broken = true;
        self.spool.write(batch, &self.spool_dir)?;
        let (first_row, fetch_start, current) =
            (self.rows_appended, self.fetch_start, self.fetch_mark);
        let fetched_keys = &mut self.fetched_keys;
        let kept = &mut self.kept;
        self.index.update(&self.keys, batch, |i, staged| {
            let update_ms = updates.as_ref().and_then(|u| u[i]);
            let row = first_row + i as u64;
            let fetched = current > 0 && row >= fetch_start;
            let mark = if fetched { current } else { 0 };
            let candidate = Version { row, update_ms, mark };
            match staged {
                Some(staged) => {
                    if fetched && staged.mark != current {
                        *fetched_keys += 1;
                    }
                    let mark = mark.max(staged.mark);
                    if candidate.update_ms >= staged.update_ms {
                        kept.replaced(staged.row, candidate.row);
                        *staged = candidate;
                    }
                    staged.mark = mark;
                    *staged
                }
                None => {
                    *fetched_keys += u64::from(fetched);
                    candidate
                }
            }
        })?;
        self.rows_appended += batch.num_rows() as u64;
        self.broken = false;
        Ok(())
    }

    /// Rows appended so far, duplicates included.
    pub fn rows_appended(&self) -> u64 {
        self.rows_appended
    }

    /// Marks the rows appended from now on as the fetched ones (rows appended before are
    /// the partition's existing rows, staged for a merge, or those of an earlier request):
    /// called before each request, whose distinct keys are then reconciled with its total.
    pub fn mark_fetch_start(&mut self) {
        self.fetch_start = self.rows_appended;
        self.fetch_mark += 1;
        self.fetched_keys = 0;
    }

    /// Distinct keys appended since [`Self::mark_fetch_start`]: what the fetch returned,
    /// to be reconciled with the API's total.
    pub fn distinct_fetched(&self) -> u64 {
        self.fetched_keys
    }

    /// Distinct keys staged so far: the rows that will be written.
    pub fn distinct_rows(&self) -> u64 {
        self.index.len() as u64
    }

    /// The newest update time among the winning rows (epoch ms), if any.
    pub fn max_update_ms(&self) -> Option<i64> {
        self.index.values().filter_map(|v| v.update_ms).max()
    }

    /// Closes the spool: the data object itself when it is Parquet encoded with `limits` and
    /// every staged row won, else the winning rows to encode.
    pub(crate) fn into_output(self, limits: WriteLimits) -> Result<StagedRows, SinkError> {
        self.check_usable()?;
        let all_won = self.index.len() as u64 == self.rows_appended;
        let encoded =
            matches!(self.spool, Spool::Parquet { limits: spooled, .. } if spooled == limits);
        if !(all_won && encoded) {
            return self.into_winners().map(|winners| StagedRows::Winners(Box::new(winners)));
        }
        let (rows, max_update_ms) = (self.rows_appended, self.max_update_ms());
        let file = self.spool.finish(&self.spool_dir)?;
        Ok(StagedRows::Encoded { file, rows, max_update_ms, spool_dir: self.spool_dir })
    }

    /// Closes the spool and returns the winning rows, in staging order.
    pub(crate) fn into_winners(self) -> Result<Winners, SinkError> {
        self.check_usable()?;
        let rows = usize::try_from(self.rows_appended)
            .map_err(|_| SinkError::TooManyRows { rows: self.rows_appended })?;
        let mut keep = BooleanBufferBuilder::new(rows);
        keep.append_n(rows, false);
        for version in self.index.values() {
            // Row numbers are below `rows_appended`, which fits in usize (checked above).
            keep.set_bit(version.row as usize, true);
        }
        let distinct = self.index.len() as u64;
        let max_update_ms = self.max_update_ms();
        let reader = self.spool.into_reader(&self.schema, &self.spool_dir)?;
        Ok(Winners {
            reader,
            keep: keep.finish(),
            offset: 0,
            rows: distinct,
            max_update_ms,
            schema: self.schema,
            spool_dir: self.spool_dir,
            kept: self.kept,
        })
    }

    fn check_usable(&self) -> Result<(), SinkError> {
        if self.broken {
            return Err(SinkError::SpoolBroken { dir: self.spool_dir.clone() });
        }
        Ok(())
    }
}

/// The winning rows of a closed stage, read back from the spool batch by batch.
pub(crate) struct Winners {
    reader: SpoolReader,
    keep: BooleanBuffer,
    offset: usize,
    rows: u64,
    max_update_ms: Option<i64>,
    schema: SchemaRef,
    spool_dir: String,
    kept: KeptColumns,
}

impl Winners {
    /// The number of rows this yields.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// The newest update time among the rows.
    pub(crate) fn max_update_ms(&self) -> Option<i64> {
        self.max_update_ms
    }

    /// The schema of the rows.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

impl Iterator for Winners {
    type Item = Result<RecordBatch, SinkError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let batch = match self.reader.next_batch()? {
                Ok(batch) => batch,
                Err(source) => {
                    return Some(Err(SinkError::Spool { dir: self.spool_dir.clone(), source }))
                }
            };
            let len = batch.num_rows();
            if self.offset + len > self.keep.len() {
                return Some(Err(SinkError::SpoolBroken { dir: self.spool_dir.clone() }));
            }
            let first = self.offset;
            let mask = BooleanArray::new(self.keep.slice(first, len), None);
            self.offset += len;
            self.kept.observe(&batch, first as u64, &self.keep);
            if mask.true_count() == 0 {
                continue;
            }
            let kept = if mask.true_count() == len {
                Ok(batch)
            } else {
                filter_record_batch(&batch, &mask).map_err(|source| SinkError::Arrow {
                    context: "filtering superseded rows".into(),
                    source,
                })
            };
            if self.kept.is_empty() {
                return Some(kept);
            }
            let rows: Vec<u64> =
                (first..first + len).filter(|&r| self.keep.value(r)).map(|r| r as u64).collect();
            return Some(kept.and_then(|batch| self.kept.fill(batch, &rows)));
        }
    }
}

fn update_index(schema: &SchemaRef, name: &str) -> Result<usize, SinkError> {
    let bad = |problem: String| SinkError::UpdateColumn { column: name.to_string(), problem };
    let index = schema.index_of(name).map_err(|_| bad("no such column".into()))?;
    match schema.field(index).data_type() {
        DataType::Int64 | DataType::Timestamp(TimeUnit::Millisecond, _) => Ok(index),
        other => Err(bad(format!("type {other} is not Timestamp(ms) or Int64"))),
    }
}

/// The update time of every row; the column's type was checked by [`update_index`].
fn update_values(column: &dyn Array) -> Vec<Option<i64>> {
    match column.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            column.as_primitive::<TimestampMillisecondType>().iter().collect()
        }
        _ => column.as_primitive::<Int64Type>().iter().collect(),
    }
}

fn field_list(schema: &SchemaRef) -> String {
    let fields: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{}: {}{}",
                f.name(),
                f.data_type(),
                if f.is_nullable() { "" } else { " not null" }
            )
        })
        .collect();
    fields.join(", ")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
        TimestampMillisecondArray,
    };
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::catalog::schema::FieldKind;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("upd", DataType::Int64, true),
            Field::new("score", DataType::Float64, true),
        ]))
    }

    fn batch(ids: &[i64], upd: &[Option<i64>]) -> RecordBatch {
        let scores: Vec<f64> = ids.iter().map(|&i| i as f64).collect();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(Int64Array::from(upd.to_vec())),
                Arc::new(Float64Array::from(scores)),
            ],
        )
        .unwrap()
    }

    /// Counts follow the key index, and the winners read back hold one row per key.
    #[test]
    fn winners_hold_one_row_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut s =
            PartitionStage::create(dir.path(), schema(), &["id".into()], Some("upd")).unwrap();
        s.append(&batch(&[1, 2, 2], &[Some(5), None, Some(3)])).unwrap();
        s.append(&batch(&[1, 3], &[Some(4), None])).unwrap();
        assert_eq!((s.rows_appended(), s.distinct_rows(), s.max_update_ms()), (5, 3, Some(5)));
        let winners: Vec<RecordBatch> = s.into_winners().unwrap().map(Result::unwrap).collect();
        let ids: Vec<i64> = winners
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, [1, 2, 3]);
    }

    /// Only keys appended after the fetch mark count as fetched (a merge's existing rows
    /// do not), a key fetched twice counts once, and after a new mark (the next request) a
    /// key fetched again counts again.
    #[test]
    fn fetched_keys_are_counted_from_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let mut s =
            PartitionStage::create(dir.path(), schema(), &["id".into()], Some("upd")).unwrap();
        s.append(&batch(&[1, 2, 3], &[Some(1), Some(1), Some(9)])).unwrap();
        s.mark_fetch_start();
        assert_eq!(s.distinct_fetched(), 0);
        s.append(&batch(&[3, 4, 4], &[Some(2), Some(2), Some(3)])).unwrap();
        assert_eq!((s.distinct_fetched(), s.distinct_rows()), (2, 4));
        s.mark_fetch_start();
        s.append(&batch(&[4, 5, 5], &[Some(4), Some(4), Some(4)])).unwrap();
        assert_eq!((s.distinct_fetched(), s.distinct_rows()), (2, 5), "4 counts again");
        let winners: Vec<RecordBatch> = s.into_winners().unwrap().map(Result::unwrap).collect();
        let upd: Vec<Option<i64>> = winners
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
            .collect();
        assert_eq!(
            upd,
            [Some(1), Some(1), Some(9), Some(4), Some(4)],
            "the newer staged id 3 is kept"
        );
    }

    /// A Parquet spool whose rows lost to newer versions is read back with every column
    /// type a dataset can have (time zones and nulls included) and filtered like an IPC one;
    /// one where every row won is handed over as the encoded file.
    #[test]
    fn a_parquet_spool_reads_back_every_column_type() {
        let kinds = [
            FieldKind::Int32,
            FieldKind::Float64,
            FieldKind::Utf8,
            FieldKind::Boolean,
            FieldKind::TimestampMs,
            FieldKind::Date,
        ];
        let mut fields = vec![Field::new("id", DataType::Int64, false)];
        fields.extend(kinds.iter().map(|k| Field::new(format!("{k:?}"), k.arrow_type(), true)));
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let rows = |ids: &[i64], base: i32| {
            let n = ids.len();
            let value = |i: usize| i.is_multiple_of(2).then_some(base + i as i32);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(Int32Array::from((0..n).map(value).collect::<Vec<_>>())),
                Arc::new(Float64Array::from(
                    (0..n).map(|i| value(i).map(|v| f64::from(v) / 4.0)).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    (0..n).map(|i| value(i).map(|v| format!("0{v}"))).collect::<Vec<_>>(),
                )),
                Arc::new(BooleanArray::from(
                    (0..n).map(|i| value(i).map(|v| v % 3 == 0)).collect::<Vec<_>>(),
                )),
                Arc::new(
                    TimestampMillisecondArray::from(
                        (0..n).map(|i| value(i).map(|v| i64::from(v) * 1000)).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(Date32Array::from((0..n).map(value).collect::<Vec<_>>())),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let format = SpoolFormat::Parquet(WriteLimits::default());
        let stage = || {
            PartitionStage::create_as(dir.path(), format, schema.clone(), &["id".into()], None)
                .unwrap()
        };

        let mut replaced = stage();
        replaced.append(&rows(&[1, 2, 3], 10)).unwrap();
        replaced.append(&rows(&[2, 4], 20)).unwrap();
        let Ok(StagedRows::Winners(winners)) = replaced.into_output(WriteLimits::default()) else {
            panic!("a row lost, so the winners must be encoded again")
        };
        let got: Vec<RecordBatch> = winners.map(Result::unwrap).collect();
        let got = arrow::compute::concat_batches(&schema, &got).unwrap();
        let first = rows(&[1, 2, 3], 10);
        let want = arrow::compute::concat_batches(
            &schema,
            &[first.slice(0, 1), first.slice(2, 1), rows(&[2, 4], 20)],
        )
        .unwrap();
        assert_eq!(got, want);

        let all_won = || {
            let mut all_won = stage();
            all_won.append(&rows(&[1, 2, 3], 10)).unwrap();
            all_won
        };
        let output = all_won().into_output(WriteLimits::default());
        assert!(matches!(output, Ok(StagedRows::Encoded { rows: 3, .. })));
        // Asked for other row-group limits than it was encoded with, it is encoded again.
        let other = WriteLimits { max_row_group_rows: 2, ..WriteLimits::default() };
        assert!(matches!(all_won().into_output(other), Ok(StagedRows::Winners(_))));
    }

    /// Without an update column the later row of a key wins.
    #[test]
    fn later_rows_win_without_an_update_column() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PartitionStage::create(dir.path(), schema(), &["id".into()], None).unwrap();
        s.append(&batch(&[1, 1], &[Some(9), Some(1)])).unwrap();
        assert_eq!(s.max_update_ms(), None);
        let rows: Vec<RecordBatch> = s.into_winners().unwrap().map(Result::unwrap).collect();
        assert_eq!(rows, [batch(&[1], &[Some(1)])]);
    }

    /// A batch of another schema, a bad update column and a spool folder that does not
    /// exist are refused with clear errors.
    #[test]
    fn bad_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PartitionStage::create(dir.path(), schema(), &["id".into()], None).unwrap();
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        assert!(matches!(s.append(&other), Err(SinkError::BatchSchema { .. })));
        assert_eq!(s.rows_appended(), 0);
        let bad_update =
            PartitionStage::create(dir.path(), schema(), &["id".into()], Some("score"));
        assert!(matches!(bad_update, Err(SinkError::UpdateColumn { .. })));
        // A missing folder is created; one that cannot be (under a file) is an error.
        let missing = dir.path().join("absent/staging");
        assert!(PartitionStage::create(&missing, schema(), &["id".into()], None).is_ok());
        std::fs::write(dir.path().join("a-file"), b"").unwrap();
        let under_file = dir.path().join("a-file/staging");
        let no_dir = PartitionStage::create(&under_file, schema(), &["id".into()], None);
        assert!(matches!(no_dir, Err(SinkError::SpoolFile { .. })));
    }
}
