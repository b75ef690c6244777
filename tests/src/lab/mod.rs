//! The censorship lab: real censors built from Linux network namespaces, and the real probe,
//! collector and test helper measuring through them.
//!
//! A censor can't be waited for, so each scenario builds one. Four namespaces per scenario:
//!
//! ```text
//!  probe ──────── censor ──────── internet ──────── helper
//!  198.51.100.2   router: nft,    servers on lo:     192.0.2.10
//!  vantage-probe  iptables, tc,   .10 .11 DNS,       vantage-collector
//!                 userspace       .20 .21 TLS/QUIC/  + test helper
//!                 censors         echo, .30 no DNS
//! ```
//!
//! The probe reaches everything, the collector included, through the censor; the helper reaches
//! the servers directly, so its controls are what an uncensored network sees. Everything uses
//! documentation ranges inside namespaces the lab creates; nothing is added to the host's own
//! namespace, and no route leads out.
//!
//! - [`scenario`]: the scenario files (censor rules, targets, expected verdicts);
//! - [`topology`]: the four namespaces, their links, addresses and routes (built on
//!   [`crate::netns`], which also runs the programs inside them and tears everything down);
//! - [`throughput`]: the throughput reference endpoint (the operator's nginx configuration);
//! - [`world`]: one scenario brought up: resolvers, servers, collector, censor;
//! - [`check`]: run the probe, compare verdicts, search for the probe's address, the matrix.
//!
//! Everything here needs root and fails loudly without it: a lab that skips proves nothing.

pub mod check;
pub mod scenario;
pub mod throughput;
pub mod topology;
pub mod world;

/// The address plan: IPv4 from the three documentation ranges, and on every link an IPv6 twin
/// from 2001:db8::/32 (see [`v6`](addr::v6)).
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The probe: the address that must appear nowhere in what the probe or collector emits.
    pub const PROBE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    /// The censor's probe-facing address (the probe's gateway).
    pub const CENSOR_PROBE_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    /// The censor's internet-facing address.
    pub const CENSOR_INTERNET_SIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
    /// The internet's censor-facing address.
    pub const INTERNET_CENSOR_SIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 253);
    /// The internet's helper-facing address.
    pub const INTERNET_HELPER_SIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// The helper: collector and test helper.
    pub const HELPER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    /// The resolver the probe asks (system resolver and `--resolver`).
    pub const PROBE_RESOLVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    /// The resolver the test helper asks.
    pub const HELPER_RESOLVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
    /// The default server of every target.
    pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
    /// A second server (CDN-style answers, IP blocking of one server only).
    pub const SERVER_2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 21);
    /// A host that runs no DNS service (`--dns-blackhole`).
    pub const NO_DNS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 30);
    /// Addresses that live on the internet namespace's loopback.
    pub const INTERNET_HOSTS: [Ipv4Addr; 5] = [PROBE_RESOLVER, HELPER_RESOLVER, SERVER, SERVER_2, NO_DNS];
    /// The collector's port.
    pub const COLLECTOR_PORT: u16 = 8080;

    /// The probe's IPv6 address: like [`PROBE`], it must appear nowhere.
    pub const PROBE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);
    /// The censor's probe-facing IPv6 address (the probe's IPv6 gateway).
    pub const CENSOR_PROBE_SIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
    /// The censor's internet-facing IPv6 address.
    pub const CENSOR_INTERNET_SIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0xff, 0, 0, 0, 0x254);
    /// The internet's censor-facing IPv6 address.
    pub const INTERNET_CENSOR_SIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0xff, 0, 0, 0, 0x253);
    /// The internet's helper-facing IPv6 address.
    pub const INTERNET_HELPER_SIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
    /// The helper's IPv6 address.
    pub const HELPER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);
    /// The probe's IPv6 prefix (routed back to it by the internet's router).
    pub const PROBE_PREFIX_V6: &str = "2001:db8:100::/64";

    /// The IPv6 twin of a host on the internet's loopback: 203.0.113.20 → 2001:db8:113::20 (the
    /// last octet's decimal digits read as hex, so the two addresses read alike).
    pub fn v6(host: Ipv4Addr) -> Ipv6Addr {
        let last = host.octets()[3];
        let low = u16::from_str_radix(&last.to_string(), 16).unwrap_or(u16::from(last));
        Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, low)
    }

    /// The internet host an IPv6 twin stands for, if `address` is one.
    pub fn v4_of(address: Ipv6Addr) -> Option<Ipv4Addr> {
        INTERNET_HOSTS.into_iter().find(|host| v6(*host) == address)
    }
}

/// The interface names inside each namespace (names are per namespace, so they can be fixed and
/// scenario files can name them).
pub mod ifname {
    /// In `probe`, towards the censor.
    pub const PROBE: &str = "eth0";
    /// In `censor`, towards the probe (shape downloads here: its egress is the probe's ingress).
    pub const CENSOR_TO_PROBE: &str = "probe0";
    /// In `censor`, towards the internet.
    pub const CENSOR_TO_INTERNET: &str = "inet0";
    /// In `internet`, towards the censor.
    pub const INTERNET_TO_CENSOR: &str = "censor0";
    /// In `internet`, towards the helper.
    pub const INTERNET_TO_HELPER: &str = "helper0";
    /// In `helper`, towards the internet.
    pub const HELPER: &str = "eth0";
}

/// Where the lab's binaries live: next to the running executable, or one level up from a test
/// binary in `target/<profile>/deps`.
pub fn bin(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| anyhow::anyhow!("{} has no directory", exe.display()))?;
    for candidate in [dir.join(name), dir.parent().map(|p| p.join(name)).unwrap_or_default()] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "{name} is missing next to {}: build the binaries first with `cargo build --workspace --bins` (tests/run does this)",
        exe.display()
    )
}
