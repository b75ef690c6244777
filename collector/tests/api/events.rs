//! `GET /api/v1/events` and `vantage_events_ongoing`, through the real HTTP API: a day of quiet
//! hours then a block, from the anchors' trusted keys, becomes one ongoing event with its country,
//! target, mechanism, probes and (k-anonymous) ASNs; benign noise and untrusted or anonymous
//! submissions make none.

use chrono::{DateTime, Duration, DurationRound, Utc};
use vantage_measurement::Measurement;
use vantage_measurement::wire::ProbeKey;

use crate::support::{Collector, measurement_of, newcomer_key, probe_key, sample, with_wikipedia_published};

/// The start of the last complete hour: every measurement of the story is in the past.
fn last_hour() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::hours(1)).expect("truncate") - Duration::hours(1)
}

/// Six probes: 1–3 in AS 3320, 4–6 in AS 3209, all in DE.
fn asn_of(probe: usize) -> u32 {
    if probe < 3 { 3320 } else { 3209 }
}

/// Hours `last − 29 ..= last`: two measurements of `wikipedia` per probe per hour, each blocked
/// when `blocked(probe, hour index, measurement index)` says so (hour index 0 is the oldest).
fn story(blocked: impl Fn(usize, usize, usize) -> bool) -> Vec<Vec<Measurement>> {
    let first = last_hour() - Duration::hours(29);
    (0..6)
        .map(|probe| {
            (0..30)
                .flat_map(|hour| (0..2).map(move |i| (hour, i)))
                .map(|(hour, i)| {
                    let mut m = measurement_of("DE", asn_of(probe), "wikipedia", blocked(probe, hour, i));
                    m.started_at = first + Duration::hours(hour as i64) + Duration::minutes(10 + 30 * i as i64 + probe as i64);
                    m
                })
                .collect()
        })
        .collect()
}

/// Five of six probes blocked from hour 24 (the last six hours).
fn block_from_hour_24(probe: usize, hour: usize, _: usize) -> bool {
    probe < 5 && hour >= 24
}

async fn send(collector: &Collector, keys: &[ProbeKey], batches: &[Vec<Measurement>]) {
    for (key, batch) in keys.iter().zip(batches) {
        assert_eq!(collector.ingest_signed(key, batch).await["accepted"], batch.len());
    }
}

/// The events once a read of them began after everything sent so far (they are read every few
/// fleet refreshes); panics after 10 s.
async fn settled(collector: &Collector) -> serde_json::Value {
    let sent = Utc::now();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let answer = events(collector, "").await;
        let read_at = answer["read_at"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        if read_at.is_some_and(|t| t > sent) {
            return answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "no events read after {sent}: {answer:#}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn events(collector: &Collector, query: &str) -> serde_json::Value {
    let response = collector.http.get(collector.url(&format!("/api/v1/events{query}"))).send().await.expect("GET events");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn a_block_after_quiet_hours_is_an_ongoing_event_with_its_evidence() {
    let collector = with_wikipedia_published().await;
    let keys: Vec<ProbeKey> = (1..=6).map(probe_key).collect();
    send(&collector, &keys, &story(block_from_hour_24)).await;
    let answer = settled(&collector).await;
    let text = collector.metrics().await;

    let list = answer["events"].as_array().expect("a list");
    assert_eq!(list.len(), 1, "{answer:#}");
    let event = &list[0];
    let onset = last_hour() - Duration::hours(5);
    assert_eq!(event["country"], "DE");
    assert_eq!(event["target"], "wikipedia");
    assert_eq!(event["test"], "tls");
    assert_eq!(event["mechanism"], "tls.reset_after_clienthello");
    assert_eq!(event["ongoing"], true);
    assert_eq!(event["ended_at"], serde_json::Value::Null);
    assert_eq!(event["started_at"], onset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "{event:#}");
    assert_eq!((event["probes_blocked"].as_u64(), event["probes_measuring"].as_u64()), (Some(5), Some(6)), "5 of 6 probes");
    assert_eq!(event["asns"], serde_json::json!([3209, 3320]), "both networks have 3 probes (k = 3)");

    let gauge = [("country", "DE"), ("target", "wikipedia"), ("test", "tls"), ("mechanism", "tls.reset_after_clienthello")];
    assert_eq!(sample(&text, "vantage_events_ongoing", &gauge), Some(1.0), "{text}");

    // The status page lists it.
    let page = collector.http.get(collector.url("/")).send().await.expect("GET /").text().await.expect("page");
    let section = &page[page.find("id=\"events\"").expect("an events section")..];
    assert!(section.contains("data-country=\"DE\"") && section.contains("<b>5</b> of 6"), "{section}");

    // The filters.
    assert_eq!(events(&collector, "?country=FR").await["events"].as_array().map(Vec::len), Some(0));
    assert_eq!(events(&collector, "?country=DE&target=wikipedia&test=tls").await["events"].as_array().map(Vec::len), Some(1));
    let response = collector.http.get(collector.url("/api/v1/events?test=ftp")).send().await.expect("GET");
    assert_eq!(response.status(), 400);
    assert!(response.text().await.expect("body").contains("`test`"));
}

#[tokio::test]
async fn flaky_networks_blocking_five_percent_make_no_event() {
    let collector = with_wikipedia_published().await;
    let keys: Vec<ProbeKey> = (1..=6).map(probe_key).collect();
    // One measurement in twenty blocked, spread over probes and hours: 18 of 360.
    let flaky = |probe: usize, hour: usize, i: usize| (probe * 60 + hour * 2 + i) % 20 == 7;
    send(&collector, &keys, &story(flaky)).await;
    let answer = settled(&collector).await;
    let text = collector.metrics().await;

    assert_eq!(answer["events"].as_array().map(Vec::len), Some(0), "{answer:#}");
    assert!(!text.contains("vantage_events_ongoing{"), "no event series: {text}");
}

#[tokio::test]
async fn untrusted_and_anonymous_submissions_make_no_event() {
    let collector = Collector::start().await;
    let newcomers: Vec<ProbeKey> = (1..=6).map(newcomer_key).collect();
    let batches = story(block_from_hour_24);
    send(&collector, &newcomers, &batches).await;
    for batch in &story(block_from_hour_24) {
        assert_eq!(collector.ingest(batch).await["accepted"], batch.len());
    }
    let answer = settled(&collector).await;

    assert_eq!(answer["events"].as_array().map(Vec::len), Some(0), "{answer:#}");
}
