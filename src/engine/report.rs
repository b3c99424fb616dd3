//! Read-only views of the lake: `status` (what each partition holds) and `verify`
//! (re-reading the lake and checking it against the checkpoints).

use std::fmt;

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
    for name in settings.catalog.names() {
        let parts = engine.state().partitions(name, &settings.tenant_id).await?;
        if parts.is_empty() {
            if settings.pipelines[name].enabled {
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
    let widths: Vec<usize> =
        (0..7).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
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
    for (name, dataset) in settings.catalog.iter() {
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
            let facts = inspect_partition(&engine.store(), &id, &dataset.spec.records.primary_key)
                .await
                .map_err(|source| EngineError::Sink {
                    dataset: name.to_string(),
                    partition: cp.key,
                    source,
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
