//! The service's view of the lake for `GET /status`, the status page and the freshness
//! metrics: per pipeline, every month (or, for a snapshot dataset, every snapshot day) with
//! its state, the freshness, the last error and the jobs.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, Utc};
use serde::Serialize;

use super::context::Service;
use super::jobs::{JobState, JobView};
use crate::calendar::Month;
use crate::engine::EngineError;
use crate::push::kind::PushKind;
use crate::sink::layout::PartitionKey;
use crate::state::{PartitionCheckpoint, SliceState};
use crate::telemetry;

/// Months shown before the current one when the lake holds fewer.
const GRID_MONTHS: u32 = 12;
/// An open or partial partition not synced for this long is stale.
const STALE_AFTER_HOURS: i64 = 24;

/// How a month looks on the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GridState {
    /// Complete, or open and recently synced.
    Synced,
    /// Open or partial but not synced lately, or its month ended and no refresh made it
    /// complete yet.
    Stale,
    /// Its last slice failed, or a write was interrupted.
    Failed,
    /// Never fetched.
    Never,
}

/// One partition of a pipeline: a month, or a snapshot's day.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionView {
    /// `"month": "YYYY-MM"` or `"snapshot_date": "YYYY-MM-DD"`.
    #[serde(flatten)]
    pub key: PartitionKey,
    /// Its colour on the page.
    pub grid: GridState,
    /// The checkpoint's state, if any.
    pub state: Option<SliceState>,
    /// Rows in the partition.
    pub rows: u64,
    /// The API's total when fetched.
    pub api_total: u64,
    /// Records rejected.
    pub rejects: u64,
    /// When it was last written.
    pub synced_at: Option<DateTime<Utc>>,
    /// The error of its last failed slice, if it has not succeeded since.
    pub last_error: Option<String>,
}

/// Freshness of a pipeline, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Freshness {
    /// Since the newest update time among the synced records.
    pub newest_record_seconds: Option<f64>,
    /// Since the last successful incremental sync.
    pub last_success_seconds: Option<f64>,
}

/// One pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineView {
    /// Its name.
    pub name: String,
    /// Whether the service runs it.
    pub enabled: bool,
    /// Incremental schedule.
    pub schedule: String,
    /// Refresh schedule.
    pub refresh_schedule: String,
    /// When the last incremental sync succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last incremental sync's error, if it failed.
    pub last_error: Option<String>,
    /// Freshness.
    pub freshness: Freshness,
    /// Months, oldest first (none for a snapshot dataset).
    pub months: Vec<PartitionView>,
    /// Snapshot days, oldest first (none but for a snapshot dataset).
    pub snapshots: Vec<PartitionView>,
    /// Jobs of this pipeline kept by the service, newest first.
    pub jobs: Vec<JobView>,
}

/// The whole status.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// This service.
    pub service: String,
    /// Whether it holds the lake's lease.
    pub leader: bool,
    /// Whether it is shutting down.
    pub stopping: bool,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When this view was taken.
    pub now: DateTime<Utc>,
    /// The tenant.
    pub tenant_id: String,
    /// Every enabled pipeline and every pipeline with data.
    pub pipelines: Vec<PipelineView>,
    /// The push receivers, when `[push]` is configured.
    pub push: Option<PushView>,
}

/// The push side: where it listens, its spool, its compactions, and the months of the
/// datasets only pushes write.
#[derive(Debug, Clone, Serialize)]
pub struct PushView {
    /// The listen address.
    pub listen: String,
    /// Bytes waiting in the spool before the last compaction (see the metric).
    pub spool_backlog_bytes: Option<f64>,
    /// Compactions that succeeded since the start.
    pub compactions_ok: f64,
    /// Compactions that failed since the start.
    pub compactions_failed: f64,
    /// Months of `privatenumber_cdrs` and `privatenumber_events`, oldest first.
    pub datasets: Vec<PushDatasetView>,
}

/// The months of one dataset that only pushes write.
#[derive(Debug, Clone, Serialize)]
pub struct PushDatasetView {
    /// The dataset.
    pub name: String,
    /// Its months.
    pub months: Vec<PartitionView>,
}

/// The colour of a month given its checkpoint and its last failure.
pub fn grid_state(
    checkpoint: Option<&PartitionCheckpoint>,
    failed: bool,
    month: Month,
    zone: FixedOffset,
    now: DateTime<Utc>,
) -> GridState {
    if failed {
        return GridState::Failed;
    }
    let Some(cp) = checkpoint else { return GridState::Never };
    match cp.state {
        SliceState::Writing => GridState::Failed,
        SliceState::Complete => GridState::Synced,
        SliceState::Open | SliceState::Partial => {
            let ended = month.next().start(zone) <= now;
            let old = now - cp.synced_at > ChronoDuration::hours(STALE_AFTER_HOURS);
            if ended || old {
                GridState::Stale
            } else {
                GridState::Synced
            }
        }
    }
}

/// The push side's view: its metrics and the months of the push-only datasets.
async fn push_view(
    service: &Service,
    config: &crate::config::PushSettings,
    now: DateTime<Utc>,
) -> Result<PushView, EngineError> {
    let settings = service.engine.settings();
    let mut datasets = Vec::new();
    for kind in PushKind::ALL.into_iter().filter(|k| !settings.pipelines.contains_key(k.dataset()))
    {
        let name = kind.dataset();
        let partitions = service.engine.state().partitions(name, &settings.tenant_id).await?;
        let months = month_views(&partitions, &BTreeMap::new(), utc(), now);
        datasets.push(PushDatasetView { name: name.to_string(), months });
    }
    let compactions = |outcome| {
        service.telemetry.value(telemetry::PUSH_COMPACTIONS, &[("outcome", outcome)]).unwrap_or(0.0)
    };
    Ok(PushView {
        listen: config.listen.to_string(),
        spool_backlog_bytes: service.telemetry.value(telemetry::PUSH_SPOOL_BACKLOG, &[]),
        compactions_ok: compactions("ok"),
        compactions_failed: compactions("failed"),
        datasets,
    })
}

/// Takes the status of every pipeline and updates the freshness gauges.
pub async fn status(service: &Service) -> Result<StatusView, EngineError> {
    let engine = &service.engine;
    let settings = engine.settings();
    let now = Utc::now();
    let jobs = service.jobs.list();
    let mut pipelines = Vec::new();
    for (name, p) in &settings.pipelines {
        let partitions = engine.state().partitions(name, &settings.tenant_id).await?;
        if !p.enabled && partitions.is_empty() {
            continue;
        }
        let checkpoint = engine.state().pipeline(name, &settings.tenant_id).await?;
        let zone = settings.source_of(name).map(|s| s.zone).unwrap_or_else(utc);
        let failed = service.jobs.failed_partitions(name);
        let snapshot = settings.catalog.get(name).is_some_and(|d| d.spec.is_snapshot());
        let (months, snapshots) = match snapshot {
            true => (Vec::new(), snapshot_views(&partitions, &failed)),
            false => (month_views(&partitions, &failed, zone, now), Vec::new()),
        };
        let newest = partitions.iter().filter_map(|c| c.max_update_time_ms).max();
        let last_success = checkpoint.as_ref().and_then(|c| c.last_success_at);
        let freshness = Freshness {
            newest_record_seconds: newest
                .and_then(DateTime::from_timestamp_millis)
                .map(|t| seconds_since(t, now)),
            last_success_seconds: last_success.map(|t| seconds_since(t, now)),
        };
        let labels = [("pipeline", name.as_str())];
        if let Some(s) = freshness.newest_record_seconds {
            service.telemetry.set(telemetry::FRESHNESS_RECORD, &labels, s);
        }
        if let Some(s) = freshness.last_success_seconds {
            service.telemetry.set(telemetry::FRESHNESS_SYNC, &labels, s);
        }
        pipelines.push(PipelineView {
            name: name.clone(),
            enabled: p.enabled,
            schedule: p.schedule.clone(),
            refresh_schedule: p.refresh_schedule.clone(),
            last_success_at: last_success,
            last_error: checkpoint.and_then(|c| c.last_error),
            freshness,
            months,
            snapshots,
            jobs: jobs.iter().filter(|j| &j.pipeline == name).cloned().collect(),
        });
    }
    let push = match &settings.push {
        Some(config) => Some(push_view(service, config, now).await?),
        None => None,
    };
    for (state, label) in [(JobState::Queued, "queued"), (JobState::Running, "running")] {
        let count = jobs.iter().filter(|j| j.state == state).count();
        service.telemetry.set(telemetry::JOBS_ACTIVE, &[("state", label)], count as f64);
    }
    Ok(StatusView {
        service: service.lease.holder().to_string(),
        leader: service.is_leader(),
        stopping: service.shutdown.is_stopping(),
        started_at: service.started_at,
        now,
        tenant_id: settings.tenant_id.clone(),
        pipelines,
        push,
    })
}

fn utc() -> FixedOffset {
    FixedOffset::east_opt(0).expect("0 is a valid offset")
}

fn seconds_since(t: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    (now - t).num_milliseconds().max(0) as f64 / 1000.0
}

/// Every month from the oldest partition (or a year back) to the current month.
fn month_views(
    partitions: &[PartitionCheckpoint],
    failed: &BTreeMap<PartitionKey, String>,
    zone: FixedOffset,
    now: DateTime<Utc>,
) -> Vec<PartitionView> {
    let by_month: BTreeMap<Month, &PartitionCheckpoint> =
        partitions.iter().filter_map(|cp| cp.key.month().map(|m| (m, cp))).collect();
    let current = Month::containing(now, zone);
    let mut first = current;
    for _ in 1..GRID_MONTHS {
        first = first.prev();
    }
    let first = by_month.keys().next().copied().map_or(first, |m| m.min(first));
    let last = by_month.keys().next_back().copied().map_or(current, |m| m.max(current));
    first
        .through(last)
        .map(|month| {
            let key = PartitionKey::Month(month);
            let cp = by_month.get(&month).copied();
            let grid = grid_state(cp, failed.contains_key(&key), month, zone, now);
            partition_view(key, grid, cp, failed)
        })
        .collect()
}

/// Every snapshot day of a snapshot dataset, and the days whose snapshot failed.
fn snapshot_views(
    partitions: &[PartitionCheckpoint],
    failed: &BTreeMap<PartitionKey, String>,
) -> Vec<PartitionView> {
    let mut by_day: BTreeMap<PartitionKey, Option<&PartitionCheckpoint>> =
        partitions.iter().map(|cp| (cp.key, Some(cp))).collect();
    for key in failed.keys() {
        by_day.entry(*key).or_insert(None);
    }
    by_day
        .into_iter()
        .map(|(key, cp)| {
            // A snapshot is whole when written: synced, unless its write or its last run failed.
            let grid = match cp.map(|c| c.state) {
                _ if failed.contains_key(&key) => GridState::Failed,
                Some(SliceState::Writing) => GridState::Failed,
                Some(_) => GridState::Synced,
                None => GridState::Never,
            };
            partition_view(key, grid, cp, failed)
        })
        .collect()
}

fn partition_view(
    key: PartitionKey,
    grid: GridState,
    cp: Option<&PartitionCheckpoint>,
    failed: &BTreeMap<PartitionKey, String>,
) -> PartitionView {
    PartitionView {
        key,
        grid,
        state: cp.map(|c| c.state),
        rows: cp.map_or(0, |c| c.rows),
        api_total: cp.map_or(0, |c| c.api_total),
        rejects: cp.map_or(0, |c| c.rejects),
        synced_at: cp.map(|c| c.synced_at),
        last_error: failed.get(&key).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_zone;

    fn cp(state: SliceState, synced_at: &str) -> PartitionCheckpoint {
        PartitionCheckpoint {
            dataset: "d".into(),
            tenant_id: "t".into(),
            key: PartitionKey::Month(Month::new(2025, 6).unwrap()),
            state,
            rows: 1,
            api_total: 1,
            rejects: 0,
            pages: 1,
            max_update_time_ms: None,
            window_begin_ms: 0,
            window_end_ms: 0,
            object_path: String::new(),
            object_bytes: 0,
            content_sha256: String::new(),
            synced_at: synced_at.parse().unwrap(),
        }
    }

    /// Complete months are synced; open ones are synced while recent and in their month,
    /// stale after; interrupted writes and failed slices are failed; absent ones never.
    #[test]
    fn months_are_coloured_by_state() {
        let zone = parse_zone("+08:00").unwrap();
        let june = Month::new(2025, 6).unwrap();
        let now: DateTime<Utc> = "2025-06-20T00:00:00Z".parse().unwrap();
        let g = |c: Option<&PartitionCheckpoint>, failed| grid_state(c, failed, june, zone, now);
        let recent = "2025-06-19T12:00:00Z";
        assert_eq!(g(Some(&cp(SliceState::Complete, recent)), false), GridState::Synced);
        assert_eq!(g(Some(&cp(SliceState::Open, recent)), false), GridState::Synced);
        assert_eq!(
            g(Some(&cp(SliceState::Partial, "2025-06-10T00:00:00Z")), false),
            GridState::Stale
        );
        assert_eq!(g(Some(&cp(SliceState::Writing, recent)), false), GridState::Failed);
        assert_eq!(g(Some(&cp(SliceState::Complete, recent)), true), GridState::Failed);
        assert_eq!(g(None, false), GridState::Never);
        let july: DateTime<Utc> = "2025-07-01T00:00:00Z".parse().unwrap();
        let open = cp(SliceState::Open, "2025-06-30T23:00:00Z");
        assert_eq!(grid_state(Some(&open), false, june, zone, july), GridState::Stale);
    }

    /// The grid runs from a year back (or the oldest partition) to the current month.
    #[test]
    fn grid_spans_a_year_or_more() {
        let zone = parse_zone("+08:00").unwrap();
        let now: DateTime<Utc> = "2025-06-20T00:00:00Z".parse().unwrap();
        let views = month_views(&[], &BTreeMap::new(), zone, now);
        assert_eq!(views.len(), 12);
        assert_eq!(views[0].key.to_string(), "month=2024-07");
        assert_eq!(views[11].key.to_string(), "month=2025-06");
        let mut old = cp(SliceState::Complete, "2025-06-01T00:00:00Z");
        old.key = PartitionKey::Month(Month::new(2023, 1).unwrap());
        let views = month_views(&[old], &BTreeMap::new(), zone, now);
        assert_eq!(views.first().unwrap().key.value(), "2023-01");
        assert_eq!(views.first().unwrap().grid, GridState::Synced);
        assert_eq!(views.len(), 30);
        let json = serde_json::to_value(&views[0]).unwrap();
        assert_eq!((json["month"].as_str(), json["rows"].as_u64()), (Some("2023-01"), Some(1)));
    }

    /// A snapshot dataset lists its days, each synced once written, failed when its last
    /// run failed (a day never written included), in the JSON as `snapshot_date`.
    #[test]
    fn snapshots_are_listed_by_day() {
        let day = |d: &str| format!("snapshot_date={d}").parse::<PartitionKey>().unwrap();
        let mut first = cp(SliceState::Complete, "2025-06-01T00:00:00Z");
        first.key = day("2025-06-01");
        let failed = BTreeMap::from([(day("2025-06-02"), "HTTP 502".to_string())]);
        let views = snapshot_views(&[first], &failed);
        let grids: Vec<_> = views.iter().map(|v| (v.key.value(), v.grid)).collect();
        assert_eq!(
            grids,
            [
                ("2025-06-01".to_string(), GridState::Synced),
                ("2025-06-02".into(), GridState::Failed)
            ]
        );
        let json = serde_json::to_value(&views[1]).unwrap();
        assert_eq!(json["snapshot_date"], "2025-06-02");
        assert_eq!(json["last_error"], "HTTP 502");
    }
}
