//! The three namespaces of `censor_tools.rs` and the censor process, on the tests' namespace
//! harness ([`vantage_tests::netns`]), which removes them when dropped.

use std::time::Duration;

use anyhow::Context;
use vantage_tests::netns::{self, Daemon, Netns, veth};

use super::{BLACKHOLE, CENSOR_PROBE_SIDE, CENSOR_SERVER_SIDE, CLIENT, SERVER};

/// Prefix of every namespace these tests create (the lab harness uses `vl`).
const PREFIX: &str = "vct";
/// B's interface towards A (where the censors sniff).
pub const B_TO_A: &str = "client0";
/// The TUN device the QUIC filter creates in B.
pub const TUN: &str = "quic0";

/// Client (A), censor (B) and server (C) namespaces with veth links; deleted on drop.
pub struct Topology {
    pub a: Netns,
    pub b: Netns,
    pub c: Netns,
}

impl Topology {
    pub fn create() -> anyhow::Result<Topology> {
        netns::preflight("tests/tests/censor_tools.rs", &["ip", "sysctl", "nft"])?;
        netns::remove_stale(PREFIX)?;
        let stem = netns::unique_stem(PREFIX);
        Topology::build(&stem).with_context(|| format!("building the censor tools' topology {stem}"))
    }

    fn build(stem: &str) -> anyhow::Result<Topology> {
        let a = Netns::create_ipv4_only(stem, "a")?;
        let b = Netns::create_ipv4_only(stem, "b")?;
        let c = Netns::create_ipv4_only(stem, "c")?;
        veth(&a, "eth0", &b, B_TO_A)?;
        veth(&b, "server0", &c, "eth0")?;
        a.add_address("eth0", CLIENT, 24)?;
        b.add_address(B_TO_A, CENSOR_PROBE_SIDE, 24)?;
        b.add_address("server0", CENSOR_SERVER_SIDE, 24)?;
        c.add_address("eth0", SERVER, 24)?;
        c.add_address("eth0", BLACKHOLE, 24)?;
        a.ip(&format!("route add default via {CENSOR_PROBE_SIDE}"))?;
        c.ip(&format!("route add default via {CENSOR_SERVER_SIDE}"))?;
        b.enable_forwarding()?;
        Ok(Topology { a, b, c })
    }
}

/// `vantage-lab-censor args` running in `ns`, ready; SIGTERM on drop, so it removes what it
/// added (the QUIC filter's ip rule).
pub fn censor(ns: &Netns, args: &[&str]) -> anyhow::Result<Daemon> {
    let bin = vantage_tests::procs::bin("vantage-lab-censor")?.display().to_string();
    let name = format!("vantage-lab-censor {}", args.join(" "));
    let mut censor = ns.spawn(&name, &bin, args, &[])?.with_sigterm_grace(Duration::from_secs(5));
    censor.wait_for("ready", Duration::from_secs(15))?;
    Ok(censor)
}
