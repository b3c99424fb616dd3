//! HTTPS for the simulator: the shared TLS listener ([`crate::tls`]) over the simulator's
//! resettable streams, whose connections the fault injection can still cut.

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;

use super::faults::ConnectionHandle;
use super::server::SimListener;
use crate::tls::TlsListener;

impl Connected<IncomingStream<'_, TlsListener<SimListener>>> for ConnectionHandle {
    fn connect_info(stream: IncomingStream<'_, TlsListener<SimListener>>) -> Self {
        stream.io().get_ref().0.handle()
    }
}
