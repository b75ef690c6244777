//! The exit codes docs/probe.md promises, checked on the built binary: 0 done, 1 an error,
//! 2 bad usage (whether clap or the probe found the flag unusable). None of these runs gets as
//! far as the network. 3 (no network) is checked in `tests/tests/volunteer_safety.rs` and 4
//! (paused: a VPN holds the default route) in `tests/tests/network_sanity.rs`: both need
//! network namespaces.

use std::process::{Command, Output};

fn probe(args: &[&str]) -> Output {
    probe_with_env(args, &[])
}

fn probe_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_vantage-probe"));
    command.args(args).env("HOME", home.path()).env("XDG_DATA_HOME", home.path());
    // The caller's settings must not change what these flags mean.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VANTAGE_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run vantage-probe")
}

fn assert_exit(args: &[&str], code: i32, stderr_names: &str) {
    let out = probe(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(stderr.contains(stderr_names), "{args:?} should name {stderr_names}: {stderr}");
}

#[test]
fn unusable_flag_values_are_bad_usage() {
    for (args, names) in [
        (&["run", "--timeout", "0"][..], "--timeout"),
        (&["run", "--timeout", "121"], "--timeout"),
        (&["run", "--concurrency", "0"], "--concurrency"),
        (&["run", "--residual-window", "3601"], "--residual-window"),
        (&["run", "--ca", "/nonexistent/ca.pem"], "--ca"),
        (&["run", "--danger-not-bogon", "not-a-cidr"], "--danger-not-bogon"),
        (&["run", "--doh", "dns.google"], "--doh"),
        (&["run", "--resolver", "8.8.8.8"], "--resolver"),
        (&["run", "--cc", "DEU"], "--cc"),
        (&["run", "--on-vpn", "ignore"], "--on-vpn"),
        (&["flush", "--collector", "http://127.0.0.1:9", "--ca", "/nonexistent/ca.pem"], "--ca"),
        // Plaintext to another machine: the findings would cross the censor in the clear.
        (&["run", "--collector", "http://192.0.2.1:8080"], "--collector"),
        (&["run", "--collector", "https://collector.example", "--helper", "http://192.0.2.1:8080"], "--helper"),
        (&["flush", "--collector", "http://192.0.2.1:8080"], "--collector"),
        (&["daemon", "--collector", "http://192.0.2.1:8080"], "--collector"),
    ] {
        assert_exit(args, 2, names);
    }
}

#[test]
fn unknown_flags_and_missing_ones_are_bad_usage() {
    assert_exit(&["run", "--frobnicate"], 2, "--frobnicate");
    assert_exit(&["flush"], 2, "--collector");
    assert_exit(&["measure"], 2, "measure");
}

#[test]
fn a_targets_file_that_cannot_be_read_is_an_error_not_bad_usage() {
    assert_exit(&["run", "--targets", "/nonexistent/targets.toml", "--doh", "off", "--resolver", "off"], 1, "targets.toml");
}

#[test]
fn on_off_switches_from_the_environment_take_what_systemd_units_write() {
    let args = ["run", "--targets", "/nonexistent/targets.toml", "--doh", "off", "--resolver", "off"];
    for value in ["1", "0", "true", "false", "yes", "no", "on", "off", ""] {
        let env = [("VANTAGE_NO_LOCALISE", value), ("VANTAGE_ENCRYPTED_DNS", value)];
        let out = probe_with_env(&args, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Past the flags: it stops at the targets file, not at the switch's value.
        assert_eq!(out.status.code(), Some(1), "{value:?}: {stderr}");
        assert!(stderr.contains("targets.toml"), "{value:?}: {stderr}");
    }
}

#[test]
fn commands_that_complete_exit_zero() {
    for args in [&["schema"][..], &["targets"], &["--help"]] {
        let out = probe(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn key_id_prints_the_id_the_collector_computes_and_keeps_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_flag = data.display().to_string();
    let first = probe(&["key-id", "--data-dir", &data_flag]);
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let printed = String::from_utf8(first.stdout).expect("UTF-8");
    let seed: [u8; 32] = std::fs::read(data.join("probe.key")).expect("key made").as_slice().try_into().expect("32 bytes");
    let key = vantage_measurement::wire::ProbeKey::from_seed(&seed);
    assert_eq!(printed, format!("{}\n", key.key_id()));
    let again = probe(&["key-id", "--data-dir", &data_flag]);
    assert_eq!(String::from_utf8(again.stdout).expect("UTF-8"), printed, "the same key, not a new one");
}
