use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use chrono::Utc;
use flate2::read::GzDecoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vantage_measurement::example;

use super::*;
use crate::spool::scratch;

/// How the test collector answers one POST.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Answer {
    /// 200 with every line accepted.
    fn stored(lines: &[String]) -> Answer {
        let body = serde_json::json!({ "accepted": lines.len(), "duplicates": 0, "rejected": [] }).to_string();
        Answer { status: 200, headers: Vec::new(), body }
    }

    /// An error status with the collector's JSON body.
    fn error(status: u16, reason: &str) -> Answer {
        let body = serde_json::json!({ "error": "refused by the test", "reason": reason }).to_string();
        Answer { status, headers: Vec::new(), body }
    }

    fn retry_after(mut self, value: &str) -> Answer {
        self.headers.push(("retry-after", value.to_string()));
        self
    }
}

type Batches = Arc<Mutex<Vec<Vec<String>>>>;

/// A collector on loopback answering the n-th POST (from 0) with `answer(n, lines)`; it
/// records the lines of every batch it was sent.
async fn collector(answer: impl Fn(usize, &[String]) -> Answer + Send + Sync + 'static) -> (String, Batches) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let batches: Batches = Arc::default();
    let seen = Arc::clone(&batches);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let lines = read_batch(stream).await;
            let Some((lines, mut stream)) = lines else { continue };
            let n = {
                let mut seen = seen.lock().expect("lock");
                seen.push(lines.clone());
                seen.len() - 1
            };
            let a = answer(n, &lines);
            let extra: String = a.headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
            let head = format!(
                "HTTP/1.1 {} Test\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
                a.status,
                a.body.len()
            );
            let _ = stream.write_all(format!("{head}{}", a.body).as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (url, batches)
}

/// Read one request and inflate its body into lines.
async fn read_batch(mut stream: TcpStream) -> Option<(Vec<String>, TcpStream)> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok())?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let mut text = String::new();
    GzDecoder::new(&body[..]).read_to_string(&mut text).ok()?;
    Some((text.lines().map(str::to_string).collect(), stream))
}

fn uploader(url: &str) -> Uploader {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    Uploader::new(url, http, Duration::from_secs(5))
}

/// A spool holding `sizes[i]` measurements in file `<i>.ndjson` (so they sort in order).
fn spool_with(sizes: &[usize]) -> (tempfile::TempDir, Spool, Vec<PathBuf>) {
    let (dir, spool) = scratch();
    let files = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let path = dir.path().join(format!("spool/{i}.ndjson"));
            let lines: String =
                (0..n).map(|_| example::tls_reset(Utc::now()).to_json_line().expect("serialise") + "\n").collect();
            fs::write(&path, lines).expect("write");
            path
        })
        .collect();
    (dir, spool, files)
}

/// What a flush did to a spool of `sizes` files, against a collector answering with `answer`.
struct Flushed {
    dir: tempfile::TempDir,
    spool: Spool,
    files: Vec<PathBuf>,
    report: FlushReport,
    batches: usize,
}

async fn flush_against(sizes: &[usize], answer: impl Fn(usize, &[String]) -> Answer + Send + Sync + 'static) -> Flushed {
    let (dir, spool, files) = spool_with(sizes);
    let (url, batches) = collector(answer).await;
    let report = uploader(&url).flush(&spool).await;
    let batches = batches.lock().expect("lock").len();
    Flushed { dir, spool, files, report, batches }
}

impl Flushed {
    /// Every spool file is still there, waiting.
    fn all_kept(&self) -> bool {
        self.spool.pending().expect("pending") == self.files
    }

    /// The entries under `spool/rejected/`.
    fn quarantined(&self) -> Vec<serde_json::Value> {
        let mut entries = Vec::new();
        for file in fs::read_dir(self.dir.path().join("spool/rejected")).expect("rejected/") {
            let text = fs::read_to_string(file.expect("entry").path()).expect("read");
            entries.extend(text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")));
        }
        entries
    }
}

#[tokio::test]
async fn a_batch_refused_for_good_is_quarantined_and_the_next_is_delivered() {
    // The first file is two batches; the collector refuses the first batch as too large.
    let f = flush_against(
        &[BATCH_LINES + 1, 1],
        |n, lines| {
            if n == 0 { Answer::error(413, "too_large") } else { Answer::stored(lines) }
        },
    )
    .await;

    assert!(f.report.error.is_none(), "{:?}", f.report.error);
    assert_eq!((f.report.accepted, f.report.rejected, f.report.remaining), (2, BATCH_LINES, 0));
    assert_eq!(f.batches, 3, "the flush went on after the refusal");
    assert!(f.spool.pending().expect("pending").is_empty(), "both files answered for, both removed");
    assert!(f.files.iter().all(|file| !file.exists()));
    let kept = f.quarantined();
    assert_eq!(kept.len(), BATCH_LINES, "the refused batch is kept, line by line");
    let reason = kept[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("HTTP 413") && reason.contains("too_large"), "{reason}");
    let first_line = fs::read_to_string(f.dir.path().join("spool/rejected/0.ndjson")).expect("quarantine file");
    assert!(first_line.contains("\"measurement\""), "{first_line}");
}

#[tokio::test]
async fn a_busy_collector_leaves_everything_in_the_spool() {
    let f = flush_against(&[2, 3], |_, _| Answer::error(503, "busy")).await;

    let error = f.report.error.as_ref().expect("the flush stopped");
    assert_eq!(error.fault(), Fault::Transient, "{error}");
    assert_eq!((f.report.accepted, f.report.rejected, f.report.remaining), (0, 0, 5));
    assert_eq!(f.batches, 1, "no batch is sent after the collector said it is busy");
    assert!(f.all_kept(), "every file waits for the next run");
    assert_eq!(spool::read_lines(&f.files[1]).expect("read").len(), 3);
    assert!(f.quarantined().is_empty(), "nothing is quarantined for a busy collector");
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_once() {
    let f =
        flush_against(&[2], |n, lines| if n == 0 { Answer::error(503, "busy").retry_after("0") } else { Answer::stored(lines) })
            .await;

    assert!(f.report.error.is_none(), "{:?}", f.report.error);
    assert_eq!((f.report.accepted, f.batches), (2, 2), "sent, told to wait, sent again");
    assert!(f.spool.pending().expect("pending").is_empty());
}

#[tokio::test]
async fn a_long_retry_after_ends_the_flush_and_keeps_the_batch() {
    let f = flush_against(&[2], |_, _| Answer::error(429, "rate_limited").retry_after("3600")).await;

    let error = f.report.error.as_ref().expect("the flush stopped");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3600)));
    assert!(error.to_string().contains("wait 3600 s"), "{error}");
    assert_eq!(f.batches, 1, "an hour is not waited out");
    assert!(f.all_kept());
}

#[tokio::test]
async fn a_refusal_of_the_probe_itself_quarantines_nothing() {
    // A wrong --collector URL: every batch would get the same 404.
    let f = flush_against(&[2, 1], |_, _| Answer::error(404, "not_found")).await;

    let error = f.report.error.as_ref().expect("the flush stopped");
    assert_eq!(error.fault(), Fault::Setup, "{error}");
    assert_eq!((f.report.remaining, f.batches), (3, 1));
    assert!(f.all_kept());
    assert!(f.quarantined().is_empty());
}

#[tokio::test]
async fn an_unreachable_collector_is_transient() {
    let (_dir, spool, files) = spool_with(&[1]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let report = uploader(&format!("http://{closed}")).flush(&spool).await;

    let error = report.error.expect("the flush stopped");
    assert_eq!(error.fault(), Fault::Transient);
    assert!(error.to_string().starts_with("collector unreachable"), "{error}");
    assert_eq!(spool.pending().expect("pending"), files);
}

#[tokio::test]
async fn a_spool_failure_is_reported_as_local_not_as_the_collector() {
    // The collector refuses the batch, but its quarantine can't be written on this machine.
    let (dir, spool, files) = spool_with(&[2]);
    let rejected = dir.path().join("spool/rejected");
    fs::remove_dir(&rejected).expect("rmdir");
    fs::write(&rejected, b"not a directory").expect("write");
    let (url, _) = collector(|_, _| Answer::error(422, "invalid")).await;
    let report = uploader(&url).flush(&spool).await;

    let error = report.error.expect("the flush stopped");
    assert_eq!(error.fault(), Fault::Local, "{error}");
    assert!(!error.to_string().contains("collector"), "{error}");
    assert_eq!((report.rejected, report.remaining), (0, 2), "nothing was set aside, everything waits");
    assert_eq!(spool.pending().expect("pending"), files);
}

#[test]
fn statuses_are_sorted_by_whose_fault_they_are() {
    let fault = |status: u16| UploadError::from_status(StatusCode::from_u16(status).expect("status"), "", None).fault();
    for status in [408, 429, 500, 502, 503, 504] {
        assert_eq!(fault(status), Fault::Transient, "{status}");
    }
    for status in [400, 413, 422] {
        assert_eq!(fault(status), Fault::Batch, "{status}");
    }
    for status in [401, 403, 404, 405, 415, 300] {
        assert_eq!(fault(status), Fault::Setup, "{status}");
    }
}

#[test]
fn the_collectors_reason_is_kept_and_other_bodies_are_cut_short() {
    assert_eq!(refusal_message(r#"{"error":"batch too large","reason":"too_large"}"#), "too_large: batch too large");
    assert_eq!(refusal_message(r#"{"error":"busy"}"#), "busy");
    assert_eq!(refusal_message(&"x".repeat(1000)).len(), MESSAGE_CHARS);
}

#[test]
fn retry_after_takes_seconds_or_a_date() {
    let headers = |value: &str| {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, value.parse().expect("header value"));
        h
    };
    assert_eq!(retry_after(&headers("120")), Some(Duration::from_secs(120)));
    assert_eq!(retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT")), Some(Duration::ZERO), "a past date is no wait");
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc2822();
    assert!(retry_after(&headers(&later)).is_some_and(|d| d > Duration::from_secs(3000)));
    assert_eq!(retry_after(&headers("soon")), None);
    assert_eq!(retry_after(&HeaderMap::new()), None);
}

#[tokio::test]
async fn a_flush_stopped_midway_resumes_where_it_stopped() {
    // Three batches in one run; the collector takes two, then asks for an hour.
    let f = flush_against(&[2 * BATCH_LINES + 3], |n, lines| {
        if n < 2 { Answer::stored(lines) } else { Answer::error(429, "rate_limited").retry_after("3600") }
    })
    .await;
    assert_eq!((f.report.accepted, f.report.remaining, f.batches), (2 * BATCH_LINES, 3, 3));
    let pending = f.spool.pending().expect("pending");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(spool::read_lines(&pending[0]).expect("read").len(), 3, "only the unanswered rest waits");

    // The next flush sends the rest, not the answered part again.
    let (url, batches) = collector(|_, lines| Answer::stored(lines)).await;
    let report = uploader(&url).flush(&f.spool).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(report.accepted, 3);
    assert_eq!(batches.lock().expect("lock").iter().map(Vec::len).collect::<Vec<_>>(), [3]);
    assert!(f.spool.pending().expect("pending").is_empty());
}

/// The real collector, in-process on loopback, with `limits`; its base URL.
async fn real_collector(limits: vantage_collector::limits::Settings) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = vantage_collector::Config::new("127.0.0.1:0".parse().expect("addr"), dir.path().join("data"));
    config.limits = limits;
    let app = vantage_collector::App::bind(config).await.expect("collector builds");
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.serve(std::future::pending()));
    (url, dir)
}

/// `vantage_collector_rate_limited_total{endpoint="ingest",scope="key"}` of the collector at `url`.
async fn key_refusals(url: &str) -> f64 {
    let text = reqwest::Client::builder().no_proxy().build().expect("client");
    let text = text.get(format!("{url}/metrics")).send().await.expect("GET").text().await.expect("text");
    text.lines()
        .filter(|l| l.starts_with("vantage_collector_rate_limited_total{"))
        .find(|l| l.contains("endpoint=\"ingest\"") && l.contains("scope=\"key\""))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .expect("the series")
}

fn key_limit(rate: &str) -> vantage_collector::limits::Settings {
    vantage_collector::limits::Settings { ingest_per_key: rate.parse().expect("rate"), ..Default::default() }
}

#[tokio::test]
async fn over_a_real_collectors_key_limit_the_rest_stays_in_the_spool_unsent() {
    // Two batches a minute: the third is refused with a 30 s wait, more than a flush waits out.
    let (url, _collector) = real_collector(key_limit("2/min")).await;
    let (_dir, spool, files) = spool_with(&[2 * BATCH_LINES, 1]);
    let report = uploader(&url).with_key(ProbeKey::from_seed(&[4; 32])).flush(&spool).await;

    let error = report.error.expect("the flush stopped");
    assert_eq!(error.fault(), Fault::Transient, "{error}");
    assert!(error.to_string().contains("HTTP 429") && error.to_string().contains("rate_limited"), "{error}");
    assert!(error.retry_after().is_some_and(|wait| wait > MAX_RETRY_WAIT && wait <= Duration::from_secs(30)), "{error}");
    assert_eq!((report.accepted, report.remaining), (2 * BATCH_LINES, 1));
    assert_eq!(spool.pending().expect("pending"), files[1..], "the refused batch waits in the spool");
    assert_eq!(key_refusals(&url).await, 1.0, "refused once, and not asked again before the wait");
}

#[tokio::test]
async fn a_real_collectors_short_retry_after_is_waited_out_before_the_batch_goes_again() {
    // One batch a second: the second is refused with `Retry-After: 1`, waited out, then taken.
    let (url, _collector) = real_collector(key_limit("1/s")).await;
    let (_dir, spool, _files) = spool_with(&[BATCH_LINES + 1]);
    let report = uploader(&url).with_key(ProbeKey::from_seed(&[5; 32])).flush(&spool).await;

    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!((report.accepted, report.remaining), (BATCH_LINES + 1, 0));
    assert!(spool.pending().expect("pending").is_empty());
    // Sent again before the second was up, it would have been refused a second time.
    assert_eq!(key_refusals(&url).await, 1.0);
}
