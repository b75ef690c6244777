//! Rate limits over loopback: a source or a key over its limit gets `429` with `Retry-After`
//! and the JSON reason, the refusal is counted, and nobody can spend another probe's budget.
//! Distinct sources are distinct 127.0.0.x addresses the client binds to.

use std::net::IpAddr;

use serde_json::{Value, json};
use vantage_collector::limits::{Limit, Rate};
use vantage_measurement::wire::{KEY_HEADER, SIGNATURE_HEADER};

use crate::support::{Collector, gzip, http_client_from, measurement, ndjson, post_signed_with, probe_key, sample};

fn source(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// The refusal as a probe sees it: status, `Retry-After` in seconds, JSON body.
async fn refusal(response: reqwest::Response) -> (u16, Option<u64>, Value) {
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    (status, retry_after, response.json().await.expect("JSON body"))
}

fn limited(text: &str, endpoint: &str, scope: &str) -> Option<f64> {
    sample(text, "vantage_collector_rate_limited_total", &[("endpoint", endpoint), ("scope", scope)])
}

#[tokio::test]
async fn a_source_over_its_ingest_limit_gets_429_and_others_do_not() {
    let collector = Collector::start_with(|config, _| config.limits.ingest_per_source = Limit::Rate(Rate::per_hour(2, 2))).await;
    let (greedy, other) = (http_client_from(source(2)), http_client_from(source(3)));
    for n in 1..=2 {
        let response = post_signed_with(&greedy, &collector, &probe_key(n), &[measurement()]).await;
        assert_eq!(response.status(), 200, "batch {n} is within the burst");
    }
    let (status, retry_after, body) = refusal(post_signed_with(&greedy, &collector, &probe_key(3), &[measurement()]).await).await;
    assert_eq!(status, 429, "{body}");
    // Two an hour: the next one in 30 minutes, rounded up to whole seconds.
    assert!(retry_after.is_some_and(|s| (1700..=1800).contains(&s)), "{retry_after:?}");
    assert_eq!(body["reason"], "rate_limited");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("from this address")), "{body}");
    assert_eq!(post_signed_with(&other, &collector, &probe_key(4), &[measurement()]).await.status(), 200, "another source");

    let text = collector.metrics().await;
    assert_eq!(limited(&text, "ingest", "source"), Some(1.0));
    assert_eq!(limited(&text, "ingest", "key"), Some(0.0));
    assert_eq!(limited(&text, "helper", "source"), Some(0.0));
    assert_eq!(limited(&text, "register", "source"), Some(0.0));
    let entries = [("endpoint", "ingest"), ("scope", "source")];
    assert_eq!(sample(&text, "vantage_collector_rate_limit_entries", &entries), Some(2.0), "two sources owe time");
    let entries = [("endpoint", "ingest"), ("scope", "key")];
    assert_eq!(sample(&text, "vantage_collector_rate_limit_entries", &entries), Some(3.0), "three keys were charged");
    assert_eq!(collector.query("").await.len(), 3, "the refused batch stored nothing");
}

#[tokio::test]
async fn a_key_is_charged_only_once_its_signature_verified() {
    let collector = Collector::start_with(|config, _| config.limits.ingest_per_key = Limit::Rate(Rate::per_hour(1, 1))).await;
    let victim = probe_key(7);
    // Someone else sends the victim's public key with signatures that don't verify, from
    // several addresses: each is refused as unsigned-by-that-key and charges nothing.
    let body = gzip(ndjson(&[measurement()]).as_bytes());
    for n in 10..15 {
        let response = http_client_from(source(n))
            .post(collector.url("/api/v1/measurements"))
            .header("content-encoding", "gzip")
            .header(KEY_HEADER, victim.public_key_base64())
            .header(SIGNATURE_HEADER, probe_key(8).sign_base64(&body))
            .body(body.clone())
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 401);
    }
    let home = http_client_from(source(20));
    assert_eq!(post_signed_with(&home, &collector, &victim, &[measurement()]).await.status(), 200, "the budget is intact");

    // The key's own next batch is over its limit, from any address.
    for from in [source(20), source(21)] {
        let (status, retry_after, body) =
            refusal(post_signed_with(&http_client_from(from), &collector, &victim, &[measurement()]).await).await;
        assert_eq!(status, 429, "{body}");
        assert!(retry_after.is_some_and(|s| s > 3000), "{retry_after:?}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("from this probe key")), "{body}");
    }
    assert_eq!(post_signed_with(&home, &collector, &probe_key(9), &[measurement()]).await.status(), 200, "another key");
    assert_eq!(collector.query("").await.len(), 2);
    assert_eq!(limited(&collector.metrics().await, "ingest", "key"), Some(2.0));
}

#[tokio::test]
async fn the_helper_is_limited_per_source() {
    let collector = Collector::start_with(|config, _| config.limits.helper_per_source = Limit::Rate(Rate::per_hour(1, 1))).await;
    // Refused by the address policy (403) is still a request: it costs the source its budget.
    let request = json!({"test": "tcp", "address": "127.0.0.1", "port": 9});
    let send = |from: u8| http_client_from(source(from)).post(collector.url("/api/v1/control")).json(&request).send();
    assert_eq!(send(2).await.expect("POST").status(), 403);
    let (status, retry_after, body) = refusal(send(2).await.expect("POST")).await;
    assert_eq!((status, body["reason"].as_str()), (429, Some("rate_limited")), "{body}");
    assert!(retry_after.is_some_and(|s| s > 3000), "{retry_after:?}");
    assert_eq!(send(3).await.expect("POST").status(), 403, "another source has its own budget");
    let text = collector.metrics().await;
    assert_eq!(limited(&text, "helper", "source"), Some(1.0));
    let forbidden = [("test", "tcp"), ("outcome", "forbidden")];
    assert_eq!(sample(&text, "vantage_helper_requests_total", &forbidden), Some(2.0), "the refused one never reached the helper");
}

#[tokio::test]
async fn off_means_off() {
    let collector = Collector::start_with(|config, _| {
        config.limits.ingest_per_source = Limit::Off;
        config.limits.ingest_per_key = Limit::Off;
    })
    .await;
    let key = probe_key(1);
    for _ in 0..150 {
        assert_eq!(collector.post_signed(&key, &[measurement()], 0).await.status(), 200);
    }
}

/// Start a batch from `from` and never finish its body: the collector holds it in flight (until
/// its body timeout) as it would a slow upload.
async fn hold_an_ingest_slot(collector: &Collector, from: IpAddr) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let server: std::net::SocketAddr = collector.base.trim_start_matches("http://").parse().expect("address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind((from, 0).into()).expect("bind");
    let mut stream = socket.connect(server).await.expect("connect");
    let head = "POST /api/v1/measurements HTTP/1.1\r\nhost: collector\r\ncontent-type: application/x-ndjson\r\n\
                content-length: 100000\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

#[tokio::test]
async fn a_source_holds_at_most_half_the_ingest_slots() {
    use vantage_collector::limits::INGEST_AT_ONCE_PER_SOURCE;
    let collector = Collector::start().await;
    let mut held = Vec::new();
    for _ in 0..INGEST_AT_ONCE_PER_SOURCE {
        held.push(hold_an_ingest_slot(&collector, source(2)).await);
    }
    let in_flight = |t: &str| sample(t, "vantage_collector_ingest_in_flight", &[]) == Some(f64::from(INGEST_AT_ONCE_PER_SOURCE));
    collector.metrics_when("the slow uploads in flight", in_flight).await;

    let (status, retry_after, body) =
        refusal(post_signed_with(&http_client_from(source(2)), &collector, &probe_key(1), &[measurement()]).await).await;
    assert_eq!((status, retry_after), (429, Some(1)), "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("at once from this address")), "{body}");
    let other = post_signed_with(&http_client_from(source(3)), &collector, &probe_key(2), &[measurement()]).await;
    assert_eq!(other.status(), 200, "the other slots stay for everyone else");
    assert_eq!(limited(&collector.metrics().await, "ingest", "source"), Some(1.0));
    drop(held);
}

#[tokio::test]
async fn a_source_holds_at_most_half_the_helper_slots() {
    use vantage_collector::limits::HELPER_AT_ONCE_PER_SOURCE;
    // A TLS control to a listener that never answers holds its slot for the step timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("addr").port();
    // The helper goes to a non-standard port only for a target the published list names.
    let targets = format!("[[target]]\nname = \"slow\"\ndomain = \"example.org\"\nport = {port}\ntests = [\"tls\"]\n");
    let (collector, _slot) = crate::helper::with_list(&targets, None, |config| {
        // Long enough that all the requests below are in flight together even on a busy machine.
        config.helper_timeout = std::time::Duration::from_secs(5);
    })
    .await;
    let request = json!({"test": "tls", "address": "127.0.0.1", "port": port, "domain": "example.org"});
    let (greedy, other) = (http_client_from(source(2)), http_client_from(source(3)));
    let send = |http: &reqwest::Client| http.post(collector.url("/api/v1/control")).json(&request).send();
    let greedy_sends = (0..=HELPER_AT_ONCE_PER_SOURCE).map(|_| send(&greedy));
    let (greedy_answers, other_answer) = tokio::join!(futures::future::join_all(greedy_sends), send(&other));
    let statuses: Vec<u16> = greedy_answers.into_iter().map(|r| r.expect("POST control").status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "one more than its share: {statuses:?}");
    assert_eq!(other_answer.expect("POST control").status(), 200, "another source still gets a slot");
}
