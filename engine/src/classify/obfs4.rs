//! obfs4 rules: the bridge handshake and the data phase against the low-entropy control and
//! the helper.
//!
//! | probe handshake | data phase (64 KiB) | low-entropy control | helper handshake | verdict |
//! |---|---|---|---|---|
//! | TCP connect fails | – | any | connects | `tcp.*` (as every TCP test) |
//! | ok | ok, or not run | any | any | `ok` |
//! | ok | fails | echoed | any | `blocked` `obfs4.data_cut` |
//! | ok | fails | lost | any | `blocked` `vpn.data_stall` (equal plain text was cut too: a volume cut, not an entropy one) |
//! | ok | fails | not run | any | `inconclusive` `obfs4.data_cut` |
//! | fails | – | any | fails | `down` `control.failed` |
//! | fails | – | any | none | `inconclusive` `control.unavailable` |
//! | bytes that are not the bridge's | – | any | ok | `blocked` `vpn.forged_reply` |
//! | fails | – | echoed, or not run | ok | `blocked` `obfs4.handshake_blocked` |
//! | fails | – | lost | ok | `blocked` `vpn.port_blocked` |
//!
//! The data phase needs no helper: a bridge that completed the handshake with the probe is up,
//! and the helper runs the handshake only. What tells an entropy censor from a flaky path is the
//! control: plain text of the flow's length, to the same port number, passing where the
//! bridge's flow died.

use vantage_measurement::{Detail, Failure, Mechanism, Observation, Operation, Status, Verdict, VpnDetail, VpnProtocol};

use super::evidence::{Steps, describe};
use super::tcp::connect_verdict;

/// Classify an obfs4 measurement.
pub fn classify(observations: &[Observation]) -> Verdict {
    let steps = Steps(observations);
    if let Some(connect) = steps.probe_target(Operation::Connect)
        && connect.failure.is_some()
    {
        return connect_verdict(&steps, connect);
    }
    let Some(target) = steps.probe_target(Operation::VpnHandshake) else {
        return Verdict::new(Status::Inconclusive, Mechanism::Other, vec!["no handshake step recorded".into()]);
    };
    let mut evidence = vec![describe("probe obfs4 handshake", target)];
    let control =
        steps.probe_control(Operation::Data).filter(|o| detail(o).is_some_and(|d| d.protocol == VpnProtocol::LowEntropy));
    if let Some(c) = control {
        let len = detail(c).and_then(|d| d.first_packet_len).unwrap_or(0);
        evidence.push(describe(&format!("low-entropy control, {len} bytes, same port number"), c));
    }
    // A helper that could not even connect vouches as much as one whose handshake failed.
    let helper =
        steps.helper(Operation::VpnHandshake).or_else(|| steps.helper(Operation::Connect).filter(|c| c.failure.is_some()));
    if let Some(h) = helper {
        evidence.push(describe("helper", h));
    }
    match target.failure {
        None => data_verdict(&steps, control, evidence),
        Some(failure) => handshake_verdict(&steps, failure, control, helper, evidence),
    }
}

fn data_verdict(steps: &Steps<'_>, control: Option<&Observation>, mut evidence: Vec<String>) -> Verdict {
    let Some(data) = steps.probe_target(Operation::Data).filter(|d| d.failure.is_some()) else {
        let mut v = Verdict::ok();
        v.evidence = evidence;
        return v;
    };
    evidence.push(describe("probe data", data));
    if let Some(d) = detail(data) {
        let sent = d.bytes_sent.unwrap_or(0);
        evidence.push(format!("data phase: {sent} bytes in {} frames sent, {} frames back", d.packets_sent, d.packets_received));
    }
    match control.map(Observation::succeeded) {
        Some(true) => Verdict::new(Status::Blocked, Mechanism::Obfs4DataCut, evidence),
        Some(false) => {
            evidence.push("plain text of the same length was cut too: a volume cut, not one of high-entropy flows".into());
            Verdict::new(Status::Blocked, Mechanism::VpnDataStall, evidence)
        }
        None => {
            evidence.push("no low-entropy control: a path that drops long flows looks the same".into());
            Verdict::new(Status::Inconclusive, Mechanism::Obfs4DataCut, evidence)
        }
    }
}

fn handshake_verdict(
    steps: &Steps<'_>,
    failure: Failure,
    control: Option<&Observation>,
    helper: Option<&Observation>,
    mut evidence: Vec<String>,
) -> Verdict {
    if steps.probe_offline() {
        return Verdict::new(Status::Inconclusive, Mechanism::NetworkOffline, evidence);
    }
    match helper.map(Observation::succeeded) {
        None => {
            evidence.push("no helper control: cannot tell blocking from a bridge that is down".into());
            return Verdict::new(Status::Inconclusive, Mechanism::NoControl, evidence);
        }
        Some(false) => return Verdict::new(Status::Down, Mechanism::ControlFailed, evidence),
        Some(true) => {}
    }
    if failure == Failure::ProtocolMismatch {
        return Verdict::new(Status::Blocked, Mechanism::VpnForgedReply, evidence);
    }
    let mechanism = match control.map(Observation::succeeded) {
        Some(false) => Mechanism::VpnPortBlocked,
        Some(true) | None => Mechanism::Obfs4HandshakeBlocked,
    };
    Verdict::new(Status::Blocked, mechanism, evidence)
}

/// How far this probe's clock may be from the helper's before a failed obfs4 handshake is no
/// longer evidence of blocking. The client's MAC covers the hour since the epoch and obfs4proxy
/// accepts the hour before and after its own, so an offset under an hour always passes and one of
/// up to two hours may not; 30 minutes leaves room for the helper's own error.
pub const CLOCK_OFFSET_SUSPECT_SECS: i64 = 30 * 60;

/// A blocked obfs4 handshake when this probe's clock is `offset_secs` off the helper's (its HTTP
/// `Date`): past [`CLOCK_OFFSET_SUSPECT_SECS`] the bridge itself may have refused the handshake,
/// so the verdict is `inconclusive` with the offset as evidence. Other verdicts pass unchanged.
pub fn clock_checked(mut verdict: Verdict, offset_secs: Option<i64>) -> Verdict {
    let Some(offset) = offset_secs.filter(|o| o.abs() > CLOCK_OFFSET_SUSPECT_SECS) else { return verdict };
    if verdict.status != Status::Blocked || verdict.mechanism != Some(Mechanism::Obfs4HandshakeBlocked) {
        return verdict;
    }
    verdict.status = Status::Inconclusive;
    let (minutes, direction) = (offset.abs() / 60, if offset > 0 { "behind" } else { "ahead of" });
    verdict.evidence.push(format!(
        "this probe's clock is {minutes} min {direction} the helper's: an obfs4 bridge refuses a handshake from a clock \
         more than an hour off, so the failure may be the clock's"
    ));
    verdict
}

fn detail(o: &Observation) -> Option<&VpnDetail> {
    match &o.detail {
        Some(Detail::Vpn(d)) => Some(d),
        _ => None,
    }
}

#[cfg(test)]
#[path = "obfs4_tests.rs"]
mod tests;
