//! The throughput reference endpoint in the lab: nginx with the operator's own
//! `deploy/endpoints/throughput/nginx.conf`, compiled in here, so the lab runs the very thing an
//! operator deploys. Two things change and nothing else: the directories (a world-readable
//! directory of the lab's: nginx's workers don't run as root) and the `listen` lines (the
//! scenario's addresses). The certificate is a throwaway committed in `tests/lab/throughput/`, so
//! scenario files can pin it ([`PIN`]).

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::netns::{Daemon, Netns};

/// The operator's configuration.
pub const DEPLOYED_CONFIG: &str = include_str!("../../../deploy/endpoints/throughput/nginx.conf");
/// The lab endpoint's certificate and key (throwaway, for the lab only).
const CERT_PEM: &str = include_str!("../../lab/throughput/cert.pem");
const KEY_PEM: &str = include_str!("../../lab/throughput/key.pem");
/// SHA-256 of [`CERT_PEM`]'s DER: what `throttle-*` scenarios put in `certificate_sha256`.
pub const PIN: &str = "bc038022df393327e3a30f8e1c475299a91267bb00f7fe0f09fb4b2ae78d3124";
/// The body the endpoint serves (the deploy README makes the same size).
pub const BODY_BYTES: usize = 256 * 1024;
/// The directories the deployed file names.
const CONFIG_DIR: &str = "/etc/vantage/throughput";
const RUN_DIR: &str = "/run/vantage-throughput";
const CREDENTIALS_DIR: &str = "/run/credentials/vantage-throughput.service";

/// The deployed configuration for `dir`, listening on `endpoints`: its directories replaced and
/// its `listen` lines swapped for the scenario's. Fails if the file no longer has what is replaced.
pub fn config(deployed: &str, dir: &Path, endpoints: &[(IpAddr, u16)]) -> anyhow::Result<String> {
    let anchor = "ssl_certificate ";
    for needle in [CONFIG_DIR, RUN_DIR, CREDENTIALS_DIR, "listen ", anchor] {
        anyhow::ensure!(deployed.contains(needle), "the deployed nginx.conf no longer has `{needle}`");
    }
    let dir = dir.display().to_string();
    let mut out = String::new();
    for line in deployed.lines() {
        let code = line.trim_start();
        if code.starts_with("listen ") {
            continue;
        }
        if code.starts_with(anchor) {
            let indent = &line[..line.len() - code.len()];
            for (a, port) in endpoints {
                out.push_str(&format!("{indent}listen {} ssl default_server;\n", SocketAddr::new(*a, *port)));
            }
        }
        out.push_str(&line.replace(CREDENTIALS_DIR, &dir).replace(CONFIG_DIR, &dir).replace(RUN_DIR, &dir));
        out.push('\n');
    }
    Ok(out)
}

/// The endpoint, running; its directory goes when it is dropped (after nginx: field order).
pub struct Endpoint {
    _nginx: Daemon,
    _dir: tempfile::TempDir,
}

/// Start nginx in `ns` on `endpoints` and wait until its workers run.
pub fn start(ns: &Netns, endpoints: &[(IpAddr, u16)], ready_timeout: Duration) -> anyhow::Result<Endpoint> {
    let dir = tempfile::Builder::new().prefix("vantage-lab-throughput-").tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    std::fs::create_dir(dir.path().join("www"))?;
    std::fs::write(dir.path().join("cert.pem"), CERT_PEM)?;
    std::fs::write(dir.path().join("key.pem"), KEY_PEM)?;
    std::fs::set_permissions(dir.path().join("key.pem"), std::fs::Permissions::from_mode(0o600))?;
    // Not compressible, like the operator's `head -c 262144 /dev/urandom`.
    let mut body = vec![0u8; BODY_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut body)
        .map_err(|_| anyhow::anyhow!("no random bytes for the body"))?;
    std::fs::write(dir.path().join("www/body"), body)?;
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config(DEPLOYED_CONFIG, dir.path(), endpoints)?)?;
    let args = ["-e".to_string(), "stderr".into(), "-c".into(), conf.display().to_string()];
    // SIGTERM: the master takes its worker down with it.
    let mut nginx = ns.spawn("nginx (throughput endpoint)", "nginx", &args, &[])?.with_sigterm_grace(Duration::from_secs(3));
    nginx.wait_for("start worker process", ready_timeout).context("nginx did not start")?;
    Ok(Endpoint { _nginx: nginx, _dir: dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployed_config_changes_only_directories_and_listen_lines() {
        let dir = Path::new("/tmp/lab-x");
        let out =
            config(DEPLOYED_CONFIG, dir, &[(IpAddr::from([203, 0, 113, 21]), 443), (IpAddr::from([203, 0, 113, 21]), 8443)])
                .expect("config");
        assert!(!out.contains(CONFIG_DIR) && !out.contains(RUN_DIR) && !out.contains("/run/"));
        assert!(out.contains("ssl_certificate_key /tmp/lab-x/key.pem;"));
        let listens: Vec<&str> = out.lines().map(str::trim).filter(|l| l.starts_with("listen ")).collect();
        assert_eq!(listens, ["listen 203.0.113.21:443 ssl default_server;", "listen 203.0.113.21:8443 ssl default_server;"]);
        assert!(out.contains("ssl_certificate /tmp/lab-x/cert.pem;") && out.contains("try_files /body =404;"));
        let kept = |text: &str| text.lines().filter(|l| !l.contains("listen ") && !l.contains('/')).count();
        assert_eq!(kept(&out), kept(DEPLOYED_CONFIG), "every other line is the operator's");
        assert!(config("events {}", dir, &[]).is_err(), "a file without what is replaced is refused");
    }

    #[test]
    fn the_pin_is_the_committed_certificate() {
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(CERT_PEM.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
            .expect("pem");
        let hex: String = ring::digest::digest(&ring::digest::SHA256, &der).as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, PIN);
    }
}
