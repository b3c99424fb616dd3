//! A scripted HTTP/1.1 server on loopback for the client's tests: a script picks the answer
//! to each request (a status and body, after a delay if asked, or a connection reset). Each
//! connection serves one request, then closes.
//!
//! It speaks raw TCP rather than going through an HTTP framework because a reset needs the
//! socket itself.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::client::SourceClient;
use super::retry::Jitter;
use crate::config::{FabricLogin, RetryConfig, Source, SourceAuth, FABRIC_TOKEN_PATH};

/// A request as the server received it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// The method, as sent.
    pub(crate) method: String,
    /// The request target: the path and its query.
    pub(crate) path: String,
    /// Header names in lower case, with their values, in the order sent.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: serde_json::Value,
}

impl Received {
    /// Every value of header `name` (any case), in the order sent: empty when it was not
    /// sent, more than one when it was repeated.
    pub(crate) fn header(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// A status, extra headers and a body.
    Reply { status: u16, headers: Vec<(String, String)>, body: String },
    /// Waits, then answers.
    Delayed(Duration, Box<Answer>),
    /// Closes the connection with a TCP reset, without an answer.
    Reset,
}

impl Answer {
    /// A status with a body.
    pub(crate) fn status(status: u16, body: &str) -> Self {
        Self::Reply { status, headers: Vec::new(), body: body.to_string() }
    }

    /// 429 with `Retry-After`.
    pub(crate) fn throttle(retry_after_secs: u64) -> Self {
        Self::Reply {
            status: 429,
            headers: vec![("Retry-After".into(), retry_after_secs.to_string())],
            body: "Too Many Requests".into(),
        }
    }

    /// A 200 whose body is the first half of `json`, with a matching Content-Length.
    pub(crate) fn truncated(json: &str) -> Self {
        Self::status(200, &json[..json.len() / 2])
    }

    /// This answer after `delay`.
    pub(crate) fn after(self, delay: Duration) -> Self {
        Self::Delayed(delay, Box::new(self))
    }
}

/// Picks the answer to a request.
pub(crate) type Script = Arc<dyn Fn(&Received) -> Answer + Send + Sync>;

/// A script that gives the queued answers in order, then 500 once they run out.
pub(crate) fn queue(answers: Vec<Answer>) -> Script {
    let answers = Mutex::new(VecDeque::from(answers));
    Arc::new(move |_| {
        answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Answer::status(500, "the script has no more answers"))
    })
}

/// A running scripted server; it stops when dropped.
pub(crate) struct ScriptedServer {
    pub(crate) base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl ScriptedServer {
    /// Serves `script` on `127.0.0.1:0`.
    pub(crate) async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_one(stream, script.clone(), log.clone()));
            }
        });
        Self { base_url, received, task }
    }

    /// Every request received so far, in arrival order.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client of source `oifde` at `base_url`: `timeout` per request, `max_attempts`, 10 ms
/// first backoff, and a jitter that always draws 0 (so only `Retry-After` makes it wait).
pub(crate) fn client(base_url: &str, timeout: Duration, max_attempts: usize) -> SourceClient {
    SourceClient::new(&source(base_url, timeout, max_attempts))
        .unwrap()
        .with_jitter(Jitter::from_fn(|| 0.0))
}

/// The source behind [`client`], without credentials; its API Fabric token endpoint is
/// [`crate::config::FABRIC_TOKEN_PATH`] on `base_url`, asked for 3600 s tokens.
pub(crate) fn source(base_url: &str, timeout: Duration, max_attempts: usize) -> Source {
    Source {
        name: "oifde".into(),
        base_url: base_url.to_string(),
        zone: crate::calendar::parse_zone("+08:00").unwrap(),
        auth: SourceAuth::None,
        fabric: FabricLogin {
            token_url: format!("{base_url}{FABRIC_TOKEN_PATH}"),
            user_id: None,
            token_lifetime: Duration::from_secs(3600),
        },
        path_params: Default::default(),
        max_concurrency: 8,
        requests_per_second: None,
        timeout,
        ca_bundle: None,
        insecure_skip_verify: false,
        flat_body: false,
        retry: RetryConfig {
            max_attempts,
            max_elapsed_secs: 60,
            initial_backoff_ms: 10,
            max_backoff_ms: 100,
        },
    }
}

async fn serve_one(mut stream: TcpStream, script: Script, log: Arc<Mutex<Vec<Received>>>) {
    let Some(request) = read_request(&mut stream).await else { return };
    log.lock().unwrap().push(request.clone());
    let mut answer = script(&request);
    loop {
        match answer {
            Answer::Delayed(delay, inner) => {
                tokio::time::sleep(delay).await;
                answer = *inner;
            }
            Answer::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
            Answer::Reply { status, headers, body } => {
                let mut head = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

/// Reads one request: the path from the request line, the body by its Content-Length.
async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let method = head.split_whitespace().next()?.to_string();
    let path = head.split_whitespace().nth(1)?.to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find_map(|(name, value)| (name == "content-length").then(|| value.parse().ok())?)
        .unwrap_or(0);
    while data.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&data[head_end..head_end + length]).unwrap_or_default();
    Some(Received { method, path, headers, body })
}
