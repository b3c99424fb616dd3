//! Serving the receivers on their own listener (HTTPS with the configured certificate, or
//! plain HTTP behind a proxy), and the compaction loop of the service.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use object_store::ObjectStore;

use super::compact::{CompactError, Compactor};
use super::receiver::{PeerAddr, Receivers};
use super::spool::{Spool, SpoolError, SpoolOptions};
use crate::config::{PushSettings, Settings};
use crate::telemetry::Telemetry;
use crate::tls::{acceptor, TlsListener};

/// Why the receivers could not start.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The listen address could not be bound.
    #[error("push.listen {addr}: {source}")]
    Listen { addr: String, source: io::Error },
    /// The certificate or key could not be read or used.
    #[error("push.tls_cert / push.tls_key ({file}): {source}")]
    Tls { file: String, source: io::Error },
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// A compaction failed.
    #[error(transparent)]
    Compact(#[from] CompactError),
}

/// The receivers, serving until [`Self::shutdown`].
pub struct RunningReceivers {
    /// The address bound (the configured one, with the port chosen when it was 0).
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl RunningReceivers {
    /// `scheme://addr`, the base of every receiver's URL.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops accepting pushes and waits for the ones in flight to be answered.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Err(e)) => warn!(error = %e, "Push receivers failed."),
            Err(e) => warn!(error = %e, "Push receiver task failed."),
            Ok(Ok(())) => {}
        }
    }
}

/// Opens the spool of `push`, serves its receivers (counting in `telemetry`), and returns
/// them with the compactor of that spool into the lake `store` of `settings`.
pub async fn start(
    settings: &Settings,
    push: &PushSettings,
    store: Arc<dyn ObjectStore>,
    telemetry: Arc<Telemetry>,
) -> Result<(RunningReceivers, Compactor), PushError> {
    let spool = Spool::open(&push.spool_dir, SpoolOptions::default())?;
    let compactor = Compactor::new(settings, push, store, spool.clone())?;
    let receivers = Arc::new(Receivers::new(push, spool, telemetry));
    Ok((serve(push, receivers).await?, compactor))
}

/// Serves `receivers` on `settings.listen`, over TLS when a certificate is configured.
pub async fn serve(
    settings: &PushSettings,
    receivers: Arc<Receivers>,
) -> Result<RunningReceivers, PushError> {
    let addr = settings.listen;
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| PushError::Listen { addr: addr.to_string(), source })?;
    let bound =
        tcp.local_addr().map_err(|source| PushError::Listen { addr: addr.to_string(), source })?;
    let app = receivers.router(settings).into_make_service_with_connect_info::<PeerAddr>();
    let (stop, stopped) = oneshot::channel::<()>();
    let until_stopped = async {
        let _ = stopped.await;
    };
    let (scheme, task) = match &settings.tls {
        Some(files) => {
            let read = |path: &std::path::Path| {
                std::fs::read(path)
                    .map_err(|source| PushError::Tls { file: path.display().to_string(), source })
            };
            let (cert, key) = (read(&files.cert)?, read(&files.key)?);
            let tls = acceptor(&cert, &key).map_err(|source| PushError::Tls {
                file: files.cert.display().to_string(),
                source,
            })?;
            let listener = TlsListener::new(tcp, tls);
            let server = axum::serve(listener, app).with_graceful_shutdown(until_stopped);
            ("https", tokio::spawn(async move { server.await }))
        }
        None => {
            let server = axum::serve(tcp, app).with_graceful_shutdown(until_stopped);
            ("http", tokio::spawn(async move { server.await }))
        }
    };
    info!(addr = %bound, scheme, "Push receivers listening.");
    Ok(RunningReceivers { addr: bound, scheme, stop, task })
}
