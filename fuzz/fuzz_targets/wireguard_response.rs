//! Any bytes as a WireGuard message, as a response to a live handshake and as transport data:
//! never panics, and nothing forged authenticates.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vantage_engine::runner::vpn::codec::wireguard::{Handshake, PeerKeys, Secret, initiate, parse_message, tai64n};

/// One initiation for the whole run: building it costs two Diffie-Hellmans.
fn handshake() -> Option<&'static Handshake> {
    static HS: OnceLock<Option<Handshake>> = OnceLock::new();
    HS.get_or_init(|| {
        let keys = PeerKeys { private: Secret([0x11; 32]), server_public: [0x09; 32], preshared: Secret([0; 32]) };
        initiate(&keys, [0x22; 32], 7, tai64n(1_700_000_000, 0)).ok().map(|(_, hs)| hs)
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_message(data);
    let Some(hs) = handshake() else { return };
    // Without the responder's private key, no input may complete the handshake. Inputs that
    // pass the shape checks reach mac1; graft our receiver index on so they get that far.
    assert!(hs.consume_response(data).is_err());
    if data.len() == 92 {
        let mut msg = data.to_vec();
        msg[..4].copy_from_slice(&[2, 0, 0, 0]);
        msg[8..12].copy_from_slice(&7u32.to_le_bytes());
        assert!(hs.consume_response(&msg).is_err());
    }
});
