//! The push side of `cecsync run`: the receivers on their own listener from the start (a
//! push is spooled whether or not this service holds the lease), and a compaction of the
//! spool into the lake every `[push] compact_interval_secs` while it holds the lease.
//!
//! A compaction takes the pipeline lock of each push dataset, so that it never writes a
//! month at the same time as a job of the pipeline that pulls the same dataset
//! (`outbound_results`, the backstop of the outbound-result callback).

use std::sync::Arc;

use tracing::warn;

use super::context::Service;
use crate::config::PushSettings;
use crate::push::compact::{CompactError, CompactReport, Compactor};
use crate::push::kind::PushKind;
use crate::push::server::{start, PushError, RunningReceivers};
use crate::telemetry::{PUSH_COMPACTIONS, PUSH_SPOOL_BACKLOG};

/// How often a compaction in flight checks that the service still holds the lease.
const LEASE_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Opens the spool and starts the receivers; returns them with the compactor of the spool.
pub async fn start_push(
    service: &Service,
    settings: &PushSettings,
) -> Result<(RunningReceivers, Arc<Compactor>), PushError> {
    let engine = &service.engine;
    let (receivers, compactor) =
        start(engine.settings(), settings, engine.store(), service.telemetry.clone()).await?;
    Ok((receivers, Arc::new(compactor)))
}

/// Compacts every `interval` while `service` holds the lease, until it stops.
pub async fn compact_while_running(
    service: Arc<Service>,
    compactor: Arc<Compactor>,
    interval: std::time::Duration,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = service.shutdown.wait() => return,
        }
        if !service.is_leader() {
            continue;
        }
        // A compaction stops at once when the lease is lost, so that it never writes while
        // another service may (its commit protocol leaves every partition old or new, and
        // the spool keeps the pushes until a compaction succeeds).
        tokio::select! {
            _ = compact_once(&service, &compactor) => {}
            _ = lease_lost(&service) => {
                warn!("Lease lost: the push compaction in flight is stopped.");
                return;
            }
        }
    }
}

/// Resolves once `service` no longer holds the lease.
async fn lease_lost(service: &Service) {
    while service.is_leader() {
        tokio::time::sleep(LEASE_CHECK).await;
    }
}

/// One compaction under the push datasets' pipeline locks; its outcome is counted.
async fn compact_once(service: &Service, compactor: &Compactor) {
    match compactor.backlog_bytes() {
        Ok(bytes) => service.telemetry.set(PUSH_SPOOL_BACKLOG, &[], bytes as f64),
        Err(e) => warn!(error = %e, "Cannot measure the push spool's backlog."),
    }
    let mut guards = Vec::new();
    for kind in PushKind::ALL {
        guards.push(service.jobs.pipeline_lock(kind.dataset()).lock_owned().await);
    }
    let result: Result<CompactReport, CompactError> = compactor.compact().await;
    drop(guards);
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => {
            warn!(error = %e, "Push compaction failed; the spool keeps the pushes for the next one.");
            "failed"
        }
    };
    service.telemetry.add(PUSH_COMPACTIONS, &[("outcome", outcome)], 1.0);
}
