//! A spawned task bound to its handle: dropping the handle (a failed or cancelled slice)
//! aborts the task, so no work outlives the future that awaited it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::{JoinError, JoinHandle};

/// A task on the runtime's workers, aborted when this handle is dropped.
#[derive(Debug)]
pub struct ScopedTask<T>(JoinHandle<T>);

impl<T: Send + 'static> ScopedTask<T> {
    /// Spawns `future` as a task of its own, so that it runs in parallel with the caller.
    pub fn spawn(future: impl Future<Output = T> + Send + 'static) -> Self {
        Self(tokio::spawn(future))
    }
}

impl<T> Drop for ScopedTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for ScopedTask<T> {
    /// The task's output, or why it ended without one (it panicked).
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// The task's output comes back through the handle; a dropped handle stops the task
    /// before it finishes.
    #[tokio::test]
    async fn output_is_returned_and_a_dropped_handle_aborts() {
        assert_eq!(ScopedTask::spawn(async { 6 * 7 }).await.unwrap(), 42);
        let finished = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&finished);
        let task = ScopedTask::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.store(true, Ordering::SeqCst);
        });
        drop(task);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!finished.load(Ordering::SeqCst), "the task ran on after its handle was dropped");
    }
}
