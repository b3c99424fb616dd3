//! The jobs of the service: scheduled syncs and refreshes, and backfills queued through the
//! control API. Each job has an id and a view (state, slices done of total, rows, errors)
//! that `GET /backfill/{id}` and the status page show; [`JobProgress`] keeps the view and
//! the metrics up to date while the engine runs.
//!
//! Jobs of one pipeline run one at a time, in the order queued (a fair lock per pipeline),
//! so two jobs never write a partition at the same time; jobs of different pipelines run
//! side by side and share each source's client, and so its limits.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::shutdown::Shutdown;
use crate::calendar::Month;
use crate::engine::progress::Progress;
use crate::engine::slice::SliceOutcome;
use crate::sink::layout::PartitionKey;
use crate::telemetry::{self, Telemetry};

/// Finished jobs kept for the API and the page.
const HISTORY: usize = 200;
/// Errors kept per job.
const MAX_ERRORS: usize = 20;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Incremental sync (the schedule).
    Sync,
    /// Full refresh of the open month and maybe the previous one (the refresh schedule).
    Refresh,
    /// Whole months on demand.
    Backfill,
}

impl JobKind {
    /// The kind's name in metrics, marks and JSON.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Sync => "sync",
            JobKind::Refresh => "refresh",
            JobKind::Backfill => "backfill",
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the pipeline's earlier jobs.
    Queued,
    /// Running.
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Stopped by a shutdown before it finished (finished slices stay written).
    Cancelled,
}

impl JobState {
    /// Queued or running.
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    /// Its id.
    pub id: u64,
    /// What it does.
    pub kind: JobKind,
    /// The pipeline.
    pub pipeline: String,
    /// First month of a backfill.
    pub from: Option<String>,
    /// Last month of a backfill.
    pub to: Option<String>,
    /// Whether complete months are fetched again.
    pub refresh: bool,
    /// Where it is.
    pub state: JobState,
    /// Slices finished, skipped or failed.
    pub slices_done: u64,
    /// Slices of the run (0 until it starts).
    pub slices_total: u64,
    /// Records received.
    pub rows: u64,
    /// Rows in the partitions written.
    pub rows_written: u64,
    /// Pages received.
    pub pages: u64,
    /// Errors, one per failed slice, then the run's.
    pub errors: Vec<String>,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// What it does.
    pub kind: JobKind,
    /// The pipeline.
    pub pipeline: String,
    /// Months of a backfill.
    pub range: Option<(Month, Month)>,
    /// Fetch complete months again (backfill).
    pub refresh: bool,
    /// The schedule occurrence it was started for, recorded when it ends.
    pub occurrence: Option<DateTime<Utc>>,
}

/// Every job's view, the per-pipeline locks and the partitions whose last slice failed.
#[derive(Debug, Default)]
pub struct Jobs {
    next_id: AtomicU64,
    views: Mutex<BTreeMap<u64, JobView>>,
    locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    failed_partitions: Mutex<BTreeMap<(String, PartitionKey), String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Jobs {
    /// No jobs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a new queued job and returns its id.
    pub fn queue(&self, req: &JobRequest, now: DateTime<Utc>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let view = JobView {
            id,
            kind: req.kind,
            pipeline: req.pipeline.clone(),
            from: req.range.map(|(f, _)| f.to_string()),
            to: req.range.map(|(_, t)| t.to_string()),
            refresh: req.refresh,
            state: JobState::Queued,
            slices_done: 0,
            slices_total: 0,
            rows: 0,
            rows_written: 0,
            pages: 0,
            errors: Vec::new(),
            queued_at: now,
            started_at: None,
            finished_at: None,
        };
        let mut views = lock(&self.views);
        views.insert(id, view);
        let finished: Vec<u64> =
            views.values().filter(|v| !v.state.is_active()).map(|v| v.id).collect();
        for old in finished.iter().take(finished.len().saturating_sub(HISTORY)) {
            views.remove(old);
        }
        id
    }

    /// Whether a job of `kind` for `pipeline` is queued or running.
    pub fn has_active(&self, pipeline: &str, kind: JobKind) -> bool {
        lock(&self.views)
            .values()
            .any(|v| v.pipeline == pipeline && v.kind == kind && v.state.is_active())
    }

    /// Jobs queued or running.
    pub fn active_count(&self) -> usize {
        lock(&self.views).values().filter(|v| v.state.is_active()).count()
    }

    /// One job's view.
    pub fn get(&self, id: u64) -> Option<JobView> {
        lock(&self.views).get(&id).cloned()
    }

    /// Every job kept, newest first.
    pub fn list(&self) -> Vec<JobView> {
        lock(&self.views).values().rev().cloned().collect()
    }

    /// Changes a job's view.
    pub fn update(&self, id: u64, f: impl FnOnce(&mut JobView)) {
        if let Some(v) = lock(&self.views).get_mut(&id) {
            f(v);
        }
    }

    /// Marks every queued or running job cancelled with `reason` (their tasks were
    /// aborted); returns their pipelines and kinds.
    pub fn cancel_active(&self, now: DateTime<Utc>, reason: &str) -> Vec<(String, JobKind)> {
        let mut cancelled = Vec::new();
        for v in lock(&self.views).values_mut().filter(|v| v.state.is_active()) {
            v.state = JobState::Cancelled;
            v.finished_at = Some(now);
            if v.errors.len() < MAX_ERRORS {
                v.errors.push(reason.to_string());
            }
            cancelled.push((v.pipeline.clone(), v.kind));
        }
        cancelled
    }

    /// The lock that keeps a pipeline's jobs one at a time.
    pub fn pipeline_lock(&self, pipeline: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks).entry(pipeline.to_string()).or_default().clone()
    }

    /// The error of the last failed slice of each partition (month or snapshot day) of
    /// `pipeline` that has not succeeded since.
    pub fn failed_partitions(&self, pipeline: &str) -> BTreeMap<PartitionKey, String> {
        lock(&self.failed_partitions)
            .iter()
            .filter(|((p, _), _)| p == pipeline)
            .map(|((_, m), e)| (*m, e.clone()))
            .collect()
    }
}

/// Follows one job's run: updates its view, the failed months and the metrics, and asks
/// the engine to stop between slices once the service is shutting down.
pub struct JobProgress {
    id: u64,
    pipeline: String,
    jobs: Arc<Jobs>,
    telemetry: Arc<Telemetry>,
    shutdown: Shutdown,
}

impl JobProgress {
    /// The progress of job `id` of `pipeline`.
    pub fn new(
        id: u64,
        pipeline: &str,
        jobs: Arc<Jobs>,
        telemetry: Arc<Telemetry>,
        shutdown: Shutdown,
    ) -> Self {
        Self { id, pipeline: pipeline.to_string(), jobs, telemetry, shutdown }
    }
}

impl Progress for JobProgress {
    fn start(&self, _dataset: &str, slices: u64) {
        self.jobs.update(self.id, |v| v.slices_total += slices);
    }

    fn page(&self, rows: u64) {
        self.jobs.update(self.id, |v| {
            v.rows += rows;
            v.pages += 1;
        });
    }

    fn slice_done(&self, _dataset: &str, _partition: PartitionKey, _note: &str) {
        self.jobs.update(self.id, |v| v.slices_done += 1);
    }

    fn finish(&self) {}

    fn slice_committed(&self, _dataset: &str, outcome: &SliceOutcome) {
        let labels = [("pipeline", self.pipeline.as_str())];
        self.telemetry.add(telemetry::ROWS_WRITTEN, &labels, outcome.rows as f64);
        self.telemetry.add(telemetry::REJECTS, &labels, outcome.rejects as f64);
        self.telemetry.observe(
            telemetry::PARTITION_WRITE_SECONDS,
            &labels,
            outcome.write_duration.as_secs_f64(),
        );
        lock(&self.jobs.failed_partitions).remove(&(self.pipeline.clone(), outcome.partition));
        self.jobs.update(self.id, |v| v.rows_written += outcome.rows);
    }

    fn slice_failed(&self, _dataset: &str, partition: PartitionKey, error: &str) {
        let failed = (self.pipeline.clone(), partition);
        lock(&self.jobs.failed_partitions).insert(failed, error.to_string());
        self.jobs.update(self.id, |v| {
            if v.errors.len() < MAX_ERRORS {
                v.errors.push(format!("{partition}: {error}"));
            }
        });
    }

    fn should_stop(&self) -> bool {
        self.shutdown.is_stopping()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: JobKind) -> JobRequest {
        JobRequest { kind, pipeline: "p".into(), range: None, refresh: false, occurrence: None }
    }

    /// A job's progress fills its view: slices, rows, pages, failures (which mark the month
    /// failed until a later commit of it), and the rows-written metric.
    #[test]
    fn progress_updates_the_view_and_failed_months() {
        let jobs = Arc::new(Jobs::new());
        let telemetry = Arc::new(Telemetry::new());
        let id = jobs.queue(&request(JobKind::Backfill), Utc::now());
        assert!(jobs.has_active("p", JobKind::Backfill));
        assert!(!jobs.has_active("p", JobKind::Sync));
        let progress = JobProgress::new(id, "p", jobs.clone(), telemetry.clone(), Shutdown::new());
        let month = PartitionKey::Month(Month::new(2025, 1).unwrap());
        progress.start("p", 2);
        progress.page(1000);
        progress.page(500);
        progress.slice_failed("p", month, "HTTP 502");
        progress.slice_done("p", month, "FAILED");
        assert_eq!(jobs.failed_partitions("p").get(&month).map(String::as_str), Some("HTTP 502"));
        let outcome = SliceOutcome {
            partition: month,
            rows: 1500,
            api_total: 1500,
            rejects: 0,
            pages: 2,
            bytes: 10,
            write_duration: std::time::Duration::from_millis(30),
            oldest_open_ms: None,
        };
        progress.slice_committed("p", &outcome);
        progress.slice_done("p", month, "1500 rows");
        let view = jobs.get(id).unwrap();
        assert_eq!((view.slices_done, view.slices_total), (2, 2));
        assert_eq!((view.rows, view.pages, view.rows_written), (1500, 2, 1500));
        assert_eq!(view.errors, ["month=2025-01: HTTP 502"]);
        assert!(jobs.failed_partitions("p").is_empty(), "a commit clears the failure");
        assert_eq!(telemetry.value(telemetry::ROWS_WRITTEN, &[("pipeline", "p")]), Some(1500.0));
        assert!(!progress.should_stop());
    }

    /// Finished jobs beyond the history are forgotten, oldest first; active ones never.
    #[test]
    fn history_is_bounded() {
        let jobs = Jobs::new();
        let first = jobs.queue(&request(JobKind::Sync), Utc::now());
        for _ in 0..HISTORY + 10 {
            let id = jobs.queue(&request(JobKind::Backfill), Utc::now());
            jobs.update(id, |v| v.state = JobState::Succeeded);
        }
        assert!(jobs.get(first).is_some(), "the active job is kept");
        assert!(jobs.list().len() <= HISTORY + 2);
        assert_eq!(jobs.active_count(), 1);
    }
}
