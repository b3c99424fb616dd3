//! Outbound campaign results (CC-iSales `callresult`) against the built-in simulator, every
//! request C2-signed and checked by it: one request series per configured campaign, windows
//! of at most 30 days that never cross a month edge (`[beginTime, endTime)` days), pages of
//! 500 to `totalCount`, at most 10 requests in flight; the lake read back.

use cecsync::engine::progress::LogProgress;
use cecsync::engine::Engine;
use cecsync::sim::SimOptions;
use chrono::{NaiveDateTime, TimeZone};
use serde_json::Value;

use crate::common::{assert_dataset_equals, engine_for, month, Harness, Row};

/// The engine of `h` with an iSales source of at most 10 requests in flight and every
/// campaign of the simulator in `for_each`.
fn campaign_engine(h: &Harness) -> Engine {
    let extra = format!(
        "{}[pipelines.campaign_call_results]\nfor_each = {}\n",
        h.c2_source_text("isales", false)
            .replace("[sources.isales.retry]", "max_concurrency = 10\n[sources.isales.retry]"),
        h.campaign_entries()
    );
    engine_for(h, &h.config_text(&extra))
}

/// `callTimeStr` as the lake holds it: the +08:00 wall time as epoch ms.
fn lake_form(field: &str, value: &Value) -> Value {
    match (field, value.as_str()) {
        ("callTimeStr", Some(text)) => {
            let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap();
            let zone = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
            Value::from(zone.from_local_datetime(&local).unwrap().timestamp_millis())
        }
        _ => value.clone(),
    }
}

fn call_ms(row: &Row) -> i64 {
    row["callTimeStr"].as_i64().unwrap()
}

/// Every finished call of four campaigns across a month edge, 1,200 calls a month each
/// (three pages a window), equals the truth: `failCode` keeps its zeros, `callStatus` is
/// text whether sent as a number or a string, each call in its month; the source's limit
/// of 10 requests in flight holds. Calls that finish later are picked up when their window
/// is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_results_equal_the_truth_across_a_month_edge() {
    let (jan, feb) = (month("2025-01"), month("2025-02"));
    let opts = SimOptions {
        vdns: 2,
        campaigns_per_vdn: 2,
        campaign_calls_per_month: 1200,
        first_month: jan,
        last_month: feb,
        ..SimOptions::default()
    };
    let h = Harness::start(opts).await;
    let engine = campaign_engine(&h);
    let name = "campaign_call_results";
    let report = engine.backfill(name, jan, feb, false, &LogProgress).await.unwrap();
    let truth = h.sim.campaign_call_results([jan, feb]);
    assert!(truth.len() > 4 * 2 * 1000, "most calls are finished: {}", truth.len());
    assert_eq!(report.rows(), truth.len() as u64);
    assert!(truth.values().any(|r| r["failCode"] == "00000"));
    assert_dataset_equals(&h, name, &["callId"], &truth, lake_form, call_ms);
    let stats = h.sim.stats();
    assert_eq!((stats.isales_throttled, stats.unauthorized), (0, 0));
    assert!(stats.isales_max_in_flight <= 10, "{}", stats.isales_max_in_flight);

    let finished = h.sim.finish_campaign_calls();
    assert!(!finished.is_empty(), "some calls were still running at the end of February");
    let end = feb.slice(h.opts.zone).end_ms;
    engine.fetch_range(name, end - 2 * 86_400_000, end, &LogProgress).await.unwrap();
    let truth = h.sim.campaign_call_results([jan, feb]);
    assert_dataset_equals(&h, name, &["callId"], &truth, lake_form, call_ms);
}

/// The campaign list (a GET, paged by `curPage`/`rowsPerPage`) is a snapshot of every
/// campaign of the configured VDNs, and with `for_each_from = "campaigns"` the results of
/// every listed campaign are read; before any list snapshot, the results pipeline says to
/// sync the list first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_of_every_listed_campaign() {
    let jan = month("2025-01");
    let opts = SimOptions {
        vdns: 2,
        campaigns_per_vdn: 120,
        campaign_calls_per_month: 3,
        first_month: jan,
        last_month: jan,
        ..SimOptions::default()
    };
    let h = Harness::start(opts).await;
    let vdns: Vec<String> = h.sim.vdns().iter().map(|v| format!("{{ vdnId = {v} }}")).collect();
    let extra = format!(
        "{}[pipelines.campaigns]\nfor_each = [{}]\n\
         [pipelines.campaign_call_results]\nfor_each_from = \"campaigns\"\n",
        h.c2_source_text("isales", false)
            .replace("[sources.isales.retry]", "max_concurrency = 10\n[sources.isales.retry]"),
        vdns.join(", ")
    );
    let engine = engine_for(&h, &h.config_text(&extra));
    let name = "campaign_call_results";
    let err = engine.backfill(name, jan, jan, false, &LogProgress).await.unwrap_err();
    assert!(err.to_string().contains("sync campaigns first"), "{err}");

    let listed = engine.sync("campaigns", &LogProgress).await.unwrap();
    assert_eq!(listed.rows(), 240, "every campaign of both VDNs");
    assert_eq!(listed.pages(), 2 * 2, "two pages of at most 100 a VDN");
    engine.backfill(name, jan, jan, false, &LogProgress).await.unwrap();
    let truth = h.sim.campaign_call_results([jan]);
    let campaigns: std::collections::BTreeSet<String> =
        truth.values().map(|r| format!("{}/{}", r["vdnId"], r["campaignId"])).collect();
    assert!(campaigns.len() > 200, "calls of most campaigns: {}", campaigns.len());
    assert_dataset_equals(&h, name, &["callId"], &truth, lake_form, call_ms);
}

/// A platform that counts result pages from 0 is read whole with `first_page = 0`; the
/// key is refused on a dataset that does not page by number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_page_number_is_configurable() {
    let jan = month("2025-01");
    let opts = SimOptions {
        vdns: 1,
        campaigns_per_vdn: 1,
        campaign_calls_per_month: 1200,
        isales_first_page: 0,
        first_month: jan,
        last_month: jan,
        ..SimOptions::default()
    };
    let h = Harness::start(opts).await;
    let text = h.config_text(&format!(
        "{}[pipelines.campaign_call_results]\nfirst_page = 0\nfor_each = [{{ vdnId = {}, campaignId = 1 }}]\n",
        h.c2_source_text("isales", false),
        h.sim.vdns()[0]
    ));
    let engine = engine_for(&h, &text);
    engine.backfill("campaign_call_results", jan, jan, false, &LogProgress).await.unwrap();
    let truth = h.sim.campaign_call_results([jan]);
    assert_dataset_equals(&h, "campaign_call_results", &["callId"], &truth, lake_form, call_ms);

    let wrong = text.replace(
        "[pipelines.campaign_call_results]",
        "[pipelines.ivr_flows]\nfirst_page = 0\n[pipelines.campaign_call_results]",
    );
    let path = h.dir.path().join("wrong.toml");
    std::fs::write(&path, &wrong).unwrap();
    let err = cecsync::config::Settings::load(&path).unwrap_err().to_string();
    assert!(err.contains("pipelines.ivr_flows.first_page"), "{err}");
}
