//! The [`Normalizer`]: records in, one Arrow record batch per call to `finish` out.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use chrono::FixedOffset;
use serde_json::value::RawValue;

use super::columns::Columns;
use super::reason::{instant, Reject, RejectReason};
use super::record::{stage_record, FixedValue, KeyOrder};
use crate::catalog::schema::DatasetSchema;
use crate::json_scan::{self as scan, Malformed};

/// Rows the builders make room for at first: one page of the largest page size (1000).
const INITIAL_ROWS: usize = 1024;

/// The range of event times a record must fall in.
#[derive(Debug, Clone)]
struct EventWindow {
    field: String,
    /// The timestamp column of `field`, or why the schema cannot check it.
    column: Result<usize, &'static str>,
    begin_ms: i64,
    end_ms: i64,
}

/// Turns records into rows of one dataset.
#[derive(Debug)]
pub struct Normalizer {
    schema: Arc<DatasetSchema>,
    synced_at_ms: i64,
    zone: FixedOffset,
    /// Columns filled from the request, over what each record sends.
    fixed: Arc<[FixedValue]>,
    window: Option<EventWindow>,
    keys: KeyOrder,
    columns: Columns,
}

impl Normalizer {
    /// A normalizer for `schema`; `synced_at_ms`: the `_synced_at` value of every row.
    /// Local days and datetimes are read in UTC until [`in_zone`](Self::in_zone).
    pub fn new(schema: Arc<DatasetSchema>, synced_at_ms: i64) -> Self {
        let keys = KeyOrder::new(&schema);
        let zone = FixedOffset::east_opt(0).expect("UTC is a valid offset");
        let columns = Columns::new(&schema, INITIAL_ROWS, zone);
        Self { schema, synced_at_ms, zone, fixed: Arc::new([]), window: None, keys, columns }
    }

    /// Fills columns from the request each record answers (`records.from_request`: the day
    /// or the VDN asked about) with `values` (column name, raw JSON), over whatever a record
    /// sends under those names; a column the schema does not declare is refused by name.
    pub fn with_request_values(self, values: Vec<(String, Box<RawValue>)>) -> Result<Self, String> {
        let fixed = values
            .into_iter()
            .map(|(column, raw)| match self.schema.index_of(&column) {
                Some(index) => Ok(FixedValue::new(index, raw)),
                None => Err(format!(
                    "column '{column}' is not in the schema of {}",
                    self.schema.dataset()
                )),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self { fixed: fixed.into(), ..self })
    }

    /// Reads `date` and `datetime_local` fields as days and times of `zone` (the source's);
    /// call before any record is pushed.
    pub fn in_zone(self, zone: FixedOffset) -> Self {
        let columns = Columns::new(&self.schema, INITIAL_ROWS, zone);
        Self { zone, columns, ..self }
    }

    /// Rows outside `[begin_ms, end_ms]` on the timestamp field `field` are rejected
    /// (reason names the field, the value as an ISO instant and the window).
    ///
    /// A null event time is rejected too. If the schema has no timestamp field `field`,
    /// every record is rejected with a reason saying so.
    pub fn with_event_window(self, field: &str, begin_ms: i64, end_ms: i64) -> Self {
        let column = match self.schema.index_of(field).map(|i| (i, self.schema.fields()[i].kind)) {
            Some((i, kind)) if kind.is_time() => Ok(i),
            Some(_) => Err("does not declare as a timestamp or a date"),
            None => Err("does not declare"),
        };
        let window = EventWindow { field: field.to_string(), column, begin_ms, end_ms };
        Self { window: Some(window), ..self }
    }

    /// A normalizer with the same schema, `_synced_at` and event window, and no rows: one
    /// per page, so that pages are normalized in parallel.
    pub fn fresh(&self) -> Self {
        Self {
            schema: Arc::clone(&self.schema),
            synced_at_ms: self.synced_at_ms,
            zone: self.zone,
            fixed: Arc::clone(&self.fixed),
            window: self.window.clone(),
            keys: KeyOrder::new(&self.schema),
            columns: Columns::new(&self.schema, INITIAL_ROWS, self.zone),
        }
    }

    /// Decodes one record and appends it as a row, or says why it cannot be one
    /// (then nothing is appended).
    pub fn push(&mut self, record: &RawValue) -> Result<(), RejectReason> {
        self.push_at(record.get(), 0).map(drop)
    }

    /// Appends each record of the JSON array whose `[` is at byte `at` of `text`, as
    /// [`push`](Self::push) appends one, in the same pass that finds where each record
    /// ends: a record that cannot be a row is handed to `rejected` with its reason and its
    /// text. Returns the position just past the array and the number of records it held,
    /// or `None` when the text is not JSON there: rows of the array may have been appended
    /// then, so the caller starts over with a [`fresh`](Self::fresh) normalizer.
    pub fn push_array<'t>(
        &mut self,
        text: &'t str,
        at: usize,
        mut rejected: impl FnMut(RejectReason, &'t str),
    ) -> Option<(usize, usize)> {
        let bytes = text.as_bytes();
        if bytes.get(at) != Some(&b'[') {
            return None;
        }
        let mut records = 0;
        let end = scan::elements(bytes, at, |pos| {
            records += 1;
            match self.push_at(text, pos) {
                Ok(end) => Ok(end),
                Err(reason) => {
                    // A record that is JSON but not a row: find its end to keep its text.
                    let end = scan::value(bytes, pos, 0)?;
                    let record =
                        text.get(pos..end).ok_or(Malformed { at: pos, expected: "a record" })?;
                    rejected(reason, record);
                    Ok::<_, Malformed>(end)
                }
            }
        });
        end.ok().map(|end| (end, records))
    }

    /// Appends the record at byte `at` of `text` as a row, or says why it cannot be one
    /// (then nothing is appended); returns the position just past the record.
    fn push_at(&mut self, text: &str, at: usize) -> Result<usize, RejectReason> {
        let (schema, fixed) = (&self.schema, &self.fixed);
        let staged = stage_record(text, at, schema, &mut self.keys, &mut self.columns, fixed)
            .and_then(|end| self.check_window().map(|()| end));
        match staged {
            Ok(end) => {
                self.columns.commit();
                Ok(end)
            }
            Err(reject) => {
                self.columns.discard();
                Err(reject.into())
            }
        }
    }

    /// Rows appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether no row was appended since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows appended since the last call, as one batch with `schema.arrow_schema()`.
    pub fn finish(&mut self) -> RecordBatch {
        let fresh = Columns::new(&self.schema, self.len().max(INITIAL_ROWS), self.zone);
        let arrays = std::mem::replace(&mut self.columns, fresh).finish(self.synced_at_ms);
        // Every column comes from this schema, and a null reaches a non-nullable column
        // only through a bug, since `push` rejects such records before appending.
        RecordBatch::try_new(self.schema.arrow_schema(), arrays)
            .expect("normalized columns match their schema by construction")
    }

    /// Checks the staged event time against the window, if there is one.
    fn check_window(&self) -> Result<(), Reject> {
        let Some(window) = &self.window else { return Ok(()) };
        let column = window.column.map_err(|problem| Reject::WindowField {
            field: window.field.clone(),
            dataset: self.schema.dataset().to_string(),
            problem,
        })?;
        let staged = self.columns.staged_timestamp(column);
        if staged.is_some_and(|ms| (window.begin_ms..=window.end_ms).contains(&ms)) {
            return Ok(());
        }
        let (field, begin, end) =
            (window.field.clone(), instant(window.begin_ms), instant(window.end_ms));
        Err(match staged {
            Some(ms) => Reject::OutsideWindow { field, value: instant(ms), begin, end },
            None => Reject::NoEventTime { field, begin, end },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::schema::{timestamp_type, EXTRA_COLUMN, SYNCED_AT_COLUMN};
    use crate::catalog::Catalog;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType as Ms};

    const SYNCED: i64 = 1_700_000_000_000;

    fn schema() -> Arc<DatasetSchema> {
        let json = r#"{"dataset":"t","fields":[
            {"name":"id","type":"int64","nullable":false},
            {"name":"code","type":"int32","nullable":false},
            {"name":"name","type":"utf8","nullable":false},
            {"name":"phone","type":"utf8"},
            {"name":"score","type":"float64"},
            {"name":"flag","type":"boolean"},
            {"name":"at","type":"timestamp_ms","nullable":false},
            {"name":"at_s","type":"timestamp_s"}]}"#;
        Arc::new(DatasetSchema::parse("t.json", json).unwrap())
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    fn normalizer() -> Normalizer {
        Normalizer::new(schema(), SYNCED)
    }

    /// A valid record of the test schema with `extra` spliced in before the closing brace.
    fn record(extra: &str) -> Box<RawValue> {
        raw(&format!(r#"{{"id": 1, "code": 2, "name": "n", "at": 3{extra}}}"#))
    }

    fn text(batch: &RecordBatch, column: &str, row: usize) -> Option<String> {
        let array = batch.column_by_name(column).unwrap().as_string::<i32>();
        array.is_valid(row).then(|| array.value(row).to_string())
    }

    fn int64(batch: &RecordBatch, column: &str, row: usize) -> Option<i64> {
        let array = batch.column_by_name(column).unwrap().as_primitive::<Int64Type>();
        array.is_valid(row).then(|| array.value(row))
    }

    fn int32(batch: &RecordBatch, column: &str, row: usize) -> Option<i32> {
        let array = batch.column_by_name(column).unwrap().as_primitive::<Int32Type>();
        array.is_valid(row).then(|| array.value(row))
    }

    fn millis(batch: &RecordBatch, column: &str, row: usize) -> Option<i64> {
        let array = batch.column_by_name(column).unwrap().as_primitive::<Ms>();
        array.is_valid(row).then(|| array.value(row))
    }

    /// The example record of cec-api.md 2.1 becomes the documented values, typed.
    #[test]
    fn api_reference_example_normalizes() {
        let catalog = Catalog::builtin().unwrap();
        let schema = catalog.get("rbt_recognition").unwrap().schema.clone();
        let mut n = Normalizer::new(schema.clone(), SYNCED);
        let example = raw(r#"{"rbtRecognitionId": 953730645354352640, "callId": "xxxxxxx-xxxx",
   "fileName": "Y:\\268\\0\\20210908\\2608\\xxxx.V3", "callerNo": "xxxxxxx", "calleeNo": "xxxxxxx",
   "agentId": 1234, "recordBeginTime": 1631240233000, "recordEndTime": 1631067449000,
   "callType": 7, "mediaType": 5, "vdnId": 123, "tenantId": "123456789", "callCenterId": 1,
   "releaseCause": 531, "beginTime": 1631241600000, "endTime": 1631241730000, "result": 105,
   "asrTransResult": null, "confirmedResult": null, "confirmStatus": 0, "remark": null,
   "locationId": 0, "updateTime": 1631241730000}"#);
        assert_eq!(n.push(&example), Ok(()));
        let b = n.finish();
        assert_eq!(b.schema(), schema.arrow_schema());
        assert_eq!(b.num_rows(), 1);
        assert_eq!(int64(&b, "rbtRecognitionId", 0), Some(953_730_645_354_352_640));
        assert_eq!(text(&b, "callId", 0).as_deref(), Some("xxxxxxx-xxxx"));
        assert_eq!(text(&b, "fileName", 0).as_deref(), Some(r"Y:\268\0\20210908\2608\xxxx.V3"));
        assert_eq!(text(&b, "callerNo", 0).as_deref(), Some("xxxxxxx"));
        assert_eq!(int64(&b, "agentId", 0), Some(1234));
        assert_eq!(millis(&b, "recordBeginTime", 0), Some(1_631_240_233_000));
        assert_eq!(millis(&b, "recordEndTime", 0), Some(1_631_067_449_000));
        assert_eq!(int32(&b, "callType", 0), Some(7));
        assert_eq!(int32(&b, "mediaType", 0), Some(5));
        assert_eq!(int64(&b, "vdnId", 0), Some(123));
        assert_eq!(text(&b, "tenantId", 0).as_deref(), Some("123456789"));
        assert_eq!(int64(&b, "callCenterId", 0), Some(1));
        assert_eq!(int32(&b, "releaseCause", 0), Some(531));
        assert_eq!(millis(&b, "beginTime", 0), Some(1_631_241_600_000));
        assert_eq!(millis(&b, "endTime", 0), Some(1_631_241_730_000));
        assert_eq!(int32(&b, "result", 0), Some(105));
        assert_eq!(text(&b, "asrTransResult", 0), None);
        assert_eq!(text(&b, "confirmedResult", 0), None);
        assert_eq!(int32(&b, "confirmStatus", 0), Some(0));
        assert_eq!(text(&b, "remark", 0), None);
        assert_eq!(int64(&b, "locationId", 0), Some(0));
        assert_eq!(millis(&b, "updateTime", 0), Some(1_631_241_730_000));
        assert_eq!(text(&b, EXTRA_COLUMN, 0), None);
        assert_eq!(millis(&b, SYNCED_AT_COLUMN, 0), Some(SYNCED));
        assert_eq!(b.column_by_name("beginTime").unwrap().data_type(), &timestamp_type());
    }

    /// The call record example of cec-api.md 2.13 sends numbers where the table says
    /// strings: both forms give the same row, timestamps and counts parsed from either, and
    /// a number in a text column kept as its exact digits.
    #[test]
    fn call_records_parse_numbers_sent_as_numbers_or_strings() {
        let catalog = Catalog::builtin().unwrap();
        let schema = catalog.get("call_detail_records").unwrap().schema.clone();
        let as_numbers = r#"{"releaseTime": 1621577022000, "called": "88889060",
  "callerPresent": "640003", "agentAlertingTime": 1621576992000, "agentPresent": "640060",
  "talkingTime": 1621576995000, "alertingTime": 1621576994000, "caller": "88889050",
  "agentTalkingTime": 1621576994000, "agentReleaseTime": 1621577022000, "agentTalkDuration": 27,
  "callSerialNo": "1037058396471308289", "startTime": 1621576992000, "endTime": 1621577022000,
  "talkDuration": 26, "state": 3, "reasonCode": 1}"#;
        let as_strings = r#"{"releaseTime": "1621577022000", "called": 88889060,
  "callerPresent": "640003", "agentAlertingTime": "1621576992000", "agentPresent": 640060,
  "talkingTime": "1621576995000", "alertingTime": "1621576994000", "caller": "88889050",
  "agentTalkingTime": "1621576994000", "agentReleaseTime": "1621577022000", "agentTalkDuration": "27",
  "callSerialNo": 1037058396471308289, "startTime": "1621576992000", "endTime": "1621577022000",
  "talkDuration": "26", "state": "3", "reasonCode": "1"}"#;
        let mut n = Normalizer::new(schema.clone(), SYNCED);
        assert_eq!(n.push(&raw(as_numbers)), Ok(()));
        assert_eq!(n.push(&raw(as_strings)), Ok(()));
        let b = n.finish();
        for row in 0..2 {
            assert_eq!(text(&b, "callSerialNo", row).as_deref(), Some("1037058396471308289"));
            assert_eq!(text(&b, "called", row).as_deref(), Some("88889060"));
            assert_eq!(text(&b, "agentPresent", row).as_deref(), Some("640060"));
            assert_eq!(millis(&b, "startTime", row), Some(1_621_576_992_000));
            assert_eq!(millis(&b, "agentReleaseTime", row), Some(1_621_577_022_000));
            assert_eq!(int64(&b, "talkDuration", row), Some(26));
            assert_eq!(int64(&b, "agentTalkDuration", row), Some(27));
            assert_eq!(int32(&b, "state", row), Some(3));
            assert_eq!(int32(&b, "reasonCode", row), Some(1));
            assert_eq!(text(&b, EXTRA_COLUMN, row), None);
        }
        for column in 0..b.num_columns() {
            let (first, second) = (b.column(column).slice(0, 1), b.column(column).slice(1, 1));
            assert_eq!(&first, &second, "{column}");
        }
    }

    /// Ids beyond 2^53 keep every digit, from numbers and from strings.
    #[test]
    fn ids_beyond_2_pow_53_are_exact() {
        let mut n = normalizer();
        let big = r#"{"id": 9007199254740993, "code": 1, "name": "a", "at": 0}"#;
        let quoted = r#"{"id": "953730645354352641", "code": "2", "name": "b", "at": "5"}"#;
        assert_eq!(n.push(&raw(big)), Ok(()));
        assert_eq!(n.push(&raw(quoted)), Ok(()));
        let b = n.finish();
        assert_eq!(int64(&b, "id", 0), Some(9_007_199_254_740_993));
        assert_eq!(int64(&b, "id", 1), Some(953_730_645_354_352_641));
        assert_eq!(int32(&b, "code", 1), Some(2));
        assert_eq!(millis(&b, "at", 1), Some(5));
    }

    /// Phone numbers keep leading zeros; a numeric phone keeps its digits; bools become words.
    #[test]
    fn text_keeps_what_was_sent() {
        let mut n = normalizer();
        assert_eq!(n.push(&record(r#", "phone": "008613800138000""#)), Ok(()));
        assert_eq!(n.push(&record(r#", "phone": 13800138000"#)), Ok(()));
        assert_eq!(n.push(&record(r#", "phone": true"#)), Ok(()));
        let chinese = r#"{"id": 1, "code": 2, "name": "外呼失败：被叫关机", "at": 3,
            "phone": "Y:\\268\\0\\x.V3"}"#;
        assert_eq!(n.push(&raw(chinese)), Ok(()));
        let b = n.finish();
        assert_eq!(text(&b, "phone", 0).as_deref(), Some("008613800138000"));
        assert_eq!(text(&b, "phone", 1).as_deref(), Some("13800138000"));
        assert_eq!(text(&b, "phone", 2).as_deref(), Some("true"));
        assert_eq!(text(&b, "name", 3).as_deref(), Some("外呼失败：被叫关机"));
        assert_eq!(text(&b, "phone", 3).as_deref(), Some(r"Y:\268\0\x.V3"));
    }

    /// Undeclared fields land in `_extra` as one object, values verbatim, in record order.
    #[test]
    fn unknown_fields_go_to_extra_verbatim() {
        let mut n = normalizer();
        let extra = r#", "zeta": {"k" : [1, 2.50, 1e3]}, "alpha": "中\"文", "n\u00e9": null"#;
        assert_eq!(n.push(&record(extra)), Ok(()));
        assert_eq!(n.push(&record("")), Ok(()));
        let b = n.finish();
        assert_eq!(
            text(&b, EXTRA_COLUMN, 0).as_deref(),
            Some(r#"{"zeta":{"k" : [1, 2.50, 1e3]},"alpha":"中\"文","né":null}"#)
        );
        assert_eq!(text(&b, EXTRA_COLUMN, 1), None, "no undeclared field, no object");
    }

    /// A bad record is rejected naming the field and value, and leaves nothing behind: the
    /// next good record lines up in every column.
    #[test]
    fn rejects_leave_no_partial_row() {
        let mut n = normalizer();
        assert_eq!(n.push(&record(r#", "phone": "1", "extra": 1"#)), Ok(()));
        let bad =
            r#"{"id": 7, "phone": "partial", "keep": true, "code": 1.5, "name": "x", "at": 1}"#;
        let reason = n.push(&raw(bad)).unwrap_err();
        assert_eq!(
            reason.to_string(),
            "field 'code' expects int32 but got 1.5, which is not a whole number"
        );
        assert_eq!(n.len(), 1);
        let good = r#"{"id": 8, "code": 9, "name": "y", "at": 10, "phone": "2"}"#;
        assert_eq!(n.push(&raw(good)), Ok(()));
        let b = n.finish();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(int64(&b, "id", 1), Some(8));
        assert_eq!(int32(&b, "code", 1), Some(9));
        assert_eq!(text(&b, "phone", 1).as_deref(), Some("2"));
        assert_eq!(text(&b, EXTRA_COLUMN, 1), None);
        assert_eq!(millis(&b, "at", 1), Some(10));
    }

    /// Each kind of bad value is named in the reason with the value seen.
    #[test]
    fn reasons_name_field_and_value() {
        let mut n = normalizer();
        let cases = [
            (r#", "score": true"#, "field 'score' expects float64 but got true"),
            (r#", "flag": "yes""#, "field 'flag' expects boolean but got \"yes\""),
            (r#", "phone": {"a": 1}"#, "field 'phone' expects utf8 but got {\"a\": 1}"),
            (
                r#", "at_s": 9223372036854776"#,
                "field 'at_s' expects timestamp_s but got 9223372036854776, which is out of range",
            ),
            (
                r#", "score": "NaN""#,
                "field 'score' expects float64 but got \"NaN\", which is not a finite number",
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(n.push(&record(extra)), Err(RejectReason(want.into())), "{extra}");
        }
        let huge = format!(r#"{{"id": "{}", "code": 1, "name": "n", "at": 3}}"#, "9".repeat(5000));
        let reason = n.push(&raw(&huge)).unwrap_err().0;
        assert!(
            reason.starts_with("field 'id' expects int64 but got \"999") && reason.len() < 200,
            "{reason}"
        );
        assert!(n.is_empty());
    }

    /// Missing or null nullable fields are nulls; missing or null required ones are rejects.
    #[test]
    fn nullability() {
        let mut n = normalizer();
        assert_eq!(n.push(&record(r#", "phone": null, "score": null"#)), Ok(()));
        let b = n.finish();
        assert_eq!(text(&b, "phone", 0), None);
        assert!(b.column_by_name("score").unwrap().is_null(0));
        assert!(b.column_by_name("flag").unwrap().is_null(0), "absent nullable field");
        assert!(b.column_by_name("at_s").unwrap().is_null(0));
        let missing = raw(r#"{"id": 1, "code": 2, "at": 3}"#);
        assert_eq!(n.push(&missing).unwrap_err().0, "field 'name' is required but missing");
        let null = raw(r#"{"id": 1, "code": 2, "name": null, "at": 3}"#);
        assert_eq!(n.push(&null).unwrap_err().0, "field 'name' is required but is null");
        assert!(n.is_empty());
    }

    /// Floats, booleans and epoch seconds convert by their rules.
    #[test]
    fn other_kinds_convert() {
        let mut n = normalizer();
        let extra = r#", "score": "2.5", "flag": 0, "at_s": "1631241600""#;
        assert_eq!(n.push(&record(extra)), Ok(()));
        assert_eq!(n.push(&record(r#", "score": 3, "flag": "true", "at_s": 1"#)), Ok(()));
        let b = n.finish();
        let score = b.column_by_name("score").unwrap().as_primitive::<Float64Type>();
        assert_eq!((score.value(0), score.value(1)), (2.5, 3.0));
        let flag = b.column_by_name("flag").unwrap().as_boolean();
        assert_eq!((flag.value(0), flag.value(1)), (false, true));
        assert_eq!(millis(&b, "at_s", 0), Some(1_631_241_600_000));
        assert_eq!(millis(&b, "at_s", 1), Some(1000));
    }

    /// A record that is not an object is a reject.
    #[test]
    fn non_objects_are_rejected() {
        let mut n = normalizer();
        for json in ["[1, 2]", "5", "\"x\"", "null", "true"] {
            let reason = n.push(&raw(json)).unwrap_err().0;
            assert_eq!(reason, format!("the record is not a JSON object but {json}"));
        }
        assert!(n.is_empty());
    }

    /// A key repeated in one record is a reject, whether declared or not.
    #[test]
    fn duplicate_keys_are_rejected() {
        let mut n = normalizer();
        let declared = n.push(&record(r#", "code": 2"#)).unwrap_err();
        assert_eq!(declared.0, "field 'code' appears more than once in the record");
        let unknown = n.push(&record(r#", "x": 1, "y": 2, "x": 1"#)).unwrap_err();
        assert_eq!(unknown.0, "field 'x' appears more than once in the record");
        let nulls = n.push(&record(r#", "phone": null, "phone": "1""#)).unwrap_err();
        assert_eq!(nulls.0, "field 'phone' appears more than once in the record");
        assert!(n.is_empty());
    }

    /// A lone surrogate escape is a reject in a declared text column but kept in `_extra`.
    #[test]
    fn undecodable_escapes() {
        let mut n = normalizer();
        let reason = n.push(&record(r#", "phone": "\ud800""#)).unwrap_err().0;
        assert!(reason.starts_with("field 'phone' expects utf8 but got \"\\ud800\""), "{reason}");
        assert_eq!(n.push(&record(r#", "other": "\ud800""#)), Ok(()));
        assert_eq!(text(&n.finish(), EXTRA_COLUMN, 0).as_deref(), Some(r#"{"other":"\ud800"}"#));
    }

    /// The event window keeps times inside it (bounds included) and names the ISO instants
    /// of a time outside it; a null event time or a field without timestamps is a reject.
    #[test]
    fn event_window() {
        let begin = 1_630_425_600_000; // 2021-08-31T16:00:00Z
        let end = 1_633_017_599_999;
        let mut n = Normalizer::new(schema(), SYNCED).with_event_window("at", begin, end);
        for at in [begin, end] {
            let rec = raw(&format!(r#"{{"id": 1, "code": 2, "name": "n", "at": {at}}}"#));
            assert_eq!(n.push(&rec), Ok(()));
        }
        let late = raw(&format!(r#"{{"id": 1, "code": 2, "name": "n", "at": {}}}"#, end + 1));
        assert_eq!(
            n.push(&late).unwrap_err().0,
            "field 'at' is 2021-09-30T16:00:00.000Z, outside the window \
             [2021-08-31T16:00:00.000Z, 2021-09-30T15:59:59.999Z]"
        );
        assert_eq!(n.len(), 2);

        let mut by_seconds = normalizer().with_event_window("at_s", begin, end);
        assert_eq!(by_seconds.push(&record(r#", "at_s": 1630425600"#)), Ok(()));
        let reason = by_seconds.push(&record("")).unwrap_err().0;
        assert!(reason.starts_with("field 'at_s' is null, so the record cannot be placed"));

        let mut wrong = normalizer().with_event_window("code", begin, end);
        assert_eq!(
            wrong.push(&record("")).unwrap_err().0,
            "the event window names field 'code', which dataset t does not declare as a timestamp or a date"
        );
        let mut unknown = normalizer().with_event_window("nope", begin, end);
        assert!(unknown.push(&record("")).unwrap_err().0.contains("does not declare"));
    }

    /// A fresh normalizer keeps the schema, `_synced_at` and event window, not the rows.
    /// Days and local datetimes are of the zone given: a day is in a month window when its
    /// first instant in the zone is, and a local datetime is read as an instant of the zone.
    #[test]
    fn days_and_local_times_are_of_the_zone() {
        let json = r#"{"dataset":"z","fields":[
            {"name":"day","type":"date","nullable":false},
            {"name":"local","type":"datetime_local"},
            {"name":"utc","type":"datetime_utc"}]}"#;
        let schema = Arc::new(DatasetSchema::parse("z.json", json).unwrap());
        let zone = FixedOffset::east_opt(8 * 3600).unwrap();
        // February 2025 at +08:00: 2025-01-31T16:00Z to 2025-02-28T15:59:59.999Z.
        let (begin, end) = (1_738_339_200_000, 1_740_758_399_999);
        let mut n =
            Normalizer::new(schema, SYNCED).in_zone(zone).with_event_window("day", begin, end);
        let feb = raw(
            r#"{"day":"2025-02-01","local":"2025-02-01 00:00:00","utc":"2025-02-01 00:00:00"}"#,
        );
        assert_eq!(n.push(&feb), Ok(()));
        assert_eq!(n.push(&raw(r#"{"day":"2025-02-28"}"#)), Ok(()));
        let reason = n.push(&raw(r#"{"day":"2025-01-31"}"#)).unwrap_err().0;
        assert!(reason.contains("2025-01-30T16:00:00.000Z, outside the window"), "{reason}");
        let batch = n.finish();
        assert_eq!(millis(&batch, "local", 0), Some(begin));
        assert_eq!(millis(&batch, "utc", 0), Some(begin + 8 * 3_600_000));
        let days = batch.column(0).as_primitive::<arrow::datatypes::Date32Type>();
        assert_eq!(days.values().to_vec(), [20120, 20147]);
    }

    /// Request values fill their columns over what a record sends, in every fresh copy;
    /// a column the schema lacks is refused by name.
    #[test]
    fn request_values_win_over_the_record() {
        let day = |text: &str| RawValue::from_string(text.to_string()).unwrap();
        let n = normalizer().with_request_values(vec![("name".into(), day("\"asked\""))]);
        let mut n = n.unwrap().fresh();
        assert_eq!(n.push(&record("")), Ok(()));
        let own = raw(r#"{"id": 1, "code": 2, "name": "echoed", "at": 5}"#);
        assert_eq!(n.push(&own), Ok(()));
        let batch = n.finish();
        assert_eq!(text(&batch, "name", 0).as_deref(), Some("asked"));
        assert_eq!(text(&batch, "name", 1).as_deref(), Some("asked"));
        assert_eq!(text(&batch, EXTRA_COLUMN, 1), None, "the echo is not kept as extra");
        let unknown = normalizer().with_request_values(vec![("nope".into(), day("1"))]);
        assert!(unknown.unwrap_err().contains("'nope'"));
    }

    #[test]
    fn fresh_keeps_the_rules_not_the_rows() {
        let mut n = Normalizer::new(schema(), SYNCED).with_event_window("at", 0, 10);
        n.push(&record("")).unwrap();
        let mut copy = n.fresh();
        assert!(copy.is_empty());
        let late = raw(r#"{"id": 1, "code": 2, "name": "n", "at": 11}"#);
        assert!(copy.push(&late).unwrap_err().0.contains("outside the window"));
        copy.push(&record("")).unwrap();
        let b = copy.finish();
        assert_eq!((b.num_rows(), millis(&b, SYNCED_AT_COLUMN, 0)), (1, Some(SYNCED)));
        assert_eq!(n.len(), 1, "the original keeps its rows");
    }

    /// `finish` returns the rows since the last call and starts afresh.
    #[test]
    fn finish_starts_a_new_batch() {
        let mut n = normalizer();
        assert!(n.is_empty());
        n.push(&record("")).unwrap();
        n.push(&record("")).unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n.finish().num_rows(), 2);
        assert!(n.is_empty());
        assert_eq!(n.finish().num_rows(), 0);
        n.push(&record(r#", "x": 1"#)).unwrap();
        let b = n.finish();
        assert_eq!(b.num_rows(), 1);
        assert_eq!(text(&b, EXTRA_COLUMN, 0).as_deref(), Some(r#"{"x":1}"#));
    }
}
