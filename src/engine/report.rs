//! Read-only views of the lake: `status` (what each partition holds) and `verify`
//! (re-reading the lake and checking it against the checkpoints).

use crate::push::kind::PushKind;
use std::fmt;

use chrono::{DateTime, Utc};

use super::error::EngineError;
use super::runner::Engine;
use crate::sink::writer::inspect_partition;
use crate::state::{PartitionCheckpoint, SliceState};

/// One line of `cecsync status`.
#[derive(Debug, Clone)]
pub struct StatusRow {
    /// The pipeline.
    pub pipeline: String,
    /// The checkpoint of one partition (`None` for a pipeline with no partition yet).
    pub partition: Option<PartitionCheckpoint>,
}

/// Every partition of every pipeline of the catalog that has data or is enabled.
pub async fn status(engine: &Engine) -> Result<Vec<StatusRow>, EngineError> {
    let settings = engine.settings();
    let mut rows = Vec::new();
    for (name, _) in lake_datasets(engine) {
        let name = name.as_str();
        let parts = engine.state().partitions(name, &settings.tenant_id).await?;
        if parts.is_empty() {
            let pulled = settings.pipelines.get(name).is_some_and(|p| p.enabled);
            let pushed =
                settings.push.is_some() && PushKind::ALL.iter().any(|k| k.dataset() == name);
            if pulled || pushed {
                rows.push(StatusRow { pipeline: name.to_string(), partition: None });
            }
            continue;
        }
        rows.extend(
            parts.into_iter().map(|p| StatusRow { pipeline: name.to_string(), partition: Some(p) }),
        );
    }
    Ok(rows)
}

/// Every dataset the lake may hold, with its primary key: the catalog's (pulled) and those
/// that only push ingestion writes.
fn lake_datasets(engine: &Engine) -> Vec<(String, Vec<String>)> {
    let catalog = &engine.settings().catalog;
    let mut datasets: Vec<(String, Vec<String>)> = catalog
        .iter()
        .map(|(name, d)| (name.to_string(), d.spec.records.primary_key.clone()))
        .collect();
    for kind in PushKind::ALL.into_iter().filter(|k| catalog.get(k.dataset()).is_none()) {
        let key = kind.primary_key().iter().map(|k| k.to_string()).collect();
        datasets.push((kind.dataset().to_string(), key));
    }
    datasets.sort();
    datasets
}

/// Renders status rows as an aligned text table.
pub fn status_table(rows: &[StatusRow]) -> String {
    let mut lines = vec![[
        "PIPELINE".to_string(),
        "PARTITION".into(),
        "ROWS".into(),
        "API TOTAL".into(),
        "REJECTS".into(),
        "LAST SYNC".into(),
        "STATE".into(),
    ]];
    for r in rows {
        lines.push(match &r.partition {
            Some(p) => [
                r.pipeline.clone(),
                p.key.to_string(),
                p.rows.to_string(),
                p.api_total.to_string(),
                p.rejects.to_string(),
                p.synced_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                p.state.to_string(),
            ],
            None => [
                r.pipeline.clone(),
                "-".into(),
                "0".into(),
                "-".into(),
                "-".into(),
                "never".into(),
                "never".into(),
            ],
        });
    }
    aligned(&lines)
}

/// One line of the sync table of `cecsync status`: when a pipeline's incremental sync
/// last succeeded, and its last error.
#[derive(Debug, Clone)]
pub struct SyncRow {
    /// The pipeline.
    pub pipeline: String,
    /// When its last incremental sync succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The error of its last sync, if it failed.
    pub last_error: Option<String>,
}

/// The incremental-sync state of every enabled pipeline.
pub async fn sync_status(engine: &Engine) -> Result<Vec<SyncRow>, EngineError> {
    let settings = engine.settings();
    let mut rows = Vec::new();
    for (name, _) in settings.pipelines.iter().filter(|(_, p)| p.enabled) {
        let checkpoint = engine.state().pipeline(name, &settings.tenant_id).await?;
        rows.push(SyncRow {
            pipeline: name.clone(),
            last_success_at: checkpoint.as_ref().and_then(|c| c.last_success_at),
            last_error: checkpoint.and_then(|c| c.last_error),
        });
    }
    Ok(rows)
}

/// Renders sync rows as an aligned table with the age of each last success at `now`, so
/// that a pipeline that stopped syncing (a platform that keeps a day of data) shows.
pub fn sync_table(rows: &[SyncRow], now: DateTime<Utc>) -> String {
    let mut lines = vec![[
        "PIPELINE".to_string(),
        "LAST SUCCESSFUL SYNC".into(),
        "AGE".into(),
        "LAST ERROR".into(),
    ]];
    for r in rows {
        let (at, age) = match r.last_success_at {
            Some(t) => (t.format("%Y-%m-%d %H:%M:%SZ").to_string(), age(now - t)),
            None => ("never".into(), "-".into()),
        };
        lines.push([r.pipeline.clone(), at, age, r.last_error.clone().unwrap_or("-".into())]);
    }
    aligned(&lines)
}

/// A duration as days, hours and minutes (`2d 3h`, `5h 12m`, `7m`).
fn age(elapsed: chrono::TimeDelta) -> String {
    let minutes = elapsed.num_minutes().max(0);
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// Lines of cells as columns padded to their widest cell.
fn aligned<const N: usize>(lines: &[[String; N]]) -> String {
    let widths: Vec<usize> =
        (0..N).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    lines
        .iter()
        .map(|l| {
            l.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The pipeline.
    pub pipeline: String,
    /// The partition, `month=YYYY-MM` or `snapshot_date=YYYY-MM-DD`.
    pub partition: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.pipeline, self.partition, self.problem)
    }
}

/// What `verify` checked and found.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    /// Partitions checked.
    pub partitions: u64,
    /// Rows read back.
    pub rows: u64,
    /// Problems found.
    pub findings: Vec<Finding>,
}

/// Re-reads every checkpointed partition: its row count and content hash must match the
/// checkpoint and its primary key must be unique.
pub async fn verify(engine: &Engine) -> Result<VerifyReport, EngineError> {
    let settings = engine.settings();
    let mut report = VerifyReport::default();
    for (name, primary_key) in lake_datasets(engine) {
        let name = name.as_str();
        for cp in engine.state().partitions(name, &settings.tenant_id).await? {
            let finding = |problem: String| Finding {
                pipeline: name.to_string(),
                partition: cp.key.to_string(),
                problem,
            };
            if cp.state == SliceState::Writing {
                report.findings.push(finding(
                    "a write was interrupted; run backfill for this partition again".into(),
                ));
                continue;
            }
            let id = cp.partition_id();
            let facts =
                inspect_partition(&engine.store(), &id, &primary_key).await.map_err(|source| {
                    EngineError::Sink { dataset: name.to_string(), partition: cp.key, source }
                })?;
            report.partitions += 1;
            report.rows += facts.rows;
            if facts.rows != cp.rows {
                report.findings.push(finding(format!(
                    "{} rows in the lake, {} in the checkpoint",
                    facts.rows, cp.rows
                )));
            }
            if facts.sha256 != cp.content_sha256 {
                report.findings.push(finding(
                    "the data object differs from the one the checkpoint recorded".into(),
                ));
            }
            if facts.duplicate_keys > 0 {
                report
                    .findings
                    .push(finding(format!("{} duplicate primary keys", facts.duplicate_keys)));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sync table shows each pipeline's last success with its age, or never, and the
    /// last error.
    #[test]
    fn sync_table_shows_the_age_of_the_last_success() {
        let now: DateTime<Utc> = "2026-12-06T12:00:00Z".parse().unwrap();
        let rows = [
            SyncRow {
                pipeline: "missed_calls".into(),
                last_success_at: Some(now - chrono::TimeDelta::minutes(26 * 60 + 5)),
                last_error: Some("missed_calls month=2026-12: HTTP 503".into()),
            },
            SyncRow { pipeline: "ivr_flows".into(), last_success_at: None, last_error: None },
            SyncRow {
                pipeline: "rbt_recognition".into(),
                last_success_at: Some(now - chrono::TimeDelta::minutes(7)),
                last_error: None,
            },
        ];
        let table = sync_table(&rows, now);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("PIPELINE         LAST SUCCESSFUL SYNC  AGE"), "{table}");
        assert!(
            lines[1].contains("2026-12-05 09:55:00Z  1d 2h  missed_calls month=2026-12: HTTP 503"),
            "{table}"
        );
        assert!(lines[2].contains("never") && lines[2].ends_with('-'), "{table}");
        assert!(lines[3].contains("7m"), "{table}");
    }
}
