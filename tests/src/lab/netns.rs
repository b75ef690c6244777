//! The four namespaces of one scenario, their links and addresses, and their teardown.
//!
//! Names are unique per scenario instance (`vl<pid>-<n>-<role>`), so scenarios run in parallel
//! and a crashed run's leftovers can be recognised (their pid is gone) and removed by the next.
//! Links are created directly between namespaces (`ip -n A link add … peer … netns B`): the
//! host's own namespace never gets an address, a route or an interface from the lab.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

use super::process::run;
use super::{addr, ifname};

/// Prefix of every namespace the lab creates.
const PREFIX: &str = "vl";

/// Programs the lab runs; checked up front so a missing one is named, not discovered mid-run.
pub const TOOLS: &[&str] = &["ip", "nft", "iptables", "tc", "sysctl", "dnsmasq", "curl"];

/// `ip netns add` races with itself when several threads create the first namespaces at once
/// (it sets up the /run/netns mount); creating one topology at a time is cheap and avoids that.
static CREATING: Mutex<()> = Mutex::new(());

/// Fail with a clear message unless this process is root and every tool is installed.
pub fn preflight() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if uid != Some("0") {
        bail!("the censorship lab creates network namespaces and must run as root (sudo tests/run); refusing to skip");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> =
        TOOLS.iter().copied().filter(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())).collect();
    if !missing.is_empty() {
        bail!("the censorship lab needs {} on PATH: run tests/install-deps.sh (as root)", missing.join(", "));
    }
    Ok(())
}

/// Remove namespaces left by lab runs whose process is gone (a killed test, a power cut).
pub fn remove_stale() -> anyhow::Result<()> {
    for line in run(None, "ip", &["netns", "list"])?.lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = run(None, "ip", &["netns", "del", name]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{name}"));
        }
    }
    Ok(())
}

/// One scenario's namespaces; removed when dropped.
#[derive(Debug)]
pub struct Topology {
    /// Where `vantage-probe` runs.
    pub probe: String,
    /// The router between the probe and the internet, where censors live.
    pub censor: String,
    /// The servers (on its loopback) and the router to the helper.
    pub internet: String,
    /// The collector and test helper.
    pub helper: String,
    created: Vec<String>,
}

impl Topology {
    /// Build the namespaces, links, addresses and routes of one scenario.
    pub fn create() -> anyhow::Result<Topology> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let stem = format!("{PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut topo = Topology {
            probe: format!("{stem}-probe"),
            censor: format!("{stem}-censor"),
            internet: format!("{stem}-internet"),
            helper: format!("{stem}-helper"),
            created: Vec::new(),
        };
        let _one_at_a_time = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        topo.build().with_context(|| format!("building the lab topology {stem}"))?;
        Ok(topo)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        for ns in [self.probe.clone(), self.censor.clone(), self.internet.clone(), self.helper.clone()] {
            run(None, "ip", &["netns", "add", &ns])?;
            self.created.push(ns.clone());
            // IPv4 only: no link-local IPv6 addresses, router solicitations or a second plan.
            sysctl(&ns, &["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])?;
            ip(&ns, "link set lo up")?;
        }
        let (p, c, i, h) = (&self.probe, &self.censor, &self.internet, &self.helper);
        veth(p, ifname::PROBE, c, ifname::CENSOR_TO_PROBE)?;
        veth(c, ifname::CENSOR_TO_INTERNET, i, ifname::INTERNET_TO_CENSOR)?;
        veth(i, ifname::INTERNET_TO_HELPER, h, ifname::HELPER)?;

        address(p, ifname::PROBE, addr::PROBE, 24)?;
        ip(p, &format!("route add default via {}", addr::CENSOR_PROBE_SIDE))?;

        address(c, ifname::CENSOR_TO_PROBE, addr::CENSOR_PROBE_SIDE, 24)?;
        address(c, ifname::CENSOR_TO_INTERNET, addr::CENSOR_INTERNET_SIDE, 30)?;
        ip(c, &format!("route add default via {}", addr::INTERNET_CENSOR_SIDE))?;

        address(i, ifname::INTERNET_TO_CENSOR, addr::INTERNET_CENSOR_SIDE, 30)?;
        address(i, ifname::INTERNET_TO_HELPER, addr::INTERNET_HELPER_SIDE, 24)?;
        ip(i, &format!("route add 198.51.100.0/24 via {}", addr::CENSOR_INTERNET_SIDE))?;
        for host in addr::INTERNET_HOSTS {
            ip(i, &format!("addr add {host}/32 dev lo"))?;
        }

        address(h, ifname::HELPER, addr::HELPER, 24)?;
        ip(h, &format!("route add default via {}", addr::INTERNET_HELPER_SIDE))?;

        for router in [c, i] {
            // Forward, and accept packets for addresses on lo arriving on another interface.
            sysctl(router, &["net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])?;
        }
        // `ip netns exec` mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf: the probe's
        // system resolver asks the lab's resolver, as a volunteer's asks their ISP's.
        let etc = self.etc_dir();
        std::fs::create_dir_all(&etc)?;
        std::fs::write(etc.join("resolv.conf"), format!("nameserver {}\noptions timeout:2 attempts:1\n", addr::PROBE_RESOLVER))?;
        Ok(())
    }

    fn etc_dir(&self) -> PathBuf {
        PathBuf::from(format!("/etc/netns/{}", self.probe))
    }

    /// Every namespace, in path order.
    pub fn all(&self) -> [&str; 4] {
        [&self.probe, &self.censor, &self.internet, &self.helper]
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.created.drain(..).rev() {
            if let Err(e) = run(None, "ip", &["netns", "del", &ns]) {
                eprintln!("vantage-lab: could not remove namespace {ns}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

/// `ip -n NS <words>`.
pub fn ip(ns: &str, command: &str) -> anyhow::Result<()> {
    let mut args = vec!["-n", ns];
    args.extend(command.split_whitespace());
    run(None, "ip", &args).map(drop)
}

/// `sysctl -qw k=v…` inside `ns`.
pub fn sysctl(ns: &str, settings: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["-qw"];
    args.extend_from_slice(settings);
    run(Some(ns), "sysctl", &args).map(drop)
}

fn veth(a: &str, a_name: &str, b: &str, b_name: &str) -> anyhow::Result<()> {
    run(None, "ip", &["-n", a, "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b])?;
    ip(a, &format!("link set {a_name} up"))?;
    ip(b, &format!("link set {b_name} up"))
}

fn address(ns: &str, dev: &str, a: Ipv4Addr, prefix: u8) -> anyhow::Result<()> {
    ip(ns, &format!("addr add {a}/{prefix} dev {dev}"))
}
