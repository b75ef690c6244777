//! IKEv2 runner: one IKE_SA_INIT, retransmitted over UDP until any well-formed IKE reply.
//!
//! Port 4500 means NAT-T: the request and the reply carry the non-ESP marker. The key share is a
//! real ECP-256 public value (from ring), because responders check it; its private half is
//! dropped unused, since we never continue to IKE_AUTH.

use std::net::SocketAddr;

use ring::agreement::{ECDH_P256, EphemeralPrivateKey};
use ring::rand::SystemRandom;
use vantage_measurement::{Detail, Observation, Operation, Role, VpnDetail, VpnStage};

use super::codec::ikev2::{self as codec, ECP256_KE_LEN, SaInit};
use super::{Check, connected_udp, random_bytes, udp_exchange};
use crate::runner::StepContext;

/// The NAT-T port: requests there carry the non-ESP marker.
pub const NAT_T_PORT: u16 = 4500;

/// Length of our IKE_SA_INIT on the wire (what the random-bytes control matches).
pub fn first_packet_len(nat_t: bool) -> usize {
    // Header 28, SA 48, KE 72, nonce 36, two NAT-D notifies of 28.
    28 + 48 + 72 + 36 + 56 + if nat_t { 4 } else { 0 }
}

/// Send IKE_SA_INIT to `addr`; one `vpn_handshake` observation.
pub async fn sa_init(ctx: &StepContext, role: Role, addr: SocketAddr) -> Observation {
    let nat_t = addr.port() == NAT_T_PORT;
    let step = ctx.step(Operation::VpnHandshake, role).peer(addr);
    let mut detail = VpnDetail { protocol: "ikev2".into(), mode: nat_t.then(|| "nat_t".into()), ..VpnDetail::default() };
    let socket = match connected_udp(addr).await {
        Ok(s) => s,
        Err(failure) => return step.finish(Err(failure), Some(Detail::Vpn(detail))),
    };
    let Some(key_share) = ecp256_public() else {
        return step.finish(Err(super::rejected("key_generation")), Some(Detail::Vpn(detail)));
    };
    let request = SaInit {
        initiator_spi: nonzero_spi(),
        nonce: random_bytes(),
        key_share,
        // Only hashed into NAT_DETECTION_SOURCE_IP; never recorded.
        source: socket.local_addr().unwrap_or(addr),
        destination: addr,
        nat_t,
    };
    let packet = codec::sa_init_request(&request);
    let check = |datagram: &[u8]| match codec::parse_reply(datagram, &request.initiator_spi, nat_t) {
        Ok(reply) => Check::Accept(reply.kind()),
        Err(e) => Check::Reject(e.name()),
    };
    let outcome = udp_exchange(&socket, ctx.timeout, &mut detail, |_| packet.clone(), check).await;
    let outcome = outcome.map(|kind| {
        detail.stage_reached = VpnStage::Handshake;
        detail.reply = Some(kind);
        detail.reply_error = None;
    });
    step.finish(outcome, Some(Detail::Vpn(detail)))
}

fn nonzero_spi() -> [u8; 8] {
    let mut spi: [u8; 8] = random_bytes();
    spi[0] |= 1;
    spi
}

/// A fresh ECP-256 public value as x ‖ y.
fn ecp256_public() -> Option<[u8; ECP256_KE_LEN]> {
    let private = EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new()).ok()?;
    let public = private.compute_public_key().ok()?;
    // Uncompressed point: 0x04 ‖ x ‖ y.
    public.as_ref().get(1..)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_length_matches_the_codec() {
        for nat_t in [false, true] {
            let req = SaInit {
                initiator_spi: [1; 8],
                nonce: [2; 32],
                key_share: ecp256_public().expect("key"),
                source: "198.51.100.2:1".parse().expect("addr"),
                destination: "203.0.113.20:500".parse().expect("addr"),
                nat_t,
            };
            assert_eq!(codec::sa_init_request(&req).len(), first_packet_len(nat_t));
        }
    }
}
