//! Checkpoints kept in the lake itself, under `_state/`: one object per partition (a month,
//! or a snapshot's day)
//! (what was written, from which window, with which content hash) and one per pipeline
//! (the sync watermark and the last outcome).
//!
//! A partition checkpoint is written only after its data object (see [`crate::sink`]), in
//! one PUT, so a reader sees the old checkpoint or the new one. Every file carries
//! `"version"`; a checkpoint that does not parse is an error naming its path, never
//! treated as absent (that would silently re-fetch or skip data).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::sink::layout::{checkpoint_key, pipeline_checkpoint_path, state_folder, PartitionKey};
use crate::sink::PartitionId;

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The object store failed.
    #[error("checkpoint {path}: cannot {action} it: {source}")]
    Store {
        /// `read`, `write` or `list`.
        action: &'static str,
        /// The checkpoint object (or folder, when listing).
        path: String,
        /// The underlying error.
        source: Box<object_store::Error>,
    },
    /// The checkpoint is not valid checkpoint JSON.
    #[error("checkpoint {path} is corrupt: {source}; fix or delete it to fetch the slice again")]
    Corrupt {
        /// The checkpoint object.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The checkpoint could not be encoded.
    #[error("checkpoint {path}: cannot encode it: {source}")]
    Encode {
        /// The checkpoint object.
        path: String,
        /// The encoding error.
        source: serde_json::Error,
    },
    /// A checkpoint describes another partition than the one its path names.
    #[error("checkpoint {path} describes {found}, not the partition its path names")]
    Misplaced {
        /// The checkpoint object.
        path: String,
        /// The dataset, tenant and month it holds.
        found: String,
    },
}

/// What the partition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliceState {
    /// The whole month, fetched after it had ended (and any rows merged into it since):
    /// backfill skips it.
    Complete,
    /// The whole month, fetched while it was still running (and any rows merged into it
    /// since): fetched again.
    Open,
    /// Only the parts of the month merged by key by incremental syncs.
    Partial,
    /// A write started and has not been confirmed: fetched again.
    Writing,
}

impl SliceState {
    /// The state of a partition once rows of part of its month have been merged by key into
    /// it, given its state before (`None`: no checkpoint yet). A merge only adds or replaces
    /// keys, so a month held whole (`complete` or `open`) stays as it was; any other
    /// (none, `partial`, or an interrupted write whose outcome is unknown) is `partial`.
    pub fn after_merge(previous: Option<SliceState>) -> SliceState {
        match previous {
            Some(whole @ (SliceState::Complete | SliceState::Open)) => whole,
            Some(SliceState::Partial | SliceState::Writing) | None => SliceState::Partial,
        }
    }
}

impl std::fmt::Display for SliceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SliceState::Complete => "complete",
            SliceState::Open => "open",
            SliceState::Partial => "partial",
            SliceState::Writing => "writing",
        })
    }
}

/// What was committed for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionCheckpoint {
    /// The dataset.
    pub dataset: String,
    /// The tenant.
    pub tenant_id: String,
    /// The month (`"month": "YYYY-MM"`) or the snapshot's day
    /// (`"snapshot_date": "YYYY-MM-DD"`).
    #[serde(flatten)]
    pub key: PartitionKey,
    /// Whether the month was fetched whole, and whether it was over then.
    pub state: SliceState,
    /// Rows in the data object.
    pub rows: u64,
    /// The `total` the API reported for the fetched window. A merge into a month held
    /// whole (`complete` or `open`) keeps the window, total and pages of the whole-month
    /// fetch, so that they stay comparable with `rows`.
    pub api_total: u64,
    /// Records that could not be normalized (kept in `_rejects/`).
    pub rejects: u64,
    /// Pages fetched for the window.
    pub pages: u64,
    /// The newest update time among the rows (epoch ms).
    pub max_update_time_ms: Option<i64>,
    /// First millisecond of the fetched window.
    pub window_begin_ms: i64,
    /// Last millisecond of the fetched window.
    pub window_end_ms: i64,
    /// The data object.
    pub object_path: String,
    /// Size of the data object in bytes.
    pub object_bytes: u64,
    /// SHA-256 of the data object, lowercase hex.
    pub content_sha256: String,
    /// When the partition was committed.
    pub synced_at: DateTime<Utc>,
}

impl PartitionCheckpoint {
    /// The partition this checkpoint describes.
    pub fn partition_id(&self) -> PartitionId {
        PartitionId::new(self.dataset.clone(), self.tenant_id.clone(), self.key)
    }
}

/// The progress of a pipeline for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineCheckpoint {
    /// The dataset.
    pub dataset: String,
    /// The tenant.
    pub tenant_id: String,
    /// Everything up to this instant (epoch ms) has been synced.
    pub watermark_ms: Option<i64>,
    /// When the last sync succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The error of the last attempt, if it failed (never carries a secret).
    pub last_error: Option<String>,
    /// When the last sync was attempted.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The oldest event time (epoch ms) of the records that were still open when last read
    /// (see the pipeline's `records.open_while`): the next sync starts no later than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_since_ms: Option<i64>,
}

impl PipelineCheckpoint {
    /// A pipeline that has never synced.
    pub fn new(dataset: &str, tenant_id: &str) -> Self {
        Self {
            dataset: dataset.to_string(),
            tenant_id: tenant_id.to_string(),
            watermark_ms: None,
            last_success_at: None,
            last_error: None,
            last_attempt_at: None,
            open_since_ms: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum PartitionCheckpointFile {
    #[serde(rename = "1")]
    V1(PartitionCheckpoint),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum PipelineCheckpointFile {
    #[serde(rename = "1")]
    V1(PipelineCheckpoint),
}

/// Reads and writes checkpoints in the lake.
#[derive(Debug, Clone)]
pub struct StateStore {
    store: Arc<dyn ObjectStore>,
}

impl StateStore {
    /// Checkpoints kept in `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// The checkpoint of a partition, if one was written.
    pub async fn partition(
        &self,
        id: &PartitionId,
    ) -> Result<Option<PartitionCheckpoint>, StateError> {
        let path = id.checkpoint_path();
        let Some(PartitionCheckpointFile::V1(cp)) = self.get_json(&path).await? else {
            return Ok(None);
        };
        if &cp.partition_id() != id {
            let found = format!("{}/{}/{}", cp.dataset, cp.tenant_id, cp.key);
            return Err(StateError::Misplaced { path: path.to_string(), found });
        }
        Ok(Some(cp))
    }

    /// Writes a partition checkpoint (one atomic PUT).
    pub async fn put_partition(&self, cp: &PartitionCheckpoint) -> Result<(), StateError> {
        let path = cp.partition_id().checkpoint_path();
        self.put_json(&path, &PartitionCheckpointFile::V1(cp.clone())).await
    }

    /// Every partition checkpoint of a dataset and tenant, sorted by month or day.
    pub async fn partitions(
        &self,
        dataset: &str,
        tenant_id: &str,
    ) -> Result<Vec<PartitionCheckpoint>, StateError> {
        let folder = state_folder(dataset, tenant_id);
        let listed: Vec<_> =
            self.store.list(Some(&folder)).try_collect().await.map_err(|source| {
                StateError::Store {
                    action: "list",
                    path: folder.to_string(),
                    source: Box::new(source),
                }
            })?;
        let mut ids: Vec<PartitionId> = listed
            .iter()
            .filter(|meta| meta.location.parts().count() == folder.parts().count() + 1)
            .filter_map(|meta| checkpoint_key(meta.location.filename()?))
            .map(|key| PartitionId::new(dataset, tenant_id, key))
            .collect();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(cp) = self.partition(&id).await? {
                out.push(cp);
            }
        }
        Ok(out)
    }

    /// The pipeline checkpoint of a dataset and tenant, if one was written.
    pub async fn pipeline(
        &self,
        dataset: &str,
        tenant_id: &str,
    ) -> Result<Option<PipelineCheckpoint>, StateError> {
        let path = pipeline_checkpoint_path(dataset, tenant_id);
        let Some(PipelineCheckpointFile::V1(cp)) = self.get_json(&path).await? else {
            return Ok(None);
        };
        if cp.dataset != dataset || cp.tenant_id != tenant_id {
            let found = format!("{}/{}", cp.dataset, cp.tenant_id);
            return Err(StateError::Misplaced { path: path.to_string(), found });
        }
        Ok(Some(cp))
    }

    /// Writes a pipeline checkpoint (one atomic PUT).
    pub async fn put_pipeline(&self, cp: &PipelineCheckpoint) -> Result<(), StateError> {
        let path = pipeline_checkpoint_path(&cp.dataset, &cp.tenant_id);
        self.put_json(&path, &PipelineCheckpointFile::V1(cp.clone())).await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, StateError> {
        let read_err = |source| StateError::Store {
            action: "read",
            path: path.to_string(),
            source: Box::new(source),
        };
        let bytes = match self.store.get(path).await {
            Ok(got) => got.bytes().await.map_err(read_err)?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(read_err(source)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path: path.to_string(), source })
    }

    async fn put_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), StateError> {
        let mut body = serde_json::to_vec_pretty(value)
            .map_err(|source| StateError::Encode { path: path.to_string(), source })?;
        body.push(b'\n');
        self.store.put(path, PutPayload::from(body)).await.map_err(|source| StateError::Store {
            action: "write",
            path: path.to_string(),
            source: Box::new(source),
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;

    use super::*;

    fn partition_cp(month: &str) -> PartitionCheckpoint {
        PartitionCheckpoint {
            dataset: "rbt_recognition".into(),
            tenant_id: "202101".into(),
            key: PartitionKey::Month(month.parse().unwrap()),
            state: SliceState::Complete,
            rows: 10,
            api_total: 11,
            rejects: 1,
            pages: 1,
            max_update_time_ms: Some(1_735_689_600_000),
            window_begin_ms: 1_735_660_800_000,
            window_end_ms: 1_738_339_199_999,
            object_path: format!(
                "rbt_recognition/tenant_id=202101/month={month}/part-00000.parquet"
            ),
            object_bytes: 1234,
            content_sha256: "ab".repeat(32),
            synced_at: DateTime::from_timestamp_millis(1_738_400_000_000).unwrap(),
        }
    }

    fn stores() -> Vec<(Arc<dyn ObjectStore>, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        vec![(Arc::new(InMemory::new()), None), (Arc::new(local), Some(dir))]
    }

    /// Partition checkpoints round-trip, carry `"version":"1"` and list sorted by month,
    /// ignoring the pipeline checkpoint beside them.
    #[tokio::test]
    async fn partition_checkpoints_round_trip_and_list_by_month() {
        for (store, _dir) in stores() {
            let state = StateStore::new(store.clone());
            let id = partition_cp("2025-01").partition_id();
            assert_eq!(state.partition(&id).await.unwrap(), None);
            assert!(state.partitions("rbt_recognition", "202101").await.unwrap().is_empty());
            for month in ["2025-03", "2024-12", "2025-01"] {
                state.put_partition(&partition_cp(month)).await.unwrap();
            }
            state.put_pipeline(&pipeline_cp()).await.unwrap();
            assert_eq!(state.partition(&id).await.unwrap(), Some(partition_cp("2025-01")));
            let listed = state.partitions("rbt_recognition", "202101").await.unwrap();
            let months: Vec<_> = listed.iter().map(|c| c.key.value()).collect();
            assert_eq!(months, ["2024-12", "2025-01", "2025-03"]);

            let raw = store.get(&id.checkpoint_path()).await.unwrap().bytes().await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
            assert_eq!(json["version"], "1");
            assert_eq!(json["state"], "complete");
            let text = String::from_utf8(raw.to_vec()).unwrap();
            let head = "{\n  \"version\": \"1\",\n  \"dataset\": \"rbt_recognition\",\n  \
                        \"tenant_id\": \"202101\",\n  \"month\": \"2025-01\",\n  \"state\"";
            assert!(text.starts_with(head), "the month checkpoint keeps its layout: {text}");
        }
    }

    /// A snapshot's checkpoint names its day in `snapshot_date`, lives beside the month
    /// checkpoints' folder layout and lists by day; one naming both or neither is corrupt.
    #[tokio::test]
    async fn snapshot_checkpoints_round_trip_by_day() {
        for (store, _dir) in stores() {
            let state = StateStore::new(store.clone());
            let mut days = Vec::new();
            for day in ["2025-03-05", "2025-03-04"] {
                let mut cp = partition_cp("2025-03");
                cp.key = format!("snapshot_date={day}").parse().unwrap();
                state.put_partition(&cp).await.unwrap();
                days.push(cp);
            }
            let listed = state.partitions("rbt_recognition", "202101").await.unwrap();
            assert_eq!(listed, [days[1].clone(), days[0].clone()]);
            let path = days[1].partition_id().checkpoint_path();
            assert_eq!(
                path.as_ref(),
                "_state/rbt_recognition/tenant_id=202101/snapshot_date=2025-03-04.json"
            );
            let raw = store.get(&path).await.unwrap().bytes().await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
            assert_eq!(
                (json["snapshot_date"].as_str(), json.get("month")),
                (Some("2025-03-04"), None)
            );
            let both = String::from_utf8(raw.to_vec())
                .unwrap()
                .replace("\"snapshot_date\"", "\"month\": \"2025-03\",\n  \"snapshot_date\"");
            store.put(&path, PutPayload::from(both)).await.unwrap();
            let err = state.partition(&days[1].partition_id()).await.unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        }
    }

    fn pipeline_cp() -> PipelineCheckpoint {
        PipelineCheckpoint {
            dataset: "rbt_recognition".into(),
            tenant_id: "202101".into(),
            watermark_ms: Some(1_738_339_199_999),
            last_success_at: DateTime::from_timestamp_millis(1_738_400_000_000),
            last_error: Some("page 3: HTTP 502".into()),
            last_attempt_at: DateTime::from_timestamp_millis(1_738_400_100_000),
            open_since_ms: Some(1_738_300_000_000),
        }
    }

    /// The pipeline checkpoint round-trips and carries `"version":"1"`.
    #[tokio::test]
    async fn pipeline_checkpoint_round_trips() {
        for (store, _dir) in stores() {
            let state = StateStore::new(store.clone());
            assert_eq!(state.pipeline("rbt_recognition", "202101").await.unwrap(), None);
            state.put_pipeline(&pipeline_cp()).await.unwrap();
            assert_eq!(
                state.pipeline("rbt_recognition", "202101").await.unwrap(),
                Some(pipeline_cp())
            );
            let path = pipeline_checkpoint_path("rbt_recognition", "202101");
            let raw = store.get(&path).await.unwrap().bytes().await.unwrap();
            assert!(String::from_utf8_lossy(&raw).contains(r#""version": "1""#));
        }
    }

    /// A checkpoint that does not parse, or has an unknown version, is an error naming its
    /// path — never treated as absent.
    #[tokio::test]
    async fn corrupt_checkpoints_are_errors_naming_the_path() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let state = StateStore::new(store.clone());
        let id = partition_cp("2025-01").partition_id();
        let path = id.checkpoint_path();
        for body in ["{\"version\":\"1\",\"rows\":", r#"{"version":"2","dataset":"x"}"#, "{}"] {
            store.put(&path, PutPayload::from(body.to_string())).await.unwrap();
            let err = state.partition(&id).await.unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains(path.as_ref()), "{err}");
            assert!(state.partitions("rbt_recognition", "202101").await.is_err());
        }
        let pipe = pipeline_checkpoint_path("d", "t");
        store.put(&pipe, PutPayload::from("not json")).await.unwrap();
        assert!(matches!(state.pipeline("d", "t").await, Err(StateError::Corrupt { .. })));
    }

    /// A checkpoint copied to another partition's path is refused, and one with a
    /// malformed month is corrupt.
    #[tokio::test]
    async fn misplaced_and_malformed_checkpoints_are_refused() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let state = StateStore::new(store.clone());
        state.put_partition(&partition_cp("2025-01")).await.unwrap();
        let jan = partition_cp("2025-01").partition_id();
        let feb = partition_cp("2025-02").partition_id();
        store.copy(&jan.checkpoint_path(), &feb.checkpoint_path()).await.unwrap();
        assert!(matches!(state.partition(&feb).await, Err(StateError::Misplaced { .. })));
        let raw = store.get(&jan.checkpoint_path()).await.unwrap().bytes().await.unwrap();
        let bad = String::from_utf8(raw.to_vec()).unwrap().replace("2025-01\"", "2025-1\"");
        store.put(&jan.checkpoint_path(), PutPayload::from(bad)).await.unwrap();
        assert!(matches!(state.partition(&jan).await, Err(StateError::Corrupt { .. })));
    }

    /// A merge keeps a whole month `complete` or `open`; a month not held whole, or whose
    /// last write was interrupted, is `partial` after it.
    #[test]
    fn a_merge_keeps_whole_months_whole() {
        use SliceState::*;
        assert_eq!(SliceState::after_merge(Some(Complete)), Complete);
        assert_eq!(SliceState::after_merge(Some(Open)), Open);
        assert_eq!(SliceState::after_merge(Some(Partial)), Partial);
        assert_eq!(SliceState::after_merge(Some(Writing)), Partial);
        assert_eq!(SliceState::after_merge(None), Partial);
    }
}
