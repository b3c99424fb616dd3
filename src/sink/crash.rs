//! Named crash points of the commit path, for the crash-safety tests.
//!
//! Built with the `failpoints` feature, [`point`] aborts the process (as abruptly as
//! `kill -9`: no destructor runs, no buffer is flushed, no upload is cleaned up) the Nth time
//! this process reaches the point named by the environment variable [`CRASH_AT_VARIABLE`],
//! written `NAME:N`. Without the feature, [`point`] is an empty inline function and the
//! variable is ignored, so release builds carry no trace of it.
//!
//! The points follow one slice through the flow:
//!
//! ```text
//! page ─► PAGE_STAGED ... ─► FETCHED ─► ["writing" checkpoint] ─► BEFORE_REJECTS ─► rejects
//!   ─► AFTER_REJECTS ─► (BATCH_WRITTEN ... ─► BEFORE_COMPLETE ─► PUT) ─► AFTER_DATA
//!   ─► checkpoint ─► AFTER_CHECKPOINT
//! ```
//! A parent dataset with fan-out datasets commits each of their partitions (the same points)
//! and reaches CHILDREN_COMMITTED before its own FETCHED.

/// The environment variable that arms one crash point: `NAME:N` aborts at the Nth time the
/// point `NAME` is reached (N counts from 1).
pub const CRASH_AT_VARIABLE: &str = "CECSYNC_CRASH_AT";

/// After a page's records are normalized and handed towards the stage.
pub const PAGE_STAGED: &str = "slice.page_staged";
/// After every page of a slice is staged and the rows add up to the API's total.
pub const FETCHED: &str = "slice.fetched";
/// After the "writing" checkpoint (when there is a previous one), before the rejects object.
pub const BEFORE_REJECTS: &str = "slice.before_rejects";
/// After the rejects object, before the data object is written.
pub const AFTER_REJECTS: &str = "slice.after_rejects";
/// After the data object is in place, before the partition checkpoint.
pub const AFTER_DATA: &str = "slice.after_data";
/// After the partition checkpoint.
pub const AFTER_CHECKPOINT: &str = "slice.after_checkpoint";
/// After the fan-out datasets' partitions are committed, before their parent's commit.
pub const CHILDREN_COMMITTED: &str = "slice.children_committed";
/// After a batch of rows is handed to the Parquet writer and a full row group, if any, is
/// flushed into the upload.
pub const BATCH_WRITTEN: &str = "writer.batch_written";
/// After the Parquet footer is encoded, before the upload of the data object completes.
pub const BEFORE_COMPLETE: &str = "writer.before_complete";

/// Every crash point of a slice, in the order it reaches them. A slice of a dataset with
/// fan-out datasets also reaches [`CHILDREN_COMMITTED`], after its fan-out partitions went
/// through these points and before its own `FETCHED`.
pub const ALL: &[&str] = &[
    PAGE_STAGED,
    FETCHED,
    BEFORE_REJECTS,
    AFTER_REJECTS,
    BATCH_WRITTEN,
    BEFORE_COMPLETE,
    AFTER_DATA,
    AFTER_CHECKPOINT,
];

/// Marks a crash point: aborts the process when it is the armed point's Nth hit.
#[cfg(feature = "failpoints")]
pub fn point(name: &str) {
    if armed::target().is_some_and(|t| t.hit(name)) {
        eprintln!("crash point {name} reached: aborting");
        std::process::abort();
    }
}

/// Marks a crash point; without the `failpoints` feature it does nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn point(_name: &str) {}

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    use super::CRASH_AT_VARIABLE;

    /// The armed point and how often it has been reached.
    pub(super) struct Target {
        name: String,
        at: u64,
        hits: AtomicU64,
    }

    impl Target {
        /// Parses `NAME:N`.
        pub(super) fn parse(spec: &str) -> Option<Self> {
            let (name, at) = spec.rsplit_once(':')?;
            let (name, at) = (name.trim(), at.trim().parse().ok().filter(|n| *n >= 1)?);
            if name.is_empty() {
                return None;
            }
            Some(Self { name: name.to_string(), at, hits: AtomicU64::new(0) })
        }

        /// Counts a hit of `name`; true when it is the armed point's Nth.
        pub(super) fn hit(&self, name: &str) -> bool {
            name == self.name && self.hits.fetch_add(1, Ordering::SeqCst) + 1 == self.at
        }
    }

    /// The target armed by the environment, read once.
    pub(super) fn target() -> Option<&'static Target> {
        static TARGET: OnceLock<Option<Target>> = OnceLock::new();
        TARGET
            .get_or_init(|| {
                let spec = std::env::var(CRASH_AT_VARIABLE).ok()?;
                let target = Target::parse(&spec);
                if target.is_none() {
                    eprintln!("{CRASH_AT_VARIABLE}='{spec}' is not NAME:N with N >= 1; ignored");
                }
                target
            })
            .as_ref()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// `NAME:N` arms exactly the Nth hit of that name; other names do not count.
        #[test]
        fn fires_on_the_nth_hit_of_its_name_only() {
            let t = Target::parse("slice.after_data:3").unwrap();
            let fired: Vec<bool> =
                ["slice.after_data", "other", "slice.after_data", "slice.after_data"]
                    .iter()
                    .map(|n| t.hit(n))
                    .collect();
            assert_eq!(fired, [false, false, false, true]);
            assert!(!t.hit("slice.after_data"), "it fires once");
        }

        /// Malformed specifications arm nothing.
        #[test]
        fn malformed_specs_are_refused() {
            for spec in ["", "name", "name:0", "name:x", ":", ":2"] {
                assert!(Target::parse(spec).is_none(), "{spec}");
            }
        }
    }
}
