//! Where each object of a partition lives in the lake.
//!
//! ```text
//! DATASET/tenant_id=T/month=YYYY-MM/part-00000.parquet
//! _rejects/DATASET/tenant_id=T/month=YYYY-MM/rejects.jsonl
//! _state/DATASET/tenant_id=T/month=YYYY-MM.json
//! _state/DATASET/tenant_id=T/pipeline.json
//! ```
//!
//! A snapshot dataset (`[slicing] style = "snapshot"`) has one partition per day instead,
//! `snapshot_date=YYYY-MM-DD` in place of `month=YYYY-MM` (see [`PartitionKey`]).
//!
//! Every path is built part by part, so a character such as `/` inside a tenant id is
//! percent-encoded instead of adding a folder level.

use std::fmt;

use chrono::{FixedOffset, NaiveDate, NaiveTime, TimeZone};
use object_store::path::{Path, PathPart};
use serde::{Deserialize, Serialize};

use super::SinkError;
use crate::calendar::Month;

/// Folder of the rejects objects.
pub const REJECTS_DIR: &str = "_rejects";
/// Folder of the checkpoints.
pub const STATE_DIR: &str = "_state";
/// File name of the single data object of a partition.
pub const DATA_FILE: &str = "part-00000.parquet";
/// File name of the rejects object of a partition.
pub const REJECTS_FILE: &str = "rejects.jsonl";
/// File name of a pipeline checkpoint.
pub const PIPELINE_FILE: &str = "pipeline.json";

const TENANT_KEY: &str = "tenant_id=";
const MONTH_KEY: &str = "month";
const SNAPSHOT_KEY: &str = "snapshot_date";

/// What tells the partitions of one dataset and tenant apart: a calendar month of the
/// source zone, or the day of a snapshot. Written `month=YYYY-MM` or
/// `snapshot_date=YYYY-MM-DD`, as a folder and as a checkpoint's file name and field.
///
/// ```
/// # use cecsync::{calendar::Month, sink::layout::PartitionKey};
/// let month = PartitionKey::Month(Month::new(2025, 3).unwrap());
/// assert_eq!(month.to_string(), "month=2025-03");
/// let day = PartitionKey::Day(chrono::NaiveDate::from_ymd_opt(2025, 3, 4).unwrap());
/// assert_eq!(day.to_string(), "snapshot_date=2025-03-04");
/// assert_eq!("snapshot_date=2025-03-04".parse::<PartitionKey>(), Ok(day));
/// assert_eq!("month=2025-03".parse::<PartitionKey>(), Ok(month));
/// assert!("month=2025-3".parse::<PartitionKey>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "KeyField", into = "KeyField")]
pub enum PartitionKey {
    /// A month partition.
    Month(Month),
    /// The snapshot of a day of the source zone.
    Day(NaiveDate),
}

impl PartitionKey {
    /// The month, for a month partition.
    pub fn month(self) -> Option<Month> {
        match self {
            Self::Month(month) => Some(month),
            Self::Day(_) => None,
        }
    }

    /// The first and the last millisecond the partition covers in `zone`: its month, or
    /// its day.
    ///
    /// ```
    /// # use cecsync::sink::layout::PartitionKey;
    /// let zone = cecsync::calendar::parse_zone("+08:00").unwrap();
    /// let day: PartitionKey = "snapshot_date=2025-03-04".parse().unwrap();
    /// // 2025-03-03T16:00:00Z to 2025-03-04T15:59:59.999Z
    /// assert_eq!(day.bounds(zone), (1741017600000, 1741103999999));
    /// ```
    pub fn bounds(self, zone: FixedOffset) -> (i64, i64) {
        match self {
            Self::Month(month) => {
                let slice = month.slice(zone);
                (slice.begin_ms, slice.end_ms)
            }
            Self::Day(day) => {
                let start = |d: NaiveDate| {
                    zone.from_local_datetime(&d.and_time(NaiveTime::MIN))
                        .single()
                        .map_or(0, |t| t.timestamp_millis())
                };
                let next = day.succ_opt().unwrap_or(day);
                (start(day), start(next) - 1)
            }
        }
    }

    /// The value alone, without its name: `2025-03` or `2025-03-04`.
    pub fn value(self) -> String {
        match self {
            Self::Month(month) => month.to_string(),
            Self::Day(day) => day.format("%Y-%m-%d").to_string(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Month(_) => MONTH_KEY,
            Self::Day(_) => SNAPSHOT_KEY,
        }
    }

    /// Reads a value written under `name` back into a key.
    fn parse_named(name: &str, value: &str) -> Result<Self, String> {
        match name {
            MONTH_KEY => value.parse().map(Self::Month).map_err(|e| e.to_string()),
            SNAPSHOT_KEY => NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .filter(|_| value.len() == 10)
                .map(Self::Day)
                .ok_or_else(|| format!("'{value}' is not a day: write it as YYYY-MM-DD")),
            other => Err(format!("'{other}' is neither {MONTH_KEY} nor {SNAPSHOT_KEY}")),
        }
    }
}

impl From<Month> for PartitionKey {
    fn from(month: Month) -> Self {
        Self::Month(month)
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name(), self.value())
    }
}

impl std::str::FromStr for PartitionKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, value) = s.split_once('=').ok_or_else(|| format!("'{s}' is not NAME=VALUE"))?;
        Self::parse_named(name, value)
    }
}

/// How a checkpoint writes its key: one field, `"month": "YYYY-MM"` or
/// `"snapshot_date": "YYYY-MM-DD"`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KeyField {
    Month(String),
    SnapshotDate(String),
}

impl From<PartitionKey> for KeyField {
    fn from(key: PartitionKey) -> Self {
        match key {
            PartitionKey::Month(_) => Self::Month(key.value()),
            PartitionKey::Day(_) => Self::SnapshotDate(key.value()),
        }
    }
}

impl TryFrom<KeyField> for PartitionKey {
    type Error = String;

    fn try_from(field: KeyField) -> Result<Self, String> {
        match field {
            KeyField::Month(value) => Self::parse_named(MONTH_KEY, &value),
            KeyField::SnapshotDate(value) => Self::parse_named(SNAPSHOT_KEY, &value),
        }
    }
}

/// One partition of one dataset for one tenant: the unit of replacement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    /// The dataset (pipeline name).
    pub dataset: String,
    /// The tenant.
    pub tenant_id: String,
    /// The month, or the snapshot's day, in the source's zone.
    pub key: PartitionKey,
}

impl PartitionId {
    /// Names a partition.
    pub fn new(
        dataset: impl Into<String>,
        tenant_id: impl Into<String>,
        key: impl Into<PartitionKey>,
    ) -> Self {
        Self { dataset: dataset.into(), tenant_id: tenant_id.into(), key: key.into() }
    }

    /// The data object.
    ///
    /// ```
    /// # use cecsync::{calendar::Month, sink::PartitionId};
    /// let id = PartitionId::new("rbt_recognition", "202101", Month::new(2025, 3).unwrap());
    /// assert_eq!(
    ///     id.data_path().as_ref(),
    ///     "rbt_recognition/tenant_id=202101/month=2025-03/part-00000.parquet"
    /// );
    /// ```
    pub fn data_path(&self) -> Path {
        Path::from_iter(self.partition_parts().into_iter().chain([PathPart::from(DATA_FILE)]))
    }

    /// The rejects object.
    ///
    /// ```
    /// # use cecsync::{calendar::Month, sink::PartitionId};
    /// let id = PartitionId::new("rbt_recognition", "202101", Month::new(2025, 3).unwrap());
    /// assert_eq!(
    ///     id.rejects_path().as_ref(),
    ///     "_rejects/rbt_recognition/tenant_id=202101/month=2025-03/rejects.jsonl"
    /// );
    /// ```
    pub fn rejects_path(&self) -> Path {
        let parts = [PathPart::from(REJECTS_DIR)]
            .into_iter()
            .chain(self.partition_parts())
            .chain([PathPart::from(REJECTS_FILE)]);
        Path::from_iter(parts)
    }

    /// The partition checkpoint.
    ///
    /// ```
    /// # use cecsync::{calendar::Month, sink::PartitionId};
    /// let id = PartitionId::new("rbt_recognition", "202101", Month::new(2025, 3).unwrap());
    /// assert_eq!(
    ///     id.checkpoint_path().as_ref(),
    ///     "_state/rbt_recognition/tenant_id=202101/month=2025-03.json"
    /// );
    /// ```
    pub fn checkpoint_path(&self) -> Path {
        let file = format!("{}.json", self.key);
        state_folder(&self.dataset, &self.tenant_id).join(file.as_str())
    }

    /// Reads a data path back into the partition it belongs to.
    ///
    /// ```
    /// # use cecsync::{calendar::Month, sink::PartitionId};
    /// # use object_store::path::Path;
    /// let path = Path::from("rbt_recognition/tenant_id=202101/month=2025-03/part-00000.parquet");
    /// let id = PartitionId::from_data_path(&path).unwrap();
    /// assert_eq!(id, PartitionId::new("rbt_recognition", "202101", Month::new(2025, 3).unwrap()));
    /// assert!(PartitionId::from_data_path(&Path::from("rbt_recognition/x.parquet")).is_err());
    /// ```
    pub fn from_data_path(path: &Path) -> Result<Self, SinkError> {
        let bad = |problem: &str| SinkError::NotAPartitionPath {
            path: path.to_string(),
            problem: problem.to_string(),
        };
        let parts: Vec<PathPart<'_>> = path.parts().collect();
        let [dataset, tenant, key, file] = parts.as_slice() else {
            return Err(bad("expected DATASET/tenant_id=T/month=YYYY-MM/part-00000.parquet"));
        };
        if file.as_ref() != DATA_FILE {
            return Err(bad("the file is not part-00000.parquet"));
        }
        let tenant = decode(tenant.as_ref())
            .strip_prefix(TENANT_KEY)
            .map(str::to_string)
            .ok_or_else(|| bad("the second folder is not tenant_id=T"))?;
        let key = key.as_ref().parse::<PartitionKey>().map_err(|e| {
            bad(&format!("the third folder is not month=YYYY-MM or snapshot_date=YYYY-MM-DD: {e}"))
        })?;
        if tenant.is_empty() {
            return Err(bad("the tenant id is empty"));
        }
        Ok(Self { dataset: decode(dataset.as_ref()), tenant_id: tenant, key })
    }

    fn partition_parts(&self) -> [PathPart<'static>; 3] {
        [
            PathPart::from(self.dataset.clone()),
            PathPart::from(format!("{TENANT_KEY}{}", self.tenant_id)),
            PathPart::from(self.key.to_string()),
        ]
    }
}

/// The pipeline checkpoint of a dataset and tenant.
///
/// ```
/// # use cecsync::sink::layout::pipeline_checkpoint_path;
/// assert_eq!(
///     pipeline_checkpoint_path("rbt_recognition", "202101").as_ref(),
///     "_state/rbt_recognition/tenant_id=202101/pipeline.json"
/// );
/// ```
pub fn pipeline_checkpoint_path(dataset: &str, tenant_id: &str) -> Path {
    state_folder(dataset, tenant_id).join(PIPELINE_FILE)
}

/// The folder holding every checkpoint of a dataset and tenant.
///
/// ```
/// # use cecsync::sink::layout::state_folder;
/// assert_eq!(state_folder("d", "t").as_ref(), "_state/d/tenant_id=t");
/// ```
pub fn state_folder(dataset: &str, tenant_id: &str) -> Path {
    let tenant = format!("{TENANT_KEY}{tenant_id}");
    Path::from_iter([STATE_DIR, dataset, tenant.as_str()])
}

/// The partition key of a partition checkpoint's file name (`month=YYYY-MM.json`,
/// `snapshot_date=YYYY-MM-DD.json`), if it is one.
///
/// ```
/// # use cecsync::{calendar::Month, sink::layout::{checkpoint_key, PartitionKey}};
/// let march = Month::new(2025, 3).unwrap();
/// assert_eq!(checkpoint_key("month=2025-03.json"), Some(PartitionKey::Month(march)));
/// assert!(checkpoint_key("snapshot_date=2025-03-04.json").is_some());
/// assert_eq!(checkpoint_key("pipeline.json"), None);
/// ```
pub fn checkpoint_key(file_name: &str) -> Option<PartitionKey> {
    file_name.strip_suffix(".json")?.parse().ok()
}

/// Undoes the percent-encoding of a path part (invalid sequences are kept as written).
fn decode(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(dataset: &str, tenant: &str, y: i32, m: u32) -> PartitionId {
        PartitionId::new(dataset, tenant, Month::new(y, m).unwrap())
    }

    /// Every data path parses back into the partition it was built from, odd tenants included.
    #[test]
    fn data_paths_round_trip() {
        for p in [
            id("rbt_recognition", "202101", 2025, 1),
            id("d", "tenant/with slash", 1999, 12),
            id("d", "100%~ok", 2030, 6),
            PartitionId::new(
                "d",
                "t",
                PartitionKey::Day(NaiveDate::from_ymd_opt(2025, 2, 28).unwrap()),
            ),
        ] {
            let path = p.data_path();
            assert_eq!(path.parts().count(), 4, "{path}");
            assert_eq!(PartitionId::from_data_path(&path).unwrap(), p);
        }
    }

    /// Paths that are not partition data objects are refused with the path in the message.
    #[test]
    fn foreign_paths_are_refused() {
        for bad in [
            "d/tenant_id=t/month=2025-01/part-00001.parquet",
            "d/tenant=t/month=2025-01/part-00000.parquet",
            "d/tenant_id=t/month=2025-13/part-00000.parquet",
            "d/tenant_id=/month=2025-01/part-00000.parquet",
            "_state/d/tenant_id=t/month=2025-01.json",
            "d/tenant_id=t/snapshot_date=2025-02-30/part-00000.parquet",
            "d/tenant_id=t/snapshot_date=2025-2-3/part-00000.parquet",
        ] {
            let err = PartitionId::from_data_path(&Path::from(bad)).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    /// The rejects and checkpoint objects of a partition sit under their own folders, so a
    /// reader globbing `DATASET/**/*.parquet` sees only data.
    #[test]
    fn side_objects_stay_out_of_the_data_folder() {
        let p = id("d", "t", 2025, 2);
        assert!(p.rejects_path().as_ref().starts_with("_rejects/d/"));
        assert!(p.checkpoint_path().prefix_matches(&state_folder("d", "t")));
        assert_eq!(
            checkpoint_key(p.checkpoint_path().filename().unwrap()),
            Some(PartitionKey::Month(Month::new(2025, 2).unwrap()))
        );
        assert_eq!(pipeline_checkpoint_path("d", "t").filename(), Some(PIPELINE_FILE));
    }

    /// A snapshot partition's objects: `snapshot_date=YYYY-MM-DD` where a month partition
    /// has `month=YYYY-MM`, and the checkpoint's file name reads back into its key.
    #[test]
    fn snapshot_partitions_are_named_by_day() {
        let day = PartitionKey::Day(NaiveDate::from_ymd_opt(2025, 3, 4).unwrap());
        let p = PartitionId::new("ivr", "t", day);
        assert_eq!(
            p.data_path().as_ref(),
            "ivr/tenant_id=t/snapshot_date=2025-03-04/part-00000.parquet"
        );
        assert_eq!(
            p.rejects_path().as_ref(),
            "_rejects/ivr/tenant_id=t/snapshot_date=2025-03-04/rejects.jsonl"
        );
        assert_eq!(
            p.checkpoint_path().as_ref(),
            "_state/ivr/tenant_id=t/snapshot_date=2025-03-04.json"
        );
        assert_eq!(checkpoint_key(p.checkpoint_path().filename().unwrap()), Some(day));
        assert_eq!((day.month(), day.value()), (None, "2025-03-04".to_string()));
    }
}
