//! The lake side of the flow: the object store, the lake layout, staging a partition with
//! de-duplication, Parquet writing and the atomic partition commit.
//!
//! # Commit protocol
//! Each month partition is one object, replaced as a whole:
//!
//! ```text
//! DATASET/tenant_id=T/month=YYYY-MM/part-00000.parquet     data (zstd, statistics)
//! _rejects/DATASET/tenant_id=T/month=YYYY-MM/rejects.jsonl  rejects of that partition
//! _state/DATASET/tenant_id=T/month=YYYY-MM.json            partition checkpoint
//! ```
//!
//! A snapshot dataset's partitions are days, `snapshot_date=YYYY-MM-DD` in place of
//! `month=YYYY-MM`, committed the same way.
//!
//! ```text
//!  rows ──► PartitionStage (spool + key index) ──► write_rejects ──► write_partition ──► checkpoint
//!                 ▲                                                    (single PUT or
//!  stage_existing ┘ (merge with the old object)                        multipart completion)
//! ```
//!
//! Readers glob `DATASET/**/*.parquet`, so a partition never has a second file: a single
//! PUT or multipart completion replaces the object atomically and a reader sees the old
//! partition or the new one. A crash between the data object and the checkpoint leaves a
//! correct partition with an old checkpoint: the slice is fetched again and the object
//! replaced, so there are neither duplicates nor gaps.

pub mod crash;
mod encoding;
mod error;
mod kept;
pub(crate) mod key;
mod key_index;
pub mod layout;
pub mod stage;
pub mod store;
pub mod writer;

pub use encoding::WriteLimits;
pub use error::SinkError;
pub use layout::PartitionId;
pub use stage::{PartitionStage, SpoolFormat};
pub use store::{describe, open_store, probe};
pub use writer::{
    inspect_partition, stage_existing, write_partition, write_partition_with, write_rejects,
    PartitionFacts, WrittenPartition,
};
