//! Where each object of a partition lives in the lake.
//!
//! ```text
//! DATASET/tenant_id=T/month=YYYY-MM/part-00000.parquet
//! _rejects/DATASET/tenant_id=T/month=YYYY-MM/rejects.jsonl
//! _state/DATASET/tenant_id=T/month=YYYY-MM.json
//! _state/DATASET/tenant_id=T/pipeline.json
//! ```
//!
//! Every path is built part by part, so a character such as `/` inside a tenant id is
//! percent-encoded instead of adding a folder level.

use object_store::path::{Path, PathPart};

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
const MONTH_KEY: &str = "month=";

/// One month partition of one dataset for one tenant: the unit of replacement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    /// The dataset (pipeline name).
    pub dataset: String,
    /// The tenant.
    pub tenant_id: String,
    /// The month, in the source's zone.
    pub month: Month,
}

impl PartitionId {
    /// Names a partition.
    pub fn new(dataset: impl Into<String>, tenant_id: impl Into<String>, month: Month) -> Self {
        Self { dataset: dataset.into(), tenant_id: tenant_id.into(), month }
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
        let file = format!("{MONTH_KEY}{}.json", self.month);
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
        let [dataset, tenant, month, file] = parts.as_slice() else {
            return Err(bad("expected DATASET/tenant_id=T/month=YYYY-MM/part-00000.parquet"));
        };
        if file.as_ref() != DATA_FILE {
            return Err(bad("the file is not part-00000.parquet"));
        }
        let tenant = decode(tenant.as_ref())
            .strip_prefix(TENANT_KEY)
            .map(str::to_string)
            .ok_or_else(|| bad("the second folder is not tenant_id=T"))?;
        let month = month
            .as_ref()
            .strip_prefix(MONTH_KEY)
            .ok_or_else(|| bad("the third folder is not month=YYYY-MM"))?
            .parse::<Month>()
            .map_err(|e| bad(&e.to_string()))?;
        if tenant.is_empty() {
            return Err(bad("the tenant id is empty"));
        }
        Ok(Self { dataset: decode(dataset.as_ref()), tenant_id: tenant, month })
    }

    fn partition_parts(&self) -> [PathPart<'static>; 3] {
        [
            PathPart::from(self.dataset.clone()),
            PathPart::from(format!("{TENANT_KEY}{}", self.tenant_id)),
            PathPart::from(format!("{MONTH_KEY}{}", self.month)),
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

/// The month of a partition checkpoint's file name (`month=YYYY-MM.json`), if it is one.
///
/// ```
/// # use cecsync::{calendar::Month, sink::layout::checkpoint_month};
/// assert_eq!(checkpoint_month("month=2025-03.json"), Month::new(2025, 3));
/// assert_eq!(checkpoint_month("pipeline.json"), None);
/// ```
pub fn checkpoint_month(file_name: &str) -> Option<Month> {
    file_name.strip_prefix(MONTH_KEY)?.strip_suffix(".json")?.parse().ok()
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
            checkpoint_month(p.checkpoint_path().filename().unwrap()),
            Some(Month::new(2025, 2).unwrap())
        );
        assert_eq!(pipeline_checkpoint_path("d", "t").filename(), Some(PIPELINE_FILE));
    }
}
