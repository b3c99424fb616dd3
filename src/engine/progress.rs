//! Progress of a run: a bar on a terminal (slices, pages, rows), plain log lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

use super::slice::SliceOutcome;
use crate::sink::layout::PartitionKey;

/// Receives the progress of a run.
pub trait Progress: Send + Sync {
    /// A run of `slices` slices of `dataset` starts.
    fn start(&self, dataset: &str, slices: u64);
    /// A page of `rows` records arrived.
    fn page(&self, rows: u64);
    /// A slice was finished, skipped or failed; `note` says which.
    fn slice_done(&self, dataset: &str, partition: PartitionKey, note: &str);
    /// The run ended.
    fn finish(&self);
    /// A slice was committed (called before [`Progress::slice_done`]).
    fn slice_committed(&self, _dataset: &str, _outcome: &SliceOutcome) {}
    /// A slice failed with `error` (called before [`Progress::slice_done`]).
    fn slice_failed(&self, _dataset: &str, _partition: PartitionKey, _error: &str) {}
    /// Whether the run should stop before its next slice (a service shutting down); the
    /// slice in flight always finishes or fails whole.
    fn should_stop(&self) -> bool {
        false
    }
}

/// Chooses the bar on a terminal and log lines elsewhere.
pub fn for_stderr() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(BarProgress::default())
    } else {
        Box::new(LogProgress)
    }
}

/// Plain log lines (the slice lines themselves are logged by the engine).
#[derive(Debug, Default)]
pub struct LogProgress;

impl Progress for LogProgress {
    fn start(&self, dataset: &str, slices: u64) {
        info!(dataset, slices, "Run started.");
    }
    fn page(&self, _rows: u64) {}
    fn slice_done(&self, _dataset: &str, _partition: PartitionKey, _note: &str) {}
    fn finish(&self) {}
}

/// A terminal progress bar over slices, with pages and rows in its message.
#[derive(Debug, Default)]
pub struct BarProgress {
    state: Mutex<Option<(ProgressBar, u64, u64)>>,
}

impl Progress for BarProgress {
    fn start(&self, dataset: &str, slices: u64) {
        let bar = ProgressBar::new(slices);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} slices  {msg}  {elapsed}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(dataset.to_string());
        *self.state.lock().expect("progress lock") = Some((bar, 0, 0));
    }

    fn page(&self, rows: u64) {
        if let Some((bar, pages, total)) = self.state.lock().expect("progress lock").as_mut() {
            *pages += 1;
            *total += rows;
            bar.set_message(format!("{pages} pages, {total} rows"));
        }
    }

    fn slice_done(&self, _dataset: &str, partition: PartitionKey, note: &str) {
        if let Some((bar, ..)) = self.state.lock().expect("progress lock").as_ref() {
            bar.println(format!("  {partition}: {note}"));
            bar.inc(1);
        }
    }

    fn finish(&self) {
        if let Some((bar, ..)) = self.state.lock().expect("progress lock").take() {
            bar.finish();
        }
    }
}
