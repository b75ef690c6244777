//! The four namespaces of one scenario, their links, addresses and routes (the address plan is
//! [`super::addr`]); built on [`crate::netns`], which removes them when dropped.

use std::net::{Ipv4Addr, Ipv6Addr};

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
    /// Plain routers between the probe and the censor, then between the censor and `internet`
    /// (only when a scenario's `[topology]` asks; see [`Topology::create_with_routers`]).
    pub routers: Vec<Netns>,
    /// How many of `routers` stand before the censor.
    routers_before: usize,
}

impl Topology {
    /// Build the namespaces, links, addresses and routes of one scenario.
    pub fn create() -> anyhow::Result<Topology> {
        Topology::create_with_routers(0, 0)
    }

    /// [`Topology::create`] with `before` plain routers between the probe and the censor and
    /// `after` between the censor and `internet`, so the censor sits at a known hop (issue 15's
    /// localisation scenarios). With none, the base topology, unchanged.
    pub fn create_with_routers(before: u8, after: u8) -> anyhow::Result<Topology> {
        let stem = netns::unique_stem(PREFIX);
        let topo = Topology::build(&stem, before, after);
        topo.with_context(|| format!("building the lab topology {stem}"))
    }

    /// The chain probe, `before` routers, censor, `after` routers, internet (with no routers, the
    /// base topology: probe, censor, internet). The probe's link (198.51.100.0/24, its gateway
    /// .1) and the internet's (203.0.113.252/30, internet .253); the links between routers are /30s
    /// (198.51.100.128+ before the censor, 203.0.113.236+ after it). Every router forwards,
    /// takes packets for any source (`rp_filter=0`) and answers ICMP without a rate limit, or
    /// ten TTLs in a second would lose most of their Time Exceeded.
    fn build(stem: &str, before: u8, after: u8) -> anyhow::Result<Topology> {
        let mut routers = Vec::new();
        for n in 0..before {
            routers.push(Netns::create_dual_stack(stem, &format!("rb{n}"))?);
        }
        for n in 0..after {
            routers.push(Netns::create_dual_stack(stem, &format!("ra{n}"))?);
        }
        let topo = Topology {
            probe: Netns::create_dual_stack(stem, "probe")?,
            censor: Netns::create_dual_stack(stem, "censor")?,
            internet: Netns::create_dual_stack(stem, "internet")?,
            helper: Netns::create_dual_stack(stem, "helper")?,
            routers,
            routers_before: usize::from(before),
        };
        let nodes = topo.path_nodes();
        let last = nodes.len() - 1;
        // Link i joins node i-1 (the probe for i = 0) and node i; link last+1 joins the last node
        // and the internet. (left address, right address, prefix) of each.
        let link = |i: usize| -> (Ipv4Addr, Ipv4Addr, u8) {
            let before = usize::from(before);
            if i == 0 {
                (addr::PROBE, addr::CENSOR_PROBE_SIDE, 24)
            } else if i == last + 1 {
                (addr::CENSOR_INTERNET_SIDE, addr::INTERNET_CENSOR_SIDE, 30)
            } else if i <= before {
                let base = 128 + 4 * u8::try_from(i - 1).unwrap_or(0);
                (Ipv4Addr::new(198, 51, 100, base + 1), Ipv4Addr::new(198, 51, 100, base + 2), 30)
            } else {
                let base = 236 + 4 * u8::try_from(i - before - 1).unwrap_or(0);
                (Ipv4Addr::new(203, 0, 113, base + 2), Ipv4Addr::new(203, 0, 113, base + 1), 30)
            }
        };
        let (p, i, h) = (&topo.probe, &topo.internet, &topo.helper);
        veth(p, ifname::PROBE, nodes[0].0, nodes[0].1)?;
        for n in 1..=last {
            veth(nodes[n - 1].0, nodes[n - 1].2, nodes[n].0, nodes[n].1)?;
        }
        veth(nodes[last].0, nodes[last].2, i, ifname::INTERNET_TO_CENSOR)?;
        veth(i, ifname::INTERNET_TO_HELPER, h, ifname::HELPER)?;

        p.add_address(ifname::PROBE, addr::PROBE, 24)?;
        p.ip(&format!("route add default via {}", addr::CENSOR_PROBE_SIDE))?;
        for (n, (node, left, right)) in nodes.iter().enumerate() {
            let (left_link, right_link) = (link(n), link(n + 1));
            node.add_address(left, left_link.1, left_link.2)?;
            node.add_address(right, right_link.0, right_link.2)?;
            node.ip(&format!("route add default via {}", right_link.1))?;
            if n > 0 {
                node.ip(&format!("route add 198.51.100.0/24 via {}", left_link.0))?;
            }
        }
        i.add_address(ifname::INTERNET_TO_CENSOR, addr::INTERNET_CENSOR_SIDE, 30)?;
        i.add_address(ifname::INTERNET_TO_HELPER, addr::INTERNET_HELPER_SIDE, 24)?;
        i.ip(&format!("route add 198.51.100.0/24 via {}", addr::CENSOR_INTERNET_SIDE))?;
        for host in addr::INTERNET_HOSTS {
            i.add_address("lo", host, 32)?;
        }
        h.add_address(ifname::HELPER, addr::HELPER, 24)?;
        h.ip(&format!("route add default via {}", addr::INTERNET_HELPER_SIDE))?;
        for router in nodes.iter().map(|n| n.0).chain([i]) {
            router.enable_forwarding()?;
            router.sysctl(&[
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.icmp_ratelimit=0",
            ])?;
        }
        p.set_resolv_conf(&format!("nameserver {}\noptions timeout:2 attempts:1\n", addr::PROBE_RESOLVER))?;
        Ok(topo)
    }

    /// The forwarding nodes between the probe and `internet` in path order (the routers before
    /// the censor, the censor, the routers after it), each with its left and right interface.
    fn path_nodes(&self) -> Vec<(&Netns, &str, &str)> {
        let (before, after) = self.routers.split_at(self.routers_before);
        let mut nodes: Vec<(&Netns, &str, &str)> = before.iter().map(|r| (r, "left0", "right0")).collect();
        nodes.push((&self.censor, ifname::CENSOR_TO_PROBE, ifname::CENSOR_TO_INTERNET));
        nodes.extend(after.iter().map(|r| (r, "left0", "right0")));
        nodes
    }

    /// IPv6 on every link, as on IPv4: the twin addresses of [`addr::v6`], routes both ways,
    /// forwarding on the routers. With `probe_ipv6` false the probe's network has no IPv6 (no
    /// address, no route: a connect to an IPv6 address fails at once), everything else has it.
    /// A router chain's inner links are 2001:db8:1ff:<n>::/64; every node answers ICMPv6 without
    /// a rate limit, as on IPv4.
    pub fn add_ipv6(&self, probe_ipv6: bool) -> anyhow::Result<()> {
        let (p, i, h) = (&self.probe, &self.internet, &self.helper);
        let nodes = self.path_nodes();
        let last = nodes.len() - 1;
        // Link k joins node k-1 (the probe for k = 0) and node k: (left address, right address).
        let link = |k: usize| -> (Ipv6Addr, Ipv6Addr) {
            if k == 0 {
                (addr::PROBE_V6, addr::CENSOR_PROBE_SIDE_V6)
            } else if k == last + 1 {
                (addr::CENSOR_INTERNET_SIDE_V6, addr::INTERNET_CENSOR_SIDE_V6)
            } else {
                let n = u16::try_from(k).unwrap_or(0);
                (Ipv6Addr::new(0x2001, 0xdb8, 0x1ff, n, 0, 0, 0, 1), Ipv6Addr::new(0x2001, 0xdb8, 0x1ff, n, 0, 0, 0, 2))
            }
        };
        if probe_ipv6 {
            p.add_address6(ifname::PROBE, addr::PROBE_V6, 64)?;
            p.ip(&format!("-6 route add default via {}", addr::CENSOR_PROBE_SIDE_V6))?;
        }
        for (n, (node, left, right)) in nodes.iter().enumerate() {
            let (left_link, right_link) = (link(n), link(n + 1));
            node.add_address6(left, left_link.1, 64)?;
            node.add_address6(right, right_link.0, 64)?;
            node.ip(&format!("-6 route add default via {}", right_link.1))?;
            if n > 0 {
                node.ip(&format!("-6 route add {} via {}", addr::PROBE_PREFIX_V6, left_link.0))?;
            }
        }

        i.add_address6(ifname::INTERNET_TO_CENSOR, addr::INTERNET_CENSOR_SIDE_V6, 64)?;
        i.add_address6(ifname::INTERNET_TO_HELPER, addr::INTERNET_HELPER_SIDE_V6, 64)?;
        i.ip(&format!("-6 route add {} via {}", addr::PROBE_PREFIX_V6, addr::CENSOR_INTERNET_SIDE_V6))?;
        for host in addr::INTERNET_HOSTS {
            i.add_address6("lo", addr::v6(host), 128)?;
        }

        h.add_address6(ifname::HELPER, addr::HELPER_V6, 64)?;
        h.ip(&format!("-6 route add default via {}", addr::INTERNET_HELPER_SIDE_V6))?;
        for router in nodes.iter().map(|n| n.0).chain([i]) {
            router.enable_forwarding6()?;
            router.sysctl(&["net.ipv6.icmp.ratelimit=0"])?;
        }
        Ok(())
    }
}
