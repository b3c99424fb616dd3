//! Property test of the normalizer over generated records: random mixtures of valid
//! values, wrong types, nulls, missing fields, unknown fields, huge and non-ASCII strings.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::strategy::Union;
use serde_json::value::RawValue;
use serde_json::Value;

use super::members::tests::{walk as walk_members, Collect};
use super::members::walk_object;
use super::Normalizer;
use crate::catalog::schema::{DatasetSchema, FieldKind, EXTRA_COLUMN, SYNCED_AT_COLUMN};

const SYNCED: i64 = 1_762_000_000_000;

/// The test dataset: every kind, nullable and not (name, type, nullable).
const FIELDS: [(&str, &str, bool); 12] = [
    ("id", "int64", false),
    ("code", "int32", false),
    ("name", "utf8", false),
    ("at", "timestamp_ms", false),
    ("phone", "utf8", true),
    ("score", "float64", true),
    ("flag", "boolean", true),
    ("at_s", "timestamp_s", true),
    ("count", "int32", true),
    ("day", "date", true),
    ("utc", "datetime_utc", true),
    ("local", "datetime_local", true),
];

/// Days of the dates generated: years 1700 to 2300.
const DAYS: std::ops::RangeInclusive<i32> = -98_000..=120_000;

/// Largest epoch-seconds value whose milliseconds fit in i64.
const MAX_SECONDS: i64 = i64::MAX / 1000;

fn schema() -> Arc<DatasetSchema> {
    let fields: Vec<Value> = FIELDS
        .iter()
        .map(|(name, kind, nullable)| serde_json::json!({"name": name, "type": kind, "nullable": nullable}))
        .collect();
    let json = serde_json::json!({"dataset": "p", "fields": fields}).to_string();
    Arc::new(DatasetSchema::parse("p.json", &json).unwrap())
}

/// The declared fields as (kind, nullable).
fn kinds() -> Vec<(FieldKind, bool)> {
    schema().fields().iter().map(|f| (f.kind, f.nullable)).collect()
}

/// What a column should hold for a value.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    I32(i32),
    I64(i64),
    F64(f64),
    Text(String),
    Bool(bool),
    Ms(i64),
    Day(i32),
}

/// A generated field: its JSON (`None`: the field is left out) and the cell it should
/// become (`None`: the value must be rejected).
#[derive(Debug, Clone)]
struct Gen {
    json: Option<String>,
    cell: Option<Cell>,
}

fn gen(json: String, cell: Cell) -> Gen {
    Gen { json: Some(json), cell: Some(cell) }
}

fn bad(json: &'static str) -> Gen {
    Gen { json: Some(json.to_string()), cell: None }
}

/// An integer written as a number, a string or a whole-valued decimal.
fn integers(
    range: impl Strategy<Value = i64> + Clone + 'static,
    cell: fn(i64) -> Cell,
) -> BoxedStrategy<Gen> {
    prop_oneof![
        range.clone().prop_map(move |n| gen(n.to_string(), cell(n))),
        range.clone().prop_map(move |n| gen(format!("\"{n}\""), cell(n))),
        range.prop_map(move |n| gen(format!("{n}.000"), cell(n))),
    ]
    .boxed()
}

/// Any text: arbitrary Unicode, JSON's special characters, or a huge repeated character.
fn texts() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        "[\\\\/\"\u{0}-\u{1f}a-z0-9中文é]{0,12}",
        (any::<char>(), 1000usize..40_000).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
    .boxed()
}

fn valid(kind: FieldKind) -> BoxedStrategy<Gen> {
    match kind {
        FieldKind::Int64 => integers(any::<i64>(), Cell::I64),
        FieldKind::TimestampMs => integers(any::<i64>(), Cell::Ms),
        FieldKind::Int32 => integers(any::<i32>().prop_map(i64::from), |n| Cell::I32(n as i32)),
        FieldKind::TimestampS => integers(-MAX_SECONDS..=MAX_SECONDS, |n| Cell::Ms(n * 1000)),
        FieldKind::Float64 => {
            let finite = any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite());
            prop_oneof![
                finite.clone().prop_map(|f| gen(serde_json::to_string(&f).unwrap(), Cell::F64(f))),
                finite.prop_map(|f| gen(format!("\"{f}\""), Cell::F64(f))),
            ]
            .boxed()
        }
        FieldKind::Utf8 => prop_oneof![
            4 => texts().prop_map(|s| gen(serde_json::to_string(&s).unwrap(), Cell::Text(s))),
            1 => any::<i64>().prop_map(|n| gen(n.to_string(), Cell::Text(n.to_string()))),
            1 => any::<bool>().prop_map(|b| gen(b.to_string(), Cell::Text(b.to_string()))),
        ]
        .boxed(),
        FieldKind::Date => DAYS
            .prop_map(|d| {
                let date = chrono::NaiveDate::default() + chrono::Duration::days(d.into());
                gen(format!("\"{}\"", date.format("%Y-%m-%d")), Cell::Day(d))
            })
            .boxed(),
        // The normalizer under test reads local datetimes in UTC.
        FieldKind::DatetimeUtc | FieldKind::DatetimeLocal => prop_oneof![
            DAYS.prop_flat_map(|d| (Just(d), 0..86_400i64)).prop_map(|(d, s)| {
                let at = chrono::NaiveDate::default().and_hms_opt(0, 0, 0).unwrap()
                    + chrono::Duration::days(d.into())
                    + chrono::Duration::seconds(s);
                let ms = at.and_utc().timestamp_millis();
                gen(format!("\"{}\"", at.format("%Y-%m-%d %H:%M:%S")), Cell::Ms(ms))
            }),
            // Epoch milliseconds; below 10^11, epoch seconds; an empty text is unset.
            integers(100_000_000_000i64..=i64::MAX, Cell::Ms),
            integers(0..=99_999_999_999i64, |s| Cell::Ms(s * 1000)),
            Just(gen("\"\"".into(), Cell::Null)),
        ]
        .boxed(),
        FieldKind::Boolean => prop_oneof![
            any::<bool>().prop_map(|b| gen(b.to_string(), Cell::Bool(b))),
            any::<bool>().prop_map(|b| gen(format!("\"{b}\""), Cell::Bool(b))),
            any::<bool>().prop_map(|b| gen(u8::from(b).to_string(), Cell::Bool(b))),
            any::<bool>().prop_map(|b| gen(format!("\"{}\"", u8::from(b)), Cell::Bool(b))),
        ]
        .boxed(),
    }
}

fn invalid(kind: FieldKind) -> BoxedStrategy<Gen> {
    let mut options: Vec<BoxedStrategy<Gen>> =
        vec![Just(bad("{}")).boxed(), Just(bad("[1, \"a\"]")).boxed()];
    let words: &[&'static str] = match kind {
        FieldKind::Utf8 => &["{\"a\":{}}"],
        FieldKind::Float64 => &["true", "\"x1\"", "1e400", "\"\""],
        FieldKind::Boolean => &["2", "\"yes\"", "1.0", "\"\""],
        FieldKind::Date => &["\"2025-02-30\"", "20250101", "\"2025-01-01 00:00:00\"", "\"\""],
        FieldKind::DatetimeUtc | FieldKind::DatetimeLocal => {
            &["\"2025-02-30 00:00:00\"", "\"-5\"", "1.5", "true", "\"12a\""]
        }
        _ => &["1.5", "false", "\"12a\"", "\"\"", "99999999999999999999", "-1e19"],
    };
    options.extend(words.iter().map(|w| Just(bad(w)).boxed()));
    let beyond = match kind {
        FieldKind::Int32 => Some(i64::from(i32::MAX) + 1),
        FieldKind::TimestampS => Some(MAX_SECONDS + 1),
        _ => None,
    };
    if let Some(low) = beyond {
        options.push(
            (low..=i64::MAX).prop_map(|n| Gen { json: Some(n.to_string()), cell: None }).boxed(),
        );
    }
    Union::new(options).boxed()
}

/// A field: mostly valid, sometimes null, left out or wrong.
fn field(kind: FieldKind) -> BoxedStrategy<Gen> {
    prop_oneof![
        16 => valid(kind),
        2 => Just(gen("null".into(), Cell::Null)),
        1 => Just(Gen { json: None, cell: Some(Cell::Null) }),
        2 => invalid(kind),
    ]
    .boxed()
}

/// The JSON object of `entries` (keys and value texts), compact or pretty-printed.
fn object_text(entries: &BTreeMap<String, String>, pretty: bool) -> String {
    let object: serde_json::Map<String, Value> =
        entries.iter().map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap())).collect();
    match pretty {
        true => serde_json::to_string_pretty(&object).unwrap(),
        false => serde_json::to_string(&object).unwrap(),
    }
}

/// The members of an object's text, each key and value as text.
fn walk(text: &str) -> Vec<(String, String)> {
    walk_members(text).unwrap().0
}

/// Any JSON value, written compactly or pretty-printed.
fn json_value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        texts().prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(".{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    (value, any::<bool>())
        .prop_map(|(v, pretty)| {
            if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                serde_json::to_string(&v).unwrap()
            }
        })
        .boxed()
}

/// One key and value of a record, and whether the schema declares the key.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    json: String,
    declared: bool,
}

/// A generated record and the row it should become (`None`: a reject).
#[derive(Debug, Clone)]
struct Case {
    json: String,
    row: Option<(Vec<Cell>, Option<String>)>,
}

fn object_case() -> impl Strategy<Value = Case> {
    let fields: Vec<BoxedStrategy<Gen>> =
        kinds().into_iter().map(|(kind, _)| field(kind)).collect();
    let unknown = vec((".{0,8}", json_value()), 0..4);
    (fields, unknown).prop_flat_map(|(gens, unknown)| {
        let mut entries: Vec<Entry> = FIELDS
            .iter()
            .zip(&gens)
            .filter_map(|((name, _, _), g)| {
                let json = g.json.clone()?;
                Some(Entry { key: name.to_string(), json, declared: true })
            })
            .collect();
        for (i, (suffix, json)) in unknown.into_iter().enumerate() {
            entries.push(Entry { key: format!("u{i}_{suffix}"), json, declared: false });
        }
        let cells: Option<Vec<Cell>> = kinds()
            .into_iter()
            .zip(gens)
            .map(|((_, nullable), g)| g.cell.filter(|c| nullable || *c != Cell::Null))
            .collect();
        Just(entries).prop_shuffle().prop_map(move |entries| {
            let quote = |key: &str| serde_json::to_string(key).unwrap();
            let body: Vec<String> =
                entries.iter().map(|e| format!("{}:{}", quote(&e.key), e.json)).collect();
            let extras: Vec<String> = entries
                .iter()
                .filter(|e| !e.declared)
                .map(|e| format!("{}:{}", quote(&e.key), e.json))
                .collect();
            let extra = (!extras.is_empty()).then(|| format!("{{{}}}", extras.join(",")));
            Case {
                json: format!("{{ {} }}", body.join(" ,\n")),
                row: cells.clone().map(|cells| (cells, extra)),
            }
        })
    })
}

fn case() -> impl Strategy<Value = Case> {
    let not_object = prop_oneof![
        Just("[]".to_string()),
        Just("[{\"id\": 1}]".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        texts().prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("null".to_string()),
    ];
    prop_oneof![
        20 => object_case(),
        1 => not_object.prop_map(|json| Case { json, row: None }),
    ]
}

/// The cell at `row` of column `index`, read back as the generator describes it.
fn read_back(batch: &RecordBatch, index: usize, kind: FieldKind, row: usize) -> Cell {
    let array = batch.column(index);
    if array.is_null(row) {
        return Cell::Null;
    }
    match kind {
        FieldKind::Int32 => Cell::I32(array.as_primitive::<Int32Type>().value(row)),
        FieldKind::Int64 => Cell::I64(array.as_primitive::<Int64Type>().value(row)),
        FieldKind::Float64 => Cell::F64(array.as_primitive::<Float64Type>().value(row)),
        FieldKind::Utf8 => Cell::Text(array.as_string::<i32>().value(row).to_string()),
        FieldKind::Boolean => Cell::Bool(array.as_boolean().value(row)),
        FieldKind::TimestampMs
        | FieldKind::TimestampS
        | FieldKind::DatetimeUtc
        | FieldKind::DatetimeLocal => {
            Cell::Ms(array.as_primitive::<TimestampMillisecondType>().value(row))
        }
        FieldKind::Date => Cell::Day(array.as_primitive::<Date32Type>().value(row)),
    }
}

/// Rows accepted but not yet in a batch.
fn normalizer_rows<T>(expected: &[T], batches: &[RecordBatch]) -> usize {
    expected.len() - batches.iter().map(RecordBatch::num_rows).sum::<usize>()
}

/// Every column of `batch` has `rows` rows.
fn assert_whole(batch: &RecordBatch, rows: usize) {
    assert_eq!(batch.num_rows(), rows);
    for column in batch.columns() {
        assert_eq!(column.len(), rows);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `push` never panics; rows + rejects == records; a record is rejected exactly when
    /// one of its values breaks the rules; every accepted row reads back equal to its
    /// input (`_extra` verbatim); a reject leaves whole rows only, whether a batch is taken
    /// right after it or more records follow.
    #[test]
    fn records_become_rows_or_rejects(cases in vec((case(), any::<bool>()), 1..12)) {
        let schema = schema();
        let mut normalizer = Normalizer::new(schema.clone(), SYNCED);
        let mut batches = Vec::new();
        let mut expected = Vec::new();
        let mut rejects = 0;
        for (case, flush) in &cases {
            let record = RawValue::from_string(case.json.clone()).unwrap();
            let pending = normalizer.len();
            match (normalizer.push(&record), &case.row) {
                (Ok(()), Some(row)) => {
                    expected.push(row.clone());
                    prop_assert_eq!(normalizer.len(), pending + 1);
                }
                (Err(reason), None) => {
                    rejects += 1;
                    prop_assert!(!reason.0.is_empty());
                    prop_assert_eq!(normalizer.len(), pending);
                    if *flush {
                        let batch = normalizer.finish();
                        assert_whole(&batch, pending);
                        batches.push(batch);
                    }
                }
                (outcome, row) => {
                    prop_assert!(false, "record {} gave {:?}, expected row {:?}", case.json, outcome, row);
                }
            }
        }
        let last = normalizer.finish();
        assert_whole(&last, normalizer_rows(&expected, &batches));
        batches.push(last);
        prop_assert_eq!(expected.len() + rejects, cases.len());
        let rows: Vec<(&RecordBatch, usize)> =
            batches.iter().flat_map(|b| (0..b.num_rows()).map(move |r| (b, r))).collect();
        prop_assert_eq!(rows.len(), expected.len());
        let extra = schema.arrow_schema().index_of(EXTRA_COLUMN).unwrap();
        let synced = schema.arrow_schema().index_of(SYNCED_AT_COLUMN).unwrap();
        for ((batch, row), (cells, extra_json)) in rows.into_iter().zip(&expected) {
            for (index, ((kind, _), want)) in kinds().into_iter().zip(cells).enumerate() {
                prop_assert_eq!(&read_back(batch, index, kind, row), want);
            }
            let want_extra = extra_json.clone().map(Cell::Text).unwrap_or(Cell::Null);
            prop_assert_eq!(read_back(batch, extra, FieldKind::Utf8, row), want_extra);
            prop_assert_eq!(read_back(batch, synced, FieldKind::TimestampMs, row), Cell::Ms(SYNCED));
        }
    }

    /// A records array pushed in one walk gives the rows and rejects of its records pushed
    /// one by one (each reject with its record's exact text) and ends where the array
    /// ends; the array cut anywhere before its `]` is not JSON: `None`, never a panic.
    #[test]
    fn an_array_is_pushed_as_its_records(
        cases in vec(case(), 0..8),
        pretty in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let texts: Vec<&str> = cases.iter().map(|c| c.json.as_str()).collect();
        let array = match pretty {
            true => format!("[\n  {}\n] ", texts.join(" ,\n  ")),
            false => format!("[{}] ", texts.join(",")),
        };
        let mut one_by_one = Normalizer::new(schema(), SYNCED);
        let mut want_rejects = Vec::new();
        for text in &texts {
            if let Err(reason) = one_by_one.push(&RawValue::from_string(text.to_string()).unwrap()) {
                want_rejects.push((reason.0, text.to_string()));
            }
        }
        let mut walked = Normalizer::new(schema(), SYNCED);
        let mut rejects = Vec::new();
        let end = walked.push_array(&array, 0, |reason, text| rejects.push((reason.0, text.to_string())));
        prop_assert_eq!(end, Some((array.len() - 1, cases.len())));
        prop_assert_eq!(rejects, want_rejects);
        prop_assert_eq!(walked.finish(), one_by_one.finish());
        if let Some(prefix) = array.get(..cut.index(array.len() - 1)) {
            let mut cut_short = Normalizer::new(schema(), SYNCED);
            prop_assert_eq!(cut_short.push_array(prefix, 0, |_, _| {}), None);
        }
    }

    /// The walk of any JSON object, compact or pretty-printed, finds serde_json's members:
    /// each key decoded, each value the exact text of that value.
    #[test]
    fn members_are_the_objects_entries(
        entries in btree_map(texts(), json_value(), 0..6),
        pretty in any::<bool>(),
    ) {
        let text = object_text(&entries, pretty);
        let walked = walk(&text);
        let oracle: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(&text).unwrap();
        prop_assert_eq!(walked.len(), oracle.len());
        for (key, raw) in &walked {
            prop_assert_eq!(Some(raw.as_str()), oracle.get(key).map(|r| r.get()));
        }
    }

    /// Walking with guesses finds the same members, and says a key is the guess exactly
    /// when it is: each member is guessed as its own key, the next one's or a prefix of its
    /// own (keys that JSON writes with escapes are never guessed).
    #[test]
    fn guessed_keys_are_the_keys(
        entries in btree_map(texts(), json_value(), 0..6),
        pretty in any::<bool>(),
        picks in vec(0..3usize, 6),
    ) {
        let text = object_text(&entries, pretty);
        let plain = |key: &str| !key.chars().any(|c| c == '"' || c == '\\' || c < ' ');
        let keys: Vec<&String> = entries.keys().collect();
        let unguessed = walk(&text);
        let guesses: Vec<Option<String>> = unguessed
            .iter()
            .enumerate()
            .map(|(i, (key, _))| {
                let guess: Option<&str> = match picks[i] {
                    0 => Some(key.as_str()),
                    1 => keys.get(i + 1).map(|k| k.as_str()),
                    _ => key.char_indices().last().map(|(end, _)| &key[..end]),
                };
                guess.filter(|g| plain(g)).map(str::to_string)
            })
            .collect();
        let mut collect = Collect { guesses: guesses.clone(), ..Collect::default() };
        prop_assert_eq!(walk_object(&text, 0, &mut collect), Ok(text.len()));
        prop_assert_eq!(collect.members.len(), unguessed.len());
        for (((guessed, walked_key, walked_raw), (key, raw)), guess) in
            collect.members.iter().zip(&unguessed).zip(&guesses)
        {
            prop_assert_eq!((walked_key, walked_raw), (key, raw));
            prop_assert_eq!(*guessed, guess.as_deref() == Some(key.as_str()));
        }
    }
}
