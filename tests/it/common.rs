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

/// A free TCP port on loopback (bound, then released for the process under test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The current month in the simulator's zone (+08:00).
pub fn current_month() -> Month {
    let zone = cecsync::calendar::parse_zone("+08:00").unwrap();
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
