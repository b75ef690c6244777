//! The list over real HTTP on loopback: a test collector serving signed lists, and a SOCKS5
//! proxy written here to prove where the fetch went.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::Duration as Days;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vantage_measurement::TestKind;
use vantage_measurement::wire::target_list::{LIST_PATH, ListKey};

use super::*;
use crate::config::CollectorAccess;

pub(crate) const TARGETS: &str = "\
[[target]]\nname = \"wikipedia\"\ndomain = \"www.wikipedia.org\"\ncategory = \"reference\"\n\
[[target]]\nname = \"news\"\ndomain = \"news.example\"\ntests = [\"dns\", \"tls\"]\ncategory = \"news\"\n\
[[target]]\nname = \"relay\"\ndomain = \"relay.example\"\naddress = \"203.0.113.9\"\nport = 9001\ntests = [\"tor\"]\ncategory = \"vpn\"\n\
[[target]]\nname = \"retired\"\ndomain = \"retired.example\"\n";

/// This process's "now", fixed once: the lists are dated around it, and `join` (which reads the
/// clock itself) must find them current whenever the tests run.
pub(crate) fn now() -> DateTime<Utc> {
    static NOW: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *NOW.get_or_init(|| DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_default())
}

pub(crate) fn document(version: u64) -> ListDocument {
    ListDocument {
        version,
        issued_at: now() - Days::hours(1),
        expires_at: now() + Days::days(7),
        interval_secs: 21_600,
        disabled_tests: vec![],
        disabled_targets: vec![],
        labelled: vec!["wikipedia".into()],
        targets_toml: TARGETS.into(),
    }
}

pub(crate) fn signed(key: &ListKey, document: &ListDocument) -> String {
    serde_json::to_string(&key.sign(document, vec![], vec![])).expect("json")
}

/// The body served, and how many requests asked for it.
type Served = (Arc<Mutex<String>>, Arc<Mutex<usize>>);

/// A collector on loopback serving whatever body is set, counting the requests it saw.
#[derive(Clone)]
pub(crate) struct TestCollector {
    pub url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<Mutex<usize>>,
}

impl TestCollector {
    pub(crate) async fn serving(body: String) -> TestCollector {
        Self::serving_on("127.0.0.1:0", body).await
    }

    async fn serving_on(addr: &str, body: String) -> TestCollector {
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(Mutex::new(0));
        let state = (body.clone(), hits.clone());
        let app = Router::new()
            .route(
                LIST_PATH,
                get(|State((body, hits)): State<Served>| async move {
                    *hits.lock().expect("lock") += 1;
                    body.lock().expect("lock").clone()
                }),
            )
            .with_state(state);
        let listener = TcpListener::bind(addr).await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestCollector { url, body, hits }
    }

    pub(crate) fn serve(&self, body: String) {
        *self.body.lock().expect("lock") = body;
    }

    pub(crate) fn hits(&self) -> usize {
        *self.hits.lock().expect("lock")
    }
}

/// A loopback URL that refuses connections (bound, then closed).
pub(crate) async fn refusing() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    format!("http://{}", listener.local_addr().expect("addr"))
}

pub(crate) fn fetcher(collectors: Vec<String>) -> ListFetcher {
    let _ = rustls::crypto::ring::default_provider().install_default();
    ListFetcher::with_access(collectors, &CollectorAccess::default(), Duration::from_secs(5)).expect("client")
}

fn store(dir: &Path, key: &ListKey) -> ListStore {
    ListStore::open(dir, &key.public_base64(), OptOut::default())
}

fn kept_bytes(dir: &Path) -> Vec<u8> {
    fs::read(dir.join(LIST_DIR).join(SIGNED_FILE)).expect("kept list")
}

#[tokio::test]
async fn a_good_list_is_kept_and_reread_as_it_was_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[1; 32]);
    let collector = TestCollector::serving(signed(&key, &document(5))).await;
    let store = store(dir.path(), &key);
    assert!(matches!(store.last_good_at(now()), Err(ListStoreError::NoList)));

    let active = store.refresh_at(&fetcher(vec![collector.url.clone()]), now()).await.expect("accepted");
    assert_eq!(active.version, 5);
    assert_eq!(active.signer, key.fingerprint());
    assert_eq!(active.interval, Duration::from_secs(21_600));
    assert_eq!(active.labelled, vec!["wikipedia".to_string()]);
    assert_eq!(active.served_by.as_deref(), Some(collector.url.as_str()));
    let names: Vec<&str> = active.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["wikipedia", "news", "relay", "retired"]);
    assert_eq!(active.measurements(), 4 + 2 + 1 + 4);

    assert_eq!(kept_bytes(dir.path()), signed(&key, &document(5)).into_bytes(), "kept byte for byte");
    assert_eq!(store.trust().expect("trust"), ListTrust { pinned: key.public_base64(), version: Some(5) });
    let reread = store.last_good_at(now()).expect("last good");
    assert_eq!(reread, ActiveList { served_by: None, ..active });
}

#[tokio::test]
async fn refused_lists_say_why_and_leave_the_last_good_list_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[1; 32]);
    let stranger = ListKey::from_seed(&[2; 32]);
    let collector = TestCollector::serving(signed(&key, &document(5))).await;
    let store = store(dir.path(), &key);
    let fetcher = fetcher(vec![collector.url.clone()]);
    store.refresh_at(&fetcher, now()).await.expect("first list");
    let good = kept_bytes(dir.path());

    let mut tampered = key.sign(&document(6), vec![], vec![]);
    tampered.document = tampered.document.replace("21600", "60");
    let mut unsigned = key.sign(&document(6), vec![], vec![]);
    unsigned.signature = String::new();
    let mut expired = document(6);
    expired.expires_at = now() - Days::seconds(1);
    let revoked = key.sign(&document(6), vec![], vec![key.revoke()]);
    let cases = [
        (serde_json::to_string(&tampered).expect("json"), ListError::Tampered),
        (serde_json::to_string(&unsigned).expect("json"), ListError::BadEncoding("signature")),
        (signed(&key, &expired), ListError::Expired(expired.expires_at)),
        (signed(&key, &document(4)), ListError::Older { got: 4, have: 5 }),
        (signed(&stranger, &document(6)), ListError::UnknownSigner { signer: stranger.fingerprint(), pinned: key.fingerprint() }),
        (serde_json::to_string(&revoked).expect("json"), ListError::Revoked(key.fingerprint())),
    ];
    for (body, expected) in cases {
        collector.serve(body);
        let err = store.refresh_at(&fetcher, now()).await.expect_err("refused");
        assert_eq!(err.refusal(), Some(&expected), "{err}");
        assert!(err.to_string().contains(&expected.to_string()), "the message carries the reason: {err}");
        assert_eq!(kept_bytes(dir.path()), good, "after {expected:?} the last good list is untouched");
        assert_eq!(store.last_good_at(now()).expect("still usable").version, 5);
    }

    // A plain targets file, not a signed list at all.
    collector.serve(TARGETS.to_string());
    let err = store.refresh_at(&fetcher, now()).await.expect_err("unsigned text");
    assert!(matches!(err.refusal(), Some(ListError::Malformed(_))), "{err}");
    assert_eq!(store.trust().expect("trust").version, Some(5));
}

#[tokio::test]
async fn a_rotated_key_is_followed_and_the_old_one_is_then_a_stranger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k0 = ListKey::from_seed(&[1; 32]);
    let k1 = ListKey::from_seed(&[3; 32]);
    let rotated = serde_json::to_string(&k1.sign(&document(7), vec![k0.endorse(&k1)], vec![])).expect("json");
    let collector = TestCollector::serving(rotated).await;
    let store = store(dir.path(), &k0);
    let fetcher = fetcher(vec![collector.url.clone()]);

    let active = store.refresh_at(&fetcher, now()).await.expect("endorsed by the pinned key");
    assert_eq!(active.signer, k1.fingerprint());
    assert_eq!(store.trust().expect("trust"), ListTrust { pinned: k1.public_base64(), version: Some(7) });

    collector.serve(signed(&k1, &document(8)));
    assert_eq!(store.refresh_at(&fetcher, now()).await.expect("new key alone").version, 8);

    collector.serve(signed(&k0, &document(9)));
    let err = store.refresh_at(&fetcher, now()).await.expect_err("the old key no longer signs");
    assert!(matches!(err.refusal(), Some(ListError::UnknownSigner { .. })), "{err}");
}

#[tokio::test]
async fn a_collector_that_refuses_connections_falls_back_to_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[1; 32]);
    let second = TestCollector::serving(signed(&key, &document(5))).await;
    let first = refusing().await;
    let store = store(dir.path(), &key);
    let active = store.refresh_at(&fetcher(vec![first.clone(), second.url.clone()]), now()).await.expect("from the second");
    assert_eq!(active.served_by.as_deref(), Some(second.url.as_str()));
    assert_eq!(second.hits(), 1);
    // The daemon's uploads follow the collector that answered.
    let plan = crate::daemon::Plan::from(active);
    assert_eq!(plan.collector.as_deref(), Some(second.url.as_str()));

    // Both down: the error names each collector, and the kept list still serves.
    let err = store.refresh_at(&fetcher(vec![first.clone(), refusing().await]), now()).await.expect_err("none");
    let ListFetchError::NoGoodList(attempts) = &err else { panic!("{err}") };
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].collector, first);
    assert!(attempts.iter().all(|a| matches!(a.error, AttemptError::Unreachable(_))), "{err}");
    assert_eq!(store.last_good_at(now()).expect("kept").version, 5);
}

#[tokio::test]
async fn current_falls_back_to_the_last_good_list_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[1; 32]);
    let collector = TestCollector::serving(signed(&key, &document(5))).await;
    let store = store(dir.path(), &key);
    let fetcher = fetcher(vec![collector.url.clone()]);
    let fresh = store.current_at(&fetcher, now()).await;
    assert!(fresh.refresh_error.is_none());
    assert_eq!(fresh.list.expect("fresh").served_by.as_deref(), Some(collector.url.as_str()));

    collector.serve(signed(&key, &document(4)));
    let kept = store.current_at(&fetcher, now()).await;
    let reason = kept.refresh_error.expect("refused");
    assert_eq!(reason.refusal(), Some(&ListError::Older { got: 4, have: 5 }));
    let list = kept.list.expect("the last good list");
    assert_eq!((list.version, list.served_by), (5, None));
}

#[tokio::test]
async fn uploads_go_through_the_socks5_proxy_too() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let real = listener.local_addr().expect("addr");
    let report = serde_json::json!({ "accepted": 1, "duplicates": 0, "rejected": [] }).to_string();
    let app = Router::new().route("/api/v1/measurements", axum::routing::post(move || async move { report }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (proxy, asked) = socks5_proxy(HashMap::from([("collector.invalid".to_string(), real)])).await;
    let proxy: crate::config::Socks5Proxy = proxy.parse().expect("HOST:PORT");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("http://collector.invalid:{}", real.port());
    let access = CollectorAccess { socks5: Some(&proxy), danger_plaintext: true, ..CollectorAccess::default() };
    let http = crate::config::collector_client(std::slice::from_ref(&url), &access, Duration::from_secs(5)).expect("client");
    let uploader = crate::upload::Uploader::new(&url, http, Duration::from_secs(5));
    let stored = uploader.submit(&["{}".to_string()], 0).await.expect("through the proxy");
    assert_eq!(stored.accepted, 1);
    assert_eq!(*asked.lock().expect("lock"), vec![format!("collector.invalid:{}", real.port())]);
}

#[tokio::test]
async fn damaged_files_on_disk_say_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[1; 32]);
    let collector = TestCollector::serving(signed(&key, &document(5))).await;
    let store = store(dir.path(), &key);
    let fetcher = fetcher(vec![collector.url.clone()]);
    store.refresh_at(&fetcher, now()).await.expect("accepted");

    let list = dir.path().join(LIST_DIR).join(SIGNED_FILE);
    fs::write(&list, String::from_utf8(kept_bytes(dir.path())).expect("utf-8").replace("21600", "60")).expect("edit");
    let err = store.last_good_at(now()).expect_err("edited on disk");
    assert!(matches!(&err, ListStoreError::Damaged { reason, .. } if reason == &ListError::Tampered.to_string()), "{err}");
    // The next good list replaces it.
    assert_eq!(store.refresh_at(&fetcher, now()).await.expect("replaced").version, 5);
    assert_eq!(store.last_good_at(now()).expect("good again").version, 5);

    fs::write(dir.path().join(LIST_DIR).join(TRUST_FILE), "{").expect("truncate");
    let err = store.refresh_at(&fetcher, now()).await.expect_err("trust unreadable");
    assert!(matches!(err, ListFetchError::Store(ListStoreError::DamagedTrust { .. })), "{err}");
    assert!(err.to_string().ends_with("delete it to start again from the key in the config file"), "{err}");
}

#[tokio::test]
async fn an_expired_last_good_list_is_not_measured_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[1; 32]);
    let collector = TestCollector::serving(signed(&key, &document(5))).await;
    let store = store(dir.path(), &key);
    store.refresh_at(&fetcher(vec![collector.url.clone()]), now()).await.expect("accepted");
    let later = now() + Days::days(8);
    let err = store.last_good_at(later).expect_err("expired");
    assert!(matches!(err, ListStoreError::Expired { version: 5, at } if at == document(5).expires_at), "{err}");
    assert!(err.to_string().contains("measuring nothing"), "{err}");
}

#[tokio::test]
async fn a_list_kept_under_another_invitation_is_not_this_networks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = ListKey::from_seed(&[1; 32]);
    let new = ListKey::from_seed(&[4; 32]);
    let collector = TestCollector::serving(signed(&old, &document(50))).await;
    store(dir.path(), &old).refresh_at(&fetcher(vec![collector.url.clone()]), now()).await.expect("old network");

    let rejoined = store(dir.path(), &new);
    assert_eq!(rejoined.trust().expect("trust"), ListTrust { pinned: new.public_base64(), version: None });
    assert!(matches!(rejoined.last_good_at(now()), Err(ListStoreError::NoList)));
    // The new network's list starts at its own version, however high the old one was.
    collector.serve(signed(&new, &document(1)));
    assert_eq!(rejoined.refresh_at(&fetcher(vec![collector.url.clone()]), now()).await.expect("new network").version, 1);
}

#[test]
fn kill_switches_and_opt_outs_narrow_the_list() {
    let targets = targets::parse(TARGETS, "t").expect("targets");
    let mut doc = document(1);
    doc.disabled_tests = vec![TestKind::Quic];
    doc.disabled_targets = vec!["retired".into()];
    let opt_out = OptOut { tests: vec![TestKind::Dns], categories: vec!["vpn".into()] };
    let chosen = select(&doc, targets, &opt_out);
    let summary: Vec<(&str, Vec<TestKind>)> = chosen.iter().map(|t| (t.name.as_str(), t.tests.clone())).collect();
    assert_eq!(
        summary,
        [("wikipedia", vec![TestKind::Tcp, TestKind::Tls]), ("news", vec![TestKind::Tls])],
        "quic off by the list, dns by the volunteer, the vpn category and the retired target gone"
    );

    // A target left with no test at all is dropped, not run empty.
    let only_tor = OptOut { tests: vec![TestKind::Tor], categories: vec![] };
    let chosen = select(&document(1), targets::parse(TARGETS, "t").expect("targets"), &only_tor);
    assert!(chosen.iter().all(|t| t.name != "relay"));
}

#[tokio::test]
async fn an_oversized_list_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[1; 32]);
    let collector = TestCollector::serving("x".repeat(MAX_LIST_BYTES + 1)).await;
    let err = store(dir.path(), &key).refresh_at(&fetcher(vec![collector.url.clone()]), now()).await.expect_err("large");
    let ListFetchError::NoGoodList(attempts) = &err else { panic!("{err}") };
    assert!(matches!(attempts[0].error, AttemptError::TooLarge), "{err}");
}

/// A minimal SOCKS5 server (RFC 1928: no authentication, CONNECT only). It resolves names from
/// its own table, so a name only it knows proves the request came through it, and it records
/// each destination it was asked for.
async fn socks5_proxy(names: HashMap<String, SocketAddr>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = asked.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (names, seen) = (names.clone(), seen.clone());
            tokio::spawn(async move {
                let _ = socks5_session(client, &names, &seen).await;
            });
        }
    });
    (addr, asked)
}

async fn socks5_session(
    mut client: TcpStream,
    names: &HashMap<String, SocketAddr>,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    assert_eq!(head[0], 5, "SOCKS version 5");
    assert!(methods.contains(&0), "offers no-authentication");
    client.write_all(&[5, 0]).await?;
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    assert_eq!(request[..2], [5, 1], "CONNECT");
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        other => panic!("address type {other} not used by this test"),
    };
    let port = client.read_u16().await?;
    seen.lock().expect("lock").push(format!("{host}:{port}"));
    let target = match names.get(&host) {
        Some(addr) => *addr,
        None => format!("{host}:{port}").parse().map_err(|_| std::io::Error::other("unknown name"))?,
    };
    let mut upstream = TcpStream::connect(target).await?;
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[tokio::test]
async fn with_socks5_the_list_is_fetched_through_the_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[1; 32]);
    let collector = TestCollector::serving(signed(&key, &document(5))).await;
    let real: SocketAddr = collector.url.trim_start_matches("http://").parse().expect("addr");
    // A name under .invalid resolves nowhere (RFC 6761), except in this proxy.
    let (proxy, asked) = socks5_proxy(HashMap::from([("collector.invalid".to_string(), real)])).await;
    let url = format!("http://collector.invalid:{}", real.port());
    let proxy: crate::config::Socks5Proxy = proxy.parse().expect("HOST:PORT");
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Plaintext to a name that is not loopback: a lab, as far as the transport rule can tell.
    let access = CollectorAccess { socks5: Some(&proxy), danger_plaintext: true, ..CollectorAccess::default() };
    let fetcher = ListFetcher::with_access(vec![url.clone()], &access, Duration::from_secs(5)).expect("client");

    let active = store(dir.path(), &key).refresh_at(&fetcher, now()).await.expect("through the proxy");
    assert_eq!(active.version, 5);
    assert_eq!(active.served_by.as_deref(), Some(url.as_str()));
    assert_eq!(*asked.lock().expect("lock"), vec![format!("collector.invalid:{}", real.port())], "the proxy resolved the name");
    assert_eq!(collector.hits(), 1);
}
