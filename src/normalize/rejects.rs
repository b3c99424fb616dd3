//! Records kept out of the lake, as the JSON lines written to `_rejects/`.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::value::RawValue;

use super::json_text::push_json_string;
use super::reason::RejectReason;

/// A record kept out of the lake, with its reason; written to `_rejects/` as one JSON line
/// {"reason": "...", "record": <the raw record JSON, verbatim>, "page": N, "rejected_at": "RFC3339"}.
#[derive(Debug, Clone)]
pub struct RejectedRecord {
    /// Why the record is not a row.
    pub reason: String,
    /// The record as received.
    pub record: Box<RawValue>,
    /// The API page it came from.
    pub page: u64,
}

/// Rejected records, each kept once: a record met again (on another page, or in another
/// request of the same slice) is the same record.
#[derive(Debug, Default)]
pub struct RejectedSet {
    records: Vec<RejectedRecord>,
    texts: HashSet<String>,
}

impl RejectedSet {
    /// Keeps `reject` unless a record of the same text is kept already.
    pub fn insert(&mut self, reject: RejectedRecord) {
        if self.texts.insert(reject.record.get().to_string()) {
            self.records.push(reject);
        }
    }

    /// The records kept, in the order first met.
    pub fn records(&self) -> &[RejectedRecord] {
        &self.records
    }

    /// The texts of the records kept.
    pub fn texts(&self) -> &HashSet<String> {
        &self.texts
    }

    /// How many records are kept.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl Extend<RejectedRecord> for RejectedSet {
    fn extend<I: IntoIterator<Item = RejectedRecord>>(&mut self, rejects: I) {
        rejects.into_iter().for_each(|reject| self.insert(reject));
    }
}

impl IntoIterator for RejectedSet {
    type Item = RejectedRecord;
    type IntoIter = std::vec::IntoIter<RejectedRecord>;

    fn into_iter(self) -> Self::IntoIter {
        self.records.into_iter()
    }
}

impl RejectedRecord {
    /// Keeps a copy of `record`, rejected for `reason`, from page `page`.
    pub fn new(reason: RejectReason, record: &RawValue, page: u64) -> Self {
        Self { reason: reason.0, record: record.to_owned(), page }
    }

    /// The JSON line for `_rejects/`, without the line break.
    ///
    /// The record's text is kept byte for byte, except that line breaks between its tokens
    /// (JSON allows none inside strings) become spaces, so the line stays one line.
    pub fn to_json_line(&self, rejected_at: DateTime<Utc>) -> String {
        let record = self.record.get();
        let mut line = String::with_capacity(record.len() + self.reason.len() + 96);
        line.push_str("{\"reason\":");
        push_json_string(&mut line, &self.reason);
        line.push_str(",\"record\":");
        if record.contains(['\n', '\r']) {
            line.extend(record.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }));
        } else {
            line.push_str(record);
        }
        line.push_str(",\"page\":");
        line.push_str(&self.page.to_string());
        line.push_str(",\"rejected_at\":\"");
        line.push_str(&rejected_at.to_rfc3339_opts(SecondsFormat::Millis, true));
        line.push_str("\"}");
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 3, 4, 5, 6).unwrap()
    }

    /// A record met again is kept once, as first met; another text is another record.
    #[test]
    fn a_set_keeps_each_record_once() {
        let reject = |text: &str, page| {
            let record = RawValue::from_string(text.into()).unwrap();
            RejectedRecord::new(RejectReason("bad".into()), &record, page)
        };
        let mut set = RejectedSet::default();
        set.extend([reject(r#"{"id":1}"#, 1), reject(r#"{"id":2}"#, 1)]);
        set.insert(reject(r#"{"id":1}"#, 2));
        set.insert(reject(r#"{"id": 1}"#, 3));
        let kept: Vec<_> = set.records().iter().map(|r| (r.record.get(), r.page)).collect();
        assert_eq!(kept, [(r#"{"id":1}"#, 1), (r#"{"id":2}"#, 1), (r#"{"id": 1}"#, 3)]);
        assert_eq!((set.len(), set.texts().len()), (3, 3));
        assert!(set.texts().contains(r#"{"id":2}"#));
        assert_eq!(set.into_iter().map(|r| r.page).collect::<Vec<_>>(), [1, 1, 3]);
    }

    /// The line is JSON with the four keys, the record kept byte for byte.
    #[test]
    fn line_holds_reason_record_page_and_instant() {
        let record = RawValue::from_string(r#"{"id": 9007199254740993, "p":"Y:\\0"}"#.into());
        let rejected =
            RejectedRecord::new(RejectReason("field 'id' says \"no\"".into()), &record.unwrap(), 7);
        let line = rejected.to_json_line(at());
        assert_eq!(
            line,
            r#"{"reason":"field 'id' says \"no\"","record":{"id": 9007199254740993, "p":"Y:\\0"},"page":7,"rejected_at":"2026-11-03T04:05:06.000Z"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["reason"], "field 'id' says \"no\"");
        assert_eq!(parsed["page"], 7);
    }

    /// A pretty-printed record still gives one line, with its values unchanged.
    #[test]
    fn pretty_records_stay_on_one_line() {
        let pretty = "{\r\n  \"a\": \"x\\ny\",\n  \"b\": [1,\n 2]\n}";
        let record = RawValue::from_string(pretty.into()).unwrap();
        let line = RejectedRecord::new(RejectReason("r".into()), &record, 1).to_json_line(at());
        assert!(!line.contains(['\n', '\r']), "{line}");
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["record"], serde_json::json!({"a": "x\ny", "b": [1, 2]}));
    }
}
