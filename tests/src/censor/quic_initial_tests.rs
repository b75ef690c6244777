//! Tests of [`super`]: the RFC 9001 Appendix A vectors, then hostile input.

use ring::aead::quic::{AES_128, HeaderProtectionKey};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::*;
use crate::censor::tls_hello::{Sni, client_hello_sni};

/// RFC 9001 A.1/A.2: the client's first DCID.
const RFC_DCID: &str = "8394c8f03e515708";
/// RFC 9001 A.2: the protected 1200-byte client Initial.
const RFC_PACKET: &str = include_str!("testdata/rfc9001-a2-client-initial.hex");
/// RFC 9001 A.2: the unprotected header (packet number 2, 4 bytes).
const RFC_HEADER: &str = "c300000001088394c8f03e5157080000449e00000002";
/// RFC 9001 A.2: the CRYPTO frame carrying the ClientHello; PADDING follows to 1162 bytes.
const RFC_CRYPTO_FRAME: &str = "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868\
    04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578\
    616d706c652e636f6dff01000100000a00080006001d00170018001000070005\
    04616c706e000500050100000000003300260024001d00209370b2c9caa47fba\
    baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400\
    0d0010000e0403050306030203080408050806002d00020101001c0002400100\
    3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000\
    75300901100f088394c8f03e51570806048000ffff";
const RFC_PAYLOAD_LEN: usize = 1162;
const TAG_LEN: usize = 16;

pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex")).collect()
}

fn rfc_plaintext() -> Vec<u8> {
    let mut p = hex(RFC_CRYPTO_FRAME);
    p.resize(RFC_PAYLOAD_LEN, 0);
    p
}

/// Encrypt and header-protect `payload` under `header` (the inverse of
/// [`decrypt_client_initial`]), with the client keys of `dcid`.
fn protect(dcid: &[u8], header: &[u8], pn_offset: usize, packet_number: u64, payload: &[u8]) -> Vec<u8> {
    let secrets = InitialSecrets::client_v1(dcid);
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &secrets.key).expect("key"));
    let mut nonce = secrets.iv;
    for (n, p) in nonce[4..].iter_mut().zip(packet_number.to_be_bytes()) {
        *n ^= p;
    }
    let mut body = payload.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(header), &mut body).expect("seal");
    let mut packet = header.to_vec();
    packet.extend_from_slice(&body);
    let hp = HeaderProtectionKey::new(&AES_128, &secrets.hp).expect("hp");
    let mask = hp.new_mask(&packet[pn_offset + 4..pn_offset + 20]).expect("mask");
    let pn_len = usize::from(header[0] & 0x03) + 1;
    packet[0] ^= mask[0] & 0x0f;
    for i in 0..pn_len {
        packet[pn_offset + i] ^= mask[1 + i];
    }
    packet
}

/// A protected client Initial with a 4-byte packet number carrying `frames`, padded to 1200
/// bytes as clients do.
pub(crate) fn seal_client_initial(dcid: &[u8], scid: &[u8], packet_number: u32, frames: &[u8]) -> Vec<u8> {
    let mut header = vec![0xc3];
    header.extend_from_slice(&QUIC_V1.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.push(scid.len() as u8);
    header.extend_from_slice(scid);
    header.push(0x00); // no token
    let overhead = header.len() + 2 + 4 + TAG_LEN;
    let mut payload = frames.to_vec();
    payload.resize(payload.len().max(1200 - overhead.min(1200)), 0);
    let length = (4 + payload.len() + TAG_LEN) as u16;
    header.extend_from_slice(&(0x4000 | length).to_be_bytes());
    let pn_offset = header.len();
    header.extend_from_slice(&packet_number.to_be_bytes());
    protect(dcid, &header, pn_offset, u64::from(packet_number), &payload)
}

/// A CRYPTO frame at `offset` carrying `data`.
pub(crate) fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend_from_slice(&(0x8000_0000u32 | offset as u32).to_be_bytes());
    f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}

#[test]
fn rfc9001_a1_client_keys() {
    let secrets = InitialSecrets::client_v1(&hex(RFC_DCID));
    assert_eq!(secrets.key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
    assert_eq!(secrets.iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
    assert_eq!(secrets.hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
}

#[test]
fn rfc9001_a2_client_initial_opens_and_names_example_com() {
    let packet = hex(RFC_PACKET);
    assert_eq!(packet.len(), 1200);
    let lh = long_header(&packet).expect("long header");
    assert!(lh.is_v1_initial());
    assert_eq!(lh.dcid, hex(RFC_DCID));

    let initial = decrypt_client_initial(&packet).expect("decrypts");
    assert_eq!(initial.packet_number, 2);
    assert_eq!(initial.header, hex(RFC_HEADER));
    assert_eq!(initial.payload, rfc_plaintext());
    assert_eq!(initial.packet_len, 1200);
    assert!(initial.scid.is_empty());

    let frames = crypto_frames(&initial.payload).expect("frames");
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].offset, frames[0].data.len()), (0, 0xf1));
    assert_eq!(client_hello_sni(frames[0].data), Ok(Sni::Known(Some("example.com".into()))));
}

#[test]
fn protecting_the_rfc_plaintext_gives_the_rfc_packet() {
    // Validates the test-only sealer that the filter tests build packets with.
    let sealed = protect(&hex(RFC_DCID), &hex(RFC_HEADER), 18, 2, &rfc_plaintext());
    assert_eq!(sealed, hex(RFC_PACKET));
}

#[test]
fn a_sealed_initial_round_trips_with_coalesced_bytes_after_it() {
    let hello = crate::censor::tls_hello::tests::client_hello(Some("blocked.example"), 0);
    let mut datagram = seal_client_initial(&[7; 8], &[9; 5], 0, &crypto_frame(0, &hello));
    let packet_len = datagram.len();
    datagram.extend_from_slice(&[0x40; 30]); // e.g. a coalesced short-header packet
    let initial = decrypt_client_initial(&datagram).expect("decrypts");
    assert_eq!((initial.dcid.as_slice(), initial.scid.as_slice()), (&[7u8; 8][..], &[9u8; 5][..]));
    assert_eq!(initial.packet_len, packet_len);
    let frames = crypto_frames(&initial.payload).expect("frames");
    assert_eq!(client_hello_sni(frames[0].data), Ok(Sni::Known(Some("blocked.example".into()))));
}

#[test]
fn other_packets_are_told_apart_without_keys() {
    let mut packet = hex(RFC_PACKET);
    assert_eq!(decrypt_client_initial(&[0x40, 1, 2, 3]), Err(QuicError::NotLongHeader));
    packet[1..5].copy_from_slice(&0x6b33_43cfu32.to_be_bytes()); // QUIC v2
    assert_eq!(decrypt_client_initial(&packet), Err(QuicError::UnsupportedVersion(0x6b33_43cf)));
    let mut handshake = hex(RFC_PACKET);
    handshake[0] = 0xe0;
    assert_eq!(decrypt_client_initial(&handshake), Err(QuicError::NotInitial));
    let mut long_cid = hex(RFC_PACKET);
    long_cid[5] = 21;
    assert_eq!(decrypt_client_initial(&long_cid), Err(QuicError::ConnectionIdTooLong(21)));
}

#[test]
fn any_changed_byte_fails_authentication_or_parsing() {
    let packet = hex(RFC_PACKET);
    for i in (0..packet.len()).step_by(7) {
        let mut bad = packet.clone();
        bad[i] ^= 0x01;
        assert!(decrypt_client_initial(&bad).is_err(), "flipped byte {i}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    let packet = hex(RFC_PACKET);
    for len in 0..packet.len() {
        assert!(decrypt_client_initial(&packet[..len]).is_err(), "truncated to {len}");
    }
}

#[test]
fn frames_initials_may_carry_are_skipped_and_others_refused() {
    let mut payload = vec![0x01, 0x00, 0x00]; // PING, PADDING
    payload.extend_from_slice(&[0x02, 0x05, 0x00, 0x01, 0x00, 0x00, 0x01]); // ACK with one extra range
    payload.extend_from_slice(&[0x03, 0x05, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03]); // ACK_ECN
    payload.extend_from_slice(&crypto_frame(5, b"world"));
    payload.extend_from_slice(&[0x06, 0x00, 0x05]);
    payload.extend_from_slice(b"hello");
    payload.extend_from_slice(&[0x1c, 0x0a, 0x00, 0x02, b'n', b'o']); // CONNECTION_CLOSE
    let frames = crypto_frames(&payload).expect("frames");
    assert_eq!(frames, vec![CryptoFrame { offset: 5, data: b"world" }, CryptoFrame { offset: 0, data: b"hello" }]);

    assert_eq!(crypto_frames(&[0x08, 0x00]), Err(QuicError::UnexpectedFrame(0x08))); // STREAM
    assert_eq!(crypto_frames(&[0x06, 0x00, 0x09, b'x']), Err(QuicError::Truncated("CRYPTO data")));
    assert_eq!(crypto_frames(&[0x02, 0xff]), Err(QuicError::Truncated("ACK largest")));
    // A range count of 2^62-1 ends at the first missing byte, not after 2^62 iterations.
    assert!(crypto_frames(&[0x02, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]).is_err());
}

#[test]
fn the_assembler_orders_overlaps_and_bounds() {
    let mut a = CryptoAssembler::new(32);
    a.insert(&CryptoFrame { offset: 6, data: b"world" }).expect("fits");
    assert_eq!(a.contiguous(), b"");
    a.insert(&CryptoFrame { offset: 0, data: b"hello " }).expect("fits");
    assert_eq!(a.contiguous(), b"hello world");
    a.insert(&CryptoFrame { offset: 3, data: b"lo wor" }).expect("retransmission");
    assert_eq!(a.contiguous(), b"hello world");
    assert_eq!(a.insert(&CryptoFrame { offset: 30, data: b"abc" }), Err(QuicError::CryptoOverflow(32)));
    assert_eq!(a.insert(&CryptoFrame { offset: u64::MAX, data: b"" }), Err(QuicError::CryptoOverflow(32)));
    let mut gaps = CryptoAssembler::new(32);
    for i in 0..4u64 {
        gaps.insert(&CryptoFrame { offset: 10 + i, data: b"abcdefgh" }).expect("within limit");
    }
    assert!(gaps.insert(&CryptoFrame { offset: 20, data: b"abcdefgh" }).is_err(), "pending bytes are bounded");
}

#[test]
fn noise_and_mutated_headers_never_panic() {
    let packet = hex(RFC_PACKET);
    let mut seed = 0x5eed_1234;
    for _ in 0..3000 {
        let noise = crate::censor::noise(&mut seed, 1300);
        let _ = decrypt_client_initial(&noise);
        let _ = crypto_frames(&noise);
        // Keep a plausible start so parsing gets past the first checks.
        let mut mutated = packet.clone();
        for pair in noise.chunks(2).take(3) {
            if let [pos, value] = pair {
                mutated[usize::from(*pos) % 40] = *value;
            }
        }
        let _ = decrypt_client_initial(&mutated);
        let mut plausible = vec![0xc0, 0, 0, 0, 1];
        plausible.extend_from_slice(&noise);
        let _ = decrypt_client_initial(&plausible);
    }
}
