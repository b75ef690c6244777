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
    let probe: Vec<&Observation> = trial.iter().filter(|o| o.vantage == Vantage::Probe && o.op != Operation::Resolve).collect();
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
