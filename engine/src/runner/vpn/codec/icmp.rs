//! IPv4 ICMP echo, the payload of the WireGuard data phase.
//!
//! An echo request to the endpoint's tunnel address makes its kernel answer through the tunnel,
//! so a reply proves data flows both ways without the endpoint routing anything anywhere.
//! Pure: build a request, recognise the matching reply.

use std::net::Ipv4Addr;

/// IPv4 header length we send (no options).
const IP_HEADER: usize = 20;

/// Why an inner packet is not the reply we wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its headers or than its own total length.
    #[error("truncated")]
    Truncated,
    /// Not IPv4, or IPv4 that is not ICMP.
    #[error("not IPv4 ICMP")]
    NotIcmp,
    /// ICMP, but not an echo reply to our identifier.
    #[error("ICMP type {kind}, identifier {id}")]
    NotOurEcho {
        /// ICMP type.
        kind: u8,
        /// Identifier.
        id: u16,
    },
}

/// An echo reply that matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoReply {
    /// Its sequence number.
    pub seq: u16,
    /// Who sent it.
    pub from: Ipv4Addr,
}

/// An IPv4 ICMP echo request from `src` to `dst` with `payload`.
pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let total = IP_HEADER + 8 + payload.len();
    let total16 = u16::try_from(total).unwrap_or(u16::MAX);
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total16.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes()); // IP id
    p.extend_from_slice(&[0x40, 0, 64, 1, 0, 0]); // DF, TTL 64, ICMP, checksum placeholder
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let ip_sum = checksum(&p[..IP_HEADER]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let icmp_at = p.len();
    p.extend_from_slice(&[8, 0, 0, 0]);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(payload);
    let icmp_sum = checksum(&p[icmp_at..]);
    p[icmp_at + 2..icmp_at + 4].copy_from_slice(&icmp_sum.to_be_bytes());
    p
}

/// Is `packet` (possibly zero-padded, as WireGuard pads) an echo reply with identifier `id`?
pub fn parse_echo_reply(packet: &[u8], id: u16) -> Result<EchoReply, DecodeError> {
    let first = *packet.first().ok_or(DecodeError::Truncated)?;
    if first >> 4 != 4 {
        return Err(DecodeError::NotIcmp);
    }
    let header = usize::from(first & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([
        *packet.get(2).ok_or(DecodeError::Truncated)?,
        *packet.get(3).ok_or(DecodeError::Truncated)?,
    ]));
    if header < IP_HEADER || total < header + 8 || packet.len() < total {
        return Err(DecodeError::Truncated);
    }
    if packet[9] != 1 {
        return Err(DecodeError::NotIcmp);
    }
    let icmp = &packet[header..total];
    let reply_id = u16::from_be_bytes([icmp[4], icmp[5]]);
    if icmp[0] != 0 || reply_id != id {
        return Err(DecodeError::NotOurEcho { kind: icmp[0], id: reply_id });
    }
    let from = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    Ok(EchoReply { seq: u16::from_be_bytes([icmp[6], icmp[7]]), from })
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 130);
    const DST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 129);

    #[test]
    fn a_request_has_valid_checksums() {
        let p = echo_request(SRC, DST, 0x1234, 7, b"vantage");
        assert_eq!(p.len(), 20 + 8 + 7);
        assert_eq!(checksum(&p[..20]), 0, "IP header checksum");
        assert_eq!(checksum(&p[20..]), 0, "ICMP checksum");
    }

    /// The reply a Linux kernel builds: addresses swapped, type 0, same id/seq/payload.
    fn reply_to(request: &[u8]) -> Vec<u8> {
        let mut r = request.to_vec();
        r[12..16].copy_from_slice(&DST.octets());
        r[16..20].copy_from_slice(&SRC.octets());
        r[20] = 0;
        r.resize(48, 0); // WireGuard pads to 16 bytes
        r
    }

    #[test]
    fn the_matching_reply_is_recognised_through_padding() {
        let reply = reply_to(&echo_request(SRC, DST, 0x1234, 7, b"vantage"));
        assert_eq!(parse_echo_reply(&reply, 0x1234), Ok(EchoReply { seq: 7, from: DST }));
        assert_eq!(parse_echo_reply(&reply, 0x9999), Err(DecodeError::NotOurEcho { kind: 0, id: 0x1234 }));
    }

    #[test]
    fn hostile_packets_are_refused_without_panicking() {
        let request = echo_request(SRC, DST, 1, 1, b"");
        assert_eq!(parse_echo_reply(&request, 1), Err(DecodeError::NotOurEcho { kind: 8, id: 1 }));
        for bad in [&[][..], &[0x45], &[0x60; 40], &[0x4f, 0, 0, 20, 0, 0, 0, 0, 0, 1], &request[..27]] {
            assert!(parse_echo_reply(bad, 1).is_err(), "{bad:?}");
        }
    }
}
