//! Shared test support: a simulator on loopback, a configuration pointing at it, and the
//! lake read back as JSON-like rows keyed by primary key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampMillisecondType};
use cecsync::calendar::Month;
use cecsync::config::Settings;
use cecsync::engine::Engine;
use cecsync::sim::{serve, RunningSim, SimOptions, Simulator};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};

/// A simulator serving on loopback, and a lake folder.
pub struct Harness {
    pub sim: Arc<Simulator>,
    pub running: RunningSim,
    pub opts: SimOptions,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(opts: SimOptions) -> Self {
        let sim = Arc::new(Simulator::new(opts.clone()));
        let running = serve(sim.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        Self { sim, running, opts, dir: tempfile::tempdir().unwrap() }
    }

    pub fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    /// Configuration text for this simulator and lake; `extra` is appended.
    pub fn config_text(&self, extra: &str) -> String {
        format!(
            "tenant_id = \"{}\"\n[destination]\nurl = \"file://{}\"\n[sources.oifde]\nbase_url = \"{}\"\n\
             auth_token = \"{}\"\ntimezone = \"+08:00\"\n[sources.oifde.retry]\ninitial_backoff_ms = 10\n{extra}",
            self.opts.tenant_id,
            self.lake().display(),
            self.running.base_url,
            self.opts.auth_token
        )
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
}

pub fn month(s: &str) -> Month {
    s.parse().unwrap()
}

/// Every Parquet file under `dir`, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(parquet_files(&p));
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// One lake row as JSON: integers and epoch-ms timestamps as numbers, text as strings.
pub type Row = Map<String, Value>;

/// Reads every row of `dataset` from the lake: (partition month from the path, row).
pub fn lake_rows(lake: &Path, dataset: &str) -> Vec<(String, Row)> {
    let mut rows = Vec::new();
    for file in parquet_files(&lake.join(dataset)) {
        let month = file
            .components()
            .find_map(|c| {
                c.as_os_str().to_str().and_then(|s| s.strip_prefix("month=")).map(String::from)
            })
            .expect("hive month partition in the path");
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
                            DataType::Utf8 => Value::from(col.as_string::<i32>().value(i)),
                            DataType::Timestamp(_, _) => {
                                Value::from(col.as_primitive::<TimestampMillisecondType>().value(i))
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

/// Asserts that the lake holds exactly `truth`: each id once, every documented field equal,
/// and each row in the partition of its beginTime's month in +08:00.
pub fn assert_lake_equals(lake: &Path, truth: &BTreeMap<i64, Value>) {
    let rows = lake_rows(lake, "rbt_recognition");
    let zone = cecsync::calendar::parse_zone("+08:00").unwrap();
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
