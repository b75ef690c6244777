//! Who a request comes from, as the handlers see it ([`ClientSource`]): the TCP peer, unless that
//! peer is a trusted proxy, whose X-Forwarded-For or PROXY header then names the client. Seen
//! through what the address is used for: the collector-observed location in the ingest report
//! (test databases: 127.0.0.0/8 is DE / AS64500, 10.0.0.0/8 is FR / AS3215).
//!
//! [`ClientSource`]: vantage_collector::server::ClientSource

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use vantage_collector::server::TrustedProxies;
use vantage_collector::server::proxy_protocol::encode_v2;
use vantage_collector::server::source::parse_trusted_proxy;
use vantage_measurement::wire::IngestReport;

use crate::location::write_databases;
use crate::support::{Collector, measurement_of, ndjson, raw};

/// A collector with the test databases, trusting `proxies` (and with `--proxy-protocol` if asked).
async fn collector(proxies: &[&str], proxy_protocol: bool) -> Collector {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (country, asn) = write_databases(scratch.path());
    let proxies = TrustedProxies::new(proxies.iter().map(|p| parse_trusted_proxy(p).expect("block")).collect());
    Collector::start_with(move |config, dir| {
        for (from, to) in [(&country, "country.mmdb"), (&asn, "asn.mmdb")] {
            std::fs::copy(from, dir.join(to)).expect("copy database");
        }
        config.geoip_country = Some(dir.join("country.mmdb"));
        config.geoip_asn = Some(dir.join("asn.mmdb"));
        config.connections.trusted_proxies = proxies;
        config.connections.proxy_protocol = proxy_protocol;
    })
    .await
}

/// The country the collector saw a batch sent with `x_forwarded_for` come from.
async fn observed_country(collector: &Collector, x_forwarded_for: &str) -> Option<String> {
    let batch = ndjson(&[measurement_of("DE", 64500, "wikipedia", true)]);
    let response = collector
        .http
        .post(collector.url("/api/v1/measurements"))
        .header("content-type", "application/x-ndjson")
        .header("x-forwarded-for", x_forwarded_for)
        .body(batch)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    let report: IngestReport = response.json().await.expect("report");
    report.observed.and_then(|o| o.cc)
}

#[tokio::test]
async fn an_untrusted_peer_is_located_by_its_own_address_whatever_it_forwards() {
    let collector = collector(&[], false).await;
    assert_eq!(observed_country(&collector, "10.1.2.3").await.as_deref(), Some("DE"));
    // Trusting someone else changes nothing for this peer.
    let collector = self::collector(&["192.0.2.0/24"], false).await;
    assert_eq!(observed_country(&collector, "10.1.2.3").await.as_deref(), Some("DE"));
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_for_names_the_client() {
    let collector = collector(&["127.0.0.1"], false).await;
    assert_eq!(observed_country(&collector, "10.1.2.3").await.as_deref(), Some("FR"));
    // What the client wrote itself sits left of what the proxy appended, and is not believed.
    assert_eq!(observed_country(&collector, "127.0.0.9, 10.1.2.3").await.as_deref(), Some("FR"));
}

#[tokio::test]
async fn a_trusted_proxys_proxy_v2_header_names_the_client() {
    let collector = collector(&["127.0.0.1"], true).await;
    let client: SocketAddr = "10.9.9.9:50000".parse().expect("addr");
    let header = encode_v2(Some((client, collector.addr())), &[]);
    let body = ndjson(&[measurement_of("DE", 64500, "wikipedia", true)]);
    let mut stream = raw::connect(collector.addr(), &header).await;
    let request = format!(
        "POST /api/v1/measurements HTTP/1.1\r\nHost: collector\r\nContent-Type: application/x-ndjson\r\n\
         X-Forwarded-For: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let (status, text) = raw::response(&mut stream).await.expect("a response");
    assert_eq!(status, 200, "{text}");
    let report: IngestReport = serde_json::from_str(&text).expect("report");
    // The forwarded-for header of a client that is not itself a trusted proxy is not read.
    assert_eq!(report.observed.and_then(|o| o.asn), Some(3215));
}

#[tokio::test]
async fn with_proxy_protocol_forwarded_headers_are_never_read() {
    // A balancer's `LOCAL` header (its own health check, or a pass-through that names no client)
    // leaves the proxy as the source; the client's own X-Forwarded-For must not replace it.
    let collector = collector(&["127.0.0.1"], true).await;
    let body = ndjson(&[measurement_of("DE", 64500, "wikipedia", true)]);
    let mut stream = raw::connect(collector.addr(), &encode_v2(None, &[])).await;
    let request = format!(
        "POST /api/v1/measurements HTTP/1.1\r\nHost: collector\r\nContent-Type: application/x-ndjson\r\n\
         X-Forwarded-For: 10.1.2.3\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let (status, text) = raw::response(&mut stream).await.expect("a response");
    assert_eq!(status, 200, "{text}");
    let report: IngestReport = serde_json::from_str(&text).expect("report");
    assert_eq!(report.observed.and_then(|o| o.cc).as_deref(), Some("DE"), "located as the proxy, not as 10.1.2.3 (FR)");
}
