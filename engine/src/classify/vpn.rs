//! VPN and Tor rules: the protocol's handshake against the random-bytes control and the helper.
//!
//! | probe handshake | random bytes (same port number) | helper handshake | verdict |
//! |---|---|---|---|
//! | ok, data ok or none | any | any | `ok` |
//! | ok, data stalls after some replies | any | any | `blocked` `vpn.data_stall` |
//! | ok, no data reply at all | any | any | `inconclusive` `vpn.data_stall` (a tunnel that answers nobody looks the same) |
//! | fails | any | fails | `down` `control.failed` |
//! | fails | any | none | `inconclusive` `control.unavailable` |
//! | only refused replies | any | ok | `blocked` `vpn.forged_reply` |
//! | fails | echoed | ok | `blocked` `vpn.fingerprint_blocked` |
//! | fails | lost | ok | `blocked` `vpn.port_blocked` |
//! | fails | not run | ok | `blocked` `vpn.<protocol>.no_*` |
//!
//! TCP transports (OpenVPN over TCP, Tor) are first judged as TCP when the connect fails
//! (`tcp.*`). False positives we avoid: a server stopped for everyone (the OONI RiseupVPN lesson)
//! fails at the helper too and is `down`; a lost datagram is retransmitted by the runner before
//! anything is called silence; the random-bytes control never carries the protocol's first bytes.

use vantage_measurement::{
    Detail, Failure, Mechanism, Observation, Operation, Role, Status, TestKind, Vantage, Verdict, VpnDetail, VpnProtocol,
};

use super::evidence::{Steps, describe};
use super::tcp::connect_verdict;

/// Classify a VPN or Tor measurement.
pub fn classify(test: TestKind, observations: &[Observation]) -> Verdict {
    let steps = Steps(observations);
    if let Some(connect) = steps.probe_target(Operation::Connect)
        && connect.failure.is_some()
    {
        return connect_verdict(&steps, connect);
    }
    let op = if test == TestKind::Tor { Operation::TlsHandshake } else { Operation::VpnHandshake };
    let Some(target) = steps.probe_target(op) else {
        return Verdict::new(Status::Inconclusive, Mechanism::Other, vec!["no handshake step recorded".into()]);
    };
    let helper = steps.helper(op);
    let mut evidence = vec![describe(&format!("probe {}", test.as_str()), target)];
    if let Some(d) = vpn_detail(target) {
        evidence.push(format!(
            "stage reached: {}, {} sent, {} received",
            d.stage_reached.as_str(),
            d.packets_sent,
            d.packets_received
        ));
    }
    if let Some(h) = helper {
        evidence.push(describe("helper", h));
    }
    match target.failure {
        None => data_verdict(test, &steps, helper, evidence),
        Some(failure) => failure_verdict(test, &steps, failure, helper, evidence),
    }
}

/// The handshake worked: did the data phase (WireGuard tunnel, Tor VERSIONS) work too?
fn data_verdict(test: TestKind, steps: &Steps<'_>, helper: Option<&Observation>, mut evidence: Vec<String>) -> Verdict {
    let Some(data) = steps.probe_target(Operation::Data).filter(|d| d.failure.is_some()) else {
        let mut v = Verdict::ok();
        v.evidence = evidence;
        return v;
    };
    evidence.push(describe("probe data", data));
    let received = vpn_detail(data).map_or(0, |d| d.packets_received);
    let sent = vpn_detail(data).map_or(0, |d| d.packets_sent);
    evidence.push(format!("data phase: {received} of {sent} packets answered"));
    if test == TestKind::Tor {
        let helper_link = steps.find(Vantage::Helper, Role::Target, Operation::Data);
        return match helper_link.map(Observation::succeeded) {
            Some(true) => Verdict::new(Status::Blocked, Mechanism::TorLinkBlocked, evidence),
            Some(false) => Verdict::new(Status::Down, Mechanism::ControlFailed, evidence),
            None => Verdict::new(Status::Inconclusive, Mechanism::NoControl, evidence),
        };
    }
    if received > 0 {
        // Replies came, then stopped: a flow cut after N packets, not a dead tunnel.
        Verdict::new(Status::Blocked, Mechanism::VpnDataStall, evidence)
    } else {
        let _ = helper;
        evidence.push("no reply through the tunnel at all: a tunnel that answers nobody looks the same".into());
        Verdict::new(Status::Inconclusive, Mechanism::VpnDataStall, evidence)
    }
}

fn failure_verdict(
    test: TestKind,
    steps: &Steps<'_>,
    failure: Failure,
    helper: Option<&Observation>,
    mut evidence: Vec<String>,
) -> Verdict {
    if steps.probe_offline() {
        return Verdict::new(Status::Inconclusive, Mechanism::NetworkOffline, evidence);
    }
    let random =
        steps.probe_control(Operation::Data).filter(|o| vpn_detail(o).is_some_and(|d| d.protocol == VpnProtocol::Random));
    if let Some(r) = random {
        evidence.push(describe("random bytes, same length, same port number", r));
    }
    match helper.map(Observation::succeeded) {
        None => {
            evidence.push("no helper control: cannot tell blocking from an outage".into());
            return Verdict::new(Status::Inconclusive, Mechanism::NoControl, evidence);
        }
        Some(false) => return Verdict::new(Status::Down, Mechanism::ControlFailed, evidence),
        Some(true) => {}
    }
    if test == TestKind::Tor {
        return Verdict::new(Status::Blocked, Mechanism::TorHandshakeBlocked, evidence);
    }
    if failure == Failure::ProtocolMismatch {
        return Verdict::new(Status::Blocked, Mechanism::VpnForgedReply, evidence);
    }
    let mechanism = match random.map(Observation::succeeded) {
        Some(true) => Mechanism::VpnFingerprintBlocked,
        Some(false) => Mechanism::VpnPortBlocked,
        None => match test {
            TestKind::Openvpn => Mechanism::VpnOpenvpnNoResetReply,
            TestKind::Wireguard => Mechanism::VpnWireguardNoHandshakeResponse,
            TestKind::Ikev2 => Mechanism::VpnIkev2NoReply,
            _ => Mechanism::Other,
        },
    };
    Verdict::new(Status::Blocked, mechanism, evidence)
}

fn vpn_detail(o: &Observation) -> Option<&VpnDetail> {
    match &o.detail {
        Some(Detail::Vpn(d)) => Some(d),
        _ => None,
    }
}

#[cfg(test)]
#[path = "vpn_tests.rs"]
mod tests;
