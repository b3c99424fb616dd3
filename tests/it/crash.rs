//! A backfill of the real binary killed at many points and restarted ends with exactly the
//! API's rows: no duplicates, no gaps, no stray objects, finished months not fetched again.
//!
//! With the `failpoints` feature (as `scripts/test.sh` builds it) the kills are deterministic:
//! each run aborts at the Nth hit of a named crash point of `cecsync::sink::crash`, on a local
//! folder and on the S3-compatible server. Without it, the kills are timed by pages served.

use std::path::Path;
use std::process::{Command, Stdio};

use cecsync::sim::SimOptions;
use cecsync::state::{PartitionCheckpoint, SliceState, StateStore};

use crate::common::{assert_lake_equals, month, Harness};

/// The months of every crash test.
const FROM: &str = "2025-01";
const TO: &str = "2025-06";
/// Records per month: five pages of the API's 1000.
const RECORDS_PER_MONTH: u64 = 4500;
const PAGES_PER_MONTH: u64 = 5;
const MONTHS: u64 = 6;

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

/// After the final run: the lake equals the API's data, a reader listing the whole lake sees
/// only data objects, rejects and checkpoints, every checkpoint parses and says `complete`,
/// `verify` passes, and the pages fetched stay within `max_pages`. Returns the pages fetched.
async fn assert_recovered(h: &Harness, config: &Path, max_pages: u64) -> u64 {
    let lake = h.lake_view().await;
    assert_lake_equals(&lake, &h.truth(month(FROM).through(month(TO))));
    let objects = h.lake_objects().await;
    let data = objects.iter().filter(|o| o.ends_with("/part-00000.parquet")).count();
    assert_eq!(data as u64, MONTHS, "one data object per partition: {objects:?}");
    for name in &objects {
        let allowed = name.ends_with("/part-00000.parquet")
            || name.ends_with("/rejects.jsonl")
            || (name.starts_with("_state/") && name.ends_with(".json"));
        assert!(allowed, "a stray object is visible in the lake: {name} (all: {objects:?})");
        if name.starts_with("_state/") {
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(lake.join(name)).unwrap())
                    .unwrap_or_else(|e| panic!("checkpoint {name} is not JSON: {e}"));
            assert_eq!(json["version"], "1", "{name}");
        }
    }
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
    let pages = h.sim.stats().pages_served;
    assert!(
        pages <= max_pages,
        "finished months were fetched again: {pages} pages, at most {max_pages}"
    );
    pages
}

#[cfg(feature = "failpoints")]
mod deterministic {
    use std::collections::BTreeSet;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    use cecsync::sink::crash::{self, CRASH_AT_VARIABLE};
    use cecsync::state::SliceState;

    use super::{assert_recovered, backfill, checkpoints, opts, MONTHS, PAGES_PER_MONTH};
    use crate::common::{on_every_store, Harness, StoreKind};

    /// Months whose checkpoint says `complete`.
    async fn complete_months(h: &Harness) -> u64 {
        checkpoints(h).await.iter().filter(|cp| cp.state == SliceState::Complete).count() as u64
    }

    /// The signal of `std::process::abort`.
    const SIGABRT: i32 = 6;

    /// One crash per run: (point, hit of that point in the run at which it aborts). The
    /// comments give the month that is in flight and what each run leaves committed.
    const SCHEDULE: &[(&str, u64)] = &[
        (crash::PAGE_STAGED, 1),      // month 1, first page
        (crash::PAGE_STAGED, 4),      // month 1, mid-fetch
        (crash::FETCHED, 1),          // month 1 staged and reconciled
        (crash::BEFORE_REJECTS, 1),   // month 1
        (crash::AFTER_REJECTS, 1),    // month 1 rejects written, no data object
        (crash::BATCH_WRITTEN, 1),    // month 1 Parquet write under way
        (crash::BEFORE_COMPLETE, 1),  // month 1 upload not completed
        (crash::AFTER_DATA, 1),       // month 1 data object in place, no checkpoint
        (crash::AFTER_CHECKPOINT, 1), // month 1 committed
        (crash::PAGE_STAGED, 2),      // month 2
        (crash::PAGE_STAGED, 8),      // month 2 committed, month 3 mid-fetch
        (crash::BEFORE_REJECTS, 1),   // month 3
        (crash::AFTER_REJECTS, 2),    // month 3 committed, month 4 without a data object
        (crash::BATCH_WRITTEN, 1),    // month 4
        (crash::BEFORE_COMPLETE, 2),  // month 4 committed, month 5 upload not completed
        (crash::AFTER_DATA, 1),       // month 5 data object in place, no checkpoint
        (crash::PAGE_STAGED, 3),      // month 5 fetched again
        (crash::FETCHED, 1),          // month 5
        (crash::AFTER_CHECKPOINT, 1), // month 5 committed
        (crash::PAGE_STAGED, 5),      // month 6, last page
        (crash::BEFORE_REJECTS, 1),   // month 6
        (crash::BATCH_WRITTEN, 1),    // month 6
        (crash::BEFORE_COMPLETE, 1),  // month 6
        (crash::AFTER_DATA, 1),       // month 6 data object in place, no checkpoint
    ];

    /// A backfill aborted at 24 crash points (every named point of fetch, Parquet write,
    /// commit and checkpoint, in all six months) and restarted each time ends, after a final
    /// run, with exactly the API's rows, no stray object, parsing checkpoints, a passing
    /// `verify`, and at most one month of pages wasted per crash.
    async fn aborted_at_every_commit_step_resumes_to_the_exact_truth(kind: StoreKind) {
        let Some(h) = Harness::start_on(kind, opts()).await else { return };
        let config = h.config_file("[pipelines.rbt_recognition]\npage_concurrency = 2\n");
        let mut fired = BTreeSet::new();
        let (mut pages_before, mut complete_before) = (0, 0);
        for (run, (point, hit)) in SCHEDULE.iter().enumerate() {
            if run == SCHEDULE.len() / 2 && kind == StoreKind::Local {
                // What a kill inside a multipart upload of a large object leaves behind.
                let stray = h.lake().join("rbt_recognition/part-00000.parquet#1");
                std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
                std::fs::write(stray, b"PAR1 half written").unwrap();
            }
            let out = backfill(&config)
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

            // A run fetches the months it commits plus at most the one in flight: a month
            // that was already complete is never fetched again.
            let (pages, complete) = (h.sim.stats().pages_served, complete_months(&h).await);
            assert!(complete >= complete_before, "run {run} lost a committed month");
            let allowed = (complete - complete_before + 1) * PAGES_PER_MONTH;
            assert!(
                pages - pages_before <= allowed,
                "run {run} ({point}:{hit}) fetched {} pages, more than the {allowed} of the \
                 months it committed and the one in flight",
                pages - pages_before
            );
            (pages_before, complete_before) = (pages, complete);
        }
        let missed: Vec<_> = crash::ALL.iter().filter(|p| !fired.contains(*p)).collect();
        assert!(missed.is_empty(), "every crash point fired; not {missed:?}");
        assert!(backfill(&config).status().unwrap().success(), "the final run completes");

        let kills = SCHEDULE.len() as u64;
        let minimum = MONTHS * PAGES_PER_MONTH;
        let pages = assert_recovered(&h, &config, minimum + kills * PAGES_PER_MONTH).await;
        println!(
            "crash test ({kind:?}): {kills} kill points over {} named points, {pages} pages \
             fetched, minimum {minimum}",
            crash::ALL.len()
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
    let config = h.config_file("[pipelines.rbt_recognition]\npage_concurrency = 2\n");
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
    // 6 months x 5 pages is the minimum; each kill may waste at most one month in flight.
    assert_recovered(&h, &config, MONTHS * PAGES_PER_MONTH + (kills + 1) * PAGES_PER_MONTH).await;
}
