//! `join` and `forget` on the built binary, where the consent question meets a real (absent)
//! terminal: without one and without --accept-risks, nothing happens.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use vantage_measurement::wire::target_list::{Invitation, ListKey};

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
    command.output().expect("run vantage-probe")
}

#[test]
fn join_without_a_terminal_or_accept_risks_refuses_before_any_packet() {
    let home = tempfile::tempdir().expect("tempdir");
    let collector = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", collector.local_addr().expect("addr"));
    let key = ListKey::from_seed(&[1; 32]);
    let invitation = Invitation { collectors: vec![url], list_key: key.public_base64() }.to_url();
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
    let invitation = Invitation { collectors: vec!["http://127.0.0.1:9".into()], list_key: key.public_base64() }.to_url();
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
