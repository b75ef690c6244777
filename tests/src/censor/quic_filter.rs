//! The QUIC SNI filter's decisions, one packet at a time, with time passed in.
//!
//! A ClientHello can span several Initial packets (a large key share, ECH, many ALPNs), so the
//! filter keeps the CRYPTO stream of each connection, keyed by its first DCID, until the SNI is
//! known; the packet that completes it is the one dropped, the earlier ones have already gone
//! through (as with any censor that cannot hold packets). Once decided, the decision sticks for
//! the flow's lifetime, so retransmitted Initials are treated alike. State is bounded: at most
//! [`MAX_FLOWS`] flows of at most [`CRYPTO_LIMIT`] bytes each, forgotten after [`FLOW_TTL`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::NameList;
use super::packet::parse_udp_packet;
use super::quic_initial::{CryptoAssembler, crypto_frames, decrypt_client_initial, long_header};
use super::tls_hello::{Sni, client_hello_sni};

/// How long a flow's state is kept after its first Initial.
pub const FLOW_TTL: Duration = Duration::from_secs(10);
/// Most flows tracked at once; the oldest is forgotten first.
pub const MAX_FLOWS: usize = 256;
/// Most CRYPTO bytes buffered per flow.
pub const CRYPTO_LIMIT: usize = 16 * 1024;

/// What the filter does with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Pass it on; not a QUIC v1 client Initial we could open (or not yet decided).
    Forward,
    /// Pass it on: an Initial whose SNI is known and not listed (`None`: it has no SNI).
    ForwardInitial {
        /// The SNI.
        sni: Option<String>,
    },
    /// Drop it: an Initial with a listed SNI, or any Initial with `all_initials`.
    Drop {
        /// The SNI, when known.
        sni: Option<String>,
    },
}

/// What to drop.
#[derive(Debug, Clone, Default)]
pub struct FilterConfig {
    /// SNIs (and their subdomains) whose Initials are dropped.
    pub names: NameList,
    /// Drop every QUIC v1 Initial, whatever its SNI (QUIC blocked outright).
    pub all_initials: bool,
}

#[derive(Debug)]
struct Flow {
    started: Instant,
    crypto: CryptoAssembler,
    /// `Some` once decided: the SNI, or `None` if the hello has none or cannot be read.
    sni: Option<Option<String>>,
}

/// Per-flow state and the decision procedure.
#[derive(Debug)]
pub struct QuicSniFilter {
    config: FilterConfig,
    flows: HashMap<Vec<u8>, Flow>,
}

impl QuicSniFilter {
    /// A filter with no flows yet.
    pub fn new(config: FilterConfig) -> Self {
        QuicSniFilter { config, flows: HashMap::new() }
    }

    /// Decide on an IPv4 packet; everything that is not IPv4 UDP is forwarded.
    pub fn decide_packet(&mut self, now: Instant, packet: &[u8]) -> Decision {
        match parse_udp_packet(packet) {
            Ok(udp) => self.decide_datagram(now, udp.payload),
            Err(_) => Decision::Forward,
        }
    }

    /// Decide on a UDP payload.
    pub fn decide_datagram(&mut self, now: Instant, datagram: &[u8]) -> Decision {
        match long_header(datagram) {
            Ok(lh) if lh.is_v1_initial() => {}
            _ => return Decision::Forward,
        }
        if self.config.all_initials {
            return Decision::Drop { sni: None };
        }
        let Ok(initial) = decrypt_client_initial(datagram) else {
            return Decision::Forward; // a server Initial, or not keyed by this DCID
        };
        self.flows.retain(|_, f| now.saturating_duration_since(f.started) < FLOW_TTL);
        if !self.flows.contains_key(&initial.dcid)
            && self.flows.len() >= MAX_FLOWS
            && let Some(oldest) = self.flows.iter().min_by_key(|(_, f)| f.started).map(|(k, _)| k.clone())
        {
            self.flows.remove(&oldest);
        }
        let flow = self.flows.entry(initial.dcid.clone()).or_insert_with(|| Flow {
            started: now,
            crypto: CryptoAssembler::new(CRYPTO_LIMIT),
            sni: None,
        });
        if flow.sni.is_none() {
            flow.sni = learn_sni(flow, &initial.payload);
        }
        match &flow.sni {
            None => Decision::Forward,
            Some(sni) if sni.as_deref().is_some_and(|s| self.config.names.matches(s)) => Decision::Drop { sni: sni.clone() },
            Some(sni) => Decision::ForwardInitial { sni: sni.clone() },
        }
    }

    /// Flows currently tracked.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }
}

/// Add this packet's CRYPTO data; `Some` once the SNI is decided (an unreadable hello is
/// decided as "no SNI", so a censor that cannot parse lets it through).
fn learn_sni(flow: &mut Flow, payload: &[u8]) -> Option<Option<String>> {
    let Ok(frames) = crypto_frames(payload) else { return Some(None) };
    for frame in &frames {
        if flow.crypto.insert(frame).is_err() {
            return Some(None);
        }
    }
    match client_hello_sni(flow.crypto.contiguous()) {
        Ok(Sni::Known(sni)) => Some(sni),
        Ok(Sni::NeedMore) => None,
        Err(_) => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::censor::packet::{UdpSpec, build_udp_packet};
    use crate::censor::quic_initial::tests::{crypto_frame, seal_client_initial};
    use crate::censor::tls_hello::tests::client_hello;

    fn filter(all_initials: bool) -> QuicSniFilter {
        QuicSniFilter::new(FilterConfig { names: NameList::new(["blocked.example"]), all_initials })
    }

    fn initial(dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
        seal_client_initial(dcid, &[1, 2, 3, 4], pn, frames)
    }

    fn in_ip(payload: &[u8]) -> Vec<u8> {
        let spec = UdpSpec {
            src: Ipv4Addr::new(198, 51, 100, 2),
            dst: Ipv4Addr::new(203, 0, 113, 2),
            src_port: 50000,
            dst_port: 443,
            ip_id: 1,
            ttl: 63,
        };
        build_udp_packet(&spec, payload).expect("fits")
    }

    #[test]
    fn a_listed_sni_is_dropped_and_a_control_sni_forwarded() {
        let now = Instant::now();
        let mut f = filter(false);
        let blocked = initial(&[1; 8], 0, &crypto_frame(0, &client_hello(Some("www.Blocked.Example"), 0)));
        let control = initial(&[2; 8], 0, &crypto_frame(0, &client_hello(Some("example.org"), 0)));
        assert_eq!(f.decide_packet(now, &in_ip(&blocked)), Decision::Drop { sni: Some("www.Blocked.Example".into()) });
        assert_eq!(f.decide_packet(now, &in_ip(&control)), Decision::ForwardInitial { sni: Some("example.org".into()) });
        // A retransmission of the blocked Initial is dropped too.
        let again = initial(&[1; 8], 1, &crypto_frame(0, &client_hello(Some("www.Blocked.Example"), 0)));
        assert!(matches!(f.decide_packet(now, &in_ip(&again)), Decision::Drop { .. }));
    }

    #[test]
    fn a_hello_split_over_two_initials_drops_the_second() {
        let now = Instant::now();
        let mut f = filter(false);
        let hello = client_hello(Some("blocked.example"), 1500);
        let (a, b) = hello.split_at(1000);
        let first = initial(&[3; 8], 0, &crypto_frame(0, a));
        let second = initial(&[3; 8], 1, &crypto_frame(1000, b));
        assert_eq!(f.decide_packet(now, &in_ip(&first)), Decision::Forward);
        assert_eq!(f.decide_packet(now, &in_ip(&second)), Decision::Drop { sni: Some("blocked.example".into()) });
        // Out of order works as well.
        let mut g = filter(false);
        assert_eq!(g.decide_datagram(now, &initial(&[4; 8], 1, &crypto_frame(1000, b))), Decision::Forward);
        assert!(matches!(g.decide_datagram(now, &initial(&[4; 8], 0, &crypto_frame(0, a))), Decision::Drop { .. }));
    }

    #[test]
    fn all_initials_drops_any_initial_but_nothing_else() {
        let now = Instant::now();
        let mut f = filter(true);
        let control = initial(&[2; 8], 0, &crypto_frame(0, &client_hello(Some("example.org"), 0)));
        assert_eq!(f.decide_datagram(now, &control), Decision::Drop { sni: None });
        assert_eq!(f.decide_datagram(now, &[0x40, 1, 2, 3, 4, 5]), Decision::Forward, "short header");
        assert_eq!(f.decide_datagram(now, b"\x00dns or anything"), Decision::Forward);
    }

    #[test]
    fn unreadable_or_foreign_packets_are_forwarded() {
        let now = Instant::now();
        let mut f = filter(false);
        let mut corrupted = initial(&[5; 8], 0, &crypto_frame(0, &client_hello(Some("blocked.example"), 0)));
        let last = corrupted.len() - 1;
        corrupted[last] ^= 1;
        assert_eq!(f.decide_datagram(now, &corrupted), Decision::Forward);
        let not_tls = initial(&[6; 8], 0, &crypto_frame(0, b"\x16\x03\x01 not a handshake message"));
        assert_eq!(f.decide_datagram(now, &not_tls), Decision::ForwardInitial { sni: None });
        assert_eq!(f.decide_packet(now, b"\x45garbage"), Decision::Forward);
    }

    #[test]
    fn state_expires_and_is_bounded() {
        let start = Instant::now();
        let mut f = filter(false);
        let hello = client_hello(Some("blocked.example"), 1500);
        for i in 0..(MAX_FLOWS + 50) {
            let dcid = (i as u32).to_be_bytes();
            f.decide_datagram(start, &initial(&dcid, 0, &crypto_frame(0, &hello[..900])));
        }
        assert_eq!(f.flows(), MAX_FLOWS);
        let later = start + FLOW_TTL + Duration::from_millis(1);
        f.decide_datagram(later, &initial(&[9; 8], 0, &crypto_frame(0, &hello[..900])));
        assert_eq!(f.flows(), 1);
    }
}
