//! IPv6 rules: a network without IPv6 is not a censor.
//!
//! A dual-stack target is measured on each family separately, so its IPv6 measurement can fail
//! for a reason that has nothing to do with the target: the probe's network has no IPv6 at all
//! (no global address, no default route: most volunteers' networks in much of the world). Linux
//! then refuses the connect at once, before a packet leaves, with `ENETUNREACH` (no route) or
//! `EADDRNOTAVAIL` (no source address). When every probe step of an IPv6 trial failed like that,
//! the trial is `inconclusive network.no_ipv6`, never `blocked`, whatever the helper saw; the
//! IPv4 measurement of the same target stands on its own. A censor that blocks only IPv6 is a
//! different picture: the probe's steps leave and are dropped, reset or refused on the way, and
//! the usual rules name the mechanism on the IPv6 measurement while the IPv4 one is `ok`.

use vantage_measurement::{Failure, Family, Mechanism, Observation, Operation, Status, Vantage, Verdict};

use super::evidence::describe;

/// `Some(inconclusive network.no_ipv6)` when `trial` (the probe's steps of one trial) went to an
/// IPv6 address and every one of them failed locally for want of IPv6; `helper` is the helper's
/// view, quoted as evidence. `None`: the usual rules decide.
pub fn no_ipv6(trial: &[Observation], helper: &[Observation]) -> Option<Verdict> {
    // Steps to an IPv4 address (a VPN test's echo control) say nothing about this network's IPv6.
    let to_ipv4 = |o: &Observation| o.peer.is_some_and(|p| Family::of(p.ip()) == Family::Ipv4);
    let probe: Vec<&Observation> =
        trial.iter().filter(|o| o.vantage == Vantage::Probe && o.op != Operation::Resolve && !to_ipv4(o)).collect();
    let ipv6 = probe.iter().filter_map(|o| o.peer).any(|peer| Family::of(peer.ip()) == Family::Ipv6);
    let local = !probe.is_empty() && probe.iter().all(|o| o.failure.is_some_and(Failure::is_local_network_failure));
    if !(ipv6 && local) {
        return None;
    }
    let mut evidence: Vec<String> = probe.iter().map(|o| describe(&format!("probe {}", o.role.as_str()), o)).collect();
    evidence.push("the probe's network has no IPv6 (no route or no address): refused before any packet left".into());
    match helper.iter().rev().find(|o| o.op != Operation::Resolve) {
        Some(h) => evidence.push(describe("helper (IPv6)", h)),
        None => evidence.push("no helper control".into()),
    }
    Some(Verdict::new(Status::Inconclusive, Mechanism::NetworkNoIpv6, evidence))
}

/// Whether an IPv6 verdict is one that broken IPv6 upstream would also produce: a block at the
/// address level (nothing got through to the address, control SNI included), where a second IPv6
/// destination tells the two apart. Content-level blocks prove the IPv6 path works.
pub fn needs_ipv6_control(verdict: &Verdict) -> bool {
    verdict.status == Status::Blocked
        && matches!(verdict.mechanism, Some(Mechanism::TcpTimeout | Mechanism::TcpUnreachable | Mechanism::UdpBlocked))
}

/// The verdict once the IPv6 control (`control`: a TCP connect to another IPv6 destination) is
/// known: if it failed too, this network's IPv6 is broken, which is `inconclusive
/// network.no_ipv6`; if it connected, the block stands.
pub fn broken_ipv6(mut verdict: Verdict, control: &Observation) -> Verdict {
    let said = describe("IPv6 control connect", control);
    if control.succeeded() {
        verdict.evidence.push(format!("{said}: this network's IPv6 works"));
        return verdict;
    }
    let original = verdict.mechanism.map_or("other", Mechanism::as_str);
    verdict.status = Status::Inconclusive;
    verdict.mechanism = Some(Mechanism::NetworkNoIpv6);
    verdict
        .evidence
        .push(format!("looked like {original}, but {said} too: this network's IPv6 is broken, not this address blocked"));
    verdict
}

/// How recently another IPv6 destination must have answered this probe for an IPv6 address-level
/// block to stand without an IPv6 control: long enough to span a daemon's cycles, short enough
/// that a network change (a laptop moved) is not carried over for long.
pub const IPV6_ANSWER_FRESH: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// The verdict of an IPv6 address-level block when no IPv6 control is configured: it stands only
/// if another IPv6 destination answered this probe `answered_ago` (within [`IPV6_ANSWER_FRESH`]);
/// otherwise broken IPv6 upstream would look exactly the same, and a volunteer's broken IPv6 must
/// not read as every dual-stack target blocked: `inconclusive network.no_ipv6`.
pub fn unproven_ipv6(mut verdict: Verdict, answered_ago: Option<std::time::Duration>) -> Verdict {
    if let Some(ago) = answered_ago.filter(|ago| *ago <= IPV6_ANSWER_FRESH) {
        verdict.evidence.push(format!("another IPv6 destination answered {}s ago: this network's IPv6 works", ago.as_secs()));
        return verdict;
    }
    let original = verdict.mechanism.map_or("other", Mechanism::as_str);
    verdict.status = Status::Inconclusive;
    verdict.mechanism = Some(Mechanism::NetworkNoIpv6);
    verdict.evidence.push(format!(
        "looked like {original}, but no IPv6 destination has answered this probe in the last {} minutes and no IPv6 \
         control is set (--ipv6-control): broken IPv6 upstream can't be told from a blocked address",
        IPV6_ANSWER_FRESH.as_secs() / 60
    ));
    verdict
}

/// Whether `observations` show an IPv6 destination answering the probe (a TCP connect, a TLS or
/// QUIC handshake completed: a UDP send proves nothing).
pub fn ipv6_answered(observations: &[Observation]) -> bool {
    observations.iter().any(|o| {
        o.vantage == Vantage::Probe
            && o.failure.is_none()
            && matches!(o.op, Operation::Connect | Operation::TlsHandshake | Operation::QuicHandshake)
            && o.peer.is_some_and(|p| Family::of(p.ip()) == Family::Ipv6)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::testing::step;
    use vantage_measurement::Role;

    fn at(mut o: Observation, peer: &str) -> Observation {
        o.peer = Some(peer.parse().expect("socket address"));
        o
    }

    fn connect(vantage: Vantage, role: Role, failure: Option<Failure>, peer: &str) -> Observation {
        at(step(vantage, role, Operation::Connect, failure), peer)
    }

    const V6: &str = "[2001:db8:113::20]:443";
    const V4: &str = "203.0.113.20:443";

    struct Case {
        name: &'static str,
        probe: Vec<Observation>,
        helper: Vec<Observation>,
        no_ipv6: bool,
    }

    #[test]
    fn scenarios() {
        use Failure::*;
        let cases = [
            Case {
                name: "no IPv6 route on the probe: control and target refused at once",
                probe: vec![
                    connect(Vantage::Probe, Role::Control, Some(NetworkUnreachable), V6),
                    connect(Vantage::Probe, Role::Target, Some(NetworkUnreachable), V6),
                ],
                helper: vec![connect(Vantage::Helper, Role::Target, None, V6)],
                no_ipv6: true,
            },
            Case {
                name: "no IPv6 source address",
                probe: vec![connect(Vantage::Probe, Role::Target, Some(AddressNotAvailable), V6)],
                helper: vec![],
                no_ipv6: true,
            },
            Case {
                name: "IPv6-only drop by a censor: the SYN leaves and times out",
                probe: vec![connect(Vantage::Probe, Role::Target, Some(GenericTimeoutError), V6)],
                helper: vec![connect(Vantage::Helper, Role::Target, None, V6)],
                no_ipv6: false,
            },
            Case {
                name: "IPv6 reset after the ClientHello: the route exists",
                probe: vec![
                    connect(Vantage::Probe, Role::Target, None, V6),
                    at(step(Vantage::Probe, Role::Target, Operation::TlsHandshake, Some(ConnectionReset)), V6),
                ],
                helper: vec![connect(Vantage::Helper, Role::Target, None, V6)],
                no_ipv6: false,
            },
            Case {
                name: "an IPv4 network that is down is network.offline, not this",
                probe: vec![connect(Vantage::Probe, Role::Target, Some(NetworkUnreachable), V4)],
                helper: vec![connect(Vantage::Helper, Role::Target, None, V4)],
                no_ipv6: false,
            },
            Case {
                name: "a VPN test's echo control on IPv4 succeeds beside an IPv6 target refused at once",
                probe: vec![
                    connect(Vantage::Probe, Role::Control, None, "203.0.113.41:7"),
                    connect(Vantage::Probe, Role::Target, Some(NetworkUnreachable), V6),
                ],
                helper: vec![connect(Vantage::Helper, Role::Target, None, V6)],
                no_ipv6: true,
            },
            Case {
                name: "IPv6 works",
                probe: vec![connect(Vantage::Probe, Role::Target, None, V6)],
                helper: vec![connect(Vantage::Helper, Role::Target, None, V6)],
                no_ipv6: false,
            },
        ];
        for case in cases {
            let verdict = no_ipv6(&case.probe, &case.helper);
            assert_eq!(verdict.is_some(), case.no_ipv6, "{}", case.name);
            if let Some(v) = verdict {
                assert_eq!((v.status, v.mechanism), (Status::Inconclusive, Some(Mechanism::NetworkNoIpv6)), "{}", case.name);
                assert!(v.evidence.iter().any(|e| e.contains("no IPv6")), "{}", case.name);
            }
        }
    }

    #[test]
    fn broken_ipv6_upstream_is_told_from_an_ipv6_address_block_by_the_ipv6_control() {
        let drop = Verdict::new(Status::Blocked, Mechanism::TcpTimeout, vec!["probe connect: generic_timeout_error".into()]);
        let control_ok = connect(Vantage::Probe, Role::Control, None, "[2001:db8:113::20]:443");
        let control_lost = connect(Vantage::Probe, Role::Control, Some(Failure::GenericTimeoutError), "[2001:db8:113::20]:443");
        let cases = [
            ("IPv6 address dropped, IPv6 elsewhere fine: blocked", &drop, &control_ok, Status::Blocked, Mechanism::TcpTimeout),
            ("all IPv6 dropped upstream: not blocked", &drop, &control_lost, Status::Inconclusive, Mechanism::NetworkNoIpv6),
        ];
        for (name, verdict, control, status, mechanism) in cases {
            assert!(needs_ipv6_control(verdict), "{name}");
            let v = broken_ipv6(verdict.clone(), control);
            assert_eq!((v.status, v.mechanism), (status, Some(mechanism)), "{name}");
            assert!(v.evidence.iter().any(|e| e.contains("IPv6 control connect")), "{name}");
        }
        let reset = Verdict::new(Status::Blocked, Mechanism::TlsResetAfterClientHello, Vec::new());
        assert!(!needs_ipv6_control(&reset), "a reset after the ClientHello proves the IPv6 path works");
        assert!(!needs_ipv6_control(&Verdict::ok()));
    }

    #[test]
    fn without_an_ipv6_control_an_ipv6_address_block_stands_only_if_ipv6_answered_lately() {
        use std::time::Duration;
        let drop = Verdict::new(Status::Blocked, Mechanism::TcpTimeout, vec!["probe connect: generic_timeout_error".into()]);
        let cases = [
            (
                "another IPv6 destination answered a minute ago",
                Some(Duration::from_secs(60)),
                Status::Blocked,
                Mechanism::TcpTimeout,
            ),
            ("at the edge of the window", Some(IPV6_ANSWER_FRESH), Status::Blocked, Mechanism::TcpTimeout),
            (
                "answered long ago (another network, perhaps)",
                Some(IPV6_ANSWER_FRESH * 2),
                Status::Inconclusive,
                Mechanism::NetworkNoIpv6,
            ),
            ("never answered", None, Status::Inconclusive, Mechanism::NetworkNoIpv6),
        ];
        for (name, ago, status, mechanism) in cases {
            let v = unproven_ipv6(drop.clone(), ago);
            assert_eq!((v.status, v.mechanism), (status, Some(mechanism)), "{name}");
            assert_eq!(v.evidence.len(), 2, "{name}: {:?}", v.evidence);
        }
        // What counts as an answer: a completed connect to an IPv6 peer, not a UDP send or IPv4.
        let v6_connect = connect(Vantage::Probe, Role::Target, None, V6);
        let v6_lost = connect(Vantage::Probe, Role::Target, Some(Failure::GenericTimeoutError), V6);
        let v4_connect = connect(Vantage::Probe, Role::Target, None, V4);
        let helper_v6 = connect(Vantage::Helper, Role::Target, None, V6);
        let udp_send = at(step(Vantage::Probe, Role::Target, Operation::Data, None), V6);
        assert!(ipv6_answered(&[v6_lost.clone(), v6_connect]));
        assert!(!ipv6_answered(&[v6_lost, v4_connect, helper_v6, udp_send]));
    }

    #[test]
    fn the_whole_verdict_of_an_ipv6_trial_without_a_route_is_never_blocked() {
        let trial = vec![
            connect(Vantage::Probe, Role::Control, Some(Failure::NetworkUnreachable), V6),
            connect(Vantage::Probe, Role::Target, Some(Failure::NetworkUnreachable), V6),
        ];
        let helper = vec![connect(Vantage::Helper, Role::Target, None, V6)];
        let policy = crate::classify::bogon::BogonPolicy::allowing::<&str>(&[]).expect("no ranges");
        for test in [vantage_measurement::TestKind::Tcp, vantage_measurement::TestKind::Tls] {
            let v = crate::classify::verdict(test, &[trial.clone(), trial.clone()], &helper, &policy, None);
            assert_eq!((v.status, v.mechanism), (Status::Inconclusive, Some(Mechanism::NetworkNoIpv6)), "{test}");
        }
    }
}
