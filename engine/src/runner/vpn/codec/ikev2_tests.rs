use super::*;

const SPI: [u8; 8] = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];

fn request(nat_t: bool) -> Vec<u8> {
    sa_init_request(&SaInit {
        initiator_spi: SPI,
        nonce: [0xab; 32],
        key_share: KeyShare { group: KeGroup::Curve25519, public: vec![0xcd; 32] },
        source: "198.51.100.2:40000".parse().expect("addr"),
        destination: "203.0.113.20:500".parse().expect("addr"),
        nat_t,
    })
}

#[test]
fn the_request_is_a_well_formed_ike_sa_init() {
    let msg = request(false);
    assert_eq!(msg[..8], SPI);
    assert_eq!(msg[8..16], [0; 8]);
    assert_eq!(msg[16..20], [SA, 0x20, IKE_SA_INIT, FLAG_INITIATOR]);
    let len = u32::from_be_bytes([msg[24], msg[25], msg[26], msg[27]]) as usize;
    assert_eq!(len, msg.len());
    // 28 header + SA 64 + KE 40 + nonce 36 + two NAT-D notifies of 28.
    assert_eq!(msg.len(), 28 + 64 + 40 + 36 + 28 + 28);
    let nat_t = request(true);
    assert_eq!(nat_t[..4], [0, 0, 0, 0]);
    assert_eq!(nat_t[4..], msg[..]);
}

/// The proposal offers every group, and the KE payload names the share's group.
#[test]
fn the_proposal_offers_every_group_and_the_ke_names_its_own() {
    let msg = request(false);
    // SA payload at 28: generic header 4, proposal header 8, then the transforms.
    assert_eq!(msg[28 + 4 + 7], 6, "three transforms and three groups");
    let groups: Vec<u16> = (0..3)
        .map(|i| {
            let at = 28 + 4 + 8 + 12 + 8 + 8 + i * 8;
            assert_eq!(msg[at + 4], 4, "transform type D-H");
            u16::from_be_bytes([msg[at + 6], msg[at + 7]])
        })
        .collect();
    assert_eq!(groups, [31, 19, 14]);
    let ke = 28 + 64;
    assert_eq!(u16::from_be_bytes([msg[ke + 4], msg[ke + 5]]), 31);
}

/// A responder that wants another offered group names it in INVALID_KE_PAYLOAD (RFC 7296 §1.2).
#[test]
fn invalid_ke_payload_names_the_group_to_retry_with() {
    // Header (zero responder SPI, as charon sends it), one notify: protocol 0, SPI size 0,
    // type 17, data = group 19.
    let reply = unhex(&["56414e54414745320000000000000000292022200000000000000026", "0000000a000000110013"]);
    let reply = parse_reply(&reply, &CAPTURE_SPI, false).expect("well-formed");
    assert_eq!(reply.kind().as_str(), "notify:INVALID_KE_PAYLOAD");
    assert_eq!(reply.requested_group, Some(19));
    assert_eq!(reply.requested_group.and_then(KeGroup::from_id), Some(KeGroup::Ecp256));
    assert_eq!(KeGroup::from_id(2), None, "a group we never offered is no retry");
    // A notify too short to hold the group: still a well-formed reply, no group.
    let short = unhex(&["56414e54414745320000000000000000292022200000000000000024", "0000000800000011"]);
    assert_eq!(parse_reply(&short, &CAPTURE_SPI, false).expect("well-formed").requested_group, None);
}

/// The MODP-2048 constant is RFC 3526's prime (a typo would fail Fermat's test) and the public
/// value is g^x mod p, padded to 256 bytes.
#[test]
fn modp2048_shares_are_real_group_elements() {
    let p = modp2048_prime().expect("prime");
    assert_eq!(p.bits(), 2048);
    let one = BigUint::from(1u8);
    for base in [2u8, 3, 5] {
        assert_eq!(BigUint::from(base).modpow(&(&p - &one), &p), one, "Fermat base {base}");
    }
    let tiny = modp2048_public(&{
        let mut x = [0u8; 32];
        x[31] = 10;
        x
    })
    .expect("share");
    assert_eq!(tiny.len(), 256);
    assert_eq!(BigUint::from_bytes_be(&tiny), BigUint::from(1024u32), "2^10, left-padded");
    let big = modp2048_public(&[0xa5; 32]).expect("share");
    assert_eq!(big.len(), 256);
    assert!(BigUint::from_bytes_be(&big) < p);
}

/// Our own request, turned into a response by flipping the flags, walks the same payload chain.
#[test]
fn the_payload_chain_walks() {
    let mut msg = request(false);
    msg[19] = FLAG_RESPONSE;
    let reply = parse_reply(&msg, &SPI, false).expect("parse");
    assert_eq!(reply.payloads, [SA, KE, NONCE, NOTIFY, NOTIFY]);
    assert_eq!(reply.notifies, [NAT_DETECTION_SOURCE_IP, NAT_DETECTION_DESTINATION_IP]);
    assert_eq!(reply.kind().as_str(), "sa_init_response");
}

#[test]
fn requests_and_strangers_are_not_replies() {
    let msg = request(false);
    assert!(matches!(parse_reply(&msg, &SPI, false), Err(DecodeError::NotSaInitResponse { .. })));
    assert_eq!(parse_reply(&msg, &[0; 8], false), Err(DecodeError::WrongSpi));
    assert_eq!(parse_reply(&msg, &SPI, true), Err(DecodeError::NoNonEspMarker));
    assert_eq!(parse_reply(&msg[..27], &SPI, false), Err(DecodeError::Truncated { need: 28, have: 27 }));
    let mut truncated_chain = msg.clone();
    truncated_chain[19] = FLAG_RESPONSE;
    truncated_chain.truncate(100);
    truncated_chain[24..28].copy_from_slice(&100u32.to_be_bytes());
    assert!(matches!(parse_reply(&truncated_chain, &SPI, false), Err(DecodeError::BadPayload { .. })));
}

// --- Vectors captured from a real server -------------------------------------------------------
// strongSwan charon 5.9.8 in a network namespace, one swanctl PSK connection with
// `proposals = aes256-sha256-ecp256` (then `aes128-sha1-modp2048` for the NO_PROPOSAL_CHOSEN
// case), answering this codec's IKE_SA_INIT with initiator SPI `VANTAGE2` on UDP 500 and 4500.

fn unhex(parts: &[&str]) -> Vec<u8> {
    let hex: String = parts.concat();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

const CAPTURE_SPI: [u8; 8] = *b"VANTAGE2";

#[test]
fn charon_s_sa_init_responses_on_500_and_4500() {
    let on_500 = unhex(&[
        "56414e5441474532ca57c81450414d57212022200000000000000100220000300000002c010100040300000c0100000c",
        "800e0100030000080300000c030000080200000500000008040000132800004800130000ef30fe55ba0e8eade90e0218",
        "1dd096221533f2a8e1f73ae39a827318d0e902a2748ca56f0a64a510ed452756c02c07a098ab1e59b8426cc466a5e711",
        "10b8c197290000247a9ccf680e566915782a15d09fbf725acaa3dc992251d95bca677029ce40d7f92900001c00004004",
        "5910c5401d21c79b4d601bccd81c353294ae1b8e2900001c0000400537b149ac2ec854b46545a7881cb30898b5973dc4",
        "29000008000040220000000800004014",
    ]);
    let reply = parse_reply(&on_500, &CAPTURE_SPI, false).expect("500");
    assert_eq!(reply.kind().as_str(), "sa_init_response");
    assert_ne!(reply.responder_spi, [0; 8]);
    assert_eq!(reply.payloads[..3], [SA, KE, NONCE]);
    let on_4500 = unhex(&[
        "0000000056414e5441474532b2027bc89f136cd2212022200000000000000100220000300000002c010100040300000c",
        "0100000c800e0100030000080300000c030000080200000500000008040000132800004800130000233cdc634d4eb385",
        "fe22583e5d9e97f0dc3f92ff8ffa208c048ef413912a34172722ccb7d9adb3298f059020e3732b48837579a488ed5ed2",
        "8021775cdb41fea4290000245827e442a10cba6bd052fe1494032cb201b01792e73da6ffaab55bdca508717a2900001c",
        "0000400437ef5da266778fbdc2515a70a0d2acee76c0f2452900001c0000400546ea78fdb3d5aeb7cf526d6461e6a3fa",
        "ee3bb9d829000008000040220000000800004014",
    ]);
    assert_eq!(parse_reply(&on_4500, &CAPTURE_SPI, true).expect("4500").kind().as_str(), "sa_init_response");
    assert!(parse_reply(&on_4500, &CAPTURE_SPI, false).is_err(), "the marker is not optional");
}

#[test]
fn charon_s_notify_only_refusal_has_a_zero_responder_spi_and_still_counts() {
    let refusal = unhex(&["56414e54414745320000000000000000292022200000000000000024000000080000000e"]);
    let reply = parse_reply(&refusal, &CAPTURE_SPI, false).expect("well-formed");
    assert_eq!(reply.responder_spi, [0; 8]);
    assert_eq!(reply.kind().as_str(), "notify:NO_PROPOSAL_CHOSEN");
    assert_eq!(refusal.len(), 36);
}
