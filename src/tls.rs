//! HTTPS for the servers of cecsync (the push receivers, the simulator): a rustls acceptor
//! built from a PEM certificate chain and key, and a listener that completes the TLS
//! handshake before handing a connection to axum.
//!
//! The acceptor names its crypto provider (aws-lc-rs, the one reqwest uses) instead of
//! relying on a process-wide default, so it works whichever providers the build enables and
//! whether or not a default was installed. Only TLS 1.2 and 1.3 are offered.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its handshake before its connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a TLS acceptor (HTTP/1.1) from a PEM certificate chain (leaf first) and its PEM
/// private key.
pub fn acceptor(cert_chain_pem: &[u8], key_pem: &[u8]) -> io::Result<TlsAcceptor> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("the certificate chain is not PEM", &e))?;
    if chain.is_empty() {
        return Err(invalid("the certificate chain", &"holds no certificate"));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("the key is not PEM", &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS protocol versions", &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid("the certificate does not fit the key", &e))?;
    // The servers speak HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener whose connections are TLS sessions over the connections of `L`.
pub struct TlsListener<L> {
    inner: L,
    acceptor: TlsAcceptor,
}

impl<L> TlsListener<L> {
    /// Serves TLS with `acceptor` on the connections of `inner`.
    pub fn new(inner: L, acceptor: TlsAcceptor) -> Self {
        Self { inner, acceptor }
    }
}

impl<L> Listener for TlsListener<L>
where
    L: Listener<Addr = SocketAddr>,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = TlsStream<L::Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = self.inner.accept().await;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, addr),
                // A client that refuses the certificate ends here; the server goes on.
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed."),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out."),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
