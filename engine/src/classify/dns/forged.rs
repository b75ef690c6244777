//! Forged answers: telling a lying resolver from a CDN when the addresses differ.
//!
//! The commonest DNS censorship is neither a bogon nor NXDOMAIN: an ISP resolver answers with the
//! public address of its block-page server, the GFW with addresses of unrelated networks. The
//! answer then shares nothing with the control's, which is also what a CDN's regional answer
//! looks like. The best tools (OONI's web_connectivity, Censored Planet's Satellite) tell the two
//! apart the same way, and so do we:
//!
//! - an answered address on the published block-page list ([`super::blockpage`]) that the
//!   control does not also return is forged, whatever else happens (rule 3b);
//! - otherwise each address only the probe got is asked to prove itself: a TLS handshake to
//!   `addr:443` with the name as SNI, chain verified for the name (the runner
//!   `runner::dns::validate`). A valid certificate means the address serves the name (a CDN, a
//!   regional answer): `ok`. A refusal, a timeout, a certificate for another name or from an
//!   untrusted issuer means it does not;
//! - "does not" from the probe alone could be a block of that address on the probe's path, so
//!   the helper repeats the handshake from outside. Valid there → the address is blocked, the
//!   answer honest: `ok` for DNS, with the evidence. Failing there too, while the control's own
//!   address completes a valid handshake for the name (the helper checks that as well) → the
//!   answer is forged: `blocked dns.forged_answer`. No helper view → `inconclusive`;
//! - a name that offers no TLS (no `tls` or `quic` test, a VPN endpoint's name), an address
//!   that can't be reached from here at all (an AAAA answer on an IPv4-only path), or a name
//!   whose control address fails TLS too gives no basis: `ok dns.answer_mismatch`, never a guess.
//!
//! At most [`MAX_VALIDATED`] addresses are checked per lookup, and only when the answers differ.

use std::collections::BTreeSet;
use std::net::IpAddr;

use vantage_measurement::{Failure, Mechanism, Observation, Operation, Role, Status, Vantage, Verdict};

use super::{Lookup, list, verdict};
use crate::classify::bogon::BogonPolicy;
use crate::classify::evidence::tls_detail;

/// The most answered addresses checked over TLS per measurement.
pub const MAX_VALIDATED: usize = 4;

/// What the runner should check before the rules run again: each address with a TLS handshake
/// from the probe and the helper, and the control's own address from the helper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationPlan {
    /// Addresses only the probe's resolvers returned, in a family the control answered too.
    pub addresses: Vec<IpAddr>,
    /// One of the control's addresses, in the family of the first of `addresses`.
    pub reference: Option<IpAddr>,
}

/// The check worth making, or `None` when the rules decide without it (the answers agree, or
/// another rule fires first). Pure: the runner asks this of the lookups it has.
pub fn validation_plan(observations: &[Observation], bogons: &BogonPolicy) -> Option<ValidationPlan> {
    let lookups: Vec<Observation> = observations.iter().filter(|o| o.op == Operation::Resolve).cloned().collect();
    let before = super::classify(&lookups, bogons);
    if (before.status, before.mechanism) != (Status::Ok, Some(Mechanism::DnsAnswerMismatch)) {
        return None;
    }
    let (probe_ips, control_ips) = answer_sets(&lookups);
    let addresses: Vec<IpAddr> = probe_only(&probe_ips, &control_ips).into_iter().take(MAX_VALIDATED).collect();
    let family = addresses.first()?.is_ipv4();
    let reference = control_ips.iter().copied().find(|c| c.is_ipv4() == family);
    Some(ValidationPlan { addresses, reference })
}

/// Addresses of the probe's successful lookups, and of the control's.
fn answer_sets(observations: &[Observation]) -> (BTreeSet<IpAddr>, BTreeSet<IpAddr>) {
    let lookups = observations.iter().filter(|o| o.op == Operation::Resolve && o.role == Role::Target).map(Lookup::new);
    let (mut probe, mut control) = (BTreeSet::new(), BTreeSet::new());
    for l in lookups {
        match l.obs.vantage {
            Vantage::Probe if l.obs.succeeded() => probe.extend(l.ips()),
            Vantage::Probe => {}
            _ if l.resolved() => control.extend(l.ips()),
            _ => {}
        }
    }
    (probe, control)
}

/// The probe's addresses the control did not return, in families the control answered (an
/// A-only control says nothing about AAAA answers).
fn probe_only(probe_ips: &BTreeSet<IpAddr>, control_ips: &BTreeSet<IpAddr>) -> Vec<IpAddr> {
    probe_ips
        .iter()
        .copied()
        .filter(|p| !control_ips.contains(p) && control_ips.iter().any(|c| c.is_ipv4() == p.is_ipv4()))
        .collect()
}

/// Rule 3b: an answer on the block-page list that the control does not also return. Blocked
/// with a resolving control; inconclusive without one (the control could show the name really
/// lives there, as a bogon in the control does).
pub(super) fn listed(probe: &[Lookup<'_>], control_ips: &BTreeSet<IpAddr>, bogons: &BogonPolicy) -> Vec<String> {
    probe
        .iter()
        .flat_map(|l| l.ips().into_iter().map(move |ip| (l, ip)))
        .filter(|(_, ip)| !control_ips.contains(ip))
        .filter_map(|(l, ip)| {
            bogons.blockpage(ip).map(|e| format!("{}: answered {ip}, a known block page: {}", l.label(), e.describe()))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What the checks showed for one answered address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Finding {
    /// Valid for the name from the probe: it serves the name.
    Valid,
    /// Valid from the helper only: that address is blocked or unreachable here, the answer honest.
    ValidOutside,
    /// Not valid from the probe nor the helper, while the control's address is.
    Forged,
    /// Not valid from the probe, and no helper view.
    NoHelper,
    /// Not checked, or nothing to judge it by.
    Undecided,
}

/// Rule 9: the probe's answers share no address with the control's (in the families both
/// have). `answered` and `control` are the evidence lines of both answer sets.
pub(super) fn mismatch(observations: &[Observation], control_ips: &BTreeSet<IpAddr>, answered: String) -> Verdict {
    let (probe_ips, _) = answer_sets(observations);
    let controlled = format!("control answers: {}", list(control_ips));
    let reference = observations.iter().find(|o| o.vantage == Vantage::Helper && o.role == Role::Control && is_tls_step(o));
    let reference = reference.map(|o| view_of(observations, Vantage::Helper, Role::Control, o.peer.map(|p| p.ip())));
    let reference = reference.flatten();
    let reference_valid = reference.is_some_and(valid);

    let mut findings = Vec::new();
    let mut evidence = Vec::new();
    for ip in probe_only(&probe_ips, control_ips) {
        let Some(probe) = view_of(observations, Vantage::Probe, Role::Target, Some(ip)) else { continue };
        let helper = view_of(observations, Vantage::Helper, Role::Target, Some(ip));
        evidence.push(format!("the answered address {ip} {}", phrase(probe)));
        let finding = if valid(probe) {
            Finding::Valid
        } else if let Some(h) = helper.filter(|h| valid(h)) {
            evidence.push(format!("from the helper, {ip} {}", phrase(h)));
            evidence.push(if probe.failure.is_some_and(Failure::is_local_network_failure) {
                format!("{ip} can't be reached from this network, but serves the name: not a forged answer")
            } else {
                format!("{ip} serves the name but fails from the probe: interference with that address, not a forged answer")
            });
            Finding::ValidOutside
        } else if probe.failure.is_some_and(Failure::is_local_network_failure) {
            evidence.push(format!("{ip} can't be reached from this network: not judged"));
            Finding::Undecided
        } else if let Some(h) = helper {
            evidence.push(format!("from the helper, {ip} {} too", phrase(h)));
            if reference_valid { Finding::Forged } else { Finding::Undecided }
        } else {
            evidence.push(format!("no helper checked {ip} from outside: a forged answer or a block of that address"));
            Finding::NoHelper
        };
        findings.push(finding);
    }
    if let Some(r) = reference {
        let ip = r.peer.map(|p| p.ip().to_string()).unwrap_or_else(|| "?".into());
        evidence.push(format!("from the helper, the control's address {ip} {}", phrase(r)));
    }
    let best = findings.iter().min().copied();
    let (status, mechanism, headline) = match best {
        Some(Finding::Valid | Finding::ValidOutside) => (
            Status::Ok,
            Mechanism::DnsAnswerMismatch,
            "answers differ from control, and an answered address serves the name with a valid certificate (CDN or regional answer)",
        ),
        Some(Finding::Forged) => (
            Status::Blocked,
            Mechanism::DnsForgedAnswer,
            "answers differ from control, and no answered address serves the name while the control's address does",
        ),
        Some(Finding::NoHelper) => (
            Status::Inconclusive,
            Mechanism::DnsForgedAnswer,
            "answers differ from control and fail TLS for the name here, with no view from outside",
        ),
        Some(Finding::Undecided) if reference.is_some_and(|r| !valid(r)) => (
            Status::Ok,
            Mechanism::DnsAnswerMismatch,
            "answers differ from control (CDN-like); not flagged: the name has no valid TLS on the control's address either",
        ),
        Some(Finding::Undecided) => {
            (Status::Ok, Mechanism::DnsAnswerMismatch, "answers differ from control (CDN-like); not flagged")
        }
        None => {
            evidence.push("no answered address was checked over TLS (only names with a tls or quic test are)".into());
            (Status::Ok, Mechanism::DnsAnswerMismatch, "answers differ from control (CDN-like); not flagged")
        }
    };
    verdict(status, Some(mechanism), [vec![headline.to_string()], evidence, vec![answered, controlled]].concat())
}

fn is_tls_step(o: &Observation) -> bool {
    matches!(o.op, Operation::Connect | Operation::TlsHandshake)
}

/// The step that tells how far a check of `ip` got: the handshake if the connect succeeded,
/// else the connect. `ip = None` takes any address.
fn view_of(observations: &[Observation], vantage: Vantage, role: Role, ip: Option<IpAddr>) -> Option<&Observation> {
    let steps = || {
        observations.iter().filter(move |o| {
            o.vantage == vantage && o.role == role && is_tls_step(o) && ip.is_none_or(|ip| o.peer.is_some_and(|p| p.ip() == ip))
        })
    };
    steps().find(|o| o.op == Operation::TlsHandshake).or_else(|| steps().find(|o| o.op == Operation::Connect))
}

/// A completed handshake whose chain verified for the name.
fn valid(o: &Observation) -> bool {
    o.op == Operation::TlsHandshake && o.succeeded() && tls_detail(o).and_then(|d| d.verified) == Some(true)
}

/// `refused on 443 (connection_refused)`, `presents a certificate for another name (ssl_invalid_hostname)`.
fn phrase(o: &Observation) -> String {
    let port = o.peer.map(|p| p.port()).unwrap_or(443);
    let sni = o.sni.as_deref().unwrap_or("the name");
    match (o.op, o.failure) {
        (Operation::Connect, Some(f @ Failure::ConnectionRefused)) => format!("refused on {port} ({f})"),
        (Operation::Connect, Some(f)) if f.is_timeout() => format!("did not answer on {port} ({f})"),
        (Operation::Connect, Some(f)) => format!("could not be connected to on {port} ({f})"),
        (_, Some(f)) => format!("failed the TLS handshake for {sni} on {port} ({f})"),
        (_, None) if valid(o) => format!("completes TLS for {sni} with a valid chain"),
        (_, None) => match tls_detail(o).and_then(|d| d.verify_failure) {
            Some(f @ Failure::SslInvalidHostname) => format!("presents a certificate for another name than {sni} ({f})"),
            Some(f @ Failure::SslUnknownAuthority) => format!("presents a certificate from an untrusted issuer for {sni} ({f})"),
            Some(f) => format!("presents an invalid certificate for {sni} ({f})"),
            None => format!("completed TLS for {sni} without a verified certificate"),
        },
    }
}
