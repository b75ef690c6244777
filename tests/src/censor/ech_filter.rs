//! The decisions of an in-path ECH censor: which TCP segments of which flows to let through.
//!
//! Built the way DPI boxes that block ECH work (Russia's TSPU since November 2024, the GFW): the
//! box sits in the path, sees every client→server segment, reassembles the flow's first bytes
//! until the whole ClientHello is there (a hello split across segments is no escape), reads its
//! extension list, and when the hello carries `encrypted_client_hello` (0xfe0d) — optionally only
//! together with a listed SNI, as Russia's rule keys on `cloudflare-ech.com` — it blocks the
//! segment that completed the hello and every later segment of that flow. What "block" means on
//! the wire (drop, or drop and answer with a RST) is the I/O side's business ([`super::nfqueue`]).
//! Segments before the decision pass: a censor cannot hold what it has not judged yet.
//!
//! Pure: bytes in, a [`Decision`] out; the table is bounded.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use super::NameList;
use super::tls_hello::{Extensions, MAX_HELLO, Sni, record_stream_extensions, record_stream_sni};

/// The TLS extension type of `encrypted_client_hello`.
pub const ECH_EXTENSION: u16 = 0xfe0d;
/// Flows remembered at once; past this, decided flows are forgotten (the lab has a handful).
const MAX_FLOWS: usize = 4096;
const IPPROTO_TCP: u8 = 6;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// What to do with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Pass,
    /// Block it (this flow carried a ClientHello the rule matches).
    Block,
}

/// Which ClientHellos the censor blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EchRule {
    /// Only hellos whose SNI is listed (Russia's rule); `None`: every hello offering ECH.
    pub names: Option<NameList>,
}

impl EchRule {
    /// Whether a whole ClientHello, as a TLS record stream, is blocked.
    pub fn blocks(&self, stream: &[u8], extensions: &[u16]) -> bool {
        if !extensions.contains(&ECH_EXTENSION) {
            return false;
        }
        match &self.names {
            None => true,
            Some(names) => matches!(record_stream_sni(stream), Ok(Sni::Known(Some(sni))) if names.matches(&sni)),
        }
    }
}

/// A client→server flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    src: Ipv4Addr,
    src_port: u16,
    dst: Ipv4Addr,
    dst_port: u16,
}

#[derive(Debug)]
enum Flow {
    /// Collecting the first bytes: segments by offset from the first data byte.
    Reading {
        base: Option<u32>,
        segments: BTreeMap<usize, Vec<u8>>,
    },
    Passed,
    Blocked,
}

/// Every flow the censor is watching, and its rule.
#[derive(Debug, Default)]
pub struct EchFilter {
    rule: EchRule,
    flows: HashMap<FlowKey, Flow>,
}

impl EchFilter {
    /// A filter applying `rule`.
    pub fn new(rule: EchRule) -> Self {
        EchFilter { rule, flows: HashMap::new() }
    }

    /// Judge one IPv4 packet (client→server; anything that is not IPv4 TCP passes).
    pub fn decide(&mut self, packet: &[u8]) -> Decision {
        let Some(seg) = parse_tcp(packet) else { return Decision::Pass };
        let key = FlowKey { src: seg.src, src_port: seg.src_port, dst: seg.dst, dst_port: seg.dst_port };
        if self.flows.len() >= MAX_FLOWS {
            self.flows.retain(|_, f| matches!(f, Flow::Blocked));
        }
        if seg.flags & SYN != 0 && seg.flags & ACK == 0 {
            // A new connection (a reused port starts afresh).
            let base = Some(seg.seq.wrapping_add(1));
            self.flows.insert(key, Flow::Reading { base, segments: BTreeMap::new() });
            return Decision::Pass;
        }
        let flow = self.flows.entry(key).or_insert(Flow::Reading { base: None, segments: BTreeMap::new() });
        match flow {
            Flow::Blocked => Decision::Block,
            Flow::Passed | Flow::Reading { .. } if seg.flags & (FIN | RST) != 0 => {
                // Done with this flow (a FIN while still reading: the hello will never be whole).
                self.flows.remove(&key);
                Decision::Pass
            }
            Flow::Passed => Decision::Pass,
            Flow::Reading { .. } if seg.payload.is_empty() => Decision::Pass,
            Flow::Reading { base, segments } => {
                // Joined mid-flow: the first data seen is the start.
                let start = *base.get_or_insert(seg.seq);
                let offset = seg.seq.wrapping_sub(start) as usize;
                if offset > MAX_HELLO {
                    *flow = Flow::Passed;
                    return Decision::Pass;
                }
                let longer = segments.get(&offset).is_none_or(|old| old.len() < seg.payload.len());
                if longer {
                    segments.insert(offset, seg.payload.to_vec());
                }
                let stream = contiguous(segments);
                let next = match record_stream_extensions(&stream) {
                    Ok(Extensions::NeedMore) if stream.len() <= 2 * MAX_HELLO => return Decision::Pass,
                    Ok(Extensions::Known(types)) if self.rule.blocks(&stream, &types) => Flow::Blocked,
                    // Decided without a match, or not a hello we can read: not ours to judge.
                    _ => Flow::Passed,
                };
                let decision = if matches!(next, Flow::Blocked) { Decision::Block } else { Decision::Pass };
                *flow = next;
                decision
            }
        }
    }
}

/// The bytes from offset 0 on, as far as they run without a gap (overlaps resolved by position).
fn contiguous(segments: &BTreeMap<usize, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (&offset, bytes) in segments {
        if offset > out.len() {
            break;
        }
        let skip = out.len() - offset;
        if skip < bytes.len() {
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    out
}

/// The fields of an IPv4 TCP segment the filter reads.
#[derive(Debug, PartialEq, Eq)]
struct Segment<'a> {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    flags: u8,
    payload: &'a [u8],
}

/// Parse an IPv4 packet holding a TCP segment; `None` for anything else, fragments included.
fn parse_tcp(packet: &[u8]) -> Option<Segment<'_>> {
    let first = *packet.first()?;
    let ip_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ip_len < 20 || packet.len() < ip_len {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    let flags_fragment = u16::from_be_bytes([packet[6], packet[7]]);
    if packet[9] != IPPROTO_TCP || flags_fragment & 0x3fff != 0 || total < ip_len || packet.len() < total {
        return None;
    }
    let tcp = &packet[ip_len..total];
    let tcp_len = usize::from(*tcp.get(12)? >> 4) * 4;
    if tcp_len < 20 || tcp.len() < tcp_len {
        return None;
    }
    Some(Segment {
        src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
        dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags: tcp[13],
        payload: &tcp[tcp_len..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::censor::tls_hello::tests::{client_hello, records};

    const ISN: u32 = 0xffff_fff0; // wraps within the hello

    /// An IPv4 TCP packet from the probe's port `sport` to 203.0.113.10:443 (checksums are not
    /// the filter's business: the kernel checked them before queueing).
    fn packet(sport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let total = 40 + payload.len();
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, IPPROTO_TCP, 0, 0, 10, 10, 1, 2, 203, 0, 113, 10];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&443u16.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    /// A ClientHello record stream with `sni`, carrying ECH when `ech` (the padding extension,
    /// first in the list, becomes 0xfe0d).
    fn hello(sni: &str, ech: bool) -> Vec<u8> {
        let mut msg = client_hello(Some(sni), 200);
        if ech {
            assert_eq!(msg[47..49], [0x00, 0x15]);
            msg[47..49].copy_from_slice(&ECH_EXTENSION.to_be_bytes());
        }
        records(&msg, 16384)
    }

    /// Send `stream` on a new flow in segments of `mss`, in the given order of segment indexes;
    /// the decision for each segment, in sending order.
    fn flow(filter: &mut EchFilter, sport: u16, stream: &[u8], mss: usize, order: &[usize]) -> Vec<Decision> {
        assert_eq!(filter.decide(&packet(sport, ISN, SYN, &[])), Decision::Pass);
        let chunks: Vec<&[u8]> = stream.chunks(mss).collect();
        order.iter().map(|&i| filter.decide(&packet(sport, ISN.wrapping_add(1 + (i * mss) as u32), ACK, chunks[i]))).collect()
    }

    #[test]
    fn a_hello_offering_ech_is_blocked_at_the_segment_that_completes_it() {
        let mut filter = EchFilter::new(EchRule::default());
        let stream = hello("allowed.example", true);
        let n = stream.len().div_ceil(100);
        let decisions = flow(&mut filter, 1000, &stream, 100, &(0..n).collect::<Vec<_>>());
        assert!(decisions[..n - 1].iter().all(|d| *d == Decision::Pass), "{decisions:?}");
        assert_eq!(decisions[n - 1], Decision::Block);
        // Retransmissions and everything after stay blocked.
        let last = ISN.wrapping_add(1 + ((n - 1) * 100) as u32);
        assert_eq!(filter.decide(&packet(1000, last, ACK, &stream[(n - 1) * 100..])), Decision::Block);
        assert_eq!(filter.decide(&packet(1000, last, ACK | FIN, &[])), Decision::Block);
    }

    #[test]
    fn reordered_segments_are_reassembled() {
        let mut filter = EchFilter::new(EchRule::default());
        let stream = hello("allowed.example", true);
        let n = stream.len().div_ceil(64);
        let mut order: Vec<usize> = (0..n).rev().collect();
        order.push(n - 1); // a retransmission of the first-sent segment
        let decisions = flow(&mut filter, 1001, &stream, 64, &order);
        // Only when segment 0 arrives (last of the reversed run) is the hello whole.
        assert_eq!(decisions[n - 1], Decision::Block, "{decisions:?}");
        assert!(decisions[..n - 1].iter().all(|d| *d == Decision::Pass));
        assert_eq!(decisions[n], Decision::Block);
    }

    #[test]
    fn hellos_without_ech_and_other_protocols_pass_whole() {
        let mut filter = EchFilter::new(EchRule::default());
        let plain = hello("blocked.example", false);
        let n = plain.len().div_ceil(100);
        let decisions = flow(&mut filter, 1002, &plain, 100, &(0..n).collect::<Vec<_>>());
        assert!(decisions.iter().all(|d| *d == Decision::Pass));
        let http = flow(&mut filter, 1003, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 100, &[0]);
        assert_eq!(http, vec![Decision::Pass]);
        assert_eq!(filter.decide(b"\x60\x00"), Decision::Pass, "not IPv4");
    }

    #[test]
    fn russias_rule_blocks_ech_only_with_a_listed_sni() {
        let rule = EchRule { names: Some(NameList::new(["cloudflare-ech.example"])) };
        let mut filter = EchFilter::new(rule);
        let listed = hello("cloudflare-ech.example", true);
        assert_eq!(flow(&mut filter, 1004, &listed, 2000, &[0]), vec![Decision::Block]);
        let other = hello("allowed.example", true);
        assert_eq!(flow(&mut filter, 1005, &other, 2000, &[0]), vec![Decision::Pass]);
        let listed_no_ech = hello("cloudflare-ech.example", false);
        assert_eq!(flow(&mut filter, 1006, &listed_no_ech, 2000, &[0]), vec![Decision::Pass]);
    }

    #[test]
    fn a_reused_port_starts_afresh_and_noise_never_panics() {
        let mut filter = EchFilter::new(EchRule::default());
        assert_eq!(flow(&mut filter, 1007, &hello("a.example", true), 2000, &[0]), vec![Decision::Block]);
        assert_eq!(flow(&mut filter, 1007, &hello("a.example", false), 2000, &[0]), vec![Decision::Pass]);
        let mut seed = 0x5eed_0ec4;
        for _ in 0..3000 {
            let noise = crate::censor::noise(&mut seed, 120);
            let _ = filter.decide(&noise);
            let _ = filter.decide(&packet(2000, seed, ACK, &noise));
        }
    }
}
