//! The last run of each schedule, kept in the lake beside the pipeline's checkpoints
//! (`_state/DATASET/tenant_id=T/schedule-KIND.json`), so that a restarted service catches
//! up a missed run once instead of forgetting it or repeating it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::error::ServiceError;
use super::jobs::JobKind;
use crate::sink::layout::state_folder;

/// The mark of one schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleMark {
    /// The occurrence the last run was started for.
    pub last_run: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum MarkFile {
    #[serde(rename = "1")]
    V1(ScheduleMark),
}

/// Where the mark of `kind` for a pipeline lives.
///
/// ```
/// # use cecsync::service::{jobs::JobKind, marks::mark_path};
/// assert_eq!(
///     mark_path("rbt_recognition", "T", JobKind::Sync).as_ref(),
///     "_state/rbt_recognition/tenant_id=T/schedule-sync.json"
/// );
/// ```
pub fn mark_path(dataset: &str, tenant_id: &str, kind: JobKind) -> Path {
    state_folder(dataset, tenant_id).join(format!("schedule-{}.json", kind.name()))
}

/// Reads a mark; `None` when the schedule never ran.
pub async fn read_mark(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<Option<ScheduleMark>, ServiceError> {
    let failed = |source| ServiceError::Mark { path: path.to_string(), problem: source };
    let bytes = match store.get(path).await {
        Ok(got) => got.bytes().await.map_err(|e| failed(e.to_string()))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(failed(e.to_string())),
    };
    match serde_json::from_slice(&bytes) {
        Ok(MarkFile::V1(mark)) => Ok(Some(mark)),
        Err(e) => Err(failed(format!("corrupt ({e}); delete it to start the schedule afresh"))),
    }
}

/// Writes a mark (one PUT).
pub async fn write_mark(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    mark: &ScheduleMark,
) -> Result<(), ServiceError> {
    let failed = |problem| ServiceError::Mark { path: path.to_string(), problem };
    let body = serde_json::to_vec_pretty(&MarkFile::V1(mark.clone()))
        .map_err(|e| failed(e.to_string()))?;
    store.put(path, PutPayload::from(body)).await.map_err(|e| failed(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    /// A mark round-trips with its version; a missing one reads as never run; a corrupt
    /// one is an error naming its path.
    #[tokio::test]
    async fn marks_round_trip() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = mark_path("d", "t", JobKind::Refresh);
        assert_eq!(read_mark(&store, &path).await.unwrap(), None);
        let mark = ScheduleMark { last_run: "2025-06-01T10:15:00Z".parse().unwrap() };
        write_mark(&store, &path, &mark).await.unwrap();
        assert_eq!(read_mark(&store, &path).await.unwrap(), Some(mark));
        let raw = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert!(String::from_utf8_lossy(&raw).contains("\"version\": \"1\""));
        store.put(&path, PutPayload::from("{")).await.unwrap();
        let err = read_mark(&store, &path).await.unwrap_err().to_string();
        assert!(err.contains("schedule-refresh.json"), "{err}");
    }
}
