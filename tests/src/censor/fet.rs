//! A censor of fully encrypted traffic, as the GFW ran one from November 2021 (Wu et al., "How
//! the Great Firewall of China Detects and Blocks Fully Encrypted Traffic", USENIX Security
//! 2023, Algorithm 1), with the volume cut reported for obfs4 and other random-looking flows.
//!
//! Per TCP flow from the probe side, the first packet carrying data decides. It is *exempt*
//! (the flow is left alone for good) if any of these holds:
//! - the mean number of set bits per byte is at most 3.4 or at least 4.6;
//! - its first six bytes are printable ASCII;
//! - more than half of its bytes are printable;
//! - it has a run of more than 20 printable bytes;
//! - it starts like TLS (`[\x16\x17]\x03[\x00-\x09]`) or HTTP (`GET `, `PUT `, `POST `, `HEAD `).
//!
//! Otherwise the flow is suspect: its first `cut_after` bytes (counted by TCP sequence number
//! from the first data byte, so retransmissions are not counted twice) pass, and every later
//! segment from the client is dropped, as the GFW drops client-to-server packets. With
//! `cut_after = 0` the first data packet is already dropped: the handshake is blocked.
//! Server-to-client packets never come through this box.

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Is this first data packet exempt from blocking (Algorithm 1's five exemptions)?
pub fn exempt(payload: &[u8]) -> bool {
    if payload.is_empty() {
        return true;
    }
    let printable = |b: &u8| (0x20..=0x7e).contains(b);
    let bits: u32 = payload.iter().map(|b| b.count_ones()).sum();
    let mean = f64::from(bits) / payload.len() as f64;
    let longest_run = payload.split(|b| !printable(b)).map(<[u8]>::len).max().unwrap_or(0);
    let protocol_start = matches!(payload, [0x16 | 0x17, 0x03, 0x00..=0x09, ..])
        || [&b"GET "[..], b"PUT ", b"POST ", b"HEAD "].iter().any(|p| payload.starts_with(p));
    mean <= 3.4
        || mean >= 4.6
        || (payload.len() >= 6 && payload[..6].iter().all(printable))
        || payload.iter().filter(|b| printable(b)).count() * 2 > payload.len()
        || longest_run > 20
        || protocol_start
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not TCP data of a suspect flow past its allowance: send it on.
    Forward,
    /// The first data packet of a flow judged fully encrypted (forwarded unless the cut is 0).
    Suspect,
    /// A segment of a suspect flow past the allowance: dropped.
    Cut,
}

/// One TCP segment's fields that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment<'a> {
    flow: (Ipv4Addr, u16, Ipv4Addr, u16),
    seq: u32,
    payload: &'a [u8],
}

fn parse_tcp(packet: &[u8]) -> Option<Segment<'_>> {
    let (&vihl, _) = packet.split_first()?;
    if vihl >> 4 != 4 || *packet.get(9)? != 6 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?])).min(packet.len());
    let tcp = packet.get(ihl..total)?;
    let offset = usize::from(*tcp.get(12)? >> 4) * 4;
    let ip = |at: usize| -> Option<Ipv4Addr> { Some(Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3])) };
    Some(Segment {
        flow: (ip(12)?, u16::from_be_bytes([tcp[0], tcp[1]]), ip(16)?, u16::from_be_bytes([tcp[2], tcp[3]])),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        payload: tcp.get(offset..)?,
    })
}

#[derive(Debug, Clone, Copy)]
enum Flow {
    Exempt,
    /// Suspect, with the sequence number of its first data byte.
    Suspect(u32),
}

/// The per-flow state of the censor.
#[derive(Debug, Default)]
pub struct FetCensor {
    cut_after: u32,
    flows: HashMap<(Ipv4Addr, u16, Ipv4Addr, u16), Flow>,
}

impl FetCensor {
    /// A censor letting `cut_after` bytes of each suspect flow through.
    pub fn new(cut_after: u32) -> Self {
        FetCensor { cut_after, flows: HashMap::new() }
    }

    /// Decide on one IPv4 packet from the probe side.
    pub fn decide(&mut self, packet: &[u8]) -> Decision {
        let Some(seg) = parse_tcp(packet) else { return Decision::Forward };
        if seg.payload.is_empty() {
            return Decision::Forward;
        }
        let (flow, first) = match self.flows.get(&seg.flow) {
            Some(flow) => (*flow, false),
            None => {
                let flow = if exempt(seg.payload) { Flow::Exempt } else { Flow::Suspect(seg.seq) };
                self.flows.insert(seg.flow, flow);
                (flow, true)
            }
        };
        let Flow::Suspect(base) = flow else { return Decision::Forward };
        let end = u64::from(seg.seq.wrapping_sub(base)) + seg.payload.len() as u64;
        if end > u64::from(self.cut_after) {
            Decision::Cut
        } else if first {
            Decision::Suspect
        } else {
            Decision::Forward
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(sport: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 198, 51, 100, 2, 203, 0, 113, 40];
        let total = u16::try_from(20 + 20 + payload.len()).expect("len");
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&443u16.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491u32;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state.to_le_bytes()[2]
            })
            .collect()
    }

    #[test]
    fn the_exemptions_of_algorithm_1() {
        assert!(!exempt(&noise(600)), "random bytes are what it blocks");
        assert!(exempt(&[0u8; 50]), "all zeros: popcount 0 (gfw.report's control)");
        assert!(exempt(b"abcdef\x8f\x9f\xaf"), "first six printable");
        assert!(exempt(&[0x16, 0x03, 0x01, 0x02, 0x00, 0xff, 0xfe]), "TLS record header");
        assert!(exempt(b"GET / HTTP/1.1\r\n"));
        let mut run = noise(200);
        run[50..72].copy_from_slice(b"a printable run of 22.");
        assert!(exempt(&run), "a printable run longer than 20");
        assert!(exempt(&[0xff; 40]), "popcount 8");
    }

    #[test]
    fn suspect_flows_are_cut_after_the_allowance_and_exempt_ones_never() {
        let mut censor = FetCensor::new(3000);
        let data = noise(1400);
        assert_eq!(censor.decide(&segment(1000, 7, &[])), Decision::Forward, "SYN/ACK-only passes");
        assert_eq!(censor.decide(&segment(1000, 7, &data)), Decision::Suspect);
        assert_eq!(censor.decide(&segment(1000, 1407, &data)), Decision::Forward);
        assert_eq!(censor.decide(&segment(1000, 7, &data)), Decision::Forward, "a retransmission is not counted twice");
        assert_eq!(censor.decide(&segment(1000, 2807, &data)), Decision::Cut, "bytes 2800..4200 cross 3000");
        assert_eq!(censor.decide(&segment(1000, 4207, &data)), Decision::Cut);
        let text = b"plain printable text, long enough to matter here".repeat(30);
        assert_eq!(censor.decide(&segment(2000, 1, &text)), Decision::Forward);
        assert_eq!(censor.decide(&segment(2000, 1 + 1440 * 3, &noise(1400))), Decision::Forward, "exempt for good");
        let mut strict = FetCensor::new(0);
        assert_eq!(strict.decide(&segment(3000, 9, &data)), Decision::Cut, "cut 0: the first data packet");
    }
}
