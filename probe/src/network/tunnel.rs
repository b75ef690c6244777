//! Is an interface a tunnel? Decided from what the kernel says about it, never from its name: a
//! WireGuard interface may be called `home`, an OpenVPN tun device `eth7`, and a container's veth
//! `tun0`.
//!
//! The facts are the ones `/sys/class/net/<if>/` shows: the link-layer type (`type`, an
//! `ARPHRD_*` number), the flags (`IFF_POINTOPOINT`), the device type in `uevent` (`DEVTYPE=…`),
//! and whether the device is a tun/tap (`tun_flags` exists). False positives we avoid: a mobile
//! modem in raw-IP mode looks like a tun (no link layer, point-to-point) but its driver says
//! `DEVTYPE=wwan`; DSL over PPPoE is a PPP link but it is the volunteer's own access line.

use std::fmt;

/// `ARPHRD_ETHER`: Ethernet, Wi-Fi, veth, bridges, and tap devices.
pub const ARPHRD_ETHER: u16 = 1;
/// `ARPHRD_PPP`.
pub const ARPHRD_PPP: u16 = 512;
/// `ARPHRD_RAWIP`: mobile modems (rmnet) that carry bare IP.
pub const ARPHRD_RAWIP: u16 = 519;
/// `ARPHRD_TUNNEL`: IP in IP (ipip), and IPsec `vti`.
pub const ARPHRD_TUNNEL: u16 = 768;
/// `ARPHRD_TUNNEL6`: IP in IPv6 (ip6tnl), and IPsec `vti6`.
pub const ARPHRD_TUNNEL6: u16 = 769;
/// `ARPHRD_LOOPBACK`.
pub const ARPHRD_LOOPBACK: u16 = 772;
/// `ARPHRD_SIT`: IPv6 in IPv4 (6in4, 6to4).
pub const ARPHRD_SIT: u16 = 776;
/// `ARPHRD_IPGRE`: GRE over IPv4.
pub const ARPHRD_IPGRE: u16 = 778;
/// `ARPHRD_IP6GRE`: GRE over IPv6.
pub const ARPHRD_IP6GRE: u16 = 823;
/// `ARPHRD_NONE`: no link layer at all: tun devices, WireGuard, IPsec `xfrm` interfaces.
pub const ARPHRD_NONE: u16 = 65534;
/// `IFF_POINTOPOINT` in an interface's flags.
pub const IFF_POINTOPOINT: u32 = 0x10;

/// What the kernel says about one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceFacts {
    /// Link-layer type (`/sys/class/net/<if>/type`); `None` when unreadable.
    pub link_type: Option<u16>,
    /// Interface flags (`/sys/class/net/<if>/flags`).
    pub flags: u32,
    /// `DEVTYPE=` from `uevent` (`wireguard`, `wlan`, `bridge`, `vlan`, `wwan`, `gretap`, …).
    pub devtype: Option<String>,
    /// A tun or tap device (`tun_flags` exists): a program, not a driver, carries its packets.
    pub tun_or_tap: bool,
    /// For a PPP link: a PPPoE session is up on this machine, so PPP is the access line (DSL).
    pub pppoe_session: bool,
}

/// Which kind of tunnel holds the route. Shown to the volunteer and logged; never the interface's
/// name or addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelKind {
    /// Kernel WireGuard.
    WireGuard,
    /// A tun device: OpenVPN, wireguard-go, most VPN apps, tun2socks.
    Tun,
    /// A tap device (OpenVPN in tap mode, ZeroTier, tinc).
    Tap,
    /// PPP that is not PPPoE: PPTP, L2TP.
    Ppp,
    /// IP in IP or IPsec `vti`.
    IpInIp,
    /// IP in IPv6 (ip6tnl) or IPsec `vti6`.
    IpInIpv6,
    /// IPv6 in IPv4 (sit).
    Sit,
    /// GRE, over IPv4 or IPv6, or its Ethernet flavour.
    Gre,
    /// VXLAN or Geneve overlays.
    Overlay,
    /// No link layer, or a point-to-point link, of a kind not named above (IPsec `xfrm`, …).
    Other,
}

impl TunnelKind {
    /// A stable lowercase word for messages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::WireGuard => "wireguard",
            TunnelKind::Tun => "tun",
            TunnelKind::Tap => "tap",
            TunnelKind::Ppp => "ppp",
            TunnelKind::IpInIp => "ipip",
            TunnelKind::IpInIpv6 => "ip6tnl",
            TunnelKind::Sit => "sit",
            TunnelKind::Gre => "gre",
            TunnelKind::Overlay => "overlay",
            TunnelKind::Other => "point-to-point",
        }
    }
}

impl fmt::Display for TunnelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The tunnel `facts` describe, or `None` for an access link (Ethernet, Wi-Fi, a modem, DSL).
pub fn classify(facts: &InterfaceFacts) -> Option<TunnelKind> {
    match facts.devtype.as_deref() {
        Some("wireguard") => return Some(TunnelKind::WireGuard),
        Some("gretap" | "ip6gretap" | "erspan" | "ip6erspan") => return Some(TunnelKind::Gre),
        Some("vxlan" | "geneve") => return Some(TunnelKind::Overlay),
        // The driver says it is a modem: its raw-IP link looks like a tun but is the access line.
        Some("wwan") => return None,
        _ => {}
    }
    let point_to_point = facts.flags & IFF_POINTOPOINT != 0;
    match facts.link_type? {
        ARPHRD_NONE if facts.tun_or_tap => Some(TunnelKind::Tun),
        ARPHRD_NONE => Some(TunnelKind::Other),
        ARPHRD_ETHER if facts.tun_or_tap => Some(TunnelKind::Tap),
        ARPHRD_PPP if facts.pppoe_session => None,
        ARPHRD_PPP => Some(TunnelKind::Ppp),
        ARPHRD_TUNNEL => Some(TunnelKind::IpInIp),
        ARPHRD_TUNNEL6 => Some(TunnelKind::IpInIpv6),
        ARPHRD_SIT => Some(TunnelKind::Sit),
        ARPHRD_IPGRE | ARPHRD_IP6GRE => Some(TunnelKind::Gre),
        ARPHRD_RAWIP | ARPHRD_LOOPBACK => None,
        _ if point_to_point => Some(TunnelKind::Other),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(link_type: u16, flags: u32, devtype: Option<&str>, tun_or_tap: bool) -> InterfaceFacts {
        InterfaceFacts {
            link_type: Some(link_type),
            flags,
            devtype: devtype.map(str::to_string),
            tun_or_tap,
            pppoe_session: false,
        }
    }

    /// Flags as the kernel shows them: UP|BROADCAST|RUNNING|MULTICAST for Ethernet-like links,
    /// UP|POINTOPOINT|RUNNING|NOARP|MULTICAST for tun and WireGuard.
    const ETHER_FLAGS: u32 = 0x1043;
    const TUN_FLAGS: u32 = 0x10d1;

    #[test]
    fn each_kind_of_interface_is_judged_by_what_the_kernel_says() {
        let cases: &[(&str, InterfaceFacts, Option<TunnelKind>)] = &[
            ("ethernet or veth, whatever its name", facts(ARPHRD_ETHER, ETHER_FLAGS, None, false), None),
            ("wi-fi", facts(ARPHRD_ETHER, ETHER_FLAGS, Some("wlan"), false), None),
            ("a bridge", facts(ARPHRD_ETHER, ETHER_FLAGS, Some("bridge"), false), None),
            ("a vlan", facts(ARPHRD_ETHER, ETHER_FLAGS, Some("vlan"), false), None),
            ("kernel wireguard", facts(ARPHRD_NONE, TUN_FLAGS, Some("wireguard"), false), Some(TunnelKind::WireGuard)),
            ("a tun device (openvpn, wireguard-go)", facts(ARPHRD_NONE, TUN_FLAGS, None, true), Some(TunnelKind::Tun)),
            ("a tap device", facts(ARPHRD_ETHER, ETHER_FLAGS, None, true), Some(TunnelKind::Tap)),
            ("an ipsec xfrm interface", facts(ARPHRD_NONE, TUN_FLAGS, None, false), Some(TunnelKind::Other)),
            ("a mobile modem in raw-ip mode", facts(ARPHRD_NONE, TUN_FLAGS, Some("wwan"), false), None),
            ("a mobile modem with a raw-ip link type", facts(ARPHRD_RAWIP, TUN_FLAGS, None, false), None),
            ("pptp or l2tp", facts(ARPHRD_PPP, TUN_FLAGS, None, false), Some(TunnelKind::Ppp)),
            ("ipip or vti", facts(ARPHRD_TUNNEL, TUN_FLAGS, None, false), Some(TunnelKind::IpInIp)),
            ("ip6tnl", facts(ARPHRD_TUNNEL6, TUN_FLAGS, None, false), Some(TunnelKind::IpInIpv6)),
            ("sit", facts(ARPHRD_SIT, TUN_FLAGS, None, false), Some(TunnelKind::Sit)),
            ("gre", facts(ARPHRD_IPGRE, TUN_FLAGS, None, false), Some(TunnelKind::Gre)),
            ("ip6gre", facts(ARPHRD_IP6GRE, TUN_FLAGS, None, false), Some(TunnelKind::Gre)),
            ("gretap", facts(ARPHRD_ETHER, ETHER_FLAGS, Some("gretap"), false), Some(TunnelKind::Gre)),
            ("vxlan", facts(ARPHRD_ETHER, ETHER_FLAGS, Some("vxlan"), false), Some(TunnelKind::Overlay)),
            ("a point-to-point link of another type", facts(0xfff0, TUN_FLAGS, None, false), Some(TunnelKind::Other)),
            ("loopback", facts(ARPHRD_LOOPBACK, 0x49, None, false), None),
        ];
        for (story, facts, expected) in cases {
            assert_eq!(classify(facts), *expected, "{story}");
        }
    }

    #[test]
    fn pppoe_is_the_access_line_other_ppp_is_a_tunnel() {
        let dsl = InterfaceFacts { pppoe_session: true, ..facts(ARPHRD_PPP, TUN_FLAGS, None, false) };
        assert_eq!(classify(&dsl), None);
        let vpn = InterfaceFacts { pppoe_session: false, ..dsl };
        assert_eq!(classify(&vpn), Some(TunnelKind::Ppp));
    }

    #[test]
    fn an_interface_the_kernel_says_nothing_about_is_not_called_a_tunnel() {
        assert_eq!(classify(&InterfaceFacts::default()), None);
    }

    #[test]
    fn kind_words_are_distinct() {
        let kinds = [
            TunnelKind::WireGuard,
            TunnelKind::Tun,
            TunnelKind::Tap,
            TunnelKind::Ppp,
            TunnelKind::IpInIp,
            TunnelKind::IpInIpv6,
            TunnelKind::Sit,
            TunnelKind::Gre,
            TunnelKind::Overlay,
            TunnelKind::Other,
        ];
        let words: std::collections::BTreeSet<&str> = kinds.iter().map(|k| k.as_str()).collect();
        assert_eq!(words.len(), kinds.len());
    }
}
