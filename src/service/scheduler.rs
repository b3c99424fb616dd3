//! The schedule loops: one per enabled pipeline and kind (incremental sync, refresh). Each
//! sleeps until its next occurrence (see [`super::schedule`]), then queues a run; a run
//! still queued or running when the next occurrence comes is not doubled, the occurrence is
//! skipped and counted in `cecsync_ticks_skipped_total`.

use std::sync::Arc;

use chrono::Utc;
use tracing::{info, warn};

use super::context::Service;
use super::error::ServiceError;
use super::executor::SubmitError;
use super::jobs::{JobKind, JobRequest};
use super::marks::{mark_path, read_mark};
use super::schedule::Schedule;

/// The schedule of `kind` for `pipeline`, in the pipeline's schedule zone.
pub fn schedule_of(
    service: &Service,
    pipeline: &str,
    kind: JobKind,
) -> Result<Schedule, ServiceError> {
    let settings = service.engine.settings();
    let fail = |problem: String| ServiceError::Schedule { pipeline: pipeline.to_string(), problem };
    let p = settings.pipelines.get(pipeline).ok_or_else(|| fail("is not configured".into()))?;
    let zone = service.schedule_zone(pipeline).ok_or_else(|| fail("has no source".into()))?;
    let text = if kind == JobKind::Refresh { &p.refresh_schedule } else { &p.schedule };
    Schedule::new(text, zone).map_err(fail)
}

/// Runs the schedule of `kind` for `pipeline` until the service stops.
pub async fn run_schedule(
    service: Arc<Service>,
    pipeline: String,
    kind: JobKind,
    schedule: Schedule,
) {
    let store = service.engine.store();
    let path = mark_path(&pipeline, &service.engine.settings().tenant_id, kind);
    let mut last = match read_mark(&store, &path).await {
        Ok(mark) => mark.map(|m| m.last_run),
        Err(e) => {
            warn!(%pipeline, kind = kind.name(), error = %e, "Starting the schedule afresh.");
            None
        }
    };
    info!(
        %pipeline, kind = kind.name(), schedule = schedule.text(), last_run = ?last,
        "Schedule started."
    );
    loop {
        let now = Utc::now();
        let Some(due) = schedule.next_due(last, now) else {
            warn!(%pipeline, kind = kind.name(), "The schedule has no next occurrence.");
            return;
        };
        let wait = (due - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = service.shutdown.wait() => return,
        }
        let req = JobRequest {
            kind,
            pipeline: pipeline.clone(),
            range: None,
            refresh: false,
            occurrence: Some(due),
        };
        match service.submit(req) {
            Ok(_) => {}
            Err(SubmitError::StillRunning { .. }) => {
                info!(
                    %pipeline, kind = kind.name(), occurrence = %due,
                    "Previous run still going; this occurrence is skipped."
                );
            }
            Err(SubmitError::Stopping) => return,
            Err(e) => {
                warn!(%pipeline, kind = kind.name(), error = %e, "Scheduled run not started.")
            }
        }
        last = Some(due);
    }
}
