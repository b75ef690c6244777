//! Health, and shutdown that keeps every promise made before it.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vantage_collector::{App, Config, Filter, SqliteStore, Store};

use crate::support::{Collector, measurement, ndjson};

#[tokio::test]
async fn healthz_is_ok_while_the_store_answers() {
    let collector = Collector::start().await;
    let response = collector.http.get(collector.url("/healthz")).send().await.expect("GET");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "ok");
}

/// A collector serving on a store that was closed under it.
async fn with_closed_store() -> Collector {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("data")).await.expect("open"));
    let config = Config::new("127.0.0.1:0".parse().expect("addr"), dir.path().join("data"));
    let app = App::bind_with_store(config, store.clone()).await.expect("bind");
    store.close().await.expect("close");
    Collector::serve(app, dir)
}

#[tokio::test]
async fn healthz_is_503_when_the_store_does_not_answer() {
    let collector = with_closed_store().await;
    let response = collector.http.get(collector.url("/healthz")).send().await.expect("GET");
    assert_eq!(response.status(), 503);
    let ingest = collector.post_ndjson(ndjson(&[measurement()])).await;
    assert_eq!(ingest.status(), 503, "a batch the store can't take is not acknowledged");
}

/// A closed store is the collector's fault and passes: ingest and queries say so with a
/// server-side reason and when to come back.
#[tokio::test]
async fn a_store_that_is_gone_is_a_503_with_retry_after() {
    let collector = with_closed_store().await;
    let ingest = collector.post_ndjson(ndjson(&[measurement()])).await;
    let query = collector.http.get(collector.url("/api/v1/measurements")).send().await.expect("GET");
    for (what, response) in [("ingest", ingest), ("query", query)] {
        assert_eq!(response.status(), 503, "{what}");
        assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("30"), "{what}");
        let error: serde_json::Value = response.json().await.expect("JSON error");
        assert_eq!(error["reason"], "store_unavailable", "{what}: {error}");
    }
}

#[tokio::test]
async fn acknowledged_measurements_survive_a_shutdown() {
    let mut collector = Collector::start().await;
    let batch = vec![measurement(), measurement()];
    collector.ingest(&batch).await;
    collector.stop().await;

    let store = SqliteStore::open(&collector.data_dir()).await.expect("reopen");
    assert_eq!(store.count().await.expect("count"), 2);
    let mut rows = store.query(&Filter::default(), 10).await.expect("query");
    let mut ids = Vec::new();
    while let Some(line) = rows.recv().await {
        let m = crate::support::row_measurement(&line.expect("row"));
        ids.push(m.id);
    }
    ids.sort();
    let mut sent: Vec<_> = batch.iter().map(|m| m.id).collect();
    sent.sort();
    assert_eq!(ids, sent);
}

/// The shutdown signal arrives while a batch is half sent: the batch is still read, stored and
/// acknowledged, and only then does the server stop. `Expect: 100-continue` tells us exactly
/// when the handler has started reading, so there is no sleep and no race.
#[tokio::test]
async fn shutdown_finishes_a_request_in_flight() {
    let mut collector = Collector::start().await;
    let addr = collector.base.trim_start_matches("http://").to_string();
    let m = measurement();
    let body = ndjson(std::slice::from_ref(&m));
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/measurements HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    let interim = read_head(&mut stream).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");

    collector.begin_stop();
    stream.write_all(body.as_bytes()).await.expect("send body");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"accepted\":1"), "{response}");
    collector.wait_stopped().await;

    assert!(TcpStream::connect(&addr).await.is_err(), "no new connections after shutdown");
    let store = SqliteStore::open(&collector.data_dir()).await.expect("reopen");
    assert_eq!(store.count().await.expect("count"), 1);
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read");
        assert_eq!(n, 1, "connection closed early: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}
