//! Any bytes as a DNS reply (a censor's injected answer is exactly this): never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_engine::runner::dns::codec::parse_reply;

fuzz_target!(|data: &[u8]| {
    let _ = parse_reply(data);
});
