//! Test fixtures: a simulator on a free loopback port, a plain JSON POST and C2-signed
//! requests.

use std::sync::Arc;

use std::borrow::Cow;

use axum::body::Bytes;
use chrono::Utc;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::secret::Secret;
use crate::source::signature::{RequestParts, Signer, TimestampPrecision};

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

/// The AK the simulator accepts by default on its C2-signed routes.
pub(crate) const C2_AK: &str = "sim-c2-ak";
/// The simulator's default C2 SK.
pub(crate) const C2_SK: &str = "sim-c2-sk";

/// Sends `method` to `url` with the `query` pairs and `body`, signed with `ak`/`sk` as a C2
/// client does (`content-length;content-type;host` with a body, `host` alone without);
/// `tamper` may change the request after signing. Returns the status and the JSON answer
/// (`Null` when the body is not JSON).
pub(crate) async fn signed(
    method: reqwest::Method,
    url: &str,
    (ak, sk): (&str, &str),
    query: &[(&str, &str)],
    body: Option<&Value>,
    tamper: impl FnOnce(&mut reqwest::Request),
) -> (u16, Value) {
    let mut url = reqwest::Url::parse(url).unwrap();
    if !query.is_empty() {
        url.set_query(Some(&crate::source::signature::canonical_query(query)));
    }
    let host = format!("{}:{}", url.host_str().unwrap(), url.port_or_known_default().unwrap());
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
    let mut headers = vec![("host", host)];
    if let Some(bytes) = &bytes {
        headers.push(("content-type", "application/json;charset=UTF-8".to_string()));
        headers.push(("content-length", bytes.len().to_string()));
    }
    let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
    let signer = Signer::new(ak, Secret::new(sk), &names, TimestampPrecision::Milliseconds);
    let parts = RequestParts {
        method: Cow::Borrowed(method.as_str()),
        path: Cow::Owned(url.path().to_string()),
        query: query.iter().map(|(k, v)| (Cow::Borrowed(*k), Cow::Borrowed(*v))).collect(),
        headers: headers
            .iter()
            .map(|(n, v)| (Cow::Borrowed(*n), Cow::Borrowed(v.as_str())))
            .collect(),
        body: bytes.as_deref().unwrap_or_default(),
    };
    let authorization = signer.authorization(&parts, Utc::now()).unwrap();
    let client = reqwest::Client::new();
    let mut builder = client.request(method, url).header("authorization", authorization);
    for (name, value) in &headers {
        builder = builder.header(*name, value);
    }
    if let Some(bytes) = bytes {
        builder = builder.body(bytes);
    }
    let mut request = builder.build().unwrap();
    tamper(&mut request);
    let response = client.execute(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// [`signed`] POST of `body` with the default AK and SK.
pub(crate) async fn signed_post(url: &str, body: &Value) -> (u16, Value) {
    signed(reqwest::Method::POST, url, (C2_AK, C2_SK), &[], Some(body), |_| {}).await
}

/// [`signed`] GET with `query`, the default AK and SK.
pub(crate) async fn signed_get(url: &str, query: &[(&str, &str)]) -> (u16, Value) {
    signed(reqwest::Method::GET, url, (C2_AK, C2_SK), query, None, |_| {}).await
}

/// Adds the records of one page of an answer (the array `reply[array]`) to `rows` by their
/// `callId`, each one new; false when the page is empty (the pages have run out).
pub(crate) fn collect_by_call_id(
    reply: &Value,
    array: &str,
    rows: &mut std::collections::BTreeMap<String, Value>,
) -> bool {
    let page = reply[array].as_array().unwrap();
    for row in page {
        let id = row["callId"].as_str().unwrap().to_string();
        assert!(rows.insert(id, row.clone()).is_none(), "a row served twice: {row}");
    }
    !page.is_empty()
}
