//! Test fixtures: a simulator on a free loopback port and a plain JSON POST.

use std::sync::Arc;

use axum::body::Bytes;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::server::{serve, RunningSim};
use super::simulator::Simulator;

/// An answer as the client saw it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Serves `sim` on `127.0.0.1:0`.
pub(crate) async fn start(sim: &Arc<Simulator>) -> RunningSim {
    serve(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// POSTs `body` as JSON to `url`; transport errors are returned.
pub(crate) async fn send(url: &str, body: &Value) -> Result<Reply, reqwest::Error> {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json; charset=UTF-8")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok(Reply { status, headers, body })
}

/// POSTs `body` as JSON to `url` and returns the status and the body.
pub(crate) async fn post(url: &str, body: &Value) -> (u16, Bytes) {
    let reply = send(url, body).await.unwrap();
    (reply.status, reply.body)
}
