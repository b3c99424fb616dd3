//! `cecsync sim`: the simulator as a long-running server on loopback, until Ctrl-C; and
//! `cecsync sim push`: the simulator as the platform pushing to a receiver.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{
    serve, serve_tls, FaultOptions, PushPlan, PushTargets, Pusher, PusherOptions, SimOptions,
    Simulator,
};
use crate::calendar::{parse_zone, Month};
use crate::push::aksk::TokenScheme;
use crate::push::kind::PushKind;
use crate::secret::Secret;

/// Options of `cecsync sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The tenant whose data is served.
    #[arg(long, default_value = "202401150001")]
    pub tenant: String,
    /// The fixed authToken accepted in request bodies.
    #[arg(long, env = "CECSYNC_SIM_TOKEN", default_value = "sim-token", hide_env_values = true)]
    pub token: String,
    /// First month with data.
    #[arg(long, default_value = "2025-01")]
    pub from: Month,
    /// Last month with data.
    #[arg(long, default_value = "2025-12")]
    pub to: Month,
    /// Records in each month table.
    #[arg(long, default_value_t = 1000)]
    pub records_per_month: u64,
    /// Quality-inspection calls in each month (appraisecall/details).
    #[arg(long, default_value_t = 200)]
    pub calls_per_month: u64,
    /// Call detail records in each month (queryCallDetailRecord).
    #[arg(long, default_value_t = 500)]
    pub cdrs_per_month: u64,
    /// The app_key accepted by the API Fabric token route (tokenByAkSk).
    #[arg(long, default_value = "sim-fabric-ak")]
    pub fabric_app_key: String,
    /// The app_secret accepted by the API Fabric token route.
    #[arg(
        long,
        env = "CECSYNC_SIM_FABRIC_SECRET",
        default_value = "sim-fabric-sk",
        hide_env_values = true
    )]
    pub fabric_app_secret: String,
    /// The operator accepted in x-UserId by the quality-inspection routes.
    #[arg(long, default_value = "1611917095665261978")]
    pub fabric_user_id: String,
    /// paging.total of appraisecall/details counts call groups instead of calls.
    #[arg(long)]
    pub total_counts_groups: bool,
    /// The AK of the C2-signed CMS and iSales routes.
    #[arg(long, default_value = "sim-c2-ak")]
    pub c2_ak: String,
    /// The SK of --c2-ak.
    #[arg(long, env = "CECSYNC_SIM_C2_SK", default_value = "sim-c2-sk", hide_env_values = true)]
    pub c2_sk: String,
    /// VDNs of the tenant (CMS and iSales), numbered from 170.
    #[arg(long, default_value_t = 2)]
    pub vdns: u32,
    /// Called (and calling) numbers of each VDN in the CMS daily statistics.
    #[arg(long, default_value_t = 3)]
    pub called_numbers: u32,
    /// Call types with CMS daily statistics (0 up to this, excluded).
    #[arg(long, default_value_t = 2)]
    pub call_types: u32,
    /// Missed calls of each VDN per day.
    #[arg(long, default_value_t = 4)]
    pub missed_calls_per_day: u32,
    /// Days of missed calls kept before the end of --to (all when absent).
    #[arg(long)]
    pub missed_calls_retention_days: Option<u32>,
    /// Outbound campaigns of each VDN.
    #[arg(long, default_value_t = 2)]
    pub campaigns_per_vdn: u32,
    /// Calls of each campaign in each month.
    #[arg(long, default_value_t = 30)]
    pub campaign_calls_per_month: u64,
    /// Number of the first callresult page.
    #[arg(long, default_value_t = 1)]
    pub isales_first_page: u64,
    /// The agentId accepted by the CC-Gateway configuration login.
    #[arg(long, default_value_t = 100001)]
    pub gateway_account: u64,
    /// The password of --gateway-account.
    #[arg(
        long,
        env = "CECSYNC_SIM_GATEWAY_PASSWORD",
        default_value = "sim-gateway-pw",
        hide_env_values = true
    )]
    pub gateway_password: String,
    /// CC-Gateway agents (work numbers from 101; the last has no skills).
    #[arg(long, default_value_t = 5)]
    pub gateway_agents: u32,
    /// Lifetime of a CC-Gateway GUID, in seconds.
    #[arg(long, default_value_t = 120)]
    pub gateway_guid_ttl_secs: u64,
    /// Server zone of the month tables.
    #[arg(long, default_value = "+08:00")]
    pub timezone: String,
    /// Share of requests answered with HTTP 500/502/503.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of requests answered with 429 and Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    /// Share of answers whose body is cut in half.
    #[arg(long, default_value_t = 0.0)]
    pub truncate_rate: f64,
    /// Share of connections closed without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Share of answers delayed by --delay-ms.
    #[arg(long, default_value_t = 0.0)]
    pub delay_rate: f64,
    /// Delay of a delayed answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Instead of serving, act as the pushing platform.
    #[command(subcommand)]
    pub command: Option<SimCommand>,
}

/// What `cecsync sim` does instead of serving.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Push Private Number CDRs and call events (signed) and outbound results to a
    /// receiver, with duplicates and re-pushes, and print the report.
    Push(Box<PushArgs>),
}

/// Options of `cecsync sim push`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("secret").required(true).args(["app_secret_env", "app_secret"])))]
pub struct PushArgs {
    /// URL of the receiver's Private Number CDR endpoint.
    #[arg(long)]
    pub cdr_url: String,
    /// URL of the receiver's Private Number call-event endpoint.
    #[arg(long)]
    pub event_url: String,
    /// URL of the receiver's outbound-result callback.
    #[arg(long)]
    pub outbound_url: String,
    /// The app key that signs (and the `appKey` of the CDRs).
    #[arg(long)]
    pub app_key: String,
    /// Name of the environment variable holding the APP_Secret.
    #[arg(long)]
    pub app_secret_env: Option<String>,
    /// The APP_Secret itself (visible in the process list; prefer --app-secret-env).
    #[arg(long)]
    pub app_secret: Option<String>,
    /// Messages per interface.
    #[arg(long, default_value_t = 100)]
    pub messages: usize,
    /// Messages in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seed of the generated data and duplicates.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Multiplier of the re-push schedule (1, 4, 9, 106, 203, 300 minutes): 1 is real
    /// time, 0.001 turns a minute into 60 ms.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Attempts per message at most.
    #[arg(long, default_value_t = 7)]
    pub max_attempts: u32,
    /// CDRs per message at most (1 to 50).
    #[arg(long, default_value_t = 50)]
    pub max_cdrs_per_message: usize,
    /// CDRs in one message at least (50 with --max-cdrs-per-message 50: full messages).
    #[arg(long, default_value_t = 1)]
    pub min_cdrs_per_message: usize,
    /// Push only these interfaces (all three by default).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<PushKind>,
    /// Share of messages sent twice and of records repeated in a later message (0 to 1).
    #[arg(long, default_value_t = 0.1)]
    pub duplicate_rate: f64,
    /// First month of the call times.
    #[arg(long, default_value = "2025-01")]
    pub from: Month,
    /// Last month of the call times.
    #[arg(long, default_value = "2025-03")]
    pub to: Month,
    /// Tenant zone of the outbound results' callTimeStr.
    #[arg(long, default_value = "+08:00")]
    pub timezone: String,
    /// Sign with the older X-WSSE header instead of X-AKSK.
    #[arg(long)]
    pub wsse: bool,
    /// Extra trusted root certificates (PEM) for an https receiver.
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    /// Accept any receiver certificate (tests only).
    #[arg(long)]
    pub insecure_skip_verify: bool,
}

/// Serves until Ctrl-C, or runs the subcommand.
pub async fn run(args: SimArgs) -> std::io::Result<()> {
    if let Some(SimCommand::Push(push_args)) = args.command {
        return push(*push_args).await;
    }
    let zone = parse_zone(&args.timezone)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let opts = SimOptions {
        seed: args.seed,
        tenant_id: args.tenant,
        auth_token: args.token,
        zone,
        first_month: args.from,
        last_month: args.to,
        records_per_month: args.records_per_month,
        appraise_calls_per_month: args.calls_per_month,
        cdrs_per_month: args.cdrs_per_month,
        fabric_app_key: args.fabric_app_key,
        fabric_app_secret: args.fabric_app_secret,
        fabric_user_id: args.fabric_user_id,
        paging_total_counts_groups: args.total_counts_groups,
        c2_ak: args.c2_ak,
        c2_sk: args.c2_sk,
        vdns: args.vdns,
        called_numbers: args.called_numbers,
        call_types: args.call_types,
        missed_calls_per_day: args.missed_calls_per_day,
        missed_calls_retention_days: args.missed_calls_retention_days,
        campaigns_per_vdn: args.campaigns_per_vdn,
        campaign_calls_per_month: args.campaign_calls_per_month,
        isales_first_page: args.isales_first_page,
        gateway_account: args.gateway_account,
        gateway_password: args.gateway_password,
        gateway_agents: args.gateway_agents,
        gateway_guid_ttl: Duration::from_secs(args.gateway_guid_ttl_secs),
        faults: FaultOptions {
            error_rate: args.error_rate,
            throttle_rate: args.throttle_rate,
            truncate_rate: args.truncate_rate,
            delay_rate: args.delay_rate,
            delay: Duration::from_millis(args.delay_ms),
            reset_rate: args.reset_rate,
        },
        ..SimOptions::default()
    };
    let sim = Arc::new(Simulator::new(opts));
    let running = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            serve_tls(sim.clone(), args.listen, &std::fs::read(cert)?, &std::fs::read(key)?).await?
        }
        _ => serve(sim.clone(), args.listen).await?,
    };
    println!("cecsync simulator listening on {}", running.base_url);
    println!("  POST {}/oifde/rest/api/queryRbtRecognitionResult", running.base_url);
    println!("API Fabric base URL: {}/apiaccess", running.base_url);
    println!("API Fabric token URL: {}/apigovernance/api/oauth/tokenByAkSk", running.base_url);
    println!("  POST {}/apiaccess/CCSQM/rest/ccisqm/v1/appraisecall/details", running.base_url);
    println!("  POST {}/apiaccess/CCSQM/rest/ccisqm/v1/appraisecall/detail", running.base_url);
    println!(
        "  POST {}/apiaccess/CC-Management/v1/mobileAgent/queryCallDetailRecord",
        running.base_url
    );
    println!("CMS and iSales (C2-signed, AK {}):", sim.options().c2_ak);
    for path in [
        "POST /rest/cmsapp/v1/callinday/querymanualindexesbycondition",
        "POST /rest/cmsapp/v1/calloutday/querymanualindexesbycondition",
        "POST /rest/cmsapp/v1/callin/queryMissedCalls",
        "POST /rest/cmsapp/v1/openapi/vdn/queryivrprocessinnoinfo",
        "GET  /rest/isales/v1/openapi/campaigns/{vdnId}",
        "POST /rest/isales/v1/openapi/campaigns/{vdnId}/callresult/{campaignId}",
    ] {
        let (method, path) = path.split_at(5);
        println!("  {method}{}{path}", running.base_url);
    }
    println!("  VDNs {:?}", sim.vdns());
    println!("CC-Gateway (Guid header, login account {}):", sim.options().gateway_account);
    for path in [
        "POST /agentgateway/resource/config/login",
        "GET  /agentgateway/resource/onlineagent/{agentid}/agentskills",
        "GET  /agentgateway/resource/onlineagent/{agentid}/agentskillsbyworkno/{workno}",
    ] {
        let (method, path) = path.split_at(5);
        println!("  {method}{}{path}", running.base_url);
    }
    println!("  agents {:?}", sim.gateway_agents());
    tokio::signal::ctrl_c().await?;
    println!("{:?}", sim.stats());
    running.shutdown().await;
    Ok(())
}

/// `cecsync sim push`: pushes the load, prints the report; fails when a message was not
/// acknowledged.
async fn push(args: PushArgs) -> std::io::Result<()> {
    let invalid = |problem: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, problem);
    let zone = parse_zone(&args.timezone).map_err(|e| invalid(e.to_string()))?;
    if !(0.0..=1.0).contains(&args.duplicate_rate) {
        return Err(invalid("--duplicate-rate must be between 0 and 1".into()));
    }
    if !(1..=50).contains(&args.max_cdrs_per_message) {
        return Err(invalid("--max-cdrs-per-message must be 1 to 50".into()));
    }
    if !(1..=args.max_cdrs_per_message).contains(&args.min_cdrs_per_message) {
        return Err(invalid("--min-cdrs-per-message must be 1 to --max-cdrs-per-message".into()));
    }
    let secret = match (&args.app_secret_env, args.app_secret) {
        (Some(var), _) => std::env::var(var).map_err(|_| {
            invalid(format!("environment variable {var} (--app-secret-env) is not set"))
        })?,
        (None, Some(secret)) => secret,
        (None, None) => unreachable!("clap requires one of the two"),
    };
    let ca_bundle_pem = match &args.ca_bundle {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| invalid(format!("cannot read --ca-bundle {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let targets = PushTargets {
        cdr_url: args.cdr_url,
        event_url: args.event_url,
        outbound_url: args.outbound_url,
    };
    let scheme = if args.wsse { TokenScheme::Wsse } else { TokenScheme::Aksk };
    let options = PusherOptions {
        scheme,
        concurrency: args.concurrency,
        time_scale: args.time_scale,
        max_attempts: args.max_attempts,
        ca_bundle_pem,
        insecure_skip_verify: args.insecure_skip_verify,
        ..PusherOptions::new(targets, args.app_key.clone(), Secret::new(secret))
    };
    let pusher = Pusher::new(options).map_err(|e| invalid(e.to_string()))?;
    let plan = PushPlan {
        seed: args.seed,
        messages: args.messages,
        first_month: args.from,
        last_month: args.to,
        zone,
        app_key: args.app_key.clone(),
        min_cdrs_per_message: args.min_cdrs_per_message,
        max_cdrs_per_message: args.max_cdrs_per_message,
        duplicate_rate: args.duplicate_rate,
    };
    let mut load = plan.load();
    if !args.only.is_empty() {
        load.messages.retain(|m| args.only.contains(&m.interface));
        load.truth.retain(|interface, _| args.only.contains(interface));
    }
    println!(
        "pushing {} messages as app key {} ({}), {} in flight",
        load.messages.len(),
        args.app_key,
        scheme.token_header(),
        args.concurrency
    );
    for (interface, records) in &load.truth {
        println!("  {}: {} distinct records", interface.dataset(), records.len());
    }
    let report = pusher.push(&load).await;
    print!("{report}");
    match report.messages - report.acknowledged {
        0 => Ok(()),
        missing => Err(std::io::Error::other(format!("{missing} messages were not acknowledged"))),
    }
}
