//! Bad configuration and bad records: a clear error or a reject with its reason, and
//! nothing else lost.

use std::process::Command;

use axum::routing::post;
use axum::Router;
use cecsync::engine::progress::LogProgress;
use cecsync::sim::SimOptions;

use crate::common::{lake_rows, month, Harness};

fn cecsync(args: &[&str], config: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cecsync"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// A bad configuration fails with one line naming the file, the key and the fix; bad
/// pipeline names and ranges are refused before anything is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_and_arguments_are_explained() {
    let h = Harness::start(SimOptions::default()).await;
    let good = h.config_file("");
    let bad = h.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        h.config_text("").replace("timezone = \"+08:00\"", "timezone = \"Beijing\""),
    )
    .unwrap();
    let (ok, err) = cecsync(&["status"], &bad);
    assert!(!ok);
    assert!(
        err.contains("bad.toml") && err.contains("sources.oifde.timezone") && err.contains("fix:"),
        "{err}"
    );

    let (ok, err) =
        cecsync(&["backfill", "--pipeline", "nope", "--from", "2025-01", "--to", "2025-02"], &good);
    assert!(
        !ok && err.contains("unknown pipeline 'nope'") && err.contains("rbt_recognition"),
        "{err}"
    );
    let (ok, err) = cecsync(
        &["backfill", "--pipeline", "rbt_recognition", "--from", "2025-03", "--to", "2025-01"],
        &good,
    );
    assert!(!ok && err.contains("after --to"), "{err}");
    let (ok, err) = cecsync(
        &["backfill", "--pipeline", "rbt_recognition", "--from", "2025-01", "--to", "2999-01"],
        &good,
    );
    assert!(!ok && err.contains("in the future"), "{err}");
    assert_eq!(h.sim.stats().requests, 0, "nothing was fetched");
}

/// A record that does not fit the schema goes to `_rejects/` with its reason; the other
/// records of the page are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_is_rejected_and_the_rest_kept() {
    let page = r#"{"rbtRecognitions":[
      {"rbtRecognitionId":953730645354352641,"callId":"c1","fileName":"Y:\\a.V3","callerNo":"0086","calleeNo":"010","agentId":1,"recordBeginTime":1736640000000,"recordEndTime":1736640001000,"callType":7,"mediaType":5,"vdnId":1,"tenantId":"t","callCenterId":1,"releaseCause":0,"beginTime":1736640000000,"confirmStatus":0,"locationId":0,"brandNew":{"x":1}},
      {"rbtRecognitionId":953730645354352642,"callId":"c2","fileName":"f","callerNo":"1","calleeNo":"2","agentId":"not-a-number","recordBeginTime":1736640000000,"recordEndTime":1736640001000,"callType":7,"mediaType":5,"vdnId":1,"tenantId":"t","callCenterId":1,"releaseCause":0,"beginTime":1736640000000,"confirmStatus":0,"locationId":0},
      {"rbtRecognitionId":953730645354352643,"callId":"c3","fileName":"f","callerNo":"1","calleeNo":"2","agentId":3,"recordBeginTime":1736640000000,"recordEndTime":1736640001000,"callType":7,"mediaType":5,"vdnId":1,"tenantId":"t","callCenterId":1,"releaseCause":0,"beginTime":1736640000000,"confirmStatus":0,"locationId":0}
    ],"total":3,"pageNum":1,"pageSize":1000}"#;
    let app = Router::new()
        .route("/oifde/rest/api/queryRbtRecognitionResult", post(move || async move { page }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let h = Harness::start(SimOptions::default()).await;
    let text = h.config_text("").replace(&h.running.base_url, &format!("http://{addr}"));
    std::fs::write(h.dir.path().join("cecsync.toml"), text).unwrap();
    let settings = cecsync::config::Settings::load(&h.dir.path().join("cecsync.toml")).unwrap();
    let engine = cecsync::engine::Engine::open(settings).unwrap();
    let report = engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-01"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!((report.rows(), report.rejects()), (2, 1));

    let rows = lake_rows(&h.lake(), "rbt_recognition");
    let ids: Vec<i64> = rows.iter().map(|(_, r)| r["rbtRecognitionId"].as_i64().unwrap()).collect();
    assert_eq!(ids, [953730645354352641, 953730645354352643]);
    assert_eq!(rows[0].1["_extra"], r#"{"brandNew":{"x":1}}"#, "unknown fields are kept");
    let rejects = std::fs::read_to_string(
        h.lake()
            .join("_rejects/rbt_recognition/tenant_id=202401150001/month=2025-01/rejects.jsonl"),
    )
    .unwrap();
    let line: serde_json::Value = serde_json::from_str(rejects.lines().next().unwrap()).unwrap();
    assert!(line["reason"].as_str().unwrap().contains("agentId"), "{line}");
    assert_eq!(line["record"]["rbtRecognitionId"], 953730645354352642u64);
    assert_eq!(rejects.lines().count(), 1);
}
