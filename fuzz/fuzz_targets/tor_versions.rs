//! Any bytes as the start of a relay's stream: never panics; an accepted version is one we offered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_engine::runner::vpn::codec::tor::parse_versions;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = parse_versions(data) {
        assert!((3..=5).contains(&v));
    }
});
