//! DNS runners: the system resolver, and a raw UDP exchange that lingers for injected replies.
//!
//! Two engines, two purposes:
//!
//! - [`system_lookup`] asks what the volunteer's machine would use (hickory-resolver with the OS
//!   configuration). Its server is usually a LAN address, so it is never recorded.
//! - [`udp_lookup`] sends one query to a chosen (public) resolver and keeps listening after the
//!   first reply: an on-path injector races the genuine answer, so a second, different reply to the
//!   same query is the classic injection evidence (OONI tq-002, GFW).
//!
//! When the probe's answers share nothing with the control's, [`validate_answers`] checks the
//! answered addresses over TLS, so the classifier can tell a CDN from a forged answer.
//!
//! The wire format lives in [`codec`] (pure, unit-tested with byte vectors); these runners only do
//! the I/O with timeouts and turn the outcome into an [`Observation`](vantage_measurement::Observation).

mod both;
pub mod codec;
mod system;
mod udp;
mod validate;

#[cfg(test)]
mod test_server;

pub use both::udp_lookup_both;
pub use system::system_lookup;
pub use udp::{MAX_DATAGRAM_BYTES, MAX_REPLIES, udp_lookup};
pub use validate::validate_answers;

use vantage_measurement::{CodeSpace, Failure, RawCode};

/// The record type asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryType {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
}

impl QueryType {
    /// The mnemonic recorded in `DnsDetail::query_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
        }
    }
}

/// `DnsDetail::query_type` for engines that ask for both families at once (system, DoH).
pub const QUERY_TYPE_BOTH: &str = "A,AAAA";

/// The step outcome a reply implies: NOERROR with addresses is success; everything else is the
/// OONI failure for its rcode, with the rcode kept as the raw code.
pub(crate) fn reply_outcome(rcode: u16, has_answers: bool) -> Result<(), (Failure, RawCode)> {
    let failure = match rcode {
        0 if has_answers => return Ok(()),
        0 => Failure::DnsNoAnswer,
        2 => Failure::DnsServfailError,
        3 => Failure::DnsNxdomainError,
        5 => Failure::DnsRefusedError,
        _ => Failure::DnsServerMisbehaving,
    };
    Err((failure, rcode_raw(rcode)))
}

/// The raw code of a DNS response code.
pub(crate) fn rcode_raw(rcode: u16) -> RawCode {
    RawCode::named(CodeSpace::DnsRcode, Some(rcode.into()), codec::rcode_name(rcode))
}

/// A failure that did not come with an rcode (malformed reply, resolver library error, bad
/// input). The space is `dns_rcode` without a code; the name is fixed text of ours.
pub(crate) fn dns_failure(failure: Failure, name: &str) -> (Failure, RawCode) {
    (failure, RawCode::named(CodeSpace::DnsRcode, None, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcodes_map_to_ooni_failures_and_keep_the_code() {
        assert_eq!(reply_outcome(0, true), Ok(()));
        let cases = [
            (0, Failure::DnsNoAnswer, "NOERROR"),
            (2, Failure::DnsServfailError, "SERVFAIL"),
            (3, Failure::DnsNxdomainError, "NXDOMAIN"),
            (5, Failure::DnsRefusedError, "REFUSED"),
            (4, Failure::DnsServerMisbehaving, "NOTIMP"),
        ];
        for (rcode, failure, name) in cases {
            let (f, raw) = reply_outcome(rcode, false).expect_err("a failure");
            assert_eq!(f, failure);
            assert_eq!((raw.space, raw.code, raw.name.as_deref()), (CodeSpace::DnsRcode, Some(rcode.into()), Some(name)));
        }
        // NXDOMAIN stays a failure even if a (broken) server adds addresses.
        assert_eq!(reply_outcome(3, true).map_err(|e| e.0), Err(Failure::DnsNxdomainError));
    }
}
