//! Compaction: the sealed segments of the spool become rows of the lake.
//!
//! ```text
//!  seal the active segment ─> each sealed segment, oldest first (read off the runtime):
//!    normalize each push's records by its dataset's schema ─> route rows to months
//!    ─> a month's first rows open its stage with the partition's existing rows
//!  each month staged: newest version per key ─> commit once (the protocol of pulled data:
//!    checkpoint "writing", rejects, data object, checkpoint) ─> delete the segments
//! ```
//! Stages spool to local files, so memory holds one segment's rows at a time however much
//! was pushed. A crash before the segments are deleted compacts them again: their rows merge
//! by key into partitions that may already hold them, so nothing is lost and nothing doubles.
//! Each partition is one object rewritten once per compaction that touches its month, so
//! small files do not pile up however often the platform pushes.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

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
    /// Segments damaged in the middle (a disk fault): compacted around the damage, then moved
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
        if self.torn_tails > 0 {
            write!(
                f,
                ", {} segment(s) ended in a cut entry (never acknowledged)",
                self.torn_tails
            )?;
        }
        if self.quarantined > 0 {
            write!(f, ", {} damaged segment(s) moved to quarantine/", self.quarantined)?;
        }
        for (dataset, month, rows) in &self.partitions {
            write!(f, "\n  {dataset} month={month}: {rows} rows")?;
        }
        Ok(())
    }
}

/// One push dataset: its schema, its zone, the columns that give a row's month, and the
/// columns kept when a newer version lacks them (those of the pipeline that also pulls it).
struct PushDataset {
    kind: PushKind,
    schema: Arc<DatasetSchema>,
    zone: FixedOffset,
    time_columns: Vec<usize>,
    keep_when_missing: Vec<String>,
}

/// What one segment gave: its rows routed to months, its rejected records, its counts.
#[derive(Default)]
struct SegmentRows {
    rows: Vec<(PushKind, Month, RecordBatch)>,
    rejects: Vec<(PushKind, RejectedRecord)>,
    pushes: u64,
    records: u64,
    torn: bool,
    damaged: bool,
}

/// Normalizes the records of one dataset and routes its rows to months.
struct Normalizing {
    dataset: Arc<PushDataset>,
    normalizer: Normalizer,
    /// The month the pushes of the rows being normalized were received in.
    received: Month,
}

impl Normalizing {
    /// Routes the rows normalized so far to their months (the month received in for a row
    /// without any time).
    fn flush(&mut self, out: &mut SegmentRows) -> Result<(), CompactError> {
        let fallback = self.received;
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
        let mut routed = BTreeMap::new();
        route_rows(&batch, month_of, &mut routed).map_err(|source| CompactError::Sink {
            dataset: self.dataset.kind.dataset(),
            month: fallback,
            source,
        })?;
        for (month, batches) in routed {
            out.rows.extend(batches.into_iter().map(|b| (self.dataset.kind, month, b)));
        }
        Ok(())
    }
}

/// A month partition being staged: the existing rows, then the pushed ones.
struct MonthStage {
    stage: PartitionStage,
    records: u64,
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
            let keep_when_missing = settings
                .catalog
                .get(kind.dataset())
                .map(|d| d.spec.records.keep_when_missing.clone())
                .unwrap_or_default();
            let dataset = PushDataset { kind, schema, zone, time_columns, keep_when_missing };
            datasets.push(Arc::new(dataset));
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

    /// Seals the spool's active segment, merges the rows of every sealed segment into their
    /// month partitions (each committed once), then removes the segments.
    pub async fn compact(&self) -> Result<CompactReport, CompactError> {
        let segments = self.spool.seal().await?;
        let mut report = CompactReport::default();
        if segments.is_empty() {
            return Ok(report);
        }
        let (started, synced_at) = (Instant::now(), Utc::now());
        let fallback = Month::containing(synced_at, FixedOffset::east_opt(0).expect("UTC"));
        let mut stages: BTreeMap<(PushKind, Month), MonthStage> = BTreeMap::new();
        let mut rejects: BTreeMap<PushKind, (Vec<RejectedRecord>, HashSet<String>)> =
            BTreeMap::new();
        let mut damaged = Vec::new();
        for segment in &segments {
            let (datasets, read_segment) = (self.datasets.clone(), segment.clone());
            // Reading and normalizing is blocking work: off the runtime's threads, which
            // answer pushes meanwhile.
            let read = tokio::task::spawn_blocking(move || {
                normalize_segment(&datasets, &read_segment, synced_at, fallback, report.pushes)
            })
            .await
            .map_err(|e| CompactError::Task(e.to_string()))??;
            report.pushes += read.pushes;
            report.records += read.records;
            report.torn_tails += usize::from(read.torn);
            if read.damaged {
                damaged.push(segment.clone());
            }
            for (kind, month, batch) in read.rows {
                let staged = match stages.entry((kind, month)) {
                    Entry::Occupied(staged) => staged.into_mut(),
                    Entry::Vacant(slot) => slot.insert(self.open_month(kind, month).await?),
                };
                staged.records += batch.num_rows() as u64;
                let sink = |source| CompactError::Sink { dataset: kind.dataset(), month, source };
                staged.stage.append(&batch).map_err(sink)?;
            }
            for (kind, reject) in read.rejects {
                let (kept, texts) = rejects.entry(kind).or_default();
                if texts.insert(reject.record.get().to_string()) {
                    kept.push(reject);
                }
            }
        }
        // Rejects are kept with the partition of the month compacted in.
        for kind in rejects.keys() {
            if let Entry::Vacant(slot) = stages.entry((*kind, fallback)) {
                slot.insert(self.open_month(*kind, fallback).await?);
            }
        }
        let no_rejects = (Vec::new(), HashSet::new());
        for ((kind, month), staged) in stages {
            let (kept, texts) = match month == fallback {
                true => rejects.get(&kind).unwrap_or(&no_rejects),
                false => &no_rejects,
            };
            report.rejects += kept.len() as u64;
            let rows = self.commit(kind, month, staged, (kept, texts), synced_at).await?;
            report.partitions.push((kind.dataset().to_string(), month, rows));
        }
        let whole: Vec<SealedSegment> =
            segments.iter().filter(|s| !damaged.contains(s)).cloned().collect();
        self.spool.remove(&whole).await?;
        if !damaged.is_empty() {
            let aside = self.spool.quarantine(&damaged).await?;
            warn!(segments = damaged.len(), folder = %aside.display(), "Damaged spool segments moved aside.");
        }
        report.segments = segments.len();
        report.quarantined = damaged.len();
        info!(
            segments = report.segments,
            pushes = report.pushes,
            records = report.records,
            rejects = report.rejects,
            partitions = report.partitions.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            "Push spool compacted into the lake."
        );
        Ok(report)
    }

    /// Bytes waiting in the spool (see [`Spool::backlog_bytes`]).
    pub fn backlog_bytes(&self) -> Result<u64, CompactError> {
        Ok(self.spool.backlog_bytes()?)
    }

    fn dataset(&self, kind: PushKind) -> &PushDataset {
        self.datasets.iter().find(|d| d.kind == kind).expect("every kind has a dataset")
    }

    /// A stage for `month` of `kind`'s dataset, holding the partition's existing rows.
    async fn open_month(&self, kind: PushKind, month: Month) -> Result<MonthStage, CompactError> {
        let dataset = self.dataset(kind);
        let sink = |source| CompactError::Sink { dataset: kind.dataset(), month, source };
        let key: Vec<String> = kind.primary_key().iter().map(|k| k.to_string()).collect();
        let schema = dataset.schema.arrow_schema();
        let mut stage = PartitionStage::create(&self.staging_dir, schema, &key, None)
            .and_then(|stage| stage.keeping(&dataset.keep_when_missing))
            .map_err(sink)?;
        let id = PartitionId::new(kind.dataset(), self.tenant_id.clone(), month);
        stage_existing(&self.store, &id, &mut stage).await.map_err(sink)?;
        stage.mark_fetch_start();
        Ok(MonthStage { stage, records: 0 })
    }

    /// Commits one staged month with its rejects; the rows now in the partition.
    async fn commit(
        &self,
        kind: PushKind,
        month: Month,
        staged: MonthStage,
        (rejects, rejected_texts): (&[RejectedRecord], &HashSet<String>),
        synced_at: DateTime<Utc>,
    ) -> Result<u64, CompactError> {
        let MonthStage { stage, records } = staged;
        let summary = PagingSummary {
            pages: 0,
            records,
            total: stage.distinct_fetched(),
            total_changed: false,
        };
        let target = Target {
            id: PartitionId::new(kind.dataset(), self.tenant_id.clone(), month),
            mode: WriteMode::Merge,
            window: PartitionKey::Month(month).bounds(self.dataset(kind).zone),
            closed: false,
            synced_at,
        };
        let commit = Commit {
            target,
            stage,
            rejects: rejects.iter().collect(),
            rejected_texts,
            summary,
            oldest_open_ms: None,
        };
        Ok(commit_partition(&self.store, &self.state, commit).await?.rows)
    }
}

/// Reads the entries of `segment` and normalizes their records; `first_entry` numbers its
/// entries in the compaction (the "page" of a rejected record). A segment damaged in the
/// middle is read around the damage, and one that cannot be read at all gives no row; both
/// are marked damaged (to be moved aside).
fn normalize_segment(
    datasets: &[Arc<PushDataset>],
    segment: &SealedSegment,
    synced_at: DateTime<Utc>,
    fallback: Month,
    first_entry: u64,
) -> Result<SegmentRows, CompactError> {
    let mut normalizing: Vec<Normalizing> = datasets
        .iter()
        .map(|dataset| Normalizing {
            dataset: dataset.clone(),
            normalizer: Normalizer::new(dataset.schema.clone(), synced_at.timestamp_millis())
                .in_zone(dataset.zone),
            received: fallback,
        })
        .collect();
    let mut out = SegmentRows::default();
    let name = segment.path().display().to_string();
    let mut entries = match segment.read() {
        Ok(entries) => entries,
        Err(e @ (SpoolError::Foreign { .. } | SpoolError::UnsupportedVersion { .. })) => {
            error!(segment = %name, error = %e, "Spool segment cannot be read: moved to quarantine/ for inspection.");
            out.damaged = true;
            return Ok(out);
        }
        Err(e) => return Err(e.into()),
    };
    for entry in entries.by_ref() {
        let entry = entry?;
        let push = match SpooledPush::decode(&entry) {
            Ok(push) => push,
            Err(e) => {
                error!(segment = %name, entry = out.pushes, error = %e, "Spool entry cannot be read: skipped; the segment is kept in quarantine/.");
                out.damaged = true;
                continue;
            }
        };
        out.pushes += 1;
        let rows = normalizing
            .iter_mut()
            .find(|n| n.dataset.kind == push.kind)
            .expect("every kind has a dataset");
        let received =
            Month::containing_ms(push.received_at_ms, rows.dataset.zone).unwrap_or(fallback);
        if rows.received != received {
            // Rows without a time of their own go to the month their push was received in.
            rows.flush(&mut out)?;
            rows.received = received;
        }
        for record in &push.records {
            out.records += 1;
            if let Err(reason) = rows.normalizer.push(record) {
                let reject = RejectedRecord::new(reason, record, first_entry + out.pushes);
                out.rejects.push((push.kind, reject));
            }
        }
        if rows.normalizer.len() >= BATCH_ROWS {
            rows.flush(&mut out)?;
        }
    }
    for damage in entries.damage() {
        error!(
            segment = %name, offset = damage.offset, bytes = damage.bytes,
            "Spool segment damaged in the middle (a disk fault): the damaged bytes are skipped, \
             the entries around them compacted, and the segment kept in quarantine/ for inspection."
        );
        out.damaged = true;
    }
    if let Some(torn) = entries.torn_tail() {
        warn!(
            segment = %name, offset = torn.offset, bytes = torn.bytes,
            "Spool segment ends in a cut entry (a push never acknowledged); its earlier entries are compacted."
        );
        out.torn = true;
    }
    for rows in &mut normalizing {
        rows.flush(&mut out)?;
    }
    Ok(out)
}
