//! Any bytes as an OpenVPN server packet, under every wrap: never panics; what parses as a
//! server reset for our session only does so when the wrap's authentication holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_engine::runner::vpn::codec::openvpn::{
    Digest, KeyDirection, ReplayId, Side, StaticKey, Wrap, check_server_reset, parse_packet, parse_server_packet,
    server_hard_reset, unframe_tcp,
};

fuzz_target!(|data: &[u8]| {
    let key = StaticKey::from_bytes([0x5a; 256]);
    let wraps = [
        Wrap::Plain,
        Wrap::TlsAuth { key: key.clone(), direction: KeyDirection::Inverse, digest: Digest::Sha1 },
        Wrap::TlsAuth { key: key.clone(), direction: KeyDirection::Bidirectional, digest: Digest::Sha512 },
        Wrap::TlsCrypt { key },
    ];
    for wrap in &wraps {
        if let Ok(p) = parse_server_packet(wrap, data) {
            let _ = check_server_reset(&p, [1; 8]);
        }
        let _ = parse_packet(wrap, Side::Server, data);
    }
    let _ = unframe_tcp(data);
    // Round trip: a reset built from fuzzed ids parses back to the same session.
    if data.len() >= 20 {
        let sid: [u8; 8] = data[..8].try_into().unwrap_or([0; 8]);
        let client: [u8; 8] = data[8..16].try_into().unwrap_or([0; 8]);
        let id = u32::from_be_bytes([data[16], data[17], data[18], data[19]]);
        for wrap in &wraps {
            let reply = server_hard_reset(wrap, sid, client, ReplayId { id, time: id });
            let parsed = parse_server_packet(wrap, &reply).expect("our own reply parses");
            assert_eq!(parsed.session_id, sid);
            assert!(check_server_reset(&parsed, client).is_ok());
        }
    }
});
