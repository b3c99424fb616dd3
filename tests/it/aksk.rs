//! The C2 AK/SK signature end to end: the engine signs every request of a pipeline whose
//! auth style is `aksk_signature`, a server checks each one with the verifier in an axum
//! middleware before the simulator answers it, and the lake is read back.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use cecsync::engine::progress::LogProgress;
use cecsync::engine::EngineError;
use cecsync::secret::Secret;
use cecsync::sim::SimOptions;
use cecsync::source::signature::{Authorization, SignatureError, Verifier};
use cecsync::source::SourceError;

use crate::common::{assert_lake_equals, engine_for, month, Harness};

const AK: &str = "cmsAK0001";
const SK: &str = "cms-sk-not-a-real-secret";

/// What the gate decided for each request, in arrival order.
type Verdicts = Arc<Mutex<Vec<Result<Authorization, SignatureError>>>>;

/// The gate's state: the verifier, the simulator behind it, and the verdicts.
#[derive(Clone)]
struct Gate {
    verifier: Verifier,
    upstream: String,
    http: reqwest::Client,
    verdicts: Verdicts,
}

/// The middleware: collects the body, verifies the request, and lets it through or answers
/// 401 with the reason.
async fn require_signature(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let verdict = gate.verifier.verify_http(&parts.method, &parts.uri, &parts.headers, &body);
    gate.verdicts.lock().unwrap().push(verdict.clone());
    match verdict {
        Ok(_) => next.run(Request::from_parts(parts, Body::from(body))).await,
        Err(e) => {
            let answer = serde_json::json!({"resultCode": "0100401", "resultDesc": e.to_string()});
            (StatusCode::UNAUTHORIZED, answer.to_string()).into_response()
        }
    }
}

/// Passes a verified request on to the simulator.
async fn forward(State(gate): State<Gate>, request: Request) -> Response {
    let uri = request.uri().clone();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap();
    let answer = gate
        .http
        .post(format!("{}{uri}", gate.upstream))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    (status, answer.bytes().await.unwrap()).into_response()
}

/// Serves the gate in front of `h`'s simulator; returns its base URL and the verdicts.
async fn start_gate(h: &Harness) -> (String, Verdicts, tokio::task::JoinHandle<()>) {
    let verdicts = Verdicts::default();
    let gate = Gate {
        verifier: Verifier::new(AK, Secret::new(SK)),
        upstream: h.running.base_url.clone(),
        http: reqwest::Client::new(),
        verdicts: verdicts.clone(),
    };
    let app = axum::Router::new()
        .fallback(forward)
        .layer(middleware::from_fn_with_state(gate.clone(), require_signature))
        .with_state(gate);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base_url, verdicts, task)
}

/// The configuration of `h` with its source at `base_url`, signing with `sk`, and the
/// built-in dataset overridden to sign its requests (the simulator's token stays a fixed
/// body field, which the simulator checks as before).
fn signed_config(h: &Harness, base_url: &str, sk: &str) -> String {
    let catalog = h.dir.path().join("catalog/pipelines");
    std::fs::create_dir_all(&catalog).unwrap();
    let builtin = include_str!("../../pipelines/rbt_recognition.toml");
    let token = &h.opts.auth_token;
    let pipeline = builtin
        .replace("style = \"body_token\"\nfield = \"authToken\"", "style = \"aksk_signature\"")
        .replace(
            "body = { tenantId = \"{tenant_id}\" }",
            &format!("body = {{ tenantId = \"{{tenant_id}}\", authToken = \"{token}\" }}"),
        );
    assert!(pipeline.contains("aksk_signature") && pipeline.contains(token.as_str()));
    std::fs::write(catalog.join("rbt_recognition.toml"), pipeline).unwrap();
    let text = format!("catalog_dir = \"catalog\"\n{}", h.config_text(""));
    text.replace(&h.running.base_url, base_url)
        .replace(&format!("auth_token = \"{token}\""), &format!("ak = \"{AK}\"\nsk = \"{sk}\""))
}

/// Every request of a two-month backfill is signed, verified by the server's middleware
/// and answered; the lake equals the simulator's data row by row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_backfill_passes_the_verifier_and_fills_the_lake() {
    let opts = SimOptions {
        first_month: month("2025-03"),
        last_month: month("2025-04"),
        records_per_month: 2500,
        ..SimOptions::default()
    };
    let h = Harness::start(opts).await;
    let (base_url, verdicts, _gate) = start_gate(&h).await;
    let engine = engine_for(&h, &signed_config(&h, &base_url, SK));
    let report = engine
        .backfill("rbt_recognition", month("2025-03"), month("2025-04"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!(report.rows(), 2 * 2500);
    assert_lake_equals(&h.lake(), &h.truth(month("2025-03").through(month("2025-04"))));
    let verdicts = verdicts.lock().unwrap();
    // Each month is asked in two ranges, before and after its UTC month edge: at least
    // three pages of its 2,500 rows and one for the first hours, each page verified.
    let pages = h.sim.stats().pages_served;
    assert!(pages >= 2 * 4, "{pages} pages");
    assert_eq!(verdicts.len() as u64, pages, "every page verified");
    for verdict in verdicts.iter() {
        let auth = verdict.as_ref().unwrap();
        assert_eq!(
            (auth.ak.as_str(), auth.signed_headers.as_str()),
            (AK, "content-length;content-type;host")
        );
    }
}

/// With a wrong SK, the server's verifier answers 401: the backfill fails at once with the
/// hard error naming the AK (never the SK), after one request, and the lake stays empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sk_is_refused_with_a_hard_error() {
    let opts = SimOptions {
        first_month: month("2025-03"),
        last_month: month("2025-03"),
        records_per_month: 10,
        ..SimOptions::default()
    };
    let h = Harness::start(opts).await;
    let (base_url, verdicts, _gate) = start_gate(&h).await;
    let wrong = "wrong-sk-0000";
    let engine = engine_for(&h, &signed_config(&h, &base_url, wrong));
    let err = engine
        .backfill("rbt_recognition", month("2025-03"), month("2025-03"), false, &LogProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Source { source, .. } if matches!(**source, SourceError::SignatureRefused { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    for part in [&format!("AK '{AK}'"), "HTTP 401", "does not match", "wrong ak or sk", "clock"] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(!text.contains(wrong) && !text.contains(SK), "{text}");
    assert_eq!(
        *verdicts.lock().unwrap(),
        [Err(SignatureError::Mismatch { ak: AK.into() })],
        "one request, not retried"
    );
    assert_eq!(h.sim.stats().requests, 0, "nothing reached the simulator");
    assert!(crate::common::parquet_files(&h.lake()).is_empty());
    let client = engine.client("oifde").unwrap().stats();
    assert_eq!(client.by_status().get(&401), Some(&1));
}
