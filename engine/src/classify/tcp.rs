//! TCP rules: a failed connect is blocking only when the helper connects to the same endpoint.

use vantage_measurement::{Failure, Mechanism, Observation, Operation, Status, Verdict};

use super::evidence::{Steps, describe};

/// Classify a TCP connect measurement.
pub fn classify(observations: &[Observation]) -> Verdict {
    let steps = Steps(observations);
    let Some(target) = steps.probe_target(Operation::Connect) else {
        return Verdict::new(Status::Inconclusive, Mechanism::Other, vec!["no connect step recorded".into()]);
    };
    connect_verdict(&steps, target)
}

/// The verdict for a failed or successful probe connect, given the helper's view.
/// Shared by TLS, whose first step is the same connect.
pub(super) fn connect_verdict(steps: &Steps<'_>, target: &Observation) -> Verdict {
    let Some(failure) = target.failure else { return Verdict::ok() };
    let mut evidence = vec![describe("probe connect", target)];
    if steps.probe_offline() {
        return Verdict::new(Status::Inconclusive, Mechanism::NetworkOffline, evidence);
    }
    let Some(helper) = steps.helper(Operation::Connect) else {
        evidence.push("no helper control: cannot tell blocking from an outage".into());
        return Verdict::new(Status::Inconclusive, Mechanism::NoControl, evidence);
    };
    evidence.push(describe("helper connect", helper));
    if helper.failure.is_some() {
        return Verdict::new(Status::Down, Mechanism::ControlFailed, evidence);
    }
    Verdict::new(Status::Blocked, connect_mechanism(failure), evidence)
}

fn connect_mechanism(failure: Failure) -> Mechanism {
    match failure {
        Failure::ConnectionRefused => Mechanism::TcpRefused,
        Failure::ConnectionReset | Failure::ConnectionAborted => Mechanism::TcpReset,
        Failure::GenericTimeoutError => Mechanism::TcpTimeout,
        Failure::HostUnreachable | Failure::NetworkUnreachable => Mechanism::TcpUnreachable,
        _ => Mechanism::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::testing::step;
    use vantage_measurement::{Role, Vantage};

    fn connect(vantage: Vantage, failure: Option<Failure>) -> Observation {
        step(vantage, Role::Target, Operation::Connect, failure)
    }

    #[test]
    fn clean_connect_is_ok() {
        assert_eq!(classify(&[connect(Vantage::Probe, None)]).status, Status::Ok);
    }

    #[test]
    fn ip_block_by_drop_is_a_timeout_block() {
        let v = classify(&[connect(Vantage::Probe, Some(Failure::GenericTimeoutError)), connect(Vantage::Helper, None)]);
        assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::TcpTimeout)));
    }

    #[test]
    fn ip_block_by_reject_is_refused_or_unreachable() {
        let v = classify(&[connect(Vantage::Probe, Some(Failure::ConnectionRefused)), connect(Vantage::Helper, None)]);
        assert_eq!(v.mechanism, Some(Mechanism::TcpRefused));
        let v = classify(&[connect(Vantage::Probe, Some(Failure::HostUnreachable)), connect(Vantage::Helper, None)]);
        assert_eq!(v.mechanism, Some(Mechanism::TcpUnreachable));
    }

    #[test]
    fn server_stopped_for_everyone_is_down() {
        let v = classify(&[
            connect(Vantage::Probe, Some(Failure::ConnectionRefused)),
            connect(Vantage::Helper, Some(Failure::ConnectionRefused)),
        ]);
        assert_eq!((v.status, v.mechanism), (Status::Down, Some(Mechanism::ControlFailed)));
    }

    #[test]
    fn without_a_helper_a_failure_is_inconclusive() {
        let v = classify(&[connect(Vantage::Probe, Some(Failure::GenericTimeoutError))]);
        assert_eq!((v.status, v.mechanism), (Status::Inconclusive, Some(Mechanism::NoControl)));
    }

    #[test]
    fn no_route_on_the_probe_is_offline_not_blocked() {
        let v = classify(&[connect(Vantage::Probe, Some(Failure::NetworkUnreachable)), connect(Vantage::Helper, None)]);
        assert_eq!((v.status, v.mechanism), (Status::Inconclusive, Some(Mechanism::NetworkOffline)));
    }
}
