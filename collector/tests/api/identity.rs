//! Signed batches: verified before parsing, refused with 401 when wrong, anonymous when unsigned,
//! and the signer's key id never shown anywhere.

use serde_json::Value;
use vantage_measurement::wire::{KEY_HEADER, SIGNATURE_HEADER};

use crate::support::{Collector, gzip, measurement, ndjson, probe_key, sample};

#[tokio::test]
async fn a_signed_batch_is_stored_and_its_probe_counted() {
    let collector = Collector::start().await;
    let key = probe_key(1); // an anchor: counted at once (newcomers earn it: see `trust`)
    let report = collector.ingest_signed(&key, &[measurement(), measurement()]).await;
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["key"], "trusted");

    let text = collector
        .metrics_when("one active probe", |t| sample(t, "vantage_probes_active", &[("country", "ZZ")]) == Some(1.0))
        .await;
    assert_eq!(sample(&text, "vantage_collector_batches_total", &[("identity", "signed")]), Some(1.0));
    assert_eq!(sample(&text, "vantage_collector_batches_total", &[("identity", "anonymous")]), Some(0.0));

    // The key id is a pseudonym for counting, never an output.
    let id = key.key_id().to_string();
    let api = collector.http.get(collector.url("/api/v1/measurements")).send().await.expect("GET").text().await.expect("body");
    let page = collector.http.get(collector.url("/")).send().await.expect("GET /").text().await.expect("body");
    for (place, output) in [("metrics", &text), ("API", &api), ("status page", &page)] {
        assert!(!output.contains(&id), "{place} shows the key id");
        assert!(!output.contains(&key.public_key_base64()), "{place} shows the public key");
    }
}

#[tokio::test]
async fn a_batch_with_a_bad_signature_is_401_and_stores_nothing() {
    let collector = Collector::start().await;
    let key = probe_key(1);
    let body = gzip(ndjson(&[measurement()]).as_bytes());
    let mut altered = body.clone();
    if let Some(last) = altered.last_mut() {
        *last ^= 1;
    }
    let response = collector
        .http
        .post(collector.url("/api/v1/measurements"))
        .header("content-encoding", "gzip")
        .header(KEY_HEADER, key.public_key_base64())
        .header(SIGNATURE_HEADER, key.sign_base64(&body))
        .body(altered)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Vantage-Signature"));
    let error: Value = response.json().await.expect("error body");
    assert_eq!(error["reason"], "bad_signature");
    assert!(error["error"].as_str().unwrap_or("").contains("does not verify"), "{error}");
    assert!(collector.query("").await.is_empty(), "verified before anything is parsed or stored");

    // Half a signature is no signature.
    let only_key = collector
        .http
        .post(collector.url("/api/v1/measurements"))
        .header(KEY_HEADER, key.public_key_base64())
        .body(ndjson(&[measurement()]))
        .send()
        .await
        .expect("POST");
    assert_eq!(only_key.status(), 401);
    let error: Value = only_key.json().await.expect("error body");
    assert!(error["error"].as_str().unwrap_or("").contains("X-Vantage-Signature"), "{error}");

    let text = collector.metrics().await;
    assert_eq!(sample(&text, "vantage_collector_rejected_total", &[("reason", "bad_signature")]), Some(2.0));
}

#[tokio::test]
async fn an_unsigned_batch_is_accepted_as_anonymous_and_counts_nothing() {
    let collector = Collector::start().await;
    let report = collector.ingest(&[measurement()]).await;
    assert_eq!(report["accepted"], 1);
    let text = collector.next_fleet_refresh().await;
    assert_eq!(sample(&text, "vantage_collector_batches_total", &[("identity", "anonymous")]), Some(1.0));
    assert_eq!(sample(&text, "vantage_collector_ingested_total", &[]), Some(1.0));
    assert_eq!(sample(&text, "vantage_probes_active", &[("country", "ZZ")]), None, "no probe to count");
    let uncounted = [("reason", "anonymous")];
    assert_eq!(sample(&text, "vantage_collector_measurements_uncounted_total", &uncounted), Some(1.0), "nor a measurement");
}

#[tokio::test]
async fn the_spool_backlog_is_a_fleet_histogram_not_a_probe_series() {
    let collector = Collector::start().await;
    for (n, pending) in [(1, 0), (2, 1200), (3, 7)] {
        let response = collector.post_signed(&probe_key(n), &[measurement()], pending).await;
        assert_eq!(response.status(), 200);
    }
    let text = collector.metrics().await;
    assert_eq!(sample(&text, "vantage_probe_spool_pending_count", &[]), Some(3.0));
    assert_eq!(sample(&text, "vantage_probe_spool_pending_sum", &[]), Some(1207.0));
    assert_eq!(sample(&text, "vantage_probe_spool_pending_bucket", &[("le", "0")]), Some(1.0));
    assert_eq!(sample(&text, "vantage_probe_spool_pending_bucket", &[("le", "1000")]), Some(2.0));
    assert_eq!(sample(&text, "vantage_collector_ingest_in_flight", &[]), Some(0.0), "nothing left in flight");
}
