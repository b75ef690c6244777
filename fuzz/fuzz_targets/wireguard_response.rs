//! Any bytes as a WireGuard message, as a response to a live handshake and as transport data:
//! never panics, and nothing forged authenticates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_probe::runner::vpn::codec::wireguard::{PeerKeys, Secret, initiate, parse_message, tai64n};

fuzz_target!(|data: &[u8]| {
    let _ = parse_message(data);
    let keys = PeerKeys { private: Secret([0x11; 32]), server_public: [0x09; 32], preshared: Secret([0; 32]) };
    let Ok((_, hs)) = initiate(&keys, [0x22; 32], 7, tai64n(1_700_000_000, 0)) else { return };
    // Without the responder's private key, no input may complete the handshake.
    assert!(hs.consume_response(data).is_err());
});
