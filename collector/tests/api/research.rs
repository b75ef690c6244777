//! The researcher's reads: walking every row with the cursor while ingest goes on, the signer's
//! standing on each row, and aggregation as JSON and CSV with the ASN rule.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use uuid::Uuid;
use vantage_measurement::Measurement;

use crate::support::{Collector, measurement_at, measurement_of, ndjson, probe_key};

/// The `rel="next"` target of a `Link` header, if any.
fn next_link(response: &reqwest::Response) -> Option<String> {
    let link = response.headers().get("link")?.to_str().expect("ASCII");
    let (target, rel) = link.split_once(';').expect("<target>; rel");
    assert_eq!(rel.trim(), "rel=\"next\"");
    let target = target.trim().strip_prefix('<').and_then(|t| t.strip_suffix('>')).expect("<…>");
    assert!(target.starts_with("/api/v1/measurements?"), "a relative reference: {target}");
    Some(target.to_string())
}

/// Walk `first` (a path with query) to the last page: the rows' ids, in order, and the pages.
async fn walk(collector: &Collector, first: &str) -> (Vec<Uuid>, usize) {
    let (mut ids, mut pages, mut next) = (Vec::new(), 0, Some(first.to_string()));
    while let Some(path) = next.take() {
        let response = collector.http.get(collector.url(&path)).send().await.expect("GET page");
        assert_eq!(response.status(), 200, "{path}");
        next = next_link(&response);
        let body = response.text().await.expect("body");
        for line in body.lines() {
            let row: Value = serde_json::from_str(line).expect("JSON row");
            ids.push(row["id"].as_str().and_then(|id| id.parse().ok()).expect("an id"));
        }
        pages += 1;
    }
    (ids, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walker_sees_every_row_once_while_rows_arrive() {
    let collector = Collector::start().await;
    let now = chrono::Utc::now().timestamp();
    // 300 rows over the last 300 seconds, several per second (the id breaks ties).
    let stored: Vec<Measurement> = (0..300).map(|i| measurement_at(now - 300 + i / 3)).collect();
    for chunk in stored.chunks(100) {
        collector.ingest(chunk).await;
    }
    // Meanwhile, rows keep arriving: half started before the walk's rows, half after.
    let (http, url) = (collector.http.clone(), collector.url("/api/v1/measurements"));
    let arriving = tokio::spawn(async move {
        let mut sent = Vec::new();
        for round in 0..40 {
            let batch = vec![measurement_at(now - 600 + round), measurement_at(now - 150 + round)];
            let response = http.post(&url).header("content-type", "application/x-ndjson").body(ndjson(&batch)).send().await;
            assert_eq!(response.expect("POST").status(), 200);
            sent.extend(batch.iter().map(|m| m.id));
        }
        sent
    });
    let (ids, pages) = walk(&collector, "/api/v1/measurements?limit=7&country=ZZ").await;
    let arrived = arriving.await.expect("ingest task");

    let mut counts: BTreeMap<Uuid, usize> = BTreeMap::new();
    for id in &ids {
        *counts.entry(*id).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 1), "no row twice");
    for m in &stored {
        assert_eq!(counts.get(&m.id), Some(&1), "every row stored before the walk, once");
    }
    // What arrived meanwhile is either seen or not, never twice, and nothing else appears.
    let known: BTreeSet<Uuid> = stored.iter().map(|m| m.id).chain(arrived).collect();
    assert!(ids.iter().all(|id| known.contains(id)));
    assert!(pages >= 300 / 7, "{pages} pages");

    // A walk over a quiet store: exactly the rows, in order, and no Link on the last page.
    let (again, _) = walk(&collector, "/api/v1/measurements?limit=1000").await;
    assert_eq!(again.len(), known.len());
    let response = collector.http.get(collector.url("/api/v1/measurements?limit=100000")).send().await.expect("GET");
    assert!(response.headers().get("link").is_none(), "a single last page has no Link");
}

#[tokio::test]
async fn a_cursor_is_bound_to_its_filters_and_rows_carry_the_standing_at_ingest() {
    let collector = Collector::start().await;
    let now = chrono::Utc::now().timestamp();
    collector.ingest(&(0..3).map(|i| measurement_at(now - 10 + i)).collect::<Vec<_>>()).await;
    collector.ingest_signed(&probe_key(1), &[measurement_at(now - 5)]).await;

    let response = collector.http.get(collector.url("/api/v1/measurements?limit=2&country=ZZ")).send().await.expect("GET");
    let next = next_link(&response).expect("more rows remain");
    let cursor = next.split("cursor=").nth(1).expect("a cursor").to_string();
    let other = collector.url(&format!("/api/v1/measurements?limit=2&country=DE&cursor={cursor}"));
    let response = collector.http.get(other).send().await.expect("GET");
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("error");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("`cursor`")), "{error}");

    let rows: Vec<Value> = collector
        .http
        .get(collector.url("/api/v1/measurements"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let keys: Vec<&str> = rows.iter().map(|r| r["collector_key"].as_str().expect("recorded")).collect();
    assert_eq!(keys, ["anonymous", "anonymous", "anonymous", "trusted"], "in started_at order, each as it arrived");
    let trusted = collector.query("collector_key=trusted").await;
    assert_eq!(trusted.len(), 1);
}

/// Rows from trusted anchors: ASN 3320 (DE) from three probes, ASN 64500 (DE) from one, and
/// IR from two; plus anonymous rows in DE/3320.
async fn fleet(collector: &Collector) -> Vec<Measurement> {
    let mut all = Vec::new();
    let mut send = async |key: u8, rows: Vec<Measurement>| {
        collector.ingest_signed(&probe_key(key), &rows).await;
        all.extend(rows);
    };
    for key in 1..=3 {
        send(key, vec![measurement_of("DE", 3320, "signal", true), measurement_of("DE", 3320, "wikipedia", false)]).await;
    }
    send(4, vec![measurement_of("DE", 64_500, "signal", true)]).await;
    for key in 5..=6 {
        send(key, vec![measurement_of("IR", 197_207, "signal", true)]).await;
    }
    let anonymous = vec![measurement_of("DE", 3320, "signal", false)];
    collector.ingest(&anonymous).await;
    all.extend(anonymous);
    all
}

async fn get(collector: &Collector, query: &str) -> reqwest::Response {
    let response = collector.http.get(collector.url(&format!("/api/v1/aggregation?{query}"))).send().await.expect("GET");
    assert_eq!(response.status(), 200, "{query}");
    response
}

#[tokio::test]
async fn day_by_country_counts_match_the_rows_in_json_and_csv() {
    let collector = Collector::start().await;
    let rows = fleet(&collector).await;
    let day = rows[0].started_at.format("%Y-%m-%dT00:00:00Z").to_string();
    let json: Value = get(&collector, "axis_x=time&axis_y=country").await.json().await.expect("JSON");
    assert_eq!(json["time_grain"], "day");
    let got: Vec<(String, String, u64, u64, u64)> = json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["time"].as_str().expect("time").to_string(),
                r["country"].as_str().expect("country").to_string(),
                r["measurements"].as_u64().expect("n"),
                r["statuses"]["blocked"].as_u64().expect("blocked"),
                r["statuses"]["ok"].as_u64().expect("ok"),
            )
        })
        .collect();
    assert_eq!(got, vec![(day.clone(), "DE".into(), 8, 4, 4), (day.clone(), "IR".into(), 2, 2, 0)]);
    let de = &json["rows"][0];
    assert_eq!(de["probes"], 4, "four signing keys; anonymous rows are no probe");
    assert_eq!(de["mechanisms"], serde_json::json!({"tls.reset_after_clienthello": 4}));
    assert_eq!(json["rows"][1]["probes"], Value::Null, "two probes: below k = 3, not shown");

    let csv = get(&collector, "axis_x=time&axis_y=country&format=csv").await.text().await.expect("CSV");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(header[..8], ["time", "country", "measurements", "ok", "blocked", "down", "inconclusive", "probes"]);
    let column = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let body: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(body.len(), 2);
    assert_eq!((body[0][0], body[0][1], body[0][2], body[0][column("blocked")]), (day.as_str(), "DE", "8", "4"));
    assert_eq!(body[0][column("tls.reset_after_clienthello")], "4");
    assert_eq!((body[1][1], body[1][column("probes")]), ("IR", ""));

    let trusted: Value = get(&collector, "collector_key=trusted").await.json().await.expect("JSON");
    assert_eq!(trusted["rows"][0]["measurements"], 9, "one total row, anonymous rows left out");
    let response = collector.http.get(collector.url("/api/v1/aggregation?axis_x=planet")).send().await.expect("GET");
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("error");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("`axis_x`")), "{error}");
}

#[tokio::test]
async fn an_asn_with_fewer_trusted_probes_than_k_is_folded_into_other() {
    let collector = Collector::start().await;
    fleet(&collector).await;
    let json: Value = get(&collector, "axis_x=country&axis_y=asn").await.json().await.expect("JSON");
    let got: Vec<(Value, Value, Value, Value)> = json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["country"].clone(), r["asn"].clone(), r["measurements"].clone(), r["probes"].clone()))
        .collect();
    use serde_json::json;
    assert_eq!(
        got,
        vec![
            (json!("DE"), json!(3320), json!(7), json!(3)),
            (json!("DE"), json!("other"), json!(1), Value::Null),
            (json!("IR"), json!("other"), json!(2), Value::Null),
        ]
    );
    let csv = get(&collector, "axis_x=asn&format=csv").await.text().await.expect("CSV");
    let asns: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().expect("asn")).collect();
    assert_eq!(asns, ["3320", "other"]);

    // With k = 1 nothing folds.
    let small = Collector::start_with(|config, _| config.asn_min_probes = 1).await;
    fleet(&small).await;
    let json: Value = get(&small, "axis_x=asn").await.json().await.expect("JSON");
    let asns: Vec<Value> = json["rows"].as_array().expect("rows").iter().map(|r| r["asn"].clone()).collect();
    assert_eq!(asns, vec![json!(3320), json!(64_500), json!(197_207)]);
    assert_eq!(json["rows"][1]["probes"], 1);
}
