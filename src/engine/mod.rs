//! The engine: backfill and incremental sync of month slices and snapshots, and the
//! read-only views of the lake (status, verify).

pub mod clock;
pub mod cursor;
pub mod error;
mod fan_out;
pub mod listed;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod request;
pub mod runner;
pub mod slice;

pub use error::EngineError;
pub use runner::{Engine, RunReport};
