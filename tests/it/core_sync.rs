//! The core sync of rbt_recognition, end to end, on a local folder and on an S3-compatible
//! bucket (each test runs as `NAME::local` and `NAME::s3`).

use std::collections::BTreeMap;

use cecsync::calendar::{parse_zone, Month};
use cecsync::engine::progress::LogProgress;
use cecsync::sim::SimOptions;
use cecsync::state::SliceState;
use sha2::{Digest, Sha256};

use crate::common::{assert_lake_equals, lake_rows, month, on_every_store, Harness, StoreKind};

fn opts(first: &str, last: &str, per_month: u64) -> SimOptions {
    SimOptions {
        first_month: month(first),
        last_month: month(last),
        records_per_month: per_month,
        ..SimOptions::default()
    }
}

/// Hash of every object in the lake, by relative path.
async fn lake_digest(h: &Harness) -> BTreeMap<String, String> {
    let lake = h.lake_view().await;
    crate::common::files_under(&lake)
        .into_iter()
        .map(|p| {
            let digest = hex::encode(Sha256::digest(std::fs::read(&p).unwrap()));
            (p.strip_prefix(&lake).unwrap().display().to_string(), digest)
        })
        .collect()
}

/// A range from mid-January to mid-March returns exactly the records of that range, from
/// all three month tables, month-edge hours included; a backfill of the three months
/// returns every record of January, February and March.
async fn a_range_across_months_reads_every_month_table(kind: StoreKind) {
    let Some(h) = Harness::start_on(kind, opts("2025-01", "2025-04", 1500)).await else { return };
    let engine = h.engine("");
    let zone = parse_zone("+08:00").unwrap();
    let begin = month("2025-01").start(zone).timestamp_millis() + 14 * 86_400_000;
    let end = month("2025-03").start(zone).timestamp_millis() + 14 * 86_400_000;
    engine.fetch_range("rbt_recognition", begin, end, &LogProgress).await.unwrap();
    let mut truth = h.truth([month("2025-01"), month("2025-02"), month("2025-03")]);
    truth.retain(|_, r| (begin..=end).contains(&r["beginTime"].as_i64().unwrap()));
    assert!(truth.len() > 1500, "the window spans more than one month table");
    assert_lake_equals(&h.lake_view().await, &truth);

    let h = Harness::start_on(kind, opts("2024-12", "2025-04", 1200)).await.unwrap();
    let engine = h.engine("");
    let report = engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-03"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!(report.slices.len(), 3);
    let truth = h.truth([month("2025-01"), month("2025-02"), month("2025-03")]);
    let edge_hour = |r: &serde_json::Value| {
        let t = r["beginTime"].as_i64().unwrap();
        let m = cecsync::calendar::Month::containing_ms(t, zone).unwrap();
        t - m.start(zone).timestamp_millis() < 3_600_000
            || m.next().start(zone).timestamp_millis() - t <= 3_600_000
    };
    assert!(
        truth.values().filter(|r| edge_hour(r)).count() >= 6,
        "the data has month-edge records"
    );
    assert_lake_equals(&h.lake_view().await, &truth);
}
on_every_store!(a_range_across_months_reads_every_month_table);

/// Which zone's months the server's tables are is not documented: a server whose tables
/// are UTC months is read completely by a source at +08:00 (the default), each request
/// inside one table of either zone, and every row lands in its +08:00 month.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn month_tables_of_utc_are_read_completely() {
    let utc = parse_zone("UTC").unwrap();
    let h = Harness::start(SimOptions { zone: utc, ..opts("2025-01", "2025-03", 1500) }).await;
    let engine = h.engine("");
    engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-04"), false, &LogProgress)
        .await
        .unwrap();
    let truth = h.truth([month("2025-01"), month("2025-02"), month("2025-03")]);
    // Rows of a UTC month's last eight hours are in the next month at +08:00.
    let cst = parse_zone("+08:00").unwrap();
    let moved = truth.values().filter(|r| {
        let t = r["beginTime"].as_i64().unwrap();
        Month::containing_ms(t, utc) != Month::containing_ms(t, cst)
    });
    assert!(moved.count() >= 3, "the data has rows of both months' edges");
    assert_lake_equals(&h.lake_view().await, &truth);
}

/// A month of more than 25 pages arrives complete, with pages fetched concurrently.
async fn a_large_month_arrives_complete_with_concurrent_pages(kind: StoreKind) {
    // Every answer is held back a little, so that requests sent together overlap at the
    // server however busy the machine is.
    let mut options = opts("2025-02", "2025-02", 25_500);
    options.faults.delay_rate = 1.0;
    options.faults.delay = std::time::Duration::from_millis(40);
    let Some(h) = Harness::start_on(kind, options).await else { return };
    let engine = h.engine("[pipelines.rbt_recognition]\npage_concurrency = 4\n");
    let report = engine
        .backfill("rbt_recognition", month("2025-02"), month("2025-02"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!(report.rows(), 25_500);
    assert_eq!(report.pages(), h.rbt_pages([month("2025-02")]));
    assert!(report.pages() > 25);
    assert!(h.sim.stats().max_in_flight >= 2, "pages after the first were fetched concurrently");
    assert_lake_equals(&h.lake_view().await, &h.truth([month("2025-02")]));
}
on_every_store!(a_large_month_arrives_complete_with_concurrent_pages);

/// Re-running a backfill fetches nothing and leaves the lake byte-identical; `--refresh`
/// fetches again and rewrites the same rows and values, only `_synced_at` changes.
async fn rerun_is_a_no_op_and_refresh_rewrites_the_same_rows(kind: StoreKind) {
    let Some(h) = Harness::start_on(kind, opts("2025-01", "2025-03", 2100)).await else { return };
    let engine = h.engine("");
    let (from, to) = (month("2025-01"), month("2025-03"));
    engine.backfill("rbt_recognition", from, to, false, &LogProgress).await.unwrap();
    let before = lake_digest(&h).await;
    let requests = h.sim.stats().requests;

    let again = engine.backfill("rbt_recognition", from, to, false, &LogProgress).await.unwrap();
    assert!(again.slices.is_empty());
    assert_eq!(again.skipped.len(), 3);
    assert_eq!(h.sim.stats().requests, requests, "a re-run fetches nothing");
    assert_eq!(lake_digest(&h).await, before, "a re-run leaves the lake byte-identical");

    let rows_before = lake_rows(&h.lake_view().await, "rbt_recognition");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let refreshed = engine.backfill("rbt_recognition", from, to, true, &LogProgress).await.unwrap();
    assert_eq!(refreshed.slices.len(), 3);
    assert!(h.sim.stats().requests > requests, "--refresh fetches again");
    let rows_after = lake_rows(&h.lake_view().await, "rbt_recognition");
    assert_eq!(rows_before.len(), rows_after.len());
    for ((pm, mut a), (qm, mut b)) in rows_before.into_iter().zip(rows_after) {
        assert_eq!(pm, qm);
        let (sa, sb) = (a.remove("_synced_at").unwrap(), b.remove("_synced_at").unwrap());
        assert!(sb.as_i64() > sa.as_i64(), "_synced_at moves forward");
        assert_eq!(a, b, "same rows and values after --refresh");
    }
    let verify = cecsync::engine::report::verify(&engine).await.unwrap();
    assert!(verify.findings.is_empty(), "{:?}", verify.findings);
    assert_eq!(verify.rows, 6300);
}
on_every_store!(rerun_is_a_no_op_and_refresh_rewrites_the_same_rows);

/// An incremental sync merges updated and added records into the partition by key; a
/// month that was complete stays complete (its whole-month window and total kept), so a
/// backfill still skips it, and `verify` agrees with the merged partition.
async fn sync_merges_changes_by_key(kind: StoreKind) {
    let Some(h) = Harness::start_on(kind, opts("2025-01", "2025-01", 800)).await else { return };
    let engine = h.engine("");
    let zone = parse_zone("+08:00").unwrap();
    let (begin, end) = (
        month("2025-01").start(zone).timestamp_millis(),
        month("2025-02").start(zone).timestamp_millis() - 1,
    );
    engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-01"), false, &LogProgress)
        .await
        .unwrap();
    let id = engine.partition_id("rbt_recognition", month("2025-01"));
    let backfilled = engine.state().partition(&id).await.unwrap().unwrap();
    assert_eq!(backfilled.state, SliceState::Complete);
    let touched = h.sim.rbt_mutate(month("2025-01"), 25, 10);
    assert_eq!(touched.len(), 35);
    engine
        .fetch_range("rbt_recognition", begin + 10 * 86_400_000, end, &LogProgress)
        .await
        .unwrap();
    let merged = engine.state().partition(&id).await.unwrap().unwrap();
    assert_eq!(merged.state, SliceState::Complete, "a merge keeps a complete month complete");
    assert_eq!(
        (merged.window_begin_ms, merged.window_end_ms, merged.api_total),
        (begin, end, backfilled.api_total)
    );
    let again = engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-01"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!(again.skipped, [month("2025-01")]);
    let verify = cecsync::engine::report::verify(&engine).await.unwrap();
    assert!(verify.findings.is_empty(), "{:?}", verify.findings);
    let truth = h.truth([month("2025-01")]);
    assert_eq!(truth.len(), 810);
    let lake = lake_rows(&h.lake_view().await, "rbt_recognition");
    let mutated_in_window = touched
        .iter()
        .filter(|id| truth[id]["beginTime"].as_i64().unwrap() >= begin + 10 * 86_400_000)
        .count();
    assert!(mutated_in_window > 0, "some changes fall in the re-read window");
    let lake: BTreeMap<i64, _> =
        lake.into_iter().map(|(_, r)| (r["rbtRecognitionId"].as_i64().unwrap(), r)).collect();
    assert_eq!(lake.len(), lake.keys().count());
    for (id, want) in &truth {
        if want["beginTime"].as_i64().unwrap() < begin + 10 * 86_400_000 {
            continue;
        }
        let got = &lake[id];
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(
                got.get(field).unwrap_or(&serde_json::Value::Null),
                value,
                "id {id} {field}"
            );
        }
    }
}
on_every_store!(sync_merges_changes_by_key);
