//! A volunteer's signed deletion request, over loopback: honoured for the signer's data only,
//! refused unsigned, tampered, stale or replayed.

use chrono::{Duration, Utc};
use vantage_measurement::wire::forget::{FORGET_MAX_SKEW_SECS, FORGET_PATH, FORGET_REQUEST, ForgetReport, ForgetRequest};
use vantage_measurement::wire::{KEY_HEADER, ProbeKey, SIGNATURE_HEADER};

use crate::support::{Collector, measurement_of, probe_key, sample};

fn request_body(at: chrono::DateTime<Utc>) -> Vec<u8> {
    serde_json::to_vec(&ForgetRequest { request: FORGET_REQUEST.into(), requested_at: at }).expect("json")
}

/// POST `body` signed by `key` over `signed` (the body itself, unless a test tampers).
async fn post(collector: &Collector, key: Option<&ProbeKey>, signed: &[u8], body: Vec<u8>) -> (u16, serde_json::Value) {
    let mut request = collector.http.post(collector.url(FORGET_PATH)).header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header(KEY_HEADER, key.public_key_base64()).header(SIGNATURE_HEADER, key.sign_base64(signed));
    }
    let response = request.body(body).send().await.expect("POST forget");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

#[tokio::test]
async fn a_signed_request_deletes_the_signers_data_only_and_is_not_honoured_twice() {
    let collector = Collector::start().await;
    let (volunteer, other) = (probe_key(1), probe_key(2));
    let mine = [measurement_of("DE", 3320, "wikipedia", true), measurement_of("DE", 3320, "signal", true)];
    let theirs = measurement_of("DE", 3209, "wikipedia", true);
    collector.ingest_signed(&volunteer, &mine).await;
    collector.ingest_signed(&other, std::slice::from_ref(&theirs)).await;
    let before = collector.next_fleet_refresh().await;
    assert_eq!(sample(&before, "vantage_probes_active", &[("country", "DE")]), Some(2.0));

    // Refused before anything is deleted: unsigned, tampered, stale.
    let now = request_body(Utc::now());
    let (status, answer) = post(&collector, None, &now, now.clone()).await;
    assert_eq!((status, answer["reason"].as_str()), (401, Some("unsigned")));
    let (status, answer) = post(&collector, Some(&volunteer), b"something else", now.clone()).await;
    assert_eq!((status, answer["reason"].as_str()), (401, Some("bad_signature")));
    let old = request_body(Utc::now() - Duration::seconds(FORGET_MAX_SKEW_SECS + 60));
    let (status, answer) = post(&collector, Some(&volunteer), &old, old.clone()).await;
    assert_eq!((status, answer["reason"].as_str()), (403, Some("stale")), "{answer}");
    assert_eq!(collector.query("").await.len(), 3, "nothing deleted yet");

    let (status, answer) = post(&collector, Some(&volunteer), &now, now.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(serde_json::from_value::<ForgetReport>(answer).expect("report"), ForgetReport { deleted: 2 });
    assert_eq!(collector.query("").await, vec![theirs.clone()], "the other key's data survives");

    // The same request again: refused, and it would have nothing to do anyway.
    let (status, answer) = post(&collector, Some(&volunteer), &now, now.clone()).await;
    assert_eq!((status, answer["reason"].as_str()), (403, Some("replayed")));

    // The gauges follow at once (the handler refreshes them).
    let after = collector.metrics().await;
    assert_eq!(sample(&after, "vantage_probes_active", &[("country", "DE")]), Some(1.0));
    assert_eq!(sample(&after, "vantage_collector_stored_measurements", &[]), Some(1.0));
}
