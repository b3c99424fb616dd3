//! Compaction: the sealed segments of the spool become rows of the lake.
//!
//! ```text
//!  seal the active segment ─> read sealed segments (oldest first, a bounded group at a time)
//!    ─> normalize each push's records by its dataset's schema ─> route rows to months
//!    ─> per month: existing partition + new rows, newest per key ─> commit (the protocol of
//!       pulled data: checkpoint "writing", rejects, data object, checkpoint)
//!    ─> delete the group's segments
//! ```
//! A crash before the segments are deleted compacts them again: their rows merge by key
//! into partitions that may already hold them, so nothing is lost and nothing doubles.
//! Each partition is one object rewritten per compaction that touches its month, so small
//! files do not pile up however often the platform pushes.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMillisecondType;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, FixedOffset, Utc};
use object_store::ObjectStore;
use tracing::{error, info, warn};

use super::kind::{EntryError, PushKind, SpooledPush};
use super::spool::{SealedSegment, Spool, SpoolError};
use crate::calendar::Month;
use crate::catalog::DatasetSchema;
use crate::config::{PushSettings, Settings};
use crate::engine::cursor::route_rows;
use crate::engine::slice::{commit_partition, Commit, Target, WriteMode};
use crate::engine::EngineError;
use crate::normalize::rejects::RejectedRecord;
use crate::normalize::Normalizer;
use crate::sink::layout::{PartitionId, PartitionKey};
use crate::sink::stage::PartitionStage;
use crate::sink::writer::stage_existing;
use crate::sink::SinkError;
use crate::source::paging::PagingSummary;
use crate::state::StateStore;

/// Spool bytes compacted in one group: the normalized rows of a group are held in memory
/// until its partitions are written (Arrow columns take less than the JSON they came from).
const GROUP_BYTES: u64 = 128 * 1024 * 1024;

/// Records normalized into one batch.
const BATCH_ROWS: usize = 8192;

/// Why a compaction failed. The spool is kept whole: the next compaction starts over.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The spool could not be sealed, read or trimmed.
    #[error("push spool: {0}")]
    Spool(#[from] SpoolError),
    /// An entry of a segment is not a push this version can read.
    #[error("push spool segment {segment}: entry {entry}: {source}")]
    Entry { segment: String, entry: u64, source: EntryError },
    /// A dataset of the pushes has no schema in the catalog.
    #[error("push dataset {0} has no schema (schemas/{0}.json)")]
    MissingSchema(&'static str),
    /// Rows could not be staged.
    #[error("{dataset} {month}: {source}")]
    Sink { dataset: &'static str, month: Month, source: SinkError },
    /// A partition could not be committed.
    #[error(transparent)]
    Commit(#[from] EngineError),
    /// The reading task failed.
    #[error("push compaction task: {0}")]
    Task(String),
}

/// What one compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Spool segments compacted and removed.
    pub segments: usize,
    /// Pushes read.
    pub pushes: u64,
    /// Records read, duplicates included.
    pub records: u64,
    /// Records rejected by the normalizer (kept in `_rejects/`).
    pub rejects: u64,
    /// Segments whose last entry was cut by a crash (never acknowledged).
    pub torn_tails: usize,
    /// Segments damaged in the middle (a disk fault): compacted up to the damage, then moved
    /// to the spool's `quarantine/` folder.
    pub quarantined: usize,
    /// Partitions written: dataset, month, rows now in the partition.
    pub partitions: Vec<(String, Month, u64)>,
}

impl fmt::Display for CompactReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "push spool: {} segment(s) compacted, {} push(es), {} record(s), {} rejected",
            self.segments, self.pushes, self.records, self.rejects
        )?;
        if self.quarantined > 0 {
            write!(f, ", {} damaged segment(s) moved to quarantine/", self.quarantined)?;
        }
        for (dataset, month, rows) in &self.partitions {
            write!(f, "\n  {dataset} month={month}: {rows} rows")?;
        }
        Ok(())
    }
}

/// One push dataset: its schema, its zone and the columns that give a row's month.
struct PushDataset {
    kind: PushKind,
    schema: Arc<DatasetSchema>,
    zone: FixedOffset,
    time_columns: Vec<usize>,
}

/// The rows of one dataset gathered from a group of segments.
struct Gathered {
    dataset: Arc<PushDataset>,
    normalizer: Normalizer,
    routed: BTreeMap<Month, Vec<RecordBatch>>,
    rejects: Vec<RejectedRecord>,
    rejected_texts: HashSet<String>,
    pushes: u64,
    records: u64,
}

impl Gathered {
    /// Routes the rows normalized so far to their months (`fallback` for a row without any
    /// time).
    fn flush(&mut self, fallback: Month) -> Result<(), CompactError> {
        if self.normalizer.is_empty() {
            return Ok(());
        }
        let batch = self.normalizer.finish();
        let zone = self.dataset.zone;
        let times: Vec<_> = self
            .dataset
            .time_columns
            .iter()
            .map(|&i| batch.column(i).as_primitive::<TimestampMillisecondType>().clone())
            .collect();
        let month_of = |row: usize| {
            let ms = times.iter().find(|t| t.is_valid(row)).map(|t| t.value(row));
            Some(ms.and_then(|ms| Month::containing_ms(ms, zone)).unwrap_or(fallback))
        };
        route_rows(&batch, month_of, &mut self.routed).map_err(|source| CompactError::Sink {
            dataset: self.dataset.kind.dataset(),
            month: fallback,
            source,
        })
    }
}

/// Compacts the spool of the push receivers into the lake.
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    state: StateStore,
    tenant_id: String,
    staging_dir: PathBuf,
    datasets: Vec<Arc<PushDataset>>,
    spool: Spool,
}

impl Compactor {
    /// A compactor of `spool` into the lake `store` of `settings`' tenant; outbound results
    /// are read in the zone of `push`, Private Number times in UTC.
    pub fn new(
        settings: &Settings,
        push: &PushSettings,
        store: Arc<dyn ObjectStore>,
        spool: Spool,
    ) -> Result<Self, CompactError> {
        let outbound_zone = push.outbound_zone();
        let utc = FixedOffset::east_opt(0).expect("UTC");
        let mut datasets = Vec::new();
        for kind in PushKind::ALL {
            let schema = settings
                .catalog
                .schema(kind.dataset())
                .cloned()
                .ok_or(CompactError::MissingSchema(kind.dataset()))?;
            let time_columns =
                kind.event_times().iter().filter_map(|f| schema.index_of(f)).collect();
            let zone = if kind == PushKind::OutboundResult { outbound_zone } else { utc };
            datasets.push(Arc::new(PushDataset { kind, schema, zone, time_columns }));
        }
        Ok(Self {
            state: StateStore::new(store.clone()),
            store,
            tenant_id: settings.tenant_id.clone(),
            staging_dir: settings.spool_dir.clone(),
            datasets,
            spool,
        })
    }

    /// Seals the spool's active segment and compacts every sealed segment, a group at a
    /// time, removing each group once its partitions are committed.
    pub async fn compact(&self) -> Result<CompactReport, CompactError> {
        let segments = self.spool.seal().await?;
        let mut report = CompactReport::default();
        for group in groups(&segments) {
            let damaged = self.compact_group(group, &mut report).await?;
            let whole: Vec<SealedSegment> =
                group.iter().filter(|s| !damaged.contains(s)).cloned().collect();
            self.spool.remove(&whole).await?;
            if !damaged.is_empty() {
                let aside = self.spool.quarantine(&damaged).await?;
                warn!(segments = damaged.len(), folder = %aside.display(), "Damaged spool segments moved aside.");
            }
            report.segments += group.len();
            report.quarantined += damaged.len();
        }
        if report.segments > 0 {
            info!(
                segments = report.segments,
                pushes = report.pushes,
                records = report.records,
                rejects = report.rejects,
                partitions = report.partitions.len(),
                "Push spool compacted into the lake."
            );
        }
        Ok(report)
    }

    /// Compacts one group of segments; returns those damaged in the middle (read up to the
    /// damage).
    async fn compact_group(
        &self,
        segments: &[SealedSegment],
        report: &mut CompactReport,
    ) -> Result<Vec<SealedSegment>, CompactError> {
        let synced_at = Utc::now();
        let fallback = Month::containing(synced_at, FixedOffset::east_opt(0).expect("UTC"));
        let (datasets, group) = (self.datasets.clone(), segments.to_vec());
        // Reading and normalizing is blocking work: off the runtime's threads, which answer
        // pushes meanwhile.
        let read =
            tokio::task::spawn_blocking(move || gather(&datasets, &group, synced_at, fallback))
                .await
                .map_err(|e| CompactError::Task(e.to_string()))??;
        report.torn_tails += read.torn_tails;
        for rows in read.gathered {
            report.pushes += rows.pushes;
            report.records += rows.records;
            report.rejects += rows.rejects.len() as u64;
            self.commit(rows, synced_at, fallback, report).await?;
        }
        Ok(read.damaged)
    }

    /// Merges the gathered rows of one dataset into their month partitions; the rejects go
    /// with the partition of `fallback` (the month compacted in).
    async fn commit(
        &self,
        rows: Gathered,
        synced_at: DateTime<Utc>,
        fallback: Month,
        report: &mut CompactReport,
    ) -> Result<(), CompactError> {
        let dataset = rows.dataset.clone();
        let name = dataset.kind.dataset();
        let mut months = rows.routed;
        if !rows.rejects.is_empty() {
            months.entry(fallback).or_default();
        }
        for (month, batches) in months {
            let sink = |source| CompactError::Sink { dataset: name, month, source };
            let id = PartitionId::new(name, self.tenant_id.clone(), month);
            let key: Vec<String> =
                dataset.kind.primary_key().iter().map(|k| k.to_string()).collect();
            let mut stage = PartitionStage::create(
                &self.staging_dir,
                dataset.schema.arrow_schema(),
                &key,
                None,
            )
            .map_err(sink)?;
            stage_existing(&self.store, &id, &mut stage).await.map_err(sink)?;
            stage.mark_fetch_start();
            let mut records = 0;
            for batch in &batches {
                records += batch.num_rows() as u64;
                stage.append(batch).map_err(sink)?;
            }
            let rejects = match month == fallback {
                true => rows.rejects.iter().collect(),
                false => Vec::new(),
            };
            let summary = PagingSummary {
                pages: 0,
                records,
                total: stage.distinct_fetched(),
                total_changed: false,
            };
            let target = Target {
                id,
                mode: WriteMode::Merge,
                window: PartitionKey::Month(month).bounds(dataset.zone),
                closed: false,
                synced_at,
            };
            let commit = Commit {
                target,
                stage,
                rejects,
                rejected_texts: &rows.rejected_texts,
                summary,
                oldest_open_ms: None,
            };
            let outcome = commit_partition(&self.store, &self.state, commit).await?;
            report.partitions.push((name.to_string(), month, outcome.rows));
        }
        Ok(())
    }
}

/// What reading a group of segments gave.
struct GroupRead {
    /// The rows of each dataset.
    gathered: Vec<Gathered>,
    /// Segments that ended in a torn tail.
    torn_tails: usize,
    /// Segments damaged in the middle, read up to the damage.
    damaged: Vec<SealedSegment>,
}

/// Reads the entries of `segments` and normalizes their records, by dataset.
fn gather(
    datasets: &[Arc<PushDataset>],
    segments: &[SealedSegment],
    synced_at: DateTime<Utc>,
    fallback: Month,
) -> Result<GroupRead, CompactError> {
    let mut gathered: Vec<Gathered> = datasets
        .iter()
        .map(|dataset| Gathered {
            dataset: dataset.clone(),
            normalizer: Normalizer::new(dataset.schema.clone(), synced_at.timestamp_millis())
                .in_zone(dataset.zone),
            routed: BTreeMap::new(),
            rejects: Vec::new(),
            rejected_texts: HashSet::new(),
            pushes: 0,
            records: 0,
        })
        .collect();
    let mut torn_tails = 0;
    let mut damaged = Vec::new();
    let mut entry_no = 0u64;
    for segment in segments {
        let name = segment.path().display().to_string();
        let mut entries = segment.read()?;
        for (n, entry) in entries.by_ref().enumerate() {
            entry_no += 1;
            let entry = match entry {
                Ok(entry) => entry,
                Err(e @ SpoolError::Corrupt { .. }) => {
                    // The entries before the damage are compacted; the segment is then moved
                    // aside, so that the rest of the spool is not held up behind it.
                    error!(
                        segment = %name, error = %e,
                        "Spool segment damaged in the middle: its entries up to the damage are                          compacted and the segment is moved to quarantine/ for inspection."
                    );
                    damaged.push(segment.clone());
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            let push = SpooledPush::decode(&entry).map_err(|source| CompactError::Entry {
                segment: name.clone(),
                entry: n as u64,
                source,
            })?;
            let rows = gathered
                .iter_mut()
                .find(|g| g.dataset.kind == push.kind)
                .expect("every kind has a dataset");
            rows.pushes += 1;
            for record in &push.records {
                rows.records += 1;
                if let Err(reason) = rows.normalizer.push(record) {
                    if rows.rejected_texts.insert(record.get().to_string()) {
                        rows.rejects.push(RejectedRecord::new(reason, record, entry_no));
                    }
                }
            }
            if rows.normalizer.len() >= BATCH_ROWS {
                rows.flush(fallback)?;
            }
        }
        if let Some(torn) = entries.torn_tail() {
            warn!(
                segment = %name, offset = torn.offset, bytes = torn.bytes,
                "Spool segment ends in a cut entry (a push never acknowledged); its earlier entries are compacted."
            );
            torn_tails += 1;
        }
    }
    for rows in &mut gathered {
        rows.flush(fallback)?;
    }
    Ok(GroupRead { gathered, torn_tails, damaged })
}

/// The segments in groups of about [`GROUP_BYTES`] (at least one segment each), oldest
/// first.
fn groups(segments: &[SealedSegment]) -> Vec<&[SealedSegment]> {
    let size = |s: &SealedSegment| std::fs::metadata(s.path()).map_or(0, |m| m.len());
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, segment) in segments.iter().enumerate() {
        let len = size(segment);
        if i > start && bytes + len > GROUP_BYTES {
            out.push(&segments[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < segments.len() {
        out.push(&segments[start..]);
    }
    out
}
