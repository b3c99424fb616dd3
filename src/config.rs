//! The configuration file (`--config cecsync.toml`): destination, sources, tenant and the
//! per-pipeline settings. See `cecsync.example.toml` for a commented example.
//!
//! Secrets are written as references to environment variables (`"${CEC_OIFDE_TOKEN}"`) and
//! resolved once, here, into [`Secret`]s. Every validation error names the file, the key and
//! the fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::FixedOffset;
use serde::Deserialize;

mod push;
mod toml_error;

pub use push::{OutboundPush, PrivateNumberPush, PushSettings, TlsFiles};

use crate::calendar::parse_zone;
use crate::catalog::pipeline::AuthSpec;
use crate::catalog::schema::FieldKind;
use crate::catalog::{Catalog, CatalogError};
use crate::secret::Secret;
use crate::service::schedule::parse_cron;

/// A configuration error: which file, which key, what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the configuration: {source}")]
    Unreadable { file: String, source: std::io::Error },
    /// The file is not valid TOML or has a key of the wrong type or an unknown key.
    #[error("{file}: line {line}: {key}{sep}{problem}; fix: {fix}", sep = if key.is_empty() { "" } else { ": " })]
    Syntax { file: String, line: usize, key: String, problem: String, fix: String },
    /// A key has a value that cannot work.
    #[error("{file}: {key}: {problem}; fix: {fix}")]
    Invalid { file: String, key: String, problem: String, fix: String },
    /// The datasets could not be loaded.
    #[error("{file}: catalog_dir: {source}")]
    Catalog { file: String, source: CatalogError },
}

/// The raw file, as written by an operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    tenant_id: String,
    destination: DestinationConfig,
    #[serde(default)]
    sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    pipelines: BTreeMap<String, PipelineConfig>,
    #[serde(default)]
    catalog_dir: Option<PathBuf>,
    #[serde(default)]
    spool_dir: Option<PathBuf>,
    #[serde(default)]
    service: ServiceConfig,
    #[serde(default)]
    push: Option<push::PushConfig>,
}

/// The `[service]` table: how `cecsync run` is reached and behaves.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServiceConfig {
    #[serde(default)]
    control_listen: Option<String>,
    #[serde(default)]
    control_url: Option<String>,
    #[serde(default)]
    control_token: Option<String>,
    #[serde(default)]
    grace_period_secs: Option<u64>,
    #[serde(default)]
    lease_mode: Option<LeaseMode>,
    #[serde(default)]
    lease_ttl_secs: Option<u64>,
    #[serde(default)]
    timezone: Option<String>,
}

/// Where the lake is.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct DestinationConfig {
    url: String,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    secret_access_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceConfig {
    base_url: String,
    #[serde(default = "default_zone")]
    timezone: String,
    #[serde(default)]
    auth_token: Option<String>,
    #[serde(default)]
    app_key: Option<String>,
    #[serde(default)]
    app_secret: Option<String>,
    #[serde(default)]
    ak: Option<String>,
    #[serde(default)]
    sk: Option<String>,
    #[serde(default)]
    token_url: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    token_lifetime_secs: Option<u64>,
    #[serde(default)]
    gateway_account: Option<toml::Value>,
    #[serde(default)]
    gateway_password: Option<String>,
    #[serde(default)]
    gateway_login_path: Option<String>,
    #[serde(default)]
    path_params: BTreeMap<String, String>,
    #[serde(default = "default_max_concurrency")]
    max_concurrency: usize,
    #[serde(default)]
    requests_per_second: Option<f64>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    ca_bundle: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    flat_body: bool,
    #[serde(default)]
    retry: RetryConfig,
}

fn default_zone() -> String {
    "+08:00".into()
}
fn default_max_concurrency() -> usize {
    4
}
/// Timeout of one request when the configuration sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Path of the API Fabric token endpoint on the origin of the base URL.
pub const FABRIC_TOKEN_PATH: &str = "/apigovernance/api/oauth/tokenByAkSk";
/// Longest API Fabric token lifetime the platform grants (`X-Token-Expire`), in seconds;
/// also the default.
pub const MAX_FABRIC_TOKEN_LIFETIME_SECS: u64 = 3600;

/// Retry limits of a source.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, the first included.
    #[serde(default = "default_attempts")]
    pub max_attempts: usize,
    /// Upper bound on the time one request may take, its retries and waits included.
    #[serde(default = "default_elapsed")]
    pub max_elapsed_secs: u64,
    /// First backoff delay, before jitter.
    #[serde(default = "default_initial_ms")]
    pub initial_backoff_ms: u64,
    /// Largest backoff delay.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_attempts() -> usize {
    6
}
fn default_elapsed() -> u64 {
    120
}
fn default_initial_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    10_000
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            max_elapsed_secs: default_elapsed(),
            initial_backoff_ms: default_initial_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PipelineConfig {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    page_concurrency: Option<usize>,
    #[serde(default)]
    slice_concurrency: Option<usize>,
    #[serde(default)]
    slice_attempts: Option<usize>,
    #[serde(default)]
    lookback_hours: Option<u64>,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    refresh_schedule: Option<String>,
    #[serde(default)]
    refresh_previous_days: Option<u32>,
    #[serde(default)]
    first_page: Option<u64>,
    #[serde(default)]
    request_body: BTreeMap<String, toml::Value>,
    #[serde(default)]
    for_each: Vec<BTreeMap<String, toml::Value>>,
    #[serde(default)]
    for_each_from: Option<String>,
}

/// Default lookback of an incremental sync, in hours, where neither the configuration nor
/// the dataset sets one.
pub const DEFAULT_LOOKBACK_HOURS: u64 = 48;
/// Default incremental schedule: every 15 minutes (seconds field first).
pub const DEFAULT_SCHEDULE: &str = "0 */15 * * * *";
/// Default refresh schedule: nightly at 02:30 in the schedule zone.
pub const DEFAULT_REFRESH_SCHEDULE: &str = "0 30 2 * * *";
/// Default days after a month ends during which the refresh still rewrites it.
pub const DEFAULT_REFRESH_PREVIOUS_DAYS: u32 = 3;
/// Default address of the control API.
pub const DEFAULT_CONTROL_LISTEN: &str = "127.0.0.1:8087";

/// The lake's location and credentials.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A local folder.
    Local {
        /// The folder.
        path: PathBuf,
    },
    /// An S3-compatible bucket (AWS S3, Huawei OBS, MinIO, ...).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket ("" for the root).
        prefix: String,
        /// Endpoint URL for non-AWS stores.
        endpoint: Option<String>,
        /// Region.
        region: Option<String>,
        /// Whether plain HTTP is allowed (test servers only).
        allow_http: bool,
        /// Access key id; the standard `AWS_ACCESS_KEY_ID` when absent.
        access_key_id: Option<Secret>,
        /// Secret access key; the standard `AWS_SECRET_ACCESS_KEY` when absent.
        secret_access_key: Option<Secret>,
    },
}

/// How a source's requests are authenticated.
#[derive(Debug, Clone)]
pub enum SourceAuth {
    /// A fixed OIFDE token.
    StaticToken(Secret),
    /// A token obtained with the tenant's app key and API password (C3 `gettoken`).
    AppCredentials {
        /// App key (the tenant ID for tenant-level integration).
        app_key: String,
        /// API password.
        app_secret: Secret,
    },
    /// The AK/SK that sign every request (C2).
    AkSk {
        /// Access key: the developer account, named in every signature.
        ak: String,
        /// Secret key.
        sk: Secret,
    },
    /// The CC-Gateway configuration login (C5) that opens a session GUID.
    Gateway(GatewayLogin),
    /// No credentials configured.
    None,
}

/// The CC-Gateway configuration login (C5) of a source, used by pipelines whose auth style
/// is `gateway_guid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayLogin {
    /// The `agentId` of the login: an administrator's work number, or VDN id + 100000 (or
    /// + 1000000) for a VDN account.
    pub account: u64,
    /// Its password.
    pub password: Secret,
    /// The login path relative to `base_url`; default [`GATEWAY_LOGIN_PATH`].
    pub login_path: String,
}

/// The C5 configuration login, relative to a CC-Gateway base URL.
pub const GATEWAY_LOGIN_PATH: &str = "/agentgateway/resource/config/login";

/// The largest `gateway_account`: VDN accounts are VDN id + 1000000, VDN ids at most 9999.
const MAX_GATEWAY_ACCOUNT: u64 = 9_999_999;

/// The API Fabric (C1, `tokenByAkSk`) login of a source, used by pipelines whose auth style
/// is `fabric_token`; the app key and secret are those of [`SourceAuth::AppCredentials`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricLogin {
    /// Full URL of the token endpoint; by default the origin of `base_url` +
    /// [`FABRIC_TOKEN_PATH`].
    pub token_url: String,
    /// Operator user ID sent as `X-UserId` on business calls, when configured.
    pub user_id: Option<String>,
    /// Token lifetime asked for with `X-Token-Expire` (1 to 3600 s).
    pub token_lifetime: Duration,
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its name in the configuration.
    pub name: String,
    /// Base URL without a trailing slash; either `https://IP:PORT` or `https://domain/apiaccess`.
    pub base_url: String,
    /// The server's zone, which defines the month tables.
    pub zone: FixedOffset,
    /// Credentials.
    pub auth: SourceAuth,
    /// The API Fabric login settings (used only by `fabric_token` pipelines).
    pub fabric: FabricLogin,
    /// Values of the `{name}` placeholders of pipeline request paths on this source (for
    /// example `inspection_service = "CCISQM"`); they override the pipeline's defaults.
    pub path_params: BTreeMap<String, String>,
    /// Requests in flight at most.
    pub max_concurrency: usize,
    /// Requests a second at most, shared by every pipeline on the source; none when absent.
    pub requests_per_second: Option<f64>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Extra CA certificates (PEM) for on-premise endpoints.
    pub ca_bundle: Option<PathBuf>,
    /// Skip TLS verification (testing only; logged loudly).
    pub insecure_skip_verify: bool,
    /// Send request bodies flat, never in a pipeline's `[request] wrap_in` object.
    pub flat_body: bool,
    /// Retry limits.
    pub retry: RetryConfig,
}

/// Per-pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Whether `sync` and the schedules run it.
    pub enabled: bool,
    /// The source that serves it.
    pub source: String,
    /// Pages fetched at once after the first.
    pub page_concurrency: usize,
    /// Month slices fetched at once; one more may be written meanwhile (a slice that has
    /// all its pages makes way for the next one's fetch before it is written).
    pub slice_concurrency: usize,
    /// Attempts at a slice whose row count does not match the API's total.
    pub slice_attempts: usize,
    /// How far before the last synced instant an incremental sync re-reads.
    pub lookback: Duration,
    /// Cron expression (seconds field allowed) of the incremental sync in `cecsync run`.
    pub schedule: String,
    /// Cron expression of the full refresh of the open month (and the previous one).
    pub refresh_schedule: String,
    /// Days after a month ends during which the refresh also rewrites that month.
    pub refresh_previous_days: u32,
    /// Request body fields of this deployment, added to (and winning over) the pipeline's
    /// `[request] body`: the called numbers, call types or VDN that a query is about.
    pub request_body: BTreeMap<String, toml::Value>,
    /// One request per entry (`[{ ccId = 1, vdn = 170 }, ...]`), each paged and reconciled
    /// on its own, all into the same partitions: keys that are `{placeholder}`s of the
    /// request path fill it, the others go into the body over `request_body`. Empty: one
    /// request without.
    pub for_each: Vec<BTreeMap<String, toml::Value>>,
    /// A snapshot dataset whose newest snapshot lists more entries: each of its rows gives
    /// the pipeline's `for_each` keys from its columns of the same names (the campaigns of
    /// the iSales campaign list).
    pub for_each_from: Option<String>,
}

/// What a second service does when another one holds the lake's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseMode {
    /// Wait, checking again, until the lease is released or expires.
    Wait,
    /// Exit at once with an error naming the holder.
    Exit,
}

/// Settings of the long-running service (`cecsync run`).
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Address the control API listens on (loopback by default).
    pub control_listen: SocketAddr,
    /// URL of a running service's control API, for `cecsync backfill` (default: derived
    /// from `control_listen`).
    pub control_url: Option<String>,
    /// Bearer token required by every endpoint but `/healthz`; `None` when not set.
    pub control_token: Option<Secret>,
    /// How long a stop signal waits for the jobs in flight.
    pub grace_period: Duration,
    /// What to do when another service holds the lease.
    pub lease_mode: LeaseMode,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// Zone the cron schedules are read in; `None`: each pipeline's source zone.
    pub schedule_zone: Option<FixedOffset>,
}

impl ServiceSettings {
    /// The base URL of the control API that `cecsync backfill` talks to.
    pub fn control_base_url(&self) -> String {
        match &self.control_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.control_listen),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file it came from.
    pub file: PathBuf,
    /// The tenant.
    pub tenant_id: String,
    /// Where the lake is.
    pub destination: Destination,
    /// Sources by name.
    pub sources: BTreeMap<String, Source>,
    /// Settings of every pipeline of the catalog.
    pub pipelines: BTreeMap<String, PipelineSettings>,
    /// The datasets.
    pub catalog: Catalog,
    /// Local folder for staging partitions before they are written.
    pub spool_dir: PathBuf,
    /// The service's settings.
    pub service: ServiceSettings,
    /// The push receivers of `cecsync run`, when `[push]` is configured.
    pub push: Option<PushSettings>,
}

impl Settings {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Unreadable { file: file.clone(), source })?;
        Self::parse(path, &text, &|name| std::env::var(name).ok())
    }

    /// Validates configuration text; `env` resolves `${VAR}` references.
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let raw: ConfigFile = toml::from_str(text).map_err(|e| {
            let toml_error::TomlProblem { line, key, problem, fix } = toml_error::explain(text, &e);
            ConfigError::Syntax { file: file.clone(), line, key, problem, fix }
        })?;
        let v = Validator { file: &file, env };
        let base = path.parent().unwrap_or(Path::new("."));

        let tenant_id = v.text("tenant_id", &raw.tenant_id)?;
        if tenant_id.trim().is_empty() {
            return Err(v.invalid(
                "tenant_id",
                "is empty",
                "set the tenant ID of the contact center",
            ));
        }
        let destination = v.destination(&raw.destination, base)?;
        let mut catalog = match &raw.catalog_dir {
            Some(dir) => Catalog::with_dir(&base.join(dir)),
            None => Catalog::builtin(),
        }
        .map_err(|source| ConfigError::Catalog { file: file.clone(), source })?;

        for (name, first) in raw.pipelines.iter().filter_map(|(n, p)| Some((n, p.first_page?))) {
            if catalog.get(name).is_some() && !catalog.set_first_page(name, first) {
                return Err(v.invalid(
                    &format!("pipelines.{name}.first_page"),
                    &format!("is set, but pipeline '{name}' does not page by page number"),
                    "remove it",
                ));
            }
        }
        let mut sources = BTreeMap::new();
        for (name, s) in &raw.sources {
            sources.insert(name.clone(), v.source(name, s, base)?);
        }
        for name in raw.pipelines.keys() {
            if catalog.get(name).is_none() {
                return Err(v.invalid(
                    &format!("pipelines.{name}"),
                    "names no known dataset",
                    &format!("use one of: {}", catalog.names().join(", ")),
                ));
            }
        }
        let mut pipelines = BTreeMap::new();
        for (name, dataset) in catalog.iter() {
            let p = raw.pipelines.get(name);
            let explicit = p.is_some_and(|p| p.enabled == Some(true));
            let source =
                p.and_then(|p| p.source.clone()).unwrap_or_else(|| dataset.spec.source.clone());
            let has_source = sources.contains_key(&source);
            if explicit && !has_source {
                return Err(v.invalid(
                    &format!("pipelines.{name}.source"),
                    &format!("source '{source}' is not configured"),
                    &format!("add a [sources.{source}] table with its base_url"),
                ));
            }
            let concurrency = p.and_then(|p| p.page_concurrency).unwrap_or(4);
            if concurrency == 0 {
                return Err(v.invalid(
                    &format!("pipelines.{name}.page_concurrency"),
                    "is 0",
                    "use 1 or more",
                ));
            }
            let slice_concurrency = p.and_then(|p| p.slice_concurrency).unwrap_or(2);
            if slice_concurrency == 0 {
                return Err(v.invalid(
                    &format!("pipelines.{name}.slice_concurrency"),
                    "is 0",
                    "use 1 (one month at a time) or more",
                ));
            }
            let cron = |field: &str, value: Option<&String>, default: &str| {
                let text = value.map(String::as_str).unwrap_or(default);
                parse_cron(text).map(|_| text.to_string()).map_err(|problem| {
                    v.invalid(
                        &format!("pipelines.{name}.{field}"),
                        &problem,
                        "write six fields, seconds first, e.g. \"0 */15 * * * *\"",
                    )
                })
            };
            let schedule = cron("schedule", p.and_then(|p| p.schedule.as_ref()), DEFAULT_SCHEDULE)?;
            let refresh_schedule = cron(
                "refresh_schedule",
                p.and_then(|p| p.refresh_schedule.as_ref()),
                DEFAULT_REFRESH_SCHEDULE,
            )?;
            let for_each = p.map(|p| p.for_each.clone()).unwrap_or_default();
            let for_each_from = p.and_then(|p| p.for_each_from.clone());
            // A pipeline that sends one request per configured entry is not switched on by
            // its source alone, which does not say what to ask about: it needs its own table
            // (where missing entries are then refused below).
            let needs_entries = !dataset.spec.request.for_each.is_empty();
            let by_default = has_source && (p.is_some() || !needs_entries);
            let enabled = p.and_then(|p| p.enabled).unwrap_or(by_default) && has_source;
            let signed = matches!(dataset.spec.auth, AuthSpec::AkskSignature { .. });
            if enabled && signed && !matches!(sources[&source].auth, SourceAuth::AkSk { .. }) {
                return Err(v.invalid(
                    &format!("sources.{source}.ak"),
                    &format!("is not set, and pipeline '{name}' signs its requests with an AK/SK"),
                    &format!(
                        "set ak and sk = \"${{ENV_VAR}}\" in [sources.{source}], or disable the pipeline"
                    ),
                ));
            }
            let gateway = matches!(dataset.spec.auth, AuthSpec::GatewayGuid);
            if enabled && gateway && !matches!(sources[&source].auth, SourceAuth::Gateway(_)) {
                return Err(v.invalid(
                    &format!("sources.{source}.gateway_account"),
                    &format!("is not set, and pipeline '{name}' needs a CC-Gateway session"),
                    &format!(
                        "set gateway_account and gateway_password = \"${{CEC_GATEWAY_PASSWORD}}\" in [sources.{source}], or disable the pipeline"
                    ),
                ));
            }
            if let Some(list) = &for_each_from {
                v.for_each_from(name, &dataset.spec, list, &catalog)?;
            }
            let required = enabled && p.is_some() && for_each_from.is_none();
            v.for_each(name, &dataset.spec, &for_each, required)?;
            pipelines.insert(
                name.to_string(),
                PipelineSettings {
                    enabled,
                    source,
                    page_concurrency: concurrency,
                    slice_concurrency,
                    slice_attempts: p.and_then(|p| p.slice_attempts).unwrap_or(3).max(1),
                    lookback: Duration::from_secs(
                        3600 * p
                            .and_then(|p| p.lookback_hours)
                            .or(dataset.spec.sync.lookback_hours)
                            .unwrap_or(DEFAULT_LOOKBACK_HOURS),
                    ),
                    schedule,
                    refresh_schedule,
                    refresh_previous_days: p
                        .and_then(|p| p.refresh_previous_days)
                        .unwrap_or(DEFAULT_REFRESH_PREVIOUS_DAYS),
                    request_body: p.map(|p| p.request_body.clone()).unwrap_or_default(),
                    for_each,
                    for_each_from,
                },
            );
        }
        // A fan-out dataset runs within its parent: off with it, and never on without it.
        for (name, dataset) in catalog.iter() {
            let Some(fan_out) = dataset.spec.fan_out() else { continue };
            let explicit = raw.pipelines.get(name).is_some_and(|p| p.enabled == Some(true));
            let parent_enabled = pipelines.get(&fan_out.parent).is_some_and(|p| p.enabled);
            if let Some(settings) = pipelines.get_mut(name) {
                settings.enabled &= parent_enabled;
            }
            if explicit && !parent_enabled {
                return Err(v.invalid(
                    &format!("pipelines.{name}.enabled"),
                    &format!("is true, but its parent '{}' is not enabled", fan_out.parent),
                    &format!(
                        "enable pipelines.{} (its slices fetch {name}), or set enabled = false",
                        fan_out.parent
                    ),
                ));
            }
        }
        let spool_dir = raw.spool_dir.map(|d| base.join(d)).unwrap_or_else(std::env::temp_dir);
        let service = v.service(&raw.service)?;
        // The pushed outbound results share the zone of the pull that backs them up.
        let backstop = pipelines
            .get(push::OUTBOUND_DATASET)
            .filter(|p| p.enabled)
            .and_then(|p| Some((p.source.as_str(), sources.get(&p.source)?)));
        let push = raw.push.as_ref().map(|p| v.push(p, base, backstop)).transpose()?;
        Ok(Self {
            file: path.to_path_buf(),
            tenant_id,
            destination,
            sources,
            pipelines,
            catalog,
            spool_dir,
            service,
            push,
        })
    }

    /// The source that serves `pipeline`.
    pub fn source_of(&self, pipeline: &str) -> Option<&Source> {
        self.pipelines.get(pipeline).and_then(|p| self.sources.get(&p.source))
    }
}

struct Validator<'a> {
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Validator<'_> {
    fn invalid(&self, key: &str, problem: &str, fix: &str) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.to_string(),
            problem: problem.to_string(),
            fix: fix.to_string(),
        }
    }

    /// Checks `[pipelines.NAME] for_each` against the pipeline: entries only where it sends
    /// one request per range that an entry can multiply, each entry fit (see
    /// [`RequestSpec::split_entry`](crate::catalog::pipeline::RequestSpec::split_entry)),
    /// and entries present when the pipeline names keys they must give and its table
    /// enables it (`configured`). A pipeline enabled only because its source is configured
    /// is refused when it runs instead, so that a source serves its other pipelines.
    fn for_each(
        &self,
        name: &str,
        spec: &crate::catalog::PipelineSpec,
        entries: &[BTreeMap<String, toml::Value>],
        configured: bool,
    ) -> Result<(), ConfigError> {
        let key = format!("pipelines.{name}.for_each");
        if entries.is_empty() {
            if configured && !spec.request.for_each.is_empty() {
                let keys = spec.request.for_each.join(" = ..., ");
                return Err(self.invalid(
                    &key,
                    &format!("is missing; pipeline '{name}' sends one request per entry"),
                    &format!("add for_each = [ {{ {keys} = ... }}, ... ] to [pipelines.{name}], or set enabled = false"),
                ));
            }
            return Ok(());
        }
        if let Some(reason) = spec.single_request() {
            return Err(self.invalid(&key, &format!("cannot apply: {reason}"), "remove it"));
        }
        for (n, entry) in entries.iter().enumerate() {
            spec.request.split_entry(entry).map_err(|problem| {
                let fix = match spec.request.for_each.is_empty() {
                    true => "give each entry the keys of one request".to_string(),
                    false => format!("give each entry {}", spec.request.for_each.join(", ")),
                };
                self.invalid(&format!("{key}[{n}]"), &problem, &fix)
            })?;
        }
        Ok(())
    }

    /// Checks `[pipelines.NAME] for_each_from`: it names a snapshot dataset whose columns
    /// include every key of the pipeline's `for_each`, as integers or text.
    fn for_each_from(
        &self,
        name: &str,
        spec: &crate::catalog::PipelineSpec,
        list: &str,
        catalog: &Catalog,
    ) -> Result<(), ConfigError> {
        let key = format!("pipelines.{name}.for_each_from");
        if spec.request.for_each.is_empty() {
            return Err(self.invalid(
                &key,
                &format!("is set, but pipeline '{name}' names no for_each keys to take"),
                "remove it, or use for_each entries",
            ));
        }
        let listed = catalog.get(list).filter(|d| d.spec.is_snapshot());
        let Some(listed) = listed else {
            return Err(self.invalid(
                &key,
                &format!("'{list}' is not a snapshot dataset of the catalog"),
                "name a dataset with [slicing] style = \"snapshot\", such as \"campaigns\"",
            ));
        };
        for wanted in &spec.request.for_each {
            let kind = listed.schema.field(wanted).map(|f| f.kind);
            if !matches!(kind, Some(FieldKind::Int32 | FieldKind::Int64 | FieldKind::Utf8)) {
                return Err(self.invalid(
                    &key,
                    &format!("'{list}' has no integer or text column '{wanted}'"),
                    &format!("name a dataset whose rows give {}", spec.request.for_each.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// Resolves `${VAR}` references in a value.
    fn text(&self, key: &str, raw: &str) -> Result<String, ConfigError> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| {
                self.invalid(key, "has an unclosed ${", "write environment references as ${NAME}")
            })?;
            let name = &after[..end];
            let value = (self.env)(name).ok_or_else(|| {
                self.invalid(
                    key,
                    &format!("refers to the environment variable {name}, which is not set"),
                    &format!("export {name} (or put it in the service's environment file)"),
                )
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn secret(&self, key: &str, raw: &Option<String>) -> Result<Option<Secret>, ConfigError> {
        raw.as_deref().map(|r| self.text(key, r).map(Secret::new)).transpose()
    }

    fn destination(&self, d: &DestinationConfig, base: &Path) -> Result<Destination, ConfigError> {
        let url = self.text("destination.url", &d.url)?;
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(self.invalid(
                    "destination.url",
                    "names no folder",
                    "write file:///var/lib/cecsync/lake or file://./lake",
                ));
            }
            return Ok(Destination::Local { path: base.join(path) });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(self.invalid(
                    "destination.url",
                    "names no bucket",
                    "write s3://BUCKET/PREFIX",
                ));
            }
            let endpoint =
                d.endpoint.as_deref().map(|e| self.text("destination.endpoint", e)).transpose()?;
            return Ok(Destination::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                endpoint,
                region: d.region.clone(),
                allow_http: d.allow_http,
                access_key_id: self.secret("destination.access_key_id", &d.access_key_id)?,
                secret_access_key: self
                    .secret("destination.secret_access_key", &d.secret_access_key)?,
            });
        }
        if url.contains("://") {
            return Err(self.invalid(
                "destination.url",
                &format!("scheme of '{url}' is not supported"),
                "use file://PATH or s3://BUCKET/PREFIX",
            ));
        }
        Ok(Destination::Local { path: base.join(url) })
    }

    fn service(&self, s: &ServiceConfig) -> Result<ServiceSettings, ConfigError> {
        let listen = s.control_listen.as_deref().unwrap_or(DEFAULT_CONTROL_LISTEN);
        let listen = self.text("service.control_listen", listen)?;
        let control_listen = listen.parse::<SocketAddr>().map_err(|_| {
            self.invalid(
                "service.control_listen",
                &format!("'{listen}' is not an IP address and port"),
                "write 127.0.0.1:8087 (loopback) or 0.0.0.0:8087 (every interface)",
            )
        })?;
        let control_url =
            s.control_url.as_deref().map(|u| self.text("service.control_url", u)).transpose()?;
        if let Some(url) = &control_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(self.invalid(
                    "service.control_url",
                    &format!("'{url}' is not an http(s) URL"),
                    "write http://HOST:PORT of the running service",
                ));
            }
        }
        // An empty token (an environment variable set to "") means no token.
        let control_token = self
            .secret("service.control_token", &s.control_token)?
            .filter(|t| !t.expose().is_empty());
        let grace = s.grace_period_secs.unwrap_or(30);
        let ttl = s.lease_ttl_secs.unwrap_or(60);
        if ttl < 3 {
            return Err(self.invalid(
                "service.lease_ttl_secs",
                &format!("{ttl} is too short to renew the lease in time"),
                "use 3 seconds or more, e.g. 60",
            ));
        }
        let schedule_zone = s
            .timezone
            .as_deref()
            .map(|z| {
                parse_zone(z).map_err(|e| {
                    self.invalid("service.timezone", &e.to_string(), "e.g. +08:00 or UTC")
                })
            })
            .transpose()?;
        Ok(ServiceSettings {
            control_listen,
            control_url,
            control_token,
            grace_period: Duration::from_secs(grace),
            lease_mode: s.lease_mode.unwrap_or(LeaseMode::Wait),
            lease_ttl: Duration::from_secs(ttl),
            schedule_zone,
        })
    }

    /// The AK/SK of a source, when it has one: both keys, neither empty.
    fn aksk(&self, name: &str, s: &SourceConfig) -> Result<Option<SourceAuth>, ConfigError> {
        let key = |k: &str| format!("sources.{name}.{k}");
        let ak = s.ak.as_deref().map(|k| self.text(&key("ak"), k)).transpose()?;
        let sk = self.secret(&key("sk"), &s.sk)?;
        match (ak, sk) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(self.invalid(
                &key("sk"),
                "is missing: ak needs the SK issued with it",
                "set sk = \"${CEC_SK}\" and export CEC_SK (never write the SK in the file)",
            )),
            (None, Some(_)) => Err(self.invalid(
                &key("ak"),
                "is missing: sk needs the AK issued with it",
                "set ak to the AK issued by operations",
            )),
            (Some(ak), _) if ak.trim().is_empty() || ak.contains('/') => Err(self.invalid(
                &key("ak"),
                "is empty or holds a '/'",
                "set ak to the AK issued by operations",
            )),
            (_, Some(sk)) if sk.expose().is_empty() => Err(self.invalid(
                &key("sk"),
                "is empty",
                "set the environment variable it names to the SK issued with the AK",
            )),
            (Some(ak), Some(sk)) => Ok(Some(SourceAuth::AkSk { ak, sk })),
        }
    }

    /// The CC-Gateway login of a source, when it has one: `gateway_account` (a number, or
    /// a string of digits that may name an environment variable) with `gateway_password`.
    fn gateway(&self, name: &str, s: &SourceConfig) -> Result<Option<SourceAuth>, ConfigError> {
        let key = |k: &str| format!("sources.{name}.{k}");
        let account_fix = "write the agentId of the configuration login: the administrator's \
                           work number, or VDN id + 100000 for a VDN account, e.g. 100001";
        let account = match &s.gateway_account {
            None => None,
            Some(toml::Value::Integer(n)) => Some(n.to_string()),
            Some(toml::Value::String(text)) => Some(self.text(&key("gateway_account"), text)?),
            Some(other) => {
                return Err(self.invalid(
                    &key("gateway_account"),
                    &format!("is a {}, not a number", other.type_str()),
                    account_fix,
                ))
            }
        };
        let password = self.secret(&key("gateway_password"), &s.gateway_password)?;
        let login_path = match &s.gateway_login_path {
            Some(raw) => Some(self.text(&key("gateway_login_path"), raw)?),
            None => None,
        };
        let (account, password) = match (account, password) {
            (None, None) if login_path.is_some() => {
                return Err(self.invalid(
                    &key("gateway_login_path"),
                    "is set without gateway_account and gateway_password",
                    "set the login's gateway_account and gateway_password, or remove gateway_login_path",
                ))
            }
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(self.invalid(
                    &key("gateway_password"),
                    "is missing: gateway_account needs its password",
                    "set gateway_password = \"${CEC_GATEWAY_PASSWORD}\" and export CEC_GATEWAY_PASSWORD (never write the password in the file)",
                ))
            }
            (None, Some(_)) => {
                return Err(self.invalid(&key("gateway_account"), "is missing: gateway_password needs the account it opens", account_fix))
            }
            (Some(account), Some(password)) => (account, password),
        };
        let account = match account.trim().parse::<u64>() {
            Ok(n @ 1..=MAX_GATEWAY_ACCOUNT) => n,
            _ => {
                return Err(self.invalid(
                    &key("gateway_account"),
                    &format!(
                        "'{account}' is not an account number from 1 to {MAX_GATEWAY_ACCOUNT}"
                    ),
                    account_fix,
                ))
            }
        };
        if password.expose().is_empty() {
            return Err(self.invalid(
                &key("gateway_password"),
                "is empty",
                "set the environment variable it names to the password of gateway_account",
            ));
        }
        let login_path = login_path.unwrap_or_else(|| GATEWAY_LOGIN_PATH.to_string());
        if !login_path.starts_with('/') || login_path.contains(['?', '#']) {
            return Err(self.invalid(
                &key("gateway_login_path"),
                &format!("'{login_path}' is not a path"),
                &format!("write a path relative to base_url, e.g. {GATEWAY_LOGIN_PATH}"),
            ));
        }
        Ok(Some(SourceAuth::Gateway(GatewayLogin { account, password, login_path })))
    }

    /// The API Fabric login keys of source `name`, with their defaults.
    fn fabric_login(
        &self,
        name: &str,
        s: &SourceConfig,
        base_url: &str,
    ) -> Result<FabricLogin, ConfigError> {
        let key = |k: &str| format!("sources.{name}.{k}");
        let token_url = match &s.token_url {
            Some(raw) => {
                let url = self.text(&key("token_url"), raw)?;
                if reqwest::Url::parse(&url).map_or(true, |u| !u.scheme().starts_with("http")) {
                    return Err(self.invalid(
                        &key("token_url"),
                        &format!("'{url}' is not an http(s) URL"),
                        &format!("write https://DOMAIN{FABRIC_TOKEN_PATH}, or remove the key to use the origin of base_url"),
                    ));
                }
                url
            }
            None => {
                let origin = reqwest::Url::parse(base_url)
                    .map(|u| u.origin().ascii_serialization())
                    .map_err(|e| {
                        self.invalid(
                            &key("base_url"),
                            &format!("'{base_url}' is not a URL: {e}"),
                            "write https://IP:PORT or https://DOMAIN/apiaccess",
                        )
                    })?;
                format!("{origin}{FABRIC_TOKEN_PATH}")
            }
        };
        let user_id = s.user_id.as_deref().map(|u| self.text(&key("user_id"), u)).transpose()?;
        if let Some(user) = user_id.as_deref().filter(|u| !u.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(self.invalid(
                &key("user_id"),
                &format!("'{}' cannot be sent as the X-UserId header", user.escape_debug()),
                "write the operator's user ID: visible ASCII characters, no spaces",
            ));
        }
        let lifetime = s.token_lifetime_secs.unwrap_or(MAX_FABRIC_TOKEN_LIFETIME_SECS);
        if !(1..=MAX_FABRIC_TOKEN_LIFETIME_SECS).contains(&lifetime) {
            return Err(self.invalid(
                &key("token_lifetime_secs"),
                &format!("{lifetime} is outside 1..={MAX_FABRIC_TOKEN_LIFETIME_SECS}"),
                "use the token lifetime in seconds, at most 3600 (the platform's maximum), e.g. 600",
            ));
        }
        Ok(FabricLogin { token_url, user_id, token_lifetime: Duration::from_secs(lifetime) })
    }

    fn source(&self, name: &str, s: &SourceConfig, base: &Path) -> Result<Source, ConfigError> {
        let key = |k: &str| format!("sources.{name}.{k}");
        let base_url = self.text(&key("base_url"), &s.base_url)?;
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(self.invalid(
                &key("base_url"),
                &format!("'{base_url}' is not an http(s) URL"),
                "write https://IP:PORT or https://DOMAIN/apiaccess",
            ));
        }
        let zone = parse_zone(&s.timezone).map_err(|e| {
            self.invalid(&key("timezone"), &e.to_string(), "the CEC servers run on +08:00")
        })?;
        let token = self.secret(&key("auth_token"), &s.auth_token)?;
        let app_key = s.app_key.as_deref().map(|k| self.text(&key("app_key"), k)).transpose()?;
        let app_secret = self.secret(&key("app_secret"), &s.app_secret)?;
        let aksk = self.aksk(name, s)?;
        let gateway = self.gateway(name, s)?;
        let others = token.is_some() || app_key.is_some() || app_secret.is_some() || aksk.is_some();
        if let (Some(_), true) = (&gateway, others) {
            return Err(self.invalid(
                &key("gateway_account"),
                "is set together with other credentials (auth_token, app_key/app_secret or ak/sk)",
                "keep one kind of credentials per source: a CC-Gateway source has gateway_account + gateway_password alone",
            ));
        }
        let auth = match (token, app_key, app_secret, aksk) {
            (None, None, None, Some(aksk)) => aksk,
            (Some(t), None, None, None) => SourceAuth::StaticToken(t),
            (None, Some(app_key), Some(app_secret), None) => {
                SourceAuth::AppCredentials { app_key, app_secret }
            }
            (None, None, None, None) => gateway.unwrap_or(SourceAuth::None),
            (_, _, _, Some(_)) => {
                return Err(self.invalid(
                    &key("ak"),
                    "is set together with auth_token or app_key/app_secret",
                    "keep one kind of credentials per source: ak + sk for the AK/SK-signed interfaces (CMS, CC-FS, iSales)",
                ))
            }
            (Some(_), _, _, _) => {
                return Err(self.invalid(
                    &key("auth_token"),
                    "is set together with app_key/app_secret",
                    "keep either auth_token or app_key + app_secret",
                ))
            }
            _ => {
                return Err(self.invalid(
                    &key("app_key"),
                    "needs app_secret as well (and the reverse)",
                    "set both app_key and app_secret",
                ))
            }
        };
        let fabric = self.fabric_login(name, s, &base_url)?;
        let mut path_params = BTreeMap::new();
        for (param, value) in &s.path_params {
            let value = self.text(&key(&format!("path_params.{param}")), value)?;
            if value.is_empty() || value.contains(['/', '?', '#', '{', '}']) {
                return Err(self.invalid(
                    &key(&format!("path_params.{param}")),
                    &format!("'{value}' is not one path segment"),
                    "write a single path segment without / ? # { }, e.g. \"CCSQM\"",
                ));
            }
            path_params.insert(param.clone(), value);
        }
        if s.max_concurrency == 0 {
            return Err(self.invalid(&key("max_concurrency"), "is 0", "use 1 or more"));
        }
        if let Some(rate) = s.requests_per_second {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(self.invalid(
                    &key("requests_per_second"),
                    &format!("{rate} is not a positive number"),
                    "use the requests a second the server allows, e.g. 20 or 0.5, or remove the key for no limit",
                ));
            }
        }
        let timeout = match (s.timeout_secs, s.timeout_ms) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    &key("timeout_ms"),
                    "is set together with timeout_secs",
                    "keep one of timeout_secs and timeout_ms",
                ))
            }
            (Some(0), None) | (None, Some(0)) => {
                let which = if s.timeout_secs.is_some() { "timeout_secs" } else { "timeout_ms" };
                return Err(self.invalid(
                    &key(which),
                    "is 0",
                    "use the time one request may take, e.g. timeout_secs = 30",
                ));
            }
            (Some(secs), None) => Duration::from_secs(secs),
            (None, Some(ms)) => Duration::from_millis(ms),
            (None, None) => DEFAULT_TIMEOUT,
        };
        if s.retry.max_attempts == 0 {
            return Err(self.invalid(
                &key("retry.max_attempts"),
                "is 0",
                "use 1 (no retry) or more",
            ));
        }
        Ok(Source {
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            zone,
            auth,
            fabric,
            path_params,
            max_concurrency: s.max_concurrency,
            requests_per_second: s.requests_per_second,
            timeout,
            ca_bundle: s.ca_bundle.as_ref().map(|p| base.join(p)),
            insecure_skip_verify: s.insecure_skip_verify,
            flat_body: s.flat_body,
            retry: s.retry.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr3t".to_string())
    }

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::parse(Path::new("/etc/cecsync/cecsync.toml"), text, &env)
    }

    const GOOD: &str = r#"
        tenant_id = "202101"
        [destination]
        url = "file://./lake"
        [sources.oifde]
        base_url = "https://10.0.0.1:28443/"
        auth_token = "${TOKEN}"
    "#;

    /// A configuration with an API Fabric source only.
    const FABRIC: &str = r#"
        tenant_id = "202101"
        [destination]
        url = "file://./lake"
        [sources.fabric]
        base_url = "https://service.besclouds.com/apiaccess"
        app_key = "ak"
        app_secret = "${TOKEN}"
    "#;

    #[test]
    fn a_good_config_resolves_secrets_and_defaults() {
        let s = parse(GOOD).unwrap();
        let src = &s.sources["oifde"];
        assert_eq!(src.base_url, "https://10.0.0.1:28443");
        assert_eq!(src.zone.local_minus_utc(), 8 * 3600);
        assert!(matches!(&src.auth, SourceAuth::StaticToken(t) if t.expose() == "s3cr3t"));
        assert!(s.pipelines["rbt_recognition"].enabled);
        assert!(
            matches!(&s.destination, Destination::Local { path } if path == Path::new("/etc/cecsync/./lake"))
        );
        assert!(!format!("{s:?}").contains("s3cr3t"), "secrets never reach Debug output");
    }

    #[test]
    fn errors_name_file_key_and_fix() {
        let unset = GOOD.replace("${TOKEN}", "${CEC_UNSET_VAR}");
        let err = parse(&unset).unwrap_err().to_string();
        assert!(
            err.contains("/etc/cecsync/cecsync.toml") && err.contains("sources.oifde.auth_token"),
            "{err}"
        );
        assert!(err.contains("export CEC_UNSET_VAR"), "{err}");

        let zone = GOOD.replace("auth_token", "timezone = \"+8h\"\nauth_token");
        let err = parse(&zone).unwrap_err().to_string();
        assert!(err.contains("sources.oifde.timezone") && err.contains("fix:"), "{err}");

        let typo = GOOD.replace("base_url", "baseurl");
        let err = parse(&typo).unwrap_err().to_string();
        assert!(err.contains("cecsync.toml") && err.contains("baseurl"), "{err}");

        let unknown = format!("{GOOD}\n[pipelines.nope]\nenabled = true\n");
        let err = parse(&unknown).unwrap_err().to_string();
        assert!(err.contains("pipelines.nope") && err.contains("rbt_recognition"), "{err}");

        let scheme = GOOD.replace("file://./lake", "ftp://x/y");
        assert!(parse(&scheme).unwrap_err().to_string().contains("destination.url"));
    }

    /// The commented example in the repository is a valid configuration.
    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../cecsync.example.toml");
        let env = |name: &str| (name == "CEC_OIFDE_TOKEN").then(|| "t".to_string());
        let s = Settings::parse(Path::new("cecsync.example.toml"), text, &env).unwrap();
        assert!(s.pipelines["rbt_recognition"].enabled);
        assert_eq!(s.sources["oifde"].retry.max_attempts, 6);
    }

    /// The rate and the timeout keys are read, and wrong values are refused by key.
    #[test]
    fn rate_and_timeout_keys() {
        let with = |keys: &str| GOOD.replace("auth_token", &format!("{keys}\nauth_token"));
        let s = parse(&with("requests_per_second = 2.5\ntimeout_ms = 250")).unwrap();
        let src = &s.sources["oifde"];
        assert_eq!((src.requests_per_second, src.timeout), (Some(2.5), Duration::from_millis(250)));
        let s = parse(GOOD).unwrap();
        assert_eq!(s.sources["oifde"].requests_per_second, None);
        assert_eq!(s.sources["oifde"].timeout, Duration::from_secs(30));
        for (keys, bad) in [
            ("requests_per_second = 0", "requests_per_second"),
            ("requests_per_second = -1.0", "requests_per_second"),
            ("timeout_ms = 0", "timeout_ms"),
            ("timeout_secs = 0", "timeout_secs"),
            ("timeout_secs = 5\ntimeout_ms = 100", "timeout_ms"),
        ] {
            let err = parse(&with(keys)).unwrap_err().to_string();
            assert!(err.contains(&format!("sources.oifde.{bad}")) && err.contains("fix:"), "{err}");
        }
    }

    /// The service keys have defaults; a bad cron expression, listen address or lease mode
    /// is refused naming its key; an empty token means none.
    #[test]
    fn service_keys_have_defaults_and_are_checked() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.service.control_listen.to_string(), DEFAULT_CONTROL_LISTEN);
        assert_eq!(s.service.control_base_url(), "http://127.0.0.1:8087");
        assert_eq!(s.service.lease_mode, LeaseMode::Wait);
        assert!(s.service.control_token.is_none() && s.service.schedule_zone.is_none());
        let p = &s.pipelines["rbt_recognition"];
        assert_eq!((p.schedule.as_str(), p.refresh_previous_days), (DEFAULT_SCHEDULE, 3));

        let custom = format!(
            "{GOOD}\n[service]\ncontrol_token = \"${{TOKEN}}\"\nlease_mode = \"exit\"\n\
             timezone = \"UTC\"\n[pipelines.rbt_recognition]\nschedule = \"*/5 * * * * *\"\n"
        );
        let s = parse(&custom).unwrap();
        assert_eq!(s.service.control_token.as_ref().map(Secret::expose), Some("s3cr3t"));
        assert_eq!(s.service.lease_mode, LeaseMode::Exit);
        assert_eq!(s.service.schedule_zone.map(|z| z.local_minus_utc()), Some(0));
        assert_eq!(s.pipelines["rbt_recognition"].schedule, "*/5 * * * * *");

        let cron = format!("{GOOD}\n[pipelines.rbt_recognition]\nrefresh_schedule = \"nightly\"\n");
        let err = parse(&cron).unwrap_err().to_string();
        assert!(err.contains("pipelines.rbt_recognition.refresh_schedule"), "{err}");
        let listen = format!("{GOOD}\n[service]\ncontrol_listen = \"localhost\"\n");
        let err = parse(&listen).unwrap_err().to_string();
        assert!(err.contains("service.control_listen"), "{err}");
        let mode = format!("{GOOD}\n[service]\nlease_mode = \"steal\"\n");
        assert!(parse(&mode).unwrap_err().to_string().contains("lease_mode"));
        let empty = |n: &str| (n == "EMPTY").then(String::new);
        let text =
            format!("{GOOD}\n[service]\ncontrol_token = \"${{EMPTY}}\"\n").replace("${TOKEN}", "x");
        let s = Settings::parse(Path::new("c.toml"), &text, &empty).unwrap();
        assert!(s.service.control_token.is_none());
    }

    /// `ak` and `sk` make an AK/SK source; a missing half, an empty value or a mix with
    /// other credentials is refused naming the key and the fix.
    #[test]
    fn ak_and_sk_keys() {
        let aksk = GOOD.replace("auth_token = \"${TOKEN}\"", "ak = \"cmsAK01\"\nsk = \"${TOKEN}\"");
        let s = parse(&aksk).unwrap();
        assert!(matches!(
            &s.sources["oifde"].auth,
            SourceAuth::AkSk { ak, sk } if ak == "cmsAK01" && sk.expose() == "s3cr3t"
        ));
        assert!(!format!("{s:?}").contains("s3cr3t"), "the SK never reaches Debug output");
        let no_sk = GOOD.replace("auth_token = \"${TOKEN}\"", "ak = \"cmsAK01\"");
        let no_ak = GOOD.replace("auth_token", "sk");
        let mixed = GOOD.replace("auth_token", "ak = \"cmsAK01\"\nsk = \"x\"\nauth_token");
        let empty = GOOD.replace("auth_token = \"${TOKEN}\"", "ak = \"\"\nsk = \"${TOKEN}\"");
        for (text, key, fix) in [
            (no_sk, "sources.oifde.sk", "sk = \"${CEC_SK}\""),
            (no_ak, "sources.oifde.ak", "set ak"),
            (mixed, "sources.oifde.ak", "keep one kind of credentials"),
            (empty, "sources.oifde.ak", "set ak"),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("/etc/cecsync/cecsync.toml") && err.contains(key), "{err}");
            assert!(err.contains(fix) && !err.contains("s3cr3t"), "{err}");
        }
    }

    /// The CC-Gateway login keys: the account as a number or a string, the password from
    /// the environment, the login path by default C5's; every mistake names its key and
    /// never the password.
    #[test]
    fn gateway_keys() {
        let with = |keys: &str| {
            format!("{GOOD}\n[sources.gateway]\nbase_url = \"https://10.0.0.2:8043\"\n{keys}\n")
        };
        let s = parse(&with("gateway_account = 100001\ngateway_password = \"${TOKEN}\"")).unwrap();
        let want = GatewayLogin {
            account: 100001,
            password: Secret::new("s3cr3t"),
            login_path: GATEWAY_LOGIN_PATH.into(),
        };
        assert!(matches!(&s.sources["gateway"].auth, SourceAuth::Gateway(g) if *g == want));
        assert!(!format!("{s:?}").contains("s3cr3t"), "the password never reaches Debug output");
        let keys = "gateway_account = \"1000170\"\ngateway_password = \"x\"\ngateway_login_path = \"/gw/login\"";
        let s = parse(&with(keys)).unwrap();
        assert!(matches!(
            &s.sources["gateway"].auth,
            SourceAuth::Gateway(GatewayLogin { account: 1000170, login_path, .. }) if login_path == "/gw/login"
        ));
        let pw = "gateway_password = \"${TOKEN}\"";
        for (keys, key, fix) in [
            ("gateway_account = 100001".to_string(), "gateway_password", "CEC_GATEWAY_PASSWORD"),
            (pw.to_string(), "gateway_account", "e.g. 100001"),
            (format!("gateway_account = 0\n{pw}"), "gateway_account", "e.g. 100001"),
            (format!("gateway_account = \"admin\"\n{pw}"), "gateway_account", "e.g. 100001"),
            (format!("gateway_account = 1.5\n{pw}"), "gateway_account", "e.g. 100001"),
            (
                "gateway_account = 101\ngateway_password = \"\"".into(),
                "gateway_password",
                "set the environment variable",
            ),
            (
                format!("gateway_account = 101\n{pw}\ngateway_login_path = \"login\""),
                "gateway_login_path",
                "relative to base_url",
            ),
            ("gateway_login_path = \"/x\"".into(), "gateway_login_path", "gateway_account"),
            (
                format!("gateway_account = 101\n{pw}\nak = \"a\"\nsk = \"b\""),
                "gateway_account",
                "one kind of credentials",
            ),
        ] {
            let err = parse(&with(&keys)).unwrap_err().to_string();
            assert!(
                err.contains(&format!("sources.gateway.{key}")) && err.contains(fix),
                "{keys}: {err}"
            );
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    /// An enabled pipeline that signs its requests needs a source with `ak` and `sk`.
    #[test]
    fn a_signing_pipeline_needs_ak_and_sk_on_its_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("catalog/pipelines")).unwrap();
        let builtin = include_str!("../pipelines/rbt_recognition.toml");
        let signed = builtin
            .replace("style = \"body_token\"\nfield = \"authToken\"", "style = \"aksk_signature\"");
        assert_ne!(signed, builtin);
        std::fs::write(dir.path().join("catalog/pipelines/rbt_recognition.toml"), signed).unwrap();
        let file = dir.path().join("cecsync.toml");
        let with_catalog = format!("catalog_dir = \"catalog\"\n{GOOD}");
        let err = Settings::parse(&file, &with_catalog, &env).unwrap_err().to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("sources.oifde.ak") && err.contains("rbt_recognition"), "{err}");
        assert!(err.contains("set ak and sk"), "{err}");
        let aksk =
            with_catalog.replace("auth_token = \"${TOKEN}\"", "ak = \"a\"\nsk = \"${TOKEN}\"");
        let s = Settings::parse(&file, &aksk, &env).unwrap();
        assert!(s.pipelines["rbt_recognition"].enabled);
    }

    /// Fan-out datasets follow their parent: enabled with it by default, off with it, and an
    /// explicit `enabled = true` without the parent is refused naming the key and the fix.
    #[test]
    fn fan_out_datasets_need_their_parent() {
        let fabric = FABRIC;
        let s = parse(fabric).unwrap();
        assert!(s.pipelines["appraise_calls"].enabled && s.pipelines["appraise_segments"].enabled);
        let off = format!("{fabric}\n[pipelines.appraise_calls]\nenabled = false\n");
        assert!(!parse(&off).unwrap().pipelines["appraise_segments"].enabled);
        let on = format!("{off}[pipelines.appraise_segments]\nenabled = true\n");
        let e = parse(&on).unwrap_err().to_string();
        assert!(
            e.contains("pipelines.appraise_segments.enabled")
                && e.contains("enable pipelines.appraise_calls"),
            "{e}"
        );
    }

    /// The API Fabric keys: the token URL defaults to the origin of base_url, the lifetime
    /// to 3600 s; a lifetime outside 1..=3600, a token URL that is not http(s) or a path
    /// parameter that is not one segment is refused naming its key and the fix.
    #[test]
    fn fabric_login_keys_have_defaults_and_are_checked() {
        let fabric = FABRIC;
        let s = parse(fabric).unwrap();
        let src = &s.sources["fabric"];
        assert_eq!(
            src.fabric,
            FabricLogin {
                token_url: "https://service.besclouds.com/apigovernance/api/oauth/tokenByAkSk"
                    .into(),
                user_id: None,
                token_lifetime: Duration::from_secs(3600),
            }
        );
        assert!(src.path_params.is_empty());

        let with = |keys: &str| fabric.replace("app_key", &format!("{keys}\napp_key"));
        let custom = with(
            "token_url = \"https://10.1.1.1:28070/apigovernance/api/oauth/tokenByAkSk\"\n\
             user_id = \"1611917095665261978\"\ntoken_lifetime_secs = 600\n\
             path_params = { inspection_service = \"CCISQM\" }",
        );
        let s = parse(&custom).unwrap();
        let src = &s.sources["fabric"];
        assert_eq!(
            src.fabric.token_url,
            "https://10.1.1.1:28070/apigovernance/api/oauth/tokenByAkSk"
        );
        assert_eq!(src.fabric.user_id.as_deref(), Some("1611917095665261978"));
        assert_eq!(src.fabric.token_lifetime, Duration::from_secs(600));
        assert_eq!(src.path_params["inspection_service"], "CCISQM");

        for (keys, bad) in [
            ("token_lifetime_secs = 0", "token_lifetime_secs"),
            ("token_lifetime_secs = 3601", "token_lifetime_secs"),
            ("token_url = \"ftp://x/y\"", "token_url"),
            ("token_url = \"/apigovernance\"", "token_url"),
            ("path_params = { inspection_service = \"A/B\" }", "path_params.inspection_service"),
            ("user_id = \"operator 1\"", "user_id"),
        ] {
            let err = parse(&with(keys)).unwrap_err().to_string();
            assert!(
                err.contains(&format!("sources.fabric.{bad}")) && err.contains("fix:"),
                "{err}"
            );
            assert!(err.contains("cecsync.toml") && !err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn s3_destinations_split_bucket_and_prefix() {
        let s3 = GOOD.replace("file://./lake", "s3://warehouse/cec/lake/");
        let s = parse(&s3).unwrap();
        assert!(
            matches!(&s.destination, Destination::S3 { bucket, prefix, .. } if bucket == "warehouse" && prefix == "cec/lake")
        );
    }
}
