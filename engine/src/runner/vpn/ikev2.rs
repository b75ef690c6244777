//! IKEv2 runner: one IKE_SA_INIT, retransmitted over UDP until any well-formed IKE reply, and
//! one retry when the responder asks for another of the groups we offered.
//!
//! Port 4500 means NAT-T: the request and the reply carry the non-ESP marker. The key share is a
//! real public value of its group, because responders check it; its private half is dropped
//! unused, since we never continue to IKE_AUTH. The first request carries a Curve25519 share;
//! a responder that picked ECP-256 or MODP-2048 from our proposal answers INVALID_KE_PAYLOAD
//! naming it, and we send the SA_INIT again with that group's share, as a real initiator does.
//! Both exchanges are recorded, so the measurement shows what the responder asked for.

use std::net::SocketAddr;

use ring::agreement::{ECDH_P256, EphemeralPrivateKey};
use ring::rand::SystemRandom;
use tokio::net::UdpSocket;
use vantage_measurement::{Detail, Observation, Operation, Role, VpnDetail, VpnMode, VpnProtocol, VpnStage};
use x25519_dalek::{PublicKey, StaticSecret};

use super::codec::ikev2::{self as codec, KeGroup, KeyShare, SaInit};
use super::{Check, connected_udp, random_bytes, udp_exchange};
use crate::runner::StepContext;

/// The NAT-T port: requests there carry the non-ESP marker.
pub const NAT_T_PORT: u16 = 4500;

/// Length of our first IKE_SA_INIT on the wire (what the random-bytes control matches).
pub fn first_packet_len(nat_t: bool) -> usize {
    // Header 28, SA 64 (three transforms and one per offered group), KE 8 + the first group's
    // share, nonce 36, two NAT-D notifies of 28.
    let ke = 8 + KeGroup::OFFERED[0].public_len();
    28 + 64 + ke + 36 + 56 + if nat_t { 4 } else { 0 }
}

/// Send IKE_SA_INIT to `addr`: one `vpn_handshake` observation, or two when the responder asked
/// for another offered group (the INVALID_KE_PAYLOAD exchange, then the retry).
pub async fn sa_init(ctx: &StepContext, role: Role, addr: SocketAddr) -> Vec<Observation> {
    let step = ctx.step(Operation::VpnHandshake, role).peer(addr);
    let socket = match connected_udp(addr).await {
        Ok(s) => s,
        Err(failure) => return vec![step.finish(Err(failure), Some(Detail::Vpn(ikev2_detail(addr))))],
    };
    let (first, requested) = exchange(ctx, role, addr, &socket, KeGroup::OFFERED[0]).await;
    let retry = requested.filter(|group| *group != KeGroup::OFFERED[0]);
    match retry {
        Some(group) => vec![first, exchange(ctx, role, addr, &socket, group).await.0],
        None => vec![first],
    }
}

/// One IKE_SA_INIT exchange with a `group` key share; the observation, and the offered group an
/// INVALID_KE_PAYLOAD reply asked for.
async fn exchange(
    ctx: &StepContext,
    role: Role,
    addr: SocketAddr,
    socket: &UdpSocket,
    group: KeGroup,
) -> (Observation, Option<KeGroup>) {
    let nat_t = addr.port() == NAT_T_PORT;
    let step = ctx.step(Operation::VpnHandshake, role).peer(addr);
    let mut detail = ikev2_detail(addr);
    let Some(key_share) = key_share(group) else {
        return (step.finish(Err(super::rejected("key_generation")), Some(Detail::Vpn(detail))), None);
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
        Ok(reply) => Check::Accept(reply),
        Err(e) => Check::Reject(e.name()),
    };
    let outcome = udp_exchange(socket, ctx.timeout, &mut detail, |_| packet.clone(), check).await;
    let requested = outcome.as_ref().ok().and_then(|reply| reply.requested_group).and_then(KeGroup::from_id);
    let outcome = outcome.map(|reply| {
        detail.stage_reached = VpnStage::Handshake;
        detail.reply = Some(reply.kind());
        detail.reply_error = None;
    });
    (step.finish(outcome, Some(Detail::Vpn(detail))), requested)
}

/// A fresh detail of an IKEv2 step to `addr` (NAT-T framing on 4500).
fn ikev2_detail(addr: SocketAddr) -> VpnDetail {
    let nat_t = addr.port() == NAT_T_PORT;
    VpnDetail { protocol: VpnProtocol::Ikev2, mode: nat_t.then_some(VpnMode::NatT), ..VpnDetail::default() }
}

fn nonzero_spi() -> [u8; 8] {
    let mut spi: [u8; 8] = random_bytes();
    spi[0] |= 1;
    spi
}

/// A fresh public value of `group`.
fn key_share(group: KeGroup) -> Option<KeyShare> {
    let public = match group {
        KeGroup::Curve25519 => PublicKey::from(&StaticSecret::from(random_bytes::<32>())).to_bytes().to_vec(),
        KeGroup::Ecp256 => {
            let private = EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new()).ok()?;
            // Uncompressed point: 0x04 ‖ x ‖ y; the KE payload carries x ‖ y.
            private.compute_public_key().ok()?.as_ref().get(1..)?.to_vec()
        }
        KeGroup::Modp2048 => codec::modp2048_public(&random_bytes())?,
    };
    (public.len() == group.public_len()).then_some(KeyShare { group, public })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_group_makes_a_share_of_its_length() {
        for group in KeGroup::OFFERED {
            assert_eq!(key_share(group).expect("share").public.len(), group.public_len(), "{group:?}");
        }
    }

    #[test]
    fn the_declared_length_matches_the_codec() {
        for nat_t in [false, true] {
            let req = SaInit {
                initiator_spi: [1; 8],
                nonce: [2; 32],
                key_share: key_share(KeGroup::OFFERED[0]).expect("key"),
                source: "198.51.100.2:1".parse().expect("addr"),
                destination: "203.0.113.20:500".parse().expect("addr"),
                nat_t,
            };
            assert_eq!(codec::sa_init_request(&req).len(), first_packet_len(nat_t));
        }
    }
}
