//! The uploader registers its key when told, through a collector double on loopback that speaks
//! the real contract (the challenge is solved and verified for real, at a small difficulty).

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use chrono::Utc;
use vantage_measurement::example;
use vantage_measurement::wire::registration::RegistrationRequest;
use vantage_measurement::wire::{IngestReport, KEY_HEADER, KeyStanding, SIGNATURE_HEADER, verify_batch};

use super::*;
use crate::spool::{Spool, scratch};
use crate::upload::Uploader;

/// How the double behaves, and what it saw.
#[derive(Default)]
struct Double {
    /// Refuse registrations with 503.
    refuse: bool,
    /// Ask for this much work (default 8 bits).
    difficulty_bits: Option<u8>,
    /// Say `unregistered` even after a registration (a collector whose store was reset).
    forgetful: bool,
    registered: Mutex<HashSet<String>>,
    attempts: AtomicUsize,
}

const SALT: &str = "c2FsdCBvZiB0aGUgZG91Ymxl";

async fn measurements(State(double): State<Arc<Double>>, headers: HeaderMap, body: Bytes) -> Json<IngestReport> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let key = verify_batch(&header(KEY_HEADER), &header(SIGNATURE_HEADER), &body).expect("a signed batch");
    let known = double.registered.lock().unwrap_or_else(PoisonError::into_inner).contains(key.as_str());
    let standing = if known && !double.forgetful { KeyStanding::Untrusted } else { KeyStanding::Unregistered };
    Json(IngestReport { accepted: 1, key: Some(standing), ..IngestReport::default() })
}

async fn challenge(State(double): State<Arc<Double>>) -> Json<RegistrationChallenge> {
    Json(RegistrationChallenge { salt: SALT.into(), difficulty_bits: double.difficulty_bits.unwrap_or(8) })
}

async fn keys(State(double): State<Arc<Double>>, Json(request): Json<RegistrationRequest>) -> StatusCode {
    double.attempts.fetch_add(1, Ordering::SeqCst);
    if double.refuse {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let ours = RegistrationChallenge { salt: SALT.into(), difficulty_bits: double.difficulty_bits.unwrap_or(8) };
    let key = registration::verify(&request, &ours).expect("a valid proof");
    double.registered.lock().unwrap_or_else(PoisonError::into_inner).insert(key.as_str().to_string());
    StatusCode::CREATED
}

async fn serve(double: Double) -> (String, Arc<Double>) {
    let double = Arc::new(double);
    let router = axum::Router::new()
        .route("/api/v1/measurements", post(measurements))
        .route(CHALLENGE_PATH, get(challenge))
        .route(REGISTER_PATH, post(keys))
        .with_state(Arc::clone(&double));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, double)
}

/// One measurement waiting in a fresh spool file.
fn spool_one(dir: &Path, n: usize) {
    let line = example::tls_reset(Utc::now()).to_json_line().expect("serialise") + "\n";
    std::fs::write(dir.join(format!("spool/{n}.ndjson")), line).expect("write spool file");
}

/// A client that ignores proxy settings (ring installed first: reqwest has no default provider).
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().expect("client")
}

fn uploader(url: &str, key: &Arc<ProbeKey>, data_dir: &Path) -> Uploader {
    let http = http();
    let key = ProbeKey::from_seed(key.seed());
    Uploader::new(url, http, Duration::from_secs(5)).with_key(key).registering(data_dir)
}

fn record(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(RECORD_FILE)).unwrap_or_default()
}

/// What `run` does: flush, then register if the report asks.
async fn flush(uploader: &Uploader, spool: &Spool, dir: &Path, n: usize) -> crate::upload::FlushReport {
    spool_one(dir, n);
    let report = uploader.flush(spool).await;
    uploader.register_if_asked(report.key).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!((report.accepted, report.remaining), (1, 0), "the upload itself always goes through");
    report
}

#[tokio::test]
async fn told_it_is_unregistered_the_probe_registers_once_and_remembers() {
    let (dir, spool) = scratch();
    let (url, double) = serve(Double::default()).await;
    let key = Arc::new(ProbeKey::from_seed(&[1; 32]));
    let first = uploader(&url, &key, dir.path());
    let report = flush(&first, &spool, dir.path(), 0).await;
    assert_eq!(report.key, Some(KeyStanding::Unregistered), "the report that asked for it");
    assert_eq!(double.attempts.load(Ordering::SeqCst), 1);
    assert_eq!(record(dir.path()), format!("{} {url}\n", key.key_id()));

    let report = flush(&first, &spool, dir.path(), 1).await;
    assert_eq!(report.key, Some(KeyStanding::Untrusted), "registered, now earning trust");
    assert_eq!(double.attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_remembered_registration_is_not_repeated_even_when_asked() {
    let (dir, spool) = scratch();
    let (url, double) = serve(Double { forgetful: true, ..Double::default() }).await;
    let key = Arc::new(ProbeKey::from_seed(&[2; 32]));
    flush(&uploader(&url, &key, dir.path()), &spool, dir.path(), 0).await;
    // A later run (a new process) of the same probe: the record says it is done.
    let report = flush(&uploader(&url, &key, dir.path()), &spool, dir.path(), 1).await;
    assert_eq!(report.key, Some(KeyStanding::Unregistered));
    assert_eq!(double.attempts.load(Ordering::SeqCst), 1, "once per key and collector");

    // A new key (probe.key deleted) registers anew, and the old key's line goes.
    let new_key = Arc::new(ProbeKey::from_seed(&[3; 32]));
    flush(&uploader(&url, &new_key, dir.path()), &spool, dir.path(), 2).await;
    assert_eq!(double.attempts.load(Ordering::SeqCst), 2);
    assert_eq!(record(dir.path()), format!("{} {url}\n", new_key.key_id()));

    // After a deletion request the collector forgot the key: so does the record.
    forget_registrations(dir.path()).expect("forget");
    assert_eq!(record(dir.path()), "");
    forget_registrations(dir.path()).expect("nothing to forget is fine");
}

#[tokio::test]
async fn a_failed_registration_loses_no_upload_and_waits_before_trying_again() {
    let (dir, spool) = scratch();
    let (url, double) = serve(Double { refuse: true, ..Double::default() }).await;
    let key = Arc::new(ProbeKey::from_seed(&[4; 32]));
    let uploader = uploader(&url, &key, dir.path());
    flush(&uploader, &spool, dir.path(), 0).await;
    flush(&uploader, &spool, dir.path(), 1).await;
    assert_eq!(double.attempts.load(Ordering::SeqCst), 1, "not again within the hour");
    assert_eq!(record(dir.path()), "", "nothing remembered");
    assert!(spool.pending().expect("spool").is_empty(), "both batches delivered");
}

#[tokio::test]
async fn a_collector_asking_too_much_work_is_refused_without_trying() {
    let (dir, spool) = scratch();
    let (url, double) = serve(Double { difficulty_bits: Some(registration::MAX_DIFFICULTY_BITS + 1), ..Double::default() }).await;
    let key = Arc::new(ProbeKey::from_seed(&[5; 32]));
    let registration = Registration::new(dir.path());
    let http = http();
    let err = registration.ensure(&http, &url, &key, Duration::from_secs(5)).await.expect_err("too much work");
    assert!(matches!(err, RegisterError::Work(RegistrationError::TooDifficult(_))), "{err}");
    assert_eq!(double.attempts.load(Ordering::SeqCst), 0);
    // And it is deferred, not retried at once.
    assert_eq!(registration.ensure(&http, &url, &key, Duration::from_secs(5)).await.expect("deferred"), Registered::Deferred);
    flush(&uploader(&url, &key, dir.path()), &spool, dir.path(), 0).await;
}
