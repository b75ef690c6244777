//! DNS rules: from the probe's lookups and the control's, decide whether the name is interfered with.
//!
//! The probe resolves the target with its own engines (`system`, `udp` to a public resolver); the
//! control resolves the same name off the censored path (the test helper, or DoH). The rules run
//! in order and the first that fires decides:
//!
//! 1. every probe lookup failed with a local network failure → inconclusive, `network.offline`;
//! 2. any reply from the blackhole (a host that runs no DNS service, asked as a control), or two
//!    or more *disagreeing* replies to one UDP query → blocked, `dns.injected` (identical
//!    duplicates are just duplicates);
//! 3. a bogon answer the control does not also return → blocked, `dns.bogon`
//!    (inconclusive without a working control);
//!    3b. an answer on the published block-page list the control does not also return →
//!    blocked, `dns.forged_answer`, the list entry and its source as evidence (inconclusive
//!    without a working control);
//! 4. NXDOMAIN, or no address of the asked family, while the control resolves it → blocked,
//!    `dns.nxdomain_hijack`;
//! 5. SERVFAIL/REFUSED while the control resolves → inconclusive, `dns.resolver_error`
//!    (broken resolvers are common: not proof);
//! 6. a timeout while the control resolves → inconclusive, `dns.timeout`;
//! 7. the probe failed and so did the control → down, `control.failed`; with no control at all →
//!    inconclusive, `control.unavailable`;
//! 8. the probe resolved and there is no working control → ok;
//! 9. the probe's addresses share none with the control's: CDNs answer by region, so a mismatch
//!    alone is never called blocking; the answered addresses are judged by TLS ([`forged`]):
//!    one that serves the name with a valid certificate → ok, `dns.answer_mismatch`; none does,
//!    from the probe nor the helper, while the control's address does → blocked,
//!    `dns.forged_answer` (inconclusive without the helper's view); unchecked → ok,
//!    `dns.answer_mismatch`;
//! 10. otherwise ok.
//!
//! Evidence names the engine and, for `udp`, the public resolver asked; never the probe's address.

use std::collections::BTreeSet;
use std::net::IpAddr;

use vantage_measurement::{
    Detail, DnsDetail, DnsEngine, DnsReply, Failure, Mechanism, Observation, Operation, Role, Status, Vantage, Verdict,
};

use super::bogon::BogonPolicy;

pub mod blockpage;
pub mod forged;

pub use forged::{MAX_VALIDATED, ValidationPlan, validation_plan};

/// Classify a DNS measurement. `bogons` says which addresses count as bogons (a lab exempts its
/// documentation ranges).
pub fn classify(observations: &[Observation], bogons: &BogonPolicy) -> Verdict {
    let is_lookup = |o: &&Observation| o.op == Operation::Resolve && o.role == Role::Target;
    let probe: Vec<Lookup<'_>> =
        observations.iter().filter(is_lookup).filter(|o| o.vantage == Vantage::Probe).map(Lookup::new).collect();
    let control: Vec<Lookup<'_>> =
        observations.iter().filter(is_lookup).filter(|o| o.vantage != Vantage::Probe).map(Lookup::new).collect();

    if probe.is_empty() {
        return verdict(Status::Inconclusive, None, vec!["no probe DNS lookup was recorded".to_string()]);
    }

    // 1. Nothing could be measured.
    if probe.iter().all(|l| l.obs.failure.is_some_and(Failure::is_local_network_failure)) {
        return verdict(Status::Inconclusive, Some(Mechanism::NetworkOffline), probe.iter().map(Lookup::describe).collect());
    }

    let resolving: Vec<&Lookup<'_>> = control.iter().filter(|l| l.resolved()).collect();
    let control_ips: BTreeSet<IpAddr> = resolving.iter().flat_map(|l| l.ips()).collect();
    let control_evidence = || -> Vec<String> {
        if control.is_empty() { vec!["no control lookup".to_string()] } else { control.iter().map(Lookup::describe).collect() }
    };

    // 2. A host without DNS that answers is an interceptor, and its answer a lie unless it matches
    //    the control (a transparent resolver on the path answers honestly for unlisted names);
    //    disagreeing replies to one query are a second opinion racing the first. Report both.
    let injected: Vec<String> = observations
        .iter()
        .find_map(|o| blackhole_injection(o, &control_ips, !resolving.is_empty(), bogons))
        .into_iter()
        .chain(probe.iter().find_map(injection))
        .flatten()
        .collect();
    if !injected.is_empty() {
        return verdict(Status::Blocked, Some(Mechanism::DnsInjected), injected);
    }

    // 3. Bogons the control does not also return (a bogon in the control is the name's real answer).
    let probe_bogons: Vec<String> = probe
        .iter()
        .flat_map(|l| l.ips().into_iter().map(move |ip| (l, ip)))
        .filter(|(_, ip)| bogons.is_bogon(*ip) && !control_ips.contains(ip))
        .map(|(l, ip)| format!("{}: answered {ip}, a bogon", l.label()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !probe_bogons.is_empty() {
        let status = if resolving.is_empty() { Status::Inconclusive } else { Status::Blocked };
        return verdict(status, Some(Mechanism::DnsBogon), [probe_bogons, control_evidence()].concat());
    }

    // 3b. Known block pages, the same way.
    let listed = forged::listed(&probe, &control_ips, bogons);
    if !listed.is_empty() {
        let status = if resolving.is_empty() { Status::Inconclusive } else { Status::Blocked };
        return verdict(status, Some(Mechanism::DnsForgedAnswer), [listed, control_evidence()].concat());
    }

    if !resolving.is_empty() {
        // 4. The name "does not exist" on the probe's path only.
        let hijacked: Vec<String> = probe
            .iter()
            .filter(|l| match l.obs.failure {
                Some(Failure::DnsNxdomainError) => true,
                Some(Failure::DnsNoAnswer) => control_ips.iter().any(|ip| l.asked_for(*ip)),
                _ => false,
            })
            .map(Lookup::describe)
            .collect();
        if !hijacked.is_empty() {
            return verdict(Status::Blocked, Some(Mechanism::DnsNxdomainHijack), [hijacked, control_evidence()].concat());
        }

        // 5, 6 and the rest: the probe's resolver failed while the control resolved.
        let failed_with = |wanted: &[Failure]| -> Vec<String> {
            probe.iter().filter(|l| l.obs.failure.is_some_and(|f| wanted.contains(&f))).map(Lookup::describe).collect()
        };
        let resolver_errors = failed_with(&[Failure::DnsServfailError, Failure::DnsRefusedError]);
        if !resolver_errors.is_empty() {
            return verdict(
                Status::Inconclusive,
                Some(Mechanism::DnsResolverError),
                [resolver_errors, control_evidence()].concat(),
            );
        }
        let timeouts = failed_with(&[Failure::GenericTimeoutError]);
        if !timeouts.is_empty() {
            return verdict(Status::Inconclusive, Some(Mechanism::DnsTimeout), [timeouts, control_evidence()].concat());
        }
        if probe.iter().all(|l| !l.obs.succeeded()) {
            // Refused by ICMP, malformed or foreign replies: suspicious, but no rule names it.
            let failures = probe.iter().map(Lookup::describe).collect::<Vec<_>>();
            return verdict(Status::Inconclusive, Some(Mechanism::Other), [failures, control_evidence()].concat());
        }
    }

    // 7. The probe could not resolve it and there is nothing (working) to compare with.
    if probe.iter().all(|l| !l.obs.succeeded()) {
        let failures = probe.iter().map(Lookup::describe).collect::<Vec<_>>();
        let (status, mechanism) = if control.is_empty() {
            (Status::Inconclusive, Mechanism::NoControl)
        } else {
            (Status::Down, Mechanism::ControlFailed)
        };
        return verdict(status, Some(mechanism), [failures, control_evidence()].concat());
    }

    let probe_ips: BTreeSet<IpAddr> = probe.iter().filter(|l| l.obs.succeeded()).flat_map(|l| l.ips()).collect();
    let answered = format!("probe answers: {}", list(&probe_ips));

    // 8. Resolved, but no working control to compare with.
    if resolving.is_empty() {
        return verdict(Status::Ok, None, [vec![answered], control_evidence()].concat());
    }

    // 9. Compare within the families both sides have (an A-only probe query vs a dual-stack control).
    let comparable: BTreeSet<IpAddr> =
        control_ips.iter().copied().filter(|c| probe_ips.iter().any(|p| p.is_ipv4() == c.is_ipv4())).collect();
    if !comparable.is_empty() && probe_ips.is_disjoint(&comparable) {
        return forged::mismatch(observations, &control_ips, answered);
    }

    // 10.
    verdict(Status::Ok, None, vec![answered, format!("control answers: {}", list(&control_ips))])
}

/// One resolve step and its DNS detail.
struct Lookup<'a> {
    obs: &'a Observation,
    detail: Option<&'a DnsDetail>,
}

impl<'a> Lookup<'a> {
    fn new(obs: &'a Observation) -> Self {
        let detail = match &obs.detail {
            Some(Detail::Dns(d)) => Some(d),
            _ => None,
        };
        Lookup { obs, detail }
    }

    fn replies(&self) -> &'a [DnsReply] {
        self.detail.map(|d| d.replies.as_slice()).unwrap_or_default()
    }

    /// Every address in every reply.
    fn ips(&self) -> Vec<IpAddr> {
        self.replies().iter().flat_map(|r| r.answers.iter().map(|a| a.ip)).collect()
    }

    fn resolved(&self) -> bool {
        self.obs.succeeded() && !self.ips().is_empty()
    }

    /// Did this lookup ask for `ip`'s family?
    fn asked_for(&self, ip: IpAddr) -> bool {
        match self.detail.map(|d| d.query_type.as_str()) {
            Some("A") => ip.is_ipv4(),
            Some("AAAA") => ip.is_ipv6(),
            _ => true,
        }
    }

    /// `udp 8.8.8.8:53 A`, `system`, `helper`, `doh dns.google`.
    fn label(&self) -> String {
        let engine = self.detail.map(|d| d.engine.as_str()).unwrap_or("resolve");
        let resolver = self.detail.and_then(|d| d.resolver.as_deref());
        match (self.obs.vantage, engine) {
            (Vantage::Probe, "udp") => {
                let qtype = self.detail.map(|d| d.query_type.as_str()).unwrap_or("?");
                format!("udp {} {qtype}", resolver.unwrap_or("?"))
            }
            // The system resolver's address is never recorded (it is usually a LAN address).
            (Vantage::Probe, engine) => engine.to_string(),
            (Vantage::Helper, _) => "control helper".to_string(),
            (Vantage::Doh, _) => format!("control doh {}", resolver.unwrap_or("?")),
        }
    }

    /// `udp 8.8.8.8:53 A: NXDOMAIN without SOA after 12.0 ms` / `helper: resolved 1.2.3.4 after 8.0 ms`.
    fn describe(&self) -> String {
        let label = self.label();
        let ms = self.obs.duration_ms;
        match (self.obs.failure, self.replies().first()) {
            (None, _) => {
                let ips: BTreeSet<IpAddr> = self.ips().into_iter().collect();
                format!("{label}: resolved {} in {ms:.1} ms", list(&ips))
            }
            (Some(f), Some(r)) => {
                let soa = if r.has_soa { "with" } else { "without" };
                format!("{label}: {f} ({} {soa} SOA in authority) after {ms:.1} ms", r.rcode)
            }
            (Some(f), None) => format!("{label}: {f} after {ms:.1} ms"),
        }
    }
}

/// Two or more replies to one UDP query that disagree in rcode or address set.
fn injection(lookup: &Lookup<'_>) -> Option<Vec<String>> {
    let replies = lookup.replies();
    let (first, later) = replies.split_first()?;
    let key = |r: &DnsReply| (r.rcode.clone(), r.answers.iter().map(|a| a.ip).collect::<BTreeSet<_>>());
    if lookup.detail.map(|d| d.engine) != Some(DnsEngine::Udp) || later.iter().all(|r| key(r) == key(first)) {
        return None;
    }
    let mut evidence = vec![format!("{}: {} replies to one query", lookup.label(), replies.len())];
    for (i, r) in replies.iter().enumerate() {
        let gap = if i == 0 { String::new() } else { format!(" (+{:.1} ms after the first)", r.after_ms - first.after_ms) };
        evidence.push(format!("reply {} at {:.1} ms{gap}: {} {}", i + 1, r.after_ms, r.rcode, list(&key(r).1)));
    }
    Some(evidence)
}

/// `[1.2.3.4, 5.6.7.8]`, at most six shown.
/// A lying reply to the blackhole query, as evidence: a bogon, or no address / other addresses
/// than the control resolves.
fn blackhole_injection(
    o: &Observation,
    control_ips: &BTreeSet<IpAddr>,
    control_resolved: bool,
    bogons: &BogonPolicy,
) -> Option<Vec<String>> {
    let Some(Detail::Dns(d)) = &o.detail else { return None };
    if o.vantage != Vantage::Probe || d.engine != DnsEngine::Blackhole {
        return None;
    }
    let first = d.replies.first()?;
    let answers: BTreeSet<IpAddr> = first.answers.iter().map(|a| a.ip).collect();
    let lie = answers.iter().any(|ip| bogons.is_bogon(*ip))
        || answers.is_empty()
        || (control_resolved && answers.is_disjoint(control_ips));
    if !lie {
        return None;
    }
    Some(vec![format!(
        "{} runs no DNS service, yet {} repl{} came back for {} ({} {}) after {:.1} ms",
        d.resolver.as_deref().unwrap_or("the blackhole"),
        d.replies.len(),
        if d.replies.len() == 1 { "y" } else { "ies" },
        d.query_name,
        first.rcode,
        list(&answers),
        first.after_ms,
    )])
}

fn list(ips: &BTreeSet<IpAddr>) -> String {
    const SHOWN: usize = 6;
    let mut s: Vec<String> = ips.iter().take(SHOWN).map(IpAddr::to_string).collect();
    if ips.len() > SHOWN {
        s.push(format!("+{} more", ips.len() - SHOWN));
    }
    format!("[{}]", s.join(", "))
}

fn verdict(status: Status, mechanism: Option<Mechanism>, evidence: Vec<String>) -> Verdict {
    Verdict { status, mechanism, evidence, trials: None, localisation: None }
}

#[cfg(test)]
mod tests;
