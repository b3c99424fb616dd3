//! A backfill of the real binary killed at many points and restarted ends with exactly the
//! API's rows: no duplicates, no gaps, no stray objects, finished months not fetched again.
//!
//! With the `failpoints` feature (as `scripts/test.sh` builds it) the kills are deterministic:
//! each run aborts at the Nth hit of a named crash point of `cecsync::sink::crash`, on a local
//! folder and on the S3-compatible server. Without it, the kills are timed by pages served.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cecsync::calendar::Month;
use cecsync::sim::SimOptions;
use cecsync::state::{PartitionCheckpoint, SliceState, StateStore};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::{assert_lake_equals, month, Harness};

/// The months of every crash test.
const FROM: &str = "2025-01";
const TO: &str = "2025-06";
/// Records per month, asked in two ranges (before and after the month's UTC edge): the
/// pages of 1000 of each range, six in all (checked by every test against the data).
const RECORDS_PER_MONTH: u64 = 4500;
const PAGES_PER_MONTH: u64 = 6;
const MONTHS: u64 = 6;
/// Months a run fetches at once (`slice_concurrency`).
const SLICES_IN_FLIGHT: u64 = 2;
/// Months a run may have started and not committed: those being fetched, and one more
/// that has all its pages and is being written.
#[cfg(feature = "failpoints")]
const MONTHS_IN_PROGRESS: u64 = SLICES_IN_FLIGHT + 1;
/// Pages a run has in flight at once (`page_concurrency` per month in progress): answers the
/// simulator may still count after the run before was killed.
#[cfg(feature = "failpoints")]
const PAGES_IN_FLIGHT: u64 = SLICES_IN_FLIGHT * 2;

/// Checks that each crash month takes [`PAGES_PER_MONTH`] pages.
fn assert_pages_per_month(h: &Harness) {
    for m in month(FROM).through(month(TO)) {
        assert_eq!(h.rbt_pages([m]), PAGES_PER_MONTH, "{m}");
    }
}

fn opts() -> SimOptions {
    SimOptions {
        first_month: month(FROM),
        last_month: month(TO),
        records_per_month: RECORDS_PER_MONTH,
        ..SimOptions::default()
    }
}

/// `cecsync backfill` of the crash months with `config`, output discarded.
fn backfill(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cecsync"));
    cmd.args(["backfill", "--config"])
        .arg(config)
        .args(["--pipeline", "rbt_recognition", "--from", FROM, "--to", TO])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Every partition checkpoint of the lake, read with an independent client; each parses.
async fn checkpoints(h: &Harness) -> Vec<PartitionCheckpoint> {
    StateStore::new(h.lake_store())
        .partitions("rbt_recognition", &h.opts.tenant_id)
        .await
        .expect("every partition checkpoint parses")
}

/// The lake as a reader sees it now: every listed object is a data object, a rejects object
/// or a checkpoint (nothing stray, no staging file), every checkpoint is versioned JSON, and
/// every data object present is a whole Parquet file (footer included) of the month's rows,
/// never a half-written one. Returns the lake's folder (for an S3 lake, a mirror) and the
/// months that have a data object.
async fn assert_lake_consistent(h: &Harness) -> (PathBuf, Vec<Month>) {
    let lake = h.lake_view().await;
    let objects = h.lake_objects().await;
    let mut months = Vec::new();
    for name in &objects {
        // A process killed inside a local PUT leaves its staging file `NAME#N`: no reader
        // takes it for an object (it ends in neither `.parquet` nor `.json`), and the next
        // start sweeps it (checked after the final run).
        if is_staging_file(name) {
            continue;
        }
        if let Some(rest) = name.strip_suffix("/part-00000.parquet") {
            let m = rest.rsplit_once("/month=").map(|(_, m)| m).expect("a month partition");
            months.push(month(m));
            let file = std::fs::File::open(lake.join(name)).unwrap();
            let parquet = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap_or_else(|e| panic!("{name} is not a whole Parquet file: {e}"));
            let rows = parquet.metadata().file_metadata().num_rows();
            assert_eq!(rows as u64, RECORDS_PER_MONTH, "{name} holds its month's rows");
        } else if name.starts_with("_state/") && name.ends_with(".json") {
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(lake.join(name)).unwrap())
                    .unwrap_or_else(|e| panic!("checkpoint {name} is not JSON: {e}"));
            assert_eq!(json["version"], "1", "{name}");
        } else {
            assert!(
                name.ends_with("/rejects.jsonl"),
                "a stray object is visible in the lake: {name} (all: {objects:?})"
            );
        }
    }
    (lake, months)
}

/// A local upload's staging file: `NAME#N`.
fn is_staging_file(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// After the final run: the lake is consistent and holds exactly the API's rows of every
/// month, every checkpoint parses and says `complete` with the API's total, and `verify`
/// passes.
async fn assert_recovered(h: &Harness, config: &Path) {
    let (lake, months) = assert_lake_consistent(h).await;
    let staging: Vec<String> =
        h.lake_objects().await.into_iter().filter(|n| is_staging_file(n)).collect();
    assert!(staging.is_empty(), "the last start swept the staging files: {staging:?}");
    assert_eq!(months, month(FROM).through(month(TO)).collect::<Vec<_>>(), "every month");
    assert_lake_equals(&lake, &h.truth(months));
    let checkpoints = checkpoints(h).await;
    assert_eq!(checkpoints.len() as u64, MONTHS);
    for cp in &checkpoints {
        assert_eq!(cp.state, SliceState::Complete, "{cp:?}");
        assert_eq!((cp.rows, cp.api_total), (RECORDS_PER_MONTH, RECORDS_PER_MONTH), "{cp:?}");
    }
    let verify = Command::new(env!("CARGO_BIN_EXE_cecsync"))
        .args(["verify", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

#[cfg(feature = "failpoints")]
mod deterministic {
    use std::collections::BTreeSet;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    use cecsync::sink::crash::{self, CRASH_AT_VARIABLE};
    use cecsync::state::SliceState;

    use super::{
        assert_lake_consistent, assert_pages_per_month, assert_recovered, backfill, checkpoints,
        opts, MONTHS, MONTHS_IN_PROGRESS, PAGES_IN_FLIGHT, PAGES_PER_MONTH, SLICES_IN_FLIGHT,
    };
    use crate::common::{on_every_store, Harness, StoreKind};

    /// The signal of `std::process::abort`.
    const SIGABRT: i32 = 6;

    /// One run, aborted at the `hit`th time it reaches `point`.
    struct Kill {
        point: &'static str,
        hit: u64,
        /// The run is a `backfill --refresh`, which fetches complete months again.
        refresh: bool,
    }

    const fn kill(point: &'static str, hit: u64) -> Kill {
        Kill { point, hit, refresh: false }
    }

    const fn refresh(point: &'static str, hit: u64) -> Kill {
        Kill { point, hit, refresh: true }
    }

    /// The runs, in order; the comments give the month in flight and what the run leaves.
    const SCHEDULE: &[Kill] = &[
        kill(crash::PAGE_STAGED, 1),      // month 1, first page
        kill(crash::PAGE_STAGED, 4),      // month 1, mid-fetch
        kill(crash::FETCHED, 1),          // month 1 staged and reconciled
        kill(crash::BEFORE_REJECTS, 1),   // month 1
        kill(crash::AFTER_REJECTS, 1),    // month 1 rejects written, no data object
        kill(crash::BATCH_WRITTEN, 1),    // month 1 Parquet write under way
        kill(crash::BEFORE_COMPLETE, 1),  // month 1 upload not completed
        kill(crash::AFTER_DATA, 1),       // month 1 data object in place, no checkpoint
        kill(crash::AFTER_CHECKPOINT, 1), // month 1 committed
        kill(crash::PAGE_STAGED, 2),      // month 2
        kill(crash::PAGE_STAGED, 9),      // month 2 committed, month 3 mid-fetch
        kill(crash::BEFORE_REJECTS, 1),   // month 3
        kill(crash::AFTER_REJECTS, 2),    // month 3 committed, month 4 without a data object
        kill(crash::BATCH_WRITTEN, 1),    // month 4
        kill(crash::BEFORE_COMPLETE, 2),  // month 4 committed, month 5 upload not completed
        kill(crash::AFTER_DATA, 1),       // month 5 data object in place, no checkpoint
        kill(crash::PAGE_STAGED, 3),      // month 5 fetched again
        kill(crash::FETCHED, 1),          // month 5
        kill(crash::AFTER_CHECKPOINT, 1), // month 5 committed
        kill(crash::PAGE_STAGED, 6),      // month 6, last page
        kill(crash::BEFORE_REJECTS, 1),   // month 6
        kill(crash::BATCH_WRITTEN, 1),    // month 6
        kill(crash::BEFORE_COMPLETE, 1),  // month 6
        kill(crash::AFTER_DATA, 1),       // month 6 data object in place, no checkpoint
        kill(crash::AFTER_CHECKPOINT, 1), // month 6 committed: every month complete
        refresh(crash::AFTER_DATA, 2),    // month 1 rewritten, month 2 replaced, "writing"
        kill(crash::BEFORE_COMPLETE, 1),  // month 2 fetched again, upload not completed
    ];

    /// Months whose checkpoint says `complete`.
    async fn complete_months(h: &Harness) -> u64 {
        checkpoints(h).await.iter().filter(|cp| cp.state == SliceState::Complete).count() as u64
    }

    /// A backfill aborted at 27 crash points (every named point of fetch, Parquet write,
    /// commit and checkpoint, in all six months, and in a refresh) and restarted each time:
    /// after every crash the lake is consistent and no complete month was fetched again; after
    /// a final run it holds exactly the API's rows with complete checkpoints and `verify`
    /// passes.
    async fn aborted_at_every_commit_step_resumes_to_the_exact_truth(kind: StoreKind) {
        let Some(h) = Harness::start_on(kind, opts()).await else { return };
        assert_pages_per_month(&h);
        let config = h.config_file(&format!(
            "[pipelines.rbt_recognition]\npage_concurrency = 2\nslice_concurrency = {SLICES_IN_FLIGHT}\n"
        ));
        let mut fired = BTreeSet::new();
        let (mut pages_before, mut complete_before, mut allowance) = (0, 0, 0);
        for (run, Kill { point, hit, refresh }) in SCHEDULE.iter().enumerate() {
            if run == SCHEDULE.len() / 2 && kind == StoreKind::Local {
                // What a kill inside a multipart upload of a large object leaves behind.
                let stray = h.lake().join("rbt_recognition/part-00000.parquet#1");
                std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
                std::fs::write(stray, b"PAR1 half written").unwrap();
            }
            let mut cmd = backfill(&config);
            if *refresh {
                cmd.arg("--refresh");
            }
            let out = cmd
                .env(CRASH_AT_VARIABLE, format!("{point}:{hit}"))
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.signal(),
                Some(SIGABRT),
                "run {run} aborts at {point}:{hit} ({}): {stderr}",
                out.status
            );
            assert!(stderr.contains(&format!("crash point {point} reached")), "{stderr}");
            fired.insert(*point);
            assert_lake_consistent(&h).await;

            // A plain run fetches the months it commits and at most those in flight: a
            // month already complete is never fetched again. A refresh fetches each month
            // at most once, and its months in progress (one to three) are marked `writing`,
            // beside any month an earlier run left unfinished (slices commit in whichever
            // order they finish, so that number depends on timing).
            let (pages, complete) = (h.sim.stats().pages_served, complete_months(&h).await);
            let allowed = if *refresh {
                let writing = checkpoints(&h).await;
                let writing = writing.iter().filter(|cp| cp.state == SliceState::Writing);
                let writing = writing.count() as u64;
                let unfinished_before = MONTHS - complete_before;
                assert!(
                    (1..=MONTHS_IN_PROGRESS + unfinished_before).contains(&writing),
                    "run {run}: the months in flight say writing ({writing}; \
                     {unfinished_before} unfinished before)"
                );
                MONTHS * PAGES_PER_MONTH
            } else {
                assert!(complete >= complete_before, "run {run} lost a complete month");
                (complete - complete_before + MONTHS_IN_PROGRESS) * PAGES_PER_MONTH
                    + PAGES_IN_FLIGHT
            };
            assert!(
                pages - pages_before <= allowed,
                "run {run} ({point}:{hit}) fetched {} pages, more than {allowed}",
                pages - pages_before
            );
            (pages_before, complete_before, allowance) = (pages, complete, allowance + allowed);
        }
        let missed: Vec<_> = crash::ALL.iter().filter(|p| !fired.contains(*p)).collect();
        assert!(missed.is_empty(), "every crash point fired; not {missed:?}");

        assert!(backfill(&config).status().unwrap().success(), "the final run completes");
        // The final run fetches the months left unfinished, and the simulator may still count
        // answers to the pages the killed run before had in flight. That allowance is smaller
        // than a month's pages, so a complete month fetched again still fails the check.
        let last_run = h.sim.stats().pages_served - pages_before;
        let left = (MONTHS - complete_before) * PAGES_PER_MONTH + PAGES_IN_FLIGHT;
        const { assert!(PAGES_IN_FLIGHT < PAGES_PER_MONTH) };
        assert!(last_run <= left, "the final run fetched {last_run} pages, more than {left}");
        assert_recovered(&h, &config).await;
        println!(
            "crash test ({kind:?}): {} kill points over {} named points; {} pages fetched, \
             at most {} allowed; a clean backfill takes {}",
            SCHEDULE.len(),
            crash::ALL.len(),
            h.sim.stats().pages_served,
            allowance + left,
            MONTHS * PAGES_PER_MONTH
        );
    }
    on_every_store!(aborted_at_every_commit_step_resumes_to_the_exact_truth);
}

/// Kill points spread over the run (by pages served), a restart after each, then a final
/// run to completion: the lake equals the API's data and `verify` passes.
#[cfg(not(feature = "failpoints"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backfills_resume_to_the_exact_truth() {
    use std::time::{Duration, Instant};

    let h = Harness::start(opts()).await;
    assert_pages_per_month(&h);
    let config = h.config_file(&format!(
            "[pipelines.rbt_recognition]\npage_concurrency = 2\nslice_concurrency = {SLICES_IN_FLIGHT}\n"
        ));
    let mut kills = 0;
    for kill_at in [1u64, 3, 6, 9, 12, 15, 18, 21, 24, 27] {
        let mut child = backfill(&config).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if h.sim.stats().pages_served >= kill_at {
                child.kill().unwrap();
                kills += 1;
                break;
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 5, "the run was killed at several points ({kills})");
    assert!(backfill(&config).status().unwrap().success(), "the final run completes");
    assert_recovered(&h, &config).await;
    // 6 months x 5 pages is the minimum; each kill may waste at most one month in flight.
    let (pages, most) = (h.sim.stats().pages_served, (MONTHS + kills + 1) * PAGES_PER_MONTH);
    assert!(pages <= most, "finished months were fetched again: {pages} pages, at most {most}");
}
