//! `cecsync run`, the real binary, on the simulator: scheduled ticks, the control API, the
//! status page in headless Chromium, graceful shutdown and the single-writer lease.

use std::path::PathBuf;
use std::time::Duration;

use cecsync::sim::{FaultOptions, SimOptions};
use serde_json::{json, Value};

use crate::common::{assert_lake_equals, current_month, free_port, month, Harness, ServiceProcess};

/// The control token the tests configure; it must never reach a log.
const TOKEN: &str = "ctl-7f3a9c-do-not-log";
/// A schedule that does not fire during a test (once a year).
const YEARLY: &str = "0 0 0 1 1 *";

/// Writes `NAME.toml` for `h` with a `[service]` table on `port` and pipeline settings.
fn service_config(h: &Harness, name: &str, port: u16, service: &str, pipeline: &str) -> PathBuf {
    let text = h.config_text(&format!(
        "[service]\ncontrol_listen = \"127.0.0.1:{port}\"\n{service}\n\
         [pipelines.rbt_recognition]\n{pipeline}\n"
    ));
    let path = h.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn sim(
    first: cecsync::calendar::Month,
    last: cecsync::calendar::Month,
    per_month: u64,
) -> SimOptions {
    SimOptions {
        first_month: first,
        last_month: last,
        records_per_month: per_month,
        ..SimOptions::default()
    }
}

/// Runs `cecsync verify` on a configuration and asserts it finds nothing wrong.
fn assert_verifies(config: &std::path::Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cecsync"))
        .args(["verify", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Scheduled syncs every second and refreshes every three, while the simulator adds and
/// updates records: the lake converges to the simulator's data, and SIGTERM exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_ticks_converge_to_the_source() {
    let now = current_month();
    let h = Harness::start(sim(now, now, 600)).await;
    let port = free_port();
    let config = service_config(
        &h,
        "ticks",
        port,
        "grace_period_secs = 10\nlease_ttl_secs = 5",
        "schedule = \"* * * * * *\"\nrefresh_schedule = \"*/3 * * * * *\"\nrefresh_previous_days = 0",
    );
    let mut svc = ServiceProcess::start(&config, port, &[], "ticks");
    svc.wait_ready().await;
    for round in 0..3 {
        let before = svc.jobs_done("refresh", "ok").await;
        let touched = h.sim.rbt_mutate(now, 20, 10);
        assert_eq!(touched.len(), 30, "round {round}");
        // Two more refreshes: the second started after the change.
        let svc_ref = &svc;
        let wait = async {
            for _ in 0..300 {
                if svc_ref.jobs_done("refresh", "ok").await >= before + 2.0 {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        };
        assert!(wait.await, "refreshes kept running:\n{}", svc.log());
    }
    assert!(svc.jobs_done("sync", "ok").await >= 3.0, "several incremental ticks ran");
    svc.sigterm();
    assert!(svc.wait_exit(20).await.success(), "{}", svc.log());
    assert_lake_equals(&h.lake(), &h.truth([now]));
    let log = svc.log();
    let slice_line = log.lines().find(|l| l.contains("Slice committed.")).expect("slice lines");
    for field in ["rows=", "pages=", "duration_ms="] {
        assert!(slice_line.contains(field), "{slice_line}");
    }
}

/// SIGTERM while a refresh is fetching: the slice in flight is committed within the grace
/// period, nothing new starts, the process exits 0 and the lake verifies; a restarted
/// service finishes the job and the lake equals the source; a second signal exits at once
/// (130) and leaves every partition whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_tick_then_restart() {
    let previous = current_month().prev();
    let faults =
        FaultOptions { delay_rate: 1.0, delay: Duration::from_millis(150), ..Default::default() };
    let h = Harness::start(SimOptions { faults, ..sim(previous, previous, 3500) }).await;
    let port = free_port();
    let config = service_config(
        &h,
        "stop",
        port,
        "grace_period_secs = 20\nlease_ttl_secs = 5",
        &format!(
            "schedule = \"{YEARLY}\"\nrefresh_schedule = \"* * * * * *\"\nrefresh_previous_days = 31"
        ),
    );
    let mut svc = ServiceProcess::start(&config, port, &[], "stop-1");
    let sim_ref = h.sim.clone();
    svc.wait_until("the first page", 20, || {
        let s = sim_ref.clone();
        async move { s.stats().pages_served >= 1 }
    })
    .await;
    svc.sigterm();
    assert!(svc.wait_exit(30).await.success(), "{}", svc.log());
    let log = svc.log();
    assert!(log.contains("Stop signal received"), "{log}");
    assert!(log.contains("Waiting for the jobs in flight"), "a job was running: {log}");
    assert_verifies(&config);
    assert_lake_equals(&h.lake(), &h.truth([previous]));

    let mut svc = ServiceProcess::start(&config, port, &[], "stop-2");
    svc.wait_ready().await;
    let svc_ref = &svc;
    let mut done = false;
    for _ in 0..300 {
        if svc_ref.jobs_done("refresh", "ok").await >= 1.0 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "the restarted service refreshed:\n{}", svc.log());
    svc.sigterm();
    assert!(svc.wait_exit(30).await.success(), "{}", svc.log());
    assert_verifies(&config);
    assert_lake_equals(&h.lake(), &h.truth([previous]));

    // A second signal exits at once, mid-refresh, and the partitions keep whole data.
    let mut svc = ServiceProcess::start(&config, port, &[], "stop-3");
    let pages = h.sim.stats().pages_served;
    let sim_ref = h.sim.clone();
    svc.wait_until("another page", 20, || {
        let s = sim_ref.clone();
        async move { s.stats().pages_served > pages }
    })
    .await;
    svc.sigterm();
    tokio::time::sleep(Duration::from_millis(100)).await;
    svc.sigterm();
    let status = svc.wait_exit(10).await;
    assert_eq!(status.code(), Some(130), "{}", svc.log());
    assert_lake_equals(&h.lake(), &h.truth([previous]));
}

/// Two services on one lake: a local backfill and a second service in exit mode refuse to
/// write, naming the holder; in wait mode the second waits, not ready, and takes over once
/// the first stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_one_writer() {
    let now = current_month();
    let h = Harness::start(sim(now, now, 300)).await;
    let pipeline = format!("schedule = \"* * * * * *\"\nrefresh_schedule = \"{YEARLY}\"");
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a_config = service_config(&h, "a", pa, "lease_ttl_secs = 3", &pipeline);
    let mut a = ServiceProcess::start(&a_config, pa, &[], "a");
    a.wait_ready().await;

    let local = std::process::Command::new(env!("CARGO_BIN_EXE_cecsync"))
        .args(["backfill", "--local", "--config"])
        .arg(&a_config)
        .args([
            "--pipeline",
            "rbt_recognition",
            "--from",
            &now.to_string(),
            "--to",
            &now.to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&local.stderr);
    assert!(!local.status.success(), "a local backfill does not write beside the service");
    assert!(stderr.contains(&format!("pid {}", a.child.id())), "{stderr}");

    let b_config =
        service_config(&h, "b", pb, "lease_ttl_secs = 3\nlease_mode = \"exit\"", &pipeline);
    let mut b = ServiceProcess::start(&b_config, pb, &[], "b");
    let status = b.wait_exit(20).await;
    assert!(!status.success(), "a second writer in exit mode refuses to start");
    let log = b.log();
    assert!(log.contains(&format!("pid {}", a.child.id())) && log.contains(" until "), "{log}");

    let c_config = service_config(&h, "c", pc, "lease_ttl_secs = 3", &pipeline);
    let mut c = ServiceProcess::start(&c_config, pc, &[], "c");
    c.wait_until("the wait message", 20, || {
        let log = c_log(&c_config);
        async move { log.contains("Waiting for the lake's lease") }
    })
    .await;
    let (code, body) = c.call("GET", "/readyz", None, false).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(&format!("pid {}", a.child.id())), "{body}");

    a.sigterm();
    assert!(a.wait_exit(20).await.success(), "{}", a.log());
    c.wait_ready().await;
    let before = c.jobs_done("sync", "ok").await;
    let c_ref = &c;
    let mut synced = false;
    for _ in 0..100 {
        if c_ref.jobs_done("sync", "ok").await > before {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(synced, "the new holder writes:\n{}", c.log());
    c.sigterm();
    assert!(c.wait_exit(20).await.success(), "{}", c.log());
    assert_verifies(&a_config);
}

/// A local backfill holds the tenant's lease for its whole run, renewed past its TTL: a
/// service starting meanwhile (exit mode) and a second command-line run are refused,
/// naming the backfill's process; the lease is released when the backfill ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_backfill_holds_the_lease() {
    let now = current_month();
    let first = now.prev().prev().prev();
    let mut opts = sim(first, now, 2500);
    let delay = Duration::from_millis(800);
    opts.faults = FaultOptions { delay_rate: 1.0, delay, ..FaultOptions::default() };
    let h = Harness::start(opts.clone()).await;
    let port = free_port();
    let service = "lease_ttl_secs = 3\nlease_mode = \"exit\"";
    let config = service_config(&h, "b", port, service, "page_concurrency = 1");
    let mut local = std::process::Command::new(env!("CARGO_BIN_EXE_cecsync"))
        .args(["backfill", "--local", "--config"])
        .arg(&config)
        .args(["--pipeline", "rbt_recognition", "--from", &first.to_string(), "--to"])
        .arg(now.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = format!("pid {}", local.id());
    let terms = h.lake().join(format!("_state/leases/tenant_id={}/terms", opts.tenant_id));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&terms).map_or(true, |mut d| d.next().is_none()) {
        if local.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            let _ = local.kill();
            let out = local.wait_with_output().unwrap();
            panic!("the backfill takes the lease: {}", String::from_utf8_lossy(&out.stderr));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the lease's TTL: the backfill renews it.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut service = ServiceProcess::start(&config, port, &[], "b");
    let status = service.wait_exit(20).await;
    assert!(!status.success(), "a service does not write beside a local backfill");
    let log = service.log();
    assert!(log.contains(&pid), "{log}");

    let sync = std::process::Command::new(env!("CARGO_BIN_EXE_cecsync"))
        .args(["sync", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&sync.stderr);
    assert!(!sync.status.success(), "two command-line runs do not write at once");
    assert!(stderr.contains(&pid) && stderr.contains("writes this lake"), "{stderr}");

    assert!(local.try_wait().unwrap().is_none(), "the backfill was still running");
    let out = local.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = cecsync::service::lease::tenant_store(h.lake_store(), &opts.tenant_id);
    let backend = cecsync::service::lease::Backend::Terms;
    let lease = cecsync::service::lease::live_lease(store, backend, chrono::Utc::now());
    assert_eq!(lease.await.unwrap(), None, "the backfill released the lease");
    assert_verifies(&config);
}

fn c_log(config: &std::path::Path) -> String {
    std::fs::read_to_string(config.with_file_name("c.log")).unwrap_or_default()
}

/// The control API: `/healthz` is open, the rest needs the token; `POST /backfill` queues a
/// job whose progress `GET /backfill/{id}` reports; `cecsync backfill` goes through the
/// running service; metrics count rows and requests; the token is never logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_backfills_and_keeps_secrets() {
    let h = Harness::start(sim(month("2025-01"), month("2025-03"), 500)).await;
    let port = free_port();
    let config = service_config(
        &h,
        "api",
        port,
        "control_token = \"${CECSYNC_CONTROL_TOKEN}\"",
        &format!("schedule = \"{YEARLY}\"\nrefresh_schedule = \"{YEARLY}\""),
    );
    let env = [("CECSYNC_CONTROL_TOKEN", TOKEN), ("RUST_LOG", "debug")];
    let mut svc = ServiceProcess::start(&config, port, &env, "api");
    svc.wait_ready().await;
    assert_eq!(svc.call("GET", "/healthz", None, false).await.0, 200);
    for path in ["/status", "/metrics", "/", "/backfill/1"] {
        assert_eq!(svc.call("GET", path, None, false).await.0, 401, "{path}");
    }
    assert_eq!(svc.call("GET", &format!("/?token={TOKEN}"), None, false).await.0, 200);

    let body = json!({"pipeline": "rbt_recognition", "from": "2025-01", "to": "2025-02"});
    let (code, answer) = svc.call("POST", "/backfill", Some(body), true).await;
    assert_eq!(code, 202, "{answer}");
    let id = serde_json::from_str::<Value>(&answer).unwrap()["id"].as_u64().unwrap();
    let mut job = Value::Null;
    for _ in 0..200 {
        let (_, text) = svc.call("GET", &format!("/backfill/{id}"), None, true).await;
        job = serde_json::from_str(&text).unwrap();
        if job["state"] != "queued" && job["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!((job["slices_done"].as_u64(), job["slices_total"].as_u64()), (Some(2), Some(2)));
    assert_eq!(job["rows_written"], 1000);

    let bad = [
        json!({"pipeline": "nope", "from": "2025-01", "to": "2025-01"}),
        json!({"pipeline": "rbt_recognition", "from": "2025-03", "to": "2025-01"}),
        json!({"pipeline": "rbt_recognition", "from": "2025-13", "to": "2025-01"}),
    ];
    for body in bad {
        let (code, text) = svc.call("POST", "/backfill", Some(body.clone()), true).await;
        assert_eq!(code, 400, "{body}: {text}");
    }

    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_cecsync"))
        .args(["backfill", "--config"])
        .arg(&config)
        .args(["--pipeline", "rbt_recognition", "--from", "2025-03", "--to", "2025-03"])
        .env("CECSYNC_CONTROL_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{stdout}{}", String::from_utf8_lossy(&cli.stderr));
    assert!(stdout.contains(&format!("job {}", id + 1)), "the service ran it: {stdout}");

    let rows = svc.metric("cecsync_rows_written_total{pipeline=\"rbt_recognition\"}").await;
    assert_eq!(rows, 1500.0);
    let ok = svc.metric("cecsync_source_requests_total{source=\"oifde\",status=\"200\"}").await;
    assert!(ok >= 3.0, "requests are counted by status");
    let (_, status) = svc.call("GET", "/status", None, true).await;
    let status: Value = serde_json::from_str(&status).unwrap();
    let months = status["pipelines"][0]["months"].as_array().unwrap();
    let synced: Vec<_> =
        months.iter().filter(|m| m["grid"] == "synced").map(|m| m["month"].clone()).collect();
    assert_eq!(synced, ["2025-01", "2025-02", "2025-03"]);
    assert_lake_equals(&h.lake(), &h.truth(month("2025-01").through(month("2025-03"))));

    svc.sigterm();
    assert!(svc.wait_exit(20).await.success());
    let log = svc.log();
    assert!(log.contains("DEBUG"), "debug logging was on");
    assert!(!log.contains(TOKEN), "the control token is not logged");
    assert!(!log.contains(&h.opts.auth_token), "the source token is not logged");
}

/// The headless browser to drive the status page, if installed.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::process::Command::new("which")
            .arg(name)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    })
}

/// The page's DOM after its script ran, as headless Chromium renders it.
async fn dump_dom(browser: &std::path::Path, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=4000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(60), run).await.expect("chromium ends").unwrap();
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status page in headless Chromium shows the synced months in its grid, and its
/// button queues a backfill that completes and then shows as synced months and a
/// succeeded job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_the_grid_and_queues_a_backfill() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CECSYNC_REQUIRE_CHROMIUM").is_none(),
            "CECSYNC_REQUIRE_CHROMIUM is set but chromium is not installed"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium)");
        return;
    };
    let h = Harness::start(sim(month("2025-01"), month("2025-03"), 200)).await;
    let port = free_port();
    let config = service_config(
        &h,
        "page",
        port,
        "control_token = \"${CECSYNC_CONTROL_TOKEN}\"",
        &format!("schedule = \"{YEARLY}\"\nrefresh_schedule = \"{YEARLY}\""),
    );
    let mut svc = ServiceProcess::start(&config, port, &[("CECSYNC_CONTROL_TOKEN", TOKEN)], "page");
    svc.wait_ready().await;
    let body = json!({"pipeline": "rbt_recognition", "from": "2025-01", "to": "2025-01"});
    assert_eq!(svc.call("POST", "/backfill", Some(body), true).await.0, 202);
    wait_job(&svc, 1).await;

    let url = format!("{}/?token={TOKEN}&backfill=rbt_recognition,2025-02,2025-03", svc.base_url);
    let dom = dump_dom(&browser, &url).await;
    assert!(dom.contains(r#"data-month="2025-01" data-grid="synced""#), "{dom}");
    let never = format!(r#"data-month="{}" data-grid="never""#, current_month());
    assert!(dom.contains(&never), "months never fetched show as such: {dom}");
    assert!(dom.contains(r#"data-job-id="2""#), "the button queued job 2: {dom}");
    assert_eq!(wait_job(&svc, 2).await["state"], "succeeded");

    let dom = dump_dom(&browser, &format!("{}/?token={TOKEN}", svc.base_url)).await;
    for m in ["2025-01", "2025-02", "2025-03"] {
        assert!(dom.contains(&format!(r#"data-month="{m}" data-grid="synced""#)), "{m}: {dom}");
    }
    assert!(dom.contains(r#"data-job="2" data-state="succeeded""#), "{dom}");
    svc.sigterm();
    assert!(svc.wait_exit(20).await.success());
}

/// Polls job `id` until it ends; returns its view.
async fn wait_job(svc: &ServiceProcess, id: u64) -> Value {
    for _ in 0..300 {
        let (_, text) = svc.call("GET", &format!("/backfill/{id}"), None, true).await;
        let job: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if job["state"] != "queued" && job["state"] != "running" && !job.is_null() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} did not end:\n{}", svc.log());
}
