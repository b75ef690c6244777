//! Scenario table for the DNS rules; the answer-validation cases (block-page list, forged
//! answers, CDNs) are in `answer_tests.rs`.

use super::*;
use crate::classify::testing::step;
use vantage_measurement::DnsAnswer;

#[path = "answer_tests.rs"]
mod answers;

/// A reply: rcode, addresses, SOA flag, arrival time.
fn reply(rcode: &str, ips: &[&str], has_soa: bool, after_ms: f64) -> DnsReply {
    let answers = ips.iter().map(|s| DnsAnswer { ip: s.parse().expect("test ip"), ttl: 300 }).collect();
    DnsReply { after_ms, rcode: rcode.to_string(), answers, has_soa, ip_ttl: None }
}

/// A lookup whose failure follows its first reply, as the runners do.
fn lookup(vantage: Vantage, engine: DnsEngine, qtype: &str, replies: Vec<DnsReply>) -> Observation {
    let failure = match replies.first() {
        None => Some(Failure::GenericTimeoutError),
        Some(r) => match r.rcode.as_str() {
            "NOERROR" if !r.answers.is_empty() => None,
            "NOERROR" => Some(Failure::DnsNoAnswer),
            "NXDOMAIN" => Some(Failure::DnsNxdomainError),
            "SERVFAIL" => Some(Failure::DnsServfailError),
            "REFUSED" => Some(Failure::DnsRefusedError),
            _ => Some(Failure::DnsServerMisbehaving),
        },
    };
    let mut o = step(vantage, Role::Target, Operation::Resolve, failure);
    let resolver = match engine {
        DnsEngine::Udp => Some("8.8.8.8:53".to_string()),
        DnsEngine::Doh | DnsEngine::Dot => Some("dns.google".to_string()),
        DnsEngine::System | DnsEngine::Blackhole => None,
    };
    o.detail = Some(Detail::Dns(DnsDetail {
        engine,
        resolver,
        query_name: "example.com".to_string(),
        query_type: qtype.to_string(),
        replies,
    }));
    o
}

fn udp(replies: Vec<DnsReply>) -> Observation {
    lookup(Vantage::Probe, DnsEngine::Udp, "A", replies)
}
fn system(replies: Vec<DnsReply>) -> Observation {
    lookup(Vantage::Probe, DnsEngine::System, "A,AAAA", replies)
}
fn doh(replies: Vec<DnsReply>) -> Observation {
    lookup(Vantage::Doh, DnsEngine::Doh, "A,AAAA", replies)
}
/// The query for the target sent to a host that runs no DNS (a control by role).
fn blackhole(replies: Vec<DnsReply>) -> Observation {
    let mut o = lookup(Vantage::Probe, DnsEngine::Blackhole, "A", replies);
    o.role = Role::Control;
    if let Some(Detail::Dns(d)) = &mut o.detail {
        d.resolver = Some("203.0.113.30:53".into());
    }
    o
}
fn helper(replies: Vec<DnsReply>) -> Observation {
    lookup(Vantage::Helper, DnsEngine::System, "A,AAAA", replies)
}
fn failed(vantage: Vantage, engine: DnsEngine, failure: Failure) -> Observation {
    let mut o = lookup(vantage, engine, "A", Vec::new());
    o.failure = Some(failure);
    o
}

const REAL: &[&str] = &["93.184.216.34"];
const REAL_V6: &[&str] = &["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"];

struct Case {
    name: &'static str,
    observations: Vec<Observation>,
    status: Status,
    mechanism: Option<Mechanism>,
    evidence_mentions: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "clean",
            observations: vec![
                system(vec![reply("NOERROR", REAL_V6, false, 9.0)]),
                udp(vec![reply("NOERROR", REAL, false, 20.0)]),
                doh(vec![reply("NOERROR", REAL_V6, false, 30.0)]),
            ],
            status: Status::Ok,
            mechanism: None,
            evidence_mentions: &["93.184.216.34"],
        },
        Case {
            name: "on-path injection",
            observations: vec![
                udp(vec![reply("NOERROR", &["31.13.95.33"], false, 12.0), reply("NOERROR", REAL, false, 45.5)]),
                doh(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Blocked,
            mechanism: Some(Mechanism::DnsInjected),
            evidence_mentions: &["2 replies to one query", "31.13.95.33", "+33.5 ms", "udp 8.8.8.8:53 A"],
        },
        Case {
            name: "injected nxdomain racing the real answer",
            observations: vec![
                udp(vec![reply("NXDOMAIN", &[], false, 3.0), reply("NOERROR", REAL, false, 40.0)]),
                doh(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Blocked,
            mechanism: Some(Mechanism::DnsInjected),
            evidence_mentions: &["NXDOMAIN []"],
        },
        Case {
            name: "a host without DNS answered: injection",
            observations: vec![
                udp(vec![reply("NOERROR", REAL, false, 12.0)]),
                blackhole(vec![reply("NOERROR", &["10.10.34.34"], false, 4.0)]),
                doh(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Blocked,
            mechanism: Some(Mechanism::DnsInjected),
            evidence_mentions: &["203.0.113.30:53 runs no DNS service", "10.10.34.34"],
        },
        Case {
            name: "a transparent resolver answers honestly for the blackhole: not injection",
            observations: vec![
                udp(vec![reply("NOERROR", REAL, false, 12.0)]),
                blackhole(vec![reply("NOERROR", REAL, false, 4.0)]),
                doh(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Ok,
            mechanism: None,
            evidence_mentions: &[],
        },
        Case {
            name: "silence from the blackhole is the expected control result",
            observations: vec![
                udp(vec![reply("NOERROR", REAL, false, 12.0)]),
                blackhole(Vec::new()),
                doh(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Ok,
            mechanism: None,
            evidence_mentions: &[],
        },
        Case {
            name: "identical duplicates are not injection",
            observations: vec![
                udp(vec![reply("NOERROR", REAL, false, 12.0), reply("NOERROR", REAL, false, 13.0)]),
                doh(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Ok,
            mechanism: None,
            evidence_mentions: &[],
        },
        Case {
            name: "in-path hijack with bogon",
            observations: vec![
                system(vec![reply("NOERROR", &["10.10.34.34"], false, 5.0)]),
                helper(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Blocked,
            mechanism: Some(Mechanism::DnsBogon),
            evidence_mentions: &["system: answered 10.10.34.34, a bogon", "control helper: resolved [93.184.216.34]"],
        },
        Case {
            name: "bogon also in control",
            observations: vec![
                system(vec![reply("NOERROR", &["10.0.0.5"], false, 5.0)]),
                helper(vec![reply("NOERROR", &["10.0.0.5"], false, 30.0)]),
            ],
            status: Status::Ok,
            mechanism: None,
            evidence_mentions: &["10.0.0.5"],
        },
        Case {
            name: "bogon without control",
            observations: vec![system(vec![reply("NOERROR", &["127.0.0.1"], false, 5.0)])],
            status: Status::Inconclusive,
            mechanism: Some(Mechanism::DnsBogon),
            evidence_mentions: &["127.0.0.1", "no control lookup"],
        },
        Case {
            name: "nxdomain hijack",
            observations: vec![system(vec![reply("NXDOMAIN", &[], false, 5.0)]), doh(vec![reply("NOERROR", REAL, false, 30.0)])],
            status: Status::Blocked,
            mechanism: Some(Mechanism::DnsNxdomainHijack),
            evidence_mentions: &["system: dns_nxdomain_error (NXDOMAIN without SOA in authority)", "control doh dns.google"],
        },
        Case {
            name: "empty answer hijack",
            observations: vec![udp(vec![reply("NOERROR", &[], true, 5.0)]), doh(vec![reply("NOERROR", REAL, false, 30.0)])],
            status: Status::Blocked,
            mechanism: Some(Mechanism::DnsNxdomainHijack),
            evidence_mentions: &["dns_no_answer (NOERROR with SOA in authority)"],
        },
        Case {
            name: "no AAAA for an IPv4-only name is not a hijack",
            observations: vec![
                lookup(Vantage::Probe, DnsEngine::Udp, "AAAA", vec![reply("NOERROR", &[], true, 5.0)]),
                system(vec![reply("NOERROR", REAL, false, 9.0)]),
                doh(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Ok,
            mechanism: None,
            evidence_mentions: &[],
        },
        Case {
            name: "CDN different answers",
            observations: vec![
                system(vec![reply("NOERROR", &["23.10.1.1", "2a02:26f0::1"], false, 9.0)]),
                doh(vec![reply("NOERROR", &["104.20.1.1", "2606:4700::1"], false, 30.0)]),
            ],
            status: Status::Ok,
            mechanism: Some(Mechanism::DnsAnswerMismatch),
            evidence_mentions: &["answers differ from control (CDN-like); not flagged"],
        },
        Case {
            name: "SERVFAIL for all names",
            observations: vec![system(vec![reply("SERVFAIL", &[], false, 50.0)]), doh(vec![reply("NOERROR", REAL, false, 30.0)])],
            status: Status::Inconclusive,
            mechanism: Some(Mechanism::DnsResolverError),
            evidence_mentions: &["dns_servfail_error"],
        },
        Case {
            name: "resolver timeout",
            observations: vec![udp(Vec::new()), doh(vec![reply("NOERROR", REAL, false, 30.0)])],
            status: Status::Inconclusive,
            mechanism: Some(Mechanism::DnsTimeout),
            evidence_mentions: &["udp 8.8.8.8:53 A: generic_timeout_error"],
        },
        Case {
            name: "dead name",
            observations: vec![system(vec![reply("NXDOMAIN", &[], true, 5.0)]), helper(vec![reply("NXDOMAIN", &[], true, 30.0)])],
            status: Status::Down,
            mechanism: Some(Mechanism::ControlFailed),
            evidence_mentions: &["control helper: dns_nxdomain_error"],
        },
        Case {
            name: "failure without control",
            observations: vec![system(vec![reply("NXDOMAIN", &[], false, 5.0)])],
            status: Status::Inconclusive,
            mechanism: Some(Mechanism::NoControl),
            evidence_mentions: &["no control lookup"],
        },
        Case {
            name: "resolved without control",
            observations: vec![system(vec![reply("NOERROR", REAL, false, 5.0)])],
            status: Status::Ok,
            mechanism: None,
            evidence_mentions: &["no control lookup"],
        },
        Case {
            name: "resolved while the control failed",
            observations: vec![
                system(vec![reply("NOERROR", REAL, false, 5.0)]),
                failed(Vantage::Doh, DnsEngine::Doh, Failure::GenericTimeoutError),
            ],
            status: Status::Ok,
            mechanism: None,
            evidence_mentions: &["control doh dns.google: generic_timeout_error"],
        },
        Case {
            name: "resolver port refused while the control resolves",
            observations: vec![
                failed(Vantage::Probe, DnsEngine::Udp, Failure::ConnectionRefused),
                doh(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Inconclusive,
            mechanism: Some(Mechanism::Other),
            evidence_mentions: &["connection_refused"],
        },
        Case {
            name: "offline",
            observations: vec![
                failed(Vantage::Probe, DnsEngine::System, Failure::NetworkUnreachable),
                failed(Vantage::Probe, DnsEngine::Udp, Failure::NetworkUnreachable),
                doh(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Inconclusive,
            mechanism: Some(Mechanism::NetworkOffline),
            evidence_mentions: &["network_unreachable"],
        },
        Case {
            name: "no probe lookup",
            observations: vec![doh(vec![reply("NOERROR", REAL, false, 30.0)])],
            status: Status::Inconclusive,
            mechanism: None,
            evidence_mentions: &["no probe DNS lookup"],
        },
    ]
}

#[test]
fn scenarios() {
    for case in cases().into_iter().chain(answers::cases()) {
        let v = classify(&case.observations, &BogonPolicy::default());
        assert_eq!((v.status, v.mechanism), (case.status, case.mechanism), "{}: {:?}", case.name, v.evidence);
        let all = v.evidence.join("\n");
        for needle in case.evidence_mentions {
            assert!(all.contains(needle), "{}: evidence lacks `{needle}`:\n{all}", case.name);
        }
    }
}

#[test]
fn a_lab_policy_lets_documentation_addresses_through() {
    let observations = vec![
        system(vec![reply("NOERROR", &["192.0.2.10"], false, 5.0)]),
        doh(vec![reply("NOERROR", &["192.0.2.10"], false, 9.0)]),
    ];
    let only_probe = vec![system(vec![reply("NOERROR", &["192.0.2.10"], false, 5.0)])];
    let lab = BogonPolicy::allowing(&["192.0.2.0/24"]).expect("range");
    assert_eq!(classify(&only_probe, &lab).status, Status::Ok);
    assert_eq!(classify(&only_probe, &BogonPolicy::default()).mechanism, Some(Mechanism::DnsBogon));
    assert_eq!(classify(&observations, &BogonPolicy::default()).status, Status::Ok, "bogon in control");
}

#[test]
fn evidence_never_names_the_system_resolver() {
    let mut o = system(vec![reply("NXDOMAIN", &[], false, 5.0)]);
    o.peer = Some("192.168.1.1:53".parse().expect("addr"));
    let v = classify(&[o, doh(vec![reply("NOERROR", REAL, false, 9.0)])], &BogonPolicy::default());
    assert!(!v.evidence.join(" ").contains("192.168.1.1"), "{:?}", v.evidence);
}
