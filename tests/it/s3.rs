//! The same sync against a real S3-compatible server (started by `scripts/test.sh`),
//! through the same code path as the local lake.

use std::sync::Arc;

use cecsync::engine::progress::LogProgress;
use cecsync::sim::SimOptions;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::common::{assert_lake_equals, month, Harness};

/// The endpoint of the test server, or `None` (then the test is skipped, unless
/// `CECSYNC_REQUIRE_S3` says the server must be there).
fn endpoint() -> Option<String> {
    match std::env::var("CECSYNC_TEST_S3_ENDPOINT") {
        Ok(e) => Some(e),
        Err(_) if std::env::var("CECSYNC_REQUIRE_S3").is_ok() => {
            panic!("CECSYNC_REQUIRE_S3 is set but CECSYNC_TEST_S3_ENDPOINT is not")
        }
        Err(_) => {
            eprintln!("skipped: no S3-compatible server; run scripts/test.sh");
            None
        }
    }
}

/// A backfill to `s3://bucket/prefix` writes the same partitions as to a folder; they
/// read back equal to the API's data, a re-run fetches nothing, and verify passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_to_an_s3_compatible_store() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = format!("cecsync-it-{}", std::process::id());
    let created = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.unwrap();
    assert!(created.status().is_success(), "create bucket: {}", created.status());

    let opts = SimOptions {
        first_month: month("2025-01"),
        last_month: month("2025-02"),
        records_per_month: 1500,
        ..SimOptions::default()
    };
    let h = Harness::start(opts).await;
    let text = h.config_text("").replace(
        &format!("url = \"file://{}\"", h.lake().display()),
        &format!("url = \"s3://{bucket}/warehouse/cec\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nallow_http = true"),
    );
    let config = h.dir.path().join("s3.toml");
    std::fs::write(&config, text).unwrap();
    let engine =
        cecsync::engine::Engine::open(cecsync::config::Settings::load(&config).unwrap()).unwrap();
    let report = engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-02"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!(report.rows(), 3000);
    let again = engine
        .backfill("rbt_recognition", month("2025-01"), month("2025-02"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!(again.skipped.len(), 2, "checkpoints in S3 are read back");
    let verify = cecsync::engine::report::verify(&engine).await.unwrap();
    assert!(verify.findings.is_empty(), "{:?}", verify.findings);

    // Read the bucket with an independent client and mirror it into a folder.
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_endpoint(&endpoint)
            .with_bucket_name(&bucket)
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    let objects: Vec<_> = store.list(Some(&"warehouse/cec".into())).try_collect().await.unwrap();
    assert!(objects
        .iter()
        .any(|o| o.location.as_ref().ends_with("month=2025-02/part-00000.parquet")));
    for o in &objects {
        let rel = o.location.as_ref().strip_prefix("warehouse/cec/").unwrap();
        let local = h.lake().join(rel);
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(local, store.get(&o.location).await.unwrap().bytes().await.unwrap())
            .unwrap();
    }
    assert_lake_equals(&h.lake(), &h.truth([month("2025-01"), month("2025-02")]));
}

/// A missing bucket is a clear error that names it, and nothing is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_clear_error() {
    let Some(endpoint) = endpoint() else { return };
    let h = Harness::start(SimOptions::default()).await;
    let text = h.config_text("").replace(
        &format!("url = \"file://{}\"", h.lake().display()),
        &format!("url = \"s3://no-such-bucket-cecsync/x\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nallow_http = true"),
    );
    let config = h.dir.path().join("s3.toml");
    std::fs::write(&config, text).unwrap();
    let engine =
        cecsync::engine::Engine::open(cecsync::config::Settings::load(&config).unwrap()).unwrap();
    let err = engine.check_destination().await.unwrap_err().to_string();
    assert!(err.contains("no-such-bucket-cecsync"), "{err}");
    assert!(!err.contains("cecsync-test-secret"), "the secret key never appears: {err}");
}
