//! The `cecsync` command line: parses arguments, sets up logging and calls the library.

use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use cecsync::calendar::Month;
use cecsync::config::Settings;
use cecsync::engine::progress;
use cecsync::engine::report::{status, status_table, sync_status, sync_table, verify};
use cecsync::engine::Engine;
use cecsync::push::compact::Compactor;
use cecsync::push::spool::{Spool, SpoolOptions};
use cecsync::service::jobs::JobState;
use cecsync::service::lease::{keep, tenant_store, Backend, Holder, Lease, LeaseError};
use cecsync::service::remote::Remote;
use cecsync::service::shutdown::Shutdown;
use tracing::{info, warn};

/// Keeps a Parquet data lake in sync with the Huawei Cloud contact-center query APIs.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch whole months of a pipeline into the lake.
    Backfill {
        /// The configuration file.
        #[arg(long, env = "CECSYNC_CONFIG")]
        config: PathBuf,
        /// The pipeline (dataset) to backfill.
        #[arg(long)]
        pipeline: String,
        /// First month, YYYY-MM.
        #[arg(long)]
        from: Month,
        /// Last month, YYYY-MM (inclusive).
        #[arg(long)]
        to: Month,
        /// Fetch and rewrite months that are already complete.
        #[arg(long)]
        refresh: bool,
        /// Run here even when a service answers at the control address (by default the
        /// backfill is queued on the running service).
        #[arg(long)]
        local: bool,
    },
    /// Run the service: schedules, control API and status page, until SIGTERM or SIGINT.
    Run {
        /// The configuration file.
        #[arg(long, env = "CECSYNC_CONFIG")]
        config: PathBuf,
    },
    /// Incremental sync of every enabled pipeline: the current month plus the lookback,
    /// merged by key.
    Sync {
        /// The configuration file.
        #[arg(long, env = "CECSYNC_CONFIG")]
        config: PathBuf,
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// Show every partition: rows, API total, last sync, state.
    Status {
        /// The configuration file.
        #[arg(long, env = "CECSYNC_CONFIG")]
        config: PathBuf,
    },
    /// Re-read the lake and check row counts, content and key uniqueness against the
    /// checkpoints.
    Verify {
        /// The configuration file.
        #[arg(long, env = "CECSYNC_CONFIG")]
        config: PathBuf,
    },
    /// Compact the push spool into the lake once (`cecsync run` does it on a schedule; use
    /// this while the service is stopped).
    Compact {
        /// The configuration file.
        #[arg(long, env = "CECSYNC_CONFIG")]
        config: PathBuf,
    },
    /// Print a dataset's columns and types.
    Schema {
        /// The dataset.
        dataset: String,
    },
    /// Serve the built-in simulator of the CEC APIs.
    Sim(Box<cecsync::sim::cli::SimArgs>),
    /// Start the simulator in-process, backfill a year into a local lake and show it.
    Demo {
        /// The lake folder.
        #[arg(long, default_value = "./lake")]
        lake: PathBuf,
        /// Records per month in the simulator.
        #[arg(long, default_value_t = 5000)]
        records_per_month: u64,
    },
    /// Measure the sync rate against a plain fetch of the same pages.
    Bench(cecsync::bench::BenchArgs),
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn load(config: &std::path::Path) -> anyhow::Result<Engine> {
    let settings = Settings::load(config)?;
    let engine = Engine::open(settings)?;
    engine.check_destination().await?;
    Ok(engine)
}

/// Runs `work` holding the tenant's lease, renewed all along, so that no service (nor
/// another run of the command line) writes the tenant's partitions meanwhile. Fails at once
/// when another holder has the lease. The lease is released at the end, also when `work`
/// fails or the run is interrupted (Ctrl-C); when the lease is lost, or cannot be renewed
/// in time, `work` is stopped (a slice cut short leaves its partition as it was).
async fn with_lease<T>(
    engine: &Engine,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let settings = engine.settings();
    let lease = Lease::new(
        tenant_store(engine.store(), &settings.tenant_id),
        Backend::for_destination(&settings.destination),
        Holder::this_process(),
        settings.service.lease_ttl,
    );
    let record = match lease.acquire(Utc::now()).await {
        Ok(record) => record,
        Err(LeaseError::Held { holder, until, .. }) => bail!(
            "{holder} writes this lake (its lease runs until {until}); queue the run on it (cecsync backfill without --local) or stop it first"
        ),
        Err(e) => return Err(e.into()),
    };
    info!(term = record.term, expires_at = %record.expires_at, "Lease taken for this run.");
    let (done, lost) = (Shutdown::new(), Shutdown::new());
    let keeper = async {
        let kept = keep(&lease, record.expires_at, done.wait()).await;
        if kept.is_err() {
            lost.trigger();
        }
        kept
    };
    let runner = async {
        let result = tokio::select! {
            result = work => Some(result),
            _ = lost.wait() => None,
            _ = tokio::signal::ctrl_c() => Some(Err(anyhow!("interrupted"))),
        };
        done.trigger();
        result
    };
    let (kept, result) = tokio::join!(keeper, runner);
    if let Err(e) = lease.release(Utc::now()).await {
        warn!(error = %e, "Could not release the lease; it expires by itself.");
    }
    match (result, kept) {
        (Some(result), _) => result,
        (None, Err(e)) => Err(anyhow!(e).context("the run was stopped")),
        (None, Ok(())) => bail!("the run was stopped: the lease was lost"),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Backfill { config, pipeline, from, to, refresh, local } => {
            if !local {
                let settings = Settings::load(&config)?;
                if let Some(remote) = Remote::find(&settings.service).await {
                    return remote_backfill(&remote, &pipeline, from, to, refresh).await;
                }
            }
            let engine = load(&config).await?;
            let progress = progress::for_stderr();
            let report = with_lease(&engine, async {
                Ok(engine.backfill(&pipeline, from, to, refresh, progress.as_ref()).await?)
            })
            .await?;
            emit(&report)?;
        }
        Command::Sync { config, pipeline } => {
            let engine = load(&config).await?;
            let names = match pipeline {
                Some(p) => vec![p],
                None => engine.enabled_pipelines(),
            };
            if names.is_empty() {
                bail!("{}: no pipeline is enabled; configure a source for one", config.display());
            }
            let progress = progress::for_stderr();
            with_lease(&engine, async {
                let mut failed = Vec::new();
                for name in names {
                    match engine.sync(&name, progress.as_ref()).await {
                        Ok(report) => emit(&report)?,
                        Err(e) => failed.push(format!("{name}: {e}")),
                    }
                }
                if !failed.is_empty() {
                    bail!("{}", failed.join("; "));
                }
                Ok(())
            })
            .await?;
        }
        Command::Status { config } => {
            let engine = load(&config).await?;
            emit(status_table(&status(&engine).await?))?;
            emit(format_args!(
                "\n{}",
                sync_table(&sync_status(&engine).await?, chrono::Utc::now())
            ))?;
        }
        Command::Verify { config } => {
            let engine = load(&config).await?;
            let report = verify(&engine).await?;
            for finding in &report.findings {
                emit(format_args!("PROBLEM {finding}"))?;
            }
            emit(format_args!(
                "verified {} partition(s), {} row(s), {} problem(s)",
                report.partitions,
                report.rows,
                report.findings.len()
            ))?;
            if !report.findings.is_empty() {
                bail!(
                    "the lake does not match its checkpoints ({} problem(s))",
                    report.findings.len()
                );
            }
        }
        Command::Compact { config } => {
            let engine = load(&config).await?;
            let push = engine.settings().push.clone().with_context(|| {
                format!(
                    "{}: has no [push] table, so there is no spool to compact",
                    config.display()
                )
            })?;
            let spool = Spool::open(&push.spool_dir, SpoolOptions::default())?;
            let compactor = Compactor::new(engine.settings(), &push, engine.store(), spool)?;
            let report = with_lease(&engine, async { Ok(compactor.compact().await?) }).await?;
            emit(&report)?;
        }
        Command::Schema { dataset } => {
            let catalog = cecsync::catalog::Catalog::builtin()?;
            let schema = catalog.schema(&dataset).with_context(|| {
                format!("unknown dataset '{dataset}'; known: {}", catalog.names().join(", "))
            })?;
            for field in schema.arrow_schema().fields() {
                let null = if field.is_nullable() { "null" } else { "not null" };
                emit(format_args!(
                    "{:<20} {:<32} {null}",
                    field.name(),
                    field.data_type().to_string()
                ))?;
            }
        }
        Command::Run { config } => {
            let settings = Settings::load(&config)?;
            cecsync::service::run::run(settings).await?
        }
        Command::Sim(args) => cecsync::sim::cli::run(*args).await?,
        Command::Demo { lake, records_per_month } => {
            cecsync::demo::run(&lake, records_per_month).await?
        }
        Command::Bench(args) => cecsync::bench::run(args).await?,
    }
    Ok(())
}

/// Queues a backfill on the running service and follows it to its end.
async fn remote_backfill(
    remote: &Remote,
    pipeline: &str,
    from: Month,
    to: Month,
    refresh: bool,
) -> anyhow::Result<()> {
    let id = remote.backfill(pipeline, from, to, refresh).await?;
    info!(job = id, service = remote.base_url(), "Backfill queued on the running service.");
    let job = remote
        .wait(id, |v| {
            info!(
                job = id, state = ?v.state, slices_done = v.slices_done,
                slices_total = v.slices_total, rows = v.rows, "Backfill progress."
            );
        })
        .await?;
    emit(format_args!(
        "{pipeline}: job {id} {:?}: {} of {} slice(s), {} rows written",
        job.state, job.slices_done, job.slices_total, job.rows_written
    ))?;
    if job.state != JobState::Succeeded {
        bail!("backfill job {id} ended {:?}: {}", job.state, job.errors.join("; "));
    }
    Ok(())
}

/// Writes `text` and a newline to standard output; a reader that went away (`| head`) ends
/// the output quietly instead of failing the command.
fn emit(text: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
