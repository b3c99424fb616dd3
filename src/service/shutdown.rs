//! Stopping the service: a shared flag that every loop and job watches, and the signal
//! handler that raises it.
//!
//! The first SIGTERM or SIGINT raises the flag: the schedules stop, queued jobs are
//! cancelled, running jobs stop before their next slice (the slice in flight finishes or
//! fails whole) and the service waits for them up to the grace period, then exits 0. A
//! second signal exits at once with [`SECOND_SIGNAL_EXIT`]; the commit protocol leaves
//! every partition either old or new, so this corrupts nothing.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{info, warn};

use super::error::ServiceError;

/// Exit code after a second stop signal.
pub const SECOND_SIGNAL_EXIT: i32 = 130;

/// The stop flag, cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    flag: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A flag not yet raised.
    pub fn new() -> Self {
        Self { flag: Arc::new(watch::channel(false).0) }
    }

    /// Raises the flag (again is harmless).
    pub fn trigger(&self) {
        self.flag.send_replace(true);
    }

    /// Whether the flag is raised.
    pub fn is_stopping(&self) -> bool {
        *self.flag.borrow()
    }

    /// Returns once the flag is raised.
    pub async fn wait(&self) {
        let mut rx = self.flag.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

/// Installs the SIGTERM and SIGINT handlers: the first signal raises `shutdown`, the second
/// exits the process at once.
pub fn watch_signals(shutdown: Shutdown) -> Result<(), ServiceError> {
    let mut term = signal(SignalKind::terminate()).map_err(ServiceError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServiceError::Signals)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("Stop signal received: finishing the slices in flight, starting nothing new.");
        shutdown.trigger();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        warn!("Second stop signal: exiting now; partitions being written keep their old data.");
        std::process::exit(SECOND_SIGNAL_EXIT);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waiters wake when the flag is raised, and a raised flag stays raised.
    #[tokio::test]
    async fn waiters_wake_on_trigger() {
        let s = Shutdown::new();
        assert!(!s.is_stopping());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        s.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert!(s.is_stopping());
        s.wait().await;
    }
}
