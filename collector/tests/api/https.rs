//! HTTPS: the API over TLS with a certificate from a test CA, its expiry exported, a reload that
//! swaps it for new handshakes and a broken one that keeps it, and handshakes that never finish.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use vantage_collector::{App, Config};

use crate::support::{Collector, TestCa, measurement, probe_key, raw, sample, served_certificate};

#[tokio::test]
async fn ingest_query_and_metrics_work_over_https_with_the_operators_certificate() {
    let ca = TestCa::new();
    let collector = Collector::start_tls_with(&ca, |_, _| {}).await;
    assert!(collector.base.starts_with("https://127.0.0.1:"), "{}", collector.base);

    let m = measurement();
    let report = collector.ingest_signed(&probe_key(1), std::slice::from_ref(&m)).await;
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(collector.query("").await, vec![m]);

    let text = collector.metrics().await;
    let expiry = sample(&text, "vantage_collector_tls_cert_expiry_timestamp_seconds", &[]).expect("expiry exported");
    // rcgen's default not-after: 4096-01-01.
    assert_eq!(expiry, 67_090_118_400.0);

    // Plain HTTP to the HTTPS port is no TLS handshake: refused and counted.
    let plain = crate::support::http_client().get(collector.url("/healthz").replacen("https", "http", 1)).send().await;
    assert!(plain.is_err(), "{plain:?}");
    let text = collector.metrics().await;
    assert_eq!(sample(&text, "vantage_collector_connections_refused_total", &[("reason", "tls_handshake_failed")]), Some(1.0));
}

#[tokio::test]
async fn a_plain_http_collector_exports_no_certificate_expiry() {
    let collector = Collector::start().await;
    assert!(collector.base.starts_with("http://"));
    let text = collector.metrics().await;
    assert_eq!(sample(&text, "vantage_collector_tls_cert_expiry_timestamp_seconds", &[]), None);
}

/// What the operator's SIGHUP does, called directly: new handshakes get a renewed certificate;
/// files that do not load keep the old one in service.
#[tokio::test]
async fn a_reload_serves_the_renewed_certificate_and_a_broken_one_keeps_the_old() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = ca.write_pair(dir.path(), "server");
    let mut config = Config::new("127.0.0.1:0".parse().expect("addr"), dir.path().join("data"));
    config.tls_cert = Some(cert.clone());
    config.tls_key = Some(key.clone());
    let app = App::bind(config).await.expect("builds");
    let slot = app.certificate().expect("serving TLS");
    let collector = Collector::serve_with_client(app, dir, ca.client());
    // A fresh client per look: a pooled connection would show the certificate of its handshake.
    let served = || async {
        let response = ca.client().get(collector.url("/healthz")).send().await.expect("GET over TLS");
        served_certificate(&response)
    };
    let before = served().await;

    let (renewed_cert, renewed_key) = ca.issue();
    std::fs::write(&cert, &renewed_cert).expect("write");
    std::fs::write(&key, &renewed_key).expect("write");
    slot.reload().expect("the renewed pair loads");
    let after = served().await;
    assert_ne!(after, before, "new handshakes get the renewed certificate");

    std::fs::write(&cert, "half-written").expect("write");
    assert!(slot.reload().is_err());
    assert_eq!(served().await, after, "a broken file keeps the certificate in service");
    let (_, other_key) = ca.issue();
    std::fs::write(&cert, &renewed_cert).expect("write");
    std::fs::write(&key, other_key).expect("write");
    assert!(slot.reload().is_err(), "a key that does not match");
    assert_eq!(served().await, after);
}

#[tokio::test]
async fn unreadable_or_mismatched_files_are_a_configuration_error_at_start() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = ca.write_pair(dir.path(), "server");
    let (_, other_key) = ca.write_pair(dir.path(), "other");
    let build = |cert: Option<&std::path::Path>, key: Option<&std::path::Path>| {
        let mut config = Config::new("127.0.0.1:0".parse().expect("addr"), dir.path().join("data"));
        config.tls_cert = cert.map(Into::into);
        config.tls_key = key.map(Into::into);
        App::bind(config)
    };
    let missing = dir.path().join("missing.crt");
    for (cert, key, what) in [
        (Some(cert.as_path()), Some(other_key.as_path()), "mismatched key"),
        (Some(missing.as_path()), Some(key.as_path()), "missing certificate"),
        (Some(key.as_path()), Some(key.as_path()), "a key as the certificate"),
        (Some(cert.as_path()), None, "no key"),
    ] {
        let err = build(cert, key).await.expect_err(what);
        assert!(err.is_config(), "{what}: {err}");
    }
}

/// A client that opens a TLS connection and never finishes the handshake is dropped after the
/// handshake timeout, and counted.
#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_dropped() {
    let ca = TestCa::new();
    let collector =
        Collector::start_tls_with(&ca, |config, _| config.connections.tls_handshake_timeout = Duration::from_secs(1)).await;
    // The first bytes of a TLS record header announcing a ClientHello, and nothing more.
    let mut stream = raw::connect(collector.addr(), &[0x16, 0x03, 0x01, 0x02]).await;
    assert!(raw::until_closed(&mut stream).await.is_empty());
    let _ = stream.shutdown().await;
    let text = collector.metrics().await;
    assert_eq!(sample(&text, "vantage_collector_connections_refused_total", &[("reason", "tls_handshake_timeout")]), Some(1.0));
}
