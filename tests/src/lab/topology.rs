//! The four namespaces of one scenario, their links, addresses and routes (the address plan is
//! [`super::addr`]); built on [`crate::netns`], which removes them when dropped.

use anyhow::Context;

use super::{addr, ifname};
use crate::netns::{self, Netns, veth};

/// Prefix of every namespace the lab creates (`vl<pid>-<n>-<role>`).
const PREFIX: &str = "vl";

/// Programs the lab runs; checked up front so a missing one is named, not discovered mid-run.
pub const TOOLS: &[&str] = &["ip", "nft", "iptables", "ip6tables", "tc", "sysctl", "dnsmasq", "curl"];

/// Fail with a clear message unless this process is root and every tool is installed.
pub fn preflight() -> anyhow::Result<()> {
    netns::preflight("the censorship lab", TOOLS)
}

/// Remove namespaces left by lab runs whose process is gone (a killed test, a power cut).
pub fn remove_stale() -> anyhow::Result<()> {
    netns::remove_stale(PREFIX)
}

/// One scenario's namespaces; removed when dropped.
#[derive(Debug)]
pub struct Topology {
    /// Where `vantage-probe` runs.
    pub probe: Netns,
    /// The router between the probe and the internet, where censors live.
    pub censor: Netns,
    /// The servers (on its loopback) and the router to the helper.
    pub internet: Netns,
    /// The collector and test helper.
    pub helper: Netns,
}

impl Topology {
    /// Build the namespaces, links, addresses and routes of one scenario.
    pub fn create() -> anyhow::Result<Topology> {
        let stem = netns::unique_stem(PREFIX);
        Topology::build(&stem).with_context(|| format!("building the lab topology {stem}"))
    }

    fn build(stem: &str) -> anyhow::Result<Topology> {
        let topo = Topology {
            probe: Netns::create_dual_stack(stem, "probe")?,
            censor: Netns::create_dual_stack(stem, "censor")?,
            internet: Netns::create_dual_stack(stem, "internet")?,
            helper: Netns::create_dual_stack(stem, "helper")?,
        };
        let (p, c, i, h) = (&topo.probe, &topo.censor, &topo.internet, &topo.helper);
        veth(p, ifname::PROBE, c, ifname::CENSOR_TO_PROBE)?;
        veth(c, ifname::CENSOR_TO_INTERNET, i, ifname::INTERNET_TO_CENSOR)?;
        veth(i, ifname::INTERNET_TO_HELPER, h, ifname::HELPER)?;

        p.add_address(ifname::PROBE, addr::PROBE, 24)?;
        p.ip(&format!("route add default via {}", addr::CENSOR_PROBE_SIDE))?;

        c.add_address(ifname::CENSOR_TO_PROBE, addr::CENSOR_PROBE_SIDE, 24)?;
        c.add_address(ifname::CENSOR_TO_INTERNET, addr::CENSOR_INTERNET_SIDE, 30)?;
        c.ip(&format!("route add default via {}", addr::INTERNET_CENSOR_SIDE))?;

        i.add_address(ifname::INTERNET_TO_CENSOR, addr::INTERNET_CENSOR_SIDE, 30)?;
        i.add_address(ifname::INTERNET_TO_HELPER, addr::INTERNET_HELPER_SIDE, 24)?;
        i.ip(&format!("route add 198.51.100.0/24 via {}", addr::CENSOR_INTERNET_SIDE))?;
        for host in addr::INTERNET_HOSTS {
            i.add_address("lo", host, 32)?;
        }

        h.add_address(ifname::HELPER, addr::HELPER, 24)?;
        h.ip(&format!("route add default via {}", addr::INTERNET_HELPER_SIDE))?;

        for router in [c, i] {
            router.enable_forwarding()?;
            // Accept packets for addresses on lo arriving on another interface.
            router.sysctl(&["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])?;
        }
        // The probe's system resolver asks the lab's resolver, as a volunteer's asks their ISP's.
        p.set_resolv_conf(&format!("nameserver {}\noptions timeout:2 attempts:1\n", addr::PROBE_RESOLVER))?;
        Ok(topo)
    }

    /// IPv6 on every link, as on IPv4: the twin addresses of [`addr::v6`], routes both ways,
    /// forwarding on the routers. With `probe_ipv6` false the probe's network has no IPv6 (no
    /// address, no route: a connect to an IPv6 address fails at once), everything else has it.
    pub fn add_ipv6(&self, probe_ipv6: bool) -> anyhow::Result<()> {
        let (p, c, i, h) = (&self.probe, &self.censor, &self.internet, &self.helper);
        if probe_ipv6 {
            p.add_address6(ifname::PROBE, addr::PROBE_V6, 64)?;
            p.ip(&format!("-6 route add default via {}", addr::CENSOR_PROBE_SIDE_V6))?;
        }
        c.add_address6(ifname::CENSOR_TO_PROBE, addr::CENSOR_PROBE_SIDE_V6, 64)?;
        c.add_address6(ifname::CENSOR_TO_INTERNET, addr::CENSOR_INTERNET_SIDE_V6, 64)?;
        c.ip(&format!("-6 route add default via {}", addr::INTERNET_CENSOR_SIDE_V6))?;

        i.add_address6(ifname::INTERNET_TO_CENSOR, addr::INTERNET_CENSOR_SIDE_V6, 64)?;
        i.add_address6(ifname::INTERNET_TO_HELPER, addr::INTERNET_HELPER_SIDE_V6, 64)?;
        i.ip(&format!("-6 route add {} via {}", addr::PROBE_PREFIX_V6, addr::CENSOR_INTERNET_SIDE_V6))?;
        for host in addr::INTERNET_HOSTS {
            i.add_address6("lo", addr::v6(host), 128)?;
        }

        h.add_address6(ifname::HELPER, addr::HELPER_V6, 64)?;
        h.ip(&format!("-6 route add default via {}", addr::INTERNET_HELPER_SIDE_V6))?;
        for router in [c, i] {
            router.enable_forwarding6()?;
        }
        Ok(())
    }
}
