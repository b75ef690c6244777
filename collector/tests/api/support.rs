//! A real collector on 127.0.0.1:0 with its store in a temporary directory, and a tiny client.
//!
//! Keys: [`probe_key`] `1..=ANCHORS` are on the test collector's `--trusted-keys` list, the
//! operator's anchor probes, so their measurements count at once (what most tests are about);
//! [`newcomer_key`] is on no list and must register and earn trust ([`crate::trust`]).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vantage_collector::clock::ManualClock;
use vantage_collector::{App, Config, ServeError};
use vantage_measurement::wire::{KEY_HEADER, ProbeKey, SIGNATURE_HEADER, SPOOL_PENDING_HEADER};
use vantage_measurement::{Measurement, Mechanism, Status, example};

/// A running collector. Dropping it aborts the server; [`Collector::stop`] shuts down cleanly.
pub struct Collector {
    pub base: String,
    pub http: reqwest::Client,
    pub dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Collector {
    pub async fn start() -> Collector {
        Self::start_with(|_, _| {}).await
    }

    /// Start with `edit` applied to a default test config (loopback, port 0, temp store, the
    /// anchor keys trusted).
    pub async fn start_with(edit: impl FnOnce(&mut Config, &Path)) -> Collector {
        let (config, dir) = test_config(edit);
        let app = App::bind(config).await.expect("collector builds");
        Self::serve(app, dir)
    }

    /// Start with `clock` as the collector's "now", and `edit` applied as in [`Self::start_with`].
    pub async fn start_at(clock: Arc<ManualClock>, edit: impl FnOnce(&mut Config, &Path)) -> Collector {
        let (config, dir) = test_config(edit);
        let app = App::bind_with_clock(config, clock).await.expect("collector builds");
        Self::serve(app, dir)
    }

    /// Serve an already built app.
    pub fn serve(app: App, dir: TempDir) -> Collector {
        Self::serve_with_client(app, dir, http_client())
    }

    /// Serve an already built app, talking to it with `http` (a client that trusts its CA).
    pub fn serve_with_client(app: App, dir: TempDir, http: reqwest::Client) -> Collector {
        let base = format!("{}://{}", app.scheme(), app.local_addr());
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(async move {
            let _ = stop.await;
        }));
        Collector { base, http, dir, shutdown: Some(shutdown), server: Some(server) }
    }

    /// Start over HTTPS with a certificate for 127.0.0.1 from `ca` (written to `server.crt` /
    /// `server.key` in the temporary directory), `edit` applied as in [`start_with`](Self::start_with).
    pub async fn start_tls_with(ca: &TestCa, edit: impl FnOnce(&mut Config, &Path)) -> Collector {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = ca.write_pair(dir.path(), "server");
        let mut config = Config::new("127.0.0.1:0".parse().expect("addr"), dir.path().join("data"));
        config.fleet_refresh = Duration::from_millis(100);
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        edit(&mut config, dir.path());
        let app = App::bind(config).await.expect("collector builds");
        Self::serve_with_client(app, dir, ca.client())
    }

    /// The address the collector listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base.rsplit_once("://").and_then(|(_, addr)| addr.parse().ok()).expect("base is scheme://addr")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Ask for a graceful shutdown and wait until the server (and store) are closed. The data
    /// directory stays until the `Collector` is dropped.
    pub async fn stop(&mut self) {
        self.begin_stop();
        self.wait_stopped().await;
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    pub async fn wait_stopped(&mut self) {
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("clean shutdown");
        }
    }

    pub async fn post_ndjson(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/measurements"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("POST measurements")
    }

    pub async fn post_gzip(&self, compressed: Vec<u8>) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/measurements"))
            .header("content-type", "application/x-ndjson")
            .header("content-encoding", "gzip")
            .body(compressed)
            .send()
            .await
            .expect("POST gzip measurements")
    }

    /// POST `batch` and return the JSON report, asserting 200 and no line refused (a test that
    /// means to send a bad line posts it itself).
    pub async fn ingest(&self, batch: &[Measurement]) -> serde_json::Value {
        let response = self.post_ndjson(ndjson(batch)).await;
        assert_eq!(response.status(), 200);
        nothing_refused(response.json().await.expect("JSON report"))
    }

    /// GET measurements with `query` (without `?`), asserting 200 and NDJSON.
    pub async fn query(&self, query: &str) -> Vec<Measurement> {
        let response = self.http.get(self.url(&format!("/api/v1/measurements?{query}"))).send().await.expect("GET");
        assert_eq!(response.status(), 200, "{query}");
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(String::from);
        assert_eq!(content_type.as_deref(), Some("application/x-ndjson"));
        let text = response.text().await.expect("body");
        text.lines().map(row_measurement).collect()
    }

    /// POST `batch` gzip-compressed and signed by `key`, as the probe does, with the spool
    /// backlog header; returns the response.
    pub async fn post_signed(&self, key: &ProbeKey, batch: &[Measurement], pending: u64) -> reqwest::Response {
        let body = gzip(ndjson(batch).as_bytes());
        self.http
            .post(self.url("/api/v1/measurements"))
            .header("content-type", "application/x-ndjson")
            .header("content-encoding", "gzip")
            .header(KEY_HEADER, key.public_key_base64())
            .header(SIGNATURE_HEADER, key.sign_base64(&body))
            .header(SPOOL_PENDING_HEADER, pending.to_string())
            .body(body)
            .send()
            .await
            .expect("POST signed measurements")
    }

    /// [`post_signed`](Self::post_signed), asserting 200 and no line refused; returns the report.
    pub async fn ingest_signed(&self, key: &ProbeKey, batch: &[Measurement]) -> serde_json::Value {
        let response = self.post_signed(key, batch, 0).await;
        assert_eq!(response.status(), 200);
        nothing_refused(response.json().await.expect("JSON report"))
    }

    /// Scrape until `ready` holds for the text (the fleet gauges refresh in the background);
    /// panics with the last scrape after 10 s.
    pub async fn metrics_when(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.metrics().await;
            if ready(&text) {
                return text;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("metrics never showed {what}:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait for one fleet refresh that started after now (so it sees everything ingested so far).
    /// A refresh stamps the time it *ended*, so the first stamp after now may belong to a read
    /// that began before the last ingest; refreshes run one after another, so the next stamp
    /// after that one belongs to a read that began after now.
    pub async fn next_fleet_refresh(&self) -> String {
        let stamp = |text: &str| sample(text, "vantage_collector_fleet_refresh_timestamp_seconds", &[]);
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let ended = stamp(&self.metrics_when("a fleet refresh", |text| stamp(text).is_some_and(|t| t > now)).await);
        self.metrics_when("a fleet refresh begun after it", |text| stamp(text) > ended).await
    }

    pub async fn metrics(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await.expect("GET /metrics");
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics text")
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The default test config, with `edit` applied, and its directory.
fn test_config(edit: impl FnOnce(&mut Config, &Path)) -> (Config, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new("127.0.0.1:0".parse().expect("addr"), dir.path().join("data"));
    // Fleet gauges follow ingest within a blink, so tests wait milliseconds, not 15 s.
    config.fleet_refresh = Duration::from_millis(100);
    trust_anchors(&mut config, dir.path());
    edit(&mut config, dir.path());
    (config, dir)
}

/// `report`, asserting that it refused no line.
fn nothing_refused(report: serde_json::Value) -> serde_json::Value {
    assert_eq!(report["rejected"], serde_json::json!([]), "a line the test meant as valid was refused");
    report
}

/// Write the anchors' `--trusted-keys` file into `dir` and name it in `config`.
pub fn trust_anchors(config: &mut Config, dir: &Path) {
    let anchors = dir.join("trusted-keys.txt");
    let ids: String = (1..=ANCHORS).map(|n| format!("{}\n", probe_key(n).key_id())).collect();
    std::fs::write(&anchors, format!("# the tests' anchor probes\n{ids}")).expect("write trusted keys");
    config.trusted_keys = Some(anchors);
}

/// An HTTP client that ignores proxy settings. reqwest is built without a default crypto
/// provider, so install ring first, as the collector does.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().expect("client")
}

/// A valid blocked-TLS measurement started now (whole seconds, as probes send).
pub fn measurement() -> Measurement {
    measurement_at(Utc::now().timestamp())
}

/// How many [`probe_key`]s the test collector trusts outright.
pub const ANCHORS: u8 = 20;

/// A probe key that is the same in every run for `n`; `1..=ANCHORS` are the test collector's
/// anchors (`--trusted-keys`), so they count at once.
pub fn probe_key(n: u8) -> ProbeKey {
    ProbeKey::from_seed(&[n; 32])
}

/// A probe key on no trusted list (`n` below 100): it counts only once it registered and earned
/// trust.
pub fn newcomer_key(n: u8) -> ProbeKey {
    assert!(n < 100, "newcomers are 0..100");
    ProbeKey::from_seed(&[100 + n; 32])
}

/// A measurement of `target` from `cc`/`asn` with `verdict` (blocked: TLS reset; else a plain ok).
pub fn measurement_of(cc: &str, asn: u32, target: &str, blocked: bool) -> Measurement {
    let mut m = measurement();
    m.probe.cc = cc.into();
    m.probe.asn = asn;
    m.target.name = target.into();
    if !blocked {
        m.verdict.status = vantage_measurement::Status::Ok;
        m.verdict.mechanism = None;
    }
    m
}

/// A measurement of `target` from `cc` (AS 3320) started at `at`, with `status` and a mechanism
/// that status may have.
pub fn measurement_at_with(at: DateTime<Utc>, cc: &str, target: &str, status: Status) -> Measurement {
    let mut m = measurement_of(cc, 3320, target, status == Status::Blocked);
    m.started_at = at;
    m.id = example::tls_reset(at).id;
    m.verdict.status = status;
    m.verdict.mechanism = match status {
        Status::Ok => None,
        Status::Blocked => m.verdict.mechanism,
        Status::Down => Some(Mechanism::ControlFailed),
        Status::Inconclusive => Some(Mechanism::NoControl),
    };
    m
}

/// An hour bucket's start as the status page's timelines write it (RFC 3339, seconds, `Z`).
pub fn bucket(start: DateTime<Utc>) -> String {
    start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Every sample line of the exposition (the series count Prometheus would store).
pub fn series_count(metrics: &str) -> usize {
    metrics.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty()).count()
}

pub fn measurement_at(unix_seconds: i64) -> Measurement {
    let started_at = DateTime::from_timestamp(unix_seconds, 0).expect("valid time");
    example::tls_reset(started_at)
}

pub fn ndjson(batch: &[Measurement]) -> String {
    batch.iter().map(|m| m.to_json_line().expect("serialise") + "\n").collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("compress");
    encoder.finish().expect("finish")
}

/// The value of the sample of `name` whose labels include all of `labels`.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series(metrics, name).into_iter().find_map(|(series_labels, value)| {
        labels.iter().all(|(k, v)| series_labels.iter().any(|(sk, sv)| sk == k && sv == v)).then_some(value)
    })
}

/// Every value that `label` takes in any sample of any family: the parsed check for "this never
/// became a label", where a search of the whole text could also hit a number or a help string.
pub fn label_values(metrics: &str, label: &str) -> std::collections::BTreeSet<String> {
    let names: std::collections::BTreeSet<&str> =
        metrics.lines().filter(|line| !line.starts_with('#')).filter_map(|line| line.split(['{', ' ']).next()).collect();
    names
        .into_iter()
        .flat_map(|name| series(metrics, name))
        .flat_map(|(labels, _)| labels.into_iter().filter(|(k, _)| k == label).map(|(_, v)| v))
        .collect()
}

/// Every sample of `name` as (labels, value).
pub fn series(metrics: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            if metric != name {
                return None;
            }
            let labels = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.to_string(), v.trim_matches('"').to_string()))
                })
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// Deterministic bytes that do not compress (xorshift).
pub fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A collector whose published target list names `wikipedia` only.
pub async fn with_wikipedia_published() -> Collector {
    Collector::start_with(|config, dir| {
        let list = dir.join("targets.toml");
        std::fs::write(&list, "[[target]]\nname = \"wikipedia\"\ndomain = \"wikipedia.org\"\n").expect("write list");
        config.targets_file = Some(list);
    })
    .await
}

/// An HTTP client whose connections leave from `source` (any 127.0.0.0/8 address works on
/// loopback): a distinct client address for the rate limiter, without a network.
pub fn http_client_from(source: std::net::IpAddr) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().local_address(source).timeout(Duration::from_secs(30)).build().expect("client")
}

/// POST `batch` as the probe does (gzip, signed by `key`) with `http` to `collector`.
pub async fn post_signed_with(
    http: &reqwest::Client,
    collector: &Collector,
    key: &ProbeKey,
    batch: &[Measurement],
) -> reqwest::Response {
    let body = gzip(ndjson(batch).as_bytes());
    http.post(collector.url("/api/v1/measurements"))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .header(KEY_HEADER, key.public_key_base64())
        .header(SIGNATURE_HEADER, key.sign_base64(&body))
        .body(body)
        .send()
        .await
        .expect("POST signed measurements")
}

/// A test certificate authority (rcgen) and the server certificates it issues.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Vantage test CA");
        let key = rcgen::KeyPair::generate().expect("CA key");
        TestCa { issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate") }
    }

    /// A fresh certificate for `localhost` and `127.0.0.1` and its new key, as PEM.
    pub fn issue(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// [`issue`](Self::issue) into `dir/{stem}.crt` and `dir/{stem}.key`.
    pub fn write_pair(&self, dir: &Path, stem: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let (cert, key) = self.issue();
        let (cert_path, key_path) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        std::fs::write(&cert_path, cert).expect("write certificate");
        std::fs::write(&key_path, key).expect("write key");
        (cert_path, key_path)
    }

    /// A client that trusts this CA alone and reports the server's certificate (`tls_info`).
    pub fn client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = reqwest::Certificate::from_pem(self.issuer.pem().as_bytes()).expect("CA PEM");
        reqwest::Client::builder().no_proxy().tls_certs_only([ca]).tls_info(true).build().expect("client")
    }
}

/// The DER certificate the server presented on `response`'s connection.
pub fn served_certificate(response: &reqwest::Response) -> Vec<u8> {
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("tls_info(true) client");
    info.peer_certificate().expect("a server certificate").to_vec()
}

/// Raw connections, for what an HTTP client library would never do (trickle, stall, PROXY).
pub mod raw {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Far longer than any timeout under test (1 s), shorter than hyper's own 30 s default: a
    /// connection still open after it was not closed by the setting under test.
    pub const CLOSE_BOUND: Duration = Duration::from_secs(20);

    pub async fn connect(addr: SocketAddr, first: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(first).await.expect("write");
        stream
    }

    /// Read until the collector closes (or resets) the connection; what it sent before. Panics
    /// if the connection is still open after [`CLOSE_BOUND`].
    pub async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut received = Vec::new();
        let read = tokio::time::timeout(CLOSE_BOUND, async {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the collector did not close the connection within {CLOSE_BOUND:?}");
        received
    }

    /// `GET path` on a kept-alive connection; the status and body of the one response.
    pub async fn get(stream: &mut TcpStream, path: &str) -> (u16, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: collector\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write request");
        response(stream).await.expect("a response")
    }

    /// One response with a Content-Length body; `None` if the connection closed first.
    pub async fn response(stream: &mut TcpStream) -> Option<(u16, String)> {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match tokio::time::timeout(CLOSE_BOUND, stream.read(&mut buf)).await.expect("response in time") {
                Ok(0) | Err(_) => return None,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&bytes[..head_end]).to_string();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        while bytes.len() < head_end + length {
            let n = stream.read(&mut buf).await.expect("body");
            assert!(n > 0, "body cut short");
            bytes.extend_from_slice(&buf[..n]);
        }
        Some((status, String::from_utf8_lossy(&bytes[head_end..head_end + length]).to_string()))
    }
}

/// A row of the measurements API as the measurement it holds: the collector's annotations
/// (`collector_observed`, `collector_key`) removed.
pub fn row_measurement(line: &str) -> Measurement {
    let mut row: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
    for field in vantage_collector::store::ANNOTATIONS {
        row.as_object_mut().expect("an object").remove(field);
    }
    serde_json::from_value(row).expect("each line is a measurement")
}
