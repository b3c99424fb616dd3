//! The engine: opens the lake and the sources once, then runs backfills and incremental
//! syncs of pipelines, one month slice at a time, or, for a snapshot dataset, one snapshot
//! of today (in the source zone) whatever the range asked for.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration};
use futures::stream::{self, StreamExt};
use object_store::ObjectStore;
use tokio::sync::Semaphore;
use tracing::{error, info};

use super::clock::Clock;
use super::cursor::run_cursor_window;
use super::error::EngineError;
use super::listed::listed_entries;
use super::pipeline::PipelineRun;
use super::progress::Progress;
use super::request::request_entries;
use super::slice::{run_slice, Slice, SliceOutcome, WriteMode};
use crate::calendar::{format_zone, split_by_month, Month, MonthSlice};
use crate::catalog::pipeline::SlicingSpec;
use crate::config::Settings;
use crate::sink::layout::{PartitionId, PartitionKey};
use crate::sink::store::{open_store, probe};
use crate::source::auth::Authenticator;
use crate::source::SourceClient;
use crate::state::{PipelineCheckpoint, SliceState, StateStore};

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct RunReport {
    /// The pipeline.
    pub dataset: String,
    /// Slices written.
    pub slices: Vec<SliceOutcome>,
    /// Slices skipped because they were already complete.
    pub skipped: Vec<Month>,
}

impl RunReport {
    /// Rows written over all slices.
    pub fn rows(&self) -> u64 {
        self.slices.iter().map(|s| s.rows).sum()
    }
    /// Pages fetched over all slices.
    pub fn pages(&self) -> u64 {
        self.slices.iter().map(|s| s.pages).sum()
    }
    /// Records rejected over all slices.
    pub fn rejects(&self) -> u64 {
        self.slices.iter().map(|s| s.rejects).sum()
    }
    /// The oldest event time (epoch ms) of the records still open over all slices.
    pub fn oldest_open_ms(&self) -> Option<i64> {
        self.slices.iter().filter_map(|s| s.oldest_open_ms).min()
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} slice(s) written, {} skipped as complete, {} rows, {} pages, {} rejected",
            self.dataset,
            self.slices.len(),
            self.skipped.len(),
            self.rows(),
            self.pages(),
            self.rejects()
        )
    }
}

/// The opened lake and sources of one configuration.
pub struct Engine {
    settings: Arc<Settings>,
    store: Arc<dyn ObjectStore>,
    state: StateStore,
    clients: BTreeMap<String, SourceClient>,
    clock: Clock,
}

impl Engine {
    /// Opens the destination and builds the source clients.
    pub fn open(settings: Settings) -> Result<Self, EngineError> {
        let store = open_store(&settings.destination)?;
        let mut clients = BTreeMap::new();
        for (name, source) in &settings.sources {
            let client =
                SourceClient::new(source).map_err(|e| EngineError::SourceSetup(Box::new(e)))?;
            clients.insert(name.clone(), client);
        }
        let state = StateStore::new(store.clone());
        Ok(Self { settings: Arc::new(settings), store, state, clients, clock: Clock::system() })
    }

    /// The engine reading the time from `clock` (tests fix "today" with it).
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    /// Checks that the lake can be written and read (a missing bucket or a wrong key
    /// fails here, with a message that names the bucket and never the secret).
    pub async fn check_destination(&self) -> Result<(), EngineError> {
        probe(self.store.as_ref(), &self.settings.destination).await.map_err(EngineError::Store)
    }

    /// The configuration.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The lake.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The checkpoints.
    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// The client of a configured source.
    pub fn client(&self, source: &str) -> Option<&SourceClient> {
        self.clients.get(source)
    }

    fn pipeline_run(&self, name: &str) -> Result<PipelineRun<'_>, EngineError> {
        let catalog = &self.settings.catalog;
        let dataset = catalog.get(name).ok_or_else(|| EngineError::UnknownPipeline {
            name: name.to_string(),
            known: catalog.names().join(", "),
        })?;
        let settings = &self.settings.pipelines[name];
        let missing = || EngineError::MissingSource {
            pipeline: name.to_string(),
            source_name: settings.source.clone(),
        };
        let source = self.settings.sources.get(&settings.source).ok_or_else(missing)?;
        let client = self.clients.get(&settings.source).ok_or_else(missing)?;
        let auth = Authenticator::new(&dataset.spec.auth, source)
            .map_err(|e| EngineError::SourceSetup(Box::new(e)))?;
        let needed = &dataset.spec.request.for_each;
        let listed = settings.for_each_from.is_some();
        if settings.for_each.is_empty() && !needed.is_empty() && !listed {
            let keys = needed.iter().map(|k| format!("{k} = ...")).collect::<Vec<_>>().join(", ");
            return Err(EngineError::ForEachMissing { pipeline: name.to_string(), keys });
        }
        // Listed entries are added by `runnable`; until then only the configured ones.
        let entries = match settings.for_each.is_empty() && listed {
            true => Vec::new(),
            false => request_entries(
                &dataset.spec,
                &settings.for_each,
                &source.path_params,
                &self.settings.tenant_id,
            )
            .map_err(|problem| EngineError::RequestPath { pipeline: name.to_string(), problem })?,
        };
        let mut children = Vec::new();
        for (child, child_settings) in &self.settings.pipelines {
            let fed =
                catalog.get(child).and_then(|d| d.spec.fan_out()).is_some_and(|f| f.parent == name);
            if fed && child_settings.enabled {
                children.push(self.pipeline_run(child)?);
            }
        }
        Ok(PipelineRun {
            dataset,
            settings,
            tenant_id: self.settings.tenant_id.clone(),
            zone: source.zone,
            entries,
            body_wrapper: dataset.spec.request.wrap_in.clone().filter(|_| !source.flat_body),
            client,
            auth,
            store: self.store.clone(),
            state: &self.state,
            spool_dir: self.settings.spool_dir.clone(),
            children,
            clock: self.clock,
        })
    }

    /// The context of a pipeline that runs on its own (not a fan-out dataset, which runs
    /// within its parent's slices).
    fn standalone_run(&self, name: &str) -> Result<PipelineRun<'_>, EngineError> {
        let run = self.pipeline_run(name)?;
        match run.dataset.spec.fan_out() {
            Some(fan_out) => Err(EngineError::FanOutDataset {
                name: name.to_string(),
                parent: fan_out.parent.clone(),
            }),
            None => Ok(run),
        }
    }

    /// [`Self::standalone_run`] with the entries that `for_each_from` lists added to the
    /// configured ones (each distinct entry once).
    async fn runnable(&self, name: &str) -> Result<PipelineRun<'_>, EngineError> {
        let mut run = self.standalone_run(name)?;
        let Some(list) = &run.settings.for_each_from else { return Ok(run) };
        let keys = &run.dataset.spec.request.for_each;
        let mut entries = run.settings.for_each.clone();
        for listed in listed_entries(self, name, list, keys).await? {
            if !entries.contains(&listed) {
                entries.push(listed);
            }
        }
        let source = &self.settings.sources[&run.settings.source];
        run.entries = request_entries(
            &run.dataset.spec,
            &entries,
            &source.path_params,
            &self.settings.tenant_id,
        )
        .map_err(|problem| EngineError::RequestPath { pipeline: name.to_string(), problem })?;
        Ok(run)
    }

    /// Whether `month` of `run`'s dataset is complete, with each of its enabled fan-out
    /// datasets committed with it (not older than it: a fan-out dataset that was off, or
    /// lost its month, makes the month to be fetched again).
    async fn month_is_complete(
        &self,
        run: &PipelineRun<'_>,
        month: Month,
    ) -> Result<bool, EngineError> {
        let parent = self.state.partition(&self.partition_id(run.dataset_name(), month)).await?;
        let Some(parent) = parent.filter(|cp| cp.state == SliceState::Complete) else {
            return Ok(false);
        };
        for child in &run.children {
            let id = self.partition_id(child.dataset_name(), month);
            let child = self.state.partition(&id).await?;
            if !child.is_some_and(|cp| {
                cp.state == SliceState::Complete && cp.synced_at >= parent.synced_at
            }) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Names of the enabled pipelines that run on their own: what `sync` and `backfill`
    /// run (an enabled fan-out dataset runs within its parent's slices).
    pub fn enabled_pipelines(&self) -> Vec<String> {
        let catalog = &self.settings.catalog;
        let standalone = |name: &str| catalog.get(name).is_some_and(|d| d.spec.fan_out().is_none());
        self.settings
            .pipelines
            .iter()
            .filter(|(name, p)| p.enabled && standalone(name))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Fetches whole months `from..=to` of a pipeline. Months already complete are
    /// skipped unless `refresh`. A snapshot dataset takes today's snapshot instead,
    /// whatever the months.
    pub async fn backfill(
        &self,
        name: &str,
        from: Month,
        to: Month,
        refresh: bool,
        progress: &dyn Progress,
    ) -> Result<RunReport, EngineError> {
        let run = self.runnable(name).await?;
        if run.dataset.spec.is_snapshot() {
            return self.snapshot(&run, progress).await;
        }
        let current = Month::containing(self.clock.now(), run.zone);
        if from > to {
            return Err(EngineError::BadRange(format!(
                "--from {from} is after --to {to}: give the earlier month first"
            )));
        }
        if to > current {
            return Err(EngineError::BadRange(format!(
                "--to {to} is in the future: the current month of source zone {} is {current}",
                format_zone(run.zone)
            )));
        }
        let whole_month = WriteMode::of_slice(true, run.dataset.spec.sync.always_merge);
        let mut slices = Vec::new();
        let mut skipped = Vec::new();
        for month in from.through(to) {
            if self.month_is_complete(&run, month).await? && !refresh {
                skipped.push(month);
            } else {
                slices.push((Slice::Month(month.slice(run.zone)), whole_month));
            }
        }
        progress.start(name, (slices.len() + skipped.len()) as u64);
        for month in &skipped {
            progress.slice_done(name, (*month).into(), "already complete, skipped");
        }
        let mut report = self.run_slices(&run, slices, progress).await;
        progress.finish();
        if let Ok(r) = report.as_mut() {
            r.skipped = skipped;
            if let Some(open) = r.oldest_open_ms() {
                // The next sync reads these months' open records again.
                let previous = self.state.pipeline(name, &run.tenant_id).await?;
                let mut checkpoint =
                    previous.unwrap_or_else(|| PipelineCheckpoint::new(name, &run.tenant_id));
                checkpoint.open_since_ms =
                    Some(checkpoint.open_since_ms.map_or(open, |o| o.min(open)));
                self.state.put_pipeline(&checkpoint).await?;
            }
        }
        report
    }

    /// Takes today's snapshot of a snapshot dataset: one slice, replacing the day's
    /// partition (and only it).
    async fn snapshot(
        &self,
        run: &PipelineRun<'_>,
        progress: &dyn Progress,
    ) -> Result<RunReport, EngineError> {
        let today = self.clock.today(run.zone);
        info!(dataset = run.dataset_name(), day = %today, "Snapshot.");
        progress.start(run.dataset_name(), 1);
        let report = self
            .run_slices(run, vec![(Slice::Snapshot(today), WriteMode::Replace)], progress)
            .await;
        progress.finish();
        report
    }

    /// Re-reads the window from the pipeline's watermark (or the start of the current month)
    /// minus the lookback, or from the oldest record still open when last read if that is
    /// earlier, up to now, merging by key into the partitions: by month slices of the event
    /// time, or, for a pipeline with a cursor, as one window of the cursor fields whose rows
    /// go to the partitions of their event months. A snapshot dataset takes today's
    /// snapshot.
    pub async fn sync(
        &self,
        name: &str,
        progress: &dyn Progress,
    ) -> Result<RunReport, EngineError> {
        let run = self.runnable(name).await?;
        let now = self.clock.now();
        let previous = self.state.pipeline(name, &run.tenant_id).await?;
        let start = previous
            .as_ref()
            .and_then(|p| p.watermark_ms)
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or_else(|| Month::containing(now, run.zone).start(run.zone));
        let lookback =
            ChronoDuration::from_std(run.settings.lookback).unwrap_or(ChronoDuration::zero());
        // Records still open at the last sync are read again until they close. open_since is
        // an event time; for a pipeline with a cursor the window is one of arrival (upload)
        // time, but a record cannot arrive before it happened, so a window from the oldest
        // open record's event time holds every record open at the last sync: wider than
        // needed, never short.
        let open_since = previous
            .as_ref()
            .and_then(|p| p.open_since_ms)
            .and_then(DateTime::from_timestamp_millis);
        let from = open_since.into_iter().fold(start - lookback, DateTime::min).min(now);
        if !run.dataset.spec.is_snapshot() {
            info!(dataset = name, from = %from, to = %now, open_since = ?open_since, "Incremental sync window.");
        }
        let (from_ms, now_ms) = (from.timestamp_millis(), now.timestamp_millis());
        let cursor = match &run.dataset.spec.slicing {
            SlicingSpec::CalendarMonth { cursor: Some(cursor), time_format, .. } => {
                Some((cursor, *time_format))
            }
            _ => None,
        };
        let result = match cursor {
            _ if run.dataset.spec.is_snapshot() => self.snapshot(&run, progress).await,
            Some((cursor, time_format)) => {
                progress.start(name, 1);
                let window =
                    run_cursor_window(&run, cursor, time_format, (from_ms, now_ms), progress).await;
                progress.finish();
                window.map(|slices| {
                    for outcome in &slices {
                        progress.slice_committed(name, outcome);
                        let note = format!("{} rows after the merge", outcome.rows);
                        progress.slice_done(name, outcome.partition, &note);
                    }
                    RunReport { dataset: name.to_string(), slices, skipped: Vec::new() }
                })
            }
            None => self.fetch_range(name, from_ms, now_ms, progress).await,
        };
        let mut checkpoint =
            previous.unwrap_or_else(|| PipelineCheckpoint::new(name, &run.tenant_id));
        checkpoint.last_attempt_at = Some(now);
        match &result {
            Ok(report) => {
                // The window covered every record open before, so its open records are all.
                checkpoint.open_since_ms = report.oldest_open_ms();
                checkpoint.watermark_ms = Some(now.timestamp_millis());
                checkpoint.last_success_at = Some(now);
                checkpoint.last_error = None;
            }
            Err(e) => checkpoint.last_error = Some(e.to_string()),
        }
        self.state.put_pipeline(&checkpoint).await?;
        result
    }

    /// Fetches the instants `[begin_ms, end_ms]` of a pipeline, one slice per month; a
    /// slice that covers its whole month replaces the partition, any other merges into it
    /// by key. A snapshot dataset takes today's snapshot instead.
    pub async fn fetch_range(
        &self,
        name: &str,
        begin_ms: i64,
        end_ms: i64,
        progress: &dyn Progress,
    ) -> Result<RunReport, EngineError> {
        let run = self.runnable(name).await?;
        if run.dataset.spec.is_snapshot() {
            return self.snapshot(&run, progress).await;
        }
        let always_merge = run.dataset.spec.sync.always_merge;
        let mode = |s: &MonthSlice| WriteMode::of_slice(s.is_whole_month(run.zone), always_merge);
        let slices: Vec<(Slice, WriteMode)> = split_by_month(begin_ms, end_ms, run.zone)
            .into_iter()
            .map(|s| (Slice::Month(s), mode(&s)))
            .collect();
        progress.start(name, slices.len() as u64);
        let result = self.run_slices(&run, slices, progress).await;
        progress.finish();
        result
    }

    async fn run_slices(
        &self,
        run: &PipelineRun<'_>,
        slices: Vec<(Slice, WriteMode)>,
        progress: &dyn Progress,
    ) -> Result<RunReport, EngineError> {
        let mut report =
            RunReport { dataset: run.dataset_name().to_string(), ..Default::default() };
        let mut failures: Vec<EngineError> = Vec::new();
        let total = slices.len();
        // Up to `slice_concurrency` months fetched at once, and one more being written
        // meanwhile (a month that has all its pages makes way for the next one's fetch
        // before it is written); results in month order.
        let concurrency = run.settings.slice_concurrency.max(1);
        let fetching = Semaphore::new(concurrency);
        let fetching = &fetching;
        let jobs = stream::iter(slices)
            .map(|(slice, mode)| async move {
                if progress.should_stop() {
                    return (slice, None);
                }
                (slice, Some(run_slice(run, slice, mode, progress, fetching).await))
            })
            .buffered(concurrency + 1);
        futures::pin_mut!(jobs);
        while let Some((slice, result)) = jobs.next().await {
            let Some(result) = result else {
                return Err(EngineError::Stopped { done: report.slices.len(), total });
            };
            match result {
                Ok(outcome) => {
                    progress.slice_committed(run.dataset_name(), &outcome);
                    progress.slice_done(
                        run.dataset_name(),
                        slice.key(),
                        &format!("{} rows, {} pages", outcome.rows, outcome.pages),
                    );
                    report.slices.push(outcome);
                }
                Err(e) => {
                    error!(dataset = %run.dataset_name(), partition = %slice.key(), error = %e, "Slice failed.");
                    progress.slice_failed(run.dataset_name(), slice.key(), &e.to_string());
                    progress.slice_done(run.dataset_name(), slice.key(), "FAILED");
                    let stop = matches!(
                        &e,
                        EngineError::Source { source, .. } if source.is_auth_failure()
                    );
                    failures.push(e);
                    if stop {
                        break;
                    }
                }
            }
        }
        match failures.len() {
            0 => Ok(report),
            1 if total == 1 => Err(failures.remove(0)),
            n => {
                Err(EngineError::SlicesFailed { failed: n, total, first: failures[0].to_string() })
            }
        }
    }

    /// The partition of `dataset` for `key` (a month or a snapshot's day) in this tenant.
    pub fn partition_id(&self, dataset: &str, key: impl Into<PartitionKey>) -> PartitionId {
        PartitionId::new(dataset, self.settings.tenant_id.clone(), key)
    }
}
