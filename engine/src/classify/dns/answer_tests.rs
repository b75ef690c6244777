//! Scenario table for answer validation: the shipped block-page list, and addresses only the
//! probe got, checked over TLS from the probe and the helper (forged answer, CDN, IP block).

use std::net::SocketAddr;

use super::*;
use vantage_measurement::TlsDetail;

/// An address only the probe's resolver returned (a lie, or a CDN's regional answer).
const ANSWERED: &str = "81.2.69.160";
const ANSWERED_2: &str = "81.2.69.161";
/// The control's address, as the helper checks it.
const CONTROL_ADDR: &str = "93.184.216.34";

/// A TLS check of an answered address (`role` target) or of the control's address (`control`):
/// the connect, and the handshake when the connect worked.
fn check(vantage: Vantage, role: Role, ip: &str, outcome: Check) -> Vec<Observation> {
    let peer = SocketAddr::new(ip.parse().expect("test ip"), 443);
    let mut connect = step(vantage, role, Operation::Connect, None);
    connect.peer = Some(peer);
    let (failure, verified, verify_failure) = match outcome {
        Check::Refused => {
            connect.failure = Some(Failure::ConnectionRefused);
            return vec![connect];
        }
        Check::NoRoute => {
            connect.failure = Some(Failure::NetworkUnreachable);
            return vec![connect];
        }
        Check::Valid => (None, Some(true), None),
        Check::OtherName => (None, Some(false), Some(Failure::SslInvalidHostname)),
        Check::Untrusted => (None, Some(false), Some(Failure::SslUnknownAuthority)),
        Check::Alert => (Some(Failure::SslFailedHandshake), None, None),
    };
    let mut hs = step(vantage, role, Operation::TlsHandshake, failure);
    hs.peer = Some(peer);
    hs.sni = Some("example.com".into());
    hs.detail = Some(Detail::Tls(TlsDetail { verified, verify_failure, ..TlsDetail::default() }));
    vec![connect, hs]
}

#[derive(Clone, Copy)]
enum Check {
    Refused,
    NoRoute,
    Valid,
    OtherName,
    Untrusted,
    Alert,
}

/// Lookups, then the checks, as the runner appends them.
fn with(lookups: Vec<Observation>, checks: Vec<Vec<Observation>>) -> Vec<Observation> {
    [lookups, checks.concat()].concat()
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "a known block page (shipped list) the control does not return",
            observations: vec![
                system(vec![reply("NOERROR", &["195.175.254.2"], false, 5.0)]),
                helper(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Blocked,
            mechanism: Some(Mechanism::DnsForgedAnswer),
            evidence_mentions: &[
                "system: answered 195.175.254.2, a known block page: ooni.tr_6",
                "ooni/blocking-fingerprints:fingerprints_dns.csv#ooni.tr_6",
                "control helper: resolved [93.184.216.34]",
            ],
        },
        Case {
            name: "a known block page without a control",
            observations: vec![system(vec![reply("NOERROR", &["195.175.254.2"], false, 5.0)])],
            status: Status::Inconclusive,
            mechanism: Some(Mechanism::DnsForgedAnswer),
            evidence_mentions: &["ooni.tr_6", "no control lookup"],
        },
        Case {
            name: "a listed address the control returns too is the name's own",
            observations: vec![
                system(vec![reply("NOERROR", &["195.175.254.2"], false, 5.0)]),
                helper(vec![reply("NOERROR", &["195.175.254.2"], false, 30.0)]),
            ],
            status: Status::Ok,
            mechanism: None,
            evidence_mentions: &[],
        },
        Case {
            name: "forged: the answered address refuses 443 for everyone, the control's address serves the name",
            observations: with(
                vec![udp(vec![reply("NOERROR", &[ANSWERED], false, 5.0)]), helper(vec![reply("NOERROR", REAL, false, 30.0)])],
                vec![
                    check(Vantage::Probe, Role::Target, ANSWERED, Check::Refused),
                    check(Vantage::Helper, Role::Target, ANSWERED, Check::Refused),
                    check(Vantage::Helper, Role::Control, CONTROL_ADDR, Check::Valid),
                ],
            ),
            status: Status::Blocked,
            mechanism: Some(Mechanism::DnsForgedAnswer),
            evidence_mentions: &[
                "the answered address 81.2.69.160 refused on 443 (connection_refused)",
                "from the helper, 81.2.69.160 refused on 443 (connection_refused) too",
                "the control's address 93.184.216.34 completes TLS for example.com with a valid chain",
                "probe answers: [81.2.69.160]",
            ],
        },
        Case {
            name: "forged: an unrelated company's address with a certificate for another name (GFW-style)",
            observations: with(
                vec![udp(vec![reply("NOERROR", &[ANSWERED], false, 5.0)]), helper(vec![reply("NOERROR", REAL, false, 30.0)])],
                vec![
                    check(Vantage::Probe, Role::Target, ANSWERED, Check::OtherName),
                    check(Vantage::Helper, Role::Target, ANSWERED, Check::OtherName),
                    check(Vantage::Helper, Role::Control, CONTROL_ADDR, Check::Valid),
                ],
            ),
            status: Status::Blocked,
            mechanism: Some(Mechanism::DnsForgedAnswer),
            evidence_mentions: &["presents a certificate for another name than example.com (ssl_invalid_hostname)"],
        },
        Case {
            name: "forged: a block-page server with a self-signed certificate",
            observations: with(
                vec![system(vec![reply("NOERROR", &[ANSWERED], false, 5.0)]), helper(vec![reply("NOERROR", REAL, false, 30.0)])],
                vec![
                    check(Vantage::Probe, Role::Target, ANSWERED, Check::Untrusted),
                    check(Vantage::Helper, Role::Target, ANSWERED, Check::Untrusted),
                    check(Vantage::Helper, Role::Control, CONTROL_ADDR, Check::Valid),
                ],
            ),
            status: Status::Blocked,
            mechanism: Some(Mechanism::DnsForgedAnswer),
            evidence_mentions: &["untrusted issuer", "(ssl_unknown_authority)"],
        },
        Case {
            name: "forged: a server for another name that refuses ours with an alert",
            observations: with(
                vec![system(vec![reply("NOERROR", &[ANSWERED], false, 5.0)]), helper(vec![reply("NOERROR", REAL, false, 30.0)])],
                vec![
                    check(Vantage::Probe, Role::Target, ANSWERED, Check::Alert),
                    check(Vantage::Helper, Role::Target, ANSWERED, Check::Alert),
                    check(Vantage::Helper, Role::Control, CONTROL_ADDR, Check::Valid),
                ],
            ),
            status: Status::Blocked,
            mechanism: Some(Mechanism::DnsForgedAnswer),
            evidence_mentions: &["failed the TLS handshake for example.com on 443 (ssl_failed_handshake)"],
        },
        Case {
            name: "CDN: the answered address serves the name with a valid chain",
            observations: with(
                vec![system(vec![reply("NOERROR", &[ANSWERED], false, 5.0)]), helper(vec![reply("NOERROR", REAL, false, 30.0)])],
                vec![
                    check(Vantage::Probe, Role::Target, ANSWERED, Check::Valid),
                    check(Vantage::Helper, Role::Target, ANSWERED, Check::Valid),
                    check(Vantage::Helper, Role::Control, CONTROL_ADDR, Check::Valid),
                ],
            ),
            status: Status::Ok,
            mechanism: Some(Mechanism::DnsAnswerMismatch),
            evidence_mentions: &[
                "serves the name with a valid certificate",
                "81.2.69.160 completes TLS for example.com with a valid chain",
            ],
        },
        Case {
            name: "an IP block of a CDN address is not a forged answer",
            observations: with(
                vec![system(vec![reply("NOERROR", &[ANSWERED], false, 5.0)]), helper(vec![reply("NOERROR", REAL, false, 30.0)])],
                vec![
                    check(Vantage::Probe, Role::Target, ANSWERED, Check::Refused),
                    check(Vantage::Helper, Role::Target, ANSWERED, Check::Valid),
                    check(Vantage::Helper, Role::Control, CONTROL_ADDR, Check::Valid),
                ],
            ),
            status: Status::Ok,
            mechanism: Some(Mechanism::DnsAnswerMismatch),
            evidence_mentions: &[
                "from the helper, 81.2.69.160 completes TLS for example.com with a valid chain",
                "interference with that address, not a forged answer",
            ],
        },
        Case {
            name: "failing from the probe with no helper view is inconclusive",
            observations: with(
                vec![system(vec![reply("NOERROR", &[ANSWERED], false, 5.0)]), doh(vec![reply("NOERROR", REAL, false, 30.0)])],
                vec![check(Vantage::Probe, Role::Target, ANSWERED, Check::Refused)],
            ),
            status: Status::Inconclusive,
            mechanism: Some(Mechanism::DnsForgedAnswer),
            evidence_mentions: &["no helper checked 81.2.69.160 from outside"],
        },
        Case {
            name: "a name whose control address has no valid TLS either is not judged",
            observations: with(
                vec![system(vec![reply("NOERROR", &[ANSWERED], false, 5.0)]), helper(vec![reply("NOERROR", REAL, false, 30.0)])],
                vec![
                    check(Vantage::Probe, Role::Target, ANSWERED, Check::Refused),
                    check(Vantage::Helper, Role::Target, ANSWERED, Check::Refused),
                    check(Vantage::Helper, Role::Control, CONTROL_ADDR, Check::Untrusted),
                ],
            ),
            status: Status::Ok,
            mechanism: Some(Mechanism::DnsAnswerMismatch),
            evidence_mentions: &["the name has no valid TLS on the control's address either"],
        },
        Case {
            name: "a name without TLS: answers unchecked, never guessed blocked",
            observations: vec![
                system(vec![reply("NOERROR", &[ANSWERED], false, 5.0)]),
                helper(vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Ok,
            mechanism: Some(Mechanism::DnsAnswerMismatch),
            evidence_mentions: &["not flagged", "no answered address was checked over TLS"],
        },
        Case {
            name: "an answered address this network has no route to is not judged",
            observations: with(
                vec![
                    system(vec![reply("NOERROR", &["2a00:1450:4001::1"], false, 5.0)]),
                    doh(vec![reply("NOERROR", &["2606:2800:220:1::1"], false, 30.0)]),
                    helper(vec![reply("NOERROR", &["2606:2800:220:1::1"], false, 30.0)]),
                ],
                vec![
                    check(Vantage::Probe, Role::Target, "2a00:1450:4001::1", Check::NoRoute),
                    check(Vantage::Helper, Role::Target, "2a00:1450:4001::1", Check::Refused),
                    check(Vantage::Helper, Role::Control, "2606:2800:220:1::1", Check::Valid),
                ],
            ),
            status: Status::Ok,
            mechanism: Some(Mechanism::DnsAnswerMismatch),
            evidence_mentions: &["can't be reached from this network: not judged"],
        },
        Case {
            name: "one valid answered address clears the others",
            observations: with(
                vec![
                    system(vec![reply("NOERROR", &[ANSWERED, ANSWERED_2], false, 5.0)]),
                    helper(vec![reply("NOERROR", REAL, false, 30.0)]),
                ],
                vec![
                    check(Vantage::Probe, Role::Target, ANSWERED, Check::Refused),
                    check(Vantage::Probe, Role::Target, ANSWERED_2, Check::Valid),
                    check(Vantage::Helper, Role::Target, ANSWERED, Check::Refused),
                    check(Vantage::Helper, Role::Target, ANSWERED_2, Check::Valid),
                    check(Vantage::Helper, Role::Control, CONTROL_ADDR, Check::Valid),
                ],
            ),
            status: Status::Ok,
            mechanism: Some(Mechanism::DnsAnswerMismatch),
            evidence_mentions: &["81.2.69.161 completes TLS"],
        },
        Case {
            name: "AAAA answers against an A-only control are not compared",
            observations: vec![
                system(vec![reply("NOERROR", &["2a00:1450:4001::1"], false, 5.0)]),
                lookup(Vantage::Helper, DnsEngine::Udp, "A", vec![reply("NOERROR", REAL, false, 30.0)]),
            ],
            status: Status::Ok,
            mechanism: None,
            evidence_mentions: &["probe answers: [2a00:1450:4001::1]"],
        },
    ]
}

#[test]
fn validation_is_planned_only_for_a_mismatch_and_is_bounded() {
    let policy = BogonPolicy::default();
    let agree = vec![system(vec![reply("NOERROR", REAL, false, 5.0)]), helper(vec![reply("NOERROR", REAL, false, 9.0)])];
    assert_eq!(validation_plan(&agree, &policy), None, "answers agree");
    let bogon =
        vec![system(vec![reply("NOERROR", &["10.10.34.34"], false, 5.0)]), helper(vec![reply("NOERROR", REAL, false, 9.0)])];
    assert_eq!(validation_plan(&bogon, &policy), None, "dns.bogon decides first");
    let listed =
        vec![system(vec![reply("NOERROR", &["195.175.254.2"], false, 5.0)]), helper(vec![reply("NOERROR", REAL, false, 9.0)])];
    assert_eq!(validation_plan(&listed, &policy), None, "the block-page list decides first");
    let no_control = vec![system(vec![reply("NOERROR", &[ANSWERED], false, 5.0)])];
    assert_eq!(validation_plan(&no_control, &policy), None, "nothing to compare with");

    let many: Vec<String> = (1..=6).map(|i| format!("81.2.69.{i}")).chain(["2a00:1450:4001::1".to_string()]).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let mismatch = vec![system(vec![reply("NOERROR", &many, false, 5.0)]), helper(vec![reply("NOERROR", REAL_V6, false, 9.0)])];
    let plan = validation_plan(&mismatch, &policy).expect("a plan");
    assert_eq!(plan.addresses.len(), MAX_VALIDATED);
    assert!(plan.addresses.iter().all(IpAddr::is_ipv4), "IPv4 first: {:?}", plan.addresses);
    assert_eq!(plan.reference, Some("93.184.216.34".parse().expect("ip")));
}

#[test]
fn aaaa_answers_are_not_checked_against_an_a_only_control() {
    let observations = vec![
        system(vec![reply("NOERROR", &[ANSWERED, "2a00:1450:4001::1"], false, 5.0)]),
        lookup(Vantage::Helper, DnsEngine::Udp, "A", vec![reply("NOERROR", REAL, false, 9.0)]),
    ];
    let plan = validation_plan(&observations, &BogonPolicy::default()).expect("a plan");
    assert_eq!(plan.addresses, vec![ANSWERED.parse::<IpAddr>().expect("ip")]);
}

#[test]
fn a_lab_block_page_entry_marks_its_address() {
    let lab = BogonPolicy::allowing(&["203.0.113.0/24"]).and_then(|p| p.with_blockpages(&["203.0.113.80/32"])).expect("cidr");
    let observations = vec![
        system(vec![reply("NOERROR", &["203.0.113.80"], false, 5.0)]),
        helper(vec![reply("NOERROR", &["203.0.113.20"], false, 9.0)]),
    ];
    let v = classify(&observations, &lab);
    assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::DnsForgedAnswer)), "{:?}", v.evidence);
    assert!(v.evidence.join("\n").contains("flag:203.0.113.80/32"), "{:?}", v.evidence);
}
