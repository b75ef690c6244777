//! Any bytes as an IKE reply, with and without the NAT-T marker: never panics; an accepted
//! reply has our SPI and a payload chain that ends exactly at the datagram's end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_engine::runner::vpn::codec::ikev2::parse_reply;

fuzz_target!(|data: &[u8]| {
    let spi = [0x56, 0x41, 0x4e, 0x54, 0x41, 0x47, 0x45, 0x32];
    for nat_t in [false, true] {
        if let Ok(reply) = parse_reply(data, &spi, nat_t) {
            let _ = reply.kind();
            assert!(reply.payloads.len() <= 32);
        }
    }
    // Let the fuzzer reach the payload walk: graft our SPI and a consistent length on.
    if data.len() >= 28 {
        let mut msg = data.to_vec();
        msg[..8].copy_from_slice(&spi);
        msg[17] = 0x20;
        msg[18] = 34;
        msg[19] = 0x20;
        msg[20..24].copy_from_slice(&[0; 4]);
        let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
        msg[24..28].copy_from_slice(&len.to_be_bytes());
        let _ = parse_reply(&msg, &spi, false).map(|r| r.kind());
    }
});
