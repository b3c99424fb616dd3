//! Reliability against a misbehaving server: a backfill under a heavy mix of injected
//! faults, retries that run out, and C3 tokens that expire or are refused.

use std::time::{Duration, Instant};

use cecsync::engine::progress::LogProgress;
use cecsync::sim::{FaultOptions, SimOptions};

use crate::common::{
    assert_lake_equals, engine_for, lake_rows, month, on_every_store, source_config, Harness,
    StoreKind,
};

fn opts(first: &str, last: &str, per_month: u64, faults: FaultOptions) -> SimOptions {
    SimOptions {
        first_month: month(first),
        last_month: month(last),
        records_per_month: per_month,
        faults,
        ..SimOptions::default()
    }
}

fn count(n: &std::sync::atomic::AtomicU64) -> u64 {
    n.load(std::sync::atomic::Ordering::Relaxed)
}

/// Six months backfilled while a third of the requests fail (5xx, 429 with Retry-After,
/// truncated bodies, resets, answers slower than the 600 ms timeout) end with the lake
/// equal to the simulator's data row by row; faults were injected and retried.
async fn a_backfill_under_heavy_faults_ends_with_the_exact_truth(kind: StoreKind) {
    let faults = FaultOptions {
        error_rate: 0.12,
        throttle_rate: 0.1,
        truncate_rate: 0.08,
        delay_rate: 0.08,
        delay: Duration::from_secs(2),
        reset_rate: 0.08,
    };
    let Some(h) = Harness::start_on(kind, opts("2025-01", "2025-06", 3500, faults)).await else {
        return;
    };
    let text = source_config(
        &h,
        None,
        "timeout_ms = 600\nrequests_per_second = 100",
        "max_attempts = 12\nmax_elapsed_secs = 60\nmax_backoff_ms = 200",
        "[pipelines.rbt_recognition]\npage_concurrency = 3\n",
    );
    let engine = engine_for(&h, &text);
    let report = engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-06"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!(report.rows(), 6 * 3500);
    assert_lake_equals(&h.lake_view().await, &h.truth(month("2025-01").through(month("2025-06"))));

    let sim = h.sim.stats();
    let f = sim.faults;
    let injected = f.errors + f.throttles + f.truncations + f.delays + f.resets;
    let client = engine.client("oifde").unwrap().stats();
    let (requests, retries) = (count(&client.requests), count(&client.retries));
    println!(
        "faults injected: {injected} ({} errors, {} throttles, {} truncations, {} delays, {} \
         resets) over {} requests; client: {requests} requests, {retries} retries, {} 429s",
        f.errors,
        f.throttles,
        f.truncations,
        f.delays,
        f.resets,
        sim.requests,
        count(&client.throttled)
    );
    assert!(injected > 0, "faults were injected");
    // The fates are drawn from the simulator's seed, so the mix is the same on every run.
    assert!(
        [f.errors, f.throttles, f.truncations, f.delays, f.resets].iter().all(|n| *n > 0),
        "every kind of fault was injected"
    );
    assert!(retries > 0, "the client retried");
    let pages = h.rbt_pages(month("2025-01").through(month("2025-06")));
    assert_eq!(requests, pages + retries, "every failed attempt was retried, no page twice");
}

on_every_store!(a_backfill_under_heavy_faults_ends_with_the_exact_truth);

/// When the retries run out, the backfill fails with the attempts and the status, and the
/// month it was replacing keeps its checkpoint and its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_fail_the_slice_and_keep_its_checkpoint() {
    let good = Harness::start(opts("2025-01", "2025-02", 1500, FaultOptions::default())).await;
    let text = good.config_text("max_attempts = 3\n");
    let engine = engine_for(&good, &text);
    engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-02"), false, &LogProgress)
        .await
        .unwrap();
    let ids =
        [month("2025-01"), month("2025-02")].map(|m| engine.partition_id("rbt_recognition", m));
    let mut before = Vec::new();
    for id in &ids {
        before.push(engine.state().partition(id).await.unwrap().expect("a checkpoint"));
    }
    let rows = lake_rows(&good.lake(), "rbt_recognition");

    let failing = FaultOptions { error_rate: 1.0, ..FaultOptions::default() };
    let bad = Harness::start(opts("2025-01", "2025-02", 1500, failing)).await;
    let engine = engine_for(&good, &text.replace(&good.running.base_url, &bad.running.base_url));
    let err = engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-02"), true, &LogProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 of 2 slice(s) failed"), "{err}");
    assert!(err.contains("after 3 attempt(s)") && err.contains("HTTP 50"), "{err}");
    assert_eq!(bad.sim.stats().requests, 6, "three attempts at the first page of each month");
    for (id, was) in ids.iter().zip(&before) {
        assert_eq!(engine.state().partition(id).await.unwrap().as_ref(), Some(was));
    }
    assert_eq!(lake_rows(&good.lake(), "rbt_recognition"), rows, "the lake is untouched");
}

/// A backfill that outlives its 1 s tokens completes: the token is renewed about once per
/// lifetime, however many pages are in flight, not once per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_renewed_during_a_backfill() {
    let slow = FaultOptions {
        delay_rate: 1.0,
        delay: Duration::from_millis(150),
        ..FaultOptions::default()
    };
    let mut options = opts("2025-01", "2025-04", 4000, slow);
    options.token_ttl = Duration::from_secs(1);
    let h = Harness::start(options).await;
    let login = Some((h.opts.app_key.as_str(), h.opts.app_secret.as_str()));
    let text = source_config(
        &h,
        login,
        "",
        "",
        "[pipelines.rbt_recognition]\npage_concurrency = 4\nslice_concurrency = 1\n",
    );
    let engine = engine_for(&h, &text);
    let started = Instant::now();
    engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-04"), false, &LogProgress)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_lake_equals(&h.lake(), &h.truth(month("2025-01").through(month("2025-04"))));

    let stats = h.sim.stats();
    let queries = stats.requests - stats.tokens_issued;
    println!("{} logins for {queries} queries in {elapsed:?}", stats.tokens_issued);
    assert!(elapsed > Duration::from_secs(1), "the run outlives a token");
    assert!(stats.tokens_issued >= 2, "the token was renewed");
    // A token is renewed 0.8 s after it was issued (a fifth of its life early).
    let per_lifetime = (elapsed.as_secs_f64() / 0.8).ceil() as u64 + 1;
    assert!(stats.tokens_issued <= per_lifetime, "{} logins", stats.tokens_issued);
    assert!(stats.tokens_issued * 3 <= queries, "not one login per request");
}

/// A wrong app secret stops the backfill after one refused login per month in flight
/// (`slice_concurrency`, 2 by default), with a message that names the source and the app
/// key but not the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_stops_the_backfill_at_once() {
    let h = Harness::start(opts("2025-01", "2025-03", 100, FaultOptions::default())).await;
    let login = Some((h.opts.app_key.as_str(), "not-the-secret"));
    let engine = engine_for(&h, &source_config(&h, login, "", "", ""));
    let err = engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-03"), false, &LogProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("source 'oifde'"), "{err}");
    assert!(err.contains(&format!("app key '{}'", h.opts.app_key)), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
    let stats = h.sim.stats();
    assert!(stats.requests <= 2, "no retry of refused credentials: {stats:?}");
    assert_eq!((stats.unauthorized, stats.tokens_issued), (stats.requests, 0));
}
