//! A real Prometheus for the end-to-end test: started on a free loopback port with the
//! project's config and rules (1 s intervals, `for:` shortened), queried over its HTTP API.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vantage_tests::procs::Collector;

use super::operators::{self, path, require_tool, yaml};
use super::{BLOCKING, WAIT};

pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    // Bind, read, release: Prometheus binds it a moment later (the only race left, and harmless
    // on a test machine's loopback).
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Start Prometheus with deploy/prometheus/prometheus.yml, changed only where a test must:
/// 1 s scrape and evaluation intervals, the collector's address and URL, and every `for:`
/// shortened to 2 s (their durations are unit-tested by promtool; here we test the expressions
/// against what the collector really exports).
pub async fn start_prometheus(collector: &Collector, ca: &Path) -> Prometheus {
    let binary = require_tool("prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let collector_addr = collector.url.trim_start_matches("https://").to_string();

    let mut config = yaml(&path("deploy/prometheus/prometheus.yml"));
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    let job = &mut config["scrape_configs"][0];
    assert_eq!(job["job_name"].as_str(), Some("vantage-collector"));
    job["static_configs"][0]["targets"][0] = collector_addr.into();
    job["static_configs"][0]["labels"]["collector_url"] = collector.url.clone().into();
    // The collector serves HTTPS with a test CA's certificate.
    job["scheme"] = "https".into();
    job["tls_config"]["ca_file"] = ca.display().to_string().into();
    std::fs::write(dir.path().join("prometheus.yml"), serde_norway::to_string(&config).expect("yaml")).expect("write config");

    std::fs::create_dir(dir.path().join("rules")).expect("mkdir");
    for file in operators::files("deploy/prometheus/rules", &[".yml"]) {
        let text = std::fs::read_to_string(&file).expect("read rules");
        let shortened: Vec<String> = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("for: ") {
                    format!("{}for: 2s", &l[..l.len() - l.trim_start().len()])
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(dir.path().join("rules").join(file.file_name().expect("name")), shortened.join("\n"))
            .expect("write rules");
    }

    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start prometheus");
    let prometheus = Prometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
    let ready = format!("{}/-/ready", prometheus.url);
    poll("Prometheus ready", || async { reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) }).await;
    prometheus
}

/// Wait for `check` to hold, polling every 200 ms, failing after [`WAIT`].
pub async fn poll<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET a Prometheus API path; returns `data`, or the error Prometheus gave.
pub async fn api(prometheus: &Prometheus, path_and_query: &str) -> Result<Value, String> {
    let resp = reqwest::get(format!("{}{path_and_query}", prometheus.url)).await.map_err(|e| e.to_string())?;
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    if body["status"] == "success" { Ok(body["data"].clone()) } else { Err(format!("{}: {}", body["errorType"], body["error"])) }
}

/// An instant query's result vector.
pub async fn query(prometheus: &Prometheus, expr: &str) -> Result<Vec<Value>, String> {
    let data = api(prometheus, &format!("/api/v1/query?query={}", percent_encode(expr))).await?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

/// The dashboard's variables, as Grafana would substitute them for this scenario.
pub fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m").replace("${country}", BLOCKING).replace("$country", BLOCKING)
}
