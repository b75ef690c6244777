//! /metrics: the right counters with the right labels, bounded series, and promtool's approval.

use std::io::Write;
use std::process::{Command, Stdio};

use vantage_measurement::{Mechanism, Status, TestKind};

use crate::support::{Collector, label_values, measurement, measurement_of, probe_key, sample, series, with_wikipedia_published};

#[tokio::test]
async fn ingested_measurements_are_counted_with_bounded_labels() {
    let collector = with_wikipedia_published().await;
    let mut published = measurement();
    published.probe.cc = "DE".into();
    published.probe.asn = 3320;
    published.test = TestKind::Tcp;
    published.target.name = "wikipedia".into();
    published.verdict.status = Status::Ok;
    published.verdict.mechanism = None;
    let unpublished = measurement();
    // Signed by an anchor: counted at once.
    collector.ingest_signed(&probe_key(1), &[published.clone(), published, unpublished]).await;

    let text = collector.metrics().await;
    let measurements = |labels: &[(&str, &str)]| sample(&text, "vantage_measurements_total", labels);
    assert_eq!(
        measurements(&[("country", "DE"), ("test", "tcp"), ("target", "wikipedia"), ("verdict", "ok"), ("mechanism", "none")]),
        Some(1.0),
        "the duplicate is not counted\n{text}"
    );
    assert_eq!(
        measurements(&[
            ("country", "ZZ"),
            ("test", "tls"),
            ("target", "other"),
            ("verdict", "blocked"),
            ("mechanism", Mechanism::TlsResetAfterClientHello.as_str()),
        ]),
        Some(1.0),
        "{text}"
    );
    // One probe is fewer than k: its ASN is counted as `other`.
    let by_asn = [("country", "DE"), ("asn", "other"), ("test", "tcp"), ("verdict", "ok")];
    assert_eq!(sample(&text, "vantage_measurements_by_asn_total", &by_asn), Some(1.0));
    assert_eq!(label_values(&text, "asn"), ["other".to_string()].into(), "{text}");
    let phase = [("test", "tls"), ("phase", "tls_handshake")];
    assert_eq!(sample(&text, "vantage_phase_duration_seconds_count", &phase), Some(2.0), "two probe steps");
    assert_eq!(sample(&text, "vantage_collector_ingested_total", &[]), Some(2.0));
    assert_eq!(sample(&text, "vantage_collector_duplicates_total", &[]), Some(1.0));
    assert_eq!(sample(&text, "vantage_collector_stored_measurements", &[]), Some(2.0));
    assert!(sample(&text, "vantage_collector_last_ingest_timestamp_seconds", &[]).is_some_and(|t| t > 1.7e9));
    assert_eq!(sample(&text, "vantage_collector_store_duration_seconds_count", &[("op", "insert")]), Some(1.0));
}

#[tokio::test]
async fn a_flood_of_unpublished_target_names_adds_no_series() {
    let collector = with_wikipedia_published().await;
    let anchor = probe_key(1);
    collector.ingest_signed(&anchor, &[measurement()]).await;
    let before = series(&collector.metrics().await, "vantage_measurements_total").len();

    let flood: Vec<_> = (0..500)
        .map(|i| {
            let mut m = measurement();
            m.target.name = format!("random-{i}-{}", m.id.simple());
            m
        })
        .collect();
    let report = collector.ingest_signed(&anchor, &flood).await;
    assert_eq!(report["accepted"], 500);

    let text = collector.metrics().await;
    assert_eq!(series(&text, "vantage_measurements_total").len(), before, "no new series");
    let targets = label_values(&text, "target");
    assert!(targets.iter().all(|t| !t.starts_with("random-")), "no submitted name becomes a label: {targets:?}");
    let other = [("target", "other"), ("country", "ZZ"), ("test", "tls"), ("verdict", "blocked")];
    assert_eq!(sample(&text, "vantage_measurements_total", &other), Some(501.0));
}

#[tokio::test]
async fn rejections_are_counted_by_reason_from_zero() {
    let collector = Collector::start().await;
    let text = collector.metrics().await;
    let line_codes = vantage_measurement::RejectionCode::ALL.iter().map(|c| c.as_str());
    for reason in line_codes.chain(["body_too_large", "too_many_lines"]) {
        assert_eq!(sample(&text, "vantage_collector_rejected_total", &[("reason", reason)]), Some(0.0), "{reason}");
    }
    let mut bad_country = measurement();
    bad_country.probe.cc = "de".into();
    collector.post_ndjson(format!("nope\nstill nope\n{}\n", bad_country.to_json_line().expect("serialise"))).await;
    collector.post_ndjson("{}\n".repeat(10_001)).await;

    let text = collector.metrics().await;
    let rejected = |reason| sample(&text, "vantage_collector_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected("malformed"), Some(2.0));
    assert_eq!(rejected("invalid_country"), Some(1.0));
    assert_eq!(rejected("too_many_lines"), Some(1.0));
}

#[tokio::test]
async fn metrics_pass_promtool_lint() {
    let collector = Collector::start().await;
    let mut other = measurement();
    other.probe.cc = "DE".into();
    collector.ingest(&[measurement(), other]).await;
    collector.post_ndjson("not json\n").await;
    // Signed batches too, so the fleet gauges and the backlog histogram are linted as well.
    for n in 1..=3 {
        collector.ingest_signed(&probe_key(n), &[measurement_of("DE", 3320, "x", n != 2)]).await;
    }
    collector.next_fleet_refresh().await;
    collector.ingest_signed(&probe_key(1), &[measurement_of("DE", 3320, "x", true)]).await;
    let text = collector.next_fleet_refresh().await;
    assert!(!series(&text, "vantage_target_probes").is_empty(), "{text}");
    assert_eq!(sample(&text, "vantage_measurements_by_asn_total", &[("country", "DE"), ("asn", "3320")]), Some(1.0), "{text}");

    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool is not installed: run tests/install-deps.sh (Debian package `prometheus`)")
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write metrics");
    let output = child.wait_with_output().expect("promtool runs");
    let lint = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool check metrics failed:\n{lint}");
    assert!(lint.trim().is_empty(), "promtool lint findings:\n{lint}");
}
