//! `cecsync run`: opens the engine, serves the control API, takes the lake's lease, runs
//! the schedules and the queued jobs until a stop signal, then drains within the grace
//! period and gives the lease up.
//!
//! ```text
//!  open engine ─> control API up ─> take lease (wait or exit) ─> schedules + renewals
//!  stop signal / lease lost ─> stop flag ─> jobs drain (grace) ─> release lease ─> exit
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::api::router;
use super::context::Service;
use super::error::ServiceError;
use super::jobs::JobKind;
use super::lease::{tenant_store, Backend, Holder, Lease, LeaseError};
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
    if pipelines.is_empty() {
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

    let outcome = match take_lease(&service, config.lease_mode).await {
        Ok(true) => {
            for pipeline in &pipelines {
                for kind in [JobKind::Sync, JobKind::Refresh] {
                    let schedule = schedule_of(&service, pipeline, kind)?;
                    tokio::spawn(run_schedule(service.clone(), pipeline.clone(), kind, schedule));
                }
            }
            keep_lease(&service).await
        }
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    shutdown.trigger();
    drain(&service, config.grace_period).await;
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

/// How often a waiting service checks the lease, and a holder renews it.
fn lease_poll(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_millis(250), Duration::from_secs(10))
}

/// Takes the lease, waiting for it in `Wait` mode; `false` when stopped while waiting.
async fn take_lease(service: &Service, mode: LeaseMode) -> Result<bool, ServiceError> {
    let mut reported = None;
    loop {
        match service.lease.acquire(Utc::now()).await {
            Ok(record) => {
                info!(
                    term = record.term, expires_at = %record.expires_at,
                    "Lease taken: this service writes the lake."
                );
                service.set_leader(true);
                return Ok(true);
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
            _ = tokio::time::sleep(lease_poll(service.lease.ttl())) => {}
            _ = service.shutdown.wait() => return Ok(false),
        }
    }
}

/// Renews the lease until the service stops (`Ok`) or the lease is lost (`Err`).
async fn keep_lease(service: &Service) -> Result<(), ServiceError> {
    let ttl = service.lease.ttl();
    let mut valid_until = Utc::now() + ttl;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(lease_poll(ttl)) => {}
            _ = service.shutdown.wait() => return Ok(()),
        }
        match service.lease.renew(Utc::now()).await {
            Ok(record) => valid_until = record.expires_at,
            Err(e @ (LeaseError::Lost { .. } | LeaseError::NotHeld)) => {
                service.set_leader(false);
                return Err(e.into());
            }
            Err(e) if Utc::now() >= valid_until => {
                service.set_leader(false);
                warn!(error = %e, "The lease expired before it could be renewed; stopping.");
                return Err(e.into());
            }
            Err(e) => warn!(error = %e, "Could not renew the lease; trying again."),
        }
    }
}

/// Waits for the jobs in flight, up to `grace`.
async fn drain(service: &Service, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    let active = service.jobs.active_count();
    if active > 0 {
        info!(jobs = active, grace_secs = grace.as_secs(), "Waiting for the jobs in flight.");
    }
    while service.jobs.active_count() > 0 {
        if tokio::time::Instant::now() >= deadline {
            warn!(
                jobs = service.jobs.active_count(),
                "Grace period over: abandoning the jobs still running; \
                 their partitions keep the data they had."
            );
            return;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
