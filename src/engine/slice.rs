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
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tracing::{info, warn};

use super::error::EngineError;
use super::fan_out::FanOut;
use super::pipeline::PipelineRun;
use super::progress::Progress;
use crate::calendar::{Month, MonthSlice};
use crate::catalog::pipeline::{
    OpenWhile, PagingSpec, PipelineSpec, RecordsSpec, SlicingSpec, TimeFormat, TotalCounts,
};
use crate::normalize::rejects::RejectedRecord;
use crate::normalize::Normalizer;
use crate::sink::crash;
use crate::sink::layout::PartitionId;
use crate::sink::stage::PartitionStage;
use crate::sink::writer::{
    read_rejects, reject_record_text, stage_existing, write_partition, write_rejects,
};
use crate::sink::SinkError;
use crate::source::envelope::Page;
use crate::source::paging::{fetch_pages, PagedRequest, PagingSummary};
use crate::source::SourceError;
use crate::state::{PartitionCheckpoint, SliceState};

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
/// times; returns its result and the pages fetched by the failed attempts. `month` names
/// the range in errors and logs.
pub(super) async fn with_attempts<T, F, Fut>(
    run: &PipelineRun<'_>,
    month: Month,
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
                        month,
                        distinct,
                        rejects,
                        groups,
                        total,
                        attempts,
                    });
                }
                warn!(
                    dataset = %run.dataset_name(), month = %month, distinct, rejects,
                    groups, total, attempt = n,
                    "Rows do not add up to the API total; fetching the range again."
                );
            }
            Err(AttemptError::Fatal(e)) => return Err(e),
        }
    }
    unreachable!("slice_attempts is at least 1")
}

/// Runs one slice, retrying it when its rows do not add up to the API's total.
pub async fn run_slice(
    run: &PipelineRun<'_>,
    slice: MonthSlice,
    mode: WriteMode,
    progress: &dyn Progress,
) -> Result<SliceOutcome, EngineError> {
    let started = Instant::now();
    let (mut outcome, earlier_pages) =
        with_attempts(run, slice.month, || attempt_slice(run, slice, mode, progress)).await?;
    outcome.pages += earlier_pages;
    info!(
        dataset = %run.dataset_name(), month = %slice.month, rows = outcome.rows,
        api_total = outcome.api_total, rejects = outcome.rejects, pages = outcome.pages,
        bytes = outcome.bytes, duration_ms = started.elapsed().as_millis() as u64,
        write_ms = outcome.write_duration.as_millis() as u64,
        mode = ?mode, "Slice committed."
    );
    Ok(outcome)
}

/// The request body of a range: the fixed fields plus `begin_ms..=end_ms` in the given
/// fields and time format.
pub(super) fn range_body(
    run: &PipelineRun<'_>,
    (begin_field, end_field): (&str, &str),
    time_format: TimeFormat,
    begin_ms: i64,
    end_ms: i64,
) -> Map<String, Value> {
    let mut body = fixed_body(run);
    body.insert(begin_field.to_string(), time_format.write(begin_ms, run.zone));
    body.insert(end_field.to_string(), time_format.write(end_ms, run.zone));
    body
}

/// The fixed body fields of the pipeline's request, then those of the configuration's
/// `request_body` (which win), `{tenant_id}` filled in.
pub(super) fn fixed_body(run: &PipelineRun<'_>) -> Map<String, Value> {
    let body = run.dataset.spec.request.body.iter().chain(&run.settings.request_body);
    body.map(|(k, v)| (k.clone(), toml_to_json(v, &run.tenant_id))).collect()
}

/// The bodies of one request range: `body` itself, or, when the pipeline chunks a list
/// field (`[request] chunk`), one body per run of at most `size` of its values.
pub(super) fn chunked(
    run: &PipelineRun<'_>,
    body: Map<String, Value>,
) -> Result<Vec<Map<String, Value>>, EngineError> {
    let Some(chunk) = &run.dataset.spec.request.chunk else { return Ok(vec![body]) };
    let bad = |problem: String| EngineError::RequestBody {
        pipeline: run.dataset_name().to_string(),
        problem,
    };
    let values = match body.get(&chunk.field) {
        Some(Value::Array(values)) if !values.is_empty() => values.clone(),
        _ => {
            return Err(bad(format!(
                "body field '{}' must be a non-empty list: set [pipelines.{}] request_body = \
                 {{ {} = [...] }} in the configuration",
                chunk.field,
                run.dataset_name(),
                chunk.field
            )))
        }
    };
    Ok(values
        .chunks(chunk.size.max(1))
        .map(|part| {
            let mut b = body.clone();
            b.insert(chunk.field.clone(), Value::Array(part.to_vec()));
            b
        })
        .collect())
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
    if let Some(open) = &records.open_while {
        if let Some(t) = oldest_open(batch, open, &records.event_time) {
            *oldest = Some(oldest.map_or(t, |o| o.min(t)));
        }
    }
    stage.append(batch)
}

/// A TOML body value as JSON, `{tenant_id}` filled in.
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

/// What the pages of one request range gave, besides the normalized rows.
pub(super) struct Fetched {
    /// What paging saw.
    pub(super) summary: PagingSummary,
    /// Rejected records, each once (a record seen on two pages is one record).
    pub(super) rejects: Vec<RejectedRecord>,
    /// The texts of the rejected records.
    pub(super) rejected_texts: HashSet<String>,
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

/// Normalizes the records of a page with a fresh copy of `normalizer`.
fn normalize_page(normalizer: &Normalizer, page_no: u64, page: Page<'_>) -> NormalizedPage {
    let mut rows = normalizer.fresh();
    let mut rejects = Vec::new();
    for record in &page.records {
        if let Err(reason) = rows.push(record) {
            rejects.push(RejectedRecord::new(reason, record, page_no));
        }
    }
    let records = page.records.len() as u64;
    NormalizedPage { batch: rows.finish(), rejects, groups: page.groups, records }
}

/// Fetches every page of `body`, normalizing the records of each page (in the page's
/// task, so pages are normalized in parallel) with a fresh copy of `normalizer`, and
/// handing the rows to `on_batch` one page at a time, in page order. `month` names the
/// range in errors.
pub(super) async fn fetch_normalized(
    run: &PipelineRun<'_>,
    month: Month,
    body: Map<String, Value>,
    normalizer: &Normalizer,
    progress: &dyn Progress,
    mut on_batch: impl FnMut(RecordBatch) -> Result<(), SinkError>,
) -> Result<Fetched, EngineError> {
    let dataset = run.dataset_name();
    let mut rejects: Vec<RejectedRecord> = Vec::new();
    let mut rejected_texts: HashSet<String> = HashSet::new();
    let mut groups: HashSet<String> = HashSet::new();
    let request = PagedRequest {
        client: run.client,
        auth: &run.auth,
        spec: &run.dataset.spec,
        path: &run.request_path,
        body,
        concurrency: run.settings.page_concurrency,
        wrap_in: run.body_wrapper.as_deref(),
    };
    let template = normalizer.fresh();
    let decode = move |page_no, page: Page<'_>| normalize_page(&template, page_no, page);
    let summary = fetch_pages::<PageError, _, _, _>(request, decode, |page| {
        groups.extend(page.groups);
        for reject in page.rejects {
            if rejected_texts.insert(reject.record.get().to_string()) {
                rejects.push(reject);
            }
        }
        if page.batch.num_rows() > 0 {
            on_batch(page.batch).map_err(PageError::Sink)?;
        }
        progress.page(page.records);
        crash::point(crash::PAGE_STAGED);
        Ok(())
    })
    .await
    .map_err(|e| match e {
        PageError::Source(source) => {
            EngineError::Source { dataset: dataset.to_string(), month, source: Box::new(source) }
        }
        PageError::Sink(source) => {
            EngineError::Sink { dataset: dataset.to_string(), month, source }
        }
    })?;
    Ok(Fetched { summary, rejects, rejected_texts, groups })
}

/// A staged partition ready to commit, with what its checkpoint records.
pub(super) struct Commit<'f> {
    /// The partition and the fetch.
    pub(super) target: Target,
    /// Its rows, the existing ones included for a merge.
    pub(super) stage: PartitionStage,
    /// The records rejected for it.
    pub(super) rejects: Vec<&'f RejectedRecord>,
    /// The texts of every record rejected by the fetch (a kept reject that was rejected
    /// again is not kept twice).
    pub(super) rejected_texts: &'f HashSet<String>,
    /// The API's total and the pages fetched.
    pub(super) summary: PagingSummary,
    /// The oldest event time of the fetched records still open, if any.
    pub(super) oldest_open_ms: Option<i64>,
}

/// Where a fetch is committed, and what the partition's checkpoint says of the fetch.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The partition.
    pub(super) id: PartitionId,
    /// Replace or merge.
    pub(super) mode: WriteMode,
    /// The range fetched, epoch ms.
    pub(super) window: (i64, i64),
    /// Whether the month had ended before the fetch began (the state of a replace).
    pub(super) closed: bool,
    /// When the fetch began.
    pub(super) synced_at: DateTime<Utc>,
}

/// Commits one staged partition: checkpoint "writing", rejects, the data object, then
/// the final checkpoint (see the module documentation).
pub(super) async fn commit_partition(
    run: &PipelineRun<'_>,
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
    let dataset = run.dataset_name();
    let month = id.month;
    let sink_err = |source| EngineError::Sink { dataset: dataset.to_string(), month, source };
    crash::point(crash::FETCHED);
    let write_started = Instant::now();
    let previous = run.state.partition(&id).await?;
    let state = match mode {
        WriteMode::Replace if closed => SliceState::Complete,
        WriteMode::Replace => SliceState::Open,
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
        tenant_id: run.tenant_id.clone(),
        month: month.to_string(),
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
    run.state.put_partition(&intent).await?;
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
    let checkpoint = PartitionCheckpoint {
        dataset: dataset.to_string(),
        tenant_id: run.tenant_id.clone(),
        month: month.to_string(),
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
    run.state.put_partition(&checkpoint).await?;
    crash::point(crash::AFTER_CHECKPOINT);
    Ok(SliceOutcome {
        month,
        rows: written.rows,
        api_total: summary.total,
        rejects: reject_count,
        pages: summary.pages,
        bytes: written.bytes,
        write_duration: write_started.elapsed(),
        oldest_open_ms,
    })
}

/// A new stage for a partition of this pipeline's dataset.
pub(super) fn new_stage(run: &PipelineRun<'_>) -> Result<PartitionStage, SinkError> {
    let spec = &run.dataset.spec;
    PartitionStage::create(
        &run.spool_dir,
        run.dataset.schema.arrow_schema(),
        &spec.records.primary_key,
        spec.records.update_time.as_deref(),
    )
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
    let synced_at = Utc::now();
    let month = slice.month.slice(run.zone);
    let normalizer = Normalizer::new(run.dataset.schema.clone(), synced_at.timestamp_millis())
        .in_zone(run.zone)
        .with_event_window(&spec.records.event_time, month.begin_ms, month.end_ms);
    let mut stage = new_stage(run).map_err(sink_err)?;
    if mode == WriteMode::Merge {
        stage_existing(&run.store, &id, &mut stage).await.map_err(sink_err)?;
    }
    stage.mark_fetch_start();
    let mut fan_out = FanOut::of(run)?;
    let mut oldest_open_ms = None;
    let mut rejects: Vec<RejectedRecord> = Vec::new();
    let mut rejected_texts: HashSet<String> = HashSet::new();
    let mut summary = PagingSummary::default();
    let SlicingSpec::CalendarMonth {
        begin_field,
        end_field,
        time_format,
        max_window_days,
        end_exclusive,
        ..
    } = &spec.slicing
    else {
        let parent = spec.fan_out().map(|f| f.parent.clone()).unwrap_or_default();
        return Err(EngineError::FanOutDataset { name: dataset.to_string(), parent }.into());
    };
    // Each window is paged on its own and its rows must add up to its own total.
    // So is each chunk of a chunked list field.
    // Days are asked from midnight: a slice of a sync that starts mid-day reads its whole
    // first day, so that each window is whole days and a one-day window one day.
    let slice = match time_format {
        TimeFormat::Date => slice.whole_days(run.zone),
        _ => slice,
    };
    let windows = slice.windows(*max_window_days);
    let mut requests = Vec::new();
    for (begin_ms, end_ms) in windows {
        let end_ms = if *end_exclusive { end_ms + 1 } else { end_ms };
        let body = range_body(run, (begin_field, end_field), *time_format, begin_ms, end_ms);
        requests.extend(chunked(run, body)?);
    }
    for body in requests {
        let distinct_before = stage.distinct_fetched();
        let fetched = fetch_normalized(run, slice.month, body, &normalizer, progress, |batch| {
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
            fetched.reconcile(spec, stage.distinct_fetched() - distinct_before)
        {
            let pages = summary.pages;
            return Err(AttemptError::Mismatch { distinct, rejects, groups, total, pages });
        }
        rejects.extend(fetched.rejects);
        rejected_texts.extend(fetched.rejected_texts);
    }
    // Complete only if the month had ended before the fetch began.
    let closed = synced_at > month.end();
    let window = (slice.begin_ms, slice.end_ms);
    let target = Target { id, mode, window, closed, synced_at };
    if let Some(fan_out) = fan_out {
        fan_out.commit(std::slice::from_ref(&target)).await?;
    }
    let commit = Commit {
        target,
        stage,
        rejects: rejects.iter().collect(),
        rejected_texts: &rejected_texts,
        summary,
        oldest_open_ms,
    };
    Ok(commit_partition(run, commit).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            rejects: Vec::new(),
            rejected_texts: HashSet::new(),
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
            month: Month::new(2025, 1).unwrap(),
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
