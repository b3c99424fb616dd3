//! One slice, end to end: fetch every page, normalize, stage with de-duplication,
//! reconcile with the API's total, then commit: rejects, data object, checkpoint. A slice is
//! a month (or part of one) of a `calendar_month` dataset, or the day's snapshot of a
//! `snapshot` dataset. A pipeline with `max_window_days` asks for a month as consecutive
//! windows, split again at the month edges of its `month_table_zones`; one with `for_each`
//! or a chunked list field sends one request per entry and chunk; each request is paged
//! and reconciled with its own total, all staged into the slice's partition.
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
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use object_store::ObjectStore;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::error::EngineError;
use super::fan_out::FanOut;
use super::pipeline::PipelineRun;
use super::progress::Progress;
use super::request::{fixed_body, range_body, slice_requests, SliceRequest};
use crate::calendar::{split_at_month_edges, MonthSlice};
use crate::catalog::pipeline::{
    OpenWhile, PagingSpec, PipelineSpec, RecordsSpec, SlicingSpec, TimeFormat, TotalCounts,
};
use crate::normalize::rejects::{RejectedRecord, RejectedSet};
use crate::normalize::Normalizer;
use crate::sink::crash;
use crate::sink::layout::{PartitionId, PartitionKey};
use crate::sink::stage::{PartitionStage, SpoolFormat};
use crate::sink::writer::{
    read_rejects, reject_record_text, stage_existing, write_partition, write_rejects,
};
use crate::sink::{SinkError, WriteLimits};
use crate::source::envelope::{Page, RecordsWalk};
use crate::source::paging::{fetch_pages, DecodePage, PagedRequest, PagingSummary};
use crate::source::SourceError;
use crate::state::{PartitionCheckpoint, SliceState, StateStore};

/// Whether a slice replaces its partition or merges into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The slice covers the whole month: its rows are the partition.
    Replace,
    /// The slice covers part of the month: its rows replace the same keys in the partition.
    Merge,
    /// The slice covers the whole month, merged by key into the partition like [`Self::Merge`]
    /// (a dataset that push ingestion writes too: `[sync] always_merge`), and the partition's
    /// state is that of a whole month, as after [`Self::Replace`].
    MergeWhole,
}

impl WriteMode {
    /// The mode of a slice of a whole month (`whole`) or part of one, for a pipeline that
    /// merges every write (`always_merge`) or not.
    pub fn of_slice(whole: bool, always_merge: bool) -> Self {
        match (whole, always_merge) {
            (true, false) => WriteMode::Replace,
            (true, true) => WriteMode::MergeWhole,
            (false, _) => WriteMode::Merge,
        }
    }

    /// Whether the partition's existing rows stay (those the slice does not return).
    pub fn keeps_existing_rows(self) -> bool {
        self != WriteMode::Replace
    }

    /// How a slice in this mode stages its rows: a replacement starts empty and spools
    /// Parquet, which becomes the data object; a merge first stages the existing rows,
    /// mostly replaced later, in Arrow IPC.
    fn spool_format(self) -> SpoolFormat {
        if self.keeps_existing_rows() {
            SpoolFormat::ArrowIpc
        } else {
            SpoolFormat::Parquet(WriteLimits::default())
        }
    }
}

/// What one slice covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slice {
    /// A month, or part of one, of a `calendar_month` dataset.
    Month(MonthSlice),
    /// The snapshot of a `snapshot` dataset on a day of the source zone.
    Snapshot(NaiveDate),
}

impl Slice {
    /// The partition the slice is written to.
    pub fn key(&self) -> PartitionKey {
        match self {
            Self::Month(slice) => PartitionKey::Month(slice.month),
            Self::Snapshot(day) => PartitionKey::Day(*day),
        }
    }
}

/// What a finished slice did.
#[derive(Debug, Clone)]
pub struct SliceOutcome {
    /// The partition written.
    pub partition: PartitionKey,
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
pub(super) enum AttemptError {
    Mismatch { distinct: u64, rejects: u64, groups: Option<u64>, total: u64, pages: u64 },
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

/// Runs `attempt` until its rows add up to the API's total, at most `slice_attempts`
/// times; returns its result and the pages fetched by the failed attempts. `partition`
/// names the range in errors and logs.
pub(super) async fn with_attempts<T, F, Fut>(
    run: &PipelineRun<'_>,
    partition: PartitionKey,
    mut attempt: F,
) -> Result<(T, u64), EngineError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AttemptError>>,
{
    let attempts = run.settings.slice_attempts;
    let mut pages_so_far = 0;
    for n in 1..=attempts {
        match attempt().await {
            Ok(done) => return Ok((done, pages_so_far)),
            Err(AttemptError::Mismatch { distinct, rejects, groups, total, pages }) => {
                pages_so_far += pages;
                if n == attempts {
                    return Err(EngineError::Mismatch {
                        dataset: run.dataset_name().to_string(),
                        partition,
                        distinct,
                        rejects,
                        groups,
                        total,
                        attempts,
                    });
                }
                warn!(
                    dataset = %run.dataset_name(), partition = %partition, distinct, rejects,
                    groups, total, attempt = n,
                    "Rows do not add up to the API total; fetching the range again."
                );
            }
            Err(AttemptError::Fatal(e)) => return Err(e),
        }
    }
    unreachable!("slice_attempts is at least 1")
}

/// Runs one slice, retrying it when its rows do not add up to the API's total. Each
/// attempt fetches while it holds a permit of `fetching`, and lets it go before it writes.
pub async fn run_slice(
    run: &PipelineRun<'_>,
    slice: Slice,
    mode: WriteMode,
    progress: &dyn Progress,
    fetching: &Semaphore,
) -> Result<SliceOutcome, EngineError> {
    let started = Instant::now();
    let (mut outcome, earlier_pages) =
        with_attempts(run, slice.key(), || attempt_slice(run, slice, mode, progress, fetching))
            .await?;
    outcome.pages += earlier_pages;
    info!(
        dataset = %run.dataset_name(), partition = %slice.key(), rows = outcome.rows,
        api_total = outcome.api_total, rejects = outcome.rejects, pages = outcome.pages,
        bytes = outcome.bytes, duration_ms = started.elapsed().as_millis() as u64,
        write_ms = outcome.write_duration.as_millis() as u64,
        mode = ?mode, "Slice committed."
    );
    Ok(outcome)
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
pub(super) fn stage_batch(
    stage: &mut PartitionStage,
    batch: &RecordBatch,
    records: &RecordsSpec,
    oldest: &mut Option<i64>,
) -> Result<(), SinkError> {
    if let (Some(open), Some(event_time)) = (&records.open_while, &records.event_time) {
        if let Some(t) = oldest_open(batch, open, event_time) {
            *oldest = Some(oldest.map_or(t, |o| o.min(t)));
        }
    }
    stage.append(batch)
}

/// What the pages of one request range gave, besides the normalized rows.
pub(super) struct Fetched {
    /// What paging saw.
    pub(super) summary: PagingSummary,
    /// Rejected records, each once (a record seen on two pages is one record).
    pub(super) rejects: RejectedSet,
    /// The distinct groups of nested records.
    pub(super) groups: HashSet<String>,
}

impl Fetched {
    /// Checks `distinct` fetched rows (+ rejects) against the API's total; with
    /// `total_counts = "either"` the distinct groups may match instead.
    pub(super) fn reconcile(&self, spec: &PipelineSpec, distinct: u64) -> Result<(), AttemptError> {
        let either = matches!(
            &spec.paging,
            PagingSpec::PageNumber { total_counts: TotalCounts::Either, .. }
        );
        let groups = either.then_some(self.groups.len() as u64);
        let rejects = self.rejects.len() as u64;
        let total = self.summary.total;
        if self.summary.total_changed || !(distinct + rejects == total || groups == Some(total)) {
            return Err(AttemptError::Mismatch {
                distinct,
                rejects,
                groups,
                total,
                pages: self.summary.pages,
            });
        }
        Ok(())
    }
}

/// One page normalized: its rows, its rejected records and its groups.
struct NormalizedPage {
    batch: RecordBatch,
    rejects: Vec<RejectedRecord>,
    groups: Vec<String>,
    records: u64,
}

/// Normalizes each page with a fresh copy of a normalizer: flat records as the walk of the
/// page meets them, the others (nested records, flattened) after.
struct NormalizePages(Normalizer);

/// The rows and rejects of one page's records, walked as the page is read.
struct PageWalk {
    rows: Normalizer,
    rejects: Vec<RejectedRecord>,
    page_no: u64,
}

impl RecordsWalk for PageWalk {
    fn walk(&mut self, body: &str, at: usize) -> Option<(usize, usize)> {
        let (rejects, page_no) = (&mut self.rejects, self.page_no);
        let mut kept = true;
        let walked = self.rows.push_array(body, at, |reason, text| {
            match RawValue::from_string(text.to_string()) {
                Ok(record) => rejects.push(RejectedRecord::new(reason, &record, page_no)),
                Err(_) => kept = false,
            }
        });
        walked.filter(|_| kept)
    }

    fn abandon(&mut self) {
        self.rows = self.rows.fresh();
        self.rejects.clear();
    }
}

impl DecodePage for NormalizePages {
    type Output = NormalizedPage;
    type Walk = PageWalk;

    fn walk(&self, page_no: u64) -> Option<PageWalk> {
        Some(PageWalk { rows: self.0.fresh(), rejects: Vec::new(), page_no })
    }

    fn decode(&self, page_no: u64, walk: Option<PageWalk>, page: Page<'_>) -> NormalizedPage {
        let (mut rows, mut rejects) = match walk {
            Some(walk) => (walk.rows, walk.rejects),
            None => (self.0.fresh(), Vec::new()),
        };
        for record in &page.records {
            if let Err(reason) = rows.push(record) {
                rejects.push(RejectedRecord::new(reason, record, page_no));
            }
        }
        let records = page.record_count() as u64;
        NormalizedPage { batch: rows.finish(), rejects, groups: page.groups, records }
    }
}

/// A normalizer of `run`'s rows written at `synced_at`, which refuses a row whose event
/// time is outside `[begin_ms, end_ms]` (a dataset without event time, a snapshot, takes
/// every row).
pub(super) fn event_normalizer(
    run: &PipelineRun<'_>,
    synced_at: DateTime<Utc>,
    (begin_ms, end_ms): (i64, i64),
) -> Normalizer {
    let normalizer =
        Normalizer::new(run.dataset.schema.clone(), synced_at.timestamp_millis()).in_zone(run.zone);
    match &run.dataset.spec.records.event_time {
        Some(field) => normalizer.with_event_window(field, begin_ms, end_ms),
        None => normalizer,
    }
}

/// The values of `records.from_request`: each column with the request body field (or
/// path placeholder of the entry) it is filled from, as raw JSON. A field the request
/// lacks is an error of the configuration.
fn request_values(
    spec: &PipelineSpec,
    body: &Map<String, Value>,
    path_values: &Map<String, Value>,
) -> Result<Vec<(String, Box<RawValue>)>, String> {
    spec.records
        .from_request
        .iter()
        .map(|(column, field)| {
            let value = body.get(field).or_else(|| path_values.get(field)).ok_or_else(|| {
                format!(
                    "records.from_request: column '{column}' is filled from request field \
                     '{field}', which the request does not send (in its body or its path)"
                )
            })?;
            let raw = RawValue::from_string(value.to_string())
                .map_err(|e| format!("records.from_request: field '{field}': {e}"))?;
            Ok((column.clone(), raw))
        })
        .collect()
}

/// Fetches every page of the request `(entry, body)` (the entry's path), normalizing the records of each page
/// (in the page's task, so pages are normalized in parallel) with a fresh copy of
/// `normalizer`, and handing the rows to `on_batch` one page at a time, in page order.
/// `partition` names the range in errors.
pub(super) async fn fetch_normalized(
    run: &PipelineRun<'_>,
    partition: PartitionKey,
    (entry, body): SliceRequest<'_>,
    normalizer: &Normalizer,
    progress: &dyn Progress,
    mut on_batch: impl FnMut(RecordBatch) -> Result<(), SinkError>,
) -> Result<Fetched, EngineError> {
    let dataset = run.dataset_name();
    let mut rejects = RejectedSet::default();
    let mut groups: HashSet<String> = HashSet::new();
    let request = PagedRequest {
        client: run.client,
        auth: &run.auth,
        spec: &run.dataset.spec,
        path: &entry.path,
        body,
        concurrency: run.settings.page_concurrency,
        wrap_in: run.body_wrapper.as_deref(),
    };
    let values = request_values(&run.dataset.spec, &request.body, &entry.path_values);
    let template = values
        .and_then(|values| normalizer.fresh().with_request_values(values))
        .map_err(|problem| EngineError::RequestBody { pipeline: dataset.to_string(), problem })?;
    let decode = NormalizePages(template);
    let summary = fetch_pages::<PageError, _, _>(request, decode, |page| {
        groups.extend(page.groups);
        rejects.extend(page.rejects);
        if page.batch.num_rows() > 0 {
            on_batch(page.batch).map_err(PageError::Sink)?;
        }
        progress.page(page.records);
        crash::point(crash::PAGE_STAGED);
        Ok(())
    })
    .await
    .map_err(|e| match e {
        PageError::Source(source) => EngineError::Source {
            dataset: dataset.to_string(),
            partition,
            source: Box::new(source),
        },
        PageError::Sink(source) => {
            EngineError::Sink { dataset: dataset.to_string(), partition, source }
        }
    })?;
    Ok(Fetched { summary, rejects, groups })
}

/// A staged partition ready to commit, with what its checkpoint records.
pub(crate) struct Commit<'f> {
    /// The partition and the fetch.
    pub(crate) target: Target,
    /// Its rows, the existing ones included for a merge.
    pub(crate) stage: PartitionStage,
    /// The records rejected for it.
    pub(crate) rejects: Vec<&'f RejectedRecord>,
    /// The texts of every record rejected by the fetch (a kept reject that was rejected
    /// again is not kept twice).
    pub(crate) rejected_texts: &'f HashSet<String>,
    /// The API's total and the pages fetched.
    pub(crate) summary: PagingSummary,
    /// The oldest event time of the fetched records still open, if any.
    pub(crate) oldest_open_ms: Option<i64>,
}

/// Where a fetch is committed, and what the partition's checkpoint says of the fetch.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The partition.
    pub(crate) id: PartitionId,
    /// Replace or merge.
    pub(crate) mode: WriteMode,
    /// The range fetched, epoch ms.
    pub(crate) window: (i64, i64),
    /// Whether the month had ended before the fetch began, or the fetch is a day's
    /// snapshot, whole by nature (the state of a replace).
    pub(crate) closed: bool,
    /// When the fetch began.
    pub(crate) synced_at: DateTime<Utc>,
}

/// Commits one staged partition of `lake` with its checkpoints in `state`: checkpoint
/// "writing", rejects, the data object, then the final checkpoint (see the module
/// documentation). The partition names the dataset and the tenant.
pub(crate) async fn commit_partition(
    lake: &Arc<dyn ObjectStore>,
    state_store: &StateStore,
    commit: Commit<'_>,
) -> Result<SliceOutcome, EngineError> {
    let Commit {
        target: Target { id, mode, window, closed, synced_at },
        stage,
        rejects,
        rejected_texts,
        summary,
        oldest_open_ms,
    } = commit;
    let dataset = id.dataset.as_str();
    let partition = id.key;
    let sink_err = |source| EngineError::Sink { dataset: dataset.to_string(), partition, source };
    crash::point(crash::FETCHED);
    let write_started = Instant::now();
    let previous = state_store.partition(&id).await?;
    let state = match mode {
        WriteMode::Replace | WriteMode::MergeWhole if closed => SliceState::Complete,
        WriteMode::Replace | WriteMode::MergeWhole => SliceState::Open,
        WriteMode::Merge => SliceState::after_merge(previous.as_ref().map(|cp| cp.state)),
    };
    // A merge that leaves the month whole keeps the checkpoint's whole-month fetch, so that
    // its API total stays comparable with the rows (see `PartitionCheckpoint::api_total`).
    let (fetch_window, api_total, pages) = match &previous {
        Some(cp) if mode == WriteMode::Merge && state != SliceState::Partial => {
            ((cp.window_begin_ms, cp.window_end_ms), cp.api_total, cp.pages)
        }
        _ => (window, summary.total, summary.pages),
    };
    // The intent: until the final checkpoint, the partition reads as being written, so a
    // crash in between is fetched again and shows in `status` and `verify`.
    let mut intent = previous.unwrap_or_else(|| PartitionCheckpoint {
        dataset: dataset.to_string(),
        tenant_id: id.tenant_id.clone(),
        key: partition,
        state: SliceState::Writing,
        rows: 0,
        api_total: summary.total,
        rejects: 0,
        pages: 0,
        max_update_time_ms: None,
        window_begin_ms: window.0,
        window_end_ms: window.1,
        object_path: id.data_path().to_string(),
        object_bytes: 0,
        content_sha256: String::new(),
        synced_at,
    });
    intent.state = SliceState::Writing;
    state_store.put_partition(&intent).await?;
    crash::point(crash::BEFORE_REJECTS);
    let mut lines: Vec<String> = rejects.iter().map(|r| r.to_json_line(synced_at)).collect();
    if mode.keeps_existing_rows() {
        // Rejects of the rest of the month stay; a record rejected again is kept once.
        let kept = read_rejects(lake, &id).await.map_err(sink_err)?;
        lines.extend(kept.into_iter().filter(|line| {
            reject_record_text(line).is_none_or(|text| !rejected_texts.contains(text))
        }));
    }
    let reject_count = lines.len() as u64;
    write_rejects(lake, &id, &lines).await.map_err(sink_err)?;
    crash::point(crash::AFTER_REJECTS);
    let max_update = stage.max_update_ms();
    let written = write_partition(lake, &id, stage).await.map_err(sink_err)?;
    crash::point(crash::AFTER_DATA);
    let checkpoint = PartitionCheckpoint {
        dataset: dataset.to_string(),
        tenant_id: id.tenant_id.clone(),
        key: partition,
        state,
        rows: written.rows,
        api_total,
        rejects: reject_count,
        pages,
        max_update_time_ms: max_update,
        window_begin_ms: fetch_window.0,
        window_end_ms: fetch_window.1,
        object_path: written.path.to_string(),
        object_bytes: written.bytes,
        content_sha256: written.sha256,
        synced_at,
    };
    state_store.put_partition(&checkpoint).await?;
    crash::point(crash::AFTER_CHECKPOINT);
    Ok(SliceOutcome {
        partition,
        rows: written.rows,
        api_total: summary.total,
        rejects: reject_count,
        pages: summary.pages,
        bytes: written.bytes,
        write_duration: write_started.elapsed(),
        oldest_open_ms,
    })
}

/// A new stage for a partition of this pipeline's dataset, spooled in `format` (see
/// [`WriteMode::spool_format`]).
pub(super) fn new_stage(
    run: &PipelineRun<'_>,
    format: SpoolFormat,
) -> Result<PartitionStage, SinkError> {
    let spec = &run.dataset.spec;
    PartitionStage::create_as(
        &run.spool_dir,
        format,
        run.dataset.schema.arrow_schema(),
        &spec.records.primary_key,
        spec.records.update_time.as_deref(),
    )?
    .keeping(&spec.records.keep_when_missing)
}

async fn attempt_slice(
    run: &PipelineRun<'_>,
    slice: Slice,
    mode: WriteMode,
    progress: &dyn Progress,
    fetching: &Semaphore,
) -> Result<SliceOutcome, AttemptError> {
    // The semaphore is never closed, so the permit is always granted.
    let permit = fetching.acquire().await.ok();
    let dataset = run.dataset_name();
    let partition = slice.key();
    let id = PartitionId::new(dataset, run.tenant_id.clone(), partition);
    let sink_err = |source| EngineError::Sink { dataset: dataset.to_string(), partition, source };
    let spec = &run.dataset.spec;
    let synced_at = run.clock.now();
    let bounds = partition.bounds(run.zone);
    // A snapshot's rows are today's whatever event time they may carry.
    let event_window = match slice {
        Slice::Month(_) => bounds,
        Slice::Snapshot(_) => (i64::MIN, i64::MAX),
    };
    let normalizer = event_normalizer(run, synced_at, event_window);
    // The bodies of the slice: one per window of a month, the fixed body for a snapshot.
    let (bases, window, closed) = match (slice, &spec.slicing) {
        (
            Slice::Month(slice),
            SlicingSpec::CalendarMonth {
                begin_field,
                end_field,
                time_format,
                max_window_days,
                end_exclusive,
                month_table_zones,
                ..
            },
        ) => {
            // Days are asked from midnight: a slice of a sync that starts mid-day reads its
            // whole first day, so that each window is whole days and a one-day window one day.
            let slice = match time_format {
                TimeFormat::Date => slice.whole_days(run.zone),
                _ => slice,
            };
            let fields = (begin_field.as_str(), end_field.as_str());
            let body = |(begin, end): (i64, i64)| {
                let end = if *end_exclusive { end + 1 } else { end };
                range_body(run, fields, *time_format, begin, end)
            };
            let windows = split_at_month_edges(slice.windows(*max_window_days), month_table_zones);
            let bases = windows.into_iter().map(body).collect();
            // Complete only if the month had ended before the fetch began.
            (bases, (slice.begin_ms, slice.end_ms), synced_at.timestamp_millis() > bounds.1)
        }
        (Slice::Snapshot(_), SlicingSpec::Snapshot) => {
            (vec![fixed_body(run)], (bounds.0, synced_at.timestamp_millis()), true)
        }
        _ => {
            let parent = spec.fan_out().map(|f| f.parent.clone()).unwrap_or_default();
            return Err(EngineError::FanOutDataset { name: dataset.to_string(), parent }.into());
        }
    };
    let mut stage = new_stage(run, mode.spool_format()).map_err(sink_err)?;
    if mode.keeps_existing_rows() {
        stage_existing(&run.store, &id, &mut stage).await.map_err(sink_err)?;
    }
    let mut fan_out = FanOut::of(run)?;
    let mut oldest_open_ms = None;
    let mut rejects = RejectedSet::default();
    let mut summary = PagingSummary::default();
    // Each request (window, for_each entry, chunk) is paged on its own and its distinct
    // rows must add up to its own total, whether or not an earlier request of the slice
    // returned some of them too (windows that share a boundary day when the platform
    // reads an end date as included).
    for request in slice_requests(run, &bases)? {
        stage.mark_fetch_start();
        let fetched = fetch_normalized(run, partition, request, &normalizer, progress, |batch| {
            if let Some(fan_out) = fan_out.as_mut() {
                fan_out.observe(&batch)?;
            }
            stage_batch(&mut stage, &batch, &spec.records, &mut oldest_open_ms)
        })
        .await?;
        summary.pages += fetched.summary.pages;
        summary.records += fetched.summary.records;
        summary.total += fetched.summary.total;
        if let Err(AttemptError::Mismatch { distinct, rejects, groups, total, .. }) =
            fetched.reconcile(spec, stage.distinct_fetched())
        {
            let pages = summary.pages;
            return Err(AttemptError::Mismatch { distinct, rejects, groups, total, pages });
        }
        // A record two requests returned (windows sharing a boundary) is kept once.
        rejects.extend(fetched.rejects);
    }
    drop(permit);
    let target = Target { id, mode, window, closed, synced_at };
    if let Some(fan_out) = fan_out {
        fan_out.commit(std::slice::from_ref(&target)).await?;
    }
    let commit = Commit {
        target,
        stage,
        rejects: rejects.records().iter().collect(),
        rejected_texts: rejects.texts(),
        summary,
        oldest_open_ms,
    };
    Ok(commit_partition(&run.store, run.state, commit).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::pipeline::{EnvelopeSpec, RecordsPath};
    use crate::catalog::schema::DatasetSchema;
    use crate::source::envelope::parse_page;

    /// A page read in one walk gives the rows, record count and rejects (reasons and texts)
    /// of the same page read as raw values: rejects of every kind, a key whose escape is
    /// not Unicode, and a page the walk hands back after walking rows (its records key
    /// given twice, of which the raw reading keeps the last).
    #[test]
    fn walked_pages_decode_as_raw_pages() {
        let schema = DatasetSchema::parse(
            "t.json",
            r#"{"dataset":"t","fields":[{"name":"id","type":"int64","nullable":false},
                {"name":"n","type":"utf8"}]}"#,
        )
        .unwrap();
        let decoder = NormalizePages(Normalizer::new(Arc::new(schema), 0));
        let (path, envelope) =
            (RecordsPath::try_from("r".to_string()).unwrap(), EnvelopeSpec::default());
        let cases = [
            (
                r#"{"r":[{"id":1,"n":"a"},{"id":"x"}, 5 ,{"\ud800":1,"id":2},{"id":3,"z":[]}],"total":5}"#,
                5,
                (2, 3),
            ),
            (r#"{"r":[{"id":1}],"r":[{"id":2},{"id":3}],"total":2}"#, 0, (2, 0)),
        ];
        for (body, walked_records, (rows, rejected)) in cases {
            let mut walk = decoder.walk(1);
            let walking = walk.as_mut().map(|w| w as &mut dyn RecordsWalk).unwrap();
            let page = parse_page(body, &envelope, &path, &[], Some("total"), "u", Some(walking));
            let page = page.unwrap();
            assert_eq!(page.walked, walked_records, "{body}");
            let walked = decoder.decode(1, walk, page);
            let raw_page =
                parse_page(body, &envelope, &path, &[], Some("total"), "u", None).unwrap();
            let raw = decoder.decode(1, None, raw_page);
            assert_eq!((&walked.batch, walked.records), (&raw.batch, raw.records), "{body}");
            let rejects = |page: &NormalizedPage| -> Vec<(String, String)> {
                page.rejects
                    .iter()
                    .map(|r| (r.reason.clone(), r.record.get().to_string()))
                    .collect()
            };
            assert_eq!(rejects(&walked), rejects(&raw), "{body}");
            assert_eq!((walked.batch.num_rows(), walked.rejects.len()), (rows, rejected), "{body}");
        }
    }

    fn spec(total_counts: &str) -> PipelineSpec {
        let text = format!(
            r#"
            name = "d"
            description = "x"
            source = "s"
            [request]
            path = "/q"
            [auth]
            style = "body_token"
            field = "t"
            [paging]
            style = "page_number"
            page_field = "page"
            size_field = "limit"
            page_size = 10
            total_path = "paging.total"
            total_counts = "{total_counts}"
            [slicing]
            style = "calendar_month"
            begin_field = "a"
            end_field = "b"
            time_format = "epoch_s"
            [records]
            path = "data[].calls[]"
            primary_key = ["id"]
            event_time = "t"
        "#
        );
        PipelineSpec::parse("d.toml", &text).unwrap()
    }

    fn fetched(total: u64, groups: usize) -> Fetched {
        Fetched {
            summary: PagingSummary { pages: 2, records: 0, total, total_changed: false },
            rejects: RejectedSet::default(),
            groups: (0..groups).map(|g| g.to_string()).collect(),
        }
    }

    /// With `either`, 7 calls in 5 groups are complete for a total of 7 or of 5, and
    /// anything else fails with both counts; with `records` only the rows count.
    #[test]
    fn either_total_matches_rows_or_groups() {
        let either = spec("either");
        assert!(fetched(7, 5).reconcile(&either, 7).is_ok());
        assert!(fetched(5, 5).reconcile(&either, 7).is_ok());
        match fetched(6, 5).reconcile(&either, 7) {
            Err(AttemptError::Mismatch { distinct: 7, groups: Some(5), total: 6, .. }) => {}
            _ => panic!("a total that is neither count is a mismatch"),
        }
        let records = spec("records");
        assert!(fetched(7, 5).reconcile(&records, 7).is_ok());
        assert!(matches!(
            fetched(5, 5).reconcile(&records, 7),
            Err(AttemptError::Mismatch { groups: None, .. })
        ));
        let mut moved = fetched(7, 5);
        moved.summary.total_changed = true;
        assert!(moved.reconcile(&either, 7).is_err());
        let message = EngineError::Mismatch {
            dataset: "d".into(),
            partition: PartitionKey::Month(crate::calendar::Month::new(2025, 1).unwrap()),
            distinct: 7,
            rejects: 0,
            groups: Some(5),
            total: 6,
            attempts: 3,
        }
        .to_string();
        assert!(
            message.contains("7 distinct rows") && message.contains("in 5 distinct groups"),
            "{message}"
        );
    }
}
