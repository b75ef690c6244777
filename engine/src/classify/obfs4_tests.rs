//! Scenario table for the obfs4 rules: each row is a story a lab run (or a real network) tells.

use super::*;
use crate::classify::testing::step;
use vantage_measurement::{Role, Vantage, VpnStage};

const TIMEOUT: Option<Failure> = Some(Failure::GenericTimeoutError);
const FORGED: Option<Failure> = Some(Failure::ProtocolMismatch);

fn vpn(vantage: Vantage, role: Role, op: Operation, protocol: VpnProtocol, failure: Option<Failure>) -> Observation {
    let mut o = step(vantage, role, op, failure);
    o.detail = Some(Detail::Vpn(VpnDetail {
        protocol,
        stage_reached: if failure.is_none() { VpnStage::Data } else { VpnStage::Sent },
        packets_sent: 47,
        bytes_sent: Some(66_608),
        ..VpnDetail::default()
    }));
    o
}

/// (handshake, data phase, low-entropy control, helper): `None` where the step did not run.
struct Story {
    name: &'static str,
    handshake: Option<Failure>,
    data: Option<Option<Failure>>,
    control: Option<Option<Failure>>,
    helper: Option<Option<Failure>>,
    want: (Status, Option<Mechanism>),
}

fn run(s: &Story) -> Verdict {
    let mut obs = vec![step(Vantage::Probe, Role::Target, Operation::Connect, None)];
    if let Some(c) = s.control {
        obs.push(vpn(Vantage::Probe, Role::Control, Operation::Data, VpnProtocol::LowEntropy, c));
    }
    obs.push(vpn(Vantage::Probe, Role::Target, Operation::VpnHandshake, VpnProtocol::Obfs4, s.handshake));
    if let Some(d) = s.data {
        obs.push(vpn(Vantage::Probe, Role::Target, Operation::Data, VpnProtocol::Obfs4, d));
    }
    if let Some(h) = s.helper {
        obs.push(vpn(Vantage::Helper, Role::Target, Operation::VpnHandshake, VpnProtocol::Obfs4, h));
    }
    classify(&obs)
}

#[test]
fn scenarios() {
    use Mechanism as M;
    use Status as S;
    let ok = Some(None);
    let lost = Some(TIMEOUT);
    let table = [
        Story { name: "clean", handshake: None, data: ok, control: ok, helper: ok, want: (S::Ok, None) },
        Story { name: "slow link, no controls", handshake: None, data: ok, control: None, helper: None, want: (S::Ok, None) },
        Story {
            name: "entropy cut after N bytes",
            handshake: None,
            data: lost,
            control: ok,
            helper: ok,
            want: (S::Blocked, Some(M::Obfs4DataCut)),
        },
        Story {
            name: "every long flow cut",
            handshake: None,
            data: lost,
            control: lost,
            helper: ok,
            want: (S::Blocked, Some(M::VpnDataStall)),
        },
        Story {
            name: "cut, no control",
            handshake: None,
            data: lost,
            control: None,
            helper: ok,
            want: (S::Inconclusive, Some(M::Obfs4DataCut)),
        },
        Story {
            name: "handshake dropped",
            handshake: TIMEOUT,
            data: None,
            control: ok,
            helper: ok,
            want: (S::Blocked, Some(M::Obfs4HandshakeBlocked)),
        },
        Story {
            name: "handshake dropped, no echo",
            handshake: TIMEOUT,
            data: None,
            control: None,
            helper: ok,
            want: (S::Blocked, Some(M::Obfs4HandshakeBlocked)),
        },
        Story {
            name: "port dropped",
            handshake: TIMEOUT,
            data: None,
            control: lost,
            helper: ok,
            want: (S::Blocked, Some(M::VpnPortBlocked)),
        },
        Story {
            name: "forged answer",
            handshake: FORGED,
            data: None,
            control: ok,
            helper: ok,
            want: (S::Blocked, Some(M::VpnForgedReply)),
        },
        Story {
            name: "bridge down",
            handshake: TIMEOUT,
            data: None,
            control: ok,
            helper: Some(TIMEOUT),
            want: (S::Down, Some(M::ControlFailed)),
        },
        Story {
            name: "no helper",
            handshake: TIMEOUT,
            data: None,
            control: ok,
            helper: None,
            want: (S::Inconclusive, Some(M::NoControl)),
        },
    ];
    for s in &table {
        let v = run(s);
        assert_eq!((v.status, v.mechanism), s.want, "{}: {:?}", s.name, v.evidence);
        assert!(!v.evidence.is_empty(), "{}", s.name);
    }
}

#[test]
fn a_refused_connect_is_judged_as_tcp() {
    let obs = [
        step(Vantage::Probe, Role::Target, Operation::Connect, Some(Failure::ConnectionRefused)),
        step(Vantage::Helper, Role::Target, Operation::Connect, None),
    ];
    let v = classify(&obs);
    assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::TcpRefused)), "{:?}", v.evidence);
}

#[test]
fn a_clock_far_off_the_helpers_makes_a_failed_handshake_inconclusive() {
    let blocked =
        || Verdict::new(Status::Blocked, Mechanism::Obfs4HandshakeBlocked, vec!["probe obfs4 handshake: eof_error".into()]);
    let hour = 3600;
    let table = [
        ("clock right", Some(2), Status::Blocked),
        ("no helper answer, offset unknown", None, Status::Blocked),
        ("20 min off: the bridge accepts it", Some(-20 * 60), Status::Blocked),
        ("three hours behind", Some(3 * hour), Status::Inconclusive),
        ("two hours ahead", Some(-2 * hour), Status::Inconclusive),
    ];
    for (name, offset, status) in table {
        let v = clock_checked(blocked(), offset);
        assert_eq!((v.status, v.mechanism), (status, Some(Mechanism::Obfs4HandshakeBlocked)), "{name}");
        assert_eq!(v.evidence.len(), if status == Status::Inconclusive { 2 } else { 1 }, "{name}");
    }
    assert!(clock_checked(blocked(), Some(3 * hour)).evidence[1].contains("180 min behind the helper's"));
    // A cut after a completed handshake is not the clock's doing.
    let cut = Verdict::new(Status::Blocked, Mechanism::Obfs4DataCut, Vec::new());
    assert_eq!(clock_checked(cut, Some(3 * hour)).status, Status::Blocked);
}
