//! ECH rules: a TLS 1.3 handshake offering GREASE ECH against the same handshake without ECH, to
//! the same address with the same SNI, in random order; plus the helper's view of both.
//!
//! The GREASE handshake is the probe's [`Role::Target`] step, the one without ECH its
//! [`Role::Control`] step (see `runner::ech`). False positives we avoid:
//! - a server that is down fails both, and the helper's too → `down`, never `blocked`;
//! - a server that chokes on the ECH extension itself fails it for the helper too → `down`;
//! - an alert answering the ECH hello could be the server's own, so without the helper's ECH
//!   handshake completing it is `inconclusive`, not `blocked`;
//! - both failing here while the helper completes both is a block of every handshake, not of ECH
//!   (`tls.handshake_blocked`); when the ECH one ran first, a residual block it triggered would
//!   look the same, and the evidence says so.

use vantage_measurement::{Failure, Mechanism, Observation, Operation, Role, Status, Vantage, Verdict};

use super::evidence::{Steps, describe};
use super::tls::target_handshake;

/// Classify an `ech` measurement (one trial, with the helper's steps).
pub fn classify(observations: &[Observation]) -> Verdict {
    let steps = Steps(observations);
    let ech = match target_handshake(&steps) {
        Ok(ech) => ech,
        Err(verdict) => return verdict,
    };
    // The control's handshake, or its connect when that failed.
    let control = steps.probe_control(Operation::TlsHandshake).or_else(|| steps.probe_control(Operation::Connect));
    let helper_ech = steps.find(Vantage::Helper, Role::Target, Operation::TlsHandshake);
    let helper_control = steps.find(Vantage::Helper, Role::Control, Operation::TlsHandshake);
    let ech_first = ran_first(&steps);

    let mut evidence = vec![describe("grease ech", ech)];
    if let Some(c) = control {
        evidence.push(describe("no ech", c));
    }
    if let Some(first) = ech_first {
        evidence.push(format!("order: {} first", if first { "grease ech" } else { "no ech" }));
    }
    for (label, h) in [("helper, grease ech", helper_ech), ("helper, no ech", helper_control)] {
        if let Some(h) = h {
            evidence.push(describe(label, h));
        }
    }

    let Some(failure) = ech.failure else {
        // A control failure alone is no evidence about ECH.
        let mut verdict = Verdict::ok();
        verdict.evidence = evidence;
        return verdict;
    };
    if steps.probe_offline() {
        return Verdict::new(Status::Inconclusive, Mechanism::NetworkOffline, evidence);
    }
    if helper_ech.is_some_and(|h| !h.succeeded()) {
        evidence.push("the helper's ECH handshake failed too: the server, not the path".into());
        return Verdict::new(Status::Down, Mechanism::ControlFailed, evidence);
    }
    let helper_ech_ok = helper_ech.is_some_and(Observation::succeeded);
    let control_ok = control.is_some_and(|c| c.op == Operation::TlsHandshake && c.succeeded());
    if control_ok {
        if is_transport_failure(failure) || helper_ech_ok {
            return Verdict::new(Status::Blocked, Mechanism::TlsEchBlocked, evidence);
        }
        evidence.push("a TLS alert can be the server's own answer to ECH, and no helper completed the ECH handshake".into());
        return Verdict::new(Status::Inconclusive, Mechanism::TlsEchBlocked, evidence);
    }
    if helper_control.is_some_and(|h| !h.succeeded()) {
        return Verdict::new(Status::Down, Mechanism::ControlFailed, evidence);
    }
    if helper_ech_ok {
        if ech_first == Some(true) {
            evidence.push("the ECH handshake ran first: a residual block it triggered would look the same".into());
        }
        return Verdict::new(Status::Blocked, Mechanism::TlsHandshakeBlocked, evidence);
    }
    evidence.push("the handshake without ECH failed too and no helper answered: cannot tell blocking from an outage".into());
    Verdict::new(Status::Inconclusive, Mechanism::NoControl, evidence)
}

/// What a censor on the path does to a flow (reset, silence, close), as opposed to a TLS alert,
/// which a server may send itself.
fn is_transport_failure(f: Failure) -> bool {
    matches!(f, Failure::ConnectionReset | Failure::EofError) || f.is_timeout()
}

/// Whether the probe's ECH handshake ran before its control (`None` if either connect is missing).
fn ran_first(steps: &Steps<'_>) -> Option<bool> {
    let ech = steps.probe_target(Operation::Connect)?;
    let control = steps.probe_control(Operation::Connect)?;
    Some(ech.t_start_ms < control.t_start_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::testing::{step, tls_step};

    const RESET: Option<Failure> = Some(Failure::ConnectionReset);
    const TIMEOUT: Option<Failure> = Some(Failure::GenericTimeoutError);
    const ALERT: Option<Failure> = Some(Failure::SslFailedHandshake);

    /// The probe's pair in the given order, then (optionally) the helper's pair.
    fn scenario(
        ech_first: bool,
        ech: Option<Failure>,
        control: Option<Failure>,
        helper: Option<(Option<Failure>, Option<Failure>)>,
    ) -> Verdict {
        let side = |vantage, role, failure, t| {
            let mut connect = step(vantage, role, Operation::Connect, None);
            connect.t_start_ms = t;
            let mut hs = tls_step(vantage, role, failure, Some(true), "leaf");
            hs.t_start_ms = t + 1.0;
            [connect, hs]
        };
        let (t_ech, t_control) = if ech_first { (0.0, 10.0) } else { (10.0, 0.0) };
        let mut obs: Vec<Observation> = Vec::new();
        let mut probe = [side(Vantage::Probe, Role::Target, ech, t_ech), side(Vantage::Probe, Role::Control, control, t_control)];
        probe.sort_by(|a, b| a[0].t_start_ms.total_cmp(&b[0].t_start_ms));
        obs.extend(probe.into_iter().flatten());
        if let Some((h_ech, h_control)) = helper {
            obs.extend(side(Vantage::Helper, Role::Target, h_ech, 0.0));
            obs.extend(side(Vantage::Helper, Role::Control, h_control, 10.0));
        }
        classify(&obs)
    }

    fn is(v: &Verdict, status: Status, mechanism: Option<Mechanism>) -> bool {
        (v.status, v.mechanism) == (status, mechanism)
    }

    #[test]
    fn ech_reset_scenario_a_reset_only_with_ech_is_ech_blocking_in_either_order() {
        for ech_first in [true, false] {
            let v = scenario(ech_first, RESET, None, Some((None, None)));
            assert!(is(&v, Status::Blocked, Some(Mechanism::TlsEchBlocked)), "{v:?}");
            assert!(v.evidence.iter().any(|e| e.starts_with("grease ech: connection_reset")));
            assert!(v.evidence.iter().any(|e| e.starts_with("no ech: tls_handshake completed")));
            let order = if ech_first { "order: grease ech first" } else { "order: no ech first" };
            assert!(v.evidence.iter().any(|e| e == order), "{v:?}");
        }
        // The control on the same path is enough, without the helper.
        assert!(is(&scenario(false, RESET, None, None), Status::Blocked, Some(Mechanism::TlsEchBlocked)));
    }

    #[test]
    fn ech_drop_scenario_silence_only_with_ech_is_ech_blocking() {
        let v = scenario(true, TIMEOUT, None, None);
        assert!(is(&v, Status::Blocked, Some(Mechanism::TlsEchBlocked)));
        assert!(v.evidence.iter().any(|e| e.starts_with("grease ech: generic_timeout_error")));
    }

    #[test]
    fn plain_server_both_complete_is_ok() {
        let v = scenario(true, None, None, Some((None, None)));
        assert_eq!(v.status, Status::Ok);
        assert!(v.evidence.iter().any(|e| e.starts_with("no ech: tls_handshake completed")));
        // A control failure alone is not ECH blocking.
        assert_eq!(scenario(false, None, RESET, None).status, Status::Ok);
    }

    #[test]
    fn a_censor_of_every_hello_is_a_handshake_block_not_ech_blocking() {
        let v = scenario(false, RESET, RESET, Some((None, None)));
        assert!(is(&v, Status::Blocked, Some(Mechanism::TlsHandshakeBlocked)), "{v:?}");
        let ech_first = scenario(true, RESET, RESET, Some((None, None)));
        assert!(ech_first.evidence.iter().any(|e| e.contains("residual")));
        let alone = scenario(false, RESET, RESET, None);
        assert!(is(&alone, Status::Inconclusive, Some(Mechanism::NoControl)));
    }

    #[test]
    fn a_server_down_or_intolerant_of_ech_for_everyone_is_down() {
        let v = scenario(true, RESET, RESET, Some((RESET, RESET)));
        assert!(is(&v, Status::Down, Some(Mechanism::ControlFailed)));
        let intolerant = scenario(true, ALERT, None, Some((ALERT, None)));
        assert!(is(&intolerant, Status::Down, Some(Mechanism::ControlFailed)));
        assert!(intolerant.evidence.iter().any(|e| e.contains("the server, not the path")));
    }

    #[test]
    fn an_alert_only_with_ech_needs_the_helper_to_be_a_block() {
        let alone = scenario(false, ALERT, None, None);
        assert!(is(&alone, Status::Inconclusive, Some(Mechanism::TlsEchBlocked)));
        let helped = scenario(false, ALERT, None, Some((None, None)));
        assert!(is(&helped, Status::Blocked, Some(Mechanism::TlsEchBlocked)));
    }

    #[test]
    fn a_refused_connect_is_judged_as_tcp() {
        let obs = vec![
            step(Vantage::Probe, Role::Target, Operation::Connect, RESET),
            step(Vantage::Helper, Role::Target, Operation::Connect, None),
        ];
        assert_eq!(classify(&obs).status, Status::Blocked);
        assert_ne!(classify(&obs).mechanism, Some(Mechanism::TlsEchBlocked));
    }
}
