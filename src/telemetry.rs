//! Metrics of the service: their names, and a small registry of counters, gauges and
//! histograms rendered in the Prometheus text format by `GET /metrics`.
//!
//! Every metric is declared once in [`METRICS`] with its help text and type; a value
//! recorded under a name that is not declared is a programming error caught by the tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

/// Rows in the data objects written, by pipeline.
pub const ROWS_WRITTEN: &str = "cecsync_rows_written_total";
/// Records rejected by the normalizer, by pipeline.
pub const REJECTS: &str = "cecsync_rejects_total";
/// Requests sent to a source, retries included, by source and HTTP status.
pub const SOURCE_REQUESTS: &str = "cecsync_source_requests_total";
/// Requests retried after a transient failure, by source.
pub const SOURCE_RETRIES: &str = "cecsync_source_retries_total";
/// Time to write one partition's objects, by pipeline.
pub const PARTITION_WRITE_SECONDS: &str = "cecsync_partition_write_seconds";
/// Jobs finished, by pipeline, kind and outcome.
pub const JOBS: &str = "cecsync_jobs_total";
/// Scheduled runs skipped because the previous one was still running, by pipeline and kind.
pub const TICKS_SKIPPED: &str = "cecsync_ticks_skipped_total";
/// Jobs queued or running now, by state.
pub const JOBS_ACTIVE: &str = "cecsync_jobs_active";
/// Seconds since the newest update time among the synced records, by pipeline.
pub const FRESHNESS_RECORD: &str = "cecsync_freshness_newest_record_seconds";
/// Seconds since the last successful incremental sync, by pipeline.
pub const FRESHNESS_SYNC: &str = "cecsync_freshness_last_success_seconds";
/// Pushes received, by interface and outcome (`accepted` or the HTTP status answered).
pub const PUSH_REQUESTS: &str = "cecsync_push_requests_total";
/// Records of accepted pushes written to the spool, by interface.
pub const PUSH_RECORDS: &str = "cecsync_push_records_total";
/// Syncs of the push spool (each one makes every push waiting for it durable).
pub const PUSH_SPOOL_SYNCS: &str = "cecsync_push_spool_syncs_total";
/// Nonces of accepted Private Number pushes remembered against replay.
pub const PUSH_NONCES: &str = "cecsync_push_nonces_remembered";
/// Bytes waiting in the push spool, as seen before each compaction.
pub const PUSH_SPOOL_BACKLOG: &str = "cecsync_push_spool_backlog_bytes";
/// Compactions of the push spool into the lake, by outcome.
pub const PUSH_COMPACTIONS: &str = "cecsync_push_compactions_total";
/// 1 while this service holds the lake's lease, else 0.
pub const LEASE_HELD: &str = "cecsync_lease_held";

/// The kind of a metric, as Prometheus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in buckets.
    Histogram,
}

/// Every metric: name, help text, kind.
pub const METRICS: &[(&str, &str, Kind)] = &[
    (ROWS_WRITTEN, "Rows in the partition objects written.", Kind::Counter),
    (REJECTS, "Records rejected by the normalizer (kept in _rejects/).", Kind::Counter),
    (SOURCE_REQUESTS, "Requests sent to a source, retries included.", Kind::Counter),
    (SOURCE_RETRIES, "Requests retried after a transient failure.", Kind::Counter),
    (PARTITION_WRITE_SECONDS, "Time to write one partition's objects.", Kind::Histogram),
    (JOBS, "Jobs finished, by kind and outcome.", Kind::Counter),
    (TICKS_SKIPPED, "Scheduled runs skipped: the previous one was still running.", Kind::Counter),
    (JOBS_ACTIVE, "Jobs queued or running now.", Kind::Gauge),
    (FRESHNESS_RECORD, "Seconds since the newest update time among synced records.", Kind::Gauge),
    (FRESHNESS_SYNC, "Seconds since the last successful incremental sync.", Kind::Gauge),
    (PUSH_REQUESTS, "Pushes received, by interface and outcome.", Kind::Counter),
    (PUSH_RECORDS, "Records of accepted pushes written to the spool.", Kind::Counter),
    (PUSH_SPOOL_SYNCS, "Syncs of the push spool (group commits).", Kind::Counter),
    (PUSH_NONCES, "Nonces of accepted pushes remembered against replay.", Kind::Gauge),
    (PUSH_SPOOL_BACKLOG, "Bytes waiting in the push spool, before each compaction.", Kind::Gauge),
    (PUSH_COMPACTIONS, "Compactions of the push spool into the lake.", Kind::Counter),
    (LEASE_HELD, "1 while this service holds the lake's lease.", Kind::Gauge),
];

/// Upper bounds of the histogram buckets, in seconds.
const BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Label pairs of one series, in a fixed order.
type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Series {
    values: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

/// The registry: every series recorded since the start.
#[derive(Debug, Default)]
pub struct Telemetry {
    series: Mutex<Series>,
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

impl Telemetry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Series) -> R) -> R {
        f(&mut self.series.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Adds `value` to a counter.
    pub fn add(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        self.with(|s| *s.values.entry((name, labels(pairs))).or_default() += value);
    }

    /// Sets a gauge (or a counter kept elsewhere) to `value`.
    pub fn set(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        self.with(|s| s.values.insert((name, labels(pairs)), value));
    }

    /// Records one observation of a histogram, in seconds.
    pub fn observe(&self, name: &'static str, pairs: &[(&'static str, &str)], seconds: f64) {
        self.with(|s| {
            let h = s.histograms.entry((name, labels(pairs))).or_insert_with(|| Histogram {
                counts: vec![0; BUCKETS.len()],
                ..Histogram::default()
            });
            for (count, bound) in h.counts.iter_mut().zip(BUCKETS) {
                if seconds <= *bound {
                    *count += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        });
    }

    /// The value of a counter or gauge series, if recorded.
    pub fn value(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> Option<f64> {
        self.with(|s| s.values.get(&(name, labels(pairs))).copied())
    }

    /// Every series in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let (values, histograms) = self.with(|s| (s.values.clone(), s.histograms.clone()));
        let mut out = String::new();
        for (name, help, kind) in METRICS {
            let kind_name = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind_name}");
            for ((_, series), value) in values.iter().filter(|((n, _), _)| n == name) {
                let _ = writeln!(out, "{name}{} {value}", format_labels(series, None));
            }
            for ((_, series), h) in histograms.iter().filter(|((n, _), _)| n == name) {
                for (count, bound) in h.counts.iter().zip(BUCKETS) {
                    let le = format_labels(series, Some(&bound.to_string()));
                    let _ = writeln!(out, "{name}_bucket{le} {count}");
                }
                let inf = format_labels(series, Some("+Inf"));
                let plain = format_labels(series, None);
                let _ = writeln!(out, "{name}_bucket{inf} {}", h.count);
                let _ =
                    writeln!(out, "{name}_sum{plain} {}\n{name}_count{plain} {}", h.sum, h.count);
            }
        }
        out
    }
}

/// `{k="v",...}` with the values escaped; `le` adds the bucket bound.
fn format_labels(series: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = series
        .iter()
        .map(|(k, v)| {
            let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters add up, gauges are replaced, histograms fill cumulative buckets, and every
    /// metric gets its HELP and TYPE lines with escaped label values.
    #[test]
    fn renders_prometheus_text() {
        let t = Telemetry::new();
        t.add(ROWS_WRITTEN, &[("pipeline", "rbt")], 10.0);
        t.add(ROWS_WRITTEN, &[("pipeline", "rbt")], 5.0);
        t.set(LEASE_HELD, &[], 1.0);
        t.set(LEASE_HELD, &[], 0.0);
        t.observe(PARTITION_WRITE_SECONDS, &[("pipeline", "rbt")], 0.2);
        t.observe(PARTITION_WRITE_SECONDS, &[("pipeline", "rbt")], 3.0);
        t.add(JOBS, &[("pipeline", "a\"b"), ("kind", "sync"), ("outcome", "ok")], 1.0);
        let text = t.render();
        assert!(text.contains("cecsync_rows_written_total{pipeline=\"rbt\"} 15\n"), "{text}");
        assert!(text.contains("cecsync_lease_held 0\n"), "{text}");
        assert!(text
            .contains("cecsync_partition_write_seconds_bucket{pipeline=\"rbt\",le=\"0.25\"} 1\n"));
        assert!(
            text.contains("cecsync_partition_write_seconds_bucket{pipeline=\"rbt\",le=\"5\"} 2\n")
        );
        assert!(text.contains("cecsync_partition_write_seconds_count{pipeline=\"rbt\"} 2\n"));
        assert!(text.contains("pipeline=\"a\\\"b\""), "{text}");
        for (name, _, _) in METRICS {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
        assert_eq!(t.value(ROWS_WRITTEN, &[("pipeline", "rbt")]), Some(15.0));
    }
}
