//! The connection layer under abuse: slow clients are cut, caps refuse the connection too many and
//! no more, PROXY headers are believed from trusted proxies only. Each test sets short timeouts
//! through the config and asserts only that a connection *was* closed within a generous bound,
//! never how fast.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use vantage_collector::server::TrustedProxies;
use vantage_collector::server::proxy_protocol::{encode_v1, encode_v2};
use vantage_collector::server::source::parse_trusted_proxy;

use crate::support::{Collector, raw, sample};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

async fn refused(collector: &Collector, reason: &str) -> Option<f64> {
    sample(&collector.metrics().await, "vantage_collector_connections_refused_total", &[("reason", reason)])
}

/// [`refused`] for a collector that expects PROXY headers from loopback: the scrape comes as the
/// balancer's own (LOCAL) connection.
async fn refused_behind_balancer(collector: &Collector, reason: &str) -> Option<f64> {
    let mut stream = raw::connect(collector.addr(), &encode_v2(None, &[])).await;
    let (status, text) = raw::get(&mut stream, "/metrics").await;
    assert_eq!(status, 200);
    sample(&text, "vantage_collector_connections_refused_total", &[("reason", reason)])
}

/// A PROXY v2 header from `client` (as a balancer in front of the collector writes it).
fn proxied(client: &str) -> Vec<u8> {
    encode_v2(Some((addr(client), addr("192.0.2.80:443"))), &[])
}

/// Slowloris: a request head trickled a line at a time never completes within the header
/// timeout, so the connection is closed, and counted, however steadily it trickles.
#[tokio::test]
async fn a_client_trickling_its_request_head_is_disconnected() {
    let collector = Collector::start_with(|config, _| config.connections.header_timeout = Duration::from_secs(1)).await;
    let mut stream = raw::connect(collector.addr(), b"GET /healthz HTTP/1.1\r\nHost: collector\r\n").await;
    let (mut read, mut write) = stream.split();
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(format!("X-Trickle-{i}: a\r\n").as_bytes()).await.is_err() {
                break;
            }
        }
        // Writing failed because the collector closed: the read side says so.
        std::future::pending::<()>().await;
    };
    let closed = async {
        let mut buf = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut read, &mut buf).await;
        buf
    };
    let received = tokio::time::timeout(raw::CLOSE_BOUND, async {
        tokio::select! {
            () = trickle => unreachable!("the trickle never ends on its own"),
            received = closed => received,
        }
    })
    .await
    .expect("the collector closed the trickling connection");
    assert!(!String::from_utf8_lossy(&received).contains("200 OK"), "no request was served");
    assert_eq!(refused(&collector, "header_timeout").await, Some(1.0));
}

/// The same on the body of a small route (the helper's control, a deletion request): a body
/// that has not ended by the body timeout fails, however steadily it trickles.
#[tokio::test]
async fn a_body_trickled_to_a_small_route_is_cut_at_the_body_deadline() {
    let collector = Collector::start_with(|config, _| config.connections.body_timeout = Duration::from_secs(1)).await;
    let head =
        "POST /api/v1/control HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    let mut stream = raw::connect(collector.addr(), head.as_bytes()).await;
    let (mut read, mut write) = stream.split();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b" ").await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let answered = async {
        let mut buf = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut read, &mut buf).await;
        buf
    };
    let received = tokio::time::timeout(raw::CLOSE_BOUND, async {
        tokio::select! {
            () = trickle => unreachable!("the trickle never ends on its own"),
            received = answered => received,
        }
    })
    .await
    .expect("the collector ended the trickling request");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
}

/// A request head is bounded in size too, so a slow client can't make a connection hold more
/// than a small buffer.
#[tokio::test]
async fn a_request_head_over_32_kib_is_refused() {
    let collector = Collector::start().await;
    let head = |size: usize| format!("GET /healthz HTTP/1.1\r\nHost: collector\r\nX-Fat: {}\r\n\r\n", "a".repeat(size));
    let mut fits = raw::connect(collector.addr(), head(30 * 1024).as_bytes()).await;
    assert_eq!(raw::response(&mut fits).await.map(|r| r.0), Some(200));
    let mut too_big = raw::connect(collector.addr(), head(33 * 1024).as_bytes()).await;
    let answer = String::from_utf8_lossy(&raw::until_closed(&mut too_big).await).to_string();
    // A 431, or only a reset: closing with unread bytes may make the kernel drop the answer.
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// A kept-alive connection is closed once idle for the header timeout too, but that is no
/// refusal: it is how every idle client's connection ends.
#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_and_not_counted() {
    let collector = Collector::start_with(|config, _| config.connections.header_timeout = Duration::from_secs(1)).await;
    let mut stream = raw::connect(collector.addr(), b"").await;
    assert_eq!(raw::get(&mut stream, "/healthz").await, (200, "ok".to_string()));
    assert!(raw::until_closed(&mut stream).await.is_empty());
    assert_eq!(refused(&collector, "header_timeout").await, Some(0.0));
}

/// The per-source cap refuses a source's connection beyond the cap, while another source is
/// still served. The sources are the clients a trusted balancer (loopback here) names in PROXY
/// headers; loopback itself is never counted.
#[tokio::test]
async fn the_per_source_cap_refuses_one_source_and_serves_another() {
    const CAP: usize = 3;
    let collector = Collector::start_with(|config, _| {
        config.connections.trusted_proxies = TrustedProxies::new(vec![parse_trusted_proxy("127.0.0.1").expect("block")]);
        config.connections.proxy_protocol = true;
        config.connections.max_connections_per_source = CAP;
        config.connections.header_timeout = Duration::from_secs(60);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut stream = raw::connect(collector.addr(), &proxied("198.51.100.1:40000")).await;
        // Answered: the collector holds this connection under the source's cap.
        assert_eq!(raw::get(&mut stream, "/healthz").await.0, 200);
        held.push(stream);
    }
    let mut one_too_many = raw::connect(collector.addr(), &proxied("198.51.100.1:40001")).await;
    let _ = one_too_many.write_all(b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n").await;
    assert!(raw::until_closed(&mut one_too_many).await.is_empty(), "refused without an answer");

    let mut other = raw::connect(collector.addr(), &proxied("198.51.100.2:40000")).await;
    assert_eq!(raw::get(&mut other, "/healthz").await.0, 200, "another source is served");
    assert_eq!(refused_behind_balancer(&collector, "source_limit").await, Some(1.0));

    // A closed connection gives its slot back (once the collector has seen it close).
    drop(held.pop());
    let served_again = async {
        loop {
            let mut stream = raw::connect(collector.addr(), &proxied("198.51.100.1:40002")).await;
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n").await;
            if let Some((status, _)) = raw::response(&mut stream).await {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(tokio::time::timeout(raw::CLOSE_BOUND, served_again).await.expect("served again in time"), 200);
}

/// The global cap counts every connection, loopback included.
#[tokio::test]
async fn the_global_cap_refuses_the_connection_too_many() {
    let collector = Collector::start_with(|config, _| {
        config.connections.max_connections = 2;
        config.connections.header_timeout = Duration::from_secs(60);
    })
    .await;
    let mut first = raw::connect(collector.addr(), b"").await;
    let mut second = raw::connect(collector.addr(), b"").await;
    assert_eq!(raw::get(&mut first, "/healthz").await.0, 200);
    assert_eq!(raw::get(&mut second, "/healthz").await.0, 200);
    let mut third = raw::connect(collector.addr(), b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n").await;
    assert!(raw::until_closed(&mut third).await.is_empty(), "refused without an answer");
    // The metrics scrape needs a slot of its own.
    drop(first);
    let metrics = async {
        loop {
            if let Ok(response) = collector.http.get(collector.url("/metrics")).send().await {
                break response.text().await.expect("metrics");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let text = tokio::time::timeout(raw::CLOSE_BOUND, metrics).await.expect("a slot came free");
    assert!(sample(&text, "vantage_collector_connections_refused_total", &[("reason", "global_limit")]) >= Some(1.0), "{text}");
}

/// With --proxy-protocol, a trusted proxy must send the header; anyone else must not, whatever
/// it says, and is served normally without one.
#[tokio::test]
async fn proxy_headers_are_required_from_trusted_proxies_and_refused_from_anyone_else() {
    let collector = Collector::start_with(|config, _| {
        config.connections.trusted_proxies = TrustedProxies::new(vec![parse_trusted_proxy("127.0.0.1").expect("block")]);
        config.connections.proxy_protocol = true;
    })
    .await;
    let mut bare = raw::connect(collector.addr(), b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n").await;
    assert!(raw::until_closed(&mut bare).await.is_empty(), "a trusted proxy without a header");
    let mut garbled = raw::connect(collector.addr(), b"PROXY TCP4 198.51.100.1 192.0.2.80 +1 443\r\n").await;
    assert!(raw::until_closed(&mut garbled).await.is_empty(), "a bad header");
    let mut v1 = raw::connect(collector.addr(), &encode_v1(addr("198.51.100.1:1"), addr("192.0.2.80:443"))).await;
    assert_eq!(raw::get(&mut v1, "/healthz").await.0, 200, "a v1 header");
    let mut local = raw::connect(collector.addr(), &encode_v2(None, &[])).await;
    assert_eq!(raw::get(&mut local, "/healthz").await.0, 200, "the balancer's own health check");
    assert_eq!(refused_behind_balancer(&collector, "proxy_header_missing").await, Some(1.0));
    assert_eq!(refused_behind_balancer(&collector, "proxy_header_invalid").await, Some(1.0));

    // Loopback is no trusted proxy here: its PROXY headers are refused, its plain requests served.
    let untrusting = Collector::start_with(|config, _| {
        config.connections.trusted_proxies = TrustedProxies::new(vec![parse_trusted_proxy("10.0.0.0/8").expect("block")]);
        config.connections.proxy_protocol = true;
    })
    .await;
    let mut spoof = raw::connect(untrusting.addr(), &proxied("198.51.100.1:40000")).await;
    assert!(raw::until_closed(&mut spoof).await.is_empty(), "a header from an untrusted peer");
    let mut spoof_v1 = raw::connect(untrusting.addr(), b"PROXY TCP4 198.51.100.1 192.0.2.80 1 443\r\n").await;
    assert!(raw::until_closed(&mut spoof_v1).await.is_empty(), "a v1 header from an untrusted peer");
    let mut direct = raw::connect(untrusting.addr(), b"").await;
    assert_eq!(raw::get(&mut direct, "/healthz").await.0, 200);
    assert_eq!(refused(&untrusting, "proxy_header_untrusted").await, Some(2.0));
}
