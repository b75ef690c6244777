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
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}
