//! "Is there a network at all, and which way would a measurement leave?" — asked before
//! measuring, without sending a packet.
//!
//! Connecting a UDP socket only asks the kernel for a route (policy rules included, as for any
//! unmarked socket of ours); nothing goes on the wire. If no candidate address has a route, every
//! test would fail, and reporting each as blocked would be a lie: the probe says plainly that the
//! machine is offline instead. The source address the kernel picked tells [`crate::network`]
//! which interface a measurement would leave from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Public anycast addresses used only for the routing-table question, never contacted: one per
/// address family, IPv4 first.
pub const INTERNET_ROUTE_PROBES: [IpAddr; 2] =
    [IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888))];

/// True when the kernel has a route to at least one of `destinations`, or, with
/// `or_internet`, to the public internet.
pub fn has_route(destinations: &[IpAddr], or_internet: bool) -> bool {
    let internet = if or_internet { &INTERNET_ROUTE_PROBES[..] } else { &[] };
    destinations.iter().chain(internet).any(|&ip| source_address_towards(ip).is_some())
}

/// The source address the kernel would use for a packet to `destination`, or `None` without a
/// route.
pub fn source_address_towards(destination: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr =
        if destination.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(SocketAddr::new(destination, 53)).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_always_has_a_route() {
        assert!(has_route(&[IpAddr::V4(Ipv4Addr::LOCALHOST)], false));
        assert!(!has_route(&[], false), "no destinations, no route");
    }

    #[test]
    fn the_source_towards_loopback_is_loopback() {
        assert_eq!(source_address_towards(IpAddr::V4(Ipv4Addr::LOCALHOST)), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
