//! `cecsync bench`: the sync rate against a plain fetch of the same pages, in one process,
//! with the built-in simulator in-process. Prints rows/s, MB/s and peak RSS of each phase.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};

use crate::calendar::Month;
use crate::config::Settings;
use crate::demo::{cms_config, demo_config, DemoError};
use crate::engine::progress::LogProgress;
use crate::engine::Engine;
use crate::sim::{serve, SimOptions, Simulator};
use crate::source::paging::pages_needed;

/// Options of `cecsync bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Months of data, starting 2025-01.
    #[arg(long, default_value_t = 12)]
    pub months: u32,
    /// Records per month.
    #[arg(long, default_value_t = 100_000)]
    pub records_per_month: u64,
    /// Pages fetched at once, in both phases.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// The lake folder (a temporary folder when absent).
    #[arg(long)]
    pub lake: Option<PathBuf>,
}

/// The simulator on a runtime and thread of its own, as a remote API would be: the sync's
/// CPU-bound work then never delays the simulator's answers through shared workers.
struct SimServer {
    base_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimServer {
    fn start(sim: Arc<Simulator>) -> std::io::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(SIM_THREAD)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            runtime.block_on(async move {
                match serve(sim, "127.0.0.1:0".parse().expect("static address")).await {
                    Ok(running) => {
                        let _ = ready_tx.send(Ok(running.base_url.clone()));
                        let _ = stop_rx.await;
                        running.shutdown().await;
                    }
                    Err(e) => drop(ready_tx.send(Err(e))),
                }
            });
        });
        let base_url = ready_rx.recv().map_err(std::io::Error::other)??;
        Ok(Self { base_url, stop: Some(stop_tx), thread: Some(thread) })
    }

    fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Peak resident set size of this process so far, in bytes (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The name of the simulator's threads, by which their CPU time is told apart.
const SIM_THREAD: &str = "sim-worker";

/// CPU time (user + system) of the process or thread whose stat(5) text is `stat`, in
/// seconds, with its command name (a thread's name).
fn stat_cpu(stat: &str) -> Option<(&str, f64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks of 1/100 s.
    Some((name, (ticks(11)? + ticks(12)?) as f64 / 100.0))
}

/// CPU time (user + system) of this process so far, in seconds (Linux).
fn cpu_seconds() -> Option<f64> {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?).map(|(_, cpu)| cpu)
}

/// CPU time of the simulator's running threads so far, in seconds (Linux). A thread that
/// ends while the list is read is passed over (the simulator's workers run throughout).
fn simulator_cpu_seconds() -> Option<f64> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let stats = tasks.flatten().filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok());
    Some(
        stats
            .filter_map(|stat| match stat_cpu(&stat) {
                Some((SIM_THREAD, cpu)) => Some(cpu),
                _ => None,
            })
            .sum(),
    )
}

/// Resets the peak RSS counter (Linux 4.0+), so that each phase is measured on its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU seconds of the whole process and of the simulator's threads, at one instant.
#[derive(Clone, Copy)]
struct CpuMark {
    process: Option<f64>,
    simulator: Option<f64>,
}

impl CpuMark {
    fn now() -> Self {
        Self { process: cpu_seconds(), simulator: simulator_cpu_seconds() }
    }

    /// The CPU seconds used since this mark, for the report: the whole process, and of it
    /// the simulator's (which serves both phases from the same cores).
    fn used_since(self) -> String {
        let now = Self::now();
        let since = |before: Option<f64>, now: Option<f64>| Some(now? - before?);
        match (since(self.process, now.process), since(self.simulator, now.simulator)) {
            (Some(all), Some(simulator)) => {
                format!(
                    "{all:.2} s (simulator {simulator:.2} s, the rest {:.2} s)",
                    all - simulator
                )
            }
            (Some(all), None) => format!("{all:.2} s"),
            _ => "n/a".into(),
        }
    }
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map(|b| format!("{:.1} MiB", b as f64 / 1048576.0)).unwrap_or_else(|| "n/a".into())
}

/// Runs the benchmark.
pub async fn run(args: BenchArgs) -> Result<(), DemoError> {
    let first: Month = "2025-01".parse().expect("static month");
    let mut last = first;
    for _ in 1..args.months.max(1) {
        last = last.next();
    }
    let opts = SimOptions {
        records_per_month: args.records_per_month,
        first_month: first,
        last_month: last,
        ..SimOptions::default()
    };
    let sim = Arc::new(Simulator::new(opts.clone()));
    let cms = cms_config(&sim);
    let server = SimServer::start(sim)?;
    let base_url = server.base_url.clone();
    let rows = args.records_per_month * u64::from(args.months.max(1));
    println!(
        "bench: {} months x {} records = {rows} rows, concurrency {}",
        args.months, args.records_per_month, args.concurrency
    );

    // Phase 1: the same pages, bodies read and discarded.
    reset_peak_rss();
    let http = reqwest::Client::new();
    let url = format!("{base_url}/oifde/rest/api/queryRbtRecognitionResult");
    let zone = opts.zone;
    let (started, cpu_before) = (Instant::now(), CpuMark::now());
    let mut bytes = 0u64;
    for month in first.through(last) {
        let slice = month.slice(zone);
        let pages = pages_needed(args.records_per_month, 1000);
        let sizes: Vec<u64> = stream::iter(1..=pages)
            .map(|page| {
                let body = serde_json::json!({"beginTime": slice.begin_ms, "endTime": slice.end_ms,
                    "tenantId": opts.tenant_id, "pageNum": page, "pageSize": 1000, "authToken": opts.auth_token});
                let req = http.post(&url).header("content-type", "application/json").body(body.to_string());
                async move {
                    match req.send().await {
                        Ok(r) => r.bytes().await.map(|b| b.len() as u64).unwrap_or(0),
                        Err(_) => 0,
                    }
                }
            })
            .buffered(args.concurrency)
            .collect()
            .await;
        bytes += sizes.iter().sum::<u64>();
    }
    let fetch_secs = started.elapsed().as_secs_f64();
    let fetch_cpu = cpu_before.used_since();
    let fetch_rss = peak_rss_bytes();

    // Phase 2: the sync itself, into a fresh lake.
    reset_peak_rss();
    let temp = tempfile::tempdir()?;
    let lake = args.lake.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&lake)?;
    let mut text = demo_config(&base_url, &lake.canonicalize()?, &opts) + &cms;
    text.push_str(&format!(
        "[pipelines.rbt_recognition]\npage_concurrency = {}\n",
        args.concurrency
    ));
    let settings = Settings::parse(&lake.join("bench.toml"), &text, &|_| None)?;
    let engine = Engine::open(settings)?;
    let (started, cpu_before) = (Instant::now(), CpuMark::now());
    let report = engine.backfill("rbt_recognition", first, last, true, &LogProgress).await?;
    let sync_secs = started.elapsed().as_secs_f64();
    let sync_cpu = cpu_before.used_since();
    let sync_rss = peak_rss_bytes();

    let mb = bytes as f64 / 1e6;
    println!(
        "plain fetch: {rows} rows in {fetch_secs:.2} s = {:.0} rows/s, {:.1} MB/s of JSON, \
         CPU {fetch_cpu}, peak RSS {}",
        rows as f64 / fetch_secs,
        mb / fetch_secs,
        mib(fetch_rss)
    );
    println!(
        "sync:        {} rows in {sync_secs:.2} s = {:.0} rows/s, CPU {sync_cpu}, peak RSS {}",
        report.rows(),
        report.rows() as f64 / sync_secs,
        mib(sync_rss)
    );
    println!(
        "sync / plain fetch rate: {:.2}",
        (report.rows() as f64 / sync_secs) / (rows as f64 / fetch_secs)
    );
    server.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU time is read after the command name, which may hold spaces and parentheses;
    /// this process's own figures read, and its simulator threads (none here) add up to 0.
    #[test]
    fn cpu_times_are_read_from_stat() {
        let stat = "42 (sim (x) y) R 1 1 1 1 1 1 1 1 1 1 300 100 0 0 20 0";
        assert_eq!(stat_cpu(stat), Some(("sim (x) y", 4.0)));
        assert_eq!(stat_cpu("42 sim"), None);
        assert!(cpu_seconds().is_some_and(|cpu| cpu >= 0.0));
        assert_eq!(simulator_cpu_seconds(), Some(0.0));
    }
}
