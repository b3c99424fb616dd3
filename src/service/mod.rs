//! `cecsync run`, the long-running service: cron schedules per pipeline (an incremental
//! sync, and a slower full refresh of the open month and, for a few days, the previous
//! one), backfills queued through a control API, a status page, metrics, a single-writer
//! lease in the lake, and a graceful shutdown.
//!
//! ```text
//!  schedules ──┐                       ┌─> engine (one client per source) ─> lake
//!  POST /backfill ─> jobs (one at a time per pipeline) ─┘
//!  GET /status, /metrics, / <── jobs, checkpoints, telemetry
//! ```
//!
//! - [`schedule`]: cron math (pure); [`marks`]: the last run of each schedule, in the lake.
//! - [`scheduler`]: the loops that queue scheduled runs.
//! - [`jobs`]: job views and progress; [`executor`]: queuing and running jobs.
//! - [`api`]: the control API and the status page; [`status`]: what they show.
//! - [`lease`]: one writer per lake; [`shutdown`]: the stop flag and signals.
//! - [`context`]: the shared parts; [`run`]: the whole service; [`remote`]: the CLI's client.

pub mod api;
pub mod context;
pub mod error;
pub mod executor;
pub mod jobs;
pub mod lease;
pub mod marks;
pub mod push;
pub mod remote;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod shutdown;
pub mod status;
#[cfg(test)]
mod test_support;
