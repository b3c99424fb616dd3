//! Push ingestion through the real binary: `cecsync run` receives the simulator's pushes
//! (signed CDRs and call events, outbound results, duplicates and re-pushes) while it is
//! killed with SIGKILL at random moments and started again; after a final compaction the
//! lake holds exactly the distinct records that were acknowledged, each once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cecsync::calendar::Month;
use cecsync::push::kind::PushKind;
use cecsync::secret::Secret;
use cecsync::sim::{PushPlan, PushTargets, Pusher, PusherOptions};
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::common::{free_port, lake_rows, ServiceProcess};

const APP_KEY: &str = "sim-app-key";
const APP_SECRET: &str = "crash-test-secret-9f";
const PATH_SECRET: &str = "crash-callback-path-secret-7d";

fn config(dir: &Path, control: u16, push: u16) -> std::path::PathBuf {
    let text = format!(
        r#"tenant_id = "T9"
spool_dir = "{dir}/staging"
[destination]
url = "file://{dir}/lake"
[service]
control_listen = "127.0.0.1:{control}"
lease_ttl_secs = 3
grace_period_secs = 5
[push]
listen = "127.0.0.1:{push}"
spool_dir = "{dir}/spool"
compact_interval_secs = 1
[push.privatenumber]
apps = {{ "{APP_KEY}" = "${{PN_SECRET}}" }}
[push.outbound_results]
timezone = "+08:00"
path_secret = "${{CB_SECRET}}"
"#,
        dir = dir.display()
    );
    let path = dir.join("cecsync.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The lake's rows of each push dataset: the key as the pusher names its records, and the
/// partition's month.
fn lake_keys(lake: &Path) -> BTreeMap<PushKind, Vec<(String, String)>> {
    let text = |row: &serde_json::Map<String, Value>, name: &str| match &row[name] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut keys = BTreeMap::new();
    for interface in PushKind::ALL {
        let rows = lake_rows(lake, interface.dataset());
        let found = rows
            .iter()
            .map(|(_, row)| match interface {
                PushKind::PrivateNumberCdr => {
                    format!("{}|{}", text(row, "appKey"), text(row, "icid"))
                }
                // The lake holds the event time as a timestamp; the pusher's key has the text.
                PushKind::PrivateNumberEvent => {
                    let ms = row["timestamp"].as_i64().unwrap();
                    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap();
                    let when = at.format("%Y-%m-%d %H:%M:%S");
                    format!("{}|{}|{when}", text(row, "sessionId"), text(row, "eventType"))
                }
                PushKind::OutboundResult => text(row, "callId"),
            })
            .zip(rows.iter().map(|(month, _)| month.clone()))
            .collect();
        keys.insert(interface, found);
    }
    keys
}

/// Pushes with duplicates and re-pushes while the service is killed (SIGKILL) and started
/// again; every message is acknowledged in the end, and after the final compaction every
/// acknowledged record is in the lake exactly once, nothing else is, and no secret reached
/// a log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_pushes_survive_kill_9_and_land_once() {
    let dir = tempfile::tempdir().unwrap();
    let (control, push) = (free_port(), free_port());
    let config = config(dir.path(), control, push);
    let env = [("PN_SECRET", APP_SECRET), ("CB_SECRET", PATH_SECRET)];
    let start = |n: usize| ServiceProcess::start(&config, control, &env, &format!("run-{n}"));

    let base = format!("http://127.0.0.1:{push}");
    let targets = PushTargets {
        cdr_url: format!("{base}/push/privatenumber/cdr"),
        event_url: format!("{base}/push/privatenumber/event"),
        outbound_url: format!("{base}/push/isales/result/{PATH_SECRET}"),
    };
    let options = PusherOptions {
        concurrency: 8,
        // A minute of the platform's schedule is 20 ms: re-pushes at 20 ms, 80 ms, 180 ms,
        // 2.1 s, 4.1 s and 6 s after the first attempt.
        time_scale: 20.0 / 60_000.0,
        timeout: Duration::from_secs(5),
        ..PusherOptions::new(targets, APP_KEY, Secret::new(APP_SECRET))
    };
    let pusher = Pusher::new(options).unwrap();
    // Rounds of pushes over a few seconds; the seeds repeat, so whole rounds are pushed
    // again (after their records were compacted) besides the duplicates within a round.
    let seeds = [1, 2, 3, 1, 4, 2, 5, 6, 3, 7];
    let loads: Vec<_> = seeds
        .iter()
        .map(|&seed| {
            PushPlan {
                seed,
                messages: 60,
                first_month: Month::new(2025, 1).unwrap(),
                last_month: Month::new(2025, 3).unwrap(),
                app_key: APP_KEY.into(),
                duplicate_rate: 0.2,
                ..PushPlan::default()
            }
            .load()
        })
        .collect();
    let done = AtomicBool::new(false);
    let pushing = async {
        let mut reports = Vec::new();
        for load in &loads {
            reports.push(pusher.push(load).await);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        done.store(true, Ordering::SeqCst);
        reports
    };
    let killing = async {
        let mut service = start(0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut kills = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(rng.random_range(150..500))).await;
            if done.load(Ordering::SeqCst) {
                return (service, kills);
            }
            service.child.kill().unwrap();
            service.child.wait().unwrap();
            kills += 1;
            service = start(kills);
        }
    };
    let (reports, (mut service, kills)) = tokio::join!(pushing, killing);
    assert!(kills >= 3, "the service was killed {kills} time(s) while pushing");
    let mut acknowledged: BTreeMap<PushKind, BTreeSet<String>> = BTreeMap::new();
    let mut truth: BTreeMap<PushKind, BTreeMap<String, Value>> = BTreeMap::new();
    for (report, load) in reports.iter().zip(&loads) {
        assert_eq!(report.acknowledged, report.messages, "every message is acknowledged: {report}");
        for (interface, keys) in &report.acknowledged_records {
            acknowledged.entry(*interface).or_default().extend(keys.iter().cloned());
        }
        for (interface, records) in &load.truth {
            truth.entry(*interface).or_default().extend(records.clone());
        }
    }
    assert!(
        reports.iter().any(|r| r.retried > 0),
        "some pushes met a dead service and were pushed again"
    );
    assert!(
        loads.iter().any(|l| l.repeated_keys().values().any(|k| !k.is_empty())),
        "duplicates were pushed"
    );

    // The status names the push side and the months of the push-only datasets.
    service
        .wait_until("the status", 20, || async { service_status(control).await.is_some() })
        .await;
    let status = service_status(control).await.unwrap();
    assert_eq!(status["push"]["listen"], format!("127.0.0.1:{push}"));
    let names: Vec<&str> = status["push"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["privatenumber_cdrs", "privatenumber_events"]);

    // A graceful stop, then the final compaction by the command line.
    let stop = std::process::Command::new("kill").arg(service.child.id().to_string()).status();
    assert!(stop.unwrap().success());
    let stopped = service.child.wait().unwrap();
    assert!(stopped.success(), "{stopped}:\n{}", service.log());
    let compact = std::process::Command::new(env!("CARGO_BIN_EXE_cecsync"))
        .args(["compact", "--config"])
        .arg(&config)
        .envs(env)
        .output()
        .unwrap();
    assert!(compact.status.success(), "{}", String::from_utf8_lossy(&compact.stderr));

    let lake = lake_keys(&dir.path().join("lake"));
    for interface in PushKind::ALL {
        let found = &lake[&interface];
        let distinct: BTreeSet<String> = found.iter().map(|(key, _)| key.clone()).collect();
        assert_eq!(distinct.len(), found.len(), "{interface}: a record appears twice");
        assert_eq!(
            distinct, acknowledged[&interface],
            "{interface}: the lake holds the acknowledged records"
        );
        let truth = &truth[&interface];
        assert_eq!(distinct, truth.keys().cloned().collect(), "{interface}");
        for (key, month) in found {
            assert_eq!(*month, expected_month(interface, &truth[key]), "{interface} {key}");
        }
    }
    for n in 0..=kills {
        let log =
            std::fs::read_to_string(dir.path().join(format!("run-{n}.log"))).unwrap_or_default();
        assert!(!log.contains(APP_SECRET), "run-{n}.log shows the app secret");
        assert!(!log.contains(PATH_SECRET), "run-{n}.log shows the callback's secret");
    }
}

/// The month a pushed record belongs to: of its first time (UTC texts for Private Number,
/// tenant-zone texts for outbound results: both start `yyyy-MM`).
fn expected_month(interface: PushKind, record: &Value) -> String {
    let fields: &[&str] = match interface {
        PushKind::PrivateNumberCdr => {
            &["callInTime", "fwdStartTime", "callOutStartTime", "failTime", "callEndTime"]
        }
        PushKind::PrivateNumberEvent => &["timestamp"],
        PushKind::OutboundResult => &["callTimeStr"],
    };
    let record = record.get("statusInfo").unwrap_or(record);
    let time = fields
        .iter()
        .find_map(|f| record[f].as_str().filter(|t| !t.is_empty()))
        .unwrap_or_else(|| panic!("{interface}: no time in {record}"));
    time[..7].to_string()
}

/// The control API's `/status`, once it answers.
async fn service_status(control: u16) -> Option<Value> {
    let answer = reqwest::get(format!("http://127.0.0.1:{control}/status")).await.ok()?;
    answer.status().is_success().then_some(())?;
    serde_json::from_str(&answer.text().await.ok()?).ok()
}
