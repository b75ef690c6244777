//! `vantage-probe daemon` as a volunteer runs it: a real process measuring real loopback servers
//! on a short interval and uploading to a real `vantage-collector`, then stopped with SIGTERM
//! while a measurement is in flight. Nothing leaves 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use vantage_tests::pki::TestCa;
use vantage_tests::procs::{Collector, bin, probe};
use vantage_tests::servers::{self, DnsBehaviour};

const TARGET: &str = "target.example";
/// Seconds between two measurements of a target, compressed for the test.
const INTERVAL: u64 = 4;

struct World {
    dir: tempfile::TempDir,
    _tls: servers::Running,
    _quic: servers::Running,
    dns: servers::Running,
    /// A port whose connections are accepted by the kernel and never answered: a TLS test there
    /// runs until its timeout, so a measurement is in flight most of the time.
    _tarpit: TcpListener,
    targets: PathBuf,
}

impl World {
    async fn new() -> anyhow::Result<World> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let ca = Arc::new(TestCa::new("Vantage test CA")?);
        ca.write_pem(&dir.path().join("ca.pem"))?;
        let tls = servers::tls_any_sni(ca.clone()).await?;
        let quic = servers::quic_any_sni(ca.clone()).await?;
        let dns = servers::dns([(TARGET.to_string(), Ipv4Addr::LOCALHOST)].into(), DnsBehaviour::Honest).await?;
        let tarpit = TcpListener::bind("127.0.0.1:0")?;
        let targets = dir.path().join("targets.toml");
        std::fs::write(
            &targets,
            format!(
                "[[target]]\nname = \"site\"\ndomain = \"{TARGET}\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"dns\", \"tcp\", \"tls\"]\n\
                 [[target]]\nname = \"site-quic\"\ndomain = \"{TARGET}\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"quic\"]\n\
                 [[target]]\nname = \"slow\"\ndomain = \"{TARGET}\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"tls\"]\n",
                tls.addr.port(),
                quic.addr.port(),
                tarpit.local_addr()?.port(),
            ),
        )?;
        Ok(World { dir, _tls: tls, _quic: quic, dns, _tarpit: tarpit, targets })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("probe-data")
    }

    /// Start the daemon uploading to `collector`, with flags that keep every query on loopback.
    fn daemon(&self, collector: &str, extra: &[&str]) -> anyhow::Result<Daemon> {
        let ca = self.dir.path().join("ca.pem");
        let mut child = Command::new(bin("vantage-probe")?)
            .args(["daemon", "--json", "--no-helper", "--doh", "off", "--no-system-resolver", "--dns-linger-ms", "200"])
            .args(["--timeout", "1", "--interval", &INTERVAL.to_string(), "--collector", collector])
            .arg("--resolver")
            .arg(self.dns.addr.to_string())
            .arg("--targets")
            .arg(&self.targets)
            .arg("--ca")
            .arg(ca)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let printed = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().context("stdout")?;
        let sink = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(m) = serde_json::from_str::<Value>(&line)
                    && let Ok(mut printed) = sink.lock()
                {
                    printed.push(m);
                }
            }
        });
        Ok(Daemon { child, printed, started: Instant::now() })
    }
}

/// A running daemon and the measurements it printed (`--json`) so far.
struct Daemon {
    child: Child,
    printed: Arc<Mutex<Vec<Value>>>,
    started: Instant,
}

impl Daemon {
    fn printed(&self) -> Vec<Value> {
        self.printed.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Wait until it printed `n` measurements.
    fn wait_printed(&self, n: usize) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            let printed = self.printed();
            if printed.len() >= n {
                return Ok(printed);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the daemon printed {} measurements in 90 s, expected {n}", self.printed().len())
    }

    /// SIGTERM, then wait for the exit (the in-flight measurement ends within its timeouts).
    fn terminate(mut self) -> anyhow::Result<(ExitStatus, Vec<Value>)> {
        kill(Pid::from_raw(i32::try_from(self.child.id())?), Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return Ok((status, self.printed()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the daemon did not exit within 30 s of SIGTERM")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ids(ms: &[Value]) -> BTreeSet<String> {
    ms.iter().filter_map(|m| m["id"].as_str().map(str::to_string)).collect()
}

fn spooled(data_dir: &Path) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data_dir.join("spool"))? {
        let path = entry?.path();
        if path.to_string_lossy().contains(".ndjson") {
            for line in std::fs::read_to_string(&path)?.lines() {
                out.push(serde_json::from_str(line)?);
            }
        }
    }
    Ok(out)
}

async fn stored(collector: &Collector) -> anyhow::Result<Vec<Value>> {
    let text = reqwest::get(format!("{}/api/v1/measurements", collector.url)).await?.error_for_status()?.text().await?;
    Ok(text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?)
}

fn status_json(data_dir: &Path) -> anyhow::Result<Value> {
    let out = probe(&["status", "--json", "--data-dir", &data_dir.display().to_string()])?;
    anyhow::ensure!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_measures_on_schedule_and_uploads_as_it_goes() -> anyhow::Result<()> {
    let world = World::new().await?;
    let collector = Collector::start(&[])?;
    let daemon = world.daemon(&collector.url, &[])?;

    // Three cycles of every test reach the collector while the daemon runs.
    let deadline = Instant::now() + Duration::from_secs(90);
    let per_test = loop {
        let mut per_test: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
        for m in stored(&collector).await? {
            let key = (m["target"]["name"].as_str().unwrap_or("?").to_string(), m["test"].as_str().unwrap_or("?").to_string());
            let at = chrono::DateTime::parse_from_rfc3339(m["started_at"].as_str().unwrap_or_default())?.timestamp();
            per_test.entry(key).or_default().push(at);
        }
        if per_test.len() == 5 && per_test.values().all(|times| times.len() >= 3) {
            break per_test;
        }
        anyhow::ensure!(Instant::now() < deadline, "after 90 s the collector has {per_test:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = daemon.started.elapsed().as_secs();
    for ((target, test), mut times) in per_test {
        times.sort();
        // One measurement per slot: never more than the slots that fit in the time elapsed, and
        // never two in the same second (no burst).
        assert!(times.len() as u64 <= elapsed / INTERVAL + 1, "{target} {test}: {} runs in {elapsed} s", times.len());
        assert!(times.windows(2).all(|w| w[1] > w[0]), "{target} {test} ran twice at once: {times:?}");
    }

    // The verdicts are the loopback servers' truth, and status says so without an address.
    let status = status_json(&world.data_dir())?;
    assert_eq!(status["running"], true);
    assert_eq!(status["results"]["site tls"]["status"], "ok");
    assert_eq!(status["results"]["site-quic quic"]["status"], "ok");
    assert_eq!(status["interval_secs"], INTERVAL);
    assert!(status["next_runs"]["slow"].is_string());
    let text = status.to_string();
    assert!(!text.contains("127.0.0.1") && !text.contains(TARGET), "no address or hostname in the state: {text}");

    let (exit, printed) = daemon.terminate()?;
    assert!(exit.success(), "{exit:?}");
    // Everything it measured is at the collector or waits in the spool.
    let mut delivered = ids(&stored(&collector).await?);
    delivered.extend(ids(&spooled(&world.data_dir())?));
    assert!(ids(&printed).is_subset(&delivered));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_cycle_loses_nothing_and_the_next_start_uploads_it() -> anyhow::Result<()> {
    let world = World::new().await?;
    // The collector is away (a closed port): everything stays in the spool.
    let closed = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let daemon = world.daemon(&format!("http://{closed}"), &[])?;
    daemon.wait_printed(8)?;
    let (exit, printed) = daemon.terminate()?;
    assert!(exit.success(), "exit 0 on SIGTERM: {exit:?}");

    // The spool holds exactly what was measured: every finished measurement, sealed.
    let spool = spooled(&world.data_dir())?;
    assert_eq!(ids(&spool), ids(&printed));
    assert_eq!(spool.len(), printed.len(), "each once");
    let leftovers: Vec<String> = std::fs::read_dir(world.data_dir().join("spool"))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "sealed on the way out: {leftovers:?}");
    let status = status_json(&world.data_dir())?;
    assert_eq!(status["running"], false);
    assert_eq!(status["spool_pending"], printed.len());
    assert!(status["upload"]["last_error"].as_str().is_some_and(|e| e.contains("unreachable")), "{status}");

    // The collector is back: the next start delivers the spool before anything else.
    let collector = Collector::start(&[])?;
    let daemon = world.daemon(&collector.url, &[])?;
    let wanted = ids(&printed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !wanted.is_subset(&ids(&stored(&collector).await?)) {
        anyhow::ensure!(Instant::now() < deadline, "the spooled measurements never reached the collector");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (exit, _) = daemon.terminate()?;
    assert!(exit.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_budget_skips_measurements_and_status_says_so() -> anyhow::Result<()> {
    let world = World::new().await?;
    let collector = Collector::start(&[])?;
    // One byte a day: no measurement fits, whatever the time of day.
    let daemon = world.daemon(&collector.url, &["--daily-bytes", "1"])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = status_json(&world.data_dir()).unwrap_or_default();
        // Every test of every target was due once and skipped.
        if status["results"].as_object().is_some_and(|r| r.len() == 5) {
            break status;
        }
        anyhow::ensure!(Instant::now() < deadline, "no skips recorded in 60 s: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (key, result) in status["results"].as_object().context("results")? {
        assert_eq!(result["skipped"], "daily byte budget spent", "{key}");
        assert!(result["status"].is_null(), "{key} never ran");
    }
    assert!(status["budget"]["usage"]["skipped"].as_u64().is_some_and(|n| n >= 5), "{status}");
    assert_eq!(status["budget"]["usage"]["bytes"], 0);
    let (exit, printed) = daemon.terminate()?;
    assert!(exit.success());
    assert!(printed.is_empty(), "nothing measured: {printed:?}");
    assert!(stored(&collector).await?.is_empty());
    Ok(())
}
