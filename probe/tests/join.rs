//! `join` and `forget` on the built binary, where the consent question meets a real (absent)
//! terminal: without one and without --accept-risks, nothing happens.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use chrono::{Duration, Utc};
use vantage_measurement::wire::forget::{FORGET_PATH, ForgetRequest};
use vantage_measurement::wire::target_list::{Invitation, LIST_PATH, ListDocument, ListKey};
use vantage_measurement::wire::{KEY_HEADER, SIGNATURE_HEADER, verify_batch};
use vantage_probe::config::ProbeConfig;

/// The binary with a clean environment inside `home`; `VANTAGE_CONFIG` points into `home` too,
/// so that a run as root never reaches /etc.
fn probe(args: &[&str], home: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vantage-probe"));
    command
        .args(args)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VANTAGE_") {
            command.env_remove(name);
        }
    }
    command.env("VANTAGE_CONFIG", home.join("config/vantage/probe.toml"));
    command.output().expect("run vantage-probe")
}

#[test]
fn join_without_a_terminal_or_accept_risks_refuses_before_any_packet() {
    let home = tempfile::tempdir().expect("tempdir");
    let collector = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", collector.local_addr().expect("addr"));
    let key = ListKey::from_seed(&[1; 32]);
    let invitation = Invitation { collectors: vec![url], list_key: key.public_base64(), pins: vec![] }.to_url();
    let config = home.path().join("probe.toml");

    let out = probe(&["join", &invitation, "--config", config.to_str().expect("utf-8")], home.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("THE RISK"), "the consent text is shown: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: no terminal to ask for consent on, and no --accept-risks"), "{last}");
    assert!(!config.exists(), "no config written");
    assert!(!home.path().join("data").exists(), "no data directory made");
    // The kernel completes a handshake before connect() returns, so a connection attempt would
    // be waiting here now.
    collector.set_nonblocking(true).expect("nonblocking");
    let accepted = collector.accept();
    assert!(accepted.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "no collector contacted: {accepted:?}");
}

#[test]
fn a_bad_invitation_and_a_missing_config_say_what_to_do() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = probe(&["join", "https://collector.example/join", "--accept-risks"], home.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim(), "error: not a Vantage invitation (expected https://…/join#v1.…): no #fragment");

    let out = probe(&["forget", "--config", "/nonexistent/probe.toml"], home.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.trim().ends_with("join a network first (`vantage-probe join <INVITATION_URL>`) or pass --config"), "{stderr}");
}

#[test]
fn unusable_join_flags_are_bad_usage_before_the_question() {
    let home = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[1; 32]);
    let invitation =
        Invitation { collectors: vec!["http://127.0.0.1:9".into()], list_key: key.public_base64(), pins: vec![] }.to_url();
    for (args, names) in [
        (vec!["join", &invitation, "--ca", "/nonexistent/ca.pem"], "--ca"),
        (vec!["join", &invitation, "--socks5", "localhost"], "--socks5"),
    ] {
        let out = probe(&args, home.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{stderr}");
        assert!(!stderr.contains("THE RISK"), "no consent asked for a join that can't start: {stderr}");
    }
}

#[test]
fn plaintext_collectors_elsewhere_are_bad_usage_for_join_and_forget() {
    let home = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[1; 32]);
    let elsewhere = "http://192.0.2.1:9";
    let invitation = Invitation { collectors: vec![elsewhere.into()], list_key: key.public_base64(), pins: vec![] }.to_url();
    let out = probe(&["join", &invitation], home.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("`{elsewhere}` is plaintext HTTP to another machine")), "{stderr}");
    assert!(!stderr.contains("THE RISK"), "refused before the question: {stderr}");

    let config = home.path().join("probe.toml");
    let text = format!(
        "collectors = [\"{elsewhere}\"]\nlist_key = \"{}\"\ndata_dir = \"{}\"\n",
        key.public_base64(),
        home.path().display()
    );
    std::fs::write(&config, text).expect("config");
    let out = probe(&["forget", "--config", config.to_str().expect("utf-8")], home.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("plaintext HTTP to another machine"), "{stderr}");
}

/// A collector with the two endpoints this probe side needs: the signed list, and a deletion
/// endpoint that checks the signature as the wire contract says.
async fn collector(key: &ListKey) -> String {
    let document = ListDocument {
        version: 12,
        issued_at: Utc::now() - Duration::hours(1),
        expires_at: Utc::now() + Duration::days(7),
        interval_secs: 3600,
        disabled_tests: vec![],
        disabled_targets: vec![],
        labelled: vec![],
        targets_toml: "[[target]]\nname = \"a\"\ndomain = \"a.example\"\n[[target]]\nname = \"b\"\ndomain = \"b.example\"\ntests = [\"dns\"]\n".into(),
    };
    let list = serde_json::to_string(&key.sign(&document, vec![], vec![])).expect("json");
    let app = Router::new().route(LIST_PATH, get(move || async move { list })).route(
        FORGET_PATH,
        post(|headers: HeaderMap, body: Bytes| async move {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let signed = verify_batch(&header(KEY_HEADER), &header(SIGNATURE_HEADER), &body).is_ok();
            match (signed, serde_json::from_slice::<ForgetRequest>(&body)) {
                (true, Ok(_)) => (StatusCode::OK, "{\"deleted\": 7}".to_string()),
                _ => (StatusCode::UNAUTHORIZED, "{\"error\": \"bad signature\"}".to_string()),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn join_then_forget_on_the_built_binary() {
    let home = tempfile::tempdir().expect("tempdir");
    let key = ListKey::from_seed(&[1; 32]);
    let url = collector(&key).await;
    let invitation = Invitation { collectors: vec![url.clone()], list_key: key.public_base64(), pins: vec![] }.to_url();
    let config = home.path().join("config/vantage/probe.toml");
    let data = home.path().join("probe-data");

    let (home_path, data_arg) = (home.path().to_path_buf(), data.display().to_string());
    let out =
        tokio::task::spawn_blocking(move || probe(&["join", &invitation, "--accept-risks", "--data-dir", &data_arg], &home_path))
            .await
            .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("Joined. Collector: {url}"));
    assert!(lines[1].starts_with(&format!("List: version 12, signed by {}, valid until ", key.fingerprint())), "{stdout}");
    assert_eq!(lines[2], "Will measure: 2 targets, 5 tests per pass, every 60 min");
    assert_eq!(lines[3], format!("Config: {}", config.display()), "the default path is $VANTAGE_CONFIG");
    let written = ProbeConfig::load(&config).expect("config");
    assert_eq!((written.collectors, written.data_dir, written.accepted_risks), (vec![url.clone()], data.clone(), true));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&config).expect("config").permissions().mode() & 0o777, 0o600);
    }

    // No key yet: nothing signed was ever sent, and forget says so without making one.
    let home_path = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || probe(&["forget"], &home_path)).await.expect("forget");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("never sent a signed upload"), "{stderr}");

    vantage_probe::identity::load_or_create(&data).expect("a key, as the first upload makes it");
    let home_path = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || probe(&["forget"], &home_path)).await.expect("forget");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{url} deleted 7 measurements submitted under this probe's key.")
    );
}
