//! Opening the lake's object store from the configured destination, and a start-up probe
//! that fails early and clearly when the bucket, endpoint or credentials are wrong.
//!
//! Everything above this module works on `Arc<dyn ObjectStore>`, so a local folder and an
//! S3-compatible bucket (AWS S3, Huawei OBS, MinIO) take the same code path.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::Rng;

use super::layout::STATE_DIR;
use super::SinkError;
use crate::config::Destination;

/// Opens the destination's object store.
///
/// A local folder is created if needed and written with fsync, so a committed object
/// survives a power cut. An S3 bucket takes the standard `AWS_*` variables first, then the
/// configured bucket, endpoint, region and keys; path-style requests are used whenever a
/// custom endpoint is set, as OBS and MinIO expect.
pub fn open_store(dest: &Destination) -> Result<Arc<dyn ObjectStore>, SinkError> {
    match dest {
        Destination::Local { path } => {
            let folder = path.display().to_string();
            std::fs::create_dir_all(path)
                .map_err(|source| SinkError::LocalFolder { path: folder.clone(), source })?;
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
