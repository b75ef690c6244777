//! "Is there a network at all?" — asked before measuring, without sending a packet.
//!
//! Connecting a UDP socket only asks the kernel for a route; nothing goes on the wire. If no
//! candidate address has a route, every test would fail, and reporting each as blocked would be
//! a lie: the probe says plainly that the machine is offline instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Public anycast addresses used only for the routing-table question, never contacted.
const ROUTE_PROBES: [IpAddr; 2] =
    [IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888))];

/// True when the kernel has a route to at least one of `destinations`, or, with
/// `or_internet`, to the public internet.
pub fn has_route(destinations: &[IpAddr], or_internet: bool) -> bool {
    let internet = if or_internet { &ROUTE_PROBES[..] } else { &[] };
    destinations.iter().chain(internet).any(|&ip| {
        let bind: SocketAddr = if ip.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
        UdpSocket::bind(bind).and_then(|s| s.connect(SocketAddr::new(ip, 53))).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_always_has_a_route() {
        assert!(has_route(&[IpAddr::V4(Ipv4Addr::LOCALHOST)], false));
        assert!(!has_route(&[], false), "no destinations, no route");
    }
}
