//! One month slice, end to end: fetch every page, normalize, stage with de-duplication,
//! reconcile with the API's total, then commit: rejects, data object, checkpoint. A
//! pipeline with `max_window_days` asks for the slice as consecutive windows, each paged
//! and reconciled with its own total, all staged into the month's partition.
//!
//! ```text
//!  pages ──> normalizer ──> stage (local spool + key index) ──> reconcile rows == total
//!                 └─> rejects                                        │ (retry the slice)
//!  commit:  checkpoint "writing" ─> _rejects/ ─> data object (atomic) ─> checkpoint
//! ```
//! A crash anywhere before the last step leaves the slice unconfirmed, so it is fetched
//! again and its single data object replaced: no duplicates, no gaps. The named crash
//! points of [`crate::sink::crash`] mark each step for the crash-safety tests.

use std::collections::HashSet;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use arrow::record_batch::RecordBatch;
use chrono::Utc;
use serde_json::{Map, Value};
use tracing::{info, warn};

use super::error::EngineError;
use super::pipeline::PipelineRun;
use super::progress::Progress;
use crate::calendar::{Month, MonthSlice};
use crate::catalog::pipeline::{OpenWhile, RecordsSpec, SlicingSpec};
use crate::normalize::rejects::RejectedRecord;
use crate::normalize::Normalizer;
use crate::sink::crash;
use crate::sink::layout::PartitionId;
use crate::sink::stage::PartitionStage;
use crate::sink::writer::{
    read_rejects, reject_record_text, stage_existing, write_partition, write_rejects,
};
use crate::sink::SinkError;
use crate::source::paging::{fetch_pages, PagingSummary};
use crate::source::SourceError;
use crate::state::{PartitionCheckpoint, SliceState};

/// Rows normalized before they are handed to the stage as one batch.
const BATCH_ROWS: usize = 8192;

/// Whether a slice replaces its partition or merges into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The slice covers the whole month: its rows are the partition.
    Replace,
    /// The slice covers part of the month: its rows replace the same keys in the partition.
    Merge,
}

/// What a finished slice did.
#[derive(Debug, Clone)]
pub struct SliceOutcome {
    /// The month.
    pub month: Month,
    /// Rows now in the partition.
    pub rows: u64,
    /// The API's total for the slice.
    pub api_total: u64,
    /// Records rejected.
    pub rejects: u64,
    /// Pages fetched, retries of the slice included.
    pub pages: u64,
    /// Bytes of the data object.
    pub bytes: u64,
    /// Time taken by the commit: checkpoints, rejects and data object.
    pub write_duration: std::time::Duration,
    /// The oldest event time (epoch ms) of the fetched records that are still open (see
    /// the pipeline's `records.open_while`), if any.
    pub oldest_open_ms: Option<i64>,
}

/// Internal failure of one attempt: a mismatch may be retried, the rest may not.
enum AttemptError {
    Mismatch { distinct: u64, rejects: u64, total: u64, pages: u64 },
    Fatal(EngineError),
}

/// A failure while pages are being received.
enum PageError {
    Source(SourceError),
    Sink(SinkError),
}

impl From<SourceError> for PageError {
    fn from(e: SourceError) -> Self {
        PageError::Source(e)
    }
}

impl From<EngineError> for AttemptError {
    fn from(e: EngineError) -> Self {
        AttemptError::Fatal(e)
    }
}

/// Runs one slice, retrying it when its rows do not add up to the API's total.
pub async fn run_slice(
    run: &PipelineRun<'_>,
    slice: MonthSlice,
    mode: WriteMode,
    progress: &dyn Progress,
) -> Result<SliceOutcome, EngineError> {
    let started = Instant::now();
    let attempts = run.settings.slice_attempts;
    let mut pages_so_far = 0;
    for attempt in 1..=attempts {
        match attempt_slice(run, slice, mode, progress).await {
            Ok(mut outcome) => {
                outcome.pages += pages_so_far;
                info!(
                    dataset = %run.dataset_name(), month = %slice.month, rows = outcome.rows,
                    api_total = outcome.api_total, rejects = outcome.rejects, pages = outcome.pages,
                    bytes = outcome.bytes, duration_ms = started.elapsed().as_millis() as u64,
                    write_ms = outcome.write_duration.as_millis() as u64,
                    mode = ?mode, "Slice committed."
                );
                return Ok(outcome);
            }
            Err(AttemptError::Mismatch { distinct, rejects, total, pages }) => {
                pages_so_far += pages;
                if attempt == attempts {
                    return Err(EngineError::Mismatch {
                        dataset: run.dataset_name().to_string(),
                        month: slice.month,
                        distinct,
                        rejects,
                        total,
                        attempts,
                    });
                }
                warn!(
                    dataset = %run.dataset_name(), month = %slice.month, distinct, rejects, total,
                    attempt, "Rows do not add up to the API total; fetching the slice again."
                );
            }
            Err(AttemptError::Fatal(e)) => return Err(e),
        }
    }
    unreachable!("slice_attempts is at least 1")
}

/// The request body of one window of a slice: the fixed fields plus the range.
fn window_body(run: &PipelineRun<'_>, begin_ms: i64, end_ms: i64) -> Map<String, Value> {
    let mut body = Map::new();
    for (k, v) in &run.dataset.spec.request.body {
        body.insert(k.clone(), toml_to_json(v, &run.tenant_id));
    }
    let SlicingSpec::CalendarMonth { begin_field, end_field, time_format, .. } =
        &run.dataset.spec.slicing;
    body.insert(begin_field.clone(), time_format.write(begin_ms));
    body.insert(end_field.clone(), time_format.write(end_ms));
    body
}

/// The oldest event time (epoch ms) among the rows of `batch` that are still open, if any.
/// The catalog has checked that both columns exist and are numeric or timestamps.
fn oldest_open(batch: &RecordBatch, open: &OpenWhile, event_time: &str) -> Option<i64> {
    let int64 = |name: &str| cast(batch.column_by_name(name)?, &DataType::Int64).ok();
    let (state, time) = (int64(&open.field)?, int64(event_time)?);
    let (state, time) = (state.as_primitive::<Int64Type>(), time.as_primitive::<Int64Type>());
    (0..batch.num_rows())
        .filter(|&i| state.is_valid(i) && state.value(i) < open.below && time.is_valid(i))
        .map(|i| time.value(i))
        .min()
}

/// Appends a normalized batch to the stage, noting the oldest open event time it holds.
fn stage_batch(
    stage: &mut PartitionStage,
    batch: &RecordBatch,
    records: &RecordsSpec,
    oldest: &mut Option<i64>,
) -> Result<(), SinkError> {
    if let Some(open) = &records.open_while {
        if let Some(t) = oldest_open(batch, open, &records.event_time) {
            *oldest = Some(oldest.map_or(t, |o| o.min(t)));
        }
    }
    stage.append(batch)
}

fn toml_to_json(v: &toml::Value, tenant_id: &str) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.replace("{tenant_id}", tenant_id)),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::from(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => {
            Value::Array(a.iter().map(|x| toml_to_json(x, tenant_id)).collect())
        }
        toml::Value::Table(t) => {
            Value::Object(t.iter().map(|(k, x)| (k.clone(), toml_to_json(x, tenant_id))).collect())
        }
    }
}

async fn attempt_slice(
    run: &PipelineRun<'_>,
    slice: MonthSlice,
    mode: WriteMode,
    progress: &dyn Progress,
) -> Result<SliceOutcome, AttemptError> {
    let dataset = run.dataset_name();
    let id = PartitionId {
        dataset: dataset.to_string(),
        tenant_id: run.tenant_id.clone(),
        month: slice.month,
    };
    let sink_err =
        |source| EngineError::Sink { dataset: dataset.to_string(), month: slice.month, source };
    let spec = &run.dataset.spec;
    let schema = &run.dataset.schema;
    let synced_at = Utc::now();
    let month = slice.month.slice(run.zone);
    let mut normalizer = Normalizer::new(schema.clone(), synced_at.timestamp_millis())
        .with_event_window(&spec.records.event_time, month.begin_ms, month.end_ms);
    let mut stage = PartitionStage::create(
        &run.spool_dir,
        schema.arrow_schema(),
        &spec.records.primary_key,
        spec.records.update_time.as_deref(),
    )
    .map_err(sink_err)?;
    if mode == WriteMode::Merge {
        stage_existing(&run.store, &id, &mut stage).await.map_err(sink_err)?;
    }
    stage.mark_fetch_start();

    // Rejected records, each once (a record seen on two pages is one record).
    let mut rejects: Vec<RejectedRecord> = Vec::new();
    let mut rejected_texts: HashSet<String> = HashSet::new();
    let mut oldest_open_ms = None;
    let SlicingSpec::CalendarMonth { max_window_days, .. } = &spec.slicing;
    // Each window is paged on its own and its rows must add up to its own total.
    let mut summary = PagingSummary::default();
    for (begin_ms, end_ms) in slice.windows(*max_window_days) {
        let (distinct_before, rejects_before) = (stage.distinct_fetched(), rejects.len());
        let window = fetch_pages::<PageError, _>(
            run.client,
            &run.auth,
            spec,
            window_body(run, begin_ms, end_ms),
            run.settings.page_concurrency,
            |page_no, page| {
                let rows = page.records.len() as u64;
                for record in page.records {
                    if let Err(reason) = normalizer.push(record) {
                        if rejected_texts.insert(record.get().to_string()) {
                            rejects.push(RejectedRecord::new(reason, record, page_no));
                        }
                    }
                    if normalizer.len() >= BATCH_ROWS {
                        let batch = normalizer.finish();
                        stage_batch(&mut stage, &batch, &spec.records, &mut oldest_open_ms)
                            .map_err(PageError::Sink)?;
                    }
                }
                progress.page(rows);
                crash::point(crash::PAGE_STAGED);
                Ok(())
            },
        )
        .await
        .map_err(|e| match e {
            PageError::Source(source) => EngineError::Source {
                dataset: dataset.to_string(),
                month: slice.month,
                source: Box::new(source),
            },
            PageError::Sink(source) => sink_err(source),
        })?;
        if !normalizer.is_empty() {
            let batch = normalizer.finish();
            stage_batch(&mut stage, &batch, &spec.records, &mut oldest_open_ms)
                .map_err(sink_err)?;
        }
        summary.pages += window.pages;
        summary.records += window.records;
        summary.total += window.total;
        let distinct = stage.distinct_fetched() - distinct_before;
        let window_rejects = (rejects.len() - rejects_before) as u64;
        if window.total_changed || distinct + window_rejects != window.total {
            return Err(AttemptError::Mismatch {
                distinct,
                rejects: window_rejects,
                total: window.total,
                pages: summary.pages,
            });
        }
    }

    crash::point(crash::FETCHED);
    let write_started = Instant::now();
    // The intent: until the final checkpoint, the partition reads as being written, so a
    // crash in between is fetched again and shows in `status` and `verify`.
    let previous = run.state.partition(&id).await.map_err(EngineError::from)?;
    let mut intent = previous.unwrap_or_else(|| PartitionCheckpoint {
        dataset: dataset.to_string(),
        tenant_id: run.tenant_id.clone(),
        month: slice.month.to_string(),
        state: SliceState::Writing,
        rows: 0,
        api_total: summary.total,
        rejects: 0,
        pages: 0,
        max_update_time_ms: None,
        window_begin_ms: slice.begin_ms,
        window_end_ms: slice.end_ms,
        object_path: id.data_path().to_string(),
        object_bytes: 0,
        content_sha256: String::new(),
        synced_at,
    });
    intent.state = SliceState::Writing;
    run.state.put_partition(&intent).await.map_err(EngineError::from)?;
    crash::point(crash::BEFORE_REJECTS);
    let mut lines: Vec<String> = rejects.iter().map(|r| r.to_json_line(synced_at)).collect();
    if mode == WriteMode::Merge {
        // Rejects of the rest of the month stay; a record rejected again is kept once.
        let kept = read_rejects(&run.store, &id).await.map_err(sink_err)?;
        lines.extend(kept.into_iter().filter(|line| {
            reject_record_text(line).is_none_or(|text| !rejected_texts.contains(text))
        }));
    }
    let reject_count = lines.len() as u64;
    write_rejects(&run.store, &id, &lines).await.map_err(sink_err)?;
    crash::point(crash::AFTER_REJECTS);
    let max_update = stage.max_update_ms();
    let written = write_partition(&run.store, &id, stage).await.map_err(sink_err)?;
    crash::point(crash::AFTER_DATA);
    // Complete only if the month had ended before the fetch began.
    let closed = synced_at > month.end();
    let state = match (mode, closed) {
        (WriteMode::Replace, true) => SliceState::Complete,
        (WriteMode::Replace, false) => SliceState::Open,
        (WriteMode::Merge, _) => SliceState::Partial,
    };
    let checkpoint = PartitionCheckpoint {
        dataset: dataset.to_string(),
        tenant_id: run.tenant_id.clone(),
        month: slice.month.to_string(),
        state,
        rows: written.rows,
        api_total: summary.total,
        rejects: reject_count,
        pages: summary.pages,
        max_update_time_ms: max_update,
        window_begin_ms: slice.begin_ms,
        window_end_ms: slice.end_ms,
        object_path: written.path.to_string(),
        object_bytes: written.bytes,
        content_sha256: written.sha256,
        synced_at,
    };
    run.state.put_partition(&checkpoint).await.map_err(EngineError::from)?;
    crash::point(crash::AFTER_CHECKPOINT);
    Ok(SliceOutcome {
        month: slice.month,
        rows: written.rows,
        api_total: summary.total,
        rejects: reject_count,
        pages: summary.pages,
        bytes: written.bytes,
        write_duration: write_started.elapsed(),
        oldest_open_ms,
    })
}
