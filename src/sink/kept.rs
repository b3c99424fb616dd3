//! Columns that only some versions of a row carry (`records.keep_when_missing`): the
//! outbound results pushed by iSales have `customField`, those pulled from `callresult`
//! have `resultCode`. When a newer version of a key leaves such a column null, the newest
//! earlier value stays, instead of the whole row being replaced.
//!
//! The stage notes which row replaced which; while the winners are read back in staging
//! order, the values of replaced rows are kept for the row that finally won (only these
//! text columns, only non-null values), and filled into it where it has none. Memory holds a
//! row number per replaced row and the kept texts, not the rows.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;

use super::SinkError;

/// The kept columns of a stage and what replaced what.
#[derive(Debug, Default)]
pub(crate) struct KeptColumns {
    /// Indices of the kept (Utf8) columns.
    columns: Vec<usize>,
    /// Row number -> the row number that replaced it.
    replaced_by: HashMap<u64, u64>,
    /// Final winner row -> the newest non-null value of each kept column among the rows it
    /// replaced.
    values: HashMap<u64, Vec<Option<String>>>,
}

impl KeptColumns {
    /// The kept columns `names` of `schema`; each must be a text column.
    pub(crate) fn new(schema: &Schema, names: &[String]) -> Result<Self, SinkError> {
        let mut columns = Vec::with_capacity(names.len());
        for name in names {
            let bad = |problem: String| SinkError::KeptColumn { column: name.clone(), problem };
            let index = schema.index_of(name).map_err(|_| bad("no such column".into()))?;
            if schema.field(index).data_type() != &DataType::Utf8 {
                return Err(bad("it must be text (utf8)".into()));
            }
            columns.push(index);
        }
        Ok(Self { columns, ..Self::default() })
    }

    /// Whether any column is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Row `old` was replaced by row `new` (same key).
    pub(crate) fn replaced(&mut self, old: u64, new: u64) {
        if !self.is_empty() {
            self.replaced_by.insert(old, new);
        }
    }

    /// Notes the kept values of the replaced rows of `batch`, whose first row is row number
    /// `first`, for the rows that finally won (`winners` has a bit per row number).
    pub(crate) fn observe(&mut self, batch: &RecordBatch, first: u64, winners: &BooleanBuffer) {
        if self.replaced_by.is_empty() {
            return;
        }
        for i in 0..batch.num_rows() {
            let row = first + i as u64;
            if winners.value(row as usize) {
                continue;
            }
            let Some(winner) = self.final_winner(row, winners) else { continue };
            for (k, &column) in self.columns.iter().enumerate() {
                let texts = batch.column(column).as_string::<i32>();
                if texts.is_valid(i) {
                    let slot =
                        self.values.entry(winner).or_insert_with(|| vec![None; self.columns.len()]);
                    slot[k] = Some(texts.value(i).to_string());
                }
            }
        }
    }

    /// The row that finally replaced `row`, following the replacements.
    fn final_winner(&self, mut row: u64, winners: &BooleanBuffer) -> Option<u64> {
        while !winners.value(row as usize) {
            row = *self.replaced_by.get(&row)?;
        }
        Some(row)
    }

    /// Fills the kept columns of `batch` (winning rows whose row numbers are `rows`) where
    /// they are null with the values noted for them.
    pub(crate) fn fill(
        &mut self,
        batch: RecordBatch,
        rows: &[u64],
    ) -> Result<RecordBatch, SinkError> {
        if self.values.is_empty() || !rows.iter().any(|r| self.values.contains_key(r)) {
            return Ok(batch);
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (k, &column) in self.columns.iter().enumerate() {
            let texts = batch.column(column).as_string::<i32>();
            let filled: StringArray = (0..batch.num_rows())
                .map(|i| match texts.is_valid(i) {
                    true => Some(texts.value(i).to_string()),
                    false => self.values.get(&rows[i]).and_then(|v| v[k].clone()),
                })
                .collect();
            columns[column] = Arc::new(filled);
        }
        for row in rows {
            self.values.remove(row);
        }
        RecordBatch::try_new(batch.schema(), columns)
            .map_err(|source| SinkError::Arrow { context: "filling kept columns".into(), source })
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::Field;

    use super::*;
    use crate::sink::stage::PartitionStage;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("pushed", DataType::Utf8, true),
            Field::new("pulled", DataType::Utf8, true),
        ]))
    }

    fn batch(rows: &[(i64, Option<&str>, Option<&str>)]) -> RecordBatch {
        let ids: Int64Array = rows.iter().map(|r| Some(r.0)).collect();
        let pushed: StringArray = rows.iter().map(|r| r.1).collect();
        let pulled: StringArray = rows.iter().map(|r| r.2).collect();
        RecordBatch::try_new(schema(), vec![Arc::new(ids), Arc::new(pushed), Arc::new(pulled)])
            .unwrap()
    }

    /// Across batches and chains of replacements, the winning row keeps the newest non-null
    /// value of each kept column; a key never replaced is left as it is; a kept column that
    /// is not text is refused.
    #[test]
    fn newer_versions_keep_what_they_lack() {
        let dir = tempfile::tempdir().unwrap();
        let kept = ["pushed".to_string(), "pulled".to_string()];
        let mut stage = PartitionStage::create(dir.path(), schema(), &["id".into()], None)
            .unwrap()
            .keeping(&kept)
            .unwrap();
        stage
            .append(&batch(&[(1, Some("p1"), None), (2, None, Some("r2")), (3, Some("old"), None)]))
            .unwrap();
        stage.append(&batch(&[(1, None, Some("r1")), (3, Some("new"), None)])).unwrap();
        stage.append(&batch(&[(1, None, None), (4, None, None)])).unwrap();
        let mut rows: Vec<(i64, Option<String>, Option<String>)> = Vec::new();
        for batch in stage.into_winners().unwrap() {
            let batch = batch.unwrap();
            let ids = batch.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            let text = |c: usize, i: usize| {
                let col = batch.column(c).as_string::<i32>();
                col.is_valid(i).then(|| col.value(i).to_string())
            };
            for i in 0..batch.num_rows() {
                rows.push((ids.value(i), text(1, i), text(2, i)));
            }
        }
        rows.sort();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            rows,
            [
                (1, some("p1"), some("r1")),
                (2, None, some("r2")),
                (3, some("new"), None),
                (4, None, None)
            ]
        );
        let numbers = KeptColumns::new(&schema(), &["id".into()]);
        assert!(matches!(numbers, Err(SinkError::KeptColumn { .. })));
    }
}
