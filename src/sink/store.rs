//! Opening the lake's object store from the configured destination, and a start-up probe
//! that fails early and clearly when the bucket, endpoint or credentials are wrong.
//!
//! Everything above this module works on `Arc<dyn ObjectStore>`, so a local folder and an
//! S3-compatible bucket (AWS S3, Huawei OBS, MinIO) take the same code path.
//!
//! # Uploads cut short
//! A process killed in the middle of an upload leaves no half-written object that a reader
//! could see, but it may leave debris:
//! - in a local folder, `LocalFileSystem` writes each object to a staging file `NAME#N` and
//!   renames it into place; a killed run leaves the staging file. [`open_store`] removes
//!   them (see [`sweep_staging_files`]) every time the lake is opened.
//! - in an S3 bucket, a multipart upload (objects over 10 MiB) that was never completed
//!   stays stored, invisible to listings and readers but billed, until it is aborted. The
//!   bucket's lifecycle rule cleans them: on AWS S3 and MinIO an
//!   `AbortIncompleteMultipartUpload` rule (for example after 1 day), on Huawei OBS the
//!   lifecycle rule for fragments. Smaller objects are single PUTs and leave nothing.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::Rng;
use tracing::warn;

use super::layout::STATE_DIR;
use super::SinkError;
use crate::config::Destination;

/// Opens the destination's object store.
///
/// A local folder is created if needed, swept of the staging files of uploads cut short
/// (see [`sweep_staging_files`]), and written with fsync, so a committed object survives a
/// power cut. An S3 bucket takes the standard `AWS_*` variables first, then the
/// configured bucket, endpoint, region and keys; path-style requests are used whenever a
/// custom endpoint is set, as OBS and MinIO expect.
pub fn open_store(dest: &Destination) -> Result<Arc<dyn ObjectStore>, SinkError> {
    match dest {
        Destination::Local { path } => {
            let folder = path.display().to_string();
            std::fs::create_dir_all(path)
                .map_err(|source| SinkError::LocalFolder { path: folder.clone(), source })?;
            let removed = sweep_staging_files(path)?;
            if removed > 0 {
                warn!(folder, removed, "Removed the staging files of uploads cut short.");
            }
            let store = LocalFileSystem::new_with_prefix(path)
                .map_err(|source| SinkError::Configure {
                    destination: folder,
                    source: Box::new(source),
                })?
                .with_fsync(true)
                .with_automatic_cleanup(true);
            Ok(Arc::new(store))
        }
        Destination::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            allow_http,
            access_key_id,
            secret_access_key,
        } => {
            let mut builder =
                AmazonS3Builder::from_env().with_bucket_name(bucket).with_allow_http(*allow_http);
            if let Some(endpoint) = endpoint {
                builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
            }
            if let Some(region) = region {
                builder = builder.with_region(region);
            }
            if let Some(key) = access_key_id {
                builder = builder.with_access_key_id(key.expose());
            }
            if let Some(secret) = secret_access_key {
                builder = builder.with_secret_access_key(secret.expose());
            }
            let s3 = builder.build().map_err(|source| SinkError::Configure {
                destination: describe(dest),
                source: Box::new(source),
            })?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Ok(Arc::new(s3))
            } else {
                Ok(Arc::new(PrefixStore::new(s3, prefix)))
            }
        }
    }
}

/// Removes, under the lake folder `root`, the staging files `NAME#N` (N all digits) that
/// `LocalFileSystem` writes before renaming an object into place, and that stay behind when
/// the process dies mid-upload; returns how many were removed. Such names are never objects:
/// the store encodes `#` in object names and hides these files from listings.
///
/// A lake has a single writer: a second process uploading into the same folder at this
/// moment would lose its staging file and fail its commit loudly, never half-commit it.
pub fn sweep_staging_files(root: &std::path::Path) -> Result<u64, SinkError> {
    let fail = |path: &std::path::Path, source| SinkError::Sweep {
        path: path.display().to_string(),
        source,
    };
    let mut removed = 0;
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).map_err(|e| fail(&folder, e))? {
            let entry = entry.map_err(|e| fail(&folder, e))?;
            let kind = entry.file_type().map_err(|e| fail(&entry.path(), e))?;
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() && is_staging_name(&entry.file_name().to_string_lossy()) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(fail(&entry.path(), e)),
                }
            }
        }
    }
    Ok(removed)
}

/// True for `LocalFileSystem`'s staging names: `NAME#N` with N a non-empty run of digits.
fn is_staging_name(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Writes, reads back and deletes a small object under `_state/.probe-<random>` of `store`
/// (opened from `dest`), so that a missing bucket, a wrong endpoint or a refused key is
/// reported at start; the error names the destination as [`describe`] does.
pub async fn probe(store: &dyn ObjectStore, dest: &Destination) -> Result<(), SinkError> {
    let name = format!(".probe-{:016x}", rand::rng().random::<u64>());
    let path = Path::from(STATE_DIR).join(name.as_str());
    let body = format!("cecsync probe {name}");
    let fail = |step, source| SinkError::Probe {
        store: describe(dest),
        step,
        path: path.to_string(),
        source: Box::new(source),
    };
    store.put(&path, PutPayload::from(body.clone())).await.map_err(|e| fail("write", e))?;
    let read = match store.get(&path).await {
        Ok(got) => got.bytes().await.map_err(|e| fail("read", e)),
        Err(e) => Err(fail("read", e)),
    };
    let deleted = store.delete(&path).await.map_err(|e| fail("delete", e));
    if read?.as_ref() != body.as_bytes() {
        return Err(SinkError::ProbeMismatch { store: describe(dest), path: path.to_string() });
    }
    deleted
}

/// The destination in words, for errors and logs: the folder, or the bucket, prefix and
/// endpoint — never a credential.
///
/// ```
/// # use cecsync::{config::Destination, sink::store::describe};
/// let dest = Destination::S3 {
///     bucket: "lake".into(), prefix: "cec".into(), endpoint: Some("https://obs.example".into()),
///     region: None, allow_http: false, access_key_id: None, secret_access_key: None,
/// };
/// assert_eq!(describe(&dest), "s3://lake/cec at https://obs.example");
/// ```
pub fn describe(dest: &Destination) -> String {
    match dest {
        Destination::Local { path } => format!("folder {}", path.display()),
        Destination::S3 { bucket, prefix, endpoint, .. } => {
            let place = format!("s3://{bucket}/{}", prefix.trim_matches('/'));
            match endpoint {
                Some(endpoint) => format!("{place} at {endpoint}"),
                None => place,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::memory::InMemory;

    use super::*;
    use crate::secret::Secret;

    /// A local destination is created on demand and passes the probe, which leaves nothing
    /// behind.
    #[tokio::test]
    async fn local_folder_is_created_and_probed() {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("nested/lake");
        let dest = Destination::Local { path: lake.clone() };
        let store = open_store(&dest).unwrap();
        probe(store.as_ref(), &dest).await.unwrap();
        probe(&InMemory::new(), &dest).await.unwrap();
        assert!(lake.is_dir());
        let left: Vec<_> = walk(&lake);
        assert!(left.iter().all(|p| !p.contains(".probe-")), "{left:?}");
    }

    /// Opening a local lake removes the staging files of uploads cut short, at any depth,
    /// and keeps every object, names with a `#` that are not staging names included.
    #[tokio::test]
    async fn opening_a_local_lake_sweeps_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let month = lake.join("ds/tenant_id=T/month=2025-01");
        std::fs::create_dir_all(&month).unwrap();
        for name in ["part-00000.parquet", "part-00000.parquet#1", "part-00000.parquet#27"] {
            std::fs::write(month.join(name), b"x").unwrap();
        }
        std::fs::create_dir_all(lake.join("_state")).unwrap();
        for name in ["m.json#3", "m.json", "notes#draft", "odd#"] {
            std::fs::write(lake.join("_state").join(name), b"{}").unwrap();
        }
        let store = open_store(&Destination::Local { path: lake.clone() }).unwrap();
        let mut left: Vec<_> = walk(&lake)
            .iter()
            .map(|p| p.strip_prefix(&*lake.to_string_lossy()).unwrap().to_string())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "/_state/m.json",
                "/_state/notes#draft",
                "/_state/odd#",
                "/ds/tenant_id=T/month=2025-01/part-00000.parquet"
            ]
        );
        let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 4, "{listed:?}");
        assert_eq!(sweep_staging_files(&lake).unwrap(), 0, "nothing is left to sweep");
    }

    /// A store that refuses the key fails the probe at once, with an error that names the
    /// bucket and never shows the secret key.
    #[tokio::test]
    async fn refused_probe_names_the_bucket_not_the_secret() {
        let endpoint = refusing_server().await;
        let dest = Destination::S3 {
            bucket: "lake-bucket".into(),
            prefix: "cec/".into(),
            endpoint: Some(endpoint),
            region: Some("cn-north-4".into()),
            allow_http: true,
            access_key_id: Some(Secret::new("AKIDEXAMPLE")),
            secret_access_key: Some(Secret::new("very-secret-key")),
        };
        let store = open_store(&dest).unwrap();
        let err = probe(store.as_ref(), &dest).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(matches!(err, SinkError::Probe { step: "write", .. }), "{text}");
        assert!(text.contains("lake-bucket"), "{text}");
        assert!(!text.contains("very-secret-key"), "{text}");
    }

    /// An HTTP server on loopback that answers every request with S3's 403
    /// `SignatureDoesNotMatch`; returns its URL.
    async fn refusing_server() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let body = "<Error><Code>SignatureDoesNotMatch</Code>\
                            <Message>The signature does not match.</Message></Error>";
                let reply = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    fn walk(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
        out
    }
}
