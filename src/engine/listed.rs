//! Request entries listed by another dataset: with `[pipelines.NAME] for_each_from =
//! "campaigns"`, each row of the newest complete snapshot of `campaigns` becomes a
//! `for_each` entry of NAME, its `for_each` keys taken from the columns of the same names
//! (the campaigns whose results are read come from the campaign list).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use arrow::record_batch::RecordBatch;

use super::error::EngineError;
use super::runner::Engine;
use crate::sink::layout::PartitionKey;
use crate::sink::writer::read_existing;
use crate::state::SliceState;

/// One `for_each` entry, as the configuration would write it.
pub type Entry = BTreeMap<String, toml::Value>;

/// The entries listed by the newest complete snapshot of dataset `list`: one per row, with
/// the columns `keys`. An error when the dataset has no complete snapshot yet.
pub async fn listed_entries(
    engine: &Engine,
    pipeline: &str,
    list: &str,
    keys: &[String],
) -> Result<Vec<Entry>, EngineError> {
    let settings = engine.settings();
    let newest = engine
        .state()
        .partitions(list, &settings.tenant_id)
        .await?
        .into_iter()
        .filter(|cp| cp.state == SliceState::Complete && matches!(cp.key, PartitionKey::Day(_)))
        .max_by_key(|cp| cp.key);
    let Some(newest) = newest else {
        return Err(EngineError::ForEachUnlisted {
            pipeline: pipeline.to_string(),
            list: list.to_string(),
        });
    };
    let dataset = settings.catalog.get(list).ok_or_else(|| EngineError::UnknownPipeline {
        name: list.to_string(),
        known: settings.catalog.names().join(", "),
    })?;
    let full = dataset.schema.arrow_schema();
    let fields: Vec<Field> = keys
        .iter()
        .filter_map(|k| full.field_with_name(k).ok().map(|f| f.clone().with_nullable(true)))
        .collect();
    let projected = Arc::new(Schema::new(fields));
    let mut entries = Vec::new();
    let id = newest.partition_id();
    read_existing(&engine.store(), &id, &projected, |batch| {
        entries.extend(batch_entries(&batch));
        Ok(())
    })
    .await
    .map_err(|source| EngineError::Sink {
        dataset: list.to_string(),
        partition: newest.key,
        source,
    })?;
    Ok(entries)
}

/// The rows of `batch` as entries: integer columns as TOML integers, text as strings; a
/// row with a null in any column is no entry.
fn batch_entries(batch: &RecordBatch) -> Vec<Entry> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .filter_map(|row| {
            let mut entry = Entry::new();
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                if column.is_null(row) {
                    return None;
                }
                let value = match field.data_type() {
                    DataType::Int32 => column.as_primitive::<Int32Type>().value(row).into(),
                    DataType::Int64 => column.as_primitive::<Int64Type>().value(row).into(),
                    DataType::Utf8 => column.as_string::<i32>().value(row).to_string().into(),
                    _ => return None,
                };
                entry.insert(field.name().clone(), value);
            }
            Some(entry)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, StringArray};

    use super::*;

    /// Rows become entries with integers and strings; a row with a null is left out.
    #[test]
    fn rows_become_entries() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("vdnId", DataType::Int32, true),
            Field::new("campaignId", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(170), Some(171), None])),
                Arc::new(StringArray::from(vec![Some("1700001"), Some("0171"), Some("x")])),
            ],
        )
        .unwrap();
        let entries = batch_entries(&batch);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["vdnId"], toml::Value::Integer(170));
        assert_eq!(entries[1]["campaignId"], toml::Value::String("0171".into()));
    }
}
