//! Errors of the service: start-up, the lease, schedule marks and the control API client.

use crate::engine::EngineError;

/// The service could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The engine (lake or sources) could not be opened.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// No pipeline has a configured source.
    #[error("{file}: no pipeline is enabled and no [push] receiver is configured; fix: configure a source for a pipeline, or [push]")]
    NoPipeline {
        /// The configuration file.
        file: String,
    },
    /// The control API could not listen on its address.
    #[error("control API: cannot listen on {addr}: {source}; fix: free the port or set [service] control_listen")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The control API server failed.
    #[error("control API: {0}")]
    Serve(std::io::Error),
    /// A schedule's expression cannot be used.
    #[error("pipeline {pipeline}: {problem}")]
    Schedule {
        /// The pipeline.
        pipeline: String,
        /// What is wrong.
        problem: String,
    },
    /// A schedule mark could not be read or written.
    #[error("schedule mark {path}: {problem}")]
    Mark {
        /// The mark object.
        path: String,
        /// What failed.
        problem: String,
    },
    /// The lease could not be taken or was lost.
    #[error(transparent)]
    Lease(#[from] super::lease::LeaseError),
    /// The push receivers could not start.
    #[error(transparent)]
    Push(#[from] crate::push::server::PushError),
    /// A signal handler could not be installed.
    #[error("cannot listen for stop signals: {0}")]
    Signals(std::io::Error),
}
