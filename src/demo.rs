//! `cecsync demo`: the built-in simulator in-process, a year of every dataset backfilled
//! (today's snapshot of each snapshot dataset) into a local lake, and a look at what was
//! written.

use std::path::Path;
use std::sync::Arc;

use crate::calendar::Month;
use crate::config::{ConfigError, Settings};
use crate::engine::progress;
use crate::engine::report::{status, status_table};
use crate::engine::{Engine, EngineError};
use crate::push::server::{start as start_receivers, PushError};
use crate::secret::Secret;
use crate::sim::{serve, PushPlan, PushTargets, Pusher, PusherOptions, SimOptions, Simulator};
use crate::telemetry::Telemetry;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulator could not start.
    #[error("cannot start the simulator: {0}")]
    Sim(#[from] std::io::Error),
    /// The generated configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The backfill failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The push receivers or their compaction failed.
    #[error(transparent)]
    Receivers(#[from] PushError),
    /// The simulator's pusher could not start.
    #[error("the simulator's pusher: {0}")]
    Push(String),
}

/// The demo's configuration: the simulator as the OIFDE, API Fabric, CMS, iSales and
/// CC-Gateway sources, `lake` as the destination.
pub fn demo_config(base_url: &str, lake: &Path, opts: &SimOptions) -> String {
    format!(
        r#"tenant_id = "{tenant}"
[destination]
url = "file://{lake}"
[sources.oifde]
base_url = "{base_url}"
timezone = "+08:00"
auth_token = "{token}"
[sources.fabric]
base_url = "{base_url}/apiaccess"
timezone = "+08:00"
app_key = "{fabric_key}"
app_secret = "{fabric_secret}"
user_id = "{fabric_user}"
[sources.cms]
base_url = "{base_url}"
timezone = "+08:00"
ak = "{c2_ak}"
sk = "{c2_sk}"
[sources.isales]
base_url = "{base_url}"
timezone = "+08:00"
ak = "{c2_ak}"
sk = "{c2_sk}"
max_concurrency = 10
requests_per_second = 10
[sources.gateway]
base_url = "{base_url}"
timezone = "+08:00"
gateway_account = {gateway_account}
gateway_password = "{gateway_password}"
"#,
        tenant = opts.tenant_id,
        lake = lake.display(),
        token = opts.auth_token,
        fabric_key = opts.fabric_app_key,
        fabric_secret = opts.fabric_app_secret,
        fabric_user = opts.fabric_user_id,
        c2_ak = opts.c2_ak,
        c2_sk = opts.c2_sk,
        gateway_account = opts.gateway_account,
        gateway_password = opts.gateway_password,
    )
}

/// What the CMS, iSales and CC-Gateway datasets of the demo ask the simulator for: every
/// called and calling number and call type of its VDNs, the missed calls of its first VDN,
/// the IVR flows and the campaign list of every VDN, the results of every campaign and
/// the skills of every agent.
pub fn cms_config(sim: &Simulator) -> String {
    let strings = |values: Vec<String>| {
        let quoted: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
        format!("[{}]", quoted.join(", "))
    };
    let vdns = sim.vdns();
    let callees = strings(vdns.iter().flat_map(|v| sim.called_numbers(*v)).collect());
    let callers = strings(vdns.iter().flat_map(|v| sim.caller_numbers(*v)).collect());
    let types: Vec<String> = sim.call_types().iter().map(i64::to_string).collect();
    let types = types.join(", ");
    let ivr: Vec<String> = vdns.iter().map(|v| format!("{{ ccId = 1, vdn = {v} }}")).collect();
    let campaigns: Vec<String> = sim
        .campaigns()
        .iter()
        .map(|c| format!("{{ vdnId = {}, campaignId = {} }}", c["vdnId"], c["campaignId"]))
        .collect();
    let vdn_entries: Vec<String> = vdns.iter().map(|v| format!("{{ vdnId = {v} }}")).collect();
    let agents = sim.gateway_agents();
    let session = agents.first().copied().unwrap_or_default();
    let agents: Vec<String> =
        agents.iter().map(|a| format!("{{ agentid = {session}, workno = {a} }}")).collect();
    format!(
        r#"[pipelines.inbound_daily_by_callee]
request_body = {{ calleeNos = {callees}, callTypes = [{types}] }}
[pipelines.outbound_daily_by_caller]
request_body = {{ callerNos = {callers}, callTypes = [{types}] }}
[pipelines.missed_calls]
request_body = {{ vdn = {vdn} }}
[pipelines.ivr_flows]
for_each = [{ivr}]
[pipelines.campaigns]
for_each = [{vdn_entries}]
[pipelines.campaign_call_results]
for_each = [{campaigns}]
[pipelines.outbound_results]
for_each = [{campaigns}]
[pipelines.agent_skills]
for_each = [{agents}]
"#,
        vdn = vdns.first().copied().unwrap_or_default(),
        ivr = ivr.join(", "),
        campaigns = campaigns.join(", "),
        vdn_entries = vdn_entries.join(", "),
        agents = agents.join(", "),
    )
}

/// Runs the demo.
pub async fn run(lake: &Path, records_per_month: u64) -> Result<(), DemoError> {
    std::fs::create_dir_all(lake)?;
    let lake = lake.canonicalize()?;
    let opts = SimOptions { records_per_month, ..SimOptions::default() };
    let (first, last): (Month, Month) = (opts.first_month, opts.last_month);
    let sim = Arc::new(Simulator::new(opts.clone()));
    let cms = cms_config(&sim);
    let running = serve(sim, "127.0.0.1:0".parse().expect("static address")).await?;
    println!("simulator listening on {}", running.base_url);

    let text = demo_config(&running.base_url, &lake, &opts) + &cms + &push_config(&lake);
    let settings = Settings::parse(&lake.join("demo.toml"), &text, &|_| None)?;
    let engine = Engine::open(settings)?;
    let bar = progress::for_stderr();
    for pipeline in engine.enabled_pipelines() {
        let report = engine.backfill(&pipeline, first, last, false, bar.as_ref()).await?;
        println!("{report}\n");
    }
    receive_pushes(&engine, first, last).await?;
    println!("{}\n", status_table(&status(&engine).await?));
    println!("Parquet files written under {}:", lake.display());
    let mut files = Vec::new();
    collect_parquet(&lake, &mut files)?;
    files.sort();
    for f in &files {
        let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        println!("  {} ({size} bytes)", f.strip_prefix(&lake).unwrap_or(f).display());
    }
    println!(
        "\nQuery it with DuckDB:\n  duckdb -c \"SELECT month, count(*) AS calls, count(DISTINCT rbtRecognitionId) AS ids, \
         min(beginTime), max(beginTime) FROM read_parquet('{}/rbt_recognition/**/*.parquet', hive_partitioning = true) \
         GROUP BY month ORDER BY month\"",
        lake.display()
    );
    running.shutdown().await;
    Ok(())
}

/// The app whose pushes the demo signs and receives.
const DEMO_APP_KEY: &str = "demo-app";
/// Its APP_Secret (a demo value, not a secret of any deployment).
const DEMO_APP_SECRET: &str = "demo-app-secret";

/// The demo's push receivers: on a free loopback port, spooling under the lake folder.
fn push_config(lake: &Path) -> String {
    format!(
        r#"[push]
listen = "127.0.0.1:0"
spool_dir = "{spool}"
[push.privatenumber]
apps = {{ "{DEMO_APP_KEY}" = "{DEMO_APP_SECRET}" }}
[push.outbound_results]
"#,
        spool = lake.join("_push_spool").display()
    )
}

/// Serves the push receivers, lets the simulator push CDRs, call events and outbound
/// results (with duplicates) over `first..=last`, and compacts them into the lake.
async fn receive_pushes(engine: &Engine, first: Month, last: Month) -> Result<(), DemoError> {
    let Some(push) = engine.settings().push.clone() else { return Ok(()) };
    let telemetry = Arc::new(Telemetry::new());
    let (running, compactor) =
        start_receivers(engine.settings(), &push, engine.store(), telemetry).await?;
    let base = running.base_url();
    let (privatenumber, outbound) = (
        push.privatenumber.as_ref().expect("configured"),
        push.outbound_results.as_ref().expect("configured"),
    );
    let targets = PushTargets {
        cdr_url: format!("{base}{}", privatenumber.cdr_path),
        event_url: format!("{base}{}", privatenumber.event_path),
        outbound_url: format!("{base}{}", outbound.route()),
    };
    let pusher =
        Pusher::new(PusherOptions::new(targets, DEMO_APP_KEY, Secret::new(DEMO_APP_SECRET)))
            .map_err(|e| DemoError::Push(e.to_string()))?;
    let plan = PushPlan {
        first_month: first,
        last_month: last.min(first.next().next()),
        app_key: DEMO_APP_KEY.into(),
        ..PushPlan::default()
    };
    println!("simulator pushing to the receivers at {base}:");
    let report = pusher.push(&plan.load()).await;
    println!("{report}\n");
    println!("{}\n", compactor.compact().await.map_err(PushError::from)?);
    running.shutdown().await;
    Ok(())
}

fn collect_parquet(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_parquet(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}
