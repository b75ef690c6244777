//! The real probe and the real collector over HTTPS: a probe that pins the collector's key (the
//! pin printed by `vantage-collector pin`, as `invite --pin-from` puts it in invitations) reaches
//! it; a collector with a certificate from the same trusted CA, for the same address, but with
//! another key is refused; pinning that key as the backup lets the probe through again.
//!
//! `forget` is the probe command used: it goes through the same collector client as uploads and
//! list fetches, and its success or failure is one line.

use std::path::{Path, PathBuf};
use std::process::Command;

use vantage_tests::pki::TestCa;
use vantage_tests::procs::{Collector, bin, probe};

/// `vantage-collector pin FILE`.
fn pin_of(cert: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin("vantage-collector")?).arg("pin").arg(cert).output()?;
    anyhow::ensure!(out.status.success(), "pin failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// A joined probe's config naming `collector`, trusting `ca`, pinning `pins`.
fn config(dir: &Path, collector: &str, ca: &Path, pins: &[&str]) -> anyhow::Result<PathBuf> {
    let path = dir.join("probe.toml");
    let quoted: Vec<String> = pins.iter().map(|p| format!("\"{p}\"")).collect();
    let text = format!(
        "collectors = [\"{collector}\"]\nlist_key = \"{}\"\ndata_dir = \"{}\"\naccepted_risks = true\nca = [\"{}\"]\ncollector_pins = [{}]\n",
        vantage_measurement::wire::target_list::ListKey::from_seed(&[7; 32]).public_base64(),
        dir.join("probe-data").display(),
        ca.display(),
        quoted.join(", ")
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `vantage-probe forget --config …`: (succeeded, stdout + stderr).
fn forget(config: &Path) -> anyhow::Result<(bool, String)> {
    let out = probe(&["forget", "--config", &config.display().to_string()])?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

#[test]
fn a_pinned_probe_reaches_its_collector_and_refuses_another_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("Vantage transport test CA")?;
    let ca_pem = dir.path().join("ca.pem");
    ca.write_pem(&ca_pem)?;
    let (cert, key) = ca.issue_files("127.0.0.1", dir.path(), "collector")?;
    let collector = Collector::start(&["--tls-cert", &cert.display().to_string(), "--tls-key", &key.display().to_string()])?;
    assert!(collector.url.starts_with("https://127.0.0.1:"), "{}", collector.url);
    // The probe's key exists (as after its first upload), so `forget` has something to sign.
    let id = probe(&["key-id", "--data-dir", &dir.path().join("probe-data").display().to_string()])?;
    assert!(id.status.success(), "{}", String::from_utf8_lossy(&id.stderr));
    let pin = pin_of(&cert)?;

    let (ok, text) = forget(&config(dir.path(), &collector.url, &ca_pem, &[&pin])?)?;
    assert!(ok, "the pinned collector is reached: {text}");
    assert!(text.contains(&format!("{} deleted 0 measurements", collector.url)), "{text}");

    // Same CA, same address, another key: what a coerced CA would issue to someone on the path.
    let (other_cert, other_key) = ca.issue_files("127.0.0.1", dir.path(), "impostor")?;
    let impostor =
        Collector::start(&["--tls-cert", &other_cert.display().to_string(), "--tls-key", &other_key.display().to_string()])?;
    let (ok, text) = forget(&config(dir.path(), &impostor.url, &ca_pem, &[&pin])?)?;
    assert!(!ok, "another key is refused: {text}");
    let other_pin = pin_of(&other_cert)?;
    assert!(text.contains(&format!("the collector's TLS key {other_pin} is none of the pinned keys")), "{text}");

    // The operator had pinned that key as the backup: the probe follows the rotation.
    let (ok, text) = forget(&config(dir.path(), &impostor.url, &ca_pem, &[&pin, &other_pin])?)?;
    assert!(ok, "the backup key is accepted: {text}");
    Ok(())
}
