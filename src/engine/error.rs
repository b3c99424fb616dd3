//! Errors of a run: what failed, for which dataset and partition, and what to do.

use crate::sink::layout::PartitionKey;
use crate::sink::SinkError;
use crate::source::SourceError;
use crate::state::StateError;

/// A run failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No dataset of that name.
    #[error("unknown pipeline '{name}'; known pipelines: {known}")]
    UnknownPipeline {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The pipeline's source is not configured.
    #[error("pipeline '{pipeline}' needs source '{source_name}', which the configuration does not define; add a [sources.{source_name}] table")]
    MissingSource {
        /// The pipeline.
        pipeline: String,
        /// The source it needs.
        source_name: String,
    },
    /// A fan-out dataset was asked to run on its own.
    #[error(
        "dataset '{name}' is fetched with its parent '{parent}': run '{parent}' (its slices \
         fetch '{name}' too)"
    )]
    FanOutDataset {
        /// The fan-out dataset.
        name: String,
        /// Its parent.
        parent: String,
    },
    /// The pipeline's request body cannot be built from its fields and the configuration.
    #[error("pipeline '{pipeline}': request body: {problem}")]
    RequestBody {
        /// The pipeline.
        pipeline: String,
        /// What is wrong, and the fix.
        problem: String,
    },
    /// The entries of `for_each_from` could not be listed.
    #[error("pipeline '{pipeline}' takes its for_each entries from the newest snapshot of '{list}', which has none yet (or lists none): sync {list} first")]
    ForEachUnlisted {
        /// The pipeline.
        pipeline: String,
        /// The dataset that lists the entries.
        list: String,
    },
    /// The pipeline sends one request per entry of `for_each`, and the configuration gives
    /// none.
    #[error(
        "pipeline '{pipeline}' sends one request per entry of pipelines.{pipeline}.for_each, \
         and the configuration has none: add for_each = [{{ {keys} }}, ...] to \
         [pipelines.{pipeline}], or set enabled = false"
    )]
    ForEachMissing {
        /// The pipeline.
        pipeline: String,
        /// The keys each entry needs, as TOML (`ccId = ..., vdn = ...`).
        keys: String,
    },
    /// The pipeline's request path cannot be filled in from the source's `path_params`.
    #[error("pipeline '{pipeline}': request path: {problem}")]
    RequestPath {
        /// The pipeline.
        pipeline: String,
        /// What is wrong.
        problem: String,
    },
    /// The requested range cannot be run.
    #[error("{0}")]
    BadRange(String),
    /// Fetching failed.
    #[error("{dataset} {partition}: {source}")]
    Source {
        /// The dataset.
        dataset: String,
        /// The partition (month or snapshot day).
        partition: PartitionKey,
        /// What failed.
        source: Box<SourceError>,
    },
    /// A source's client or credentials could not be set up.
    #[error(transparent)]
    SourceSetup(Box<SourceError>),
    /// Writing the lake failed.
    #[error("{dataset} {partition}: {source}")]
    Sink {
        /// The dataset.
        dataset: String,
        /// The partition (month or snapshot day).
        partition: PartitionKey,
        /// What failed.
        source: SinkError,
    },
    /// Reading or writing a checkpoint failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The lake could not be opened.
    #[error(transparent)]
    Store(#[from] SinkError),
    /// The API's rows never added up to its total.
    #[error("{dataset} {partition}: received {distinct} distinct rows (+{rejects} rejected){} but the API reported total {total}, {attempts} attempt(s); the data may be changing while it is read — run again later", groups.map(|g| format!(" in {g} distinct groups")).unwrap_or_default())]
    Mismatch {
        /// The dataset.
        dataset: String,
        /// The partition (month or snapshot day).
        partition: PartitionKey,
        /// Distinct rows received.
        distinct: u64,
        /// Records rejected.
        rejects: u64,
        /// Distinct groups received, when the total may count groups instead of rows.
        groups: Option<u64>,
        /// The API's total.
        total: u64,
        /// Attempts made.
        attempts: usize,
    },
    /// Some slices failed; the others were written.
    #[error("{failed} of {total} slice(s) failed; first failure: {first}")]
    SlicesFailed {
        /// Failed slices.
        failed: usize,
        /// Slices attempted.
        total: usize,
        /// The first failure's message.
        first: String,
    },
    /// The run was asked to stop (the service is shutting down) before all its slices.
    #[error(
        "stopped before finishing: {done} of {total} slice(s) written; the rest runs next time"
    )]
    Stopped {
        /// Slices written before the stop.
        done: usize,
        /// Slices the run had.
        total: usize,
    },
}
