use super::*;

fn keys() -> PeerKeys {
    let server_private = StaticSecret::from([0x22; 32]);
    PeerKeys { private: Secret([0x11; 32]), server_public: PublicKey::from(&server_private).to_bytes(), preshared: Secret([0; 32]) }
}

#[test]
fn an_initiation_has_the_shape_censors_match() {
    let (msg, hs) = initiate(&keys(), [0x33; 32], 0xdead_beef, tai64n(1_700_000_000, 5)).expect("initiate");
    assert_eq!(msg.len(), INITIATION_LEN);
    assert_eq!(msg[..4], [1, 0, 0, 0]);
    assert_eq!(msg[4..8], 0xdead_beef_u32.to_le_bytes());
    assert_eq!(msg[132..], [0; 16], "no cookie, so mac2 is zero");
    assert_eq!(hs.sender(), 0xdead_beef);
    assert_eq!(parse_message(&msg), Ok(Message::Initiation));
}

#[test]
fn tai64n_is_offset_by_2_to_the_62() {
    assert_eq!(tai64n(0, 0), [0x40, 0, 0, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0]);
    assert_eq!(tai64n(1, 2)[7..], [0x0b, 0, 0, 0, 2]);
}

#[test]
fn message_shapes_are_checked_before_any_crypto() {
    assert_eq!(parse_message(&[]), Err(DecodeError::UnknownType(0)));
    assert_eq!(parse_message(&[2, 0, 0, 0]), Err(DecodeError::BadLength { kind: 2, len: 4 }));
    assert_eq!(parse_message(&[2, 0, 0, 1]), Err(DecodeError::UnknownType(2)));
    assert_eq!(parse_message(&[9, 0, 0, 0]), Err(DecodeError::UnknownType(9)));
    assert_eq!(parse_message(&[4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Err(DecodeError::BadLength { kind: 4, len: 16 }));
    let mut cookie = vec![3, 0, 0, 0, 7, 0, 0, 0];
    cookie.resize(COOKIE_REPLY_LEN, 0);
    assert_eq!(parse_message(&cookie), Ok(Message::CookieReply { receiver: 7 }));
}

#[test]
fn a_forged_response_is_refused() {
    let (_, hs) = initiate(&keys(), [0x33; 32], 5, tai64n(1_700_000_000, 0)).expect("initiate");
    let mut forged = vec![2, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0];
    forged.resize(RESPONSE_LEN, 0x41);
    assert_eq!(hs.consume_response(&forged).map(|_| ()), Err(DecodeError::BadMac1));
    forged[8] = 6;
    assert_eq!(hs.consume_response(&forged).map(|_| ()), Err(DecodeError::WrongReceiver(6)));
}
