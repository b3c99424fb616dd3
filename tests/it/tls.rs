//! HTTPS sources: the system roots by default, a custom CA bundle, and the loudly logged
//! `insecure_skip_verify`, against the simulator served over HTTPS on loopback with a
//! certificate from a CA made for the test.

use std::sync::Arc;

use cecsync::engine::progress::LogProgress;
use cecsync::engine::EngineError;
use cecsync::sim::{serve_tls, SimOptions, Simulator};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::common::{assert_lake_equals, month, Harness};

/// A CA made for the test, and a server certificate it signed for 127.0.0.1.
pub(crate) struct TestPki {
    pub(crate) ca_pem: String,
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
}

pub(crate) fn test_pki() -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "cecsync test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    TestPki { ca_pem: ca.pem(), chain_pem: leaf.pem(), key_pem: key.serialize_pem() }
}

/// The simulator over HTTPS with a certificate of `pki`, and a lake folder.
async fn https_harness(pki: &TestPki) -> Harness {
    let opts = SimOptions {
        first_month: month("2025-01"),
        last_month: month("2025-01"),
        records_per_month: 1500,
        ..SimOptions::default()
    };
    let sim = Arc::new(Simulator::new(opts.clone()));
    let listen = "127.0.0.1:0".parse().unwrap();
    let running = serve_tls(sim.clone(), listen, pki.chain_pem.as_bytes(), pki.key_pem.as_bytes())
        .await
        .unwrap();
    assert!(running.base_url.starts_with("https://"), "{}", running.base_url);
    Harness::around(sim, running, opts)
}

/// Writes the configuration with `source_keys` added to the source table.
fn write_config(h: &Harness, source_keys: &str) -> std::path::PathBuf {
    let text = h
        .config_text("")
        .replace("timezone = \"+08:00\"\n", &format!("timezone = \"+08:00\"\n{source_keys}\n"));
    let path = h.dir.path().join("cecsync.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn engine(config: &std::path::Path) -> cecsync::engine::Engine {
    cecsync::engine::Engine::open(cecsync::config::Settings::load(config).unwrap()).unwrap()
}

/// With the CA in `ca_bundle` (on top of the system roots) a backfill over HTTPS writes
/// every record of the month.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_bundle_lets_the_backfill_through() {
    let pki = test_pki();
    let h = https_harness(&pki).await;
    let bundle = h.dir.path().join("ca.pem");
    std::fs::write(&bundle, &pki.ca_pem).unwrap();
    let config = write_config(&h, &format!("ca_bundle = \"{}\"", bundle.display()));
    let report = engine(&config)
        .backfill("rbt_recognition", month("2025-01"), month("2025-01"), false, &LogProgress)
        .await
        .unwrap();
    assert_eq!(report.rows(), 1500);
    assert_lake_equals(&h.lake(), &h.truth([month("2025-01")]));
}

/// With the system roots only, a certificate from an unknown CA fails the backfill at the
/// first attempt with a message that says the certificate was refused and how to fix it,
/// without the token; the lake is left without data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ca_fails_at_once_with_a_certificate_error() {
    let pki = test_pki();
    let h = https_harness(&pki).await;
    let config = write_config(&h, "");
    let err = engine(&config)
        .backfill("rbt_recognition", month("2025-01"), month("2025-01"), false, &LogProgress)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, EngineError::Source { .. } | EngineError::SlicesFailed { .. }),
        "{err:?}"
    );
    assert!(text.contains("certificate was refused") && text.contains("ca_bundle"), "{text}");
    assert!(text.contains("UnknownIssuer"), "the TLS cause is named: {text}");
    assert!(text.contains("after 1 attempt(s)"), "a refused certificate is not retried: {text}");
    assert!(!text.contains(&h.opts.auth_token), "{text}");
    assert_eq!(h.sim.stats().requests, 0, "no request got through the handshake");
    assert!(crate::common::parquet_files(&h.lake()).is_empty());
}

/// `insecure_skip_verify` accepts the unknown CA, and the run logs a warning that
/// verification is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_works_and_warns() {
    let pki = test_pki();
    let h = https_harness(&pki).await;
    let config = write_config(&h, "insecure_skip_verify = true");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cecsync"))
            .args(["backfill", "--pipeline", "rbt_recognition", "--from", "2025-01"])
            .args(["--to", "2025-01", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("WARN") && l.contains("insecure_skip_verify"))
        .unwrap_or_else(|| panic!("no warning in the log: {stderr}"));
    assert!(warning.contains("oifde"), "the warning names the source: {warning}");
    assert_lake_equals(&h.lake(), &h.truth([month("2025-01")]));
}
