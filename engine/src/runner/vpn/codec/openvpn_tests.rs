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
    let reply = server_hard_reset(
        &Wrap::TlsAuth { key: key(), direction: KeyDirection::Inverse, digest: Digest::Sha1 },
        SERVER_SID,
        SID,
        REPLAY,
    );
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
    let cases: [&[u8]; 5] =
        [&[], &[0x40; 9], &[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 200], &[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0], &[0x28; 12]];
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
    let text = format!(
        "#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n{}\n-----END OpenVPN Static key V1-----\n",
        lines.join("\n")
    );
    assert_eq!(StaticKey::parse(&text), Ok(key()));
    assert!(format!("{:?}", key()).contains("redacted"));
    assert_eq!(StaticKey::parse(&text.replace("0f", "0g")), Err(DecodeError::BadKey("not hexadecimal")));
    assert!(StaticKey::parse("hello").is_err());
    assert!(StaticKey::parse(&text.replace(lines[3], "")).is_err());
}

// --- Vectors captured from a real server -------------------------------------------------------
// Debian's openvpn 2.6.14 in a network namespace (server mode, `dev tun`, EC certificates,
// `dh none`), UDP and TCP on 1194 (plain), 1195 (`tls-auth ta.key 0`, `auth SHA256`) and 1196
// (`tls-crypt ta.key`), with the throwaway lab key below. The requests were built by this codec
// with session id `VANTAGE1`, replay id 1 and time 1795882758; the replies were read off the
// socket (docs/vpn.md says how to capture again).

/// The lab's throwaway static key (generated with `openvpn --genkey secret`, used nowhere else).
const LAB_KEY: &str = "-----BEGIN OpenVPN Static key V1-----
9e648e87cdcf3c9e766d0dc972636150
acd47dd3639be06b6370d65a54f25804
9de3edc7da63314599f788fa45ba73c4
2f4cb03c5a6a00569462006900e123bf
0ba1f36f11eb5da8f20336dc0bd411c2
df89c61c3821f28d5a8415181844e923
03063def810b6d8a0e270db83cd77bfc
6faf3d46b263ab6190be6bbcd8610d2b
9de74523b5fa585b7922009d23860047
0e7dc643866f6cdf824fd71f79f67148
6adc05b47ef7c5cae8727454cc70fcd3
d043a6bd77bfa639b2faa0d2d5ffb64e
9e73e6492f8da176756a592e7cb353da
2d317ed8d21dfddb08ec7e80a6d24c04
9e30aee779d1cabe44befaa75ac2596b
f0712093e2afe118c79b8b049248c4cd
-----END OpenVPN Static key V1-----";
const CAPTURE_SID: [u8; 8] = *b"VANTAGE1";
const CAPTURE_REPLAY: ReplayId = ReplayId { id: 1, time: 1795882758 };

fn unhex(parts: &[&str]) -> Vec<u8> {
    let hex: String = parts.concat();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

fn lab(mode: &str) -> Wrap {
    let key = StaticKey::parse(LAB_KEY).expect("lab key");
    match mode {
        "tls_auth" => Wrap::TlsAuth { key, direction: KeyDirection::Inverse, digest: Digest::Sha256 },
        "tls_crypt" => Wrap::TlsCrypt { key },
        _ => Wrap::Plain,
    }
}

#[test]
fn our_resets_match_what_the_real_server_accepted() {
    for (mode, captured) in [
        ("plain", unhex(&["3856414e54414745310000000000"])),
        (
            "tls_auth",
            unhex(&[
                "3856414e5441474531e73386a7049288a3e32cf4f56047c8147f7fe4636e31bb044d860841fe7e5324000000016b0aff",
                "060000000000",
            ]),
        ),
        (
            "tls_crypt",
            unhex(&[
                "3856414e5441474531000000016b0aff06f848acf086ab2a8b45ea2e9f1ccf56bd853ee3931990d66135c2dc11ba2dea",
                "e273e402bf03",
            ]),
        ),
    ] {
        assert_eq!(client_hard_reset(&lab(mode), CAPTURE_SID, CAPTURE_REPLAY), captured, "{mode}");
    }
}

#[test]
fn real_server_resets_verify_over_udp_and_tcp() {
    let cases = [
        ("plain", false, unhex(&["40bc4ea4bc273117f9010000000056414e544147453100000000"])),
        ("plain", true, unhex(&["001a401642a4de60bb0e7e010000000056414e544147453100000000"])),
        (
            "tls_auth",
            false,
            unhex(&[
                "40d20170703fb228d237e61657350dc0c4cd95377eb1e2af2fe687634b5b351c6c2bbfc741e79e4e51000000016b0aff",
                "06010000000056414e544147453100000000",
            ]),
        ),
        (
            "tls_auth",
            true,
            unhex(&[
                "004240209a254730c9910ce93d0d4310ec0e32298acdcb9201d08c93fd4670e730f38660bbcba5fc488361000000016b",
                "0aff06010000000056414e544147453100000000",
            ]),
        ),
        (
            "tls_crypt",
            false,
            unhex(&[
                "40c8fe42975fb3597b000000016b0aff07139810c110ea4a44f535c1cca080fe0a6b781591cd368bba4c7e2cd82881e6",
                "bf2a7c039b4d49c94f6c250883341faa391b",
            ]),
        ),
        (
            "tls_crypt",
            true,
            unhex(&[
                "004240fc072d2f62f7aa32000000016b0aff074ecea3d6808021c850a0df01c5c6cc3b5496b2f3d381e3a5c1e3680f49",
                "3c08e6ea866af5e82980100cfdf0c78c9bd7272a",
            ]),
        ),
    ];
    for (mode, tcp, bytes) in cases {
        let packet = if tcp { unframe_tcp(&bytes).expect("one whole frame").0.to_vec() } else { bytes };
        let reply = parse_server_packet(&lab(mode), &packet).unwrap_or_else(|e| panic!("{mode} tcp={tcp}: {e}"));
        assert_eq!(reply.opcode, HARD_RESET_SERVER_V2, "{mode}");
        assert_eq!(check_server_reset(&reply, CAPTURE_SID), Ok(()), "{mode} tcp={tcp}");
        // The same reply checked with the wrong key (or none) is refused, never accepted.
        if mode != "plain" {
            let other = if mode == "tls_auth" { lab("tls_crypt") } else { lab("tls_auth") };
            assert!(parse_server_packet(&other, &packet).is_err(), "{mode} under the other wrap");
        }
    }
    // 26 bytes, as lab-facts.md recorded for openvpn 2.6.14.
    assert_eq!(unhex(&["40bc4ea4bc273117f9010000000056414e544147453100000000"]).len(), 26);
}
