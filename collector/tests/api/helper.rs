//! The test helper: runs a control from the collector's network, refuses non-public addresses,
//! and goes only where the published list (or, without one, a standard port) says.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use serde_json::{Value, json};
use tokio::net::{TcpListener, UdpSocket};
use vantage_collector::published::ListSlot;
use vantage_collector::{App, Config};
use vantage_measurement::wire::target_list::{ListDocument, ListKey};

use crate::support::{Collector, http_client_from, sample};

async fn control(collector: &Collector, request: Value) -> (u16, Value) {
    let response = collector.http.post(collector.url("/api/v1/control")).json(&request).send().await.expect("POST control");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

fn helper_count(text: &str, test: &str, outcome: &str) -> Option<f64> {
    sample(text, "vantage_helper_requests_total", &[("test", test), ("outcome", outcome)])
}

/// Sign `targets` as list `version` into `path`.
fn write_list(path: &Path, version: u64, targets: &str) {
    let document = ListDocument {
        version,
        issued_at: Utc::now(),
        expires_at: Utc::now() + chrono::Duration::days(7),
        interval_secs: 3600,
        disabled_tests: vec![],
        disabled_targets: vec![],
        labelled: vec![],
        targets_toml: targets.into(),
    };
    let signed = ListKey::from_seed(&[9; 32]).sign(&document, vec![], vec![]);
    std::fs::write(path, serde_json::to_vec(&signed).expect("json")).expect("write the signed list");
}

/// A collector publishing `targets` as a signed list, its helper allowed onto loopback (where the
/// tests' servers are) and asking `resolver` for names; and the slot to re-read the list.
pub(crate) async fn with_list(
    targets: &str,
    resolver: Option<SocketAddr>,
    edit: impl FnOnce(&mut Config),
) -> (Collector, Arc<ListSlot>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("signed.json");
    write_list(&path, 1, targets);
    let mut config = Config::new("127.0.0.1:0".parse().expect("addr"), dir.path().join("data"));
    config.signed_list = Some(path);
    config.danger_helper_allow_private = true;
    config.helper_resolver = resolver;
    edit(&mut config);
    let app = App::bind(config).await.expect("builds");
    let slot = app.signed_list();
    (Collector::serve(app, dir), slot)
}

/// A DNS responder on loopback answering `name` with `ip` (A, TTL 300) and NXDOMAIN otherwise;
/// and how many lookups (A queries) it got.
async fn resolver(name: &'static str, ip: Ipv4Addr) -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let queries = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&queries);
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..len]) else { continue };
            let Some(q) = query.queries.first().cloned() else { continue };
            // A lookup asks A and AAAA once each: counting the A queries counts lookups.
            if q.query_type() == RecordType::A {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            let known = q.name().to_ascii().trim_end_matches('.').eq_ignore_ascii_case(name);
            let mut reply = Message::error_msg(
                query.metadata.id,
                OpCode::Query,
                if known { ResponseCode::NoError } else { ResponseCode::NXDomain },
            );
            reply.metadata.recursion_available = true;
            reply.add_query(q.clone());
            if known && q.query_type() == RecordType::A {
                reply.add_answer(Record::from_rdata(q.name().clone(), 300, RData::A(A(ip))));
            }
            let _ = socket.send_to(&reply.to_vec().unwrap_or_default(), from).await;
        }
    });
    (addr, queries)
}

/// Two listed targets on a local listener: one with its address in the list, one whose address
/// comes from its name.
fn local_targets(port: u16) -> String {
    format!(
        "[[target]]\nname = \"pinned\"\ndomain = \"pinned.example\"\naddress = \"127.0.0.1\"\nport = {port}\ntests = [\"tcp\"]\n\n\
         [[target]]\nname = \"named\"\ndomain = \"named.example\"\nport = {port}\ntests = [\"dns\", \"tcp\"]\n"
    )
}

#[tokio::test]
async fn with_a_list_listed_targets_are_controlled_and_everything_else_is_403_with_the_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (dns, queries) = resolver("named.example", Ipv4Addr::LOCALHOST).await;
    let (collector, _slot) = with_list(&local_targets(port), Some(dns), |_| {}).await;

    let (status, body) =
        control(&collector, json!({"test": "tcp", "domain": "pinned.example", "address": "127.0.0.1", "port": port})).await;
    assert_eq!(status, 200, "{body}");
    let observations = body["observations"].as_array().expect("observations");
    assert_eq!((observations.len(), &observations[0]["op"]), (1, &json!("connect")), "{body}");
    assert_eq!(observations[0]["vantage"], "helper");
    assert_eq!(observations[0]["failure"], Value::Null, "{body}");

    // The probe's order: a DNS control of the name, then a connection to what it answered.
    let (status, body) = control(&collector, json!({"test": "dns", "domain": "Named.Example."})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        control(&collector, json!({"test": "tcp", "domain": "named.example", "address": "127.0.0.1", "port": port})).await;
    assert_eq!(status, 200, "{body}");

    for (request, reason, says) in [
        (
            json!({"test": "tcp", "domain": "unlisted.example", "address": "127.0.0.1", "port": port}),
            "name_not_listed",
            "`unlisted.example`",
        ),
        (json!({"test": "dns", "domain": "unlisted.example"}), "name_not_listed", "only for listed targets"),
        (
            json!({"test": "tcp", "domain": "named.example", "address": "127.0.0.2", "port": port}),
            "address_not_listed",
            "resolver does not return it",
        ),
        (
            json!({"test": "tcp", "domain": "pinned.example", "address": "127.0.0.2", "port": port}),
            "address_not_listed",
            "at 127.0.0.1, not 127.0.0.2",
        ),
        (json!({"test": "tcp", "domain": "pinned.example", "address": "127.0.0.1", "port": 22}), "port_not_listed", "not 22"),
        (
            json!({"test": "tls", "domain": "pinned.example", "address": "127.0.0.1", "port": port}),
            "test_not_listed",
            "no tls test",
        ),
        (json!({"test": "tcp", "address": "127.0.0.2", "port": port}), "address_not_listed", "no tcp endpoint"),
    ] {
        let (status, body) = control(&collector, request.clone()).await;
        assert_eq!(status, 403, "{request}: {body}");
        assert_eq!(body["reason"], reason, "{request}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(says)), "{request}: {body}");
    }
    // The DNS control's answer served the connection, and a wrong address within the refresh
    // interval asked the resolver nothing more.
    assert_eq!(queries.load(Ordering::SeqCst), 1);

    let text = collector.metrics().await;
    assert_eq!(helper_count(&text, "tcp", "executed"), Some(2.0));
    assert_eq!(helper_count(&text, "dns", "executed"), Some(1.0));
    assert_eq!(helper_count(&text, "tcp", "not_listed"), Some(5.0));
    assert_eq!(helper_count(&text, "dns", "not_listed"), Some(1.0));
    assert_eq!(helper_count(&text, "tls", "not_listed"), Some(1.0));
    assert_eq!(helper_count(&text, "tcp", "forbidden"), Some(0.0));
}

#[tokio::test]
async fn an_address_the_helper_has_not_seen_yet_is_looked_up_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (dns, queries) = resolver("named.example", Ipv4Addr::LOCALHOST).await;
    let (collector, _slot) = with_list(&local_targets(port), Some(dns), |_| {}).await;
    for _ in 0..3 {
        let request = json!({"test": "tcp", "domain": "named.example", "address": "127.0.0.1", "port": port});
        let (status, body) = control(&collector, request).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(queries.load(Ordering::SeqCst), 1, "one lookup serves the next controls");
}

/// TLS goes to any public address with a listed name (the probe's answered addresses must be
/// checked), but only on the name's TLS port.
#[tokio::test]
async fn a_tls_control_of_a_listed_name_may_go_to_an_address_nobody_resolved() {
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let targets = format!("[[target]]\nname = \"site\"\ndomain = \"site.example\"\nport = {port}\ntests = [\"dns\", \"tls\"]\n");
    let (collector, _slot) = with_list(&targets, None, |config| config.helper_timeout = Duration::from_secs(1)).await;
    drop(silent); // refused: the helper answers with what it saw
    let (status, body) =
        control(&collector, json!({"test": "tls", "domain": "site.example", "address": "127.0.0.9", "port": port})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["observations"][0]["op"], "connect", "{body}");
    let (status, body) =
        control(&collector, json!({"test": "tls", "domain": "site.example", "address": "127.0.0.9", "port": 443})).await;
    assert_eq!((status, &body["reason"]), (403, &json!("port_not_listed")), "{body}");
}

/// The helper follows the list being served: what a re-read (SIGHUP) drops is refused at once,
/// what it adds is answered.
#[tokio::test]
async fn a_reloaded_list_changes_what_the_helper_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (collector, slot) = with_list(&local_targets(port), None, |_| {}).await;
    let pinned = json!({"test": "tcp", "domain": "pinned.example", "address": "127.0.0.1", "port": port});
    let moved = json!({"test": "tcp", "domain": "moved.example", "address": "127.0.0.1", "port": port});
    assert_eq!(control(&collector, pinned.clone()).await.0, 200);
    assert_eq!(control(&collector, moved.clone()).await.0, 403);

    let next = format!(
        "[[target]]\nname = \"moved\"\ndomain = \"moved.example\"\naddress = \"127.0.0.1\"\nport = {port}\ntests = [\"tcp\"]\n"
    );
    write_list(&collector.dir.path().join("signed.json"), 2, &next);
    assert_eq!(slot.reload().expect("a good list").expect("a file").version, 2);
    let (status, body) = control(&collector, pinned).await;
    assert_eq!((status, &body["reason"]), (403, &json!("name_not_listed")), "{body}");
    assert_eq!(control(&collector, moved).await.0, 200);
}

#[tokio::test]
async fn without_a_list_only_the_standard_ports_of_a_test_are_contacted() {
    let collector = Collector::start_with(|config, _| config.danger_helper_allow_private = true).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (status, body) = control(&collector, json!({"test": "tcp", "address": "127.0.0.1", "port": port})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "non_standard_port");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("standard tcp ports (80, 443)")), "{body}");
    // 443 is standard: the helper tries it (whatever listens there on this machine).
    let (status, body) = control(&collector, json!({"test": "tcp", "address": "127.0.0.1", "port": 443})).await;
    assert_eq!(status, 200, "{body}");
    let text = collector.metrics().await;
    assert_eq!(helper_count(&text, "tcp", "not_listed"), Some(1.0));
    assert_eq!(helper_count(&text, "tcp", "executed"), Some(1.0));
}

#[tokio::test]
async fn by_default_loopback_and_private_targets_are_refused_with_403() {
    let collector = Collector::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    for address in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"] {
        let (status, body) = control(&collector, json!({"test": "tcp", "address": address, "port": port})).await;
        assert_eq!(status, 403, "{address}: {body}");
        assert_eq!(body["reason"], "non_public", "{body}");
        assert!(body["error"].as_str().expect("message").contains("does not contact"), "{body}");
    }
    let text = collector.metrics().await;
    assert_eq!(helper_count(&text, "tcp", "forbidden"), Some(5.0));
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
    // Connections queue in the backlog and are never read: a handshake that never completes.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let targets = format!("[[target]]\nname = \"slow\"\ndomain = \"example.org\"\nport = {port}\ntests = [\"tls\"]\n");
    let (collector, _slot) = with_list(&targets, None, |config| config.helper_timeout = Duration::from_secs(2)).await;
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
    assert!(helper_count(&text, "tls", "busy") >= Some(1.0), "{text}");
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
