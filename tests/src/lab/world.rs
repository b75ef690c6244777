//! One scenario brought up: namespaces, resolvers and servers in `internet`, the collector and
//! test helper in `helper`, the censor's rules and programs in `censor`.
//!
//! Everything waits for readiness (a line the program prints once its sockets are bound), never
//! for a fixed time. Dropping a [`World`] kills its programs, then removes the namespaces, then
//! (unless kept) the working directory; this also happens when a test panics.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::scenario::{ResolverMode, Scenario, ServerState, Service};
use super::topology::Topology;
use super::{addr, bin, throughput};
use crate::netns::{Daemon, Netns};
use crate::pki::TestCa;
use crate::procs::trust_probe;

/// How long a program may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The probe's per-step timeout in the lab (seconds): long enough for a lossy link's
/// retransmissions, short enough that timeout scenarios finish quickly.
pub const PROBE_TIMEOUT_SECS: u32 = 4;
/// The helper's per-step timeout: below the probe's, so the helper answers before the probe
/// stops waiting for it.
pub const HELPER_TIMEOUT_SECS: u32 = 3;
/// The root KSK (2017): with it, a resolver validating the lab's unsigned names fails them all.
const ROOT_TRUST_ANCHOR: &str = ".,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D";

/// A scenario, up and running. Field order is drop order.
pub struct World {
    censors: Vec<Daemon>,
    /// The collector (and test helper) in `helper`.
    pub collector: Daemon,
    /// Held for their `Drop`: resolvers and servers in `internet`.
    _servers: Vec<Daemon>,
    /// Held for its `Drop`: the throughput reference endpoint, when a target runs `throttle`.
    _throughput: Option<throughput::Endpoint>,
    /// The namespaces.
    pub topo: Topology,
    /// Held for its `Drop` (absent when kept).
    _dir: Option<tempfile::TempDir>,
    path: PathBuf,
    /// What was brought up.
    pub scenario: Scenario,
}

impl World {
    /// Bring `scenario` up. With `keep`, the working directory (CA, targets file and the signed
    /// list made of it, spools, the collector's store) survives for inspection.
    pub fn up(scenario: &Scenario, keep: bool) -> anyhow::Result<World> {
        let dir = tempfile::Builder::new().prefix(&format!("vantage-lab-{}-", scenario.name)).tempdir()?;
        let (dir, path) = if keep {
            (None, dir.keep())
        } else {
            let path = dir.path().to_path_buf();
            (Some(dir), path)
        };
        let lab_ca = TestCa::new("Vantage lab CA")?;
        lab_ca.save(&path, "lab-ca")?;
        // The collector serves HTTPS, as one on the internet must: the probe refuses plaintext
        // to anything but loopback.
        lab_ca.issue_files(&addr::HELPER.to_string(), &path, "collector")?;
        TestCa::new("Censor interception CA")?.save(&path, "censor-ca")?;
        std::fs::write(path.join("targets.toml"), &scenario.targets_toml)?;
        // The collector publishes the scenario's targets as a signed list, as a real one does: its
        // helper then goes only where the list says (a listed name's ports, its addresses).
        let names: Vec<String> = scenario.targets.iter().map(|t| t.spec.name.clone()).collect();
        crate::procs::write_signed_list(&path.join("signed-list.json"), &scenario.targets_toml, &names)?;

        let routers = scenario.topology.unwrap_or_default();
        let topo = Topology::create_with_routers(routers.routers_before, routers.routers_after)?;
        topo.add_ipv6(scenario.probe_ipv6).context("adding IPv6 to the lab topology")?;
        for command in &scenario.internet.ip {
            topo.internet.ip(command)?;
        }
        if let Some(script) = &scenario.internet.nft {
            topo.internet.nft(script).context("loading the internet's nft script")?;
        }
        let mut servers = vec![
            (dnsmasq(scenario, &topo.internet, addr::HELPER_RESOLVER, false)?, "started, version"),
            (dnsmasq(scenario, &topo.internet, addr::PROBE_RESOLVER, true)?, "started, version"),
            (lab_server(scenario, &topo.internet, &path)?, "ready"),
        ];
        // The lab's probe is the operator's own: its measurements count from the first one.
        trust_probe(&path.join("probe-data"), &path.join("trusted-keys.txt")).context("trusting the lab's probe")?;
        let mut collector = topo.helper.spawn(
            "vantage-collector",
            &bin("vantage-collector")?.display().to_string(),
            &collector_args(&path),
            &[("VANTAGE_LOG", "debug")],
        )?;
        for (server, needle) in &mut servers {
            server.wait_for(needle, READY_TIMEOUT)?;
        }
        collector.wait_for("listening on", READY_TIMEOUT)?;
        let servers = servers.into_iter().map(|(d, _)| d).collect();
        let throughput = throughput_endpoint(scenario, &topo.internet)?;
        let mut world = World {
            censors: Vec::new(),
            collector,
            _servers: servers,
            _throughput: throughput,
            topo,
            _dir: dir,
            path,
            scenario: scenario.clone(),
        };
        world.censor_up().context("setting up the censor")?;
        Ok(world)
    }

    fn censor_up(&mut self) -> anyhow::Result<()> {
        let (ns, spec) = (&self.topo.censor, &self.scenario.censor);
        let settings: Vec<&str> = spec.sysctl.iter().map(String::as_str).collect();
        if !settings.is_empty() {
            ns.sysctl(&settings)?;
        }
        for tool in &spec.run {
            let program = bin(&tool.program).map(|p| p.display().to_string()).unwrap_or_else(|_| tool.program.clone());
            let args: Vec<String> = tool.args.iter().map(|a| a.replace("{dir}", &self.path.display().to_string())).collect();
            let mut daemon = ns.spawn(&tool.program, &program, &args, &[])?;
            daemon.wait_for(&tool.ready, READY_TIMEOUT)?;
            self.censors.push(daemon);
        }
        for command in &spec.ip {
            ns.ip(command)?;
        }
        if let Some(script) = &spec.nft {
            ns.nft(script).context("loading the nft script")?;
        }
        for command in &spec.iptables {
            ns.run("iptables", &command.split_whitespace().collect::<Vec<_>>())?;
        }
        for command in &spec.ip6tables {
            ns.run("ip6tables", &command.split_whitespace().collect::<Vec<_>>())?;
        }
        for command in &spec.tc {
            ns.run("tc", &command.split_whitespace().collect::<Vec<_>>())?;
        }
        Ok(())
    }

    /// The scenario's working directory.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The full probe command line (run it in the `probe` namespace).
    pub fn probe_args(&self) -> anyhow::Result<Vec<String>> {
        let p = |name: &str| self.path.join(name).display().to_string();
        let mut args: Vec<String> = vec![
            "run".into(),
            "--targets".into(),
            p("targets.toml"),
            "--json".into(),
            "-vv".into(),
            "--collector".into(),
            collector_url(""),
            "--resolver".into(),
            format!("{}:53", addr::PROBE_RESOLVER),
            "--doh".into(),
            "none".into(),
            "--ca".into(),
            p("lab-ca.pem"),
            "--timeout".into(),
            PROBE_TIMEOUT_SECS.to_string(),
            "--dns-linger-ms".into(),
            "500".into(),
            "--data-dir".into(),
            p("probe-data"),
        ];
        // The hop follow-up runs where a scenario places the censor at a known hop, with a short
        // spacing (the real one is minutes); elsewhere it is off, so other scenarios keep their time.
        if self.scenario.topology.is_some() {
            args.extend(["--localise-spacing".to_string(), "1".to_string()]);
        } else {
            args.push("--no-localise".into());
        }
        for range in ["203.0.113.0/24", "192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"] {
            args.extend(["--danger-not-bogon".to_string(), range.to_string()]);
        }
        args.extend(self.scenario.probe_args.iter().cloned());
        Ok(args)
    }

    /// `GET path` from the collector, asked from the helper's namespace.
    pub fn fetch(&self, path: &str) -> anyhow::Result<String> {
        let ca = self.path.join("lab-ca.pem").display().to_string();
        self.topo.helper.run("curl", &["-sS", "--fail", "--max-time", "15", "--cacert", &ca, &collector_url(path)])
    }
}

/// The collector's URL (HTTPS, a lab-CA certificate for its address) with `path`.
pub fn collector_url(path: &str) -> String {
    format!("https://{}:{}{path}", addr::HELPER, addr::COLLECTOR_PORT)
}

fn collector_args(dir: &Path) -> Vec<String> {
    let p = |name: &str| dir.join(name).display().to_string();
    [
        "serve",
        "--listen",
        &format!("{}:{}", addr::HELPER, addr::COLLECTOR_PORT),
        "--data-dir",
        &p("collector-data"),
        "--signed-list",
        &p("signed-list.json"),
        "--danger-helper-allow-private",
        "--ca",
        &p("lab-ca.pem"),
        "--helper-resolver",
        &format!("{}:53", addr::HELPER_RESOLVER),
        "--helper-timeout-secs",
        &HELPER_TIMEOUT_SECS.to_string(),
        "--tls-cert",
        &p("collector.crt"),
        "--tls-key",
        &p("collector.key"),
        "--trusted-keys",
        &p("trusted-keys.txt"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A dnsmasq on `listen`: authoritative for `.example` with the scenario's records, or (the
/// probe's, in `servfail` mode) a DNSSEC-validating forwarder whose broken chain of trust makes
/// every answer SERVFAIL, as a misconfigured ISP resolver does.
fn dnsmasq(scenario: &Scenario, ns: &Netns, listen: std::net::Ipv4Addr, for_probe: bool) -> anyhow::Result<Daemon> {
    let mut args: Vec<String> = [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--user=root",
        "--bind-interfaces",
        "--log-facility=-",
        "--log-queries",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--listen-address={listen}"));
    if for_probe && scenario.dns.probe_resolver == ResolverMode::Servfail {
        args.push(format!("--server={}", addr::HELPER_RESOLVER));
        args.push("--dnssec".into());
        args.push(format!("--trust-anchor={ROOT_TRUST_ANCHOR}"));
    } else {
        // No cache: every query is answered afresh from the records, as the scenario says.
        args.push("--cache-size=0".into());
        args.push("--local=/example/".into());
        let mut records = scenario.records();
        if for_probe {
            records.extend(scenario.dns.probe_records.clone());
        }
        // A dual-stack name's AAAA goes on the same line as its A (one host record per name).
        let aaaa = scenario.records_v6(&records);
        args.extend(records.iter().map(|(name, a)| match aaaa.get(name) {
            Some(v6) => format!("--host-record={name},{a},{v6}"),
            None => format!("--host-record={name},{a}"),
        }));
    }
    let name = if for_probe { "dnsmasq (probe's resolver)" } else { "dnsmasq (helper's resolver)" };
    ns.spawn(name, "dnsmasq", &args, &[])
}

/// `vantage-lab-server` listening on every endpoint a running target needs.
fn lab_server(scenario: &Scenario, ns: &Netns, dir: &Path) -> anyhow::Result<Daemon> {
    let mut endpoints = BTreeSet::new();
    for t in scenario.targets.iter().filter(|t| t.server != ServerState::Down) {
        for (service, a, port) in scenario.endpoints(t) {
            let at = std::net::SocketAddr::new(a, port);
            let arg = match (service, t.server) {
                (Service::Tls, ServerState::Strict) => ("--tls-strict", format!("{at}/{}", t.spec.domain)),
                (Service::Tls, _) => ("--tls", at.to_string()),
                (Service::Quic, _) => ("--quic", at.to_string()),
                (Service::Echo, _) => ("--echo", at.to_string()),
                (Service::Dot, _) => ("--dot", at.to_string()),
                (Service::Doh, _) => ("--doh", at.to_string()),
                (Service::Throughput, _) => continue,
            };
            endpoints.insert(arg);
        }
    }
    let mut args = vec!["--ca-dir".to_string(), dir.display().to_string()];
    for (flag, value) in endpoints {
        args.extend([flag.to_string(), value]);
    }
    ns.spawn("vantage-lab-server", &bin("vantage-lab-server")?.display().to_string(), &args, &[])
}

/// nginx on every throughput endpoint a running target needs (none: not started).
fn throughput_endpoint(scenario: &Scenario, ns: &Netns) -> anyhow::Result<Option<throughput::Endpoint>> {
    let endpoints: BTreeSet<(std::net::IpAddr, u16)> = scenario
        .targets
        .iter()
        .filter(|t| t.server != ServerState::Down)
        .flat_map(|t| scenario.endpoints(t))
        .filter(|(service, _, _)| *service == Service::Throughput)
        .map(|(_, a, port)| (a, port))
        .collect();
    if endpoints.is_empty() {
        return Ok(None);
    }
    let endpoints: Vec<_> = endpoints.into_iter().collect();
    throughput::start(ns, &endpoints, READY_TIMEOUT).map(Some)
}
