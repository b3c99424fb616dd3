//! Snapshot datasets and per-entry requests: `ivr_flows` read from the simulator's signed
//! CMS route, one request per configured (ccId, vdn), written as the partition of the day
//! (replaced by a second run that day, older days kept, a failed run leaving them as they
//! were); `for_each` entries filling a path placeholder, paged and windowed on their own;
//! configuration errors that name the key — the lake read back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::Json;
use cecsync::config::Settings;
use cecsync::engine::clock::Clock;
use cecsync::engine::progress::LogProgress;
use cecsync::engine::report::{status, verify};
use cecsync::sim::SimOptions;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::common::{engine_for, lake_rows, month, serve_stand_in, Harness, Row};

/// The `[pipelines.ivr_flows]` table asking for every VDN of `vdns` in call center 1.
fn ivr_config(vdns: &[u32]) -> String {
    let entries: Vec<String> = vdns.iter().map(|v| format!("{{ ccId = 1, vdn = {v} }}")).collect();
    format!("[pipelines.ivr_flows]\nfor_each = [{}]\n", entries.join(", "))
}

/// A clock reading noon of `day` in +08:00.
fn noon(day: &str) -> Clock {
    let at: DateTime<Utc> = format!("{day}T04:00:00Z").parse().unwrap();
    Clock::fixed(at)
}

/// The lake's `ivr_flows` rows of one snapshot day, keyed `ccId/vdn/id/accessNo` as the
/// simulator's truth is; a key seen twice fails.
fn snapshot(h: &Harness, day: &str) -> BTreeMap<String, Row> {
    let mut out = BTreeMap::new();
    for (_, row) in lake_rows(&h.lake(), "ivr_flows").into_iter().filter(|(d, _)| d == day) {
        let key = format!("{}/{}/{}/{}", row["ccId"], row["vdn"], row["id"], row["accessNo"]);
        let key = key.replace('"', "");
        assert!(out.insert(key.clone(), row).is_none(), "{key} twice in {day}");
    }
    out
}

/// Asserts that a snapshot holds exactly the simulator's flows, every field equal (the
/// Chinese descriptions byte for byte).
fn assert_snapshot_is(rows: &BTreeMap<String, Row>, truth: &BTreeMap<String, Value>) {
    assert_eq!(rows.keys().collect::<Vec<_>>(), truth.keys().collect::<Vec<_>>());
    for (key, want) in truth {
        let got = &rows[key];
        for field in ["ccId", "vdn", "id", "realFlag", "accessNo", "description", "serviceNo"] {
            assert_eq!(got[field], want[field], "{key}: {field}");
        }
    }
}

/// A sync writes every flow of every configured VDN as today's snapshot; a backfill (of
/// any months) the same day replaces it with an edited description and no duplicate key;
/// a run on another day adds its own snapshot and keeps the older one; a run that fails
/// leaves both as they were. `status` lists the days and `verify` finds nothing wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_flows_snapshots_by_day() {
    let h = Harness::start(SimOptions::default()).await;
    let vdns = h.sim.vdns();
    let text = h.config_text(&format!("{}{}", h.cms_source_text(false), ivr_config(&vdns)));
    let (day1, day2) = ("2026-03-04", "2026-03-05");
    let engine = engine_for(&h, &text).with_clock(noon(day1));

    let truth = h.sim.ivr_flows();
    assert!(truth.values().any(|f| f["description"] == "异常处理流程"));
    let report = engine.sync("ivr_flows", &LogProgress).await.unwrap();
    assert_eq!(report.rows(), truth.len() as u64);
    assert_eq!(report.pages(), vdns.len() as u64, "one request per VDN");
    assert_snapshot_is(&snapshot(&h, day1), &truth);
    let tenant = &h.opts.tenant_id;
    let objects = h.lake_objects().await;
    for expected in [
        format!("ivr_flows/tenant_id={tenant}/snapshot_date={day1}/part-00000.parquet"),
        format!("_state/ivr_flows/tenant_id={tenant}/snapshot_date={day1}.json"),
    ] {
        assert!(objects.contains(&expected), "{expected} in {objects:?}");
    }

    // The same day: the snapshot is replaced, whatever range the backfill names.
    assert!(h.sim.ivr_flow_describe(vdns[0], 1, "新的流程描述（已修改）"));
    let edited = h.sim.ivr_flows();
    let report = engine
        .backfill("ivr_flows", month("2020-01"), month("2020-03"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!(report.slices.len(), 1);
    let first = snapshot(&h, day1);
    assert_snapshot_is(&first, &edited);
    assert!(first.values().any(|r| r["description"] == "新的流程描述（已修改）"));
    assert_eq!(lake_rows(&h.lake(), "ivr_flows").len(), edited.len(), "one day, no duplicates");

    // Another day: a snapshot of its own, the older one kept.
    assert!(h.sim.ivr_flow_describe(vdns[1], 2, "次日的描述"));
    let next = engine_for(&h, &text).with_clock(noon(day2));
    next.sync("ivr_flows", &LogProgress).await.unwrap();
    assert_snapshot_is(&snapshot(&h, day1), &edited);
    assert_snapshot_is(&snapshot(&h, day2), &h.sim.ivr_flows());

    // A run that fails (a VDN the platform refuses) writes nothing and leaves both days.
    let before = h.lake_objects().await;
    let refused =
        h.config_text(&format!("{}{}", h.cms_source_text(false), ivr_config(&[vdns[0], 9999])));
    let failing = engine_for(&h, &refused).with_clock(noon("2026-03-06"));
    let err = failing.sync("ivr_flows", &LogProgress).await.unwrap_err().to_string();
    assert!(err.contains("ivr_flows snapshot_date=2026-03-06") && err.contains("vdn"), "{err}");
    assert_eq!(h.lake_objects().await, before);

    let engine = engine_for(&h, &text).with_clock(noon(day2));
    let partitions: Vec<String> = status(&engine)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.pipeline == "ivr_flows")
        .filter_map(|r| r.partition.map(|p| p.key.to_string()))
        .collect();
    assert_eq!(partitions, [format!("snapshot_date={day1}"), format!("snapshot_date={day2}")]);
    let checked = verify(&engine).await.unwrap();
    assert!(checked.findings.is_empty(), "{:?}", checked.findings);
}

/// A pipeline of a test catalog: one request per entry, its `vdnId` filling the path and
/// copied into each row, its `campaignId` sent in the body; January asked in windows of
/// at most 10 days, pages of 2 rows.
const PIPELINE: &str = r#"
name = "per_vdn"
description = "Rows per VDN"
source = "oifde"
[request]
path = "/vdn/{vdnId}/rows"
for_each = ["vdnId"]
[auth]
style = "body_token"
field = "authToken"
[paging]
style = "page_number"
page_field = "pageNum"
size_field = "pageSize"
page_size = 2
total_path = "total"
[slicing]
style = "calendar_month"
begin_field = "beginTime"
end_field = "endTime"
time_format = "epoch_ms"
max_window_days = 10
[records]
path = "rows"
from_request = { vdnId = "vdnId" }
primary_key = ["id"]
event_time = "t"
"#;

const SCHEMA: &str = r#"{"dataset": "per_vdn", "description": "x", "fields": [
  {"name": "id", "type": "utf8", "nullable": false, "doc": "row id"},
  {"name": "vdnId", "type": "int64", "nullable": false, "doc": "the VDN of the request path"},
  {"name": "campaign", "type": "utf8", "nullable": true, "doc": "the campaign of the body"},
  {"name": "t", "type": "timestamp_ms", "nullable": false, "doc": "when"}]}"#;

/// Every request the stand-in received: its path's VDN and its body.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// Three rows per VDN and window (the window's first instant), served two per page.
async fn rows(
    State(seen): State<Seen>,
    UrlPath(vdn): UrlPath<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    seen.lock().unwrap().push((vdn.clone(), body.clone()));
    let begin = body["beginTime"].as_i64().unwrap();
    let page = body["pageNum"].as_u64().unwrap() as usize;
    let all: Vec<Value> = (0..3)
        .map(|i| json!({"id": format!("{vdn}-{begin}-{i}"), "t": begin, "campaign": body["campaignId"]}))
        .collect();
    let rows: Vec<Value> = all.into_iter().skip((page - 1) * 2).take(2).collect();
    Json(json!({"total": 3, "rows": rows}))
}

/// Each entry is asked on its own path, per window and page, with its body keys; its
/// rows all land in the month's partition carrying the path's VDN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_each_entries_fill_the_path_and_page_on_their_own() {
    let h = Harness::start(SimOptions::default()).await;
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/vdn/{vdn}/rows", axum::routing::post(rows))
        .with_state(seen.clone());
    let base_url = serve_stand_in(app).await;
    let catalog = h.catalog_line("per_vdn", PIPELINE, SCHEMA);
    let entries = "[pipelines.per_vdn]\nfor_each = [{ vdnId = 170, campaignId = \"c1\" }, \
                   { vdnId = \"171\", campaignId = \"c2\" }]\n";
    let text =
        format!("{catalog}{}", h.config_text(entries)).replace(&h.running.base_url, &base_url);
    let jan = month("2025-01");
    let report = engine_for(&h, &text).backfill("per_vdn", jan, jan, false, &LogProgress).await;
    let report = report.unwrap();
    // 4 windows (1-10, 11-20, 21-30, 31) x 2 entries x 3 rows, each request 2 pages.
    assert_eq!((report.rows(), report.pages()), (24, 16));
    let seen = seen.lock().unwrap().clone();
    for (vdn, campaign) in [("170", "c1"), ("171", "c2")] {
        let mine: Vec<&Value> = seen.iter().filter(|(v, _)| v == vdn).map(|(_, b)| b).collect();
        assert_eq!(mine.len(), 8, "{vdn}: 4 windows x 2 pages");
        assert!(mine.iter().all(|b| b["campaignId"] == campaign && b.get("vdnId").is_none()));
    }
    let lake = lake_rows(&h.lake(), "per_vdn");
    assert_eq!(lake.len(), 24);
    assert!(lake.iter().all(|(m, _)| m == "2025-01"));
    for (_, row) in &lake {
        let id = row["id"].as_str().unwrap();
        assert_eq!(row["vdnId"], json!(id[..3].parse::<i64>().unwrap()), "{row:?}");
        let campaign = if id.starts_with("170") { "c1" } else { "c2" };
        assert_eq!(row["campaign"], campaign);
    }
}

/// A configuration whose `for_each` does not fit its pipeline is refused with the key to
/// fix: missing where the pipeline's table enables it, an entry empty or without a needed
/// key, a path value that is not one segment, entries on a dataset that reads a cursor
/// window. A pipeline without its own table is off (its source alone does not say what to
/// ask about), and a run of it is refused naming the key; a disabled one needs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_each_config_errors_name_the_key() {
    let h = Harness::start(SimOptions::default()).await;
    let refused = |extra: &str| {
        let path = h.dir.path().join("bad.toml");
        std::fs::write(&path, h.config_text(&format!("{}{extra}", h.cms_source_text(false))))
            .unwrap();
        Settings::load(&path).unwrap_err().to_string()
    };
    for (extra, want) in [
        (
            "[pipelines.ivr_flows]\npage_concurrency = 2\n",
            vec![
                "pipelines.ivr_flows.for_each",
                "is missing",
                "ccId = ..., vdn = ...",
                "enabled = false",
            ],
        ),
        (
            "[pipelines.ivr_flows]\nfor_each = [{ ccId = 1, vdn = 170 }, { ccId = 1 }]\n",
            vec!["pipelines.ivr_flows.for_each[1]", "has no 'vdn'"],
        ),
        (
            "[pipelines.ivr_flows]\nfor_each = [{}]\n",
            vec!["pipelines.ivr_flows.for_each[0]", "empty table"],
        ),
        (
            "[pipelines.appraise_calls]\nfor_each = [{ a = 1 }]\n",
            vec!["pipelines.appraise_calls.for_each", "cursor"],
        ),
    ] {
        let err = refused(extra);
        for part in want {
            assert!(err.contains(part), "{extra:?}: {part:?} in {err}");
        }
    }
    let off = h.config_text(&format!(
        "{}[pipelines.ivr_flows]\nenabled = false\n",
        h.cms_source_text(false)
    ));
    let path = h.dir.path().join("off.toml");
    std::fs::write(&path, off).unwrap();
    assert!(Settings::load(&path).is_ok(), "a disabled pipeline needs no entries");
    let by_source = engine_for(&h, &h.config_text(&h.cms_source_text(false)));
    assert!(!by_source.enabled_pipelines().contains(&"ivr_flows".to_string()));
    let err = by_source.sync("ivr_flows", &LogProgress).await.unwrap_err().to_string();
    for part in ["pipelines.ivr_flows.for_each", "for_each = [{ ccId = ..., vdn = ... }, ...]"] {
        assert!(err.contains(part), "{part:?} in {err}");
    }

    let catalog = h.catalog_line("per_vdn", PIPELINE, SCHEMA);
    let text = format!(
        "{catalog}{}",
        h.config_text("[pipelines.per_vdn]\nfor_each = [{ vdnId = \"17/0\" }]\n")
    );
    let path = h.dir.path().join("segment.toml");
    std::fs::write(&path, text).unwrap();
    let err = Settings::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("pipelines.per_vdn.for_each[0]")
            && err.contains("'17/0' is not one path segment"),
        "{err}"
    );
}

/// The real binary taking today's `ivr_flows` snapshot again after a description changed,
/// aborted at each named crash point: after every abort a reader sees one whole snapshot,
/// the previous one or (once the data object is in place) the new one, never a mix; the
/// next run completes it, and `verify` passes.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_aborted_mid_run_leaves_a_whole_one() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    use cecsync::sink::crash::{self, CRASH_AT_VARIABLE};

    let h = Harness::start(SimOptions::default()).await;
    let vdns = h.sim.vdns();
    let config = h.config_file(&format!("{}{}", h.cms_source_text(false), ivr_config(&vdns)));
    let cecsync = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cecsync"));
        cmd.args(args).arg("--config").arg(&config).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    };
    let sync = || cecsync(&["sync", "--pipeline", "ivr_flows"]);
    assert!(sync().status().unwrap().success());
    // The one day written (the source zone's today).
    let days: Vec<String> = lake_rows(&h.lake(), "ivr_flows").into_iter().map(|(d, _)| d).collect();
    let day = days[0].clone();
    let before = h.sim.ivr_flows();
    assert_snapshot_is(&snapshot(&h, &day), &before);

    assert!(h.sim.ivr_flow_describe(vdns[0], 2, "主流程（新版）"));
    let after = h.sim.ivr_flows();
    for point in [
        crash::PAGE_STAGED,
        crash::FETCHED,
        crash::BEFORE_REJECTS,
        crash::AFTER_REJECTS,
        crash::BATCH_WRITTEN,
        crash::BEFORE_COMPLETE,
        crash::AFTER_DATA,
    ] {
        let out = sync().env(CRASH_AT_VARIABLE, format!("{point}:1")).output().unwrap();
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen = snapshot(&h, &day);
        let whole = if point == crash::AFTER_DATA { &after } else { &before };
        assert_snapshot_is(&seen, whole);
        let days: Vec<String> =
            lake_rows(&h.lake(), "ivr_flows").into_iter().map(|(d, _)| d).collect();
        assert!(days.iter().all(|d| d == &day), "{point}: one day only");
    }
    assert!(sync().status().unwrap().success(), "the next run completes the snapshot");
    assert_snapshot_is(&snapshot(&h, &day), &after);
    let verify = cecsync(&["verify"]).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}
