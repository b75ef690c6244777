//! Scenario table for the VPN rules: each row is a story a lab scenario (or a real network) tells.

use super::*;
use crate::classify::testing::step;
use vantage_measurement::{VpnDetail, VpnProtocol, VpnStage};

const TIMEOUT: Option<Failure> = Some(Failure::GenericTimeoutError);

fn vpn(
    vantage: Vantage,
    role: Role,
    op: Operation,
    protocol: VpnProtocol,
    failure: Option<Failure>,
    received: u32,
) -> Observation {
    let mut o = step(vantage, role, op, failure);
    o.detail = Some(Detail::Vpn(VpnDetail {
        protocol,
        stage_reached: if failure.is_none() { VpnStage::Handshake } else { VpnStage::Sent },
        packets_sent: 5,
        packets_received: received,
        ..VpnDetail::default()
    }));
    o
}

/// (probe handshake, random control, helper, data phase)
#[derive(Clone, Copy)]
struct Story {
    probe: Option<Failure>,
    random: Option<Option<Failure>>,
    helper: Option<Option<Failure>>,
    data: Option<(Option<Failure>, u32)>,
}

const CLEAN: Story = Story { probe: None, random: Some(None), helper: Some(None), data: Some((None, 5)) };

fn run(test: TestKind, s: Story) -> Verdict {
    let protocol = VpnProtocol::parse(test.as_str()).expect("a VPN test");
    let mut obs = Vec::new();
    if let Some(r) = s.random {
        obs.push(vpn(Vantage::Probe, Role::Control, Operation::Data, VpnProtocol::Random, r, u32::from(r.is_none())));
    }
    obs.push(vpn(Vantage::Probe, Role::Target, Operation::VpnHandshake, protocol, s.probe, 0));
    if let Some((f, received)) = s.data {
        obs.push(vpn(Vantage::Probe, Role::Target, Operation::Data, protocol, f, received));
    }
    if let Some(h) = s.helper {
        obs.push(vpn(Vantage::Helper, Role::Target, Operation::VpnHandshake, protocol, h, 1));
    }
    classify(test, &obs)
}

fn expect(test: TestKind, s: Story, status: Status, mechanism: Option<Mechanism>) {
    let v = run(test, s);
    assert_eq!((v.status, v.mechanism), (status, mechanism), "{test:?}: {:?}", v.evidence);
}

#[test]
fn clean_network_every_protocol_ok() {
    for test in [TestKind::Openvpn, TestKind::Wireguard, TestKind::Ikev2] {
        expect(test, CLEAN, Status::Ok, None);
        expect(test, Story { random: None, helper: None, data: None, ..CLEAN }, Status::Ok, None);
    }
}

#[test]
fn opcode_fingerprint_drop_while_random_bytes_pass() {
    let s = Story { probe: TIMEOUT, data: None, ..CLEAN };
    expect(TestKind::Openvpn, s, Status::Blocked, Some(Mechanism::VpnFingerprintBlocked));
    expect(TestKind::Wireguard, s, Status::Blocked, Some(Mechanism::VpnFingerprintBlocked));
}

#[test]
fn udp_port_blocked_loses_the_random_bytes_too() {
    let s = Story { probe: TIMEOUT, random: Some(TIMEOUT), data: None, ..CLEAN };
    expect(TestKind::Ikev2, s, Status::Blocked, Some(Mechanism::VpnPortBlocked));
}

#[test]
fn without_the_random_control_the_protocol_rule_names_the_silence() {
    let s = Story { probe: TIMEOUT, random: None, data: None, ..CLEAN };
    expect(TestKind::Openvpn, s, Status::Blocked, Some(Mechanism::VpnOpenvpnNoResetReply));
    expect(TestKind::Wireguard, s, Status::Blocked, Some(Mechanism::VpnWireguardNoHandshakeResponse));
    expect(TestKind::Ikev2, s, Status::Blocked, Some(Mechanism::VpnIkev2NoReply));
}

#[test]
fn server_stopped_is_down_never_blocked() {
    for probe in [TIMEOUT, Some(Failure::ConnectionRefused)] {
        let s = Story { probe, random: Some(None), helper: Some(probe), data: None };
        expect(TestKind::Openvpn, s, Status::Down, Some(Mechanism::ControlFailed));
    }
}

#[test]
fn no_helper_means_no_conclusion() {
    let s = Story { probe: TIMEOUT, helper: None, data: None, ..CLEAN };
    expect(TestKind::Wireguard, s, Status::Inconclusive, Some(Mechanism::NoControl));
}

#[test]
fn handshake_passes_then_the_flow_is_killed() {
    let s = Story { data: Some((TIMEOUT, 2)), ..CLEAN };
    expect(TestKind::Wireguard, s, Status::Blocked, Some(Mechanism::VpnDataStall));
    let dead_tunnel = Story { data: Some((TIMEOUT, 0)), ..CLEAN };
    expect(TestKind::Wireguard, dead_tunnel, Status::Inconclusive, Some(Mechanism::VpnDataStall));
}

#[test]
fn a_reply_that_fails_authentication_while_the_helper_is_answered_is_forged() {
    let s = Story { probe: Some(Failure::ProtocolMismatch), data: None, ..CLEAN };
    expect(TestKind::Openvpn, s, Status::Blocked, Some(Mechanism::VpnForgedReply));
}

#[test]
fn tcp_transport_failures_are_judged_as_tcp() {
    let obs = vec![
        step(Vantage::Probe, Role::Target, Operation::Connect, Some(Failure::ConnectionRefused)),
        step(Vantage::Helper, Role::Target, Operation::Connect, None),
    ];
    let v = classify(TestKind::Openvpn, &obs);
    assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::TcpRefused)));
}

#[test]
fn tor_handshake_and_link_blocks() {
    let tls = |vantage, failure| step(vantage, Role::Target, Operation::TlsHandshake, failure);
    let link = |vantage, failure, received| vpn(vantage, Role::Target, Operation::Data, VpnProtocol::Tor, failure, received);
    let v = classify(TestKind::Tor, &[tls(Vantage::Probe, Some(Failure::ConnectionReset)), tls(Vantage::Helper, None)]);
    assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::TorHandshakeBlocked)));
    let v = classify(
        TestKind::Tor,
        &[
            tls(Vantage::Probe, None),
            link(Vantage::Probe, TIMEOUT, 0),
            tls(Vantage::Helper, None),
            link(Vantage::Helper, None, 1),
        ],
    );
    assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::TorLinkBlocked)));
    let v = classify(TestKind::Tor, &[tls(Vantage::Probe, None), link(Vantage::Probe, None, 1)]);
    assert_eq!(v.status, Status::Ok);
    let v = classify(TestKind::Tor, &[tls(Vantage::Probe, TIMEOUT), tls(Vantage::Helper, TIMEOUT)]);
    assert_eq!(v.status, Status::Down);
}
