//! The errors of the lake side: each names the object, folder or column involved and never
//! carries a credential.

use arrow::error::ArrowError;
use parquet::errors::ParquetError;

/// Why a lake operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The local lake folder could not be created.
    #[error("lake folder {path}: cannot create it: {source}")]
    LocalFolder {
        /// The folder.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A staging file of an upload cut short could not be listed or removed.
    #[error(
        "lake folder {path}: cannot remove the staging files of uploads cut short: {source}; \
         check the folder's permissions"
    )]
    Sweep {
        /// The folder or file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The object store could not be configured.
    #[error("lake {destination}: cannot configure the object store: {source}")]
    Configure {
        /// The destination, without credentials.
        destination: String,
        /// The underlying error.
        source: Box<object_store::Error>,
    },
    /// The start-up probe could not write, read or delete its object.
    #[error(
        "lake {store}: cannot {step} the probe object {path}: {source}; check the bucket, \
         endpoint, region and credentials"
    )]
    Probe {
        /// The store (bucket or folder).
        store: String,
        /// `write`, `read` or `delete`.
        step: &'static str,
        /// The probe object.
        path: String,
        /// The underlying error.
        source: Box<object_store::Error>,
    },
    /// The probe object read back different bytes than were written.
    #[error("lake {store}: the probe object {path} read back different bytes than were written")]
    ProbeMismatch {
        /// The store (bucket or folder).
        store: String,
        /// The probe object.
        path: String,
    },
    /// A path is not the data object of a partition.
    #[error("{path} is not a partition data object: {problem}")]
    NotAPartitionPath {
        /// The path.
        path: String,
        /// What does not match the layout.
        problem: String,
    },
    /// A primary-key column is missing or of an unusable type.
    #[error("primary key column '{column}': {problem}")]
    KeyColumn {
        /// The column.
        column: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A column kept when missing (`records.keep_when_missing`) is absent or not text.
    #[error("column '{column}' kept when missing: {problem}")]
    KeptColumn {
        /// The column.
        column: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A row has no value in a primary-key column.
    #[error("primary key column '{column}' holds a null; every row needs a key")]
    NullKey {
        /// The column.
        column: String,
    },
    /// The update-time column is missing or of an unusable type.
    #[error("update time column '{column}': {problem}")]
    UpdateColumn {
        /// The column.
        column: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A batch does not have the stage's schema.
    #[error("batch schema [{found}] differs from the partition schema [{expected}]")]
    BatchSchema {
        /// The partition's columns.
        expected: String,
        /// The batch's columns.
        found: String,
    },
    /// The spool file could not be created or read.
    #[error("spool file in {dir}: {source}")]
    SpoolFile {
        /// The spool folder.
        dir: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The spool could not be written or read back.
    #[error("spool file in {dir}: {source}")]
    Spool {
        /// The spool folder.
        dir: String,
        /// The underlying error.
        source: ArrowError,
    },
    /// The Parquet spool could not be written or read back.
    #[error("spool file in {dir}: {source}")]
    ParquetSpool {
        /// The spool folder.
        dir: String,
        /// The underlying error.
        source: ParquetError,
    },
    /// An earlier spool write failed, so the stage no longer matches its index.
    #[error("spool file in {dir}: an earlier write failed; stage the partition again")]
    SpoolBroken {
        /// The spool folder.
        dir: String,
    },
    /// The partition has more rows than this platform can index.
    #[error("a partition of {rows} rows is more than this platform can stage")]
    TooManyRows {
        /// The rows appended.
        rows: u64,
    },
    /// An Arrow compute step failed.
    #[error("{context}: {source}")]
    Arrow {
        /// The step and the object involved.
        context: String,
        /// The underlying error.
        source: ArrowError,
    },
    /// An object store operation failed.
    #[error("{action} {path}: {source}")]
    Store {
        /// What was being done (`write`, `read`, `delete`, ...).
        action: &'static str,
        /// The object.
        path: String,
        /// The underlying error.
        source: Box<object_store::Error>,
    },
    /// Parquet encoding or decoding failed.
    #[error("parquet {path}: {source}")]
    Parquet {
        /// The object.
        path: String,
        /// The underlying error.
        source: ParquetError,
    },
    /// The task that writes a partition object ended without an answer (it panicked).
    #[error("writing {path}: the writer task ended: {detail}")]
    WriterTask {
        /// The object.
        path: String,
        /// Why the task ended.
        detail: String,
    },
    /// An existing partition object cannot be mapped onto the current schema.
    #[error("existing partition {path}: column '{column}': {problem}")]
    ExistingSchema {
        /// The object.
        path: String,
        /// The column.
        column: String,
        /// Why it cannot be mapped.
        problem: String,
    },
}
