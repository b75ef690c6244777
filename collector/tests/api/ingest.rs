//! Ingest: what is stored, what is refused and why, and that nothing wrong is stored.

use serde_json::{Value, json};

use crate::support::{Collector, gzip, measurement, ndjson, noise};

#[tokio::test]
async fn a_valid_batch_is_accepted_and_can_be_read_back() {
    let collector = Collector::start().await;
    let batch = vec![measurement(), measurement(), measurement()];
    let report = collector.ingest(&batch).await;
    assert_eq!(report, json!({"accepted": 3, "duplicates": 0, "rejected": []}));
    let mut stored = collector.query("").await;
    stored.sort_by_key(|m| m.id);
    let mut sent = batch;
    sent.sort_by_key(|m| m.id);
    assert_eq!(stored, sent);
}

#[tokio::test]
async fn a_gzip_batch_is_accepted() {
    let collector = Collector::start().await;
    let batch = vec![measurement(), measurement()];
    let response = collector.post_gzip(gzip(ndjson(&batch).as_bytes())).await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.expect("report");
    assert_eq!(report["accepted"], 2);
    assert_eq!(collector.query("").await.len(), 2);
}

#[tokio::test]
async fn a_duplicate_is_stored_once_and_reported_as_duplicate() {
    let collector = Collector::start().await;
    let m = measurement();
    let first = collector.ingest(&[m.clone(), m.clone()]).await;
    assert_eq!(first, json!({"accepted": 1, "duplicates": 1, "rejected": []}));
    let again = collector.ingest(std::slice::from_ref(&m)).await;
    assert_eq!(again, json!({"accepted": 0, "duplicates": 1, "rejected": []}));
    assert_eq!(collector.query("").await, vec![m]);
}

#[tokio::test]
async fn each_bad_line_gets_its_precise_reason_and_good_lines_are_still_stored() {
    let collector = Collector::start().await;
    let good = measurement();
    let mut future_version: Value = serde_json::to_value(measurement()).expect("json");
    future_version["schema_version"] = json!(2);
    let mut bad_country = measurement();
    bad_country.probe.cc = "Germany".into();
    let body = format!(
        "{{\"id\": \"not even close\"\n{}\n\n{}\n{}\n",
        future_version,
        good.to_json_line().expect("serialise"),
        bad_country.to_json_line().expect("serialise")
    );
    let response = collector.post_ndjson(body).await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.expect("report");
    assert_eq!(report["accepted"], 1);
    assert_eq!(report["duplicates"], 0);
    let rejected = report["rejected"].as_array().expect("rejected list");
    let summary: Vec<(u64, &str)> =
        rejected.iter().map(|r| (r["line"].as_u64().expect("line"), r["reason"].as_str().expect("reason"))).collect();
    assert_eq!(summary, vec![(1, "malformed"), (2, "unsupported_schema_version"), (5, "invalid_country")]);
    assert!(rejected[1]["detail"].as_str().expect("detail").contains("schema_version 2"));
    assert_eq!(rejected[2]["id"], json!(bad_country.id));
    assert_eq!(collector.query("").await, vec![good], "only the valid line is stored");
}

#[tokio::test]
async fn a_batch_of_only_bad_lines_is_answered_200_and_stores_nothing() {
    let collector = Collector::start().await;
    let response = collector.post_ndjson("[]\n42\n").await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.expect("report");
    assert_eq!(report["accepted"], 0);
    assert_eq!(report["rejected"].as_array().map(Vec::len), Some(2));
    assert!(collector.query("").await.is_empty());
}

#[tokio::test]
async fn an_oversized_gzip_body_is_413_and_stores_nothing() {
    let collector = Collector::start().await;
    // Incompressible, so the gzip framing is irrelevant: the compressed size alone is too big.
    let response = collector.post_gzip(noise(8 * 1024 * 1024 + 1)).await;
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.expect("error body");
    assert_eq!(error["reason"], "body_too_large");
    assert!(error["error"].as_str().expect("message").contains("8388608"), "{error}");
}

#[tokio::test]
async fn an_oversized_plain_body_is_413_and_stores_nothing() {
    let collector = Collector::start().await;
    let mut body = ndjson(&[measurement()]).into_bytes();
    body.resize(64 * 1024 * 1024 + 1, b'\n');
    let response = collector.post_ndjson(body).await;
    assert_eq!(response.status(), 413);
    assert!(collector.query("").await.is_empty(), "a refused batch stores nothing, not even its good lines");
}

#[tokio::test]
async fn a_gzip_bomb_is_413_with_a_clear_message() {
    let collector = Collector::start().await;
    // 80 MiB of newlines after one valid line: tiny compressed, beyond the 64 MiB cap inflated.
    let mut plain = ndjson(&[measurement()]).into_bytes();
    plain.resize(80 * 1024 * 1024, b'\n');
    let bomb = gzip(&plain);
    drop(plain);
    assert!(bomb.len() < 1024 * 1024);
    let response = collector.post_gzip(bomb).await;
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.expect("error body");
    assert_eq!(error["reason"], "body_too_large");
    assert!(error["error"].as_str().expect("message").contains("inflates"), "{error}");
    assert!(collector.query("").await.is_empty());
}

#[tokio::test]
async fn too_many_lines_is_413() {
    let collector = Collector::start().await;
    let response = collector.post_ndjson("{}\n".repeat(10_001)).await;
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.expect("error body");
    assert_eq!(error["reason"], "too_many_lines");
}

#[tokio::test]
async fn an_unknown_encoding_is_415_and_a_broken_body_400() {
    let collector = Collector::start().await;
    let url = collector.url("/api/v1/measurements");
    let brotli = collector.http.post(&url).header("content-encoding", "br").body("x").send().await.expect("POST");
    assert_eq!(brotli.status(), 415);
    let not_utf8 = collector.post_ndjson(vec![b'{', 0xff, b'}', b'\n']).await;
    assert_eq!(not_utf8.status(), 400);
    let not_gzip = collector.post_gzip(b"plain text pretending".to_vec()).await;
    assert_eq!(not_gzip.status(), 400);
    let error: Value = not_gzip.json().await.expect("error body");
    assert_eq!(error["reason"], "bad_encoding");
}
