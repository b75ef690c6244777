//! The QUIC SNI filter's I/O: UDP from the probe through a [`TunBox`], each packet judged by
//! [`QuicSniFilter`].

use std::time::Instant;

use super::packet::parse_udp_packet;
use super::quic_filter::{Decision, QuicSniFilter};
use super::tun::{TunBox, TunError};

/// An open TUN device and the filter deciding on what it reads.
pub struct QuicTun {
    tun: TunBox,
    filter: QuicSniFilter,
}

impl QuicTun {
    /// Create and bring up the TUN device `name`.
    pub fn open(name: &str, filter: QuicSniFilter) -> Result<Self, TunError> {
        Ok(QuicTun { tun: TunBox::open(name)?, filter })
    }

    /// Read, decide, write back, until the process ends. Blocking: run it on its own thread.
    pub fn run(mut self) {
        self.tun.run(|packet| match self.filter.decide_packet(Instant::now(), packet) {
            Decision::Forward => true,
            Decision::ForwardInitial { sni } => {
                tracing::info!("forwarded QUIC Initial {} sni {sni:?}", flow(packet));
                true
            }
            Decision::Drop { sni } => {
                tracing::info!("dropped QUIC Initial {} sni {sni:?}", flow(packet));
                false
            }
        })
    }
}

fn flow(packet: &[u8]) -> String {
    match parse_udp_packet(packet) {
        Ok(u) => format!("{}:{} -> {}:{}", u.src, u.src_port, u.dst, u.dst_port),
        Err(_) => "?".into(),
    }
}
