//! Errors of an S3-compatible destination, against the real test server started by
//! `scripts/test.sh`. The sync itself runs on the server in `core_sync` and `crash`.

use cecsync::sim::SimOptions;

use crate::common::{s3_endpoint, Harness};

/// A missing bucket is a clear error that names the bucket and the endpoint, never the
/// secret key, and nothing is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_clear_error() {
    let Some(endpoint) = s3_endpoint() else { return };
    let h = Harness::start(SimOptions::default()).await;
    let text = h.config_text("").replace(
        &h.destination_text(),
        &format!(
            "[destination]\nurl = \"s3://no-such-bucket-cecsync/x\"\nendpoint = \"{endpoint}\"\n\
             region = \"us-east-1\"\nallow_http = true\n"
        ),
    );
    let config = h.dir.path().join("s3.toml");
    std::fs::write(&config, text).unwrap();
    let engine =
        cecsync::engine::Engine::open(cecsync::config::Settings::load(&config).unwrap()).unwrap();
    let err = engine.check_destination().await.unwrap_err().to_string();
    assert!(err.contains("no-such-bucket-cecsync"), "{err}");
    assert!(err.contains(&endpoint), "the endpoint is named: {err}");
    if let Ok(secret) = std::env::var("AWS_SECRET_ACCESS_KEY") {
        assert!(!err.contains(&secret), "the secret key never appears: {err}");
    }
    assert_eq!(h.sim.stats().requests, 0, "nothing was fetched");
}
