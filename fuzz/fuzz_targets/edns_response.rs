//! Any bytes as a DoH HTTP response or a DoT reply (what a resolver, or something in its place,
//! sends after the handshake): never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_engine::runner::dns::QueryType;
use vantage_engine::runner::edns::codec::{check_doh_response, check_reply};

fuzz_target!(|data: &[u8]| {
    let _ = check_doh_response(data, 0, "example.org", QueryType::A);
    let _ = check_reply(data, 0x1234, "example.org", QueryType::A);
});
