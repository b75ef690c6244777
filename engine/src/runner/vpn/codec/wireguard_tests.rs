use super::*;

fn keys() -> PeerKeys {
    let server_private = StaticSecret::from([0x22; 32]);
    PeerKeys {
        private: Secret([0x11; 32]),
        server_public: PublicKey::from(&server_private).to_bytes(),
        preshared: Secret([0; 32]),
    }
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
    assert_eq!(
        parse_message(&[4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(DecodeError::BadLength { kind: 4, len: 16 })
    );
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

// --- Vectors captured from a real server -------------------------------------------------------
// Debian's wireguard-go 0.0.20220316 in a network namespace (`WG_I_PREFER_BUGGY_USERSPACE_TO_
// POLISHED_KMOD=1`), configured with `wg set … peer <probe public> allowed-ips 203.0.113.130/32`,
// tunnel address 203.0.113.129. The initiation was built by this codec from the throwaway lab
// keys below, ephemeral key 0x45…, sender index 0x0a0b0c0d and the timestamp below; the response
// and the echo reply through the tunnel were read off the socket.

fn unhex(parts: &[&str]) -> Vec<u8> {
    let hex: String = parts.concat();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

fn key32(hex: &str) -> [u8; 32] {
    unhex(&[hex]).try_into().expect("32 bytes")
}

fn lab_keys() -> PeerKeys {
    PeerKeys {
        private: Secret(key32("1098a2e7f6f9eb2bb0d2c72bf27b14b9963e517d1b1b25804e53bcbd7f4ba159")),
        server_public: key32("5422f83ee0c30e46a3ef6bf6d90ba29538e62bed8fccdf4ed8eacc628bf35458"),
        preshared: Secret([0; 32]),
    }
}

#[test]
fn a_real_wireguard_go_handshake_and_echo_through_the_tunnel() {
    let timestamp: [u8; 12] = unhex(&["400000006b0aff1021c4431b"]).try_into().expect("12 bytes");
    let (init, hs) = initiate(&lab_keys(), [0x45; 32], 0x0a0b_0c0d, timestamp).expect("initiate");
    assert_eq!(
        init,
        unhex(&[
            "010000000d0c0b0a3286894cd2845a6db6a28fbf0677605f80e5a62385bf4e10a790ae5fde36736b09a3ac9bec220914",
            "f08a314faea95b4bb80432d97859fe41b8f60855fc0ccfadf81fef6fb9698c398ad5ed973551a4e8492ad41f68b3d60a",
            "f69cfee210f4884350ed6ccf783156ab90f7931303ccb61ee77cf0c28cde6d404b5ebd8c000000000000000000000000",
            "00000000",
        ])
    );
    let response = unhex(&[
        "02000000421d8e230d0c0b0a82d213ff7b18d02dd7a0ac006ff90bc5b953c7ea191f9071c72e92ab36d3813874094df4",
        "6d4bd00fd227c1a9950d9866abec25a952f797077bff9fb301025a7f00000000000000000000000000000000",
    ]);
    let mut session = hs.consume_response(&response).expect("wireguard-go's response authenticates");
    let echo = super::super::icmp::echo_request(
        "203.0.113.130".parse().expect("ip"),
        "203.0.113.129".parse().expect("ip"),
        0x5654,
        1,
        b"vantage",
    );
    assert_eq!(
        session.seal(&echo).expect("seal"),
        unhex(&[
            "04000000421d8e2300000000000000009b5450901acef9af015297bacc67e5eccbfef1e1a4ba6bdfe140886c8e2dde53",
            "c55b2fda4295bffb17057ddd33dd184727552fefafef8011920cb4b6abc960a4",
        ])
    );
    let reply = unhex(&[
        "040000000d0c0b0a0000000000000000df836e9b5ebfb0ccf68decd503574a93cfd8d73027aadc340d277603a330c640",
        "1ed7908655efcedfe692c858589b69e6185894eb852eb8fc9784e03fe2f8603c",
    ]);
    let inner = session.open(&reply).expect("the echo reply opens");
    let echo_reply = super::super::icmp::parse_echo_reply(&inner, 0x5654).expect("an echo reply");
    assert_eq!((echo_reply.seq, echo_reply.from.to_string().as_str()), (1, "203.0.113.129"));
    // A bit flipped anywhere in the response fails authentication, never panics.
    for i in 12..response.len() - 16 {
        let mut bad = response.clone();
        bad[i] ^= 0x80;
        assert!(hs.consume_response(&bad).is_err(), "flip at {i}");
    }
}
