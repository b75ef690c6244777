//! Gathering the facts: which interface the kernel would send a measurement from, what the kernel
//! says about that interface, and the main table's default gateways. Thin I/O over the socket
//! API, `getifaddrs(3)`, `/sys/class/net` and `/proc/net`; the parsers are pure and tested on
//! captured text.
//!
//! `/sys/class/net` shows the interfaces of the network namespace sysfs was mounted in, which
//! `ip netns exec` arranges; `/proc/self/net` and sockets follow the process's own namespace.
//! `/proc/self/net`, not `/proc/net`: the systemd unit's `ProcSubset=pid` hides `/proc/net`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use nix::ifaddrs::getifaddrs;
use nix::sys::socket::SockaddrStorage;

use super::tunnel::{self, InterfaceFacts};
use crate::netcheck;

/// The interface a measurement to the internet would leave from, for one address family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Egress {
    /// The interface's name: fingerprinted, never shown.
    pub name: String,
    /// What the kernel says about it.
    pub facts: InterfaceFacts,
    /// For IPv4: the interface's subnet (address masked by its netmask) and prefix length.
    pub subnet: Option<(IpAddr, u8)>,
}

/// A default route of the main table: the interface and the gateway, if it has one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DefaultGateway {
    pub interface: String,
    pub gateway: Option<IpAddr>,
}

/// Where a measurement to `destination` would leave from: the interface that holds the source
/// address the kernel picks (policy routing included), preferring a tunnel when several hold it.
pub(crate) fn egress_towards(destination: IpAddr) -> Option<Egress> {
    let source = netcheck::source_address_towards(destination)?;
    let mut holders: Vec<Egress> = getifaddrs()
        .ok()?
        .filter(|ifa| ifa.address.as_ref().and_then(ip_of) == Some(source))
        .map(|ifa| Egress {
            facts: interface_facts(&ifa.interface_name),
            subnet: ifa.netmask.as_ref().and_then(ip_of).and_then(|mask| subnet_v4(source, mask)),
            name: ifa.interface_name,
        })
        .collect();
    let tunnel_first = holders.iter().position(|e| tunnel::classify(&e.facts).is_some()).unwrap_or(0);
    (tunnel_first < holders.len()).then(|| holders.swap_remove(tunnel_first))
}

fn ip_of(address: &SockaddrStorage) -> Option<IpAddr> {
    address.as_sockaddr_in().map(|a| IpAddr::V4(a.ip())).or_else(|| address.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
}

/// The IPv4 subnet of `address` under `mask`; `None` for IPv6 (providers rotate IPv6 prefixes,
/// which would start a new epoch every day on the same line).
fn subnet_v4(address: IpAddr, mask: IpAddr) -> Option<(IpAddr, u8)> {
    match (address, mask) {
        (IpAddr::V4(a), IpAddr::V4(m)) => {
            let bits = u32::from(m);
            Some((IpAddr::V4(Ipv4Addr::from(u32::from(a) & bits)), bits.count_ones() as u8))
        }
        _ => None,
    }
}

/// What `/sys/class/net/<name>/` says; unreadable facts stay unknown.
pub(crate) fn interface_facts(name: &str) -> InterfaceFacts {
    // Interface names never hold a slash; refuse one rather than leave /sys/class/net.
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return InterfaceFacts::default();
    }
    let dir = Path::new("/sys/class/net").join(name);
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    InterfaceFacts {
        link_type: read("type").and_then(|t| t.trim().parse().ok()),
        flags: read("flags").and_then(|f| parse_hex_flags(&f)).unwrap_or(0),
        devtype: read("uevent").and_then(|u| devtype(&u)),
        tun_or_tap: dir.join("tun_flags").exists(),
        pppoe_session: std::fs::read_to_string("/proc/self/net/pppoe").is_ok_and(|t| has_pppoe_session(&t)),
    }
}

/// The main table's default routes, IPv4 and IPv6, sorted.
pub(crate) fn default_gateways() -> Vec<DefaultGateway> {
    let mut gateways = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/self/net/route") {
        gateways.extend(defaults_v4(&text));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/self/net/ipv6_route") {
        gateways.extend(defaults_v6(&text));
    }
    gateways.sort();
    gateways.dedup();
    gateways
}

/// `0x1091` → 0x1091.
fn parse_hex_flags(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// `DEVTYPE=wireguard` in a `uevent` file.
fn devtype(uevent: &str) -> Option<String> {
    uevent.lines().find_map(|line| line.strip_prefix("DEVTYPE=")).map(|t| t.trim().to_string())
}

/// `/proc/net/pppoe` has a header line, then one line per session.
fn has_pppoe_session(text: &str) -> bool {
    text.lines().skip(1).any(|line| !line.trim().is_empty())
}

const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;
const RTF_REJECT: u32 = 0x200;

/// `/proc/net/route`: `Iface Destination Gateway Flags RefCnt Use Metric Mask …`, addresses as
/// the hex of the in-memory (network order) word.
fn defaults_v4(text: &str) -> Vec<DefaultGateway> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [interface, destination, gateway, flags, _, _, _, mask, ..] = fields.as_slice() else { return None };
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let is_default = *destination == "00000000" && *mask == "00000000";
            (is_default && flags & RTF_UP != 0 && flags & RTF_REJECT == 0).then(|| {
                let gateway = u32::from_str_radix(gateway, 16).ok().filter(|_| flags & RTF_GATEWAY != 0);
                DefaultGateway {
                    interface: interface.to_string(),
                    gateway: gateway.map(|g| IpAddr::V4(Ipv4Addr::from(g.to_ne_bytes()))),
                }
            })
        })
        .collect()
}

/// `/proc/net/ipv6_route`: `dest plen src plen next_hop metric refcnt use flags iface`, addresses
/// as 32 hex digits in network order. Every table has an unreachable `::/0` on `lo`; skipped.
fn defaults_v6(text: &str) -> Vec<DefaultGateway> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [destination, plen, _, _, next_hop, _, _, _, flags, interface] = fields.as_slice() else { return None };
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let is_default = destination.bytes().all(|b| b == b'0') && *plen == "00";
            (is_default && flags & RTF_UP != 0 && flags & RTF_REJECT == 0 && *interface != "lo").then(|| DefaultGateway {
                interface: interface.to_string(),
                gateway: parse_hex_v6(next_hop).filter(|g| !g.is_unspecified()).map(IpAddr::V6),
            })
        })
        .collect()
}

fn parse_hex_v6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Ipv6Addr::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file prints each address word in host byte order; this capture is from x86_64.
    #[cfg(target_endian = "little")]
    #[test]
    fn ipv4_default_routes_are_read_from_proc_net_route() {
        // Wired and wireless defaults, a subnet route, and a PPP default without a gateway.
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
                    eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                    wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0\n\
                    ppp0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        assert_eq!(
            defaults_v4(text),
            vec![
                DefaultGateway { interface: "wlan0".into(), gateway: ip("192.168.1.1") },
                DefaultGateway { interface: "eth0".into(), gateway: ip("10.0.0.1") },
                DefaultGateway { interface: "ppp0".into(), gateway: None },
            ]
        );
    }

    #[test]
    fn ipv6_default_routes_skip_the_unreachable_route_on_lo() {
        let text = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
                    20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n\
                    00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(
            defaults_v6(text),
            vec![DefaultGateway { interface: "eth0".into(), gateway: Some("fe80::1".parse().expect("ip")) }]
        );
    }

    #[test]
    fn sysfs_files_are_parsed() {
        assert_eq!(parse_hex_flags("0x1091\n"), Some(0x1091));
        assert_eq!(devtype("INTERFACE=wg0\nIFINDEX=5\nDEVTYPE=wireguard\n").as_deref(), Some("wireguard"));
        assert_eq!(devtype("INTERFACE=eth0\nIFINDEX=2\n"), None);
        assert!(!has_pppoe_session("Id       Address              Device\n"));
        assert!(has_pppoe_session("Id       Address              Device\n00000A2B 00:11:22:33:44:55 eth0\n"));
    }

    #[test]
    fn the_ipv4_subnet_masks_the_host_part() {
        let subnet = subnet_v4("192.168.1.57".parse().expect("ip"), "255.255.255.0".parse().expect("ip"));
        assert_eq!(subnet, Some(("192.168.1.0".parse().expect("ip"), 24)));
        assert_eq!(subnet_v4("2001:db8::1".parse().expect("ip"), "ffff:ffff::".parse().expect("ip")), None);
    }

    #[test]
    fn a_name_that_would_leave_sys_class_net_is_not_read() {
        assert_eq!(interface_facts("../../etc"), InterfaceFacts::default());
        assert_eq!(interface_facts(".."), InterfaceFacts::default());
    }

    #[test]
    fn loopback_is_not_a_tunnel() {
        // Every namespace has `lo`; its facts come from the real /sys.
        assert_eq!(tunnel::classify(&interface_facts("lo")), None);
    }
}
