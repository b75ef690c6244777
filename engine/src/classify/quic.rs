//! QUIC rules: like TLS, but censors can only drop UDP, so the question is *what* was dropped:
//! the Initial carrying the target SNI (`quic.sni_blocked`, the control SNI completed) or all
//! UDP to the endpoint (`udp.blocked`, nothing completes here while the helper completes). With
//! a UDP echo baseline on the same address, a QUIC failure for every SNI while the echo comes
//! back is QUIC filtering (`quic.blocked`).

use vantage_measurement::{Mechanism, Observation, Operation, Status, Verdict};

use super::evidence::Steps;
use super::tls::handshake_verdict;

/// Classify a QUIC measurement.
pub fn classify(observations: &[Observation]) -> Verdict {
    let steps = Steps(observations);
    match steps.probe_target(Operation::QuicHandshake) {
        Some(target) => handshake_verdict(&steps, Operation::QuicHandshake, target),
        None => Verdict::new(Status::Inconclusive, Mechanism::Other, vec!["no handshake step recorded".into()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::testing::quic_step;
    use vantage_measurement::{Failure, Role, Vantage};

    const TIMEOUT: Option<Failure> = Some(Failure::GenericTimeoutError);

    fn scenario(target: Option<Failure>, control: Option<Failure>, helper: Option<Option<Failure>>) -> Verdict {
        let mut obs = vec![quic_step(Vantage::Probe, Role::Control, control), quic_step(Vantage::Probe, Role::Target, target)];
        if let Some(h) = helper {
            obs.push(quic_step(Vantage::Helper, Role::Target, h));
        }
        classify(&obs)
    }

    #[test]
    fn clean_quic_is_ok() {
        assert_eq!(scenario(None, None, Some(None)).status, Status::Ok);
    }

    #[test]
    fn initial_dropped_for_the_target_sni_only() {
        let v = scenario(TIMEOUT, None, Some(None));
        assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::QuicSniBlocked)));
    }

    #[test]
    fn all_udp_to_the_endpoint_dropped() {
        let v = scenario(TIMEOUT, TIMEOUT, Some(None));
        assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::UdpBlocked)));
    }

    #[test]
    fn quic_filtered_while_udp_is_echoed() {
        let mut echo = crate::classify::testing::step(Vantage::Probe, Role::Control, Operation::Data, None);
        let mut obs = vec![
            echo.clone(),
            quic_step(Vantage::Probe, Role::Control, TIMEOUT),
            quic_step(Vantage::Probe, Role::Target, TIMEOUT),
        ];
        obs.push(quic_step(Vantage::Helper, Role::Target, None));
        let v = classify(&obs);
        assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::QuicBlocked)));
        echo.failure = TIMEOUT;
        obs[0] = echo;
        assert_eq!(classify(&obs).mechanism, Some(Mechanism::UdpBlocked));
    }

    #[test]
    fn quic_server_down_for_everyone() {
        let v = scenario(TIMEOUT, TIMEOUT, Some(TIMEOUT));
        assert_eq!((v.status, v.mechanism), (Status::Down, Some(Mechanism::ControlFailed)));
    }

    #[test]
    fn all_silent_without_helper_is_inconclusive() {
        let v = scenario(TIMEOUT, TIMEOUT, None);
        assert_eq!((v.status, v.mechanism), (Status::Inconclusive, Some(Mechanism::NoControl)));
    }
}
