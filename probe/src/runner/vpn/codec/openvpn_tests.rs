use super::*;

const SID: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
const SERVER_SID: [u8; 8] = [9, 9, 9, 9, 9, 9, 9, 9];
const REPLAY: ReplayId = ReplayId { id: 1, time: 0x6000_0000 };

fn key() -> StaticKey {
    let mut bytes = [0u8; 256];
    bytes.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    StaticKey::from_bytes(bytes)
}

fn wraps() -> Vec<Wrap> {
    let mut wraps = vec![Wrap::Plain, Wrap::TlsCrypt { key: key() }];
    for direction in [KeyDirection::Bidirectional, KeyDirection::Normal, KeyDirection::Inverse] {
        for digest in [Digest::Sha1, Digest::Sha256, Digest::Sha512] {
            wraps.push(Wrap::TlsAuth { key: key(), direction, digest });
        }
    }
    wraps
}

#[test]
fn the_plain_client_reset_is_the_14_bytes_dpi_boxes_match() {
    let p = client_hard_reset(&Wrap::Plain, SID, REPLAY);
    assert_eq!(p, [0x38, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0]);
    assert_eq!(frame_tcp(&p)[..2], [0, 14]);
}

#[test]
fn wrapped_resets_have_the_documented_lengths() {
    let auth = |digest| Wrap::TlsAuth { key: key(), direction: KeyDirection::Inverse, digest };
    assert_eq!(client_hard_reset(&auth(Digest::Sha1), SID, REPLAY).len(), 14 + 20 + 8);
    assert_eq!(client_hard_reset(&auth(Digest::Sha256), SID, REPLAY).len(), 14 + 32 + 8);
    let crypt = client_hard_reset(&Wrap::TlsCrypt { key: key() }, SID, REPLAY);
    assert_eq!(crypt.len(), 14 + 8 + 32);
    // The opcode and session id stay in the clear; the ack and message id are encrypted.
    assert_eq!(crypt[..9], [0x38, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(crypt[9..17], [0, 0, 0, 1, 0x60, 0, 0, 0]);
}

#[test]
fn a_server_reset_round_trips_through_every_wrap() {
    for wrap in wraps() {
        let reply = server_hard_reset(&wrap, SERVER_SID, SID, REPLAY);
        let parsed = parse_server_packet(&wrap, &reply).unwrap_or_else(|e| panic!("{}: {e}", wrap.mode()));
        assert_eq!(parsed.opcode, HARD_RESET_SERVER_V2);
        assert_eq!(parsed.session_id, SERVER_SID);
        assert_eq!(check_server_reset(&parsed, SID), Ok(()));
        // The server reads our reset with the opposite key slots.
        let ours = parse_packet(&wrap, Side::Server, &client_hard_reset(&wrap, SID, REPLAY)).expect("server side");
        assert_eq!((ours.opcode, ours.message_id, ours.acks.len()), (HARD_RESET_CLIENT_V2, Some(0), 0));
    }
}

#[test]
fn a_reply_under_another_key_or_direction_is_refused() {
    let reply = server_hard_reset(&Wrap::TlsAuth { key: key(), direction: KeyDirection::Inverse, digest: Digest::Sha1 }, SERVER_SID, SID, REPLAY);
    let wrong_direction = Wrap::TlsAuth { key: key(), direction: KeyDirection::Normal, digest: Digest::Sha1 };
    assert_eq!(parse_server_packet(&wrong_direction, &reply), Err(DecodeError::BadAuthentication));
    let mut tampered = server_hard_reset(&Wrap::TlsCrypt { key: key() }, SERVER_SID, SID, REPLAY);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(parse_server_packet(&Wrap::TlsCrypt { key: key() }, &tampered), Err(DecodeError::BadAuthentication));
}

#[test]
fn a_reset_for_another_session_is_not_ours() {
    let reply = parse_server_packet(&Wrap::Plain, &server_hard_reset(&Wrap::Plain, SERVER_SID, [7; 8], REPLAY)).expect("parse");
    assert_eq!(check_server_reset(&reply, SID), Err(ReplyError::NotOurSession));
    let ours = parse_server_packet(&Wrap::Plain, &client_hard_reset(&Wrap::Plain, SID, REPLAY)).expect("parse");
    assert_eq!(check_server_reset(&ours, SID), Err(ReplyError::WrongOpcode(HARD_RESET_CLIENT_V2)));
}

#[test]
fn hostile_packets_are_refused_without_panicking() {
    let cases: [&[u8]; 5] = [&[], &[0x40; 9], &[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 200], &[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0], &[0x28; 12]];
    for case in cases {
        for wrap in wraps() {
            assert!(parse_server_packet(&wrap, case).is_err(), "{case:?} with {}", wrap.mode());
        }
    }
    assert_eq!(parse_server_packet(&Wrap::Plain, &[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 9]), Err(DecodeError::TooManyAcks(9)));
}

#[test]
fn tcp_framing_waits_for_whole_packets() {
    let framed = [frame_tcp(&[1, 2, 3]), frame_tcp(&[4])].concat();
    let (first, rest) = unframe_tcp(&framed).expect("first");
    assert_eq!((first, rest), (&[1u8, 2, 3][..], &[0u8, 1, 4][..]));
    assert_eq!(unframe_tcp(&framed[..4]), None);
    assert_eq!(unframe_tcp(&[0]), None);
}

#[test]
fn static_key_files_parse_and_typos_are_refused() {
    let hex: String = (0..256).map(|i| format!("{:02x}", i as u8)).collect();
    let lines: Vec<&str> = (0..16).map(|i| &hex[i * 32..i * 32 + 32]).collect();
    let text = format!("#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n{}\n-----END OpenVPN Static key V1-----\n", lines.join("\n"));
    assert_eq!(StaticKey::parse(&text), Ok(key()));
    assert!(format!("{:?}", key()).contains("redacted"));
    assert_eq!(StaticKey::parse(&text.replace("0f", "0g")), Err(DecodeError::BadKey("not hexadecimal")));
    assert!(StaticKey::parse("hello").is_err());
    assert!(StaticKey::parse(&text.replace(lines[3], "")).is_err());
}
