//! Any bytes as the inner packet of a WireGuard transport message: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_engine::runner::vpn::codec::icmp::parse_echo_reply;

fuzz_target!(|data: &[u8]| {
    let _ = parse_echo_reply(data, 0x5654);
});
