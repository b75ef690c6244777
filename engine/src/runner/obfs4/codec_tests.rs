//! Vectors: a handshake with obfs4proxy 0.0.14 (Debian bookworm), captured by running it as a
//! server (`TOR_PT_MANAGED_TRANSPORT_VER=1 TOR_PT_SERVER_TRANSPORTS=obfs4
//! TOR_PT_SERVER_BINDADDR=obfs4-127.0.0.1:17000 TOR_PT_ORPORT=127.0.0.1:17001
//! TOR_PT_STATE_LOCATION=… obfs4proxy`, a socat echo upstream) and sending
//! `ClientHandshake::new(CERT, key(8), HOUR).request(&[0x5a; CLIENT_MIN_PAD])`; the bridge's
//! response, with its inline PRNG-seed frame, is `testdata/obfs4proxy-0.0.14-response.hex` (the
//! capture code, a few lines over `std::net::TcpStream`, is in this file's history: commit 51e6346).
//! A session set up the same way then carried a padding-only frame and `hello obfs4`, which came back
//! through the echo (the lab test does that end to end).

use super::*;

const CERT: &str = "1zafY8m+vab3C1YJOMbZXKebX9A8Pd1v/Vb7lsZ4NnShUA8A0LMW0GBmRAKAT2p7auhwPg";
const HOUR: u64 = 498_944;
const SEED: [u8; 24] =
    [196, 47, 89, 137, 145, 6, 142, 19, 248, 219, 173, 216, 78, 66, 162, 95, 36, 194, 75, 148, 148, 9, 83, 222];

/// The capture's client key (secret `[8; 32]`, tweak 0x80), or the next representable one.
fn key(first: u8) -> ClientKey {
    (first..=255).find_map(|i| ClientKey::new([i; 32], 0x80)).expect("a representable key")
}

fn handshake() -> ClientHandshake {
    ClientHandshake::new(BridgeCert::parse(CERT).expect("cert"), key(8), HOUR)
}

fn response() -> Vec<u8> {
    let hex: String = include_str!("testdata/obfs4proxy-0.0.14-response.hex").split_whitespace().collect();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn the_real_bridges_response_verifies_and_its_seed_frame_decrypts() {
    let resp = response();
    let Ok(est) = handshake().finish(&resp) else { panic!("the captured response must verify") };
    assert!(est.consumed < resp.len(), "the seed frame follows the handshake");
    let mut rest = resp[est.consumed..].to_vec();
    let mut decoder = est.decoder;
    let packet = decoder.packet(&mut rest).expect("seed packet");
    assert_eq!(packet, Packet { kind: PACKET_PRNG_SEED, payload: SEED.to_vec() });
    assert!(rest.is_empty());
}

#[test]
fn partial_tampered_or_foreign_responses_are_refused() {
    let resp = response();
    let hs = handshake();
    for cut in [0, 95, 300] {
        assert_eq!(hs.finish(&resp[..cut]).err(), Some(CodecError::Incomplete), "{cut}");
    }
    let mut bad_auth = resp.clone();
    bad_auth[40] ^= 1;
    assert_eq!(hs.finish(&bad_auth).err(), Some(CodecError::BadMac), "AUTH is under the MAC");
    let mut bad_pad = resp.clone();
    bad_pad[70] ^= 1;
    assert_eq!(hs.finish(&bad_pad).err(), Some(CodecError::BadMac));
    // Another hour: the MAC no longer matches.
    let late = ClientHandshake::new(BridgeCert::parse(CERT).expect("cert"), key(8), HOUR + 1);
    assert_eq!(late.finish(&resp).err(), Some(CodecError::BadMac));
    // Another client key: the marks match, the ntor AUTH can't.
    let other = ClientHandshake::new(BridgeCert::parse(CERT).expect("cert"), key(200), HOUR);
    assert_eq!(other.finish(&resp).err(), Some(CodecError::BadAuth));
    // Random bytes from something that is not the bridge: no mark within 8192 bytes.
    let noise: Vec<u8> = (0..MAX_HANDSHAKE_LEN).map(|i| (i * 7 + i / 13) as u8).collect();
    assert_eq!(hs.finish(&noise).err(), Some(CodecError::MarkNotFound));
}

#[test]
fn requests_have_the_layout_obfs4proxy_checks() {
    let hs = handshake();
    let req = hs.request(&[0x5a; CLIENT_MIN_PAD]);
    assert_eq!(req.len(), 32 + CLIENT_MIN_PAD + 32);
    assert_eq!((CLIENT_MIN_PAD, CLIENT_MAX_PAD), (77, 8128));
    // Same inputs, same bytes (the codec has no randomness of its own).
    assert_eq!(req, handshake().request(&[0x5a; CLIENT_MIN_PAD]));
    assert_ne!(req[..32], key(200).representative);
}

#[test]
fn frames_round_trip_between_the_two_directions_keys() {
    // Client encoder and a decoder with the same key material, as the bridge holds them.
    let material: Vec<u8> = (0..KEY_MATERIAL as u8).collect();
    let mut enc = Encoder(FrameKeys::new(&material));
    let mut dec = Decoder { keys: FrameKeys::new(&material), next_len: None };
    let mut wire = Vec::new();
    wire.extend(enc.frame(PACKET_PAYLOAD, b"abc", 10).expect("frame"));
    wire.extend(enc.frame(PACKET_PAYLOAD, &[], MAX_PACKET_BODY).expect("padding"));
    assert_eq!(wire.len(), (FRAME_OVERHEAD + PACKET_OVERHEAD + 13) + MAX_SEGMENT);
    assert_eq!(dec.packet(&mut wire[..5].to_vec()).err(), Some(CodecError::Incomplete));
    let mut dec = Decoder { keys: FrameKeys::new(&material), next_len: None };
    assert_eq!(dec.packet(&mut wire).expect("first").payload, b"abc");
    assert_eq!(dec.packet(&mut wire).expect("second"), Packet { kind: PACKET_PAYLOAD, payload: vec![] });
    assert_eq!(enc.frame(PACKET_PAYLOAD, &[], MAX_PACKET_BODY + 1).err(), Some(CodecError::TooLong));
    // A flipped bit in the box fails the tag.
    let mut wire = enc.frame(PACKET_PAYLOAD, b"x", 0).expect("frame");
    let mut dec2 = Decoder { keys: FrameKeys::new(&material), next_len: None };
    for _ in 0..2 {
        dec2.keys.next_mask();
        dec2.keys.next_nonce();
    }
    let last = wire.len() - 1;
    wire[last] ^= 1;
    assert_eq!(dec2.packet(&mut wire).err(), Some(CodecError::BadTag));
}

#[test]
fn certs_decode_with_or_without_padding() {
    assert_eq!(BridgeCert::parse(CERT), BridgeCert::parse(&format!("{CERT}==")));
    assert_eq!(BridgeCert::parse("AAAA"), Err(CertError::Length(3)));
    assert_eq!(BridgeCert::parse(CERT).expect("cert").to_base64(), CERT);
    assert_eq!(format!("{:?}", BridgeCert::parse(CERT).expect("cert")), "BridgeCert(redacted)");
}
