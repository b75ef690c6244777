//! The obfs4 test against a real bridge: Debian's `obfs4proxy` as a managed server transport in
//! front of a real Tor relay's OR port, measured by the real `vantage-probe` through a censor
//! namespace, with `vantage-collector` as test helper:
//!
//! ```text
//!  probe ───── censor ───── server: obfs4proxy 203.0.113.40:443 → tor ORPort 203.0.113.40:9001 ── helper
//!  198.51.100.2   │                                                                            203.0.113.60
//!                 └──────── echo: socat TCP echo 203.0.113.41:443 (the low-entropy control)
//! ```
//!
//! The bridge line's cert comes from obfs4proxy's own `obfs4_bridgeline.txt`. Runs, one probe run
//! each: clean; the fully-encrypted-traffic censor (`vantage-lab-censor fet-cut`, an in-path TUN
//! box judging each flow's first data packet by Wu et al.'s exemptions) cutting after 50 KiB and
//! after 0 bytes; a slow link (tc tbf, 2 Mbit/s towards the bridge). Needs root and the
//! packages of `tests/install-deps.sh`; fails loudly without them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vantage_measurement::{ControlKind, Detail, Measurement, Operation, Role, Status, Vantage, VpnStage};
use vantage_tests::netns::Stream;

#[path = "vpn_servers/network.rs"]
#[allow(dead_code)] // shared with vpn_servers.rs, which uses all of it
mod network;

use network::{COLLECTOR_CA, Lab};

const SERVER: &str = "203.0.113.40";
const ECHO: &str = "203.0.113.41";
const BRIDGE_PORT: u16 = 443;
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const PROBE_DEADLINE: Duration = Duration::from_secs(60);

/// Tor relay, obfs4proxy in front of it, the echo; returns the bridge line's cert.
fn start_bridge(lab: &mut Lab) -> anyhow::Result<String> {
    lab.start_tor_relay(&format!("{SERVER}:9001"), "vantageobfs4")?;
    let state = lab.path("obfs4-state");
    std::fs::create_dir(&state)?;
    let state_dir = state.display().to_string();
    let bind = format!("obfs4-{SERVER}:{BRIDGE_PORT}");
    let orport = format!("{SERVER}:9001");
    let env = [
        ("TOR_PT_MANAGED_TRANSPORT_VER", "1"),
        ("TOR_PT_SERVER_TRANSPORTS", "obfs4"),
        ("TOR_PT_SERVER_BINDADDR", bind.as_str()),
        ("TOR_PT_ORPORT", orport.as_str()),
        ("TOR_PT_STATE_LOCATION", state_dir.as_str()),
    ];
    lab.keep(lab.server.spawn("obfs4proxy", "obfs4proxy", &[] as &[&str], &env)?);
    lab.wait_for("obfs4proxy", "SMETHODS DONE", READY_TIMEOUT)?;
    let listen = format!("TCP4-LISTEN:{BRIDGE_PORT},bind={ECHO},fork,reuseaddr");
    lab.keep(lab.echo.spawn("echo", "socat", &[&listen, "EXEC:cat"], &[])?);
    lab.wait_listening(&lab.server, &[("tcp", BRIDGE_PORT), ("tcp", 9001)])?;
    lab.wait_listening(&lab.echo, &[("tcp", BRIDGE_PORT)])?;
    lab.wait_for("tor", "Bootstrapped 0%", READY_TIMEOUT)?;
    let line = std::fs::read_to_string(state.join("obfs4_bridgeline.txt"))?;
    let cert = line.split_whitespace().find_map(|w| w.strip_prefix("cert=")).context("obfs4_bridgeline.txt names no cert")?;
    Ok(cert.to_string())
}

fn targets(cert: &str) -> String {
    format!(
        "[[target]]\nname = \"bridge\"\ndomain = \"bridge.vantage.test\"\ntests = [\"obfs4\"]\necho_address = \"{ECHO}\"\n\
         [target.obfs4]\nbridge = \"obfs4 {SERVER}:{BRIDGE_PORT} cert={cert} iat-mode=0\"\n"
    )
}

/// One probe run; the bridge's measurement, the probe's stderr, and the run's wall time.
fn probe(lab: &Lab, collector: &str, targets_file: &str, run_name: &str) -> anyhow::Result<(Measurement, String, Duration)> {
    let probe = vantage_tests::procs::bin("vantage-probe")?.display().to_string();
    let data_dir = lab.path(&format!("probe-{run_name}")).display().to_string();
    let ca = lab.path(COLLECTOR_CA).display().to_string();
    let args = ["run", "--json", "--targets", targets_file, "--collector", collector, "--ca", &ca]
        .into_iter()
        .chain(["--doh", "none", "--resolver", "none"])
        .chain(["--no-system-resolver", "--timeout", "4", "--data-dir", &data_dir]);
    let started = Instant::now();
    let mut run = lab.probe.spawn(&format!("vantage-probe ({run_name})"), &probe, &args.collect::<Vec<_>>(), &[])?;
    let status = run.wait_exit(PROBE_DEADLINE)?;
    let took = started.elapsed();
    let stdout = run.stream(Stream::Stdout);
    let stderr = run.stream(Stream::Stderr).join("\n");
    if !status.success() {
        bail!("probe run {run_name} failed: {stderr}\n{}", stdout.join("\n"));
    }
    let line = stdout.iter().find(|l| l.starts_with('{')).context("no measurement")?;
    let m: Measurement = serde_json::from_str(line)?;
    let mechanism = m.verdict.mechanism.map(|x| x.as_str()).unwrap_or("-");
    eprintln!("{run_name:>10}: {} {mechanism} in {took:?}; evidence {:?}", m.verdict.status.as_str(), m.verdict.evidence);
    Ok((m, stderr, took))
}

/// The probe's data step, its stage and bytes.
fn data_step(m: &Measurement) -> Option<(VpnStage, u64)> {
    m.observations.iter().filter(|o| o.vantage == Vantage::Probe && o.role == Role::Target && o.op == Operation::Data).find_map(
        |o| match &o.detail {
            Some(Detail::Vpn(d)) => Some((d.stage_reached, d.bytes_sent.unwrap_or(0))),
            _ => None,
        },
    )
}

/// The fully-encrypted-traffic censor in the censor namespace, cutting after `cut_after` bytes.
fn fet_censor(lab: &mut Lab, cut_after: u32) -> anyhow::Result<()> {
    let bin = vantage_tests::procs::bin("vantage-lab-censor")?.display().to_string();
    let cut = cut_after.to_string();
    let args = ["fet-cut", "--tun", "vfet0", "--cut-after", &cut, "--probe-iface", "cp"];
    lab.keep(lab.censor.spawn("fet-cut", &bin, &args, &[])?);
    lab.wait_for("fet-cut", "ready", READY_TIMEOUT)?;
    Ok(())
}

#[test]
fn obfs4_against_a_real_bridge_behind_censors() -> anyhow::Result<()> {
    vantage_tests::netns::preflight("tests/tests/obfs4_bridge.rs", &["obfs4proxy", "tor", "socat", "tc"])?;
    let lab_started = Instant::now();
    let mut lab = Lab::build()?;
    let cert = start_bridge(&mut lab)?;
    let targets_file = lab.write("targets.toml", &targets(&cert))?;
    let collector = lab.start_collector("obfs4 lab CA", 4)?;
    let mut wrong = Vec::new();
    let mut check = |run: &str, got: &Measurement, status: Status, mechanism: Option<&str>| {
        let have = (got.verdict.status, got.verdict.mechanism.map(|x| x.as_str()));
        if have != (status, mechanism) {
            wrong.push(format!("{run}: expected {status:?} {mechanism:?}, got {have:?}; {:?}", got.verdict.evidence));
        }
    };
    let mut runs = BTreeMap::new();

    let (clean, log, took) = probe(&lab, &collector, &targets_file, "clean")?;
    check("clean", &clean, Status::Ok, None);
    let (stage, bytes) = data_step(&clean).context("clean: no data step")?;
    assert_eq!(stage, VpnStage::Data, "clean: the upstream's TLS answer came back through the tunnel");
    assert!(bytes >= 64 * 1024, "clean: {bytes} bytes through the tunnel");
    assert!(clean.controls.contains(&ControlKind::LowEntropy) && clean.controls.contains(&ControlKind::Helper));
    runs.insert("clean", (clean, log, took));

    fet_censor(&mut lab, 50 * 1024)?;
    let (cut, log, took) = probe(&lab, &collector, &targets_file, "cut-50k")?;
    lab.stop("fet-cut");
    check("cut-50k", &cut, Status::Blocked, Some("obfs4.data_cut"));
    runs.insert("cut-50k", (cut, log, took));

    fet_censor(&mut lab, 0)?;
    let (blocked, log, took) = probe(&lab, &collector, &targets_file, "cut-0")?;
    lab.stop("fet-cut");
    check("cut-0", &blocked, Status::Blocked, Some("obfs4.handshake_blocked"));
    runs.insert("cut-0", (blocked, log, took));

    lab.censor.run("tc", &["qdisc", "add", "dev", "cs", "root", "tbf", "rate", "2mbit", "burst", "8kb", "latency", "1s"])?;
    let (slow, log, took) = probe(&lab, &collector, &targets_file, "slow-link")?;
    lab.censor.run("tc", &["qdisc", "del", "dev", "cs", "root"])?;
    check("slow-link", &slow, Status::Ok, None);
    runs.insert("slow-link", (slow, log, took));

    // The cert is the bridge's secret handle: never in a measurement or the probe's log.
    for (run, (m, log, _)) in &runs {
        let line = m.to_json_line()?;
        assert!(!line.contains(&cert) && !line.contains(&cert[..16]), "{run}: the measurement carries the cert");
        assert!(!log.contains(&cert[..16]), "{run}: the probe's log carries the cert");
    }
    let times: Vec<String> = runs.iter().map(|(run, (_, _, took))| format!("{run} {:.1}s", took.as_secs_f64())).collect();
    println!("obfs4 lab: {} (whole test {:.1}s)", times.join(", "), lab_started.elapsed().as_secs_f64());
    assert!(wrong.is_empty(), "{} run(s) wrong:\n{}", wrong.len(), wrong.join("\n"));
    Ok(())
}
