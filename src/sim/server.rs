//! The simulator's HTTP(S) server: routes, binding, and a handle that stops it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::faults::{self, ConnectionHandle, ResettableStream};
use super::simulator::Simulator;
use super::stats::Event;
use super::{appraise, auth, cdr, cms, fabric_auth, gateway, isales, rbt, signed};
use crate::tls::{self, TlsListener};

/// How long [`RunningSim::shutdown`] waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A server started by [`serve`]. It stops on [`RunningSim::shutdown`] or when dropped.
#[derive(Debug)]
pub struct RunningSim {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http://ADDR` (or `https://ADDR`), the base URL for a client.
    pub base_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl RunningSim {
    /// Stops accepting connections and waits (a few seconds at most) for requests in flight.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "Simulator server failed."),
                Ok(Err(e)) => tracing::warn!(error = %e, "Simulator server task failed."),
                Err(_) => task.abort(),
            }
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `sim` over HTTP on `listen` (port 0 picks a free port) until the returned handle
/// is shut down or dropped.
pub async fn serve(sim: Arc<Simulator>, listen: SocketAddr) -> io::Result<RunningSim> {
    let listener = SimListener(TcpListener::bind(listen).await?);
    start(sim, listener, "http")
}

/// Serves `sim` over HTTPS on `listen` with a PEM certificate chain (leaf first) and its PEM
/// private key, until the returned handle is shut down or dropped. The base URL names the
/// listening IP address, so the certificate must hold it as a subject alternative name.
pub async fn serve_tls(
    sim: Arc<Simulator>,
    listen: SocketAddr,
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> io::Result<RunningSim> {
    let acceptor = tls::acceptor(cert_chain_pem, key_pem)?;
    let listener = SimListener(TcpListener::bind(listen).await?);
    start(sim, TlsListener::new(listener, acceptor), "https")
}

/// Runs the routes of `sim` on `listener` in a task; `scheme` names the base URL's scheme.
fn start<L>(sim: Arc<Simulator>, listener: L, scheme: &str) -> io::Result<RunningSim>
where
    L: Listener<Addr = SocketAddr>,
    ConnectionHandle: for<'a> Connected<IncomingStream<'a, L>>,
{
    let addr = listener.local_addr()?;
    let app = router(sim).into_make_service_with_connect_info::<ConnectionHandle>();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                // A dropped sender stops the server as well.
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, scheme, "Simulator listening.");
    Ok(RunningSim {
        addr,
        base_url: format!("{scheme}://{addr}"),
        stop: Some(stop),
        task: Some(task),
    })
}

/// The API Fabric prefix of the quality-inspection routes (`{service}` is CCSQM or CCISQM).
const INSPECTION: &str = "/apiaccess/{service}/rest/ccisqm/v1/appraisecall";

/// The CC-Gateway prefix of the agent routes.
const AGENT: &str = "/agentgateway/resource/onlineagent";

/// The routes: the APIs under `/oifde`, `/apiaccess` and `/agentgateway` (with faults), the
/// API Fabric token route and the CC-Gateway login (counted, without faults: a login failing
/// at random would make every fault test depend on the client's login retries rather than
/// on the data requests it exercises), and `/_sim/health` (neither).
fn router(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route("/oifde/rest/api/gettoken", post(auth::get_token))
        .route("/oifde/rest/api/queryRbtRecognitionResult", post(rbt::query))
        .route(&format!("{INSPECTION}/details"), post(appraise::details))
        .route(&format!("{INSPECTION}/detail"), post(appraise::detail))
        .route("/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord", post(cdr::query))
        .route(&format!("{AGENT}/{{agent}}/agentskills"), get(gateway::agent_skills))
        .route(
            &format!("{AGENT}/{{agent}}/agentskillsbyworkno/{{workno}}"),
            get(gateway::skills_by_work_no),
        )
        .merge(signed_routes(sim.clone()))
        .route_layer(middleware::from_fn_with_state(sim.clone(), faults::inject))
        .route("/apigovernance/api/oauth/tokenByAkSk", post(fabric_auth::token_by_ak_sk))
        .route("/agentgateway/resource/config/login", post(gateway::login))
        .route_layer(middleware::from_fn_with_state(sim.clone(), count))
        .route("/_sim/health", get(|| async { "ok" }))
        .with_state(sim)
}

/// The CMS prefix of the C2-signed statistics routes.
const CMS: &str = "/rest/cmsapp/v1";
/// The iSales prefix of the C2-signed campaign routes.
const ISALES: &str = "/rest/isales/v1/openapi/campaigns";

/// The C2-signed routes (CMS and iSales), each behind the signature check.
fn signed_routes(sim: Arc<Simulator>) -> Router<Arc<Simulator>> {
    Router::new()
        .route(&format!("{CMS}/callinday/querymanualindexesbycondition"), post(cms::callin_day))
        .route(&format!("{CMS}/calloutday/querymanualindexesbycondition"), post(cms::callout_day))
        .route(&format!("{CMS}/callin/queryMissedCalls"), post(cms::missed_calls))
        .route(&format!("{CMS}/openapi/vdn/queryivrprocessinnoinfo"), post(cms::ivr_flows))
        .route(&format!("{ISALES}/{{vdn}}"), get(isales::campaigns))
        .route(&format!("{ISALES}/{{vdn}}/callresult/{{campaign}}"), post(isales::call_results))
        .route_layer(middleware::from_fn_with_state(sim, signed::verify))
}

/// Counts every API request and how many are in flight at once.
async fn count(State(sim): State<Arc<Simulator>>, request: Request, next: Next) -> Response {
    sim.counters().record(Event::Request);
    let _in_flight = sim.counters().enter();
    next.run(request).await
}

/// A TCP listener whose connections can be broken by the reset fault.
pub(super) struct SimListener(TcpListener);

impl Listener for SimListener {
    type Io = ResettableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    // Small JSON answers should not wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    return (ResettableStream::new(stream), addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, then try again.
                    tracing::warn!(error = %e, "Simulator could not accept a connection.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnectionHandle {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.io().handle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::test_support::start;
    use crate::sim::{FaultOptions, SimOptions};

    async fn get(url: &str) -> Result<(u16, String), reqwest::Error> {
        let reply = reqwest::get(url).await?;
        Ok((reply.status().as_u16(), reply.text().await?))
    }

    /// Health answers "ok", is not subject to faults, and is not counted as an API request.
    #[tokio::test]
    async fn health_is_ok_even_when_everything_fails() {
        let faults = FaultOptions { error_rate: 1.0, reset_rate: 1.0, ..Default::default() };
        let sim = Arc::new(Simulator::new(SimOptions { faults, ..SimOptions::default() }));
        let running = start(&sim).await;
        let health = get(&format!("{}/_sim/health", running.base_url)).await.unwrap();
        assert_eq!(health, (200, "ok".to_string()));
        assert_eq!(sim.stats().requests, 0);
        running.shutdown().await;
    }

    /// After shutdown, and after a drop, the port no longer answers.
    #[tokio::test]
    async fn shutdown_and_drop_stop_the_server() {
        let sim = Arc::new(Simulator::new(SimOptions::default()));
        let running = start(&sim).await;
        let url = format!("{}/_sim/health", running.base_url);
        assert!(get(&url).await.is_ok());
        running.shutdown().await;
        assert!(get(&url).await.is_err());

        let running = start(&sim).await;
        let url = format!("{}/_sim/health", running.base_url);
        drop(running);
        let mut refused = false;
        for _ in 0..50 {
            if get(&url).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "a dropped server stops listening");
    }
}
