//! Incremental sync on an arrival-time cursor (`[slicing] cursor`): one window of the
//! cursor fields, from the last sync minus the lookback to now, whose rows may belong to
//! several months of their event time. Each row goes to the partition of its event month,
//! merged by key into it.
//!
//! ```text
//!  pages ──> normalizer ──> rows routed by event month ──> per month: existing rows + new
//!                                                          rows staged (newest per key)
//!  reconcile the window's distinct rows with the API total (retry the window)
//!  commit month by month, in month order (the slice commit protocol of each partition)
//! ```
//! The window's rows are held in memory until the window adds up: an incremental window is
//! small (the arrivals since the last sync); whole months go through the month slices of
//! a backfill. Rejected records have no trustworthy event time, so they are kept with the
//! partition of the month in which the window ends. Each month's outcome carries the
//! oldest event time of its window rows still open (`records.open_while`), so that the
//! next sync starts no later.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::TimestampMillisecondType;
use arrow::record_batch::RecordBatch;
use chrono::FixedOffset;
use tracing::info;

use super::error::EngineError;
use super::fan_out::FanOut;
use super::pipeline::PipelineRun;
use super::progress::Progress;
use super::request::range_body;
use super::slice::{
    commit_partition, event_normalizer, fetch_normalized, new_stage, stage_batch, with_attempts,
    AttemptError, Commit, SliceOutcome, Target, WriteMode,
};
use crate::calendar::Month;
use crate::catalog::pipeline::{CursorSpec, TimeFormat};
use crate::sink::layout::PartitionId;
use crate::sink::stage::SpoolFormat;
use crate::sink::writer::stage_existing;
use crate::sink::SinkError;

/// Fetches the cursor window `[begin_ms, end_ms]` and merges its rows into the partitions
/// of their event months; returns one outcome per partition written, in month order.
pub async fn run_cursor_window(
    run: &PipelineRun<'_>,
    cursor: &CursorSpec,
    time_format: TimeFormat,
    (begin_ms, end_ms): (i64, i64),
    progress: &dyn Progress,
) -> Result<Vec<SliceOutcome>, EngineError> {
    let window_month = Month::containing_ms(end_ms, run.zone).ok_or_else(|| {
        EngineError::BadRange(format!("window end {end_ms} ms is not an instant"))
    })?;
    let (mut outcomes, earlier_pages) = with_attempts(run, window_month.into(), || {
        attempt_window(run, cursor, time_format, (begin_ms, end_ms), window_month, progress)
    })
    .await?;
    if let Some(first) = outcomes.first_mut() {
        first.pages += earlier_pages;
    }
    Ok(outcomes)
}

async fn attempt_window(
    run: &PipelineRun<'_>,
    cursor: &CursorSpec,
    time_format: TimeFormat,
    (begin_ms, end_ms): (i64, i64),
    window_month: Month,
    progress: &dyn Progress,
) -> Result<Vec<SliceOutcome>, AttemptError> {
    let dataset = run.dataset_name();
    let sink_err = |month: Month, source| EngineError::Sink {
        dataset: dataset.to_string(),
        partition: month.into(),
        source,
    };
    let spec = &run.dataset.spec;
    let schema = &run.dataset.schema;
    let event_time = spec.records.event_time.as_deref().unwrap_or_default();
    let synced_at = run.clock.now();
    // Any event time is accepted (a missing one is rejected): rows are routed by it.
    let normalizer = event_normalizer(run, synced_at, (i64::MIN, i64::MAX));
    let event_column = schema.index_of(event_time).ok_or_else(|| {
        EngineError::BadRange(format!("{dataset}: the schema has no event time {event_time}"))
    })?;
    let body =
        range_body(run, (&cursor.begin_field, &cursor.end_field), time_format, begin_ms, end_ms);
    let mut routed: BTreeMap<Month, Vec<RecordBatch>> = BTreeMap::new();
    let mut fan_out = FanOut::of(run)?;
    let request = (run.first_entry(), body);
    let fetched =
        fetch_normalized(run, window_month.into(), request, &normalizer, progress, |batch| {
            if let Some(fan_out) = fan_out.as_mut() {
                fan_out.observe(&batch)?;
            }
            route(&batch, event_column, run.zone, &mut routed)
        })
        .await?;
    if !fetched.rejects.is_empty() {
        routed.entry(window_month).or_default();
    }

    // Each month: its existing rows, then the window's rows, newest version per key, noting
    // the oldest event time of the window's rows still open.
    let mut stages = Vec::with_capacity(routed.len());
    let mut distinct = 0;
    for (month, batches) in routed {
        let id = PartitionId::new(dataset, run.tenant_id.clone(), month);
        let mut stage = new_stage(run, SpoolFormat::ArrowIpc).map_err(|e| sink_err(month, e))?;
        stage_existing(&run.store, &id, &mut stage).await.map_err(|e| sink_err(month, e))?;
        stage.mark_fetch_start();
        let mut oldest_open_ms = None;
        for batch in &batches {
            stage_batch(&mut stage, batch, &spec.records, &mut oldest_open_ms)
                .map_err(|e| sink_err(month, e))?;
        }
        distinct += stage.distinct_fetched();
        stages.push((id, stage, oldest_open_ms));
    }
    fetched.reconcile(spec, distinct)?;
    let target = |id: PartitionId| Target {
        id,
        mode: WriteMode::Merge,
        window: (begin_ms, end_ms),
        closed: false,
        synced_at,
    };
    if let Some(fan_out) = fan_out {
        let parents: Vec<Target> = stages.iter().map(|(id, _, _)| target(id.clone())).collect();
        fan_out.commit(&parents).await?;
    }

    let mut outcomes = Vec::with_capacity(stages.len());
    for (id, stage, oldest_open_ms) in stages {
        let rejects = if id.key == window_month.into() {
            fetched.rejects.records().iter().collect()
        } else {
            Vec::new()
        };
        let commit = Commit {
            target: target(id),
            stage,
            rejects,
            rejected_texts: fetched.rejects.texts(),
            summary: fetched.summary,
            oldest_open_ms,
        };
        let outcome = commit_partition(&run.store, run.state, commit).await?;
        info!(
            dataset, partition = %outcome.partition, rows = outcome.rows, api_total = outcome.api_total,
            rejects = outcome.rejects, "Cursor window merged into the partition."
        );
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Splits `batch` by the month (in `zone`) of its timestamp column `column`, appending each
/// part to its month's list. The column holds no nulls: the normalizer rejects a record
/// without an event time.
fn route(
    batch: &RecordBatch,
    column: usize,
    zone: FixedOffset,
    routed: &mut BTreeMap<Month, Vec<RecordBatch>>,
) -> Result<(), SinkError> {
    let times = batch.column(column).as_primitive::<TimestampMillisecondType>();
    route_rows(
        batch,
        |i| times.is_valid(i).then(|| Month::containing_ms(times.value(i), zone)).flatten(),
        routed,
    )
}

/// Splits `batch` by the month that `month_of` gives each row, appending each part, rows in
/// their order, to its month's list. A row without a month is an error.
pub(crate) fn route_rows(
    batch: &RecordBatch,
    month_of: impl Fn(usize) -> Option<Month>,
    routed: &mut BTreeMap<Month, Vec<RecordBatch>>,
) -> Result<(), SinkError> {
    let mut rows: BTreeMap<Month, Vec<u32>> = BTreeMap::new();
    for i in 0..batch.num_rows() {
        let month = month_of(i).ok_or_else(|| SinkError::Arrow {
            context: format!("row {i} has no event time to route it by"),
            source: arrow::error::ArrowError::InvalidArgumentError("null event time".into()),
        })?;
        rows.entry(month).or_default().push(i as u32);
    }
    for (month, indices) in rows {
        let part = if indices.len() == batch.num_rows() {
            batch.clone()
        } else {
            take_record_batch(batch, &UInt32Array::from(indices)).map_err(|source| {
                SinkError::Arrow { context: format!("routing rows to {month}"), source }
            })?
        };
        routed.entry(month).or_default().push(part);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    /// Rows go to the month of their event time in the source zone, in their order.
    #[test]
    fn rows_are_routed_by_event_month() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
        ]));
        // 2025-01-31T16:30Z is February 00:30 at +08:00; 2025-01-31T15:30Z is still January.
        let feb = 1_738_341_000_000;
        let jan = feb - 3_600_000;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(TimestampMillisecondArray::from(vec![feb, jan, feb]).with_timezone("UTC")),
            ],
        )
        .unwrap();
        let zone = crate::calendar::parse_zone("+08:00").unwrap();
        let mut routed = BTreeMap::new();
        route(&batch, 1, zone, &mut routed).unwrap();
        let ids = |m: Month| -> Vec<i64> {
            routed[&m]
                .iter()
                .flat_map(|b| {
                    b.column(0).as_primitive::<arrow::datatypes::Int64Type>().values().to_vec()
                })
                .collect()
        };
        assert_eq!(ids(Month::new(2025, 1).unwrap()), [2]);
        assert_eq!(ids(Month::new(2025, 2).unwrap()), [1, 3]);
        let utc = crate::calendar::parse_zone("+00:00").unwrap();
        let mut routed = BTreeMap::new();
        route(&batch, 1, utc, &mut routed).unwrap();
        assert_eq!(routed.keys().copied().collect::<Vec<_>>(), [Month::new(2025, 1).unwrap()]);
    }
}
