//! Keys that cost something and earn trust, through the real HTTP API with the default
//! thresholds: a key proves work to register, then counts only after reporting for days, which
//! the tests pass by moving the collector's clock, never by lowering a threshold. Anonymous
//! measurements and those from elsewhere than they claim are stored and counted only as
//! uncounted.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use vantage_collector::clock::{Clock, ManualClock};
use vantage_collector::trust::{DEFAULT_MIN_DAYS, DEFAULT_MIN_MEASUREMENTS};
use vantage_measurement::Measurement;
use vantage_measurement::wire::ProbeKey;
use vantage_measurement::wire::registration::{
    self, CHALLENGE_PATH, DEFAULT_DIFFICULTY_BITS, REGISTER_PATH, RegistrationChallenge, RegistrationRequest,
};

use crate::location::write_databases;
use crate::support::{Collector, measurement_of, newcomer_key, probe_key, sample, series};

/// The collector's challenge.
async fn challenge(collector: &Collector) -> RegistrationChallenge {
    let response = collector.http.get(collector.url(CHALLENGE_PATH)).send().await.expect("GET challenge");
    assert_eq!(response.status(), 200);
    response.json().await.expect("a challenge")
}

/// POST a registration body; the status and the JSON answer.
async fn post_registration(collector: &Collector, body: Vec<u8>) -> (u16, Value) {
    let response = collector
        .http
        .post(collector.url(REGISTER_PATH))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST registration");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Solve the collector's challenge for `key` (the default work) and register.
async fn register(collector: &Collector, key: &ProbeKey) -> (u16, Value) {
    let challenge = challenge(collector).await;
    let request = solved(key, &challenge);
    post_registration(collector, serde_json::to_vec(&request).expect("json")).await
}

fn solved(key: &ProbeKey, challenge: &RegistrationChallenge) -> RegistrationRequest {
    let nonce = registration::solve(key, challenge).expect("solvable");
    registration::request(key, challenge, nonce).expect("request")
}

/// `n` measurements started at the clock's now (validation judges them by that clock).
fn batch_at(now: DateTime<Utc>, n: usize) -> Vec<Measurement> {
    (0..n)
        .map(|_| {
            let mut m = measurement_of("DE", 3320, "wikipedia", true);
            m.started_at = DateTime::from_timestamp(now.timestamp(), 0).expect("time");
            m
        })
        .collect()
}

/// Everything one probe's measurements could move, from one scrape and one page.
#[derive(Debug, PartialEq)]
struct Figures {
    measurements: f64,
    by_asn: f64,
    probes_active: Option<f64>,
    blocked_probes: Option<f64>,
    fleet_size: u64,
}

async fn figures(collector: &Collector) -> Figures {
    let text = collector.next_fleet_refresh().await;
    let page = collector.http.get(collector.url("/")).send().await.expect("GET /").text().await.expect("page");
    let fleet_size = page
        .split_once("id=\"fleet-size\">")
        .and_then(|(_, rest)| rest.split_once('<'))
        .and_then(|(n, _)| n.parse().ok())
        .expect("the page shows the fleet size");
    Figures {
        measurements: series(&text, "vantage_measurements_total").iter().map(|(_, v)| v).sum(),
        by_asn: series(&text, "vantage_measurements_by_asn_total").iter().map(|(_, v)| v).sum(),
        probes_active: sample(&text, "vantage_probes_active", &[("country", "DE")]),
        blocked_probes: sample(&text, "vantage_target_probes", &[("country", "DE"), ("verdict", "blocked")]),
        fleet_size,
    }
}

const NOTHING: Figures = Figures { measurements: 0.0, by_asn: 0.0, probes_active: None, blocked_probes: None, fleet_size: 0 };

fn uncounted(text: &str, reason: &str) -> Option<f64> {
    sample(text, "vantage_collector_measurements_uncounted_total", &[("reason", reason)])
}

#[tokio::test]
async fn a_new_key_counts_only_after_reporting_enough_for_long_enough() {
    // Whole seconds, so measurement times and arrival times compare exactly.
    let start = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");
    let clock = Arc::new(ManualClock::at(start));
    let collector = Collector::start_at(Arc::clone(&clock), |_, _| {}).await;
    let key = newcomer_key(1);

    // Unregistered: stored, counted nowhere, and the probe is told to register.
    let report = collector.ingest_signed(&key, &batch_at(clock.now(), 10)).await;
    assert_eq!((report["accepted"].as_u64(), report["key"].as_str()), (Some(10), Some("unregistered")));
    assert_eq!(challenge(&collector).await.difficulty_bits, DEFAULT_DIFFICULTY_BITS);
    let (status, answer) = register(&collector, &key).await;
    assert_eq!((status, answer["outcome"].as_str()), (201, Some("registered")), "{answer}");
    assert_eq!(figures(&collector).await, NOTHING);

    // A week of reports, 10 a day: each day it is registered, but still earning trust.
    let per_day = 10;
    for day in 1..i64::from(DEFAULT_MIN_DAYS) {
        clock.set(start + Duration::days(day));
        let report = collector.ingest_signed(&key, &batch_at(clock.now(), per_day)).await;
        assert_eq!(report["key"], "untrusted", "day {day}: {report}");
    }
    assert_eq!(figures(&collector).await, NOTHING, "7 days, 70 measurements: not yet");

    // Day 7: old enough and on enough days, but 80 measurements are fewer than 100.
    clock.set(start + Duration::days(i64::from(DEFAULT_MIN_DAYS)));
    let report = collector.ingest_signed(&key, &batch_at(clock.now(), per_day)).await;
    assert_eq!(report["key"], "untrusted", "{report}");
    let text = collector.metrics().await;
    assert_eq!(uncounted(&text, "untrusted_key"), Some(80.0));
    assert_eq!(sample(&text, "vantage_collector_keys_active", &[("standing", "untrusted")]), Some(1.0), "waiting, visibly");
    assert_eq!(figures(&collector).await, NOTHING);

    // The batch that reaches 100 counts, and from then on the key is a probe like any other.
    let reaching = usize::try_from(DEFAULT_MIN_MEASUREMENTS).expect("small") - 80;
    let report = collector.ingest_signed(&key, &batch_at(clock.now(), reaching)).await;
    assert_eq!(report["key"], "trusted", "{report}");
    let counted = figures(&collector).await;
    assert_eq!(
        counted,
        Figures {
            measurements: reaching as f64,
            by_asn: reaching as f64,
            probes_active: Some(1.0),
            blocked_probes: Some(1.0),
            fleet_size: 1
        }
    );
    let text = collector.metrics().await;
    assert_eq!(uncounted(&text, "untrusted_key"), Some(80.0), "what came before stays uncounted");
    assert_eq!(sample(&text, "vantage_collector_keys_active", &[("standing", "trusted")]), Some(1.0));
    assert_eq!(collector.query("").await.len(), 100, "everything was stored all along");
}

#[tokio::test]
async fn history_without_registration_earns_nothing_until_the_key_registers() {
    let start = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");
    let clock = Arc::new(ManualClock::at(start));
    let collector = Collector::start_at(Arc::clone(&clock), |_, _| {}).await;
    let key = newcomer_key(2);
    for day in 0..=i64::from(DEFAULT_MIN_DAYS) {
        clock.set(start + Duration::days(day));
        let report = collector.ingest_signed(&key, &batch_at(clock.now(), 15)).await;
        assert_eq!(report["key"], "unregistered", "day {day}");
    }
    assert_eq!(figures(&collector).await, NOTHING, "eight days and 120 measurements, but no work proved");
    // The probe registers late: the record it built counts from its next batch.
    assert_eq!(register(&collector, &key).await.0, 201);
    let report = collector.ingest_signed(&key, &batch_at(clock.now(), 1)).await;
    assert_eq!(report["key"], "trusted");
    assert_eq!(figures(&collector).await.measurements, 1.0);
}

#[tokio::test]
async fn an_anonymous_batch_moves_nothing_but_the_uncounted_counter() {
    let collector = Collector::start().await;
    let report = collector.ingest(&batch_at(Utc::now(), 3)).await;
    assert_eq!(report["accepted"], 3);
    assert!(report.get("key").is_none(), "no key, no standing: {report}");
    assert_eq!(figures(&collector).await, NOTHING);
    let text = collector.metrics().await;
    assert_eq!(uncounted(&text, "anonymous"), Some(3.0));
    assert_eq!(uncounted(&text, "untrusted_key"), Some(0.0));
    assert!(series(&text, "vantage_phase_duration_seconds_count").is_empty(), "{text}");
    let mismatch: f64 = series(&text, "vantage_probe_location_mismatch_total").iter().map(|(_, v)| v).sum();
    assert_eq!(mismatch, 0.0);
    // The collector's own work is still visible: it stored three measurements.
    assert_eq!(sample(&text, "vantage_collector_ingested_total", &[]), Some(3.0));
    assert_eq!(collector.query("").await.len(), 3);
}

#[tokio::test]
async fn a_batch_from_elsewhere_than_it_claims_is_stored_but_not_counted() {
    let scratch = tempfile::tempdir().expect("tempdir");
    // The databases place this loopback client in DE / AS64500.
    let (country, asn) = write_databases(scratch.path());
    let collector = Collector::start_with(|config, _| {
        config.geoip_country = Some(country.clone());
        config.geoip_asn = Some(asn.clone());
    })
    .await;
    let anchor = probe_key(1);
    let claims = |cc: &str, asn| vec![measurement_of(cc, asn, "wikipedia", true), measurement_of(cc, asn, "signal", true)];
    let report = collector.ingest_signed(&anchor, &claims("DE", 3320)).await;
    assert_eq!((report["accepted"].as_u64(), report["key"].as_str()), (Some(2), Some("trusted")));
    // Another country, claiming no ASN (0, "unknown"): the country alone contradicts it.
    collector.ingest_signed(&anchor, &claims("FR", 0)).await;
    assert_eq!(figures(&collector).await, NOTHING, "even a trusted key's contradicted claim does not count");
    let text = collector.metrics().await;
    assert_eq!(uncounted(&text, "asn_mismatch"), Some(2.0));
    assert_eq!(uncounted(&text, "country_mismatch"), Some(2.0));
    assert!(series(&text, "vantage_probes_active").is_empty(), "not in FR either\n{text}");
    assert_eq!(sample(&text, "vantage_probe_location_mismatch_total", &[("kind", "asn")]), Some(2.0), "and is a mismatch");
    let stored = collector.http.get(collector.url("/api/v1/measurements")).send().await.expect("GET").text().await.expect("rows");
    assert_eq!(stored.lines().count(), 4, "stored for researchers");

    // Claiming where it is, it counts; claiming no ASN (0) in the right country contradicts nothing.
    collector.ingest_signed(&anchor, &claims("DE", 64500)).await;
    collector.ingest_signed(&anchor, &claims("DE", 0)).await;
    let counted = figures(&collector).await;
    assert_eq!((counted.measurements, counted.probes_active, counted.fleet_size), (4.0, Some(1.0), 1));
    let text = collector.metrics().await;
    assert_eq!((uncounted(&text, "asn_mismatch"), uncounted(&text, "country_mismatch")), (Some(2.0), Some(2.0)));
}

#[tokio::test]
async fn an_operators_anchor_counts_at_once_without_registering() {
    let collector = Collector::start().await;
    let report = collector.ingest_signed(&probe_key(2), &batch_at(Utc::now(), 2)).await;
    assert_eq!(report["key"], "trusted");
    let counted = figures(&collector).await;
    assert_eq!((counted.measurements, counted.probes_active, counted.fleet_size), (2.0, Some(1.0), 1));
}

#[tokio::test]
async fn registration_refuses_what_proves_nothing_and_registers_once() {
    let collector = Collector::start().await;
    let key = newcomer_key(3);
    let ours = challenge(&collector).await;
    assert_eq!(ours, challenge(&collector).await, "one challenge per installation");

    let refused = |body: Vec<u8>| post_registration(&collector, body);
    let (status, answer) = refused(b"{\"public_key\": 1}".to_vec()).await;
    assert_eq!((status, answer["reason"].as_str()), (400, Some("malformed")), "{answer}");
    let (status, answer) = refused(br#"{"public_key": "***", "nonce": 1, "signature": "AA=="}"#.to_vec()).await;
    assert_eq!((status, answer["reason"].as_str()), (400, Some("malformed")), "{answer}");

    // A little work for another collector's salt (the unit tests try a full proof for the wrong
    // salt; one full proof per test keeps a debug build quick).
    let elsewhere = RegistrationChallenge { salt: RegistrationChallenge::random_salt(), difficulty_bits: 8 };
    let (status, answer) = refused(serde_json::to_vec(&solved(&key, &elsewhere)).expect("json")).await;
    assert_eq!((status, answer["reason"].as_str()), (422, Some("insufficient_work")), "{answer}");
    // The real work, taken by another key: its own hash lacks the zeros (but for a 2^-25 chance).
    let proof = solved(&key, &ours);
    let thief = registration::request(&newcomer_key(4), &ours, proof.nonce).expect("request");
    let (status, answer) = refused(serde_json::to_vec(&thief).expect("json")).await;
    assert_eq!((status, answer["reason"].as_str()), (422, Some("insufficient_work")), "{answer}");
    // The real work with someone else's signature: the sender does not hold the key.
    let mut forged = proof.clone();
    forged.signature = thief.signature;
    let (status, answer) = refused(serde_json::to_vec(&forged).expect("json")).await;
    assert_eq!((status, answer["reason"].as_str()), (422, Some("bad_signature")), "{answer}");
    // Oversized bodies are cut.
    let (status, _) = refused(vec![b' '; 4096]).await;
    assert_eq!(status, 413);

    let report = collector.ingest_signed(&key, &batch_at(Utc::now(), 1)).await;
    assert_eq!(report["key"], "unregistered", "none of that registered anything");
    let good = serde_json::to_vec(&proof).expect("json");
    assert_eq!(refused(good.clone()).await.0, 201);
    let (status, answer) = refused(good).await;
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("already_registered")));
    let report = collector.ingest_signed(&key, &batch_at(Utc::now(), 1)).await;
    assert_eq!(report["key"], "untrusted");

    let text = collector.metrics().await;
    let outcome = |o| sample(&text, "vantage_collector_key_registrations_total", &[("outcome", o)]);
    assert_eq!(
        [
            outcome("malformed"),
            outcome("insufficient_work"),
            outcome("bad_signature"),
            outcome("registered"),
            outcome("already_registered")
        ],
        [Some(2.0), Some(2.0), Some(1.0), Some(1.0), Some(1.0)]
    );
}
