//! The three push interfaces, the dataset each fills, and how a received push is kept in
//! the spool.
//!
//! | interface | dataset | key | month of |
//! |---|---|---|---|
//! | Private Number CDR (3.2) | `privatenumber_cdrs` | `appKey`, `icid` | the first of `callInTime`, `fwdStartTime`, `callOutStartTime`, `failTime`, `callEndTime` (UTC) |
//! | Private Number call event (3.3) | `privatenumber_events` | `sessionId`, `eventType`, `timestamp` | `timestamp` (UTC) |
//! | outbound call result (3.1) | `outbound_results` | `callId` | `callTimeStr` (tenant zone) |
//!
//! A row whose time fields are all empty goes to the month the push was received in.

use std::fmt;

use serde_json::value::RawValue;

/// One push interface (named `cdr`, `event` and `outbound` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum PushKind {
    /// Private Number CDR notification (`eventType = fee`).
    #[value(name = "cdr")]
    PrivateNumberCdr,
    /// Private Number call event (`callin`, `answer`, `disconnect`, ...).
    #[value(name = "event")]
    PrivateNumberEvent,
    /// CC-iSales outbound call result callback.
    #[value(name = "outbound")]
    OutboundResult,
}

impl PushKind {
    /// Every interface.
    pub const ALL: [PushKind; 3] =
        [PushKind::PrivateNumberCdr, PushKind::PrivateNumberEvent, PushKind::OutboundResult];

    /// The dataset the interface fills (its schema is `schemas/DATASET.json`).
    pub fn dataset(self) -> &'static str {
        match self {
            PushKind::PrivateNumberCdr => "privatenumber_cdrs",
            PushKind::PrivateNumberEvent => "privatenumber_events",
            PushKind::OutboundResult => "outbound_results",
        }
    }

    /// The natural key of a record: a re-pushed record replaces itself.
    pub fn primary_key(self) -> &'static [&'static str] {
        match self {
            PushKind::PrivateNumberCdr => &["appKey", "icid"],
            PushKind::PrivateNumberEvent => &["sessionId", "eventType", "timestamp"],
            PushKind::OutboundResult => &["callId"],
        }
    }

    /// The time fields whose first one set gives a row's month.
    pub fn event_times(self) -> &'static [&'static str] {
        match self {
            PushKind::PrivateNumberCdr => {
                &["callInTime", "fwdStartTime", "callOutStartTime", "failTime", "callEndTime"]
            }
            PushKind::PrivateNumberEvent => &["timestamp"],
            PushKind::OutboundResult => &["callTimeStr"],
        }
    }

    fn code(self) -> u8 {
        match self {
            PushKind::PrivateNumberCdr => 1,
            PushKind::PrivateNumberEvent => 2,
            PushKind::OutboundResult => 3,
        }
    }

    fn of_code(code: u8) -> Option<Self> {
        PushKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl fmt::Display for PushKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushKind::PrivateNumberCdr => "privatenumber_cdr",
            PushKind::PrivateNumberEvent => "privatenumber_event",
            PushKind::OutboundResult => "outbound_result",
        })
    }
}

/// The records of one accepted push, as one spool entry:
/// `kind (1 byte) | received_at epoch ms (8 bytes, little endian) | records (a JSON array)`.
#[derive(Debug)]
pub struct SpooledPush {
    /// The interface.
    pub kind: PushKind,
    /// When the receiver accepted it.
    pub received_at_ms: i64,
    /// The records, each a JSON object as the dataset's normalizer reads it.
    pub records: Vec<Box<RawValue>>,
}

/// Why a spool entry could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Shorter than its header.
    #[error("a spool entry of {0} bytes is shorter than its 9-byte header")]
    Short(usize),
    /// Of no known interface.
    #[error("a spool entry names interface code {0}, which this version does not know")]
    UnknownKind(u8),
    /// Its records are not a JSON array.
    #[error("the records of a spool entry are not a JSON array: {0}")]
    Records(serde_json::Error),
}

impl SpooledPush {
    /// The entry of `kind` holding `records_json` (a JSON array text) received at
    /// `received_at_ms`.
    pub fn encode(kind: PushKind, received_at_ms: i64, records_json: &str) -> Vec<u8> {
        let mut entry = Vec::with_capacity(9 + records_json.len());
        entry.push(kind.code());
        entry.extend_from_slice(&received_at_ms.to_le_bytes());
        entry.extend_from_slice(records_json.as_bytes());
        entry
    }

    /// Reads an entry written by [`Self::encode`].
    pub fn decode(entry: &[u8]) -> Result<Self, EntryError> {
        if entry.len() < 9 {
            return Err(EntryError::Short(entry.len()));
        }
        let kind = PushKind::of_code(entry[0]).ok_or(EntryError::UnknownKind(entry[0]))?;
        let received_at_ms = i64::from_le_bytes(entry[1..9].try_into().expect("8 bytes"));
        let records = serde_json::from_slice(&entry[9..]).map_err(EntryError::Records)?;
        Ok(Self { kind, received_at_ms, records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry reads back as written; a short, foreign or garbled entry is an error.
    #[test]
    fn entries_round_trip() {
        for kind in PushKind::ALL {
            let entry = SpooledPush::encode(kind, 1_738_339_200_123, r#"[{"a":1},{"b":"0086"}]"#);
            let read = SpooledPush::decode(&entry).unwrap();
            assert_eq!((read.kind, read.received_at_ms), (kind, 1_738_339_200_123));
            let texts: Vec<&str> = read.records.iter().map(|r| r.get()).collect();
            assert_eq!(texts, [r#"{"a":1}"#, r#"{"b":"0086"}"#]);
        }
        assert!(matches!(SpooledPush::decode(&[1, 2]), Err(EntryError::Short(2))));
        let foreign = SpooledPush::encode(PushKind::OutboundResult, 0, "[]");
        let mut foreign = foreign.clone();
        foreign[0] = 9;
        assert!(matches!(SpooledPush::decode(&foreign), Err(EntryError::UnknownKind(9))));
        let garbled = SpooledPush::encode(PushKind::OutboundResult, 0, "[{");
        assert!(matches!(SpooledPush::decode(&garbled), Err(EntryError::Records(_))));
    }
}
