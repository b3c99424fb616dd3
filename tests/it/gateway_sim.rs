//! `agent_skills` from the simulator's CC-Gateway: the configuration login (C5), the GUID in
//! the `Guid` header, one GET per configured agent, written as the snapshot of the day; a
//! GUID that expires between runs is renewed with one login; a changed skill set is the next
//! day's snapshot while the older day stays; the lake read back.

use std::collections::BTreeMap;

use cecsync::engine::clock::Clock;
use cecsync::engine::progress::LogProgress;
use cecsync::engine::Engine;
use cecsync::sim::SimOptions;
use serde_json::Value;

use crate::common::{engine_for, lake_rows, Harness};

/// The engine of `h` on `day` (noon at +08:00) with the Gateway source (password from
/// the environment) and every agent of the simulator in `for_each`.
fn skills_engine(h: &Harness, password: &str, day: &str) -> Engine {
    std::env::set_var("CECSYNC_TEST_GATEWAY_PASSWORD", password);
    let entries: Vec<String> = h
        .sim
        .gateway_agents()
        .iter()
        .map(|a| {
            format!("{{ agentid = {first}, workno = {a} }}", first = h.sim.gateway_agents()[0])
        })
        .collect();
    let extra = format!(
        "[sources.gateway]\nbase_url = \"{}\"\ntimezone = \"+08:00\"\ngateway_account = {}\n\
         gateway_password = \"${{CECSYNC_TEST_GATEWAY_PASSWORD}}\"\n\
         [pipelines.agent_skills]\nfor_each = [{}]\n",
        h.running.base_url,
        h.opts.gateway_account,
        entries.join(", ")
    );
    let noon = format!("{day}T04:00:00Z").parse().unwrap();
    engine_for(h, &h.config_text(&extra)).with_clock(Clock::fixed(noon))
}

/// The lake's skills of snapshot `day`, keyed `workno/id` as the truth is.
fn snapshot(h: &Harness, day: &str) -> BTreeMap<String, Value> {
    let mut rows = BTreeMap::new();
    for (_, row) in lake_rows(&h.lake(), "agent_skills").into_iter().filter(|(d, _)| d == day) {
        let key = format!("{}/{}", row["workno"], row["id"]);
        let row = serde_json::json!({"workno": row["workno"], "id": row["id"],
                                     "name": row["name"], "mediatype": row["mediatype"]});
        assert!(rows.insert(key.clone(), row).is_none(), "{key} twice on {day}");
    }
    rows
}

/// Every agent's skills equal the truth (Chinese names byte for byte); the GUID expired
/// between two runs is renewed by one login; the next day's snapshot holds the changed
/// skills and the first day's is kept; a wrong password stops with an error that names
/// the account and neither the password nor a GUID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_skills_snapshots_equal_the_truth() {
    let h = Harness::start(SimOptions { gateway_agents: 6, ..SimOptions::default() }).await;
    let password = h.opts.gateway_password.clone();
    let (day1, day2) = ("2026-03-05", "2026-03-06");
    let engine = skills_engine(&h, &password, day1);
    engine.sync("agent_skills", &LogProgress).await.unwrap();
    let truth = h.sim.agent_skills();
    assert!(truth.values().any(|r| !r["name"].as_str().unwrap().is_ascii()), "Chinese names");
    assert_eq!(snapshot(&h, day1), truth);
    assert_eq!(h.sim.stats().gateway_logins, 1, "one login for every agent");

    h.sim.expire_gateway_guids();
    let agent = h.sim.gateway_agents()[1];
    assert!(h.sim.set_agent_skills(agent, &[(7, "投诉专席", 5)]));
    let next = skills_engine(&h, &password, day2);
    next.sync("agent_skills", &LogProgress).await.unwrap();
    assert_eq!(h.sim.stats().gateway_logins, 2, "the expired GUID was renewed once");
    assert_eq!(snapshot(&h, day2), h.sim.agent_skills());
    assert_eq!(snapshot(&h, day1), truth, "the older snapshot is kept");

    let wrong = skills_engine(&h, "not-the-password", "2026-03-07");
    let err = wrong.sync("agent_skills", &LogProgress).await.unwrap_err().to_string();
    assert!(err.contains(&h.opts.gateway_account.to_string()), "names the account: {err}");
    assert!(!err.contains("not-the-password") && !err.contains("AgentGateway"), "{err}");
}
