//! The test helper: runs a control from the collector's network, refuses non-public addresses.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::{Collector, http_client_from, sample};

async fn control(collector: &Collector, request: Value) -> (u16, Value) {
    let response = collector.http.post(collector.url("/api/v1/control")).json(&request).send().await.expect("POST control");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn with_allow_private_a_tcp_control_reaches_a_local_listener() {
    let collector = Collector::start_with(|config, _| config.danger_helper_allow_private = true).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (status, body) = control(&collector, json!({"test": "tcp", "address": "127.0.0.1", "port": port})).await;
    assert_eq!(status, 200, "{body}");
    let observations = body["observations"].as_array().expect("observations");
    assert_eq!(observations.len(), 1, "{body}");
    assert_eq!(observations[0]["op"], "connect");
    assert_eq!(observations[0]["vantage"], "helper");
    assert_eq!(observations[0]["failure"], Value::Null, "{body}");
    let text = collector.metrics().await;
    let executed = [("test", "tcp"), ("outcome", "executed")];
    assert_eq!(sample(&text, "vantage_helper_requests_total", &executed), Some(1.0));
}

#[tokio::test]
async fn by_default_loopback_and_private_targets_are_refused_with_403() {
    let collector = Collector::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    for address in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"] {
        let (status, body) = control(&collector, json!({"test": "tcp", "address": address, "port": port})).await;
        assert_eq!(status, 403, "{address}: {body}");
        assert!(body["error"].as_str().expect("message").contains("does not contact"), "{body}");
    }
    let text = collector.metrics().await;
    assert_eq!(sample(&text, "vantage_helper_requests_total", &[("test", "tcp"), ("outcome", "forbidden")]), Some(5.0));
}

#[tokio::test]
async fn a_dns_control_has_no_address_and_is_not_refused() {
    let collector = Collector::start().await;
    let (status, body) = control(&collector, json!({"test": "dns", "domain": "localhost"})).await;
    assert_eq!(status, 200, "{body}");
}

/// Every control slot taken is the helper's state, not the request's fault: `503`, a server-side
/// reason and when to retry. The slots are held by TLS controls to a loopback listener that
/// never answers the ClientHello, so each waits out its step timeout.
#[tokio::test]
async fn a_full_helper_is_503_busy_with_retry_after() {
    let collector = Collector::start_with(|config, _| {
        config.danger_helper_allow_private = true;
        config.helper_timeout = Duration::from_secs(2);
    })
    .await;
    // Connections queue in the backlog and are never read: a handshake that never completes.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let request = json!({"test": "tls", "address": "127.0.0.1", "port": port, "domain": "example.org"});
    // From three addresses: one alone may hold only half the slots.
    let clients: Vec<_> = (2..5).map(|n| http_client_from([127, 0, 0, n].into())).collect();
    let send = |i: usize| clients[i % clients.len()].post(collector.url("/api/v1/control")).json(&request).send();
    let responses = futures::future::join_all((0..=vantage_collector::helper::MAX_IN_FLIGHT).map(send)).await;
    let busy: Vec<_> = responses.into_iter().map(|r| r.expect("POST control")).filter(|r| r.status() == 503).collect();
    assert!(!busy.is_empty(), "one control more than the slots is refused");
    for response in busy {
        assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
        let error: Value = response.json().await.expect("JSON error");
        assert_eq!(error["reason"], "busy", "{error}");
    }
    let text = collector.metrics().await;
    assert!(sample(&text, "vantage_helper_requests_total", &[("test", "tls"), ("outcome", "busy")]) >= Some(1.0), "{text}");
}

#[tokio::test]
async fn incomplete_or_malformed_requests_are_400() {
    let collector = Collector::start_with(|config, _| config.danger_helper_allow_private = true).await;
    let (status, body) = control(&collector, json!({"test": "tcp", "address": "127.0.0.1"})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().expect("message").contains("port"), "{body}");
    let (status, _) = control(&collector, json!({"test": "tls", "address": "127.0.0.1", "port": 1})).await;
    assert_eq!(status, 400, "tls needs a domain");
    let (status, _) = control(&collector, json!({"test": "carrier-pigeon"})).await;
    assert_eq!(status, 400);
}
