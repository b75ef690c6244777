//! Just enough Ethernet, IPv4 and UDP to read a datagram off the wire and to forge one.
//!
//! Parsing refuses what a censor should not act on (fragments, IP options it cannot skip,
//! lengths that disagree) rather than guessing; building always writes correct checksums,
//! because a receiver silently drops a datagram with a bad one and the test would then be
//! measuring our bug instead of the probe.

use std::net::Ipv4Addr;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// The IP TTL of forged packets.
pub const FORGED_TTL: u8 = 64;

/// Why bytes are not an IPv4 UDP datagram we act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the headers it claims.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Not Ethernet-framed IPv4 (VLAN tags, IPv6, ARP…).
    #[error("not IPv4 (ethertype {0:#06x})")]
    NotIpv4(u16),
    /// IP version or header length is invalid.
    #[error("bad IPv4 header")]
    BadIpHeader,
    /// A fragment: the UDP header or payload is incomplete.
    #[error("IPv4 fragment")]
    Fragment,
    /// Not UDP.
    #[error("IP protocol {0}, not UDP")]
    NotUdp(u8),
    /// The UDP length disagrees with the IP length.
    #[error("bad UDP length")]
    BadUdpLength,
}

/// A UDP datagram inside an IPv4 packet (borrowed from the packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// IP source.
    pub src: Ipv4Addr,
    /// IP destination.
    pub dst: Ipv4Addr,
    /// IP time to live.
    pub ttl: u8,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload.
    pub payload: &'a [u8],
}

/// An Ethernet frame carrying an IPv4 UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// The datagram.
    pub udp: UdpDatagram<'a>,
}

/// Parse an Ethernet II frame holding IPv4 UDP.
pub fn parse_udp_frame(frame: &[u8]) -> Result<UdpFrame<'_>, PacketError> {
    let (header, ip) = split(frame, 14, "Ethernet header")?;
    let ethertype = u16::from_be_bytes([header[12], header[13]]);
    if ethertype != ETHERTYPE_IPV4 {
        return Err(PacketError::NotIpv4(ethertype));
    }
    let mut dst_mac = [0u8; 6];
    let mut src_mac = [0u8; 6];
    dst_mac.copy_from_slice(&header[0..6]);
    src_mac.copy_from_slice(&header[6..12]);
    Ok(UdpFrame { dst_mac, src_mac, udp: parse_udp_packet(ip)? })
}

/// Parse an IPv4 packet holding UDP (as read from a TUN device). Trailing bytes past the IP
/// total length (Ethernet padding) are ignored.
pub fn parse_udp_packet(packet: &[u8]) -> Result<UdpDatagram<'_>, PacketError> {
    let first = *packet.first().ok_or(PacketError::Truncated("IPv4 header"))?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 {
        return Err(PacketError::BadIpHeader);
    }
    let (ip, _) = split(packet, header_len, "IPv4 header")?;
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total_len < header_len {
        return Err(PacketError::BadIpHeader);
    }
    let (datagram, _padding) = split(packet, total_len, "IPv4 packet")?;
    let flags_fragment = u16::from_be_bytes([ip[6], ip[7]]);
    if flags_fragment & 0x3fff != 0 {
        // More-fragments set or a non-zero offset.
        return Err(PacketError::Fragment);
    }
    if ip[9] != IPPROTO_UDP {
        return Err(PacketError::NotUdp(ip[9]));
    }
    let udp = &datagram[header_len..];
    let (udp_header, _) = split(udp, 8, "UDP header")?;
    let udp_len = usize::from(u16::from_be_bytes([udp_header[4], udp_header[5]]));
    if udp_len < 8 || udp_len > udp.len() {
        return Err(PacketError::BadUdpLength);
    }
    Ok(UdpDatagram {
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        ttl: ip[8],
        src_port: u16::from_be_bytes([udp_header[0], udp_header[1]]),
        dst_port: u16::from_be_bytes([udp_header[2], udp_header[3]]),
        payload: &udp[8..udp_len],
    })
}

fn split<'a>(bytes: &'a [u8], at: usize, what: &'static str) -> Result<(&'a [u8], &'a [u8]), PacketError> {
    if bytes.len() < at { Err(PacketError::Truncated(what)) } else { Ok(bytes.split_at(at)) }
}

/// What to put in a forged IPv4 UDP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSpec {
    /// IP source (spoofed).
    pub src: Ipv4Addr,
    /// IP destination.
    pub dst: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// IP identification (injectors differ here; the probe may record it).
    pub ip_id: u16,
    /// IP time to live.
    pub ttl: u8,
}

/// An IPv4 packet carrying `payload` over UDP, with both checksums. `None` if the payload
/// cannot fit in one IPv4 packet.
pub fn build_udp_packet(spec: &UdpSpec, payload: &[u8]) -> Option<Vec<u8>> {
    let udp_len = u16::try_from(payload.len() + 8).ok()?;
    let total_len = udp_len.checked_add(20)?;
    let mut p = Vec::with_capacity(usize::from(total_len));
    p.extend_from_slice(&[0x45, 0x00]);
    p.extend_from_slice(&total_len.to_be_bytes());
    p.extend_from_slice(&spec.ip_id.to_be_bytes());
    p.extend_from_slice(&[0x00, 0x00, spec.ttl, IPPROTO_UDP, 0x00, 0x00]);
    p.extend_from_slice(&spec.src.octets());
    p.extend_from_slice(&spec.dst.octets());
    let ip_sum = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());

    p.extend_from_slice(&spec.src_port.to_be_bytes());
    p.extend_from_slice(&spec.dst_port.to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0x00, 0x00]);
    p.extend_from_slice(payload);
    let pseudo = pseudo_header(spec.src, spec.dst, udp_len);
    // 0 means "no checksum" in UDP, so a computed 0 is sent as all ones (RFC 768).
    let udp_sum = match checksum(&[&pseudo, &p[20..]]) {
        0 => 0xffff,
        sum => sum,
    };
    p[26..28].copy_from_slice(&udp_sum.to_be_bytes());
    Some(p)
}

/// [`build_udp_packet`] in an Ethernet II frame from `src_mac` to `dst_mac`.
pub fn build_udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], spec: &UdpSpec, payload: &[u8]) -> Option<Vec<u8>> {
    let packet = build_udp_packet(spec, payload)?;
    let mut frame = Vec::with_capacity(14 + packet.len());
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    frame.extend_from_slice(&packet);
    Some(frame)
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0..4].copy_from_slice(&src.octets());
    h[4..8].copy_from_slice(&dst.octets());
    h[9] = IPPROTO_UDP;
    h[10..12].copy_from_slice(&udp_len.to_be_bytes());
    h
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`; each part but the last
/// must have even length.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            let word = match pair {
                [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                [hi] => u16::from_be_bytes([*hi, 0]),
                _ => 0,
            };
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether an IPv4 UDP packet's IP and UDP checksums verify (for tests and diagnostics).
pub fn checksums_ok(packet: &[u8]) -> bool {
    let Ok(d) = parse_udp_packet(packet) else { return false };
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let udp_len = d.payload.len() + 8;
    let Ok(udp_len16) = u16::try_from(udp_len) else { return false };
    let udp = &packet[header_len..header_len + udp_len];
    let udp_sum_field = u16::from_be_bytes([udp[6], udp[7]]);
    checksum(&[&packet[..header_len]]) == 0
        && (udp_sum_field == 0 || checksum(&[&pseudo_header(d.src, d.dst, udp_len16), udp]) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> UdpSpec {
        UdpSpec {
            src: Ipv4Addr::new(203, 0, 113, 2),
            dst: Ipv4Addr::new(198, 51, 100, 2),
            src_port: 53,
            dst_port: 40000,
            ip_id: 0x1234,
            ttl: FORGED_TTL,
        }
    }

    #[test]
    fn a_built_frame_parses_back_with_valid_checksums() {
        let frame = build_udp_frame([1; 6], [2; 6], &spec(), b"hello").expect("fits");
        let parsed = parse_udp_frame(&frame).expect("parses");
        assert_eq!((parsed.dst_mac, parsed.src_mac), ([1; 6], [2; 6]));
        assert_eq!(parsed.udp.src, Ipv4Addr::new(203, 0, 113, 2));
        assert_eq!(parsed.udp.dst, Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!((parsed.udp.src_port, parsed.udp.dst_port, parsed.udp.ttl), (53, 40000, 64));
        assert_eq!(parsed.udp.payload, b"hello");
        assert!(checksums_ok(&frame[14..]));
    }

    #[test]
    fn checksum_matches_a_known_header() {
        // The IPv4 header example from Wikipedia's "Internet checksum" article: checksum 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00,
            0xc7,
        ];
        assert_eq!(checksum(&[&header]), 0xb861);
    }

    #[test]
    fn a_corrupted_payload_fails_the_udp_checksum() {
        let mut packet = build_udp_packet(&spec(), b"hello").expect("fits");
        let last = packet.len() - 1;
        packet[last] ^= 0x01;
        assert!(!checksums_ok(&packet));
    }

    #[test]
    fn fragments_other_protocols_and_bad_lengths_are_refused() {
        let good = build_udp_packet(&spec(), b"data").expect("fits");
        let mut fragment = good.clone();
        fragment[6] = 0x20; // more fragments
        assert_eq!(parse_udp_packet(&fragment), Err(PacketError::Fragment));
        let mut tcp = good.clone();
        tcp[9] = 6;
        assert_eq!(parse_udp_packet(&tcp), Err(PacketError::NotUdp(6)));
        let mut long_udp = good.clone();
        long_udp[24..26].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(parse_udp_packet(&long_udp), Err(PacketError::BadUdpLength));
        let mut v6 = good.clone();
        v6[0] = 0x60;
        assert_eq!(parse_udp_packet(&v6), Err(PacketError::BadIpHeader));
        let mut arp = build_udp_frame([1; 6], [2; 6], &spec(), b"x").expect("fits");
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse_udp_frame(&arp), Err(PacketError::NotIpv4(0x0806)));
    }

    #[test]
    fn every_truncation_and_random_bytes_are_errors_not_panics() {
        let frame = build_udp_frame([1; 6], [2; 6], &spec(), b"payload").expect("fits");
        for len in 0..frame.len() {
            assert!(parse_udp_frame(&frame[..len]).is_err(), "len {len}");
        }
        let mut seed = 0x9e37_79b9;
        for _ in 0..2000 {
            let bytes = crate::censor::noise(&mut seed, 80);
            let _ = parse_udp_frame(&bytes);
            let _ = parse_udp_packet(&bytes);
            let _ = checksums_ok(&bytes);
        }
    }
}
