//! Looking things up in a measurement's observations, and phrasing evidence.
//!
//! Rules ask questions like "what did the probe's target-SNI handshake see?"; these helpers
//! answer them so each rule file reads as rules, not as filtering.

use vantage_measurement::{Detail, Failure, Observation, Operation, Role, TlsDetail, Vantage};

/// The observations of one measurement, with the lookups the rules need.
#[derive(Clone, Copy, Debug)]
pub struct Steps<'a>(pub &'a [Observation]);

impl<'a> Steps<'a> {
    /// The last step by `vantage` in `role` doing `op`.
    pub fn find(&self, vantage: Vantage, role: Role, op: Operation) -> Option<&'a Observation> {
        self.0.iter().rev().find(|o| o.vantage == vantage && o.role == role && o.op == op)
    }

    /// The probe's step for the target.
    pub fn probe_target(&self, op: Operation) -> Option<&'a Observation> {
        self.find(Vantage::Probe, Role::Target, op)
    }

    /// The probe's step for the control (control SNI).
    pub fn probe_control(&self, op: Operation) -> Option<&'a Observation> {
        self.find(Vantage::Probe, Role::Control, op)
    }

    /// The helper's step for the target.
    pub fn helper(&self, op: Operation) -> Option<&'a Observation> {
        self.find(Vantage::Helper, Role::Target, op)
    }

    /// True when every probe step failed because the probe's own network is down.
    pub fn probe_offline(&self) -> bool {
        let mut probe = self.0.iter().filter(|o| o.vantage == Vantage::Probe).peekable();
        probe.peek().is_some() && probe.all(|o| o.failure.is_some_and(Failure::is_local_network_failure))
    }
}

/// The TLS detail of a step, if it has one.
pub fn tls_detail(o: &Observation) -> Option<&TlsDetail> {
    match &o.detail {
        Some(Detail::Tls(d)) => Some(d),
        _ => None,
    }
}

/// `target sni: connection_reset in tls_handshake after 3.1 ms`.
pub fn describe(label: &str, o: &Observation) -> String {
    match o.failure {
        Some(f) => format!("{label}: {f} in {} after {:.1} ms", o.op.as_str(), o.duration_ms),
        None => format!("{label}: {} completed in {:.1} ms", o.op.as_str(), o.duration_ms),
    }
}
