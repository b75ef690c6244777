//! The classifier: a pure function from observations to a verdict.
//!
//! No I/O, no clock. Each test has its own file of rules; `classify` dispatches. Every rule is
//! tested with table tests named after the scenario it recognises.

pub mod bogon;
pub mod dns;
mod evidence;
pub mod quic;
pub mod tcp;
#[cfg(test)]
pub(crate) mod testing;
pub mod tls;

use vantage_measurement::{Observation, TestKind, Verdict};

/// Decide the verdict of one measurement from all its observations (probe, helper, controls).
pub fn classify(test: TestKind, observations: &[Observation], bogons: &bogon::BogonPolicy) -> Verdict {
    match test {
        TestKind::Dns => dns::classify(observations, bogons),
        TestKind::Tcp => tcp::classify(observations),
        TestKind::Tls => tls::classify(observations),
        TestKind::Quic => quic::classify(observations),
    }
}
