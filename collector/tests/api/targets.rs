//! `GET /api/v1/targets`: the operator's signed list, served byte for byte with an ETag,
//! re-read on demand (SIGHUP in the binary), and the source of the `target` labels.

use std::path::Path;

use chrono::{Duration, Utc};
use vantage_collector::{App, Config};
use vantage_measurement::TestKind;
use vantage_measurement::wire::target_list::{self, LIST_PATH, ListDocument, ListKey, ListTrust, SignedList};

use crate::support::{Collector, label_values, measurement_of, probe_key, trust_anchors};

const TARGETS: &str = "[[target]]\nname = \"wikipedia\"\ndomain = \"www.wikipedia.org\"\n\n[[target]]\nname = \"signal\"\ndomain = \"signal.org\"\n";

pub fn document(version: u64, labelled: &[&str]) -> ListDocument {
    ListDocument {
        version,
        issued_at: Utc::now(),
        expires_at: Utc::now() + Duration::days(7),
        interval_secs: 3600,
        disabled_tests: vec![TestKind::Tor],
        disabled_targets: vec![],
        labelled: labelled.iter().map(|s| s.to_string()).collect(),
        targets_toml: TARGETS.into(),
    }
}

fn write_signed(path: &Path, key: &ListKey, document: &ListDocument) -> Vec<u8> {
    let bytes = serde_json::to_vec_pretty(&key.sign(document, vec![], vec![])).expect("json");
    std::fs::write(path, &bytes).expect("write signed list");
    bytes
}

async fn get(collector: &Collector, if_none_match: Option<&str>) -> reqwest::Response {
    let mut request = collector.http.get(collector.url(LIST_PATH));
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    request.send().await.expect("GET targets")
}

fn etag(response: &reqwest::Response) -> String {
    response.headers().get("etag").and_then(|v| v.to_str().ok()).expect("an ETag").to_string()
}

#[tokio::test]
async fn the_signed_list_is_served_verbatim_cached_by_etag_and_names_the_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[7; 32]);
    let path = dir.path().join("signed.json");
    let first = write_signed(&path, &key, &document(3, &["wikipedia"]));
    let mut config = Config::new("127.0.0.1:0".parse().expect("addr"), dir.path().join("data"));
    config.signed_list = Some(path.clone());
    trust_anchors(&mut config, dir.path());
    let app = App::bind(config).await.expect("builds");
    let slot = app.signed_list();
    let collector = Collector::serve(app, dir);

    let response = get(&collector, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let tag = etag(&response);
    let body = response.bytes().await.expect("body");
    assert_eq!(body.as_ref(), first.as_slice(), "byte for byte");
    // What a probe pinning the key does with it.
    let served: SignedList = serde_json::from_slice(&body).expect("envelope");
    let verified =
        target_list::verify(&served, &ListTrust { pinned: key.public_base64(), version: None }, Utc::now()).expect("verifies");
    assert_eq!(verified.document.version, 3);

    let cached = get(&collector, Some(&tag)).await;
    assert_eq!(cached.status(), 304);
    assert!(cached.bytes().await.expect("body").is_empty());

    // Only the labelled name becomes a label; the list's other target counts as `other`.
    let batch = [measurement_of("DE", 3320, "wikipedia", true), measurement_of("DE", 3320, "signal", true)];
    collector.ingest_signed(&probe_key(1), &batch).await;
    let targets = label_values(&collector.metrics().await, "target");
    assert!(targets.contains("wikipedia") && targets.contains("other") && !targets.contains("signal"), "{targets:?}");

    // A new version replaces it and its labels; the old tag no longer matches.
    let second = write_signed(&path, &key, &document(4, &["wikipedia", "signal"]));
    let reloaded = slot.reload().expect("a good list").expect("a file to re-read");
    assert_eq!(reloaded.version, 4);
    let response = get(&collector, Some(&tag)).await;
    assert_eq!(response.status(), 200);
    assert_ne!(etag(&response), tag);
    assert_eq!(response.bytes().await.expect("body").as_ref(), second.as_slice());
    collector.ingest_signed(&probe_key(1), &[measurement_of("DE", 3320, "signal", true)]).await;
    assert!(label_values(&collector.metrics().await, "target").contains("signal"));

    // A bad file changes nothing and says why.
    let tampered = String::from_utf8(second.clone()).expect("utf8").replace("signal.org", "evil.example");
    std::fs::write(&path, tampered).expect("write");
    let err = slot.reload().expect_err("tampered");
    assert!(err.to_string().contains("altered after the operator signed it"), "{err}");
    assert_eq!(get(&collector, None).await.bytes().await.expect("body").as_ref(), second.as_slice(), "the good list stays");
}

#[tokio::test]
async fn without_a_list_the_endpoint_says_so() {
    let collector = Collector::start().await;
    let response = get(&collector, None).await;
    assert_eq!(response.status(), 404);
    let answer: serde_json::Value = response.json().await.expect("JSON error");
    assert_eq!(answer["reason"], "no_target_list");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("--signed-list")), "{answer}");
}

#[tokio::test]
async fn a_bad_or_doubled_list_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[7; 32]);
    let signed = dir.path().join("signed.json");
    let mut expired = document(1, &["wikipedia"]);
    expired.expires_at = Utc::now() - Duration::minutes(1);
    write_signed(&signed, &key, &expired);
    let mut config = Config::new("127.0.0.1:0".parse().expect("addr"), dir.path().join("data"));
    config.signed_list = Some(signed.clone());
    let err = App::bind(config.clone()).await.expect_err("expired");
    assert!(err.is_config() && err.to_string().contains("expired"), "{err}");

    write_signed(&signed, &key, &document(1, &["wikipedia"]));
    let plain = dir.path().join("targets.toml");
    std::fs::write(&plain, TARGETS).expect("write");
    config.targets_file = Some(plain);
    let err = App::bind(config).await.expect_err("two lists");
    assert!(err.is_config() && err.to_string().contains("--targets and --signed-list"), "{err}");
}
