//! End to end on loopback: the real `vantage-probe` measures real local DNS, TLS and QUIC
//! servers, submits to a real `vantage-collector`, and the results appear in the API and in
//! `/metrics`. Nothing leaves 127.0.0.1.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use vantage_tests::pki::TestCa;
use vantage_tests::procs::{Collector, probe, trust_probe};
use vantage_tests::servers::{self, DnsBehaviour};

const TARGET: &str = "target.example";
const FILTERED: &str = "blocked.example";

/// Local servers shared by a test: a CA, TLS and QUIC servers for any SNI, an honest resolver,
/// and an SNI-filtering proxy in front of the TLS server.
struct World {
    dir: tempfile::TempDir,
    tls: servers::Running,
    quic: servers::Running,
    dns: servers::Running,
    proxy: servers::Running,
}

impl World {
    async fn new() -> anyhow::Result<World> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let ca = Arc::new(TestCa::new("Vantage test CA")?);
        ca.write_pem(&dir.path().join("ca.pem"))?;
        let tls = servers::tls_any_sni(ca.clone()).await?;
        let quic = servers::quic_any_sni(ca.clone()).await?;
        let dns = servers::dns(zone(), DnsBehaviour::Honest).await?;
        let proxy = servers::sni_reset_proxy(tls.addr, FILTERED).await?;
        Ok(World { dir, tls, quic, dns, proxy })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn write_targets(&self, name: &str, text: &str) -> anyhow::Result<String> {
        let path = self.path(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// A collector whose operator trusts this world's probe (`--trusted-keys`): its
    /// measurements count at once.
    fn collector(&self) -> anyhow::Result<Collector> {
        self.collector_with(&self.trusting_the_probe()?)
    }

    /// A collector publishing `targets` as its signed list (no `target` labels), so its helper
    /// controls them on the test servers' ports, which no standard port list holds; it trusts
    /// this world's probe too.
    fn collector_publishing(&self, targets: &str) -> anyhow::Result<Collector> {
        let list = self.path("signed-list.json");
        vantage_tests::procs::write_signed_list(Path::new(&list), targets, &[])?;
        let mut extra = self.trusting_the_probe()?;
        extra.extend(["--signed-list".to_string(), list]);
        self.collector_with(&extra)
    }

    /// The flags that make a collector's operator trust this world's probe (`--trusted-keys`).
    fn trusting_the_probe(&self) -> anyhow::Result<Vec<String>> {
        trust_probe(&self.dir.path().join("probe-data"), &self.dir.path().join("trusted-keys.txt"))?;
        Ok(vec!["--trusted-keys".to_string(), self.path("trusted-keys.txt")])
    }

    fn collector_with(&self, extra: &[impl AsRef<str>]) -> anyhow::Result<Collector> {
        let (ca, dns) = (self.path("ca.pem"), self.dns.addr.to_string());
        let mut args = vec!["--danger-helper-allow-private", "--ca", &ca, "--helper-resolver", &dns, "--fleet-refresh-secs", "1"];
        args.extend(extra.iter().map(AsRef::as_ref));
        Collector::start(&args)
    }

    /// Probe flags that keep every query on loopback.
    fn probe_args<'a>(&'a self, targets: &'a str, resolver: &'a str, extra: &[&'a str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "--targets",
            targets,
            "--json",
            "--doh",
            "none",
            "--resolver",
            resolver,
            "--no-system-resolver",
            "--dns-linger-ms",
            "300",
            "--timeout",
            "3",
            // A blocked verdict's hop search waits minutes between attempts; the lab's hops-*
            // scenarios test it, on a path with hops.
            "--no-localise",
            "--ca",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(self.path("ca.pem"));
        args.push("--data-dir".into());
        args.push(self.path("probe-data"));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

fn zone() -> HashMap<String, Ipv4Addr> {
    [(TARGET.to_string(), Ipv4Addr::LOCALHOST), (FILTERED.to_string(), Ipv4Addr::LOCALHOST)].into()
}

fn run_probe(args: &[String]) -> anyhow::Result<(Vec<Value>, String)> {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = probe(&argv)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    anyhow::ensure!(out.status.success(), "probe failed: {:?}\n{stderr}", out.status);
    let lines = String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<Result<Vec<Value>, _>>()?;
    Ok((lines, stderr))
}

fn verdict_of<'a>(ms: &'a [Value], target: &str, test: &str) -> (&'a str, &'a str) {
    let m = ms
        .iter()
        .find(|m| m["target"]["name"] == target && m["test"] == test)
        .unwrap_or_else(|| panic!("no {test} measurement of {target} in {ms:#?}"));
    (m["verdict"]["status"].as_str().unwrap_or("?"), m["verdict"]["mechanism"].as_str().unwrap_or("-"))
}

async fn get(url: &str) -> anyhow::Result<String> {
    let resp = reqwest::get(url).await?;
    anyhow::ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
    Ok(resp.text().await?)
}

/// The value of the first sample line starting with `series` (name and labels, as exposed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Scrape `/metrics` until `series` has `value` (the fleet gauges refresh every second here).
async fn metrics_when(collector: &Collector, series: &str, value: f64) -> anyhow::Result<String> {
    for _ in 0..100 {
        let text = get(&format!("{}/metrics", collector.url)).await?;
        if sample(&text, series) == Some(value) {
            return Ok(text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("{series} never became {value}")
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_measures_local_servers_and_results_reach_the_api_and_metrics() -> anyhow::Result<()> {
    let world = World::new().await?;
    let text = format!(
        "[[target]]\nname = \"site\"\ndomain = \"{TARGET}\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"dns\", \"tcp\", \"tls\"]\n\
         [[target]]\nname = \"site-quic\"\ndomain = \"{TARGET}\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"quic\"]\n\
         [[target]]\nname = \"filtered\"\ndomain = \"{FILTERED}\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"tls\"]\n",
        world.tls.addr.port(),
        world.quic.addr.port(),
        world.proxy.addr.port(),
    );
    let targets = world.write_targets("targets.toml", &text)?;
    let collector = world.collector_publishing(&text)?;
    let resolver = world.dns.addr.to_string();

    // With the helper: on loopback the helper stands behind the same filter, so the honest
    // verdict for the filtered name is `down` (everyone fails), never `blocked`.
    let (with_helper, stderr) = run_probe(&world.probe_args(&targets, &resolver, &["--collector", &collector.url]))?;
    assert_eq!(with_helper.len(), 5, "{stderr}");
    assert_eq!(verdict_of(&with_helper, "site", "dns"), ("ok", "-"));
    assert_eq!(verdict_of(&with_helper, "site", "tcp"), ("ok", "-"));
    assert_eq!(verdict_of(&with_helper, "site", "tls"), ("ok", "-"));
    assert_eq!(verdict_of(&with_helper, "site-quic", "quic"), ("ok", "-"));
    assert_eq!(verdict_of(&with_helper, "filtered", "tls"), ("down", "control.failed"));
    assert!(stderr.contains("collector: 5 stored"), "{stderr}");

    // The TLS detail is complete: version, ALPN, a verified chain from our CA.
    let tls = with_helper.iter().find(|m| m["target"]["name"] == "site" && m["test"] == "tls").expect("tls");
    let handshake = tls["observations"]
        .as_array()
        .and_then(|o| o.iter().find(|s| s["op"] == "tls_handshake" && s["role"] == "target" && s["vantage"] == "probe"))
        .expect("target handshake");
    assert_eq!(handshake["detail"]["version"], "TLSv1_3");
    assert_eq!(handshake["detail"]["alpn"], "http/1.1");
    assert_eq!(handshake["detail"]["verified"], true);
    assert!(handshake["detail"]["peer_certificates"].as_array().is_some_and(|c| !c.is_empty()));

    // Without the helper, the control SNI on the same address is the control: the reset that
    // follows only the filtered name's ClientHello is SNI blocking.
    let (alone, _) =
        run_probe(&world.probe_args(&targets, &resolver, &["--collector", &collector.url, "--no-helper", "--tests", "tls"]))?;
    assert_eq!(verdict_of(&alone, "filtered", "tls"), ("blocked", "tls.reset_after_clienthello"));
    assert_eq!(verdict_of(&alone, "site", "tls"), ("ok", "-"));

    // Everything is in the collector's API, and filters work.
    let all = get(&format!("{}/api/v1/measurements", collector.url)).await?;
    assert_eq!(all.lines().count(), 7);
    let blocked = get(&format!("{}/api/v1/measurements?verdict=blocked", collector.url)).await?;
    assert_eq!(blocked.lines().count(), 1);
    assert!(blocked.contains("tls.reset_after_clienthello"));
    let quic = get(&format!("{}/api/v1/measurements?test=quic&target=site-quic", collector.url)).await?;
    assert_eq!(quic.lines().count(), 1);

    // And in /metrics, with the mechanism as a label.
    let metrics = get(&format!("{}/metrics", collector.url)).await?;
    let blocked_series = metrics
        .lines()
        .find(|l| l.starts_with("vantage_measurements_total{") && l.contains("mechanism=\"tls.reset_after_clienthello\""))
        .unwrap_or_else(|| panic!("no blocked series in\n{metrics}"));
    assert!(blocked_series.contains("verdict=\"blocked\"") && blocked_series.ends_with(" 1"), "{blocked_series}");

    // Both runs signed their batches with the same key, made on first use: one probe.
    let metrics = metrics_when(&collector, "vantage_probes_active{country=\"ZZ\"}", 1.0).await?;
    assert_eq!(sample(&metrics, "vantage_collector_batches_total{identity=\"signed\"}"), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, "vantage_collector_batches_total{identity=\"anonymous\"}"), Some(0.0));
    let blocked_probes = "vantage_target_probes{country=\"ZZ\",target=\"other\",test=\"tls\",verdict=\"blocked\"}";
    assert_eq!(sample(&metrics, blocked_probes), Some(1.0), "{metrics}");
    let key = std::fs::metadata(world.dir.path().join("probe-data/probe.key"))?;
    assert_eq!(key.len(), 32);
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, 0o600);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_injection_is_caught_by_the_second_reply() -> anyhow::Result<()> {
    let world = World::new().await?;
    let collector = world.collector()?; // its helper asks the honest resolver
    let injector = servers::dns(zone(), DnsBehaviour::Inject { forged: Ipv4Addr::new(10, 10, 34, 34) }).await?;
    let targets =
        world.write_targets("t.toml", &format!("[[target]]\nname = \"site\"\ndomain = \"{TARGET}\"\ntests = [\"dns\"]\n"))?;
    let (ms, stderr) = run_probe(&world.probe_args(&targets, &injector.addr.to_string(), &["--collector", &collector.url]))?;
    assert_eq!(verdict_of(&ms, "site", "dns"), ("blocked", "dns.injected"), "{stderr}");
    let evidence = ms[0]["verdict"]["evidence"].to_string();
    assert!(evidence.contains("10.10.34.34"), "evidence names the forged answer: {evidence}");

    // The same name through an honest resolver is fine.
    let (clean, _) = run_probe(&world.probe_args(&targets, &world.dns.addr.to_string(), &["--collector", &collector.url]))?;
    assert_eq!(verdict_of(&clean, "site", "dns").0, "ok");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn measurements_wait_in_the_spool_while_the_collector_is_away() -> anyhow::Result<()> {
    let world = World::new().await?;
    let targets = world.write_targets(
        "t.toml",
        &format!("[[target]]\nname = \"site\"\ndomain = \"{TARGET}\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"tcp\", \"tls\"]\n", world.tls.addr.port()),
    )?;
    let resolver = world.dns.addr.to_string();
    // A port nobody listens on: the collector is "offline".
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let offline_url = format!("http://{closed}");
    let (first, stderr) = run_probe(&world.probe_args(&targets, &resolver, &["--collector", &offline_url]))?;
    assert_eq!(first.len(), 2);
    assert!(stderr.contains("2 waiting in the spool"), "{stderr}");
    assert_eq!(spooled_lines(&world.dir.path().join("probe-data/spool"))?, 2);

    // The collector comes back; the next run delivers the old measurements and its own. Its
    // operator does not know this probe: told its key is unregistered, the probe registers it
    // (the default proof of work) after the upload.
    let collector = world.collector_with(&[] as &[&str])?;
    let (_, stderr) = run_probe(&world.probe_args(&targets, &resolver, &["--collector", &collector.url, "--no-helper"]))?;
    assert!(stderr.contains("collector: 4 stored"), "{stderr}");
    let registered = "vantage_collector_key_registrations_total{outcome=\"registered\"}";
    assert_eq!(sample(&get(&format!("{}/metrics", collector.url)).await?, registered), Some(1.0), "{stderr}");
    let record = std::fs::read_to_string(world.dir.path().join("probe-data/registered"))?;
    assert!(record.trim_end().ends_with(&collector.url), "{record}");
    assert_eq!(spooled_lines(&world.dir.path().join("probe-data/spool"))?, 0);
    let stored = get(&format!("{}/api/v1/measurements", collector.url)).await?;
    let ids: Vec<Value> = stored.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    for m in &first {
        assert!(ids.iter().any(|s| s["id"] == m["id"]), "spooled {} was delivered", m["id"]);
    }

    // Delivering again is harmless: the collector already has them.
    let out = probe(&["flush", "--collector", &collector.url, "--data-dir", &world.path("probe-data")])?;
    assert!(out.status.success());
    assert_eq!(get(&format!("{}/api/v1/measurements", collector.url)).await?.lines().count(), 4);

    // One signed batch per spool file, oldest first: the first said two more were waiting
    // behind it, the last that nothing was (the flush above found nothing to send).
    let metrics = get(&format!("{}/metrics", collector.url)).await?;
    assert_eq!(sample(&metrics, "vantage_collector_batches_total{identity=\"signed\"}"), Some(2.0), "{metrics}");
    // Stored, but a key still earning trust counts nowhere; it registered once, not per run.
    let uncounted = "vantage_collector_measurements_uncounted_total{reason=\"untrusted_key\"}";
    assert_eq!(sample(&metrics, uncounted), Some(4.0), "{metrics}");
    assert_eq!(sample(&metrics, registered), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "vantage_probe_spool_pending_count"), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, "vantage_probe_spool_pending_sum"), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, "vantage_probe_spool_pending_bucket{le=\"0\"}"), Some(1.0), "{metrics}");
    Ok(())
}

fn spooled_lines(dir: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_string_lossy().contains(".ndjson") {
            n += std::fs::read_to_string(&path)?.lines().count();
        }
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_collector_keeps_acknowledged_measurements_across_a_graceful_restart() -> anyhow::Result<()> {
    let world = World::new().await?;
    let collector = world.collector()?;
    let targets = world.write_targets(
        "t.toml",
        &format!(
            "[[target]]\nname = \"site\"\ndomain = \"{TARGET}\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"tcp\"]\n",
            world.tls.addr.port()
        ),
    )?;
    let (ms, _) = run_probe(&world.probe_args(&targets, &world.dns.addr.to_string(), &["--collector", &collector.url]))?;
    let data = collector.stop()?;
    let restarted = Collector::start_in(data, &[])?;
    let stored = get(&format!("{}/api/v1/measurements", restarted.url)).await?;
    assert!(stored.contains(ms[0]["id"].as_str().unwrap_or("missing")), "{stored}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_killed_during_a_hop_follow_up_still_delivers_the_blocked_measurement() -> anyhow::Result<()> {
    let world = World::new().await?;
    let collector = world.collector()?;
    let port = world.proxy.addr.port();
    let targets = world.write_targets(
        "t.toml",
        &format!("[[target]]\nname = \"filtered\"\ndomain = \"{FILTERED}\"\naddress = \"127.0.0.1\"\nport = {port}\ntests = [\"tls\"]\n"),
    )?;
    // The hop search waits --localise-spacing after the block before its first attempt; the
    // blocked measurement waits on disk meanwhile.
    let extra = ["--collector", collector.url.as_str(), "--no-helper", "--localise-spacing", "600"];
    let mut args = world.probe_args(&targets, &world.dns.addr.to_string(), &extra);
    args.retain(|a| a != "--no-localise");
    let mut child = std::process::Command::new(vantage_tests::procs::bin("vantage-probe")?)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let held_dir = world.dir.path().join("probe-data/spool/held");
    let held = |dir: &Path| std::fs::read_dir(dir).map(|d| d.filter_map(Result::ok).count()).unwrap_or(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while held(&held_dir) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let was_held = held(&held_dir);
    child.kill()?; // SIGKILL: no chance to hand anything over
    child.wait()?;
    assert_eq!(was_held, 1, "the blocked measurement was never held on disk");

    // The next start (here a flush) queues it as it was held, and delivers it.
    let out = probe(&["flush", "--collector", &collector.url, "--data-dir", &world.path("probe-data")])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(held(&held_dir), 0);
    let stored = get(&format!("{}/api/v1/measurements", collector.url)).await?;
    let ms: Vec<Value> = stored.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(ms.len(), 1, "{stored}");
    assert_eq!(verdict_of(&ms, "filtered", "tls"), ("blocked", "tls.reset_after_clienthello"));
    assert_eq!(ms[0]["verdict"]["localisation"]["not_localised"], "interrupted", "{stored}");
    assert_eq!(ms[0]["verdict"]["localisation"]["attempts"], 0);
    Ok(())
}

#[test]
fn a_bad_targets_file_is_refused_with_its_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[target]]\nname = \"x\"\ndomian = \"typo.example\"\n")?;
    let out = probe(&["run", "--targets", &path.display().to_string(), "--doh", "none", "--resolver", "none"])?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `domian`") && stderr.contains("line 3"), "{stderr}");
    Ok(())
}
