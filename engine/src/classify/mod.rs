//! The classifier: a pure function from observations to a verdict.
//!
//! No I/O, no clock. Each test has its own file of rules; `classify` dispatches, and [`verdict`]
//! is the one place a measurement's verdict is decided: every trial classified (an IPv6 trial on a
//! network without IPv6 first, [`family`]), the trials
//! combined, and a block that an earlier trigger's residual penalty explains marked as such (the
//! scheduler only says which penalty is live; it never rewrites a verdict). Every rule is tested
//! with table tests named after the scenario it recognises.

pub mod bogon;
pub mod dns;
pub mod ech;
pub mod edns;
mod evidence;
pub mod family;
pub mod localise;
pub mod obfs4;
pub mod quic;
pub mod tcp;
#[cfg(test)]
pub(crate) mod testing;
pub mod throttle;
pub mod tls;
pub mod vpn;

use vantage_measurement::{Failure, Mechanism, Observation, Role, Status, TestKind, Trials, Vantage, Verdict};

/// A residual penalty that may explain a failure: earlier in this run, a measurement triggered a
/// block on the same server, and censors keep blocking the (client, server, port) tuple, or the
/// whole server, for 90-180 s after a trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResidualTaint {
    /// The triggering measurement, as `<target> <test>`.
    pub trigger: String,
    /// Whether the trigger was on this very port (3-tuple) or another port of the server (2-tuple).
    pub same_port: bool,
    /// Seconds since the trigger.
    pub seconds_ago: u64,
}

/// The verdict of one endpoint measurement: each trial's probe steps classified with the helper's,
/// the trials combined, then a block inside a live residual penalty marked `residual.suspected`.
pub fn verdict(
    test: TestKind,
    trials: &[Vec<Observation>],
    helper: &[Observation],
    bogons: &bogon::BogonPolicy,
    taint: Option<&ResidualTaint>,
) -> Verdict {
    let judged = trials
        .iter()
        .map(|trial| {
            let verdict =
                family::no_ipv6(trial, helper).unwrap_or_else(|| classify(test, &[trial.as_slice(), helper].concat(), bogons));
            let silent = is_silent(&verdict, trial);
            (verdict, silent)
        })
        .collect();
    let verdict = combine(judged);
    match taint {
        Some(taint) if verdict.status == Status::Blocked => residual_suspected(verdict, taint),
        _ => verdict,
    }
}

fn residual_suspected(mut verdict: Verdict, taint: &ResidualTaint) -> Verdict {
    let original = verdict.mechanism.map_or("other", Mechanism::as_str);
    let tuple = if taint.same_port { "(client, server, port) tuple" } else { "whole server (another port)" };
    verdict.status = Status::Inconclusive;
    verdict.mechanism = Some(Mechanism::ResidualSuspected);
    verdict.evidence.push(format!(
        "looked like {original}, but {} was blocked on the same server {}s earlier; censors keep blocking the {tuple} \
         for 90-180 s after a trigger, which alone explains this",
        taint.trigger, taint.seconds_ago
    ));
    verdict
}

/// Only blocks triggered by what a flow *said* (a name, content) start a residual penalty; a bare
/// SYN or datagram to a blocked address can't, so IP blocks don't taint the server.
pub fn triggers_residual(mechanism: Mechanism) -> bool {
    matches!(
        mechanism,
        Mechanism::TlsResetAfterClientHello
            | Mechanism::TlsTimeoutSni
            | Mechanism::TlsEofAfterClientHello
            | Mechanism::TlsAlertSni
            | Mechanism::TlsDataStall
            | Mechanism::TlsEchBlocked
            | Mechanism::QuicSniBlocked
            | Mechanism::DotBadAnswer
            | Mechanism::DohBadAnswer
    )
}

/// Decide the verdict of one set of observations (probe, helper, controls) of one trial.
pub fn classify(test: TestKind, observations: &[Observation], bogons: &bogon::BogonPolicy) -> Verdict {
    match test {
        TestKind::Dns => dns::classify(observations, bogons),
        TestKind::Tcp => tcp::classify(observations),
        TestKind::Tls => tls::classify(observations),
        TestKind::Quic => quic::classify(observations),
        TestKind::Openvpn | TestKind::Wireguard | TestKind::Ikev2 | TestKind::Tor => vpn::classify(test, observations),
        TestKind::Ech => ech::classify(observations),
        TestKind::Dot | TestKind::Doh => edns::classify(test, observations),
        TestKind::Obfs4 => obfs4::classify(observations),
        TestKind::Throttle => throttle::classify(observations),
    }
}

/// Sum up repeated trials of one test. Censors that block only some flows are caught by any
/// blocked trial; the verdict then says in how many of how many. Without a blocked trial, one
/// reachable trial makes the target reachable; otherwise the first trial's verdict stands.
pub fn combine_trials(verdicts: Vec<Verdict>) -> Verdict {
    combine(
        verdicts
            .into_iter()
            .map(|v| {
                let silent = v.mechanism.is_some_and(is_silence);
                (v, silent)
            })
            .collect(),
    )
}

/// [`combine_trials`] with each verdict's silence known (see [`is_silent`]).
fn combine(mut judged: Vec<(Verdict, bool)>) -> Verdict {
    let total = u32::try_from(judged.len()).unwrap_or(u32::MAX);
    let blocked = u32::try_from(judged.iter().filter(|(v, _)| v.status == Status::Blocked).count()).unwrap_or(u32::MAX);
    let pick = judged
        .iter()
        .position(|(v, _)| v.status == Status::Blocked)
        .or_else(|| judged.iter().position(|(v, _)| v.status == Status::Ok))
        .unwrap_or(0);
    if pick >= judged.len() {
        return Verdict::new(Status::Inconclusive, Mechanism::Other, vec!["no trial ran".into()]);
    }
    let (mut verdict, silent) = judged.swap_remove(pick);
    if total > 1 {
        verdict.evidence.push(format!("blocked in {blocked} of {total} trials"));
        verdict.trials = Some(Trials { blocked, total });
        // One lone timeout among several trials is what packet loss looks like; a censor that
        // drops does so again. Resets and forged certificates are not loss, so one suffices.
        if blocked == 1 && silent {
            verdict.status = Status::Inconclusive;
            verdict.evidence.push("a single timeout in several trials can be packet loss".into());
        }
    }
    verdict
}

/// Mechanisms whose only evidence is silence (what packet loss looks like too).
pub fn is_silence(m: Mechanism) -> bool {
    matches!(m, Mechanism::TcpTimeout | Mechanism::TlsTimeoutSni | Mechanism::QuicSniBlocked | Mechanism::UdpBlocked)
}

/// Whether a blocked trial rests on silence: a silent mechanism, or one whose probe target step
/// timed out (`tls.ech_blocked`, `dot.bad_answer`, `obfs4.data_cut`, … name what was blocked,
/// but a timeout under them is what one lost handshake looks like too).
fn is_silent(verdict: &Verdict, trial: &[Observation]) -> bool {
    verdict.status == Status::Blocked
        && (verdict.mechanism.is_some_and(is_silence)
            || trial.iter().any(|o| {
                o.vantage == Vantage::Probe && o.role == Role::Target && o.failure == Some(Failure::GenericTimeoutError)
            }))
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
    fn one_lone_timeout_under_a_named_mechanism_is_not_enough_either() {
        use crate::classify::testing::step;
        use vantage_measurement::Operation;
        // One GREASE handshake in three timed out: what one lost packet looks like.
        let timed_out = vec![step(Vantage::Probe, Role::Target, Operation::TlsHandshake, Some(Failure::GenericTimeoutError))];
        let reset = vec![step(Vantage::Probe, Role::Target, Operation::TlsHandshake, Some(Failure::ConnectionReset))];
        let ech = Verdict::new(Status::Blocked, Mechanism::TlsEchBlocked, Vec::new());
        let judge = |trial: &[Observation]| (ech.clone(), is_silent(&ech, trial));
        let lone = combine(vec![(Verdict::ok(), false), judge(&timed_out), (Verdict::ok(), false)]);
        assert_eq!((lone.status, lone.mechanism), (Status::Inconclusive, Some(Mechanism::TlsEchBlocked)));
        // A reset is no loss: one suffices.
        let once = combine(vec![(Verdict::ok(), false), judge(&reset), (Verdict::ok(), false)]);
        assert_eq!(once.status, Status::Blocked);
    }

    #[test]
    fn a_reachable_trial_beats_inconclusive_ones() {
        let combined = combine_trials(vec![v(Status::Inconclusive), v(Status::Ok)]);
        assert_eq!((combined.status, combined.trials), (Status::Ok, Some(Trials { blocked: 0, total: 2 })));
    }

    #[test]
    fn a_block_inside_a_live_penalty_is_residual_suspected_and_says_why() {
        let taint = ResidualTaint { trigger: "a tls".into(), same_port: true, seconds_ago: 4 };
        let blocked = residual_suspected(Verdict::new(Status::Blocked, Mechanism::TcpRefused, Vec::new()), &taint);
        assert_eq!((blocked.status, blocked.mechanism), (Status::Inconclusive, Some(Mechanism::ResidualSuspected)));
        let said = &blocked.evidence[0];
        assert!(said.contains("looked like tcp.refused") && said.contains("a tls") && said.contains("(client, server, port)"));
        let other_port = ResidualTaint { same_port: false, ..taint };
        assert!(
            residual_suspected(Verdict::new(Status::Blocked, Mechanism::TcpTimeout, Vec::new()), &other_port).evidence[0]
                .contains("whole server")
        );
    }

    #[test]
    fn only_content_triggered_blocks_start_a_penalty() {
        assert!(triggers_residual(Mechanism::TlsResetAfterClientHello));
        assert!(triggers_residual(Mechanism::QuicSniBlocked));
        assert!(triggers_residual(Mechanism::TlsEchBlocked));
        assert!(triggers_residual(Mechanism::DotBadAnswer), "a flow cut after the resolver's SNI");
        assert!(!triggers_residual(Mechanism::TcpTimeout));
        assert!(!triggers_residual(Mechanism::UdpBlocked));
    }

    #[test]
    fn a_single_trial_is_reported_as_is() {
        assert_eq!(combine_trials(vec![v(Status::Down)]).trials, None);
    }
}
