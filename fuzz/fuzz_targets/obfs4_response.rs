//! Any bytes as a bridge's handshake response, then as frames: never panics, and nothing
//! forged completes the handshake (the mark, MAC and ntor AUTH are keyed by the bridge's cert
//! and the client's fresh key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_engine::runner::obfs4::codec::{BridgeCert, ClientHandshake, ClientKey};

const CERT: &str = "1zafY8m+vab3C1YJOMbZXKebX9A8Pd1v/Vb7lsZ4NnShUA8A0LMW0GBmRAKAT2p7auhwPg";

fuzz_target!(|data: &[u8]| {
    let (Ok(cert), Some(key)) = (BridgeCert::parse(CERT), (8u8..=255).find_map(|i| ClientKey::new([i; 32], 0x80))) else {
        return;
    };
    let hs = ClientHandshake::new(cert, key, 498_944);
    if let Ok(est) = hs.finish(data) {
        // Only a response made with the bridge's private key gets here.
        assert!(est.consumed <= data.len());
        let mut rest = data[est.consumed..].to_vec();
        let mut decoder = est.decoder;
        while decoder.packet(&mut rest).is_ok() {}
    }
});
