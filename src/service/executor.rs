//! Running jobs: [`Service::submit`] checks a request, queues it and spawns it; the job
//! waits for its pipeline's lock, runs on the shared engine, and records its outcome, its
//! metrics and (for a scheduled run) the schedule's mark.

use std::sync::{Arc, PoisonError};

use chrono::Utc;
use tracing::{info, warn};

use super::context::Service;
use super::jobs::{JobKind, JobProgress, JobRequest, JobState};
use super::marks::{mark_path, write_mark, ScheduleMark};
use super::schedule::refresh_months;
use crate::calendar::Month;
use crate::engine::{EngineError, RunReport};
use crate::telemetry;

/// Why a job was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The service is shutting down.
    #[error("the service is shutting down and starts no new job")]
    Stopping,
    /// Another service holds the lake's lease.
    #[error("this service does not hold the lake's lease (another service writes it); try the one that does")]
    NotLeader,
    /// No such pipeline, or it is not enabled.
    #[error("pipeline '{name}' is not enabled here; enabled: {enabled}")]
    UnknownPipeline {
        /// The name asked for.
        name: String,
        /// The enabled pipelines.
        enabled: String,
    },
    /// The months asked for cannot be run.
    #[error("{0}")]
    BadRange(String),
    /// A scheduled run of the same kind is still queued or running.
    #[error("the previous {kind} of {pipeline} is still running")]
    StillRunning {
        /// The pipeline.
        pipeline: String,
        /// The kind.
        kind: &'static str,
    },
}

impl Service {
    /// Queues a job and starts it as soon as its pipeline is free; returns its id.
    pub fn submit(self: &Arc<Self>, req: JobRequest) -> Result<u64, SubmitError> {
        if self.shutdown.is_stopping() {
            return Err(SubmitError::Stopping);
        }
        if !self.is_leader() {
            return Err(SubmitError::NotLeader);
        }
        let enabled = self.engine.enabled_pipelines();
        if !enabled.contains(&req.pipeline) {
            return Err(SubmitError::UnknownPipeline {
                name: req.pipeline.clone(),
                enabled: enabled.join(", "),
            });
        }
        if let Some((from, to)) = req.range {
            if from > to {
                return Err(SubmitError::BadRange(format!(
                    "from {from} is after to {to}: give the earlier month first"
                )));
            }
            let zone = self.engine.settings().source_of(&req.pipeline).map(|s| s.zone);
            if let Some(current) = zone.map(|z| Month::containing(Utc::now(), z)) {
                if to > current {
                    return Err(SubmitError::BadRange(format!(
                        "to {to} is in the future: the source's current month is {current}"
                    )));
                }
            }
        }
        if req.kind != JobKind::Backfill && self.jobs.has_active(&req.pipeline, req.kind) {
            self.telemetry.add(
                telemetry::TICKS_SKIPPED,
                &[("pipeline", &req.pipeline), ("kind", req.kind.name())],
                1.0,
            );
            return Err(SubmitError::StillRunning {
                pipeline: req.pipeline.clone(),
                kind: req.kind.name(),
            });
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if tasks.closed {
            return Err(SubmitError::Stopping);
        }
        while tasks.set.try_join_next().is_some() {}
        let id = self.jobs.queue(&req, Utc::now());
        let service = self.clone();
        tasks.set.spawn(async move { service.run_job(id, req).await });
        Ok(id)
    }

    /// Starts no job any more, aborts the job tasks still running and waits until they
    /// have stopped, so that nothing of this service writes the lake after it returns.
    /// The jobs aborted are marked cancelled. A slice cut short leaves its partition as it
    /// was (the commit protocol) and is fetched again by the next run.
    pub async fn stop_jobs(&self, reason: &str) {
        let mut set = {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            tasks.closed = true;
            std::mem::take(&mut tasks.set)
        };
        set.abort_all();
        while set.join_next().await.is_some() {}
        for (pipeline, kind) in self.jobs.cancel_active(Utc::now(), reason) {
            self.telemetry.add(
                telemetry::JOBS,
                &[("pipeline", &pipeline), ("kind", kind.name()), ("outcome", "cancelled")],
                1.0,
            );
        }
    }

    async fn run_job(self: Arc<Self>, id: u64, req: JobRequest) {
        let lock = self.jobs.pipeline_lock(&req.pipeline);
        let guard = tokio::select! {
            guard = lock.lock_owned() => Some(guard),
            _ = self.shutdown.wait() => None,
        };
        if guard.is_none() || self.shutdown.is_stopping() {
            self.finish(id, &req, JobState::Cancelled, None);
            return;
        }
        self.jobs.update(id, |v| {
            v.state = JobState::Running;
            v.started_at = Some(Utc::now());
        });
        info!(job = id, kind = req.kind.name(), pipeline = %req.pipeline, "Job started.");
        let progress = JobProgress::new(
            id,
            &req.pipeline,
            self.jobs.clone(),
            self.telemetry.clone(),
            self.shutdown.clone(),
        );
        let result = self.execute(&req, &progress).await;
        let state = match &result {
            Ok(report) => {
                info!(
                    job = id, kind = req.kind.name(), pipeline = %req.pipeline,
                    rows = report.rows(), pages = report.pages(), slices = report.slices.len(),
                    "Job finished."
                );
                JobState::Succeeded
            }
            Err(EngineError::Stopped { .. }) => JobState::Cancelled,
            Err(e) => {
                warn!(
                    job = id, kind = req.kind.name(), pipeline = %req.pipeline, error = %e,
                    "Job failed."
                );
                JobState::Failed
            }
        };
        self.finish(id, &req, state, result.err().map(|e| e.to_string()));
        if state != JobState::Cancelled {
            self.record_occurrence(&req).await;
        }
        drop(guard);
    }

    async fn execute(
        &self,
        req: &JobRequest,
        progress: &JobProgress,
    ) -> Result<RunReport, EngineError> {
        let engine = &self.engine;
        match req.kind {
            JobKind::Sync => engine.sync(&req.pipeline, progress).await,
            JobKind::Refresh => {
                let settings = engine.settings();
                let pipeline = &settings.pipelines[&req.pipeline];
                let source = settings.source_of(&req.pipeline).ok_or_else(|| {
                    EngineError::MissingSource {
                        pipeline: req.pipeline.clone(),
                        source_name: pipeline.source.clone(),
                    }
                })?;
                let (from, to) =
                    refresh_months(Utc::now(), source.zone, pipeline.refresh_previous_days);
                engine.backfill(&req.pipeline, from, to, true, progress).await
            }
            JobKind::Backfill => {
                let Some((from, to)) = req.range else {
                    return Err(EngineError::BadRange("a backfill needs from and to".into()));
                };
                engine.backfill(&req.pipeline, from, to, req.refresh, progress).await
            }
        }
    }

    fn finish(&self, id: u64, req: &JobRequest, state: JobState, error: Option<String>) {
        self.jobs.update(id, |v| {
            v.state = state;
            v.finished_at = Some(Utc::now());
            v.errors.extend(error);
        });
        let outcome = match state {
            JobState::Succeeded => "ok",
            JobState::Cancelled => "cancelled",
            _ => "failed",
        };
        self.telemetry.add(
            telemetry::JOBS,
            &[("pipeline", &req.pipeline), ("kind", req.kind.name()), ("outcome", outcome)],
            1.0,
        );
    }

    /// Records the schedule occurrence a finished run was started for, so a restart does
    /// not run it again.
    async fn record_occurrence(&self, req: &JobRequest) {
        let Some(occurrence) = req.occurrence else { return };
        let settings = self.engine.settings();
        let path = mark_path(&req.pipeline, &settings.tenant_id, req.kind);
        let mark = ScheduleMark { last_run: occurrence };
        if let Err(e) = write_mark(&self.engine.store(), &path, &mark).await {
            warn!(pipeline = %req.pipeline, error = %e, "Could not record the schedule's last run.");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::service::lease::{tenant_store, Backend, Holder, Lease};
    use crate::service::shutdown::Shutdown;

    fn service(lake: &Path) -> Arc<Service> {
        let engine = crate::service::test_support::engine_on(lake);
        let lease = Lease::new(
            tenant_store(engine.store(), &engine.settings().tenant_id),
            Backend::Terms,
            Holder::this_process(),
            Duration::from_secs(9),
        );
        Arc::new(Service::new(engine, lease, Shutdown::new()))
    }

    fn request(kind: JobKind, range: Option<(Month, Month)>) -> JobRequest {
        JobRequest {
            kind,
            pipeline: "rbt_recognition".into(),
            range,
            refresh: false,
            occurrence: None,
        }
    }

    /// A scheduled run is not doubled while the previous one is queued: the occurrence is
    /// refused and counted; backfills queue behind it. Nothing is queued without the lease,
    /// during a shutdown, for an unknown pipeline or for months in the future.
    #[tokio::test]
    async fn submissions_are_checked_and_overlapping_ticks_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let sync = || request(JobKind::Sync, None);
        assert!(matches!(svc.submit(sync()), Err(SubmitError::NotLeader)));
        svc.set_leader(true);

        svc.submit(sync()).unwrap();
        assert!(matches!(svc.submit(sync()), Err(SubmitError::StillRunning { .. })));
        let skipped = [("pipeline", "rbt_recognition"), ("kind", "sync")];
        assert_eq!(svc.telemetry.value(telemetry::TICKS_SKIPPED, &skipped), Some(1.0));
        let jan = Month::new(2025, 1).unwrap();
        svc.submit(request(JobKind::Backfill, Some((jan, jan)))).unwrap();
        svc.submit(request(JobKind::Refresh, None)).unwrap();
        assert_eq!(svc.jobs.active_count(), 3);

        let future =
            Month::containing(Utc::now(), crate::calendar::parse_zone("+08:00").unwrap()).next();
        let err = svc.submit(request(JobKind::Backfill, Some((jan, future)))).unwrap_err();
        assert!(matches!(err, SubmitError::BadRange(_)), "{err}");
        let err = svc.submit(request(JobKind::Backfill, Some((future, jan)))).unwrap_err();
        assert!(matches!(err, SubmitError::BadRange(_)), "{err}");
        let mut other = request(JobKind::Backfill, Some((jan, jan)));
        other.pipeline = "nope".into();
        assert!(matches!(svc.submit(other), Err(SubmitError::UnknownPipeline { .. })));

        svc.shutdown.trigger();
        assert!(matches!(svc.submit(sync()), Err(SubmitError::Stopping)));
    }
}
