//! The index of a stage's primary keys: one value per distinct key. A key of a single
//! Int64 column (the common case: `rbtRecognitionId`) is indexed by the integer itself;
//! any other key by its row-format bytes (see [`KeyColumns`]), one allocation per key.
//! The maps hash with aHash: every row of a sync passes through them, and keys come from
//! the API, not from an adversary the standard library's SipHash guards against.

use std::borrow::Borrow;
use std::hash::Hash;

use ahash::AHashMap;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type, Schema};
use arrow::record_batch::RecordBatch;

use super::key::KeyColumns;
use super::SinkError;

/// A value per distinct primary key.
///
/// The values are kept in a vector, in the order their keys were first seen, and the map
/// holds only each key's position in it: probing the map then touches a few bytes per key
/// rather than the whole value, which matters once a month's keys outgrow the CPU's caches.
#[derive(Debug)]
pub(crate) struct KeyIndex<V> {
    positions: Positions,
    values: Vec<V>,
}

/// The position of each distinct key's value.
#[derive(Debug)]
enum Positions {
    /// A single Int64 key column.
    Int64(AHashMap<i64, usize>),
    /// Any other key, in arrow's row format.
    Encoded(AHashMap<Box<[u8]>, usize>),
}

impl<V> KeyIndex<V> {
    /// An empty index for keys of `keys`, whose columns have the types of `schema`.
    pub(crate) fn new(keys: &KeyColumns, schema: &Schema) -> Self {
        let positions = match keys.indices() {
            [single] if schema.field(*single).data_type() == &DataType::Int64 => {
                Positions::Int64(AHashMap::default())
            }
            _ => Positions::Encoded(AHashMap::default()),
        };
        Self { positions, values: Vec::new() }
    }

    /// Distinct keys indexed.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// The values, in the order their keys were first seen.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.values.iter()
    }

    /// Visits the key of every row of `batch` in order: `visit(row, Some(value))` when the
    /// key is indexed (the value may be changed in place), else `visit(row, None)`, whose
    /// answer is indexed under the key. A null key value is an error, and then nothing is
    /// visited.
    pub(crate) fn update(
        &mut self,
        keys: &KeyColumns,
        batch: &RecordBatch,
        visit: impl FnMut(usize, Option<&mut V>) -> V,
    ) -> Result<(), SinkError> {
        let values = &mut self.values;
        match &mut self.positions {
            Positions::Int64(map) => {
                let column = batch.column(keys.indices()[0]);
                keys.check_nulls(std::slice::from_ref(column))?;
                let keys = column.as_primitive::<Int64Type>().values().iter();
                visit_rows(map, values, keys, |&key| key, visit);
            }
            Positions::Encoded(map) => {
                let rows = keys.encode(batch)?;
                let keys = rows.iter().map(|row| row.data());
                visit_rows(map, values, keys, |row| row.into(), visit);
            }
        }
        Ok(())
    }
}

/// Visits each key of `keys` in `map` (positions in `values`); a key is made owned (`own`)
/// only when it is new.
fn visit_rows<'k, K, Q, V>(
    map: &mut AHashMap<K, usize>,
    values: &mut Vec<V>,
    keys: impl Iterator<Item = &'k Q>,
    own: impl Fn(&Q) -> K,
    mut visit: impl FnMut(usize, Option<&mut V>) -> V,
) where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ?Sized + 'k,
{
    for (row, key) in keys.enumerate() {
        match map.get(key) {
            Some(&position) => {
                visit(row, values.get_mut(position));
            }
            None => {
                let value = visit(row, None);
                map.insert(own(key), values.len());
                values.push(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Field;

    use super::*;

    /// Counts how often each key was seen, on `batch`'s single key column `id`.
    fn count_keys(batch: &RecordBatch) -> Result<(bool, Vec<u32>), SinkError> {
        let keys = KeyColumns::new(&batch.schema(), &["id".into()])?;
        let mut index = KeyIndex::new(&keys, &batch.schema());
        index.update(&keys, batch, |_, seen| {
            seen.map_or(1, |n| {
                *n += 1;
                *n
            })
        })?;
        let mut counts: Vec<u32> = index.values().copied().collect();
        counts.sort();
        Ok((matches!(index.positions, Positions::Int64(_)), counts))
    }

    fn batch(column: Arc<dyn arrow::array::Array>) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("id", column.data_type().clone(), true)]);
        RecordBatch::try_new(Arc::new(schema), vec![column]).unwrap()
    }

    /// An Int64 key is indexed by its value, a text key by its encoding; both find the keys
    /// seen before, and a null key is refused with the column's name.
    #[test]
    fn int64_and_encoded_keys_count_alike() {
        let ints = batch(Arc::new(Int64Array::from(vec![7, 8, 7, 7])));
        assert_eq!(count_keys(&ints).unwrap(), (true, vec![1, 3]));
        let texts = batch(Arc::new(StringArray::from(vec!["7", "8", "7", "7"])));
        assert_eq!(count_keys(&texts).unwrap(), (false, vec![1, 3]));
        let null = batch(Arc::new(Int64Array::from(vec![Some(7), None])));
        assert!(matches!(count_keys(&null), Err(SinkError::NullKey { column }) if column == "id"));
    }
}
