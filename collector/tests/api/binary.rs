//! The `vantage-collector` binary: the stdout line scripts rely on, exit codes, signals.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_vantage-collector");

#[tokio::test]
async fn serve_prints_its_address_answers_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("VANTAGE_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the collector");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read stdout");
    let addr = line
        .trim_end()
        .strip_prefix("vantage-collector listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"), "{addr}");

    let http = crate::support::http_client();
    let health = http.get(format!("http://{addr}/healthz")).send().await.expect("GET /healthz");
    assert_eq!(health.status(), 200);

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(dir.path().join("vantage.sqlite3").exists());
}

#[test]
fn a_bad_config_exits_64_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--targets"])
        .arg(dir.path().join("missing.toml"))
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.toml"));

    let output = Command::new(BINARY).args(["serve", "--listen", "nowhere"]).output().expect("run");
    assert_eq!(output.status.code(), Some(64));
}

#[test]
fn help_teaches_the_flags() {
    let output = Command::new(BINARY).args(["serve", "--help"]).output().expect("run");
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--targets",
        "--ca",
        "--danger-helper-allow-private",
        "--helper-timeout-secs",
        "--helper-resolver",
        "VANTAGE_LISTEN",
        "--asn-min-probes",
        "--max-series",
        "--window-secs",
        "--fleet-refresh-secs",
        "--signed-list",
        "VANTAGE_SIGNED_LIST",
        "--geoip-country",
        "--geoip-asn",
        "--tls-cert",
        "VANTAGE_TLS_CERT",
        "--tls-key",
        "--trusted-proxy",
        "VANTAGE_TRUSTED_PROXIES",
        "--proxy-protocol",
        "--forwarded-header",
        "--max-connections",
        "--max-connections-per-source",
        "--header-timeout-secs",
        "--tls-handshake-timeout-secs",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

/// With a certificate the line says https; SIGHUP re-reads the certificate (new handshakes get
/// the renewed one) and a broken file then keeps the one in service.
#[tokio::test]
async fn serve_over_https_reloads_its_certificate_on_sighup_and_keeps_it_when_the_new_one_is_broken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = crate::support::TestCa::new();
    let (cert, key) = ca.write_pair(dir.path(), "server");
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("VANTAGE_LISTEN")
        .env("VANTAGE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the collector");
    let logs = log_lines(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read stdout");
    let addr = line
        .trim_end()
        .strip_prefix("vantage-collector listening on https://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    // A fresh client per look: a pooled connection shows the certificate of its own handshake.
    let served = || async {
        let response = ca.client().get(format!("https://{addr}/healthz")).send().await.expect("GET /healthz over TLS");
        assert_eq!(response.status(), 200);
        crate::support::served_certificate(&response)
    };
    let first = served().await;
    let hangup = || assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().expect("kill").success());

    let (renewed_cert, renewed_key) = ca.issue();
    std::fs::write(&cert, &renewed_cert).expect("write");
    std::fs::write(&key, &renewed_key).expect("write");
    hangup();
    wait_for_log(&logs, "certificate re-read");
    let renewed = served().await;
    assert_ne!(renewed, first, "the renewed certificate is served after SIGHUP");

    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbroken\n").expect("write");
    hangup();
    wait_for_log(&logs, "keeping the certificate served so far");
    assert_eq!(served().await, renewed, "a broken file keeps the certificate in service");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}

#[test]
fn a_certificate_that_does_not_load_exits_64_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = crate::support::TestCa::new();
    let (cert, _) = ca.write_pair(dir.path(), "server");
    let (_, other_key) = ca.write_pair(dir.path(), "other");
    let output = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&other_key)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("other.key"), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!dir.path().join("data").exists(), "refused before the store is touched");
}

/// The child's log lines, as they come.
fn log_lines(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Wait (30 s at most) for a log line containing `needle`.
fn wait_for_log(logs: &std::sync::mpsc::Receiver<String>, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match logs.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    panic!("no log line with {needle:?}");
}
