//! Fleet gauges and the series budget, through the real HTTP API: distinct probes and networks
//! per verdict, the ASN rule, and floods that must not grow the exposition.

use std::collections::HashSet;

use chrono::Duration;

use crate::support::{
    Collector, label_values, measurement_of, probe_key, sample, series, series_count, with_wikipedia_published,
};

#[tokio::test]
async fn each_probe_counts_once_with_its_latest_verdict() {
    let collector = with_wikipedia_published().await;
    let blocked = |asn| measurement_of("DE", asn, "wikipedia", true);
    let ok = |asn| measurement_of("DE", asn, "wikipedia", false);
    // Probe 1 measures three times: still one probe.
    collector.ingest_signed(&probe_key(1), &[blocked(3320), blocked(3320), blocked(3320)]).await;
    collector.ingest_signed(&probe_key(2), &[blocked(3209)]).await;
    collector.ingest_signed(&probe_key(3), &[ok(3209)]).await;
    // Probe 4 was blocked a minute ago and is fine now: its latest verdict counts.
    let mut earlier = blocked(3320);
    earlier.started_at -= Duration::seconds(60);
    collector.ingest_signed(&probe_key(4), &[earlier, ok(3320)]).await;

    let text = collector.next_fleet_refresh().await;
    let gauge =
        |name, verdict| sample(&text, name, &[("country", "DE"), ("target", "wikipedia"), ("test", "tls"), ("verdict", verdict)]);
    assert_eq!(gauge("vantage_target_probes", "blocked"), Some(2.0), "{text}");
    assert_eq!(gauge("vantage_target_probes", "ok"), Some(2.0));
    assert_eq!(gauge("vantage_target_asns", "blocked"), Some(2.0), "blocked in 2 of 2 ASNs");
    assert_eq!(gauge("vantage_target_asns", "ok"), Some(2.0));
    let measured = [("country", "DE"), ("target", "wikipedia"), ("test", "tls")];
    assert_eq!(sample(&text, "vantage_target_asns_measured", &measured), Some(2.0), "of 2 ASNs measured");
    assert_eq!(sample(&text, "vantage_probes_active", &[("country", "DE")]), Some(4.0));
    assert_eq!(sample(&text, "vantage_fleet_window_seconds", &[]), Some(3600.0));
}

#[tokio::test]
async fn an_asn_gets_its_label_once_k_probes_reported_it() {
    let collector = Collector::start().await; // k = 3
    for n in 1..=3 {
        collector.ingest_signed(&probe_key(n), &[measurement_of("DE", 3320, "x", true)]).await;
    }
    for n in 4..=5 {
        collector.ingest_signed(&probe_key(n), &[measurement_of("DE", 64_500, "x", true)]).await;
    }
    collector.next_fleet_refresh().await;
    collector.ingest_signed(&probe_key(1), &[measurement_of("DE", 3320, "x", true)]).await;
    collector.ingest_signed(&probe_key(4), &[measurement_of("DE", 64_500, "x", true)]).await;

    let text = collector.metrics().await;
    let by_asn = |asn| sample(&text, "vantage_measurements_by_asn_total", &[("country", "DE"), ("asn", asn)]);
    assert_eq!(by_asn("3320"), Some(1.0), "three probes: a label of its own\n{text}");
    assert_eq!(by_asn("other"), Some(6.0), "everything before, and the two-probe network");
    assert!(!label_values(&text, "asn").contains("64500"), "two probes are too few to name their network");
    assert_eq!(sample(&text, "vantage_metric_labels_folded_total", &[("label", "asn"), ("reason", "few_probes")]), Some(6.0));
}

#[tokio::test]
async fn a_flood_of_random_targets_and_asns_from_one_probe_adds_no_series() {
    let collector = with_wikipedia_published().await;
    let key = probe_key(7);
    collector.ingest_signed(&key, &[measurement_of("ZZ", 1, "first-name", true)]).await;
    let before = collector.next_fleet_refresh().await;

    let flood: Vec<_> = (0..500u32)
        .map(|i| {
            let mut m = measurement_of("ZZ", 4_200_000_000 + i * 7919, "x", true);
            m.target.name = format!("random-{i}-{}", m.id.simple());
            m
        })
        .collect();
    for chunk in flood.chunks(100) {
        assert_eq!(collector.ingest_signed(&key, chunk).await["accepted"], 100);
    }
    let after = collector.next_fleet_refresh().await;

    assert_eq!(series_count(&after), series_count(&before), "the exposition did not grow");
    let targets = label_values(&after, "target");
    assert!(targets.iter().all(|t| !t.starts_with("random-")), "no submitted name becomes a label: {targets:?}");
    let asns = label_values(&after, "asn");
    assert!(asns.iter().all(|a| a == "other"), "no ASN of a lone probe becomes a label: {asns:?}");
    let other = [("country", "ZZ"), ("target", "other"), ("test", "tls"), ("verdict", "blocked")];
    assert_eq!(sample(&after, "vantage_target_probes", &other), Some(1.0), "one probe, however many names");
    assert_eq!(sample(&after, "vantage_measurements_total", &other), Some(501.0));
}

#[tokio::test]
async fn a_spent_series_budget_folds_new_combinations_and_counts_them() {
    let collector = Collector::start_with(|config, dir| {
        let list = dir.join("targets.toml");
        let names: String = (0..30).map(|i| format!("[[target]]\nname = \"t{i}\"\n")).collect();
        std::fs::write(&list, names).expect("write list");
        config.targets_file = Some(list);
        config.max_series = 10;
    })
    .await;
    let key = probe_key(1);
    let batch: Vec<_> =
        (0..30).map(|i| measurement_of(&format!("A{}", char::from(b'A' + (i % 5) as u8)), 1, &format!("t{i}"), true)).collect();
    collector.ingest_signed(&key, &batch).await;
    let text = collector.next_fleet_refresh().await;

    let budgeted: usize = [
        "vantage_measurements_total",
        "vantage_measurements_by_asn_total",
        "vantage_target_probes",
        "vantage_target_asns",
        "vantage_target_asns_measured",
        "vantage_probes_active",
    ]
    .iter()
    .map(|name| series(&text, name).len())
    .sum();
    let admitted = sample(&text, "vantage_metric_series_admitted", &[]).expect("admitted gauge");
    assert_eq!(budgeted as f64, admitted, "the gauge tells the truth\n{text}");
    // 10, plus at most one fully folded combination per family (two series for the verdict pair).
    assert!(budgeted <= 10 + 6, "{budgeted} series\n{text}");
    assert_eq!(sample(&text, "vantage_metric_series_limit", &[]), Some(10.0));
    let folded = |label| sample(&text, "vantage_metric_labels_folded_total", &[("label", label), ("reason", "budget")]);
    assert!(folded("target").is_some_and(|n| n > 0.0), "{text}");
    assert!(folded("country").is_some_and(|n| n > 0.0), "{text}");
    // Nothing is lost, only coarsened.
    let total: f64 = series(&text, "vantage_measurements_total").iter().map(|(_, v)| v).sum();
    assert_eq!(total, 30.0);
}

#[tokio::test]
async fn measurements_older_than_the_window_say_nothing_about_now() {
    let collector = Collector::start().await;
    let mut old = measurement_of("DE", 1, "x", true);
    old.started_at -= Duration::hours(2);
    collector.ingest_signed(&probe_key(1), &[old]).await;
    let text = collector.next_fleet_refresh().await;
    assert_eq!(sample(&text, "vantage_probes_active", &[("country", "DE")]), Some(1.0), "it did arrive just now");
    assert!(series(&text, "vantage_target_probes").is_empty(), "but its verdict is two hours old\n{text}");
}

#[tokio::test]
async fn every_family_has_help_and_a_type() {
    let collector = with_wikipedia_published().await;
    collector.ingest(&[measurement_of("FR", 5, "wikipedia", false)]).await;
    collector.ingest_signed(&probe_key(1), &[measurement_of("DE", 1, "wikipedia", true)]).await;
    let text = collector.next_fleet_refresh().await;
    let mut helped = HashSet::new();
    let mut typed = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(help.trim().len() > 10, "{name} has no real HELP text: {help:?}");
            helped.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap_or("").to_string());
        }
    }
    assert_eq!(helped, typed, "every family has both");
    for family in [
        "vantage_probes_active",
        "vantage_target_probes",
        "vantage_target_asns",
        "vantage_target_asns_measured",
        "vantage_probe_spool_pending",
        "vantage_collector_ingest_in_flight",
        "vantage_metric_labels_folded_total",
    ] {
        assert!(helped.contains(family), "{family} is exported\n{text}");
    }
}
