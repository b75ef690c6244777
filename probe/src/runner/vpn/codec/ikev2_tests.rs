use super::*;

const SPI: [u8; 8] = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];

fn request(nat_t: bool) -> Vec<u8> {
    sa_init_request(&SaInit {
        initiator_spi: SPI,
        nonce: [0xab; 32],
        key_share: [0xcd; ECP256_KE_LEN],
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
    // 28 header + SA 48 + KE 72 + nonce 36 + two NAT-D notifies of 28.
    assert_eq!(msg.len(), 28 + 48 + 72 + 36 + 28 + 28);
    let nat_t = request(true);
    assert_eq!(nat_t[..4], [0, 0, 0, 0]);
    assert_eq!(nat_t[4..], msg[..]);
}

/// Our own request, turned into a response by flipping the flags, walks the same payload chain.
#[test]
fn the_payload_chain_walks() {
    let mut msg = request(false);
    msg[19] = FLAG_RESPONSE;
    let reply = parse_reply(&msg, &SPI, false).expect("parse");
    assert_eq!(reply.payloads, [SA, KE, NONCE, NOTIFY, NOTIFY]);
    assert_eq!(reply.notifies, [NAT_DETECTION_SOURCE_IP, NAT_DETECTION_DESTINATION_IP]);
    assert_eq!(reply.kind(), "sa_init_response");
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
