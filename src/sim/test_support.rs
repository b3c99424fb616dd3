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
    send_with(url, &[], body).await
}

/// POSTs `body` as JSON to `url` with extra `headers`; transport errors are returned.
pub(crate) async fn send_with(
    url: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Result<Reply, reqwest::Error> {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json; charset=UTF-8")
        .body(serde_json::to_vec(body).unwrap());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok(Reply { status, headers, body })
}

/// A token from the simulator's `tokenByAkSk` with the default credentials.
pub(crate) async fn fabric_token(base_url: &str) -> String {
    let url = format!("{base_url}/apigovernance/api/oauth/tokenByAkSk");
    let body = serde_json::json!({"app_key": "sim-fabric-ak", "app_secret": "sim-fabric-sk"});
    let reply = send(&url, &body).await.unwrap();
    assert_eq!(reply.status, 200);
    let reply: Value = serde_json::from_slice(&reply.body).unwrap();
    reply["AccessToken"].as_str().unwrap().to_string()
}

/// POSTs `body` to `url` as an API Fabric client does (Bearer `token`, the default
/// operator in `x-UserId`) and returns the status and the JSON answer.
pub(crate) async fn fabric_post(url: &str, token: &str, body: &Value) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str()), ("x-UserId", "1611917095665261978")];
    let reply = send_with(url, &headers, body).await.unwrap();
    (reply.status, serde_json::from_slice(&reply.body).unwrap_or(Value::Null))
}

/// POSTs `body` as JSON to `url` and returns the status and the body.
pub(crate) async fn post(url: &str, body: &Value) -> (u16, Bytes) {
    let reply = send(url, body).await.unwrap();
    (reply.status, reply.body)
}
