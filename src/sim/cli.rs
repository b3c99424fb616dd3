//! `cecsync sim`: the simulator as a long-running server on loopback, until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{serve, serve_tls, FaultOptions, SimOptions, Simulator};
use crate::calendar::{parse_zone, Month};

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
}

/// Serves until Ctrl-C.
pub async fn run(args: SimArgs) -> std::io::Result<()> {
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
    tokio::signal::ctrl_c().await?;
    println!("{:?}", sim.stats());
    running.shutdown().await;
    Ok(())
}
