//! Fan-out datasets (`[slicing] style = "fan_out"`): one request per row of a parent
//! dataset (the detail of an inspected call), made while the parent's partition is staged,
//! and committed before the parent so that a reader never sees parent rows without theirs.
//!
//! ```text
//!  parent pages ──> parent stage                      (the parent slice, as always)
//!        └──> tap: key, month and the columns the fan-out reads, per parent row
//!  before the parent commits, for each of its partitions:
//!    stored parent rows ─┐
//!    tapped parent rows ─┴─> rows to ask about: pass `when`, and new, changed, or never
//!                            asked for this month
//!    fan-out stage = stored fan-out rows of the other parent rows still passing `when`
//!                  + the answers (bounded concurrent requests, normalized per dataset)
//!    commit every fan-out partition ─> CHILDREN_COMMITTED ─> the parent's commit
//! ```
//! A crash after the fan-out partitions are committed and before the parent's object is
//! replaced leaves the stored parent rows as they were: the rows the run added or changed
//! are not visible yet, while their answers already are (replacing earlier ones by key), so
//! no visible parent row lacks its answers — except a stored row that the run found gone or
//! no longer passing `when`, whose answers were dropped with it. The next run over the
//! month (its sync window was not advanced; a backfill fetches a month not yet complete)
//! asks again for the rows that are new or changed against the stored ones.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::TimestampMillisecondType;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use chrono::FixedOffset;
use futures::stream::{self, StreamExt};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tracing::info;

use super::error::EngineError;
use super::pipeline::PipelineRun;
use super::request::fixed_body;
use super::slice::{commit_partition, event_normalizer, new_stage, Commit, Target, WriteMode};
use crate::calendar::Month;
use crate::catalog::pipeline::FanOutSpec;
use crate::normalize::rejects::{RejectedRecord, RejectedSet};
use crate::normalize::Normalizer;
use crate::sink::crash;
use crate::sink::key::KeyColumns;
use crate::sink::layout::{PartitionId, PartitionKey};
use crate::sink::stage::{PartitionStage, SpoolFormat};
use crate::sink::writer::read_existing;
use crate::sink::SinkError;
use crate::source::envelope::{body_text, object_records};
use crate::source::paging::{wrap_body, PagingSummary};
use crate::source::SourceError;

/// Rows normalized before they are handed to a fan-out stage as one batch.
const BATCH_ROWS: usize = 8192;

/// The fan-out of one parent fetch: watches the parent's rows as they are staged, then
/// fetches and commits the fan-out partitions before the parent's.
pub(super) struct FanOut<'r, 'a> {
    run: &'r PipelineRun<'a>,
    groups: Vec<RequestGroup<'r, 'a>>,
    tap: ParentRows,
}

/// Fan-out datasets that send the same request for a parent row: one request serves all.
struct RequestGroup<'r, 'a> {
    spec: &'r FanOutSpec,
    members: Vec<&'r PipelineRun<'a>>,
}

impl<'r, 'a> FanOut<'r, 'a> {
    /// The fan-out of `run`, or None when none of its fan-out datasets is enabled.
    pub(super) fn of(run: &'r PipelineRun<'a>) -> Result<Option<Self>, EngineError> {
        let mut groups: Vec<RequestGroup<'r, 'a>> = Vec::new();
        for child in &run.children {
            let Some(spec) = child.dataset.spec.fan_out() else { continue };
            let same_request = |g: &&mut RequestGroup<'r, 'a>| {
                let lead = g.members[0];
                g.spec == spec
                    && lead.first_entry().path == child.first_entry().path
                    && lead.dataset.spec.source == child.dataset.spec.source
                    && lead.dataset.spec.request.body == child.dataset.spec.request.body
            };
            match groups.iter_mut().find(same_request) {
                Some(group) => group.members.push(child),
                None => groups.push(RequestGroup { spec, members: vec![child] }),
            }
        }
        if groups.is_empty() {
            return Ok(None);
        }
        let mut columns: Vec<String> = Vec::new();
        for group in &groups {
            let spec = group.spec;
            let wanted = spec.body_from_parent.values().chain(spec.when.iter().map(|w| &w.field));
            for name in wanted.chain(&spec.changed) {
                if !columns.contains(name) {
                    columns.push(name.clone());
                }
            }
        }
        let tap = ParentRows::new(run, columns)?;
        Ok(Some(Self { run, groups, tap }))
    }

    /// Notes the parent rows of a batch about to be staged.
    pub(super) fn observe(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.tap.observe(batch)
    }

    /// Fetches and commits the fan-out partitions of every parent partition (which must
    /// all be staged, their rows observed, and not yet committed).
    pub(super) async fn commit(self, partitions: &[Target]) -> Result<(), EngineError> {
        let run = self.run;
        for partition in partitions {
            let key = partition.id.key;
            let parent_err = |source| EngineError::Sink {
                dataset: run.dataset_name().to_string(),
                partition: key,
                source,
            };
            // The parent rows as stored before this fetch: what the answers kept belong to.
            let mut stored = ParentRows::new(run, self.tap.column_names()).map_err(parent_err)?;
            let schema = run.dataset.schema.arrow_schema();
            read_existing(&run.store, &partition.id, &schema, |batch| stored.observe(&batch))
                .await
                .map_err(parent_err)?;
            for group in &self.groups {
                self.commit_group(group, partition, &stored).await?;
            }
        }
        crash::point(crash::CHILDREN_COMMITTED);
        Ok(())
    }

    /// One request group's partitions for one parent partition, whose rows stored before
    /// this fetch are `stored`.
    async fn commit_group(
        &self,
        group: &RequestGroup<'r, 'a>,
        parent: &Target,
        stored: &ParentRows,
    ) -> Result<(), EngineError> {
        let key = parent.id.key;
        let run = self.run;
        let fetched = self.tap.rows.iter().filter(|(_, row)| PartitionKey::Month(row.month) == key);
        let current: HashMap<&[u8], &ParentRow> = match parent.mode {
            WriteMode::Replace => fetched.map(|(k, r)| (k.as_ref(), r)).collect(),
            WriteMode::Merge | WriteMode::MergeWhole => {
                let mut rows: HashMap<&[u8], &ParentRow> =
                    stored.rows.iter().map(|(k, r)| (k.as_ref(), r)).collect();
                rows.extend(fetched.map(|(k, r)| (k.as_ref(), r)));
                rows
            }
        };
        // A fan-out dataset without the month, or whose month is older than the parent's
        // (it was disabled while the parent synced), has not been asked about every row.
        let parent_synced = run.state.partition(&parent.id).await?.map(|cp| cp.synced_at);
        let mut never_asked = false;
        for member in &group.members {
            let id = PartitionId::new(member.dataset_name(), run.tenant_id.clone(), key);
            let synced = run.state.partition(&id).await?.map(|cp| cp.synced_at);
            never_asked |= synced.is_none() || synced < parent_synced;
        }
        let passes = |row: &ParentRow| self.tap.passes(group.spec, row);
        let mut ask: Vec<(&[u8], &ParentRow)> = Vec::new();
        let mut keep: HashSet<&[u8]> = HashSet::new();
        for (&key, &row) in current.iter().filter(|(_, r)| passes(r)) {
            let unchanged = stored.rows.get(key).is_some_and(|old| {
                passes(old)
                    && self.tap.fingerprint(group.spec, old)
                        == self.tap.fingerprint(group.spec, row)
            });
            if unchanged && !never_asked {
                keep.insert(key);
            } else {
                ask.push((key, row));
            }
        }
        let mut children = Vec::with_capacity(group.members.len());
        for &member in &group.members {
            children.push(
                ChildStage::open(member, parent, &run.dataset.spec.records.primary_key, &keep)
                    .await?,
            );
        }
        let lead = group.members[0];
        // A shared request goes at the pace of the most concurrent dataset that shares it.
        let concurrency =
            group.members.iter().map(|m| m.settings.page_concurrency).max().unwrap_or(1).max(1);
        let requests: Vec<(Map<String, Value>, Map<String, Value>)> =
            ask.iter().map(|(_, row)| self.tap.request(group.spec, lead, row)).collect();
        let requests_made = requests.len();
        drop(ask);
        let mut answers = stream::iter(requests)
            .map(move |(identity, body)| async move {
                let method = lead.dataset.spec.request.method;
                (
                    identity,
                    lead.auth.send(lead.client, method, &lead.first_entry().path, body).await,
                )
            })
            .buffer_unordered(concurrency);
        let mut answered = 0u64;
        let source_err = |dataset: &str, source| EngineError::Source {
            dataset: dataset.to_string(),
            partition: key,
            source: Box::new(source),
        };
        while let Some((identity, answer)) = answers.next().await {
            answered += 1;
            let bytes = match answer {
                Ok(bytes) => bytes,
                Err(e) => return Err(source_err(lead.dataset_name(), lead.auth.redact(e).await)),
            };
            for child in &mut children {
                match child.records_of(&bytes, &identity) {
                    Ok(records) => child.stage_records(&records, answered)?,
                    Err(e) => {
                        let name = child.run.dataset_name();
                        return Err(source_err(name, lead.auth.redact(e).await));
                    }
                }
            }
        }
        for child in children {
            child.commit(parent, answered).await?;
        }
        info!(
            dataset = run.dataset_name(), partition = %key, requests = requests_made,
            kept = keep.len(), fan_out = ?group.members.iter().map(|m| m.dataset_name()).collect::<Vec<_>>(),
            "Fan-out datasets committed."
        );
        Ok(())
    }
}

/// One fan-out dataset's partition being assembled.
struct ChildStage<'r, 'a> {
    run: &'r PipelineRun<'a>,
    id: PartitionId,
    stage: PartitionStage,
    normalizer: Normalizer,
    rejects: RejectedSet,
    records: u64,
}

impl<'r, 'a> ChildStage<'r, 'a> {
    /// A stage holding the stored rows of the parent rows in `keep` (matched on the
    /// parent's key columns, which the fan-out schema shares).
    async fn open(
        run: &'r PipelineRun<'a>,
        parent: &Target,
        parent_key: &[String],
        keep: &HashSet<&[u8]>,
    ) -> Result<Self, EngineError> {
        let key = parent.id.key;
        let id = PartitionId::new(run.dataset_name(), run.tenant_id.clone(), key);
        let sink_err = |source| EngineError::Sink {
            dataset: run.dataset_name().to_string(),
            partition: key,
            source,
        };
        let mut stage = new_stage(run, SpoolFormat::ArrowIpc).map_err(sink_err)?;
        let schema: SchemaRef = run.dataset.schema.arrow_schema();
        let keys = KeyColumns::new(&schema, parent_key).map_err(sink_err)?;
        read_existing(&run.store, &id, &schema, |batch| {
            let encoded = keys.encode(&batch)?;
            let mask: BooleanArray =
                encoded.iter().map(|k| Some(keep.contains(k.as_ref()))).collect();
            let kept = filter_record_batch(&batch, &mask).map_err(|source| SinkError::Arrow {
                context: "keeping the rows of unchanged parent rows".into(),
                source,
            })?;
            stage.append(&kept)
        })
        .await
        .map_err(sink_err)?;
        stage.mark_fetch_start();
        let normalizer = event_normalizer(run, parent.synced_at, key.bounds(run.zone));
        Ok(Self { run, id, stage, normalizer, rejects: RejectedSet::default(), records: 0 })
    }

    fn sink_err(&self, source: SinkError) -> EngineError {
        EngineError::Sink {
            dataset: self.run.dataset_name().to_string(),
            partition: self.id.key,
            source,
        }
    }

    /// This dataset's records in one answer, each carrying the request's `identity` (the
    /// parent row's values of `body_from_parent`).
    fn records_of(
        &self,
        answer: &Bytes,
        identity: &Map<String, Value>,
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        let spec = &self.run.dataset.spec;
        let url = self.run.client.url(&self.run.first_entry().path);
        let body = body_text(answer, &url)?;
        let records = &spec.records;
        let label = records.label_field.as_deref();
        object_records(
            body,
            &spec.envelope,
            &records.path,
            &records.parent_fields,
            identity,
            label,
            &url,
        )
    }

    /// Normalizes and stages the records of the `number`th answer.
    fn stage_records(&mut self, records: &[Box<RawValue>], number: u64) -> Result<(), EngineError> {
        for record in records {
            self.records += 1;
            if let Err(reason) = self.normalizer.push(record) {
                self.rejects.insert(RejectedRecord::new(reason, record, number));
            }
            if self.normalizer.len() >= BATCH_ROWS {
                let batch = self.normalizer.finish();
                self.stage.append(&batch).map_err(|e| self.sink_err(e))?;
            }
        }
        Ok(())
    }

    /// Commits the partition with the parent's mode, after `requests` answers.
    async fn commit(mut self, parent: &Target, requests: u64) -> Result<(), EngineError> {
        if !self.normalizer.is_empty() {
            let batch = self.normalizer.finish();
            self.stage.append(&batch).map_err(|e| self.sink_err(e))?;
        }
        let summary = PagingSummary {
            pages: requests,
            records: self.records,
            total: self.records,
            total_changed: false,
        };
        let commit = Commit {
            target: Target { id: self.id, ..parent.clone() },
            stage: self.stage,
            rejects: self.rejects.records().iter().collect(),
            rejected_texts: self.rejects.texts(),
            summary,
            oldest_open_ms: None,
        };
        commit_partition(&self.run.store, self.run.state, commit).await?;
        Ok(())
    }
}

/// Parent rows by primary key: their month and the columns a fan-out reads.
struct ParentRows {
    keys: KeyColumns,
    event_column: usize,
    update_column: Option<usize>,
    zone: FixedOffset,
    /// The columns read, by name, and their positions in the parent schema.
    columns: Vec<(String, usize)>,
    rows: HashMap<Box<[u8]>, ParentRow>,
}

/// What a fan-out needs of one parent row.
struct ParentRow {
    month: Month,
    update_ms: Option<i64>,
    /// The values of [`ParentRows::columns`], in order.
    values: Vec<Value>,
}

impl ParentRows {
    fn new(run: &PipelineRun<'_>, columns: Vec<String>) -> Result<Self, SinkError> {
        let schema = run.dataset.schema.arrow_schema();
        let records = &run.dataset.spec.records;
        let index = |name: &str| {
            schema.index_of(name).map_err(|_| SinkError::KeyColumn {
                column: name.to_string(),
                problem: format!(
                    "the fan-out of {} reads it, but it is not a column",
                    run.dataset_name()
                ),
            })
        };
        Ok(Self {
            keys: KeyColumns::new(&schema, &records.primary_key)?,
            event_column: index(records.event_time.as_deref().unwrap_or_default())?,
            update_column: records.update_time.as_deref().map(index).transpose()?,
            zone: run.zone,
            columns: columns
                .iter()
                .map(|c| Ok((c.clone(), index(c)?)))
                .collect::<Result<_, SinkError>>()?,
            rows: HashMap::new(),
        })
    }

    /// The names of the columns read.
    fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Notes every row of `batch`; a key seen before keeps its newest version, as the
    /// partition stage does (the later one on equal or missing update times).
    fn observe(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        let keys = self.keys.encode(batch)?;
        let times = int64_column(batch, self.event_column)?;
        let updates = self.update_column.map(|i| int64_column(batch, i)).transpose()?;
        for (row, key) in keys.iter().enumerate() {
            let Some(month) = (!times.is_null(row))
                .then(|| Month::containing_ms(times.value(row), self.zone))
                .flatten()
            else {
                continue;
            };
            let update_ms = updates.as_ref().and_then(|u| (!u.is_null(row)).then(|| u.value(row)));
            if self.rows.get(key.as_ref()).is_some_and(|old| old.update_ms > update_ms) {
                continue;
            }
            let values =
                self.columns.iter().map(|(_, i)| cell(batch.column(*i).as_ref(), row)).collect();
            self.rows.insert(key.as_ref().into(), ParentRow { month, update_ms, values });
        }
        Ok(())
    }

    fn value<'v>(&self, row: &'v ParentRow, column: &str) -> &'v Value {
        let position = self.columns.iter().position(|(name, _)| name == column);
        position.map_or(&Value::Null, |p| &row.values[p])
    }

    /// Whether the row passes the fan-out's `when`.
    fn passes(&self, spec: &FanOutSpec, row: &ParentRow) -> bool {
        spec.when.as_ref().is_none_or(|when| {
            self.value(row, &when.field).as_i64().is_some_and(|v| when.one_of.contains(&v))
        })
    }

    /// The values of the fan-out's `changed` columns.
    fn fingerprint<'v>(&self, spec: &FanOutSpec, row: &'v ParentRow) -> Vec<&'v Value> {
        spec.changed.iter().map(|c| self.value(row, c)).collect()
    }

    /// The request for a parent row: its identity (the `body_from_parent` fields and the
    /// parent's values) and the body (the dataset's fixed fields, then the identity).
    fn request(
        &self,
        spec: &FanOutSpec,
        run: &PipelineRun<'_>,
        row: &ParentRow,
    ) -> (Map<String, Value>, Map<String, Value>) {
        let identity: Map<String, Value> = spec
            .body_from_parent
            .iter()
            .map(|(field, column)| (field.clone(), self.value(row, column).clone()))
            .collect();
        let mut body = fixed_body(run);
        body.extend(identity.clone());
        (identity, wrap_body(body, run.body_wrapper.as_deref()))
    }
}

/// A numeric or timestamp column as Int64.
fn int64_column(batch: &RecordBatch, index: usize) -> Result<arrow::array::Int64Array, SinkError> {
    let column =
        cast(batch.column(index), &DataType::Int64).map_err(|source| SinkError::Arrow {
            context: format!("reading column {} as Int64", batch.schema().field(index).name()),
            source,
        })?;
    Ok(column.as_primitive::<Int64Type>().clone())
}

/// One value of a column as JSON: numbers, text and booleans as themselves, timestamps as
/// epoch milliseconds, anything else as its display text.
fn cell(column: &dyn Array, row: usize) -> Value {
    if column.is_null(row) {
        return Value::Null;
    }
    match column.data_type() {
        DataType::Int64 => column.as_primitive::<Int64Type>().value(row).into(),
        DataType::Int32 => column.as_primitive::<Int32Type>().value(row).into(),
        DataType::Float64 => column.as_primitive::<Float64Type>().value(row).into(),
        DataType::Boolean => column.as_boolean().value(row).into(),
        DataType::Utf8 => column.as_string::<i32>().value(row).into(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            column.as_primitive::<TimestampMillisecondType>().value(row).into()
        }
        _ => arrow::util::display::array_value_to_string(column, row)
            .map_or(Value::Null, Value::String),
    }
}
