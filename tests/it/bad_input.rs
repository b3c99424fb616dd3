//! Bad configuration and bad records: a clear error or a reject with its reason, and
//! nothing else lost.

use std::path::PathBuf;
use std::process::Command;

use cecsync::engine::progress::LogProgress;
use cecsync::sim::SimOptions;
use serde_json::{json, Value};

use crate::common::{lake_rows, month, Canned, Harness, ScriptedApi};

/// Retries kept short: two attempts a request, one fetch a slice.
const FEW_RETRIES: &str = "max_attempts = 2\n[pipelines.rbt_recognition]\nslice_attempts = 1\n";

fn cecsync(args: &[&str], config: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cecsync"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// A bad configuration (a bad value, an unknown key, a wrong type, an unset environment
/// variable, a wrong URL scheme) fails with one line naming the file, the key and the fix,
/// never the token; bad pipeline names and ranges are refused before anything is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_and_arguments_are_explained() {
    let h = Harness::start(SimOptions::default()).await;
    let good = h.config_file("");
    let bad = h.dir.path().join("bad.toml");
    let good_text = h.config_text("");
    let source_line = "timezone = \"+08:00\"";
    let cases = [
        (good_text.replace(source_line, "timezone = \"Beijing\""), "sources.oifde.timezone"),
        (
            good_text.replace(source_line, "timezone = \"+08:00\"\nbase_ulr = 1"),
            "sources.oifde.base_ulr",
        ),
        (
            good_text.replace(source_line, "timezone = \"+08:00\"\ntimeout_secs = \"30s\""),
            "sources.oifde.timeout_secs",
        ),
        (
            good_text.replace("initial_backoff_ms = 10", "initial_backoff_ms = true"),
            "sources.oifde.retry.initial_backoff_ms",
        ),
        (
            good_text
                .replace(&format!("\"{}\"", h.opts.auth_token), "\"${CECSYNC_TEST_UNSET_TOKEN}\""),
            "sources.oifde.auth_token",
        ),
        (good_text.replace(&h.running.base_url, "ftp://127.0.0.1:1"), "sources.oifde.base_url"),
        (good_text.replace("url = \"file://", "url = \"gs://"), "destination.url"),
    ];
    for (text, key) in cases {
        std::fs::write(&bad, text).unwrap();
        let (ok, err) = cecsync(&["status"], &bad);
        assert!(!ok, "{key}");
        assert!(
            err.contains("bad.toml") && err.contains(key) && err.contains("fix:"),
            "{key}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains(&h.opts.auth_token), "{err}");
    }

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
    let api = ScriptedApi::start(Canned::json(page)).await;
    let h = Harness::start(SimOptions::default()).await;
    let engine = h.engine_at(&api.base_url, "");
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

/// A page of the API holding `records`, with their count as the total.
fn page_of(records: &[Value]) -> Vec<u8> {
    let total = records.len();
    serde_json::to_vec(
        &json!({"rbtRecognitions": records, "total": total, "pageNum": 1, "pageSize": 1000}),
    )
    .unwrap()
}

/// The bytes of January's partition object and checkpoint.
fn january_objects(h: &Harness) -> Vec<(PathBuf, Vec<u8>)> {
    let tenant = format!("tenant_id={}", h.opts.tenant_id);
    let paths = [
        h.lake().join("rbt_recognition").join(&tenant).join("month=2025-01/part-00000.parquet"),
        h.lake().join("_state/rbt_recognition").join(&tenant).join("month=2025-01.json"),
    ];
    paths.into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

/// After a good backfill of January, each malformed answer fails the refresh with an error
/// that names the offending path (and the API's own message where there is one) and never
/// the token, however large the body; January's partition object and checkpoint stay
/// byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_fail_the_refresh_and_leave_the_month_untouched() {
    let opts = SimOptions {
        first_month: month("2025-01"),
        last_month: month("2025-01"),
        records_per_month: 40,
        ..SimOptions::default()
    };
    let h = Harness::start(opts).await;
    let records = h.sim.rbt_month(month("2025-01"));
    let api = ScriptedApi::start(Canned::json(page_of(&records))).await;
    let engine = h.engine_at(&api.base_url, FEW_RETRIES);
    let (jan, token) = (month("2025-01"), h.opts.auth_token.clone());
    let report = engine.backfill("rbt_recognition", jan, jan, false, &LogProgress).await.unwrap();
    assert_eq!(report.rows(), 40);
    let before = january_objects(&h);

    let huge = "x".repeat(5 << 20);
    let not_utf8 =
        [&br#"{"rbtRecognitions":[],"total":0,"note":""#[..], b"\xff\xfe", b"\"}"].concat();
    let cases: Vec<(&str, Canned, &[&str])> = vec![
        (
            "records object",
            Canned::json(r#"{"rbtRecognitions":{"a":1},"total":1}"#),
            &["'rbtRecognitions'", "expected an array of records, found an object"],
        ),
        ("no total", Canned::json(r#"{"rbtRecognitions":[]}"#), &["'total'", "missing"]),
        (
            "negative total",
            Canned::json(r#"{"rbtRecognitions":[],"total":-5}"#),
            &["'total'", "-5"],
        ),
        (
            "total as text",
            Canned::json(r#"{"rbtRecognitions":[],"total":"many"}"#),
            &["'total'", "\"many\""],
        ),
        (
            "total as object",
            Canned::json(r#"{"rbtRecognitions":[],"total":{"n":1}}"#),
            &["'total'", "{\"n\":1}"],
        ),
        (
            "HTML with 200",
            Canned::html(200, "<html><h1>502 Bad Gateway</h1></html>"),
            &["not complete JSON", "after 2 attempt(s)", "502 Bad Gateway"],
        ),
        (
            "HTML with 500",
            Canned::html(500, "<html><h1>Internal Server Error</h1> {request}</html>"),
            &["HTTP 500", "after 2 attempt(s)", "Internal Server Error"],
        ),
        ("not UTF-8", Canned::json(not_utf8), &["'$'", "the body is not UTF-8"]),
        ("an array", Canned::json("[1,2,3]"), &["'$'", "expected a JSON object, found an array"]),
        ("a string", Canned::json(r#""rbtRecognitions""#), &["'$'", "found a string"]),
        (
            "API error",
            Canned::json(r#"{"errorCode":"900001","errorMsg":"system busy"}"#),
            &["errorCode = 900001", "system busy"],
        ),
        (
            "huge records",
            Canned::json(format!(r#"{{"rbtRecognitions":"{huge}","total":1}}"#)),
            &["'rbtRecognitions'", "found a string"],
        ),
    ];
    for (name, canned, wanted) in cases {
        api.set(canned);
        let err = engine
            .backfill("rbt_recognition", jan, jan, true, &LogProgress)
            .await
            .expect_err(name)
            .to_string();
        for want in wanted {
            assert!(err.contains(want), "{name}: wanted {want:?} in {err}");
        }
        assert!(!err.contains(&token), "{name}: the token leaked: {err}");
        assert!(err.len() < 2_000, "{name}: the error is an excerpt, {} bytes", err.len());
        assert_eq!(january_objects(&h), before, "{name}: January is untouched");
    }
    assert!(api.requests() < 40, "every failure was bounded: {} requests", api.requests());
}

/// Records that are not objects or have values of the wrong type go to `_rejects/` with
/// their reason, and a 5 MB text field is written whole; the rest of the page is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_records_are_rejected_and_a_huge_field_is_kept() {
    let h = Harness::start(SimOptions::default()).await;
    let mut records = h.sim.rbt_month(month("2025-01"));
    records.truncate(4);
    let huge = "y".repeat(5 << 20);
    records[0]["fileName"] = Value::from(huge.clone());
    records[1]["beginTime"] = Value::from(huge.clone());
    records[2]["callType"] = json!({"nested": [1, 2]});
    records.push(json!(42));
    let api = ScriptedApi::start(Canned::json(page_of(&records))).await;
    let engine = h.engine_at(&api.base_url, FEW_RETRIES);
    let report = engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-01"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!((report.rows(), report.rejects()), (2, 3));

    let rows = lake_rows(&h.lake(), "rbt_recognition");
    let kept: Vec<&Value> = rows.iter().map(|(_, r)| &r["rbtRecognitionId"]).collect();
    assert_eq!(kept, [&records[0]["rbtRecognitionId"], &records[3]["rbtRecognitionId"]]);
    let file_name =
        rows.iter().find_map(|(_, r)| r["fileName"].as_str().filter(|f| f.len() > 1000));
    assert_eq!(file_name, Some(huge.as_str()), "the 5 MB field is written whole");

    let rejects = std::fs::read_to_string(h.lake().join(format!(
        "_rejects/rbt_recognition/tenant_id={}/month=2025-01/rejects.jsonl",
        h.opts.tenant_id
    )))
    .unwrap();
    let reasons: Vec<String> = rejects
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    for (reason, field) in reasons.iter().zip(["beginTime", "callType", "not a JSON object"]) {
        assert!(reason.contains(field) && reason.len() < 1_000, "{field}: {reason}");
    }
}

/// An incremental sync keeps the month's earlier rejects: a record rejected again is
/// kept once, a new reject is added, and the checkpoint counts them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_keeps_the_months_earlier_rejects() {
    let record = |id: u64, agent: Value| {
        json!({"rbtRecognitionId": id, "callId": "c", "fileName": "f", "callerNo": "1",
               "calleeNo": "2", "agentId": agent, "recordBeginTime": 1736640000000u64,
               "recordEndTime": 1736640001000u64, "callType": 7, "mediaType": 5, "vdnId": 1,
               "tenantId": "t", "callCenterId": 1, "releaseCause": 0,
               "beginTime": 1736640000000u64, "confirmStatus": 0, "locationId": 0})
    };
    let (r1, r2, r3) = (record(11, json!("x")), record(12, json!("y")), record(13, json!("z")));
    let api =
        ScriptedApi::start(Canned::json(page_of(&[record(1, json!(1)), r1, r2.clone()]))).await;
    let h = Harness::start(SimOptions::default()).await;
    let engine = h.engine_at(&api.base_url, "");
    let jan = month("2025-01");
    engine.backfill("rbt_recognition", jan, jan, false, &LogProgress).await.unwrap();

    // A window of January: R2 rejected again (kept once) and a new R3.
    api.set(Canned::json(page_of(&[record(2, json!(2)), r2, r3])));
    let zone = cecsync::calendar::parse_zone("+08:00").unwrap();
    let begin = jan.start(zone).timestamp_millis() + 86_400_000;
    let report = engine.fetch_range("rbt_recognition", begin, begin + 86_400_000, &LogProgress);
    let report = report.await.unwrap();
    assert_eq!(report.rejects(), 3, "the checkpoint counts the month's rejects");

    let rejects = std::fs::read_to_string(
        h.lake()
            .join("_rejects/rbt_recognition/tenant_id=202401150001/month=2025-01/rejects.jsonl"),
    )
    .unwrap();
    let mut ids: Vec<u64> = rejects
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["record"]["rbtRecognitionId"]
                .as_u64()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [11, 12, 13]);
    let rows = lake_rows(&h.lake(), "rbt_recognition");
    assert_eq!(rows.len(), 2, "both good rows are in the partition");
}

/// A listing whose reader has gone away (`cecsync schema X | head -0`) ends quietly: exit
/// 0 and no panic, instead of a backtrace for a closed pipe.
#[test]
fn a_listing_whose_reader_went_away_ends_quietly() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_cecsync"))
        .args(["schema", "inbound_daily_by_callee"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
