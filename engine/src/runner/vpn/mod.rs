//! VPN and Tor runners: OpenVPN, WireGuard, IKEv2, Tor, and the random-bytes control.
//!
//! Each protocol is a pure codec ([`codec`]) driven by a thin runner, one file per protocol.
//! Call order of one trial (as `measure` runs it):
//!
//! 1. [`random::control`]: random bytes as long as the protocol's first packet, to an echo on the
//!    same port number at the endpoint's echo address (the control runs first, on another
//!    address, so a residual block triggered by the protocol can't reach it);
//! 2. the protocol's handshake ([`openvpn::handshake`], [`wireguard::handshake`],
//!    [`ikev2::sa_init`], [`tor::handshake`]); WireGuard continues with a data phase through the
//!    tunnel, Tor with the link protocol's VERSIONS exchange.
//!
//! UDP is lossy, and a lost datagram must not read as a block: [`udp_exchange`] retransmits
//! (a fresh packet each time where the protocol needs one) until the step timeout, and every
//! reply that arrives is judged by the codec, so a forged or foreign reply is recorded as such
//! (`stage_reached: reply`, `reply_error`) instead of being taken for the server's. Keys never
//! reach an observation: details carry stages, counts, lengths and fixed names only.

pub mod codec;
pub mod ikev2;
pub mod openvpn;
pub mod random;
pub mod tor;
pub mod wireguard;

use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;
use vantage_measurement::{CodeSpace, Failure, RawCode, VpnDetail, VpnStage};

pub use super::connected_udp;
use super::{io_failure, timeout_failure};

/// Sends of one UDP handshake packet within the step timeout (the first and its retransmits).
pub const UDP_SENDS: u32 = 4;

/// What the codec made of one datagram.
#[derive(Debug)]
pub enum Check<T> {
    /// The answer we wait for.
    Accept(T),
    /// A reply of the protocol (or pretending to be) that is not a valid answer: recorded, and
    /// the wait goes on in case the real one follows.
    Reject(&'static str),
}

/// Send `build(attempt)` up to [`UDP_SENDS`] times, evenly spread over `timeout`, until `check`
/// accepts a reply. Records sends, receipts and the stage in `detail`.
///
/// Fails with the socket's error (an ICMP port unreachable shows as `connection_refused`), with
/// `protocol_mismatch` when only refused replies came, or with a timeout.
pub async fn udp_exchange<T>(
    socket: &UdpSocket,
    timeout: Duration,
    detail: &mut VpnDetail,
    mut build: impl FnMut(u32) -> Vec<u8>,
    mut check: impl FnMut(&[u8]) -> Check<T>,
) -> Result<T, (Failure, RawCode)> {
    let started = Instant::now();
    let deadline = started + timeout;
    let interval = timeout / UDP_SENDS;
    let mut buf = vec![0u8; 2048];
    let mut sent = 0u32;
    loop {
        if sent < UDP_SENDS && Instant::now() >= started + interval * sent {
            let packet = build(sent);
            if sent == 0 {
                detail.first_packet_len = u32::try_from(packet.len()).ok();
            }
            socket.send(&packet).await.map_err(|e| io_failure(&e))?;
            sent += 1;
            detail.packets_sent += 1;
            detail.stage_reached = detail.stage_reached.max(VpnStage::Sent);
        }
        let wake = if sent < UDP_SENDS { (started + interval * sent).min(deadline) } else { deadline };
        match tokio::time::timeout_at(wake, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                detail.packets_received += 1;
                match check(&buf[..n]) {
                    Check::Accept(value) => return Ok(value),
                    Check::Reject(why) => {
                        detail.stage_reached = detail.stage_reached.max(VpnStage::Reply);
                        detail.reply_error = Some(why.to_string());
                    }
                }
            }
            // ICMP unreachable on a connected socket: nothing listens, or something says so.
            Ok(Err(e)) => return Err(io_failure(&e)),
            Err(_) if Instant::now() >= deadline => return Err(silence(detail, timeout)),
            Err(_) => {}
        }
    }
}

/// The failure for a wait that ended without an accepted reply.
pub fn silence(detail: &VpnDetail, timeout: Duration) -> (Failure, RawCode) {
    match &detail.reply_error {
        Some(why) => rejected(why),
        None => timeout_failure(timeout),
    }
}

/// `protocol_mismatch` with the codec's reason.
pub fn rejected(why: &str) -> (Failure, RawCode) {
    (Failure::ProtocolMismatch, RawCode::named(CodeSpace::Protocol, None, why))
}

/// Fill `buf` with random bytes (the runners' only source of randomness: the codecs take it).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut out);
    out
}

/// Seconds and nanoseconds since the Unix epoch, for protocol timestamps.
pub fn unix_now() -> (u64, u32) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (now.as_secs(), now.subsec_nanos())
}
