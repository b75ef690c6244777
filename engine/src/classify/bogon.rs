//! Bogon addresses: answers no public name should resolve to.
//!
//! A resolver that answers a public name with `10.10.34.34` or `127.0.0.1` is pointing the user at
//! a sinkhole or at nothing; OONI counts such a "bogon not in control" as blocked 95 % of the time.
//! The list follows OONI's `netxlite/bogon.go` and the IANA special-purpose registries: private,
//! shared (CGNAT), loopback, link-local, "this network", documentation, benchmarking, multicast,
//! reserved; and IPv6 addresses that merely wrap an IPv4 bogon (IPv4-mapped, NAT64, 6to4, Teredo),
//! because an injector can hide `127.0.0.1` in an AAAA answer.
//!
//! A test lab has no public addresses to give its "internet" servers and uses the documentation
//! ranges instead, so the classifier takes a [`BogonPolicy`] that can exempt ranges. The default
//! exempts nothing.
//!
//! The policy also says which *public* addresses are known block pages
//! ([`super::dns::blockpage`]): the shipped list, plus a lab's own entries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::dns::blockpage::{self, Blockpage};

/// IPv4 bogon ranges.
const V4_BOGONS: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this" network (RFC 791); 0.0.0.0 is a favourite null answer
    ([10, 0, 0, 0], 8),      // private (RFC 1918)
    ([100, 64, 0, 0], 10),   // shared address space, CGNAT (RFC 6598)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local (RFC 3927)
    ([172, 16, 0, 0], 12),   // private (RFC 1918)
    ([192, 0, 0, 0], 24),    // IETF protocol assignments (RFC 6890)
    ([192, 0, 2, 0], 24),    // TEST-NET-1 (RFC 5737)
    ([192, 168, 0, 0], 16),  // private (RFC 1918)
    ([198, 18, 0, 0], 15),   // benchmarking (RFC 2544)
    ([198, 51, 100, 0], 24), // TEST-NET-2 (RFC 5737)
    ([203, 0, 113, 0], 24),  // TEST-NET-3 (RFC 5737)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved (RFC 1112), including 255.255.255.255 broadcast
];

/// IPv6 bogon ranges (the prefixes that embed an IPv4 address are handled separately).
const V6_BOGONS: &[(u128, u8)] = &[
    (0, 96),                                         // ::/128, ::1/128 and IPv4-compatible ::/96
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64), // discard-only 100::/64 (RFC 6666)
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // documentation 2001:db8::/32 (RFC 3849)
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7),  // unique local fc00::/7 (RFC 4193)
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10), // link-local fe80::/10
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10), // site-local fec0::/10 (deprecated, RFC 3879)
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8),  // multicast ff00::/8
];

/// Is `ip` a bogon, with no exceptions?
pub fn is_bogon(ip: IpAddr) -> bool {
    BogonPolicy::default().is_bogon(ip)
}

/// Why a `--danger-not-bogon` range was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BogonPolicyError {
    /// Not `address/prefix`, or the prefix is longer than the address.
    #[error("`{0}` is not a CIDR range (address/prefix)")]
    NotCidr(String),
}

/// Which addresses count as bogons here (the list above, minus exempted ranges), and which
/// public ones as known block pages (the shipped list, plus added entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BogonPolicy {
    /// Exempted ranges as (network, prefix length), prefix checked against the family.
    allowed: Vec<(IpAddr, u8)>,
    /// Block pages beyond the shipped list (a lab's documentation-range servers).
    extra_blockpages: Vec<Blockpage>,
}

impl BogonPolicy {
    /// A policy that treats the given CIDR ranges (`192.0.2.0/24`, `2001:db8::/32`) as ordinary
    /// addresses. For labs only: on a real network an exemption hides sinkholes.
    pub fn allowing<S: AsRef<str>>(cidrs: &[S]) -> Result<Self, BogonPolicyError> {
        let allowed = cidrs.iter().map(|c| parse_cidr(c.as_ref())).collect::<Result<_, _>>()?;
        Ok(BogonPolicy { allowed, extra_blockpages: Vec::new() })
    }

    /// This policy with the given CIDR ranges counted as block pages too. For labs only: on a
    /// real network an unsourced entry turns an honest answer into `blocked`.
    pub fn with_blockpages<S: AsRef<str>>(mut self, cidrs: &[S]) -> Result<Self, BogonPolicyError> {
        for cidr in cidrs {
            self.extra_blockpages.push(Blockpage::from_flag(cidr.as_ref())?);
        }
        Ok(self)
    }

    /// The block-page entry covering `ip`, if any: added entries first, then the shipped list.
    pub fn blockpage(&self, ip: IpAddr) -> Option<&Blockpage> {
        self.extra_blockpages.iter().chain(blockpage::shipped()).find(|e| e.covers(ip))
    }

    /// Is `ip` a bogon under this policy?
    pub fn is_bogon(&self, ip: IpAddr) -> bool {
        if self.allowed.iter().any(|&(net, len)| in_prefix(net, len, ip)) {
            return false;
        }
        match ip {
            IpAddr::V4(_) => V4_BOGONS.iter().any(|&(net, len)| in_prefix(Ipv4Addr::from(net).into(), len, ip)),
            IpAddr::V6(v6) => {
                // IPv4-mapped and IPv4-compatible share a lower half; mapped is judged by its IPv4.
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return self.is_bogon(v4.into());
                }
                if V6_BOGONS.iter().any(|&(net, len)| in_prefix(Ipv6Addr::from(net).into(), len, ip)) {
                    return true;
                }
                embedded_v4(v6).iter().any(|&v4| self.is_bogon(v4.into()))
            }
        }
    }
}

/// IPv4 addresses wrapped in an IPv6 one by a transition mechanism.
fn embedded_v4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let bits = u128::from(v6);
    let at = |shift: u32| Ipv4Addr::from((bits >> shift) as u32);
    match v6.segments() {
        // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): the low 32 bits.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => vec![at(0)],
        // 6to4 2002::/16 (RFC 3056): the next 32 bits.
        [0x2002, ..] => vec![at(80)],
        // Teredo 2001::/32 (RFC 4380): the server after the prefix, the client inverted at the end.
        [0x2001, 0, ..] => vec![at(64), Ipv4Addr::from(!(bits as u32))],
        _ => Vec::new(),
    }
}

/// `address/prefix`, the prefix checked against the family.
pub(crate) fn parse_cidr(cidr: &str) -> Result<(IpAddr, u8), BogonPolicyError> {
    let bad = || BogonPolicyError::NotCidr(cidr.to_string());
    let (ip, len) = cidr.trim().split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok((ip, len))
}

/// Is `ip` inside `net/len`? Different families never match.
pub(crate) fn in_prefix(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test ip")
    }

    #[test]
    fn the_bogon_table() {
        let cases = [
            // IPv4 bogons
            ("0.0.0.0", true),
            ("10.10.34.34", true), // Iran's sinkhole
            ("100.64.0.1", true),
            ("100.127.255.255", true),
            ("127.0.0.1", true),
            ("169.254.1.1", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("192.0.0.8", true),
            ("192.0.2.1", true),
            ("192.168.1.1", true),
            ("198.18.0.1", true),
            ("198.19.255.255", true),
            ("198.51.100.7", true),
            ("203.0.113.9", true),
            ("224.0.0.251", true),
            ("240.0.0.1", true),
            ("255.255.255.255", true),
            // IPv4 neighbours of bogon ranges, and ordinary addresses
            ("100.63.255.255", false),
            ("100.128.0.0", false),
            ("172.15.255.255", false),
            ("172.32.0.0", false),
            ("198.17.255.255", false),
            ("198.20.0.0", false),
            ("1.1.1.1", false),
            ("8.8.8.8", false),
            ("93.184.216.34", false),
            ("223.255.255.255", false),
            // IPv6 bogons
            ("::", true),
            ("::1", true),
            ("100::1", true),
            ("2001:db8::1", true),
            ("fc00::1", true),
            ("fd12:3456::1", true),
            ("fe80::1", true),
            ("fec0::1", true),
            ("ff02::1", true),
            // IPv6 wrapping an IPv4 bogon
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("64:ff9b::10.0.0.1", true),
            ("2002:0a00:0001::1", true),              // 6to4 of 10.0.0.1
            ("2001:0:c000:0201::1", true),            // Teredo server 192.0.2.1
            ("2001:0:0808:0808:0:0:80ff:fffe", true), // Teredo client !0x80fffffe = 127.0.0.1
            // IPv6 wrapping a public IPv4, and ordinary addresses
            ("::ffff:8.8.8.8", false),
            ("64:ff9b::8.8.8.8", false),
            ("2002:0808:0808::1", false),
            ("2001:0:0808:0808::f7f7:f7f7", false), // Teredo 8.8.8.8 / client 8.8.8.8
            ("2001:4860:4860::8888", false),
            ("2606:4700:4700::1111", false),
        ];
        for (addr, bogon) in cases {
            assert_eq!(is_bogon(ip(addr)), bogon, "{addr}");
        }
    }

    #[test]
    fn a_lab_policy_exempts_its_documentation_ranges_only() {
        let lab =
            BogonPolicy::allowing(&["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]).expect("valid ranges");
        for addr in ["192.0.2.10", "198.51.100.1", "203.0.113.255", "2001:db8::10", "::ffff:192.0.2.10"] {
            assert!(!lab.is_bogon(ip(addr)), "{addr} should be exempt");
        }
        for addr in ["10.10.34.34", "127.0.0.1", "192.0.0.8", "::1", "fc00::1"] {
            assert!(lab.is_bogon(ip(addr)), "{addr} should stay a bogon");
        }
        assert_eq!(BogonPolicy::default(), BogonPolicy::allowing::<&str>(&[]).expect("empty"));
    }

    #[test]
    fn malformed_ranges_are_rejected() {
        for bad in ["192.0.2.0", "192.0.2.0/33", "2001:db8::/129", "example.com/24", "10.0.0.0/x"] {
            assert!(BogonPolicy::allowing(&[bad]).is_err(), "{bad}");
        }
        let msg = BogonPolicy::allowing(&["nope"]).expect_err("rejected").to_string();
        assert!(msg.contains("nope"));
    }

    #[test]
    fn block_pages_come_from_the_shipped_list_and_added_entries() {
        let lab = BogonPolicy::default().with_blockpages(&["203.0.113.80/32"]).expect("cidr");
        assert_eq!(lab.blockpage(ip("203.0.113.80")).map(|e| e.id.as_str()), Some("flag:203.0.113.80/32"));
        assert_eq!(lab.blockpage(ip("195.175.254.2")).map(|e| e.id.as_str()), Some("ooni.tr_6"));
        assert!(lab.blockpage(ip("203.0.113.81")).is_none());
        assert!(BogonPolicy::default().blockpage(ip("203.0.113.80")).is_none());
        assert!(BogonPolicy::default().with_blockpages(&["nope"]).is_err());
    }

    #[test]
    fn prefixes_of_zero_and_full_length_work() {
        assert!(in_prefix(ip("0.0.0.0"), 0, ip("8.8.8.8")));
        assert!(in_prefix(ip("8.8.8.8"), 32, ip("8.8.8.8")));
        assert!(!in_prefix(ip("8.8.8.8"), 32, ip("8.8.8.9")));
        assert!(in_prefix(ip("::"), 0, ip("2001:db8::1")));
        assert!(!in_prefix(ip("0.0.0.0"), 0, ip("::")), "families never mix");
    }
}
