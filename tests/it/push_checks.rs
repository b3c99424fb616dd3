//! The push receivers over real HTTP on loopback: the signature checks (a good push in
//! both token schemes, a wrong digest, an unknown app, an old `Created`, a replayed nonce),
//! the outbound callback's secret segment and allow-list, bad input of every documented
//! kind (each a clear 4xx, nothing spooled), and the compaction of what was accepted into
//! Parquet, read back with the types of the schemas.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cecsync::config::Settings;
use cecsync::engine::progress::LogProgress;
use cecsync::engine::Engine;
use cecsync::push::aksk::{format_created, sign, TokenScheme};
use cecsync::push::compact::Compactor;
use cecsync::push::receiver::Receivers;
use cecsync::push::server::{serve, RunningReceivers};
use cecsync::push::spool::{Spool, SpoolOptions};
use cecsync::secret::Secret;
use cecsync::sim::{PushPlan, PushTargets, Pusher, PusherOptions, SimOptions};
use cecsync::telemetry::Telemetry;
use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::common::lake_rows;

const APP_KEY: &str = "pn-app-1";
const APP_SECRET: &str = "pn-secret-Zx81";
const PATH_SECRET: &str = "cb-0123456789abcdef-secret";

/// A receiver configuration on a free loopback port: Private Number app `APP_KEY`, the
/// outbound callback behind `PATH_SECRET` for the peers of `allow_ips`; `push_keys` are
/// added to `[push]`, `more` after it.
fn push_config(dir: &Path, allow_ips: &str, push_keys: &str, more: &str) -> String {
    format!(
        r#"tenant_id = "T1"
spool_dir = "{dir}/staging"
[destination]
url = "file://{dir}/lake"
[push]
listen = "127.0.0.1:0"
spool_dir = "{dir}/spool"
max_body_bytes = 65536
{push_keys}
[push.privatenumber]
apps = {{ "{APP_KEY}" = "${{PN_SECRET}}" }}
max_clock_skew_secs = 300
[push.outbound_results]
path_secret = "${{CB_SECRET}}"
allow_ips = {allow_ips}
timezone = "+08:00"
{more}"#,
        dir = dir.display()
    )
}

/// Receivers serving a configuration, with the lake and spool they write.
struct Receiving {
    running: RunningReceivers,
    engine: Engine,
    spool: Spool,
    compactor: Compactor,
    http: reqwest::Client,
}

impl Receiving {
    async fn start(dir: &Path, allow_ips: &str) -> Self {
        Self::with_config(dir, &push_config(dir, allow_ips, "", "")).await
    }

    /// Receivers of the configuration `text`, whose `[push]` table is `push_config`'s.
    async fn with_config(dir: &Path, text: &str) -> Self {
        let env = |name: &str| match name {
            "PN_SECRET" => Some(APP_SECRET.to_string()),
            "CB_SECRET" => Some(PATH_SECRET.to_string()),
            other => std::env::var(other).ok(),
        };
        let settings = Settings::parse(&dir.join("push.toml"), text, &env).unwrap();
        let push = settings.push.clone().unwrap();
        let engine = Engine::open(settings).unwrap();
        let spool = Spool::open(&push.spool_dir, SpoolOptions::default()).unwrap();
        let compactor =
            Compactor::new(engine.settings(), &push, engine.store(), spool.clone()).unwrap();
        let telemetry = Arc::new(Telemetry::new());
        let receivers = Arc::new(Receivers::new(&push, spool.clone(), telemetry));
        let running = serve(&push, receivers).await.unwrap();
        Self { running, engine, spool, compactor, http: reqwest::Client::new() }
    }

    /// POSTs `body` to `path` with `headers`; the status and body of the answer.
    async fn post(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: impl Into<reqwest::Body>,
    ) -> (u16, String) {
        let mut request = self.http.post(format!("{}{path}", self.running.base_url())).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = request.send().await.unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }
}

/// The headers of a Private Number push signed with `secret` at `created`.
fn signed(
    scheme: TokenScheme,
    secret: &str,
    nonce: &str,
    created: chrono::DateTime<Utc>,
) -> Vec<(String, String)> {
    let mut headers =
        vec![("content-type".to_string(), "application/json;charset=UTF-8".to_string())];
    for (name, value) in
        sign(scheme, APP_KEY, &Secret::new(secret), nonce, &format_created(created)).unwrap()
    {
        headers.push((name.to_string(), value.to_str().unwrap().to_string()));
    }
    headers
}

fn cdr(icid: &str, call_in: &str) -> Value {
    json!({"direction": 1, "spId": "sp01", "appKey": APP_KEY, "icid": icid, "bindNum": "+8613800000022",
        "sessionId": format!("s-{icid}"), "callerNum": "+8613800000021", "calleeNum": "013800000022",
        "callInTime": call_in, "fwdAnswerTime": "", "callEndTime": call_in, "recordFlag": 0,
        "serviceType": "004", "ulFailReason": 0, "vendorNote": "kept in _extra"})
}

const CDR_PATH: &str = "/push/privatenumber/cdr";
const EVENT_PATH: &str = "/push/privatenumber/event";

/// Every check of a push answers as documented; what was accepted, and only that, reaches
/// the lake after a compaction, with the schemas' types and in the months of its times.
#[tokio::test]
async fn pushes_are_checked_spooled_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiving::start(dir.path(), "[]").await;
    let now = Utc::now();
    let fee = |cdrs: Vec<Value>| json!({"eventType": "fee", "feeLst": cdrs}).to_string();

    // Good pushes: X-AKSK and the older X-WSSE; 200 with an empty body.
    let (status, body) = r
        .post(
            CDR_PATH,
            &signed(TokenScheme::Aksk, APP_SECRET, "n1", now),
            fee(vec![cdr("icid-1", "2025-01-31 23:59:59"), cdr("icid-2", "2025-02-01 00:00:00")]),
        )
        .await;
    assert_eq!((status, body.as_str()), (200, ""));
    // A CDR without appKey is the signing app's.
    let mut unkeyed = cdr("icid-3", "2025-02-10 08:00:00");
    unkeyed.as_object_mut().unwrap().remove("appKey");
    let headers = signed(TokenScheme::Wsse, APP_SECRET, "n2", now);
    let (status, _) = r.post(CDR_PATH, &headers, fee(vec![unkeyed])).await;
    assert_eq!(status, 200);
    let event = json!({"eventType": "disconnect", "statusInfo": {"sessionId": "s-icid-1",
        "timestamp": "2025-01-31 23:59:59", "caller": "+8613800000021", "called": "+8613800000022",
        "stateCode": 0, "stateDesc": "The user releases the call."}});
    let (status, _) = r
        .post(EVENT_PATH, &signed(TokenScheme::Aksk, APP_SECRET, "n3", now), event.to_string())
        .await;
    assert_eq!(status, 200);

    // A CDR that does not fit the schema (no icid) is accepted, and kept in _rejects/ once
    // however often it is pushed.
    let mut no_icid = cdr("x", "2025-02-10 08:00:00");
    no_icid["icid"] = Value::Null;
    for nonce in ["n8", "n9"] {
        let headers = signed(TokenScheme::Aksk, APP_SECRET, nonce, now);
        assert_eq!(r.post(CDR_PATH, &headers, fee(vec![no_icid.clone()])).await.0, 200);
    }

    // Refused with 401: replayed nonce, wrong digest, old and future Created, unknown app,
    // no token at all.
    let refused = [
        ("replayed nonce", signed(TokenScheme::Aksk, APP_SECRET, "n1", now)),
        ("wrong secret", signed(TokenScheme::Aksk, "not-the-secret", "n4", now)),
        ("old Created", signed(TokenScheme::Aksk, APP_SECRET, "n5", now - Duration::minutes(10))),
        (
            "future Created",
            signed(TokenScheme::Aksk, APP_SECRET, "n6", now + Duration::minutes(10)),
        ),
        ("no token", vec![("content-type".into(), "application/json".into())]),
    ];
    for (what, headers) in refused {
        let (status, _) =
            r.post(CDR_PATH, &headers, fee(vec![cdr("icid-bad", "2025-02-10 08:00:00")])).await;
        assert_eq!(status, 401, "{what}");
    }
    let mut other_app = signed(TokenScheme::Aksk, APP_SECRET, "n7", now);
    other_app[2].1 = other_app[2].1.replace(APP_KEY, "someone-else");
    let (status, _) =
        r.post(CDR_PATH, &other_app, fee(vec![cdr("icid-bad", "2025-02-10 08:00:00")])).await;
    assert_eq!(status, 401, "unknown app");

    // Bad input: a clear 4xx each, nothing spooled.
    let many: Vec<Value> =
        (0..51).map(|i| cdr(&format!("icid-many-{i}"), "2025-02-10 08:00:00")).collect();
    let block = json!({"eventType": "callin", "statusInfo": {"sessionId": "s-block", "timestamp": "2025-02-10 08:00:00",
        "caller": "+8613800000021", "called": "+8613800000022", "notifyMode": "block"}});
    let mut text_plain = signed(TokenScheme::Aksk, APP_SECRET, "n20", now);
    text_plain[0].1 = "text/plain".into();
    let bad = [
        ("text/plain", text_plain, "{}".to_string(), 415),
        (
            "not JSON",
            signed(TokenScheme::Aksk, APP_SECRET, "n21", now),
            "{\"eventType\": ".to_string(),
            400,
        ),
        (
            "feeLst an object",
            signed(TokenScheme::Aksk, APP_SECRET, "n22", now),
            json!({"eventType": "fee", "feeLst": cdr("icid-obj", "2025-02-10 08:00:00")})
                .to_string(),
            400,
        ),
        ("51 CDRs", signed(TokenScheme::Aksk, APP_SECRET, "n23", now), fee(many), 400),
        (
            "unknown eventType",
            signed(TokenScheme::Aksk, APP_SECRET, "n24", now),
            json!({"eventType": "ringback", "statusInfo": {}}).to_string(),
            400,
        ),
        (
            "Block-mode callin",
            signed(TokenScheme::Aksk, APP_SECRET, "n25", now),
            block.to_string(),
            403,
        ),
        (
            "oversize",
            signed(TokenScheme::Aksk, APP_SECRET, "n26", now),
            fee(vec![json!({"icid": "x".repeat(70_000)})]),
            413,
        ),
    ];
    for (what, headers, body, want) in bad {
        let (status, answer) = r.post(EVENT_PATH, &headers, body).await;
        assert_eq!(status, want, "{what}: {answer}");
    }

    // The outbound callback: the secret segment, then the documented answer.
    let results = json!([
        {"campaignId": "3", "sessionId": "1202_test013", "called": "060584", "callTimeStr": "2025-03-01 00:30:00",
         "callStatus": 6, "failCode": "00000", "vdnId": 11, "callId": "0023-134864174", "customField": "c1",
         "recordPath": "Y:/1/11/20250301/3408/0949218.V3"},
        {"campaignId": "3", "sessionId": "1202_test014", "called": "60585", "callTimeStr": "2025-02-28 23:59:59",
         "callStatus": 5, "failCode": "00537", "vdnId": 11, "callId": "0023-134864175"}
    ]);
    let json_headers = vec![("content-type".to_string(), "application/json".to_string())];
    let (status, answer) = r
        .post(&format!("/push/isales/result/{PATH_SECRET}"), &json_headers, results.to_string())
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap(),
        json!({"retCode": "0", "retMsg": "success"})
    );
    let (status, answer) = r
        .post("/push/isales/result/cb-0123456789abcdef-secreT", &json_headers, results.to_string())
        .await;
    assert_eq!(status, 401, "{answer}");
    assert!(!answer.contains(PATH_SECRET));
    let (status, answer) = r
        .post(&format!("/push/isales/result/{PATH_SECRET}"), &json_headers, results[0].to_string())
        .await;
    assert_eq!(status, 400, "an object where the array belongs: {answer}");
    assert_eq!(serde_json::from_str::<Value>(&answer).unwrap()["retCode"], "1");

    // The same results pushed again (the platform's retry) are kept once; the callback
    // documents no header, so any content type is taken when the body is JSON.
    let text_plain = vec![("content-type".to_string(), "text/plain".to_string())];
    let callback = format!("/push/isales/result/{PATH_SECRET}");
    let (status, _) = r.post(&callback, &text_plain, results.to_string()).await;
    assert_eq!(status, 200, "no content type documented for the callback: accepted");
    let huge = json!([{"callId": "x".repeat(70_000), "callTimeStr": "2025-03-01 00:30:00"}]);
    let (status, answer) = r.post(&callback, &json_headers, huge.to_string()).await;
    assert_eq!(status, 413);
    assert_eq!(serde_json::from_str::<Value>(&answer).unwrap()["retCode"], "1", "{answer}");

    let report = r.compactor.compact().await.unwrap();
    assert_eq!((report.pushes, report.records, report.rejects), (7, 10, 1), "{report}");
    let lake = dir.path().join("lake");
    let rejects: Vec<String> =
        crate::common::files_under(&lake.join("_rejects/privatenumber_cdrs"))
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f).unwrap().lines().map(String::from).collect::<Vec<_>>()
            })
            .collect();
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert!(rejects[0].contains("icid"), "the reason names the field: {}", rejects[0]);
    let cdrs: BTreeMap<String, (String, Value)> = lake_rows(&lake, "privatenumber_cdrs")
        .into_iter()
        .map(|(month, row)| {
            (row["icid"].as_str().unwrap().to_string(), (month, Value::Object(row)))
        })
        .collect();
    assert_eq!(cdrs.keys().collect::<Vec<_>>(), ["icid-1", "icid-2", "icid-3"]);
    assert_eq!(cdrs["icid-1"].0, "2025-01", "times are UTC: 23:59:59 of Jan 31 is January");
    assert_eq!(cdrs["icid-2"].0, "2025-02");
    let row = &cdrs["icid-1"].1;
    assert_eq!(row["calleeNum"], "013800000022", "numbers keep their leading zero");
    assert_eq!(row["serviceType"], "004");
    assert_eq!(cdrs["icid-3"].1["appKey"], APP_KEY, "the signer's app key fills a missing one");
    assert_eq!(row["direction"], 1);
    assert_eq!(row["callInTime"], 1_738_367_999_000i64, "2025-01-31 23:59:59 UTC");
    assert_eq!(row["fwdAnswerTime"], Value::Null, "an empty time is unset");
    assert!(row["_extra"].as_str().unwrap().contains("vendorNote"), "unknown fields are kept");

    let events = lake_rows(&lake, "privatenumber_events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "2025-01");
    assert_eq!(events[0].1["eventType"], "disconnect");
    assert_eq!(events[0].1["appKey"], APP_KEY, "the signing app is recorded");

    let results: BTreeMap<String, String> = lake_rows(&lake, "outbound_results")
        .into_iter()
        .map(|(month, row)| (row["callId"].as_str().unwrap().to_string(), month))
        .collect();
    assert_eq!(
        results,
        BTreeMap::from([
            // 00:30 on March 1st in +08:00 is still February in UTC: the tenant zone decides.
            ("0023-134864174".to_string(), "2025-03".to_string()),
            ("0023-134864175".to_string(), "2025-02".to_string()),
        ])
    );
    let outbound = lake_rows(&lake, "outbound_results");
    let called: Vec<&str> = outbound.iter().map(|(_, r)| r["called"].as_str().unwrap()).collect();
    assert!(called.contains(&"060584"));
    assert!(outbound.iter().all(|(_, r)| r["failCode"].as_str().unwrap().len() == 5));

    // A second compaction finds nothing new and changes nothing.
    let again = r.compactor.compact().await.unwrap();
    assert_eq!(again.pushes, 0);
    drop(r.engine);
    r.running.shutdown().await;
}

/// The callback refuses a peer outside `allow_ips` with 401, whatever the path.
#[tokio::test]
async fn the_callback_refuses_peers_outside_the_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiving::start(dir.path(), r#"["10.0.0.0/8"]"#).await;
    let results = json!([{"callId": "c1", "callTimeStr": "2025-03-01 00:30:00"}]);
    let (status, answer) =
        r.post(&format!("/push/isales/result/{PATH_SECRET}"), &[], results.to_string()).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("allow_ips"), "{answer}");
    assert_eq!(r.compactor.compact().await.unwrap().pushes, 0, "nothing was spooled");
    r.running.shutdown().await;
}

/// A spool segment damaged in the middle (a disk fault) does not hold the spool up: every
/// entry but the damaged one is compacted, the segment is moved to `quarantine/`, and
/// later pushes are compacted as usual.
#[tokio::test]
async fn a_damaged_segment_is_compacted_around_the_damage_and_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiving::start(dir.path(), "[]").await;
    let now = Utc::now();
    for (n, icid) in ["icid-a", "icid-b", "icid-c"].iter().enumerate() {
        let body =
            json!({"eventType": "fee", "feeLst": [cdr(icid, "2025-02-10 08:00:00")]}).to_string();
        let headers = signed(TokenScheme::Aksk, APP_SECRET, &format!("d{n}"), now);
        assert_eq!(r.post(CDR_PATH, &headers, body).await.0, 200);
    }
    let sealed = r.spool.seal().await.unwrap();
    assert_eq!(sealed.len(), 1);
    // Flip a byte inside the second entry: header (12 bytes), then length, checksum, payload.
    let path = sealed[0].path().to_path_buf();
    let mut bytes = std::fs::read(&path).unwrap();
    let first = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    bytes[12 + 8 + first + 8 + 5] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let report = r.compactor.compact().await.unwrap();
    assert_eq!((report.pushes, report.quarantined), (2, 1), "{report}");
    assert!(!path.exists(), "the damaged segment left the spool");
    let aside: Vec<_> = std::fs::read_dir(dir.path().join("spool/quarantine")).unwrap().collect();
    assert_eq!(aside.len(), 1, "a copy is kept for inspection");
    let headers = signed(TokenScheme::Aksk, APP_SECRET, "d9", now);
    let body =
        json!({"eventType": "fee", "feeLst": [cdr("icid-d", "2025-02-11 08:00:00")]}).to_string();
    assert_eq!(r.post(CDR_PATH, &headers, body).await.0, 200);
    let report = r.compactor.compact().await.unwrap();
    assert_eq!((report.pushes, report.quarantined), (1, 0), "{report}");
    let mut icids: Vec<String> = lake_rows(&dir.path().join("lake"), "privatenumber_cdrs")
        .into_iter()
        .map(|(_, row)| row["icid"].as_str().unwrap().to_string())
        .collect();
    icids.sort();
    assert_eq!(icids, ["icid-a", "icid-c", "icid-d"], "all but the damaged entry");
    r.running.shutdown().await;
}

/// With a certificate and key, the receivers serve HTTPS (rustls): the simulator's pusher,
/// trusting the test CA, gets every signed push acknowledged; plain HTTP is not answered.
#[tokio::test]
async fn the_receivers_serve_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::tls::test_pki();
    std::fs::write(dir.path().join("push.crt"), &pki.chain_pem).unwrap();
    std::fs::write(dir.path().join("push.key"), &pki.key_pem).unwrap();
    let tls = "tls_cert = \"push.crt\"\ntls_key = \"push.key\"";
    let r = Receiving::with_config(dir.path(), &push_config(dir.path(), "[]", tls, "")).await;
    let base = r.running.base_url();
    assert!(base.starts_with("https://"), "{base}");
    let targets = PushTargets {
        cdr_url: format!("{base}{CDR_PATH}"),
        event_url: format!("{base}{EVENT_PATH}"),
        outbound_url: format!("{base}/push/isales/result/{PATH_SECRET}"),
    };
    let options = PusherOptions {
        ca_bundle_pem: Some(pki.ca_pem.clone().into_bytes()),
        ..PusherOptions::new(targets, APP_KEY, Secret::new(APP_SECRET))
    };
    let plan = PushPlan { messages: 5, app_key: APP_KEY.into(), ..PushPlan::default() };
    let report = Pusher::new(options).unwrap().push(&plan.load()).await;
    assert_eq!((report.acknowledged, report.attempts), (15, 15), "{report}");
    // A push that plain HTTP would accept gets no answer without TLS.
    let plain = base.replace("https://", "http://");
    let headers = signed(TokenScheme::Aksk, APP_SECRET, "plain-1", Utc::now());
    let body = json!({"eventType": "fee", "feeLst": [cdr("icid-plain", "2025-02-10 08:00:00")]});
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_merge([ca]).build().unwrap();
    let send = |url: String| {
        let mut request = http.post(url).body(body.to_string());
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        request.send()
    };
    assert!(send(format!("{plain}{CDR_PATH}")).await.is_err(), "plain HTTP is not served");
    let answer = send(format!("{base}{CDR_PATH}")).await.unwrap();
    assert_eq!(answer.status().as_u16(), 200, "the same push over HTTPS is");
    r.running.shutdown().await;
}

/// The callresult pull backs the callback up in the same dataset: pushed results of a
/// campaign the pull does not list stay, pulled results fill the gaps, each call once, and
/// the month is complete after a whole-month pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_fills_the_gaps_of_the_pushes_in_one_dataset() {
    let jan = crate::common::month("2025-01");
    let opts = SimOptions {
        vdns: 1,
        campaigns_per_vdn: 2,
        campaign_calls_per_month: 300,
        first_month: jan,
        last_month: jan,
        ..SimOptions::default()
    };
    let h = crate::common::Harness::start(opts).await;
    let pull = format!(
        "{}[pipelines.outbound_results]\nfor_each = {}\n",
        h.c2_source_text("isales", false),
        h.campaign_entries()
    );
    let dir = h.dir.path().join("push");
    std::fs::create_dir_all(&dir).unwrap();
    let r = Receiving::with_config(&dir, &push_config(&dir, "[]", "", &pull)).await;
    let truth = h.sim.campaign_call_results([jan]);
    // A third of the calls pushed (with a field only the callback has), and calls of a
    // campaign the pull does not list.
    let mut pushed: Vec<Value> = truth.values().step_by(3).cloned().collect();
    for result in &mut pushed {
        result["customField"] = json!("pushed");
    }
    let others: Vec<Value> = (0..5)
        .map(|i| json!({"campaignId": "999", "callId": format!("other-{i}"), "callTimeStr": "2025-01-15 10:00:00",
            "callStatus": 6, "failCode": "00000", "vdnId": 1}))
        .collect();
    let callback = format!("/push/isales/result/{PATH_SECRET}");
    for chunk in pushed.chunks(20).chain([others.as_slice()]) {
        let (status, _) = r.post(&callback, &[], Value::from(chunk.to_vec()).to_string()).await;
        assert_eq!(status, 200);
    }
    r.compactor.compact().await.unwrap();
    let report =
        r.engine.backfill("outbound_results", jan, jan, false, &LogProgress).await.unwrap();
    assert_eq!(report.rows(), truth.len() as u64 + 5, "{report}");
    let rows = lake_rows(&dir.join("lake"), "outbound_results");
    let ids: std::collections::BTreeSet<String> =
        rows.iter().map(|(_, row)| row["callId"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), rows.len(), "each call once");
    let mut want: std::collections::BTreeSet<String> = truth.keys().cloned().collect();
    want.extend((0..5).map(|i| format!("other-{i}")));
    assert_eq!(ids, want, "pulled calls and pushed calls of unlisted campaigns");
    // Each source's own field stays: customField from the push, resultCode from the pull.
    let pushed_ids: std::collections::BTreeSet<&str> =
        pushed.iter().map(|r| r["callId"].as_str().unwrap()).collect();
    for (_, row) in &rows {
        let id = row["callId"].as_str().unwrap();
        if pushed_ids.contains(id) {
            assert_eq!(row["customField"], "pushed", "{id}: the pull kept the pushed field");
            assert_eq!(row["resultCode"], truth[id]["resultCode"], "{id}: the pulled field");
        }
    }
    let status = cecsync::engine::report::status(&r.engine).await.unwrap();
    let month = status
        .iter()
        .find(|s| s.pipeline == "outbound_results")
        .and_then(|s| s.partition.as_ref())
        .unwrap();
    assert_eq!(month.state.to_string(), "complete", "a whole closed month was pulled");
    r.running.shutdown().await;
}

/// A push that cannot be made durable is answered 503 (so the platform pushes it again),
/// and its nonce is not spent: the same signed push is accepted once the spool works again.
#[tokio::test]
async fn a_push_the_spool_cannot_keep_gets_503_and_may_come_again() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiving::start(dir.path(), "[]").await;
    let spool_dir = dir.path().join("spool");
    r.spool.seal().await.unwrap();
    std::fs::remove_dir_all(&spool_dir).unwrap();
    let headers = signed(TokenScheme::Aksk, APP_SECRET, "again-1", Utc::now());
    let body = json!({"eventType": "fee", "feeLst": [cdr("icid-503", "2025-02-10 08:00:00")]});
    let (status, _) = r.post(CDR_PATH, &headers, body.to_string()).await;
    assert_eq!(status, 503, "nothing durable, no success");
    std::fs::create_dir_all(&spool_dir).unwrap();
    let (status, _) = r.post(CDR_PATH, &headers, body.to_string()).await;
    assert_eq!(status, 200, "the re-push with the same nonce is accepted");
    let (status, _) = r.post(CDR_PATH, &headers, body.to_string()).await;
    assert_eq!(status, 401, "and now the nonce is spent");
    assert_eq!(r.compactor.compact().await.unwrap().records, 1);
    r.running.shutdown().await;
}
