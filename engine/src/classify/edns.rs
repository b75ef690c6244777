//! Encrypted-DNS rules (`dot`, `doh`): the TLS rules for the connection, then the query.
//!
//! A DoT or DoH measurement is a TLS measurement to the resolver's address with the resolver's
//! name as SNI, followed by one query. So the connection is judged exactly as the `tls` test
//! judges it, by the same code:
//! - the connect fails (address or port blocked) → `tcp.timeout`, `tcp.reset`, … when the
//!   helper connects; the probe's connect to the *other* encrypted-DNS port of the same address
//!   (443 for DoT, 853 for DoH) then says whether the port or the whole address is blocked, as
//!   evidence;
//! - the handshake with the resolver's name fails while the control SNI to the same address
//!   completes → `tls.reset_after_clienthello`, `tls.timeout_sni`, … (SNI filtering);
//! - both SNIs fail while the helper completes → `tls.handshake_blocked`;
//! - a certificate that does not verify while the helper's does → `tls.mitm_certificate`.
//!
//! Only after a verified handshake does the query count, and it is the one thing no existing
//! mechanism says: `dot.bad_answer` / `doh.bad_answer`, when the probe's query got no DNS reply to
//! it while the helper's query was answered. `blocked` when the flow was cut or went silent after
//! the handshake (a censor that lets the handshake pass and kills the flow, as data-stall censors
//! do); `inconclusive` when something that is not a DNS reply came back over the resolver's own
//! certificate (an HTTP error, a page, a garbled message): no network censor can forge that, so it
//! is the resolver's own policy, or a middlebox holding a certificate the probe trusts.
//!
//! False positives we avoid: a resolver down for everyone fails the helper too → `down`; a
//! resolver that rejects unknown SNIs fails only the control SNI → `ok`; a query the helper's
//! also fails → `down`.

use vantage_measurement::{
    Detail, DnsEngine, Failure, Mechanism, Observation, Operation, Role, Status, TestKind, Vantage, Verdict,
};

use super::evidence::{Steps, describe};

/// Classify a `dot` or `doh` measurement.
pub fn classify(test: TestKind, observations: &[Observation]) -> Verdict {
    let steps = Steps(observations);
    let mut verdict = super::tls::classify(observations);
    if let Some(connect) = steps.probe_target(Operation::Connect).filter(|c| c.failure.is_some()) {
        port_or_address(&steps, connect, &mut verdict);
        return verdict;
    }
    if verdict.status != Status::Ok {
        return verdict;
    }
    match query(observations, Vantage::Probe) {
        // No query: the handshake verdict stands (an untrusted certificate the helper shares).
        None => verdict,
        Some(q) if q.succeeded() => verdict,
        Some(q) => query_verdict(test, q, query(observations, Vantage::Helper)),
    }
}

/// The query step of `vantage` (engine `dot` or `doh`, so never the target's name resolution).
fn query(observations: &[Observation], vantage: Vantage) -> Option<&Observation> {
    observations.iter().rev().find(|o| {
        o.vantage == vantage
            && o.role == Role::Target
            && o.op == Operation::Resolve
            && matches!(&o.detail, Some(Detail::Dns(d)) if matches!(d.engine, DnsEngine::Dot | DnsEngine::Doh))
    })
}

fn query_verdict(test: TestKind, probe: &Observation, helper: Option<&Observation>) -> Verdict {
    let mechanism = if test == TestKind::Dot { Mechanism::DotBadAnswer } else { Mechanism::DohBadAnswer };
    let raw = probe.raw.as_ref().and_then(|r| r.name.as_deref()).unwrap_or("?");
    let mut evidence = vec![
        "tls handshake with the resolver's name completed with a verified certificate".to_string(),
        format!("{} ({raw})", describe("probe query", probe)),
    ];
    let Some(helper) = helper else {
        evidence.push("no helper query: cannot tell interference from a broken resolver".into());
        return Verdict::new(Status::Inconclusive, Mechanism::NoControl, evidence);
    };
    evidence.push(describe("helper query", helper));
    if !helper.succeeded() {
        return Verdict::new(Status::Down, Mechanism::ControlFailed, evidence);
    }
    let cut = probe.failure.is_some_and(|f| {
        matches!(f, Failure::GenericTimeoutError | Failure::ConnectionReset | Failure::EofError | Failure::ConnectionAborted)
    });
    if cut {
        evidence.push("the flow was cut or went silent after the handshake".into());
        Verdict::new(Status::Blocked, mechanism, evidence)
    } else {
        evidence.push("an answer that is not a DNS reply to our query came over the resolver's own certificate: the resolver's policy, not the path".into());
        Verdict::new(Status::Inconclusive, mechanism, evidence)
    }
}

/// A failed connect: did the same address answer on the other encrypted-DNS port?
fn port_or_address(steps: &Steps<'_>, connect: &Observation, verdict: &mut Verdict) {
    let target_port = connect.peer.map(|p| p.port());
    let other = steps.0.iter().rev().find(|o| {
        o.vantage == Vantage::Probe
            && o.role == Role::Control
            && o.op == Operation::Connect
            && o.peer.map(|p| p.port()) != target_port
    });
    let Some(other) = other else { return };
    let port = other.peer.map_or(0, |p| p.port());
    verdict.evidence.push(describe(&format!("probe connect to port {port} of the same address"), other));
    if verdict.status == Status::Blocked {
        verdict.evidence.push(if other.succeeded() {
            format!("port {} is blocked, not the address", target_port.unwrap_or(0))
        } else {
            "the whole address is blocked, not one port".to_string()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::testing::{step, tls_step};
    use std::net::SocketAddr;
    use vantage_measurement::DnsDetail;

    const ADDR: &str = "192.0.2.53";

    fn at(mut o: Observation, port: u16) -> Observation {
        o.peer = Some(SocketAddr::new(ADDR.parse().expect("ip"), port));
        o
    }

    fn query_step(vantage: Vantage, failure: Option<Failure>, engine: DnsEngine) -> Observation {
        let mut o = step(vantage, Role::Target, Operation::Resolve, failure);
        o.detail = Some(Detail::Dns(DnsDetail { engine, ..DnsDetail::default() }));
        o
    }

    /// One probe trial and the helper's step: `None` leaves a step out (it never ran).
    struct Scenario {
        control_sni: Option<Failure>,
        other_port: Option<Failure>,
        connect: Option<Failure>,
        handshake: Option<Option<Failure>>,
        verified: bool,
        query: Option<Option<Failure>>,
        helper: Option<(Option<Failure>, Option<Failure>)>,
    }

    const CLEAN: Scenario = Scenario {
        control_sni: None,
        other_port: None,
        connect: None,
        handshake: Some(None),
        verified: true,
        query: Some(None),
        helper: Some((None, None)),
    };

    fn run(test: TestKind, s: Scenario) -> Verdict {
        let engine = if test == TestKind::Dot { DnsEngine::Dot } else { DnsEngine::Doh };
        let (port, other) = if test == TestKind::Dot { (853, 443) } else { (443, 853) };
        // The target's own name resolution: must never be mistaken for the query.
        let mut obs = vec![query_step(Vantage::Probe, None, DnsEngine::System)];
        obs.push(at(step(Vantage::Probe, Role::Control, Operation::Connect, None), port));
        obs.push(at(tls_step(Vantage::Probe, Role::Control, s.control_sni, Some(false), "leaf"), port));
        obs.push(at(step(Vantage::Probe, Role::Control, Operation::Connect, s.other_port), other));
        obs.push(at(step(Vantage::Probe, Role::Target, Operation::Connect, s.connect), port));
        if let Some(h) = s.handshake {
            obs.push(at(
                tls_step(Vantage::Probe, Role::Target, h, Some(s.verified), if s.verified { "leaf" } else { "mitm" }),
                port,
            ));
        }
        if let Some(q) = s.query {
            obs.push(query_step(Vantage::Probe, q, engine));
        }
        if let Some((handshake, q)) = s.helper {
            obs.push(step(Vantage::Helper, Role::Target, Operation::Connect, None));
            obs.push(tls_step(Vantage::Helper, Role::Target, handshake, Some(true), "leaf"));
            if handshake.is_none() {
                obs.push(query_step(Vantage::Helper, q, engine));
            }
        }
        classify(test, &obs)
    }

    fn verdict_of(v: &Verdict) -> (Status, Option<Mechanism>) {
        (v.status, v.mechanism)
    }

    const TIMEOUT: Option<Failure> = Some(Failure::GenericTimeoutError);
    const RESET: Option<Failure> = Some(Failure::ConnectionReset);

    #[test]
    fn a_reachable_resolver_is_ok() {
        for test in [TestKind::Dot, TestKind::Doh] {
            assert_eq!(run(test, CLEAN).status, Status::Ok);
        }
    }

    #[test]
    fn dot_port_blocked_is_a_tcp_timeout_and_says_the_port() {
        let v = run(TestKind::Dot, Scenario { connect: TIMEOUT, handshake: None, query: None, ..CLEAN });
        assert_eq!(verdict_of(&v), (Status::Blocked, Some(Mechanism::TcpTimeout)));
        assert!(v.evidence.iter().any(|e| e == "port 853 is blocked, not the address"), "{:?}", v.evidence);
    }

    #[test]
    fn a_blackholed_address_is_a_tcp_timeout_and_says_the_address() {
        let s = Scenario { connect: TIMEOUT, other_port: TIMEOUT, control_sni: TIMEOUT, handshake: None, query: None, ..CLEAN };
        let v = run(TestKind::Doh, s);
        assert_eq!(verdict_of(&v), (Status::Blocked, Some(Mechanism::TcpTimeout)));
        assert!(v.evidence.iter().any(|e| e == "the whole address is blocked, not one port"), "{:?}", v.evidence);
    }

    #[test]
    fn sni_reset_is_the_tls_mechanism() {
        let v = run(TestKind::Doh, Scenario { handshake: Some(RESET), query: None, ..CLEAN });
        assert_eq!(verdict_of(&v), (Status::Blocked, Some(Mechanism::TlsResetAfterClientHello)));
        let v = run(TestKind::Dot, Scenario { handshake: Some(TIMEOUT), query: None, ..CLEAN });
        assert_eq!(verdict_of(&v), (Status::Blocked, Some(Mechanism::TlsTimeoutSni)));
    }

    #[test]
    fn every_sni_failing_while_the_helper_completes_is_a_handshake_block() {
        let v = run(TestKind::Dot, Scenario { handshake: Some(RESET), control_sni: RESET, query: None, ..CLEAN });
        assert_eq!(verdict_of(&v), (Status::Blocked, Some(Mechanism::TlsHandshakeBlocked)));
    }

    #[test]
    fn an_interception_certificate_is_mitm_and_no_query_is_judged() {
        let v = run(TestKind::Doh, Scenario { verified: false, query: None, ..CLEAN });
        assert_eq!(verdict_of(&v), (Status::Blocked, Some(Mechanism::TlsMitmCertificate)));
    }

    #[test]
    fn a_flow_cut_after_the_handshake_is_a_bad_answer_block() {
        let v = run(TestKind::Dot, Scenario { query: Some(TIMEOUT), ..CLEAN });
        assert_eq!(verdict_of(&v), (Status::Blocked, Some(Mechanism::DotBadAnswer)));
        let v = run(TestKind::Doh, Scenario { query: Some(RESET), ..CLEAN });
        assert_eq!(verdict_of(&v), (Status::Blocked, Some(Mechanism::DohBadAnswer)));
    }

    #[test]
    fn a_garbled_answer_over_the_real_certificate_is_the_resolvers_doing() {
        let v = run(TestKind::Doh, Scenario { query: Some(Some(Failure::DnsServerMisbehaving)), ..CLEAN });
        assert_eq!(verdict_of(&v), (Status::Inconclusive, Some(Mechanism::DohBadAnswer)));
        assert!(v.evidence.iter().any(|e| e.contains("resolver's policy")));
    }

    #[test]
    fn a_query_failing_for_the_helper_too_is_down_and_without_helper_unknown() {
        let v = run(TestKind::Dot, Scenario { query: Some(TIMEOUT), helper: Some((None, TIMEOUT)), ..CLEAN });
        assert_eq!(verdict_of(&v), (Status::Down, Some(Mechanism::ControlFailed)));
        let v = run(TestKind::Dot, Scenario { query: Some(TIMEOUT), helper: None, ..CLEAN });
        assert_eq!(verdict_of(&v), (Status::Inconclusive, Some(Mechanism::NoControl)));
    }

    #[test]
    fn a_resolver_down_for_everyone_is_down() {
        let s = Scenario { handshake: Some(RESET), control_sni: RESET, query: None, helper: Some((RESET, None)), ..CLEAN };
        assert_eq!(verdict_of(&run(TestKind::Doh, s)), (Status::Down, Some(Mechanism::ControlFailed)));
    }

    #[test]
    fn a_resolver_that_refuses_other_snis_is_fine() {
        let v = run(TestKind::Dot, Scenario { control_sni: Some(Failure::SslInvalidHostname), ..CLEAN });
        assert_eq!(v.status, Status::Ok);
    }
}
