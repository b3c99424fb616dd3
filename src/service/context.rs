//! What every part of the running service shares: one engine (so one client, and one set
//! of limits, per source), the jobs, the metrics, the stop flag and the lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset, Utc};

use super::jobs::Jobs;
use super::lease::Lease;
use super::shutdown::Shutdown;
use crate::engine::Engine;
use crate::telemetry::Telemetry;

/// The running service's shared parts.
pub struct Service {
    /// The engine every job runs on.
    pub engine: Arc<Engine>,
    /// Jobs and their views.
    pub jobs: Arc<Jobs>,
    /// Metrics.
    pub telemetry: Arc<Telemetry>,
    /// The stop flag.
    pub shutdown: Shutdown,
    /// The lake's lease.
    pub lease: Lease,
    /// When the service started.
    pub started_at: DateTime<Utc>,
    leader: AtomicBool,
    /// The tasks of the jobs submitted, so that they can be aborted and awaited.
    pub(crate) tasks: Mutex<JobTasks>,
}

/// The job tasks; once closed, no job is started any more.
#[derive(Default)]
pub(crate) struct JobTasks {
    pub(crate) closed: bool,
    pub(crate) set: tokio::task::JoinSet<()>,
}

impl Service {
    /// Assembles the service; it holds no lease yet.
    pub fn new(engine: Arc<Engine>, lease: Lease, shutdown: Shutdown) -> Self {
        Self {
            engine,
            jobs: Arc::new(Jobs::new()),
            telemetry: Arc::new(Telemetry::new()),
            shutdown,
            lease,
            started_at: Utc::now(),
            leader: AtomicBool::new(false),
            tasks: Mutex::new(JobTasks::default()),
        }
    }

    /// Whether this service holds the lease (and so may write).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Records whether this service holds the lease.
    pub fn set_leader(&self, held: bool) {
        self.leader.store(held, Ordering::SeqCst);
        self.telemetry.set(crate::telemetry::LEASE_HELD, &[], if held { 1.0 } else { 0.0 });
    }

    /// The zone a pipeline's schedules are read in: `[service] timezone`, else the zone of
    /// the pipeline's source.
    pub fn schedule_zone(&self, pipeline: &str) -> Option<FixedOffset> {
        let settings = self.engine.settings();
        settings.service.schedule_zone.or_else(|| settings.source_of(pipeline).map(|s| s.zone))
    }
}
