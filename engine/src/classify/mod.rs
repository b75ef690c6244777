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
pub mod vpn;

use vantage_measurement::{Mechanism, Observation, Status, TestKind, Trials, Verdict};

/// Decide the verdict of one measurement from all its observations (probe, helper, controls).
pub fn classify(test: TestKind, observations: &[Observation], bogons: &bogon::BogonPolicy) -> Verdict {
    match test {
        TestKind::Dns => dns::classify(observations, bogons),
        TestKind::Tcp => tcp::classify(observations),
        TestKind::Tls => tls::classify(observations),
        TestKind::Quic => quic::classify(observations),
        TestKind::Openvpn | TestKind::Wireguard | TestKind::Ikev2 | TestKind::Tor => vpn::classify(test, observations),
    }
}

/// Sum up repeated trials of one test. Censors that block only some flows are caught by any
/// blocked trial; the verdict then says in how many of how many. Without a blocked trial, one
/// reachable trial makes the target reachable; otherwise the first trial's verdict stands.
pub fn combine_trials(verdicts: Vec<Verdict>) -> Verdict {
    let total = u32::try_from(verdicts.len()).unwrap_or(u32::MAX);
    let blocked = u32::try_from(verdicts.iter().filter(|v| v.status == Status::Blocked).count()).unwrap_or(u32::MAX);
    let pick = verdicts
        .iter()
        .position(|v| v.status == Status::Blocked)
        .or_else(|| verdicts.iter().position(|v| v.status == Status::Ok))
        .unwrap_or(0);
    let Some(mut verdict) = verdicts.into_iter().nth(pick) else {
        return Verdict::new(Status::Inconclusive, Mechanism::Other, vec!["no trial ran".into()]);
    };
    if total > 1 {
        verdict.evidence.push(format!("blocked in {blocked} of {total} trials"));
        verdict.trials = Some(Trials { blocked, total });
        // One lone timeout among several trials is what packet loss looks like; a censor that
        // drops does so again. Resets and forged certificates are not loss, so one suffices.
        if blocked == 1 && verdict.mechanism.is_some_and(is_silence) {
            verdict.status = Status::Inconclusive;
            verdict.evidence.push("a single timeout in several trials can be packet loss".into());
        }
    }
    verdict
}

/// Mechanisms whose only evidence is silence.
fn is_silence(m: Mechanism) -> bool {
    matches!(m, Mechanism::TcpTimeout | Mechanism::TlsTimeoutSni | Mechanism::QuicSniBlocked | Mechanism::UdpBlocked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(status: Status) -> Verdict {
        match status {
            Status::Ok => Verdict::ok(),
            s => Verdict::new(s, Mechanism::TlsResetAfterClientHello, Vec::new()),
        }
    }

    #[test]
    fn one_blocked_trial_in_three_is_blocked_and_counted() {
        let combined = combine_trials(vec![v(Status::Ok), v(Status::Blocked), v(Status::Ok)]);
        assert_eq!(combined.status, Status::Blocked);
        assert_eq!(combined.trials, Some(Trials { blocked: 1, total: 3 }));
        assert!(combined.evidence.iter().any(|e| e == "blocked in 1 of 3 trials"));
    }

    #[test]
    fn one_lone_timeout_among_trials_is_not_enough() {
        let timeout = Verdict::new(Status::Blocked, Mechanism::TcpTimeout, Vec::new());
        let lone = combine_trials(vec![Verdict::ok(), timeout.clone(), Verdict::ok()]);
        assert_eq!((lone.status, lone.mechanism), (Status::Inconclusive, Some(Mechanism::TcpTimeout)));
        let repeated = combine_trials(vec![timeout.clone(), Verdict::ok(), timeout]);
        assert_eq!(repeated.status, Status::Blocked);
    }

    #[test]
    fn a_reachable_trial_beats_inconclusive_ones() {
        let combined = combine_trials(vec![v(Status::Inconclusive), v(Status::Ok)]);
        assert_eq!((combined.status, combined.trials), (Status::Ok, Some(Trials { blocked: 0, total: 2 })));
    }

    #[test]
    fn a_single_trial_is_reported_as_is() {
        assert_eq!(combine_trials(vec![v(Status::Down)]).trials, None);
    }
}
