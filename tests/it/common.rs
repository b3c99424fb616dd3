//! Shared test support: a simulator on loopback, a configuration pointing at it, a lake in
//! a local folder or in a bucket of the S3-compatible test server, and the lake read back as
//! JSON-like rows keyed by primary key.
//!
//! The S3 variants need `CECSYNC_TEST_S3_ENDPOINT` (set by `scripts/test.sh`, which starts
//! the server) and the standard `AWS_*` credentials; without the endpoint they are skipped
//! with a message, unless `CECSYNC_REQUIRE_S3` is set, which makes them fail instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int32Type, Int64Type, TimestampMillisecondType,
};
use cecsync::calendar::{parse_zone, Month};
use cecsync::catalog::schema::EXTRA_COLUMN;
use cecsync::config::Settings;
use cecsync::engine::Engine;
use cecsync::sim::{serve, RunningSim, SimOptions, Simulator};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};

/// The prefix of the lake inside a test bucket.
const S3_PREFIX: &str = "warehouse/cec";

/// Where a harness keeps its lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A local folder (`file://`).
    Local,
    /// A fresh bucket of the S3-compatible test server (`s3://`).
    S3,
}

/// The lake of a harness.
#[derive(Debug, Clone)]
enum Lake {
    Local,
    S3 { endpoint: String, bucket: String },
}

/// A simulator serving on loopback, and a lake (a local folder, or a bucket).
pub struct Harness {
    pub sim: Arc<Simulator>,
    pub running: RunningSim,
    pub opts: SimOptions,
    pub dir: tempfile::TempDir,
    lake: Lake,
}

impl Harness {
    /// A harness whose lake is a local folder.
    pub async fn start(opts: SimOptions) -> Self {
        Self::start_with(Lake::Local, opts).await
    }

    /// A harness whose lake is of `kind`; `None` (with a message) when `kind` is S3 and no
    /// S3-compatible server is configured, see [`s3_endpoint`].
    pub async fn start_on(kind: StoreKind, opts: SimOptions) -> Option<Self> {
        let lake = match kind {
            StoreKind::Local => Lake::Local,
            StoreKind::S3 => {
                let endpoint = s3_endpoint()?;
                let bucket = create_bucket(&endpoint).await;
                Lake::S3 { endpoint, bucket }
            }
        };
        Some(Self::start_with(lake, opts).await)
    }

    async fn start_with(lake: Lake, opts: SimOptions) -> Self {
        let sim = Arc::new(Simulator::new(opts.clone()));
        let running = serve(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        Self { sim, running, opts, dir: tempfile::tempdir().unwrap(), lake }
    }

    /// A harness around a simulator already serving (over HTTPS, say), with a local lake.
    pub fn around(sim: Arc<Simulator>, running: RunningSim, opts: SimOptions) -> Self {
        Self { sim, running, opts, dir: tempfile::tempdir().unwrap(), lake: Lake::Local }
    }

    /// The local lake folder; for an S3 lake, the folder [`Harness::lake_view`] mirrors the
    /// bucket into.
    pub fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    /// The `[destination]` table of this harness's lake.
    pub fn destination_text(&self) -> String {
        match &self.lake {
            Lake::Local => format!("[destination]\nurl = \"file://{}\"\n", self.lake().display()),
            Lake::S3 { endpoint, bucket } => format!(
                "[destination]\nurl = \"s3://{bucket}/{S3_PREFIX}\"\nendpoint = \"{endpoint}\"\n\
                 region = \"us-east-1\"\nallow_http = true\n"
            ),
        }
    }

    /// Configuration text for this simulator and lake; `extra` is appended.
    pub fn config_text(&self, extra: &str) -> String {
        format!(
            "tenant_id = \"{}\"\n{}[sources.oifde]\nbase_url = \"{}\"\n\
             auth_token = \"{}\"\ntimezone = \"+08:00\"\n[sources.oifde.retry]\ninitial_backoff_ms = 10\n{extra}",
            self.opts.tenant_id,
            self.destination_text(),
            self.running.base_url,
            self.opts.auth_token
        )
    }

    /// The `[sources.fabric]` table for this simulator's API Fabric routes: `base_url`
    /// `{sim}/apiaccess`, the `tokenByAkSk` URL, the operator of `SimOptions::fabric_user_id`,
    /// and app_key/app_secret as references to `CECSYNC_TEST_FABRIC_APP_KEY` and
    /// `CECSYNC_TEST_FABRIC_APP_SECRET`, which this sets (for this process and the processes
    /// it starts) to the credentials of `SimOptions::default()`. Append it to the
    /// configuration with `config_file(&h.fabric_source_text())` (plus any other extra).
    pub fn fabric_source_text(&self) -> String {
        static CREDENTIALS: std::sync::Once = std::sync::Once::new();
        CREDENTIALS.call_once(|| {
            let defaults = SimOptions::default();
            std::env::set_var("CECSYNC_TEST_FABRIC_APP_KEY", defaults.fabric_app_key);
            std::env::set_var("CECSYNC_TEST_FABRIC_APP_SECRET", defaults.fabric_app_secret);
        });
        format!(
            "[sources.fabric]\nbase_url = \"{base}/apiaccess\"\n\
             token_url = \"{base}/apigovernance/api/oauth/tokenByAkSk\"\n\
             app_key = \"${{CECSYNC_TEST_FABRIC_APP_KEY}}\"\n\
             app_secret = \"${{CECSYNC_TEST_FABRIC_APP_SECRET}}\"\n\
             user_id = \"{user}\"\ntimezone = \"+08:00\"\n\
             [sources.fabric.retry]\ninitial_backoff_ms = 10\n",
            base = self.running.base_url,
            user = self.opts.fabric_user_id,
        )
    }

    /// The `[sources.cms]` table for this simulator's C2-signed CMS routes: see
    /// [`Harness::c2_source_text`].
    pub fn cms_source_text(&self, flat: bool) -> String {
        self.c2_source_text("cms", flat)
    }

    /// A `for_each` list of every campaign of the simulator (`{ vdnId, campaignId }`).
    pub fn campaign_entries(&self) -> String {
        let entries: Vec<String> = self
            .sim
            .campaigns()
            .iter()
            .map(|c| format!("{{ vdnId = {}, campaignId = {} }}", c["vdnId"], c["campaignId"]))
            .collect();
        format!("[{}]", entries.join(", "))
    }

    /// A `[sources.NAME]` table for this simulator's C2-signed CMS and iSales routes: the
    /// AK and SK as references to `CECSYNC_TEST_C2_AK` and `CECSYNC_TEST_C2_SK`, which this
    /// sets to those of `SimOptions::default()`; `flat` sends the bodies without their
    /// `queryParam` wrapper.
    pub fn c2_source_text(&self, name: &str, flat: bool) -> String {
        static CREDENTIALS: std::sync::Once = std::sync::Once::new();
        CREDENTIALS.call_once(|| {
            let defaults = SimOptions::default();
            std::env::set_var("CECSYNC_TEST_C2_AK", defaults.c2_ak);
            std::env::set_var("CECSYNC_TEST_C2_SK", defaults.c2_sk);
        });
        format!(
            "[sources.{name}]\nbase_url = \"{base}\"\nak = \"${{CECSYNC_TEST_C2_AK}}\"\n\
             sk = \"${{CECSYNC_TEST_C2_SK}}\"\ntimezone = \"+08:00\"\nflat_body = {flat}\n\
             [sources.{name}.retry]\ninitial_backoff_ms = 10\n",
            base = self.running.base_url,
        )
    }

    /// A `catalog_dir` under the harness's folder holding dataset `name`'s pipeline file
    /// and schema, and the configuration line that names it.
    pub fn catalog_line(&self, name: &str, pipeline: &str, schema: &str) -> String {
        let catalog = self.dir.path().join("catalog");
        std::fs::create_dir_all(catalog.join("pipelines")).unwrap();
        std::fs::create_dir_all(catalog.join("schemas")).unwrap();
        std::fs::write(catalog.join(format!("pipelines/{name}.toml")), pipeline).unwrap();
        std::fs::write(catalog.join(format!("schemas/{name}.json")), schema).unwrap();
        format!("catalog_dir = \"{}\"\n", catalog.display())
    }

    /// Writes the configuration file and returns its path.
    pub fn config_file(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("cecsync.toml");
        std::fs::write(&path, self.config_text(extra)).unwrap();
        path
    }

    pub fn engine(&self, extra: &str) -> Engine {
        let settings = Settings::load(&self.config_file(extra)).unwrap();
        Engine::open(settings).unwrap()
    }

    /// A folder holding the lake as it is now: the local lake itself, or a fresh mirror of
    /// every object of the bucket's lake (read with an independent client).
    pub async fn lake_view(&self) -> PathBuf {
        let folder = self.lake();
        let Some(store) = self.bucket() else { return folder };
        if folder.exists() {
            std::fs::remove_dir_all(&folder).unwrap();
        }
        std::fs::create_dir_all(&folder).unwrap();
        for name in self.lake_objects().await {
            let local = folder.join(&name);
            std::fs::create_dir_all(local.parent().unwrap()).unwrap();
            let location = object_store::path::Path::from(format!("{S3_PREFIX}/{name}"));
            let body = store.get(&location).await.unwrap().bytes().await.unwrap();
            std::fs::write(local, body).unwrap();
        }
        folder
    }

    /// The name of every object (or, in a local lake, every file, staging files included)
    /// under the lake, relative to it, sorted.
    pub async fn lake_objects(&self) -> Vec<String> {
        let mut names = match self.bucket() {
            None => files_under(&self.lake())
                .iter()
                .map(|p| p.strip_prefix(self.lake()).unwrap().to_string_lossy().into_owned())
                .collect(),
            Some(store) => {
                let prefix = object_store::path::Path::from(S3_PREFIX);
                let listed: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
                listed
                    .iter()
                    .map(|o| {
                        let name = o.location.as_ref().strip_prefix(S3_PREFIX).unwrap();
                        name.trim_start_matches('/').to_string()
                    })
                    .collect::<Vec<_>>()
            }
        };
        names.sort();
        names
    }

    /// An independent client of the lake (its folder, or the bucket under the lake's prefix),
    /// apart from the engine's.
    pub fn lake_store(&self) -> Arc<dyn ObjectStore> {
        match self.bucket() {
            None => {
                std::fs::create_dir_all(self.lake()).unwrap();
                Arc::new(LocalFileSystem::new_with_prefix(self.lake()).unwrap())
            }
            Some(bucket) => Arc::new(PrefixStore::new(bucket, S3_PREFIX)),
        }
    }

    /// An independent client of the test bucket (bucket root), or `None` for a local lake.
    fn bucket(&self) -> Option<Arc<dyn ObjectStore>> {
        let Lake::S3 { endpoint, bucket } = &self.lake else { return None };
        let store = AmazonS3Builder::from_env()
            .with_endpoint(endpoint)
            .with_bucket_name(bucket)
            .with_allow_http(true)
            .build()
            .unwrap();
        Some(Arc::new(store))
    }

    /// The simulator's records of `months`, keyed by id.
    pub fn truth(&self, months: impl IntoIterator<Item = Month>) -> BTreeMap<i64, Value> {
        let mut out = BTreeMap::new();
        for m in months {
            for r in self.sim.rbt_month(m) {
                let id = r["rbtRecognitionId"].as_i64().unwrap();
                assert!(out.insert(id, r).is_none(), "simulator ids are unique");
            }
        }
        out
    }

    /// The pages of 1,000 a backfill of `months` asks for: each +08:00 month is asked in
    /// two ranges, before and after its UTC month edge (08:00 on the 1st), each paged on
    /// its own with at least one page.
    pub fn rbt_pages(&self, months: impl IntoIterator<Item = Month>) -> u64 {
        let utc = parse_zone("UTC").unwrap();
        let mut pages = 0;
        for m in months {
            let edge = m.start(utc).timestamp_millis();
            let truth = self.truth([m]);
            let before = truth.values().filter(|r| r["beginTime"].as_i64().unwrap() < edge);
            let before = before.count() as u64;
            let after = truth.len() as u64 - before;
            pages += before.div_ceil(1000).max(1) + after.div_ceil(1000).max(1);
        }
        pages
    }
}

pub fn month(s: &str) -> Month {
    s.parse().unwrap()
}

/// The endpoint of the S3-compatible test server, or `None` with a message (the S3 variant
/// is then skipped); panics when `CECSYNC_REQUIRE_S3` says the server must be there.
pub fn s3_endpoint() -> Option<String> {
    match std::env::var("CECSYNC_TEST_S3_ENDPOINT") {
        Ok(e) => Some(e),
        Err(_) if std::env::var_os("CECSYNC_REQUIRE_S3").is_some() => {
            panic!("CECSYNC_REQUIRE_S3 is set but CECSYNC_TEST_S3_ENDPOINT is not")
        }
        Err(_) => {
            eprintln!(
                "skipped: no S3-compatible server (CECSYNC_TEST_S3_ENDPOINT); run scripts/test.sh"
            );
            None
        }
    }
}

/// Creates a fresh bucket on the test server (an unsigned PUT, which it accepts) and
/// returns its name.
pub async fn create_bucket(endpoint: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let bucket =
        format!("cecsync-it-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let created = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.unwrap();
    assert!(created.status().is_success(), "create bucket {bucket}: {}", created.status());
    bucket
}

/// Runs the `async fn NAME(kind: StoreKind)` above it on both lakes, as the tests
/// `NAME::local` and `NAME::s3` (which skips without a server, see [`s3_endpoint`]).
macro_rules! on_every_store {
    ($name:ident) => {
        mod $name {
            use $crate::common::StoreKind;

            /// The property documented on the function of this module's name, in a local
            /// folder.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local() {
                super::$name(StoreKind::Local).await
            }

            /// The property documented on the function of this module's name, in a bucket of
            /// the S3-compatible server.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                super::$name(StoreKind::S3).await
            }
        }
    };
}
pub(crate) use on_every_store;

/// Every file under `dir`, at any depth, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every Parquet file under `dir`, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = files_under(dir);
    out.retain(|p| p.extension().is_some_and(|x| x == "parquet"));
    out
}

/// One lake row as JSON: integers and epoch-ms timestamps as numbers, text as strings.
pub type Row = Map<String, Value>;

/// Reads every row of `dataset` from the lake: (partition month, or snapshot day, from the
/// path, row).
pub fn lake_rows(lake: &Path, dataset: &str) -> Vec<(String, Row)> {
    let mut rows = Vec::new();
    for file in parquet_files(&lake.join(dataset)) {
        let month = file
            .components()
            .find_map(|c| {
                let folder = c.as_os_str().to_str()?;
                folder
                    .strip_prefix("month=")
                    .or(folder.strip_prefix("snapshot_date="))
                    .map(String::from)
            })
            .expect("hive month or snapshot_date partition in the path");
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let schema = batch.schema();
            for i in 0..batch.num_rows() {
                let mut row = Map::new();
                for (c, field) in schema.fields().iter().enumerate() {
                    let col = batch.column(c);
                    let v = if col.is_null(i) {
                        Value::Null
                    } else {
                        match field.data_type() {
                            DataType::Int64 => {
                                Value::from(col.as_primitive::<Int64Type>().value(i))
                            }
                            DataType::Int32 => {
                                Value::from(col.as_primitive::<Int32Type>().value(i))
                            }
                            DataType::Float64 => {
                                Value::from(col.as_primitive::<Float64Type>().value(i))
                            }
                            DataType::Utf8 => Value::from(col.as_string::<i32>().value(i)),
                            DataType::Timestamp(_, _) => {
                                Value::from(col.as_primitive::<TimestampMillisecondType>().value(i))
                            }
                            DataType::Date32 => {
                                let days = col.as_primitive::<Date32Type>().value(i);
                                let day = chrono::NaiveDate::default()
                                    + chrono::Duration::days(days.into());
                                Value::from(day.format("%Y-%m-%d").to_string())
                            }
                            other => panic!("unexpected column type {other}"),
                        }
                    };
                    row.insert(field.name().clone(), v);
                }
                rows.push((month.clone(), row));
            }
        }
    }
    rows
}

/// Serves `app` on a loopback port (a stand-in for an interface); its base URL.
pub async fn serve_stand_in(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base_url
}

/// Asserts that `dataset` holds exactly `truth` (rows by their `key` columns' values joined
/// with `/`), every field of the truth equal (after `expected` adapts a truth value to its
/// lake form; a field the schema does not declare is looked for in `_extra`), each row in
/// the partition of `event_ms(row)`'s month in the simulator's zone.
pub fn assert_dataset_equals(
    h: &Harness,
    dataset: &str,
    key: &[&str],
    truth: &BTreeMap<String, Value>,
    expected: impl Fn(&str, &Value) -> Value,
    event_ms: impl Fn(&Row) -> i64,
) {
    let mut seen = BTreeMap::new();
    for (partition, row) in lake_rows(&h.lake(), dataset) {
        let text = |column: &&str| match &row[*column] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let id = key.iter().map(text).collect::<Vec<_>>().join("/");
        let want = truth.get(&id).unwrap_or_else(|| panic!("{dataset} {id} is not in the API"));
        let extra: Map<String, Value> = match &row[EXTRA_COLUMN] {
            Value::String(text) => serde_json::from_str(text).unwrap(),
            _ => Map::new(),
        };
        for (field, value) in want.as_object().unwrap() {
            let got = row.get(field).or_else(|| extra.get(field)).unwrap_or(&Value::Null);
            assert_eq!(*got, expected(field, value), "{dataset} {id}.{field}");
        }
        let month = Month::containing_ms(event_ms(&row), h.opts.zone).unwrap();
        assert_eq!(month.to_string(), partition, "{dataset} {id} partition");
        assert!(seen.insert(id.clone(), ()).is_none(), "{dataset} {id} appears twice");
    }
    assert_eq!(seen.len(), truth.len(), "{dataset}: the lake holds every row of the API");
}

/// Asserts that the lake holds exactly `truth`: each id once, every documented field equal,
/// and each row in the partition of its beginTime's month in +08:00.
pub fn assert_lake_equals(lake: &Path, truth: &BTreeMap<i64, Value>) {
    let rows = lake_rows(lake, "rbt_recognition");
    let zone = parse_zone("+08:00").unwrap();
    let mut seen = BTreeMap::new();
    for (partition, row) in rows {
        let id = row["rbtRecognitionId"].as_i64().unwrap();
        assert!(seen.insert(id, ()).is_none(), "id {id} appears twice in the lake");
        let expected = truth.get(&id).unwrap_or_else(|| panic!("id {id} is not in the API's data"));
        for (field, want) in expected.as_object().unwrap() {
            let got = row.get(field).unwrap_or(&Value::Null);
            assert_eq!(got, want, "id {id} field {field}");
        }
        let begin = row["beginTime"].as_i64().unwrap();
        assert_eq!(
            Month::containing_ms(begin, zone).unwrap().to_string(),
            partition,
            "id {id} partition"
        );
        assert!(row["_synced_at"].is_i64(), "every row carries _synced_at");
    }
    assert_eq!(seen.len(), truth.len(), "the lake holds every row of the API");
}

/// One canned answer of a [`ScriptedApi`]. `{request}` in the body is replaced by the body
/// of the request, as some gateways echo it in their error pages.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Canned {
    /// HTTP 200 with a JSON content type.
    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        Self { status: 200, content_type: "application/json;charset=UTF-8", body: body.into() }
    }

    /// An HTML page with `status`.
    pub fn html(status: u16, body: &str) -> Self {
        Self { status, content_type: "text/html", body: body.as_bytes().to_vec() }
    }
}

/// A stand-in API on loopback that answers every POST, whatever its path, with the answer
/// set last: for bodies the simulator never sends. It stops when dropped.
pub struct ScriptedApi {
    pub base_url: String,
    answer: Arc<std::sync::Mutex<Canned>>,
    requests: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

type Script = (Arc<std::sync::Mutex<Canned>>, Arc<std::sync::atomic::AtomicU64>);

async fn scripted_reply(
    axum::extract::State((answer, requests)): axum::extract::State<Script>,
    request: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let canned = answer.lock().unwrap().clone();
    let body = match std::str::from_utf8(&canned.body) {
        Ok(text) if text.contains("{request}") => text.replace("{request}", &request).into_bytes(),
        _ => canned.body,
    };
    let status = axum::http::StatusCode::from_u16(canned.status).unwrap();
    (status, [(axum::http::header::CONTENT_TYPE, canned.content_type)], body).into_response()
}

impl ScriptedApi {
    /// Serves `first` on a free loopback port.
    pub async fn start(first: Canned) -> Self {
        let script: Script = (Arc::new(std::sync::Mutex::new(first)), Arc::default());
        let app = axum::Router::new().fallback(scripted_reply).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base_url, answer: script.0, requests: script.1, task }
    }

    /// Answers every later request with `answer`.
    pub fn set(&self, answer: Canned) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for ScriptedApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Harness {
    /// An engine for this lake whose source is `base_url` instead of the simulator.
    pub fn engine_at(&self, base_url: &str, extra: &str) -> Engine {
        let path = self.dir.path().join("cecsync.toml");
        std::fs::write(&path, self.config_text(extra).replace(&self.running.base_url, base_url))
            .unwrap();
        Engine::open(Settings::load(&path).unwrap()).unwrap()
    }
}

/// Configuration text for `h` with `source_keys` added to `[sources.oifde]` and
/// `retry_keys` to its retry table; `login` replaces the fixed token with an app key and
/// secret. `extra` is appended.
pub fn source_config(
    h: &Harness,
    login: Option<(&str, &str)>,
    source_keys: &str,
    retry_keys: &str,
    extra: &str,
) -> String {
    let mut text = h.config_text(extra);
    if let Some((key, secret)) = login {
        let token = format!("auth_token = \"{}\"\n", h.opts.auth_token);
        let creds = format!("app_key = \"{key}\"\napp_secret = \"{secret}\"\n");
        text = text.replace(&token, &creds);
    }
    text.replace(
        "[sources.oifde.retry]\n",
        &format!("{source_keys}\n[sources.oifde.retry]\n{retry_keys}\n"),
    )
}

/// An engine for the configuration `text`, written into `h`'s folder.
pub fn engine_for(h: &Harness, text: &str) -> Engine {
    let path = h.dir.path().join("cecsync.toml");
    std::fs::write(&path, text).unwrap();
    Engine::open(Settings::load(&path).unwrap()).unwrap()
}

/// A free TCP port on loopback (bound, then released for the process under test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The current month in the simulator's zone (+08:00).
pub fn current_month() -> Month {
    let zone = parse_zone("+08:00").unwrap();
    Month::containing(chrono::Utc::now(), zone)
}

/// A `cecsync run` process with its log captured in a file, and a client for its control API.
pub struct ServiceProcess {
    pub child: std::process::Child,
    pub base_url: String,
    pub token: Option<String>,
    log: PathBuf,
    http: reqwest::Client,
}

impl ServiceProcess {
    /// Starts `cecsync run --config CONFIG` listening on `port`, with `env` added; the log
    /// goes to `LOG_NAME.log` beside the configuration.
    pub fn start(config: &Path, port: u16, env: &[(&str, &str)], log_name: &str) -> Self {
        let log = config.with_file_name(format!("{log_name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cecsync"));
        cmd.args(["run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let token =
            env.iter().find(|(k, _)| *k == "CECSYNC_CONTROL_TOKEN").map(|(_, v)| v.to_string());
        Self {
            child: cmd.spawn().unwrap(),
            base_url: format!("http://127.0.0.1:{port}"),
            token,
            log,
            http: reqwest::Client::new(),
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request to the control API, with the token when `auth`; returns status and body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        auth: bool,
    ) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base_url));
        if let (true, Some(token)) = (auth, &self.token) {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body.to_string());
        }
        match req.send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// Polls until `check` holds, at most `secs` seconds; panics with the log otherwise.
    pub async fn wait_until<F: std::future::Future<Output = bool>>(
        &mut self,
        what: &str,
        secs: u64,
        mut check: impl FnMut() -> F,
    ) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if check().await {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the service exited ({status}) before {what}:\n{}", self.log());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}:\n{}", self.log());
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) {
        let (http, url, token) =
            (self.http.clone(), format!("{}/readyz", self.base_url), self.token.clone());
        self.wait_until("readiness", 20, || {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            async move {
                let mut req = http.get(url);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                req.send().await.is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
    }

    /// A series of `/metrics` (exact labels as rendered), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.call("GET", "/metrics", None, true).await;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Jobs of `kind` finished with `outcome` for rbt_recognition.
    pub async fn jobs_done(&self, kind: &str, outcome: &str) -> f64 {
        self.metric(&format!(
            "cecsync_jobs_total{{pipeline=\"rbt_recognition\",kind=\"{kind}\",outcome=\"{outcome}\"}}"
        ))
        .await
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `secs` seconds.
    pub async fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the service did not exit within {secs} s:\n{}", self.log());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
