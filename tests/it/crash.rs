//! A backfill killed with SIGKILL at many points and restarted ends with exactly the API's
//! rows: no duplicates, no gaps, finished months not fetched again.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cecsync::sim::SimOptions;

use crate::common::{assert_lake_equals, month, parquet_files, Harness};

fn backfill(config: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cecsync"));
    cmd.args(["backfill", "--config"])
        .arg(config)
        .args(["--pipeline", "rbt_recognition", "--from", "2025-01", "--to", "2025-06"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Kill points spread over the run (by pages served), a restart after each, then a final
/// run to completion: the lake equals the API's data and `verify` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backfills_resume_to_the_exact_truth() {
    let opts = SimOptions {
        first_month: month("2025-01"),
        last_month: month("2025-06"),
        records_per_month: 4500,
        ..SimOptions::default()
    };
    let h = Harness::start(opts).await;
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
    let status = backfill(&config).status().unwrap();
    assert!(status.success(), "the final run completes");
    assert_lake_equals(&h.lake(), &h.truth(month("2025-01").through(month("2025-06"))));

    // 6 months x 5 pages is the minimum; each kill may waste at most one month in flight.
    let pages = h.sim.stats().pages_served;
    assert!(pages <= 30 + kills * 5 + 5, "finished months were not fetched again ({pages} pages)");

    let files = parquet_files(&h.lake().join("rbt_recognition"));
    assert_eq!(files.len(), 6, "one object per partition, nothing stray: {files:?}");
    let verify = Command::new(env!("CARGO_BIN_EXE_cecsync"))
        .args(["verify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}
