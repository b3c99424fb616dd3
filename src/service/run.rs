//! `cecsync run`: opens the engine, serves the control API, takes the lake's lease, runs
//! the schedules and the queued jobs until a stop signal, then drains within the grace
//! period and gives the lease up.
//!
//! ```text
//!  open engine ─> control API up ─> take lease (wait or exit) ─> schedules + renewals
//!  stop signal ─> stop flag ─> jobs drain (grace, renewals go on) ─> jobs aborted, awaited
//!    ─> release lease ─> exit
//!  lease lost, or not renewed by TTL/3 before expiry ─> stop flag ─> jobs aborted at once
//! ```
//!
//! The lease is given up a third of its TTL before it expires when renewals fail, so the
//! work stops while the lease is still this service's, and it is released only once every
//! job task has stopped.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::api::router;
use super::context::Service;
use super::error::ServiceError;
use super::jobs::JobKind;
use super::lease::{
    keep, renewal_interval, tenant_store, Backend, Holder, Lease, LeaseError, LeaseRecord,
};
use super::push::{compact_while_running, start_push};
use super::scheduler::{run_schedule, schedule_of};
use super::shutdown::{watch_signals, Shutdown};
use crate::config::{LeaseMode, Settings};
use crate::engine::Engine;

/// How often the drain checks for jobs still running.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// How long the control API may take to close after the drain.
const API_CLOSE: Duration = Duration::from_secs(5);

/// Runs the service until a stop signal (exit 0) or a failure (the error).
pub async fn run(settings: Settings) -> Result<(), ServiceError> {
    let shutdown = Shutdown::new();
    watch_signals(shutdown.clone())?;
    let engine = Arc::new(Engine::open(settings)?);
    engine.check_destination().await?;
    let config = engine.settings().service.clone();
    let pipelines = engine.enabled_pipelines();
    let push = engine.settings().push.clone();
    if pipelines.is_empty() && push.is_none() {
        return Err(ServiceError::NoPipeline {
            file: engine.settings().file.display().to_string(),
        });
    }
    let backend = Backend::for_destination(&engine.settings().destination);
    let lease = Lease::new(
        tenant_store(engine.store(), &engine.settings().tenant_id),
        backend,
        Holder::this_process(),
        config.lease_ttl,
    );
    let service = Arc::new(Service::new(engine.clone(), lease, shutdown.clone()));

    let addr = config.control_listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Listen { addr: addr.to_string(), source })?;
    let bound = listener.local_addr().map_err(ServiceError::Serve)?;
    info!(addr = %bound, service = %service.lease.holder(), "Control API listening.");
    let api_stop = Shutdown::new();
    let server = tokio::spawn({
        let api_stop = api_stop.clone();
        let app = router(service.clone());
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { api_stop.wait().await })
                .await
        }
    });

    // Pushes are received (spooled) from now on, lease or not.
    let receivers = match &push {
        Some(settings) => Some(start_push(&service, settings).await?),
        None => None,
    };

    let mut compaction = None;
    let outcome = match take_lease(&service, config.lease_mode).await {
        Ok(Some(record)) => {
            if let (Some((_, compactor)), Some(settings)) = (&receivers, &push) {
                let every = settings.compact_interval;
                let compactions = compact_while_running(service.clone(), compactor.clone(), every);
                compaction = Some(tokio::spawn(compactions));
            }
            for pipeline in &pipelines {
                for kind in [JobKind::Sync, JobKind::Refresh] {
                    let schedule = schedule_of(&service, pipeline, kind)?;
                    tokio::spawn(run_schedule(service.clone(), pipeline.clone(), kind, schedule));
                }
            }
            // The lease is renewed until the jobs have stopped, also while they drain.
            let jobs_stopped = Shutdown::new();
            let lost = Shutdown::new();
            let keeper = async {
                let kept = keep_lease(&service, record.expires_at, jobs_stopped.wait()).await;
                if kept.is_err() {
                    lost.trigger();
                }
                kept
            };
            let stopper = async {
                service.shutdown.wait().await;
                let reason = tokio::select! {
                    finished = drain(&service, config.grace_period) => {
                        if finished { None } else { Some("grace period over") }
                    }
                    _ = lost.wait() => Some("the lease was lost"),
                };
                if let Some(reason) = reason {
                    warn!(
                        jobs = service.jobs.active_count(),
                        "{reason}: aborting the jobs in flight; their partitions keep the data \
                         they had."
                    );
                }
                service.stop_jobs(&format!("aborted: {}", reason.unwrap_or("stopped"))).await;
                jobs_stopped.trigger();
            };
            tokio::join!(keeper, stopper).0
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    shutdown.trigger();
    if let Some((receivers, _)) = receivers {
        receivers.shutdown().await;
    }
    // A compaction in flight ends before the lease is given up (or is cut: its commit
    // protocol leaves every partition old or new, and the spool keeps its pushes).
    if let Some(mut task) = compaction {
        if tokio::time::timeout(config.grace_period, &mut task).await.is_err() {
            warn!("Push compaction still running after the grace period: aborted.");
            task.abort();
            let _ = task.await;
        }
    }
    service.stop_jobs("aborted: the service stopped").await;
    if service.is_leader() {
        match service.lease.release(Utc::now()).await {
            Ok(()) => info!("Lease released."),
            Err(e) => warn!(error = %e, "Could not release the lease; it expires by itself."),
        }
        service.set_leader(false);
    }
    api_stop.trigger();
    match tokio::time::timeout(API_CLOSE, server).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "Control API failed."),
        Ok(Err(e)) => warn!(error = %e, "Control API task failed."),
        Ok(Ok(Ok(()))) | Err(_) => {}
    }
    info!("Service stopped.");
    outcome
}

/// Takes the lease, waiting for it in `Wait` mode; `None` when stopped while waiting.
async fn take_lease(
    service: &Service,
    mode: LeaseMode,
) -> Result<Option<LeaseRecord>, ServiceError> {
    let mut reported = None;
    loop {
        match service.lease.acquire(Utc::now()).await {
            Ok(record) => {
                info!(
                    term = record.term, expires_at = %record.expires_at,
                    "Lease taken: this service writes the lake."
                );
                service.set_leader(true);
                return Ok(Some(record));
            }
            Err(e) if mode == LeaseMode::Exit => return Err(e.into()),
            Err(e) => {
                let text = e.to_string();
                if let LeaseError::Held { holder, .. } = &e {
                    if reported.as_ref() != Some(holder) {
                        warn!(error = %text, "Waiting for the lake's lease.");
                        reported = Some(holder.clone());
                    }
                } else {
                    warn!(error = %text, "Could not check the lake's lease; trying again.");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(renewal_interval(service.lease.ttl())) => {}
            _ = service.shutdown.wait() => return Ok(None),
        }
    }
}

/// Renews the lease, held until `valid_until`, until `stop` (`Ok`). When the lease is lost,
/// or not renewed by a third of the TTL before it expires, this service stops being the
/// leader and raises the stop flag at once, and the error is returned.
async fn keep_lease(
    service: &Service,
    valid_until: chrono::DateTime<Utc>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ServiceError> {
    match keep(&service.lease, valid_until, stop).await {
        Ok(()) => Ok(()),
        Err(e) => {
            service.set_leader(false);
            service.shutdown.trigger();
            warn!(error = %e, "Lease lost: stopping the work.");
            Err(e.into())
        }
    }
}

/// Waits for the jobs in flight, up to `grace`; `false` when some are still running.
async fn drain(service: &Service, grace: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + grace;
    let active = service.jobs.active_count();
    if active > 0 {
        info!(jobs = active, grace_secs = grace.as_secs(), "Waiting for the jobs in flight.");
    }
    while service.jobs.active_count() > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path as StorePath;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };

    use super::*;

    /// A store whose writes fail once `refuse` is set; it delegates everything else.
    #[derive(Debug)]
    struct FlakyStore {
        inner: InMemory,
        refuse: Arc<AtomicBool>,
    }

    impl fmt::Display for FlakyStore {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "FlakyStore")
        }
    }

    impl FlakyStore {
        fn check(&self) -> object_store::Result<()> {
            if self.refuse.load(Ordering::SeqCst) {
                return Err(object_store::Error::Generic {
                    store: "FlakyStore",
                    source: "the store does not answer".into(),
                });
            }
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for FlakyStore {
        async fn put_opts(
            &self,
            p: &StorePath,
            v: PutPayload,
            o: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.check()?;
            self.inner.put_opts(p, v, o).await
        }
        async fn put_multipart_opts(
            &self,
            p: &StorePath,
            o: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.check()?;
            self.inner.put_multipart_opts(p, o).await
        }
        async fn get_opts(&self, p: &StorePath, o: GetOptions) -> object_store::Result<GetResult> {
            self.inner.get_opts(p, o).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<StorePath>>,
        ) -> BoxStream<'static, object_store::Result<StorePath>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            p: Option<&StorePath>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(p)
        }
        async fn list_with_delimiter(
            &self,
            p: Option<&StorePath>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(p).await
        }
        async fn copy_opts(
            &self,
            f: &StorePath,
            t: &StorePath,
            o: CopyOptions,
        ) -> object_store::Result<()> {
            self.check()?;
            self.inner.copy_opts(f, t, o).await
        }
    }

    /// A service on a local lake whose lease lives in a store that fails on demand.
    fn service(lake: &Path, ttl: Duration) -> (Arc<Service>, Arc<AtomicBool>) {
        let engine = crate::service::test_support::engine_on(lake);
        let refuse = Arc::new(AtomicBool::new(false));
        let store = FlakyStore { inner: InMemory::new(), refuse: refuse.clone() };
        let lease = Lease::new(Arc::new(store), Backend::Terms, Holder::this_process(), ttl);
        (Arc::new(Service::new(engine, lease, Shutdown::new())), refuse)
    }

    /// When renewals fail, the holder gives the lease up a third of the TTL before it
    /// expires, not at the expiry (when a standby may already take over), and stops the
    /// work at once.
    #[tokio::test]
    async fn unrenewed_lease_is_given_up_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(3);
        let (svc, refuse) = service(dir.path(), ttl);
        let record = svc.lease.acquire(Utc::now()).await.unwrap();
        svc.set_leader(true);
        refuse.store(true, Ordering::SeqCst);
        let stop = std::future::pending();
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            keep_lease(&svc, record.expires_at, stop),
        )
        .await;
        let gave_up_at = Utc::now();
        assert!(result.unwrap().is_err());
        assert!(
            gave_up_at <= record.expires_at - ttl / 3 + chrono::Duration::milliseconds(300),
            "gave up at {gave_up_at}, the lease ran until {}",
            record.expires_at
        );
        assert!(!svc.is_leader());
        assert!(svc.shutdown.is_stopping(), "the work stops at once");
    }

    /// Stopping the jobs aborts their tasks and returns once they have stopped: a job
    /// waiting for its pipeline is cancelled, its task (which holds the service) is gone,
    /// and no job starts afterwards.
    #[tokio::test]
    async fn stop_jobs_aborts_and_awaits_the_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, _) = service(dir.path(), Duration::from_secs(30));
        svc.set_leader(true);
        let busy = svc.jobs.pipeline_lock("rbt_recognition").lock_owned().await;
        let sync = || crate::service::jobs::JobRequest {
            kind: JobKind::Sync,
            pipeline: "rbt_recognition".into(),
            range: None,
            refresh: false,
            occurrence: None,
        };
        let id = svc.submit(sync()).unwrap();
        assert_eq!(Arc::strong_count(&svc), 2, "the job's task holds the service");
        tokio::time::timeout(Duration::from_secs(5), svc.stop_jobs("aborted: test")).await.unwrap();
        assert_eq!(Arc::strong_count(&svc), 1, "the job's task has stopped");
        let view = svc.jobs.get(id).unwrap();
        assert_eq!(view.state, crate::service::jobs::JobState::Cancelled);
        assert_eq!(view.errors, ["aborted: test"]);
        assert_eq!(svc.jobs.active_count(), 0);
        assert!(matches!(svc.submit(sync()), Err(crate::service::executor::SubmitError::Stopping)));
        drop(busy);
    }
}
