//! The real binaries, started as a user would start them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// Path of a workspace binary beside the running executable: `target/<profile>/<name>`, from a
/// test (in `target/<profile>/deps`) or from a binary of this crate (in `target/<profile>`).
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let own_dir = exe.parent().context("the executable has no directory")?;
    let profile_dir =
        if own_dir.ends_with("deps") { own_dir.parent().context("test binary has no target dir")? } else { own_dir };
    let path = profile_dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the binaries first with `cargo build --workspace --bins` (tests/run does this)",
            path.display()
        );
    }
    Ok(path)
}

/// Sign `targets_toml` (a targets file) as a published target list for `serve --signed-list`,
/// version 1, valid a week, with `labelled` as its `target` labels, and write it to `path`. A
/// collector with a list lets its test helper go only where the list says, as in production.
pub fn write_signed_list(path: &Path, targets_toml: &str, labelled: &[String]) -> anyhow::Result<()> {
    use vantage_measurement::wire::target_list::{ListDocument, ListKey};
    let now = chrono::Utc::now();
    let document = ListDocument {
        version: 1,
        issued_at: now,
        expires_at: now + chrono::Duration::days(7),
        interval_secs: 3600,
        disabled_tests: Vec::new(),
        disabled_targets: Vec::new(),
        labelled: labelled.to_vec(),
        targets_toml: targets_toml.to_string(),
    };
    let signed = ListKey::from_seed(&[0x5a; 32]).sign(&document, Vec::new(), Vec::new());
    std::fs::write(path, serde_json::to_vec_pretty(&signed)?)?;
    Ok(())
}

/// A running `vantage-collector serve` on 127.0.0.1 with its own data directory.
pub struct Collector {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The data directory (SQLite file lives here).
    pub data_dir: tempfile::TempDir,
    /// Lines the collector wrote to stdout and stderr after its start line, for privacy checks.
    output: mpsc::Receiver<String>,
}

impl Collector {
    /// Start the collector with `extra` flags after `serve --listen 127.0.0.1:0 --data-dir …`.
    pub fn start(extra: &[&str]) -> anyhow::Result<Collector> {
        let data_dir = tempfile::tempdir()?;
        Self::start_in(data_dir, extra)
    }

    /// Start on an existing data directory (to test that data survives a restart).
    pub fn start_in(data_dir: tempfile::TempDir, extra: &[&str]) -> anyhow::Result<Collector> {
        let mut cmd = Command::new(bin("vantage-collector")?);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir.path()).args(extra);
        Self::start_command(cmd, data_dir)
    }

    /// Start `cmd`, a `vantage-collector serve` command line built by the caller (e.g. from a
    /// deploy file) that listens on a loopback port 0 and keeps its files in `data_dir`.
    pub fn start_command(mut cmd: Command, data_dir: tempfile::TempDir) -> anyhow::Result<Collector> {
        let mut child = cmd.env("VANTAGE_LOG", "info").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let (tx, rx) = mpsc::channel();
        for reader in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx); // the channel closes when the collector's output does
        let mut seen = Vec::new();
        let url = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        break rest.trim().to_string();
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    bail!("collector exited or did not report its address within 30 s; output: {seen:?}");
                }
            }
        };
        Ok(Collector { child, url, data_dir, output: rx })
    }

    /// Stop with SIGTERM (graceful) and wait; returns the data directory for a restart.
    pub fn stop(mut self) -> anyhow::Result<tempfile::TempDir> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        for _ in 0..100 {
            if self.child.try_wait()?.is_some() {
                let dir = tempfile::tempdir()?;
                return Ok(std::mem::replace(&mut self.data_dir, dir));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("collector did not stop within 10 s of SIGTERM")
    }

    /// Everything the collector logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.output.try_iter().collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `vantage-probe` with `args` and wait (at most two minutes).
pub fn probe(args: &[&str]) -> anyhow::Result<Output> {
    let child = Command::new(bin("vantage-probe")?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(output) => Ok(output?),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &id.to_string()]).status();
            bail!("vantage-probe {args:?} did not finish within 120 s")
        }
    }
}

/// What an operator does for a probe of their own: ask it for its key id (`vantage-probe key-id`,
/// which makes the key in `probe_data` if there is none) and list it in a `--trusted-keys` file
/// at `file`, so the collector counts its measurements at once instead of after days.
pub fn trust_probe(probe_data: &std::path::Path, file: &std::path::Path) -> anyhow::Result<()> {
    let out = probe(&["key-id", "--data-dir", &probe_data.display().to_string()])?;
    anyhow::ensure!(out.status.success(), "key-id failed: {}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout)?;
    std::fs::write(file, format!("# the operator's own probe\n{}", id.trim()))?;
    Ok(())
}
