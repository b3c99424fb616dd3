//! The HTTP handlers of CC-Gateway (cec-api.md 1.3 C4/C5, 2.10, 4.5):
//! `POST /agentgateway/resource/config/login`, and with the `Guid` header
//! `GET /agentgateway/resource/onlineagent/{agentid}/agentskills` (the skills of agent
//! `agentid`) and `GET .../onlineagent/{agentid}/agentskillsbyworkno/{workno}` (those of
//! agent `workno`). Answers are HTTP 200 with `{"result", "message", "retcode"}`.
//!
//! Readings of what the documentation leaves open:
//! - The login accepts [`SimOptions::gateway_account`](super::SimOptions) with its
//!   `gateway_password`; another account or password is answered `retcode`
//!   [`LOGIN_REFUSED`] (no login error code is documented). A body that is not
//!   `{"agentId": int, "password": string}` is [`BAD_PARAMETER`].
//! - A missing, unknown or expired GUID is `retcode` "100-006" (documented as an
//!   authentication failure), HTTP 200. GUIDs are not tied to an agent: the configuration
//!   login's GUID reads any agent of the VDN.
//! - `agentid` and `workno` are work numbers 101 to 999999; another value, or a work number
//!   that is no agent, is [`BAD_PARAMETER`] (not documented: chosen by the simulator). An
//!   agent without skills has an empty `result`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::gateway_data::GuidCheck;
use super::simulator::Simulator;
use super::stats::Event;

/// Success.
const SUCCESS: &str = "0";
/// The GUID is missing, unknown or expired (table 4.5).
pub(crate) const GUID_REFUSED: &str = "100-006";
/// A refused login (not documented: chosen by the simulator).
pub(crate) const LOGIN_REFUSED: &str = "100-003";
/// A refused parameter (not documented: chosen by the simulator).
pub(crate) const BAD_PARAMETER: &str = "000-002";
/// The work numbers the interfaces accept.
const WORK_NUMBERS: std::ops::RangeInclusive<u32> = 101..=999_999;

/// The body of a login.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    agent_id: u64,
    password: String,
}

/// An answer in the CC-Gateway envelope.
fn answer(retcode: &str, message: &str, result: Value) -> Response {
    Json(json!({"result": result, "message": message, "retcode": retcode})).into_response()
}

/// `POST /agentgateway/resource/config/login`.
pub(crate) async fn login(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    let Ok(login) = serde_json::from_slice::<Login>(&body) else {
        sim.counters().record(Event::GatewayLoginRefused);
        return answer(
            BAD_PARAMETER,
            "the body must be {\"agentId\": int, \"password\": string}",
            Value::Null,
        );
    };
    match sim.gateway().log_in(login.agent_id, &login.password) {
        Some(guid) => {
            sim.counters().record(Event::GatewayLogin);
            answer(SUCCESS, "success", json!({"guid": guid}))
        }
        None => {
            sim.counters().record(Event::GatewayLoginRefused);
            answer(LOGIN_REFUSED, "the account or the password is incorrect", Value::Null)
        }
    }
}

/// `GET /agentgateway/resource/onlineagent/{agentid}/agentskills`.
pub(crate) async fn agent_skills(
    State(sim): State<Arc<Simulator>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
) -> Response {
    skills(&sim, &headers, &agent, &agent)
}

/// `GET /agentgateway/resource/onlineagent/{agentid}/agentskillsbyworkno/{workno}`.
pub(crate) async fn skills_by_work_no(
    State(sim): State<Arc<Simulator>>,
    Path((agent, work_no)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    skills(&sim, &headers, &agent, &work_no)
}

/// The skills of `work_no`, asked by `agent` with the GUID of `headers`; a rotated GUID
/// comes back in `Set-GUID`.
fn skills(sim: &Simulator, headers: &HeaderMap, agent: &str, work_no: &str) -> Response {
    sim.counters().record(Event::GatewayRequest);
    let guid = headers.get("guid").and_then(|v| v.to_str().ok()).map(str::trim);
    let rotated = match sim.gateway().check(guid) {
        GuidCheck::Refused => {
            sim.counters().record(Event::GuidRefused);
            return answer(GUID_REFUSED, "the guid is invalid or has expired", Value::Null);
        }
        GuidCheck::Valid => None,
        GuidCheck::Rotated(new) => Some(new),
    };
    let parse = |text: &str| text.parse::<u32>().ok().filter(|n| WORK_NUMBERS.contains(n));
    let mut response = match (parse(agent), parse(work_no)) {
        (Some(_), Some(work_no)) => match sim.gateway().skills(work_no) {
            Some(skills) => {
                sim.counters().record(Event::PageServed);
                answer(SUCCESS, "success", skills.iter().map(|s| s.to_json()).collect())
            }
            None => answer(BAD_PARAMETER, &format!("agent {work_no} does not exist"), Value::Null),
        },
        _ => {
            let message = format!("work numbers are 101 to 999999, got '{agent}' and '{work_no}'");
            answer(BAD_PARAMETER, &message, Value::Null)
        }
    };
    if let Some(new) = rotated {
        let value = format!("JSESSIONID={new}").parse().expect("a GUID is a header value");
        response.headers_mut().insert("set-guid", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sim::test_support::{send, start};
    use crate::sim::SimOptions;
    use crate::source::SourceError;

    const LOGIN: &str = "/agentgateway/resource/config/login";

    /// A GUID of the default account.
    async fn default_guid(base: &str) -> String {
        let reply = log_in(base, 100001, "sim-gateway-pw").await;
        reply["result"]["guid"].as_str().unwrap().to_string()
    }

    async fn log_in(base: &str, account: u64, password: &str) -> Value {
        let body = json!({"agentId": account, "password": password});
        let reply = send(&format!("{base}{LOGIN}"), &body).await.unwrap();
        assert_eq!(reply.status, 200);
        serde_json::from_slice(&reply.body).unwrap()
    }

    /// GETs `path` with `guid`; the JSON answer and the `Set-GUID` header.
    async fn get(base: &str, path: &str, guid: Option<&str>) -> (Value, Option<String>) {
        let mut request = reqwest::Client::new().get(format!("{base}{path}"));
        if let Some(guid) = guid {
            request = request.header("Guid", guid);
        }
        let reply = request.send().await.unwrap();
        assert_eq!(reply.status(), 200);
        let set_guid = reply.headers().get("set-guid").map(|v| v.to_str().unwrap().to_string());
        (serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap(), set_guid)
    }

    fn skills_path(agent: u32, work_no: u32) -> String {
        format!("/agentgateway/resource/onlineagent/{agent}/agentskillsbyworkno/{work_no}")
    }

    /// The login answers a GUID for the configured account and password only; with it both
    /// skill routes answer the truth in the documented shape (an agent without skills an
    /// empty result); a bad work number is refused; an expired or made-up GUID is 100-006.
    #[tokio::test]
    async fn skills_need_a_live_guid() {
        let sim = Arc::new(Simulator::new(SimOptions::default()));
        let running = start(&sim).await;
        let base = &running.base_url;
        let refused = log_in(base, 100001, "wrong").await;
        assert_eq!(refused["retcode"], LOGIN_REFUSED);
        assert!(!refused.to_string().contains("wrong"), "{refused}");
        let ok = log_in(base, 100001, "sim-gateway-pw").await;
        assert_eq!((&ok["retcode"], &ok["message"]), (&json!("0"), &json!("success")));
        let guid = ok["result"]["guid"].as_str().unwrap().to_string();

        let agents = sim.gateway_agents();
        assert_eq!(agents.len(), SimOptions::default().gateway_agents as usize);
        let truth = sim.agent_skills();
        for &work_no in &agents {
            let (reply, set_guid) = get(base, &skills_path(agents[0], work_no), Some(&guid)).await;
            assert_eq!((reply["retcode"].as_str(), set_guid), (Some("0"), None), "{reply}");
            let served = reply["result"].as_array().unwrap();
            let want: Vec<_> = truth
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{work_no}/")))
                .map(|(_, v)| v)
                .collect();
            assert_eq!(served.len(), want.len(), "{work_no}: {reply}");
            for skill in served {
                let row = &truth[&format!("{work_no}/{}", skill["id"])];
                for field in ["name", "id", "mediatype"] {
                    assert_eq!(skill[field], row[field], "{work_no}: {skill}");
                }
            }
        }
        let last = *agents.last().unwrap();
        let (own, _) = get(
            base,
            &format!("/agentgateway/resource/onlineagent/{last}/agentskills"),
            Some(&guid),
        )
        .await;
        assert_eq!(own["result"], json!([]), "{own}");
        let (bad, _) = get(base, &skills_path(agents[0], 100), Some(&guid)).await;
        assert_eq!(bad["retcode"], BAD_PARAMETER);
        let (unknown, _) = get(base, &skills_path(agents[0], 59999), Some(&guid)).await;
        assert_eq!(unknown["retcode"], BAD_PARAMETER);

        for guid in [None, Some("made-up.AgentGateway1")] {
            let (reply, _) = get(base, &skills_path(agents[0], agents[0]), guid).await;
            assert_eq!(reply["retcode"], GUID_REFUSED, "{guid:?}");
        }
        sim.expire_gateway_guids();
        let (reply, _) = get(base, &skills_path(agents[0], agents[0]), Some(&guid)).await;
        assert_eq!(reply["retcode"], GUID_REFUSED);
        let stats = sim.stats();
        assert_eq!((stats.gateway_logins, stats.gateway_login_refusals), (1, 1));
        assert_eq!(stats.gateway_guids_refused, 3);
        assert_eq!(stats.gateway_requests, agents.len() as u64 + 6);
        running.shutdown().await;
    }

    /// The `gateway_guid` strategy of a source on `base` logging in with `password`, and
    /// the source's client.
    fn gateway_client(
        base: &str,
        password: &str,
    ) -> (crate::source::auth::Authenticator, crate::source::SourceClient) {
        use crate::config::{GatewayLogin, SourceAuth, GATEWAY_LOGIN_PATH};
        use crate::source::scripted::{client, source};
        let mut src = source(base, Duration::from_secs(5), 2);
        src.auth = SourceAuth::Gateway(GatewayLogin {
            account: 100001,
            password: crate::secret::Secret::new(password),
            login_path: GATEWAY_LOGIN_PATH.into(),
        });
        let spec = crate::catalog::pipeline::AuthSpec::GatewayGuid;
        let auth = crate::source::auth::Authenticator::new(&spec, &src).unwrap();
        (auth, client(base, Duration::from_secs(5), 2))
    }

    /// The JSON answer to a GET of `path` by `auth`.
    async fn skills_of(
        auth: &crate::source::auth::Authenticator,
        client: &crate::source::SourceClient,
        path: String,
    ) -> Result<Value, SourceError> {
        let method = crate::catalog::pipeline::RequestMethod::Get;
        let body = auth.send(client, method, &path, Default::default()).await?;
        Ok(serde_json::from_slice(&body).unwrap())
    }

    /// The engine's client against the simulator: one login serves many requests; GUIDs
    /// that expire mid-run are renewed with one login more; a wrong password is one error
    /// naming the account, after one login request; GUIDs refused even fresh are one error
    /// too. No error shows the password or a GUID.
    #[tokio::test]
    async fn the_client_renews_expired_guids_once() {
        let sim = Arc::new(Simulator::new(SimOptions::default()));
        let running = start(&sim).await;
        let (auth, client) = gateway_client(&running.base_url, "sim-gateway-pw");
        let agents = sim.gateway_agents();
        let fetch = |work_no: u32| skills_of(&auth, &client, skills_path(agents[0], work_no));
        for &work_no in &agents {
            assert_eq!(fetch(work_no).await.unwrap()["retcode"], "0");
        }
        assert_eq!(sim.stats().gateway_logins, 1);
        sim.expire_gateway_guids();
        for &work_no in &agents {
            assert_eq!(fetch(work_no).await.unwrap()["retcode"], "0");
        }
        let stats = sim.stats();
        assert_eq!((stats.gateway_logins, stats.gateway_guids_refused), (2, 1));

        let (auth, client) = gateway_client(&running.base_url, "not-the-password");
        let text = skills_of(&auth, &client, skills_path(101, 101)).await.unwrap_err().to_string();
        assert!(text.contains("account 100001") && text.contains(LOGIN_REFUSED), "{text}");
        assert!(!text.contains("not-the-password"), "{text}");
        let stats = sim.stats();
        assert_eq!(
            (stats.gateway_login_refusals, stats.gateway_requests),
            (1, 2 * agents.len() as u64 + 1)
        );
        running.shutdown().await;

        let sim = Arc::new(Simulator::new(SimOptions {
            gateway_guid_ttl: Duration::ZERO,
            ..SimOptions::default()
        }));
        let running = start(&sim).await;
        let (auth, client) = gateway_client(&running.base_url, "sim-gateway-pw");
        let err = skills_of(&auth, &client, skills_path(101, 101)).await.unwrap_err();
        assert!(matches!(err, SourceError::GatewayRefused { account: 100001, .. }), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(text.contains(GUID_REFUSED) && !text.contains("AgentGateway1"), "{text}");
        let stats = sim.stats();
        assert_eq!((stats.gateway_logins, stats.gateway_guids_refused), (2, 2));
        running.shutdown().await;
    }

    /// The engine's paging reads an agent's skills with a GET pipeline of the
    /// `gateway_guid` style: the records at `result`, success at `retcode` "0", a refused
    /// parameter an API error with the gateway's message; after the GUIDs expire, the next
    /// fetch logs in once more.
    #[tokio::test]
    async fn a_get_pipeline_pages_through_the_skills() {
        use crate::catalog::pipeline::PipelineSpec;
        use crate::source::paging::{fetch_pages, PagedRequest};
        let spec = PipelineSpec::parse(
            "skills.toml",
            r#"
            name = "skills"
            description = "x"
            source = "gateway"
            [request]
            method = "GET"
            path = "/agentgateway/resource/onlineagent"
            [auth]
            style = "gateway_guid"
            [paging]
            style = "none"
            [slicing]
            style = "calendar_month"
            begin_field = "a"
            end_field = "b"
            time_format = "epoch_ms"
            [records]
            path = "result"
            primary_key = ["id"]
            event_time = "id"
            [envelope]
            code_fields = ["retcode"]
            message_fields = ["message"]
            "#,
        )
        .unwrap();
        let spec = Arc::new(spec);
        let sim = Arc::new(Simulator::new(SimOptions::default()));
        let running = start(&sim).await;
        let (auth, client) = gateway_client(&running.base_url, "sim-gateway-pw");
        let fetch = |work_no: u32| {
            let (spec, auth, client) = (spec.clone(), auth.clone(), client.clone());
            async move {
                let request = PagedRequest {
                    client: &client,
                    auth: &auth,
                    spec: &spec,
                    path: &skills_path(101, work_no),
                    body: Default::default(),
                    concurrency: 1,
                    wrap_in: None,
                };
                let mut ids = Vec::new();
                let decode = |_, page: crate::source::envelope::Page<'_>| -> Vec<Value> {
                    page.records.iter().map(|r| serde_json::from_str(r.get()).unwrap()).collect()
                };
                fetch_pages::<SourceError, _, _>(request, decode, |page| {
                    ids.extend(page.into_iter().map(|r| r["id"].as_i64().unwrap()));
                    Ok(())
                })
                .await
                .map(|_| ids)
            }
        };
        let truth = sim.agent_skills();
        let first = sim.gateway_agents()[0];
        let mut want: Vec<i64> = truth
            .values()
            .filter(|r| r["workno"] == first)
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        want.sort();
        let mut got = fetch(first).await.unwrap();
        got.sort();
        assert!(!want.is_empty());
        assert_eq!(got, want);
        let err = fetch(59999).await.unwrap_err();
        assert!(matches!(&err, SourceError::Api { code, .. } if code == BAD_PARAMETER), "{err:?}");
        assert!(err.to_string().contains("agent 59999 does not exist"), "{err}");
        sim.expire_gateway_guids();
        assert_eq!(fetch(first).await.unwrap().len(), want.len());
        assert_eq!(sim.stats().gateway_logins, 2);
        running.shutdown().await;
    }

    /// GUIDs die after their lifetime; with a rotation interval the answer carries a new
    /// GUID in `Set-GUID: JSESSIONID=...`, which works.
    #[tokio::test]
    async fn guids_expire_and_rotate() {
        let options =
            SimOptions { gateway_guid_ttl: Duration::from_millis(400), ..SimOptions::default() };
        let sim = Arc::new(Simulator::new(options));
        let running = start(&sim).await;
        let base = &running.base_url;
        let guid = default_guid(base).await;
        let path = skills_path(101, 101);
        assert_eq!(get(base, &path, Some(&guid)).await.0["retcode"], "0");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(get(base, &path, Some(&guid)).await.0["retcode"], GUID_REFUSED);
        running.shutdown().await;

        let options =
            SimOptions { gateway_guid_rotation: Some(Duration::ZERO), ..SimOptions::default() };
        let sim = Arc::new(Simulator::new(options));
        let running = start(&sim).await;
        let base = &running.base_url;
        let guid = default_guid(base).await;
        let (reply, set_guid) = get(base, &path, Some(&guid)).await;
        assert_eq!(reply["retcode"], "0");
        let new = set_guid.unwrap().strip_prefix("JSESSIONID=").unwrap().to_string();
        assert_ne!(new, guid);
        assert_eq!(get(base, &path, Some(&new)).await.0["retcode"], "0");
        running.shutdown().await;
    }
}
