use super::*;
use crate::classify::localise::After;

/// A simulated path: what each name draws at each TTL.
#[derive(Clone, Copy)]
enum Censor {
    None,
    Reset(u8),
    Dropper(u8),
    DnsOnPath(u8),
    DnsInPath(u8),
}

fn draws(censor: Censor, server: u8, lost: &[u8], name: Name, ttl: u8) -> Seen {
    let path = if ttl < server { Seen::IcmpError } else { Seen::Reply };
    if lost.contains(&ttl) {
        return Seen::Nothing;
    }
    if name == Name::Control {
        return path;
    }
    match censor {
        Censor::Reset(c) if ttl >= c => Seen::Injected { kind: Injection::Reset, after: After::Unobservable },
        Censor::Dropper(c) if ttl >= c => Seen::Nothing,
        Censor::DnsOnPath(c) if ttl >= c => {
            let after = if path == Seen::Reply { After::Reply } else { After::IcmpError };
            Seen::Injected { kind: Injection::DnsAnswer, after }
        }
        Censor::DnsInPath(c) if ttl >= c => Seen::Injected { kind: Injection::DnsAnswer, after: After::Nothing },
        _ => path,
    }
}

/// Run a sweep against a simulated path; the block, and how many attempts waited for the spacing.
fn sweep(censor: Censor, server: u8, lost: &[u8]) -> (Localisation, u32) {
    let mut sweep = Sweep::default();
    let mut spaced = 0;
    loop {
        match sweep.next() {
            Next::Done(block) => return (block, spaced),
            Next::Attempt { name, ttl, spaced: wait } => {
                spaced += u32::from(wait);
                sweep.record(name, draws(censor, server, lost, name, ttl));
            }
        }
    }
}

fn located(censor_hop: u8, server_hop: u8, how: LocalisedHow, placement: Placement, attempts: u32) -> Localisation {
    Localisation {
        censor_hop: Some(censor_hop),
        server_hop: Some(server_hop),
        how: Some(how),
        placement: Some(placement),
        not_localised: None,
        attempts,
    }
}

#[test]
fn a_censor_at_3_of_5_is_found_with_few_spaced_attempts() {
    // Control: TTL 1..=7 (server at 5, two past it); target: 1..=c until settled.
    let table = [
        // A reset settles after its second injection (placement can never show).
        (Censor::Reset(3), located(3, 5, LocalisedHow::Reset, Placement::Unknown, 7 + 4), 1),
        // A dropper needs three silent TTLs past its hop.
        (Censor::Dropper(3), located(3, 5, LocalisedHow::Dropped, Placement::InPath, 7 + 5), 2),
        // On-path: the first injection already shows the query went on.
        (Censor::DnsOnPath(3), located(3, 5, LocalisedHow::DnsAnswer, Placement::OnPath, 7 + 4), 1),
        // In-path: three injections with nothing after them.
        (Censor::DnsInPath(3), located(3, 5, LocalisedHow::DnsAnswer, Placement::InPath, 7 + 5), 2),
    ];
    for (censor, expected, spaced) in table {
        assert_eq!(sweep(censor, 5, &[]), (expected, spaced));
    }
}

#[test]
fn benign_and_lossy_paths_produce_no_hop() {
    let (block, spaced) = sweep(Censor::None, 5, &[]);
    assert_eq!(block.not_localised, Some(NotLocalised::TargetReachedServer));
    // The target reached the server at 5: TTLs 6 and 7 could not change that.
    assert_eq!((block.attempts, spaced), (12, 0));
    // Loss at the end of the path hits both names alike: never a hop.
    let (block, _) = sweep(Censor::None, 5, &[5, 6, 7]);
    assert_eq!(block.censor_hop, None);
    assert_eq!(sweep(Censor::None, 30, &[]).0, Localisation::not_localised(NotLocalised::ControlNeverArrived, 16));
}

#[test]
fn routers_that_never_answer_do_not_spend_the_spaced_attempts() {
    // Hops 2 and 4 send no ICMP for either name; the resetter at 9 of 12 is still reached, and
    // only the attempt after its first injection waits.
    let (block, spaced) = sweep(Censor::Reset(9), 12, &[2, 4]);
    assert_eq!(block, located(9, 12, LocalisedHow::Reset, Placement::Unknown, 14 + 10));
    assert_eq!(spaced, 1);
}

#[test]
fn a_control_name_that_draws_an_injection_ends_the_follow_up_at_once() {
    // The control name draws injections from TTL 3 on (a censor blocking every name, or the
    // control name listed too): no target attempt is sent.
    let injected = Seen::Injected { kind: Injection::Reset, after: After::Unobservable };
    let mut sweep = Sweep::default();
    for seen in [Seen::IcmpError, Seen::IcmpError, injected, injected, Seen::Reply, Seen::Reply, Seen::Reply] {
        assert!(matches!(sweep.next(), Next::Attempt { name: Name::Control, .. }));
        sweep.record(Name::Control, seen);
    }
    match sweep.next() {
        Next::Done(block) => assert_eq!(block.not_localised, Some(NotLocalised::ControlInjected)),
        other => panic!("another attempt: {other:?}"),
    }
}

#[test]
fn no_path_takes_more_than_32_attempts() {
    for server in 1..=40 {
        for c in 1..=40 {
            for censor in [Censor::None, Censor::Reset(c), Censor::Dropper(c), Censor::DnsOnPath(c), Censor::DnsInPath(c)] {
                let (block, spaced) = sweep(censor, server, &[]);
                assert!(block.attempts <= 32, "{server} {c}: {block:?}");
                assert!(spaced <= MAX_SPACED as u32, "{server} {c}: {spaced}");
                if let Some(hop) = block.censor_hop {
                    assert_eq!(hop, c, "{server}: {block:?}");
                }
            }
        }
    }
}

#[test]
fn only_blocked_tls_and_dns_verdicts_are_followed_up() {
    let mut m = vantage_measurement::example::tls_reset(chrono::Utc::now());
    let cases = [
        (TestKind::Tls, Status::Blocked, Mechanism::TlsResetAfterClientHello, true),
        (TestKind::Tls, Status::Blocked, Mechanism::TlsTimeoutSni, true),
        (TestKind::Tls, Status::Blocked, Mechanism::TlsEofAfterClientHello, true),
        (TestKind::Tls, Status::Blocked, Mechanism::TlsAlertSni, true),
        (TestKind::Dns, Status::Blocked, Mechanism::DnsInjected, true),
        (TestKind::Dns, Status::Blocked, Mechanism::DnsBogon, true),
        // Blocked whatever the name, or after the handshake: nothing a ClientHello could draw.
        (TestKind::Tls, Status::Blocked, Mechanism::TlsHandshakeBlocked, false),
        (TestKind::Tls, Status::Blocked, Mechanism::TlsMitmCertificate, false),
        (TestKind::Tls, Status::Blocked, Mechanism::TlsDataStall, false),
        (TestKind::Tls, Status::Blocked, Mechanism::TcpTimeout, false),
        (TestKind::Tls, Status::Ok, Mechanism::TlsResetAfterClientHello, false),
        (TestKind::Tls, Status::Inconclusive, Mechanism::TlsResetAfterClientHello, false),
        (TestKind::Quic, Status::Blocked, Mechanism::QuicSniBlocked, false),
        (TestKind::Tcp, Status::Blocked, Mechanism::TcpTimeout, false),
    ];
    for (test, status, mechanism, expected) in cases {
        m.test = test;
        m.verdict.status = status;
        m.verdict.mechanism = Some(mechanism);
        assert_eq!(applies(&m), expected, "{test:?} {status:?} {mechanism:?}");
    }
}

fn loopback_config() -> MeasureConfig {
    MeasureConfig {
        anchors: std::sync::Arc::new(crate::runner::verify::TrustAnchors::webpki_defaults()),
        timeout: Duration::from_secs(1),
        helper: None,
        doh: None,
        udp_resolver: None,
        system_resolver: false,
        dns_blackhole: None,
        dns_linger: Duration::ZERO,
        probe: vantage_measurement::ProbeInfo { cc: "ZZ".into(), asn: 0, network_type: None, network_epoch: None },
        bogons: crate::classify::bogon::BogonPolicy::allowing::<&str>(&[]).expect("no ranges"),
        localise: Some(LocaliseConfig::default()),
        ipv6_control: None,
        ipv6_answered: Default::default(),
    }
}

#[test]
fn the_client_hello_is_one_tls_record_naming_the_sni() {
    let cfg = loopback_config();
    let hello = client_hello(&cfg, "blocked.example").expect("hello");
    assert_eq!(hello[0], 0x16, "a handshake record");
    let record_len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    assert_eq!(hello.len(), 5 + record_len, "one record, {} bytes", hello.len());
    assert!(hello.windows(15).any(|w| w == b"blocked.example"));
    println!("ClientHello: {} bytes", hello.len());
}

/// A loopback server that answers every connection's first read with a ServerHello-like record.
async fn answering_server() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                if conn.read(&mut buf).await.is_ok() {
                    let _ = conn.write_all(&[0x16, 3, 3, 0, 0]).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_follow_up_on_loopback_runs_its_sweep_and_stops_when_asked() {
    // Loopback never decrements the TTL: the control "reaches the server" at TTL 1, so N = 3, and
    // the target does too at TTL 1, which settles it: not localised, after 3 + 1 attempts.
    let addr = answering_server().await;
    let cfg = loopback_config();
    let lc = LocaliseConfig { spacing: Duration::ZERO, attempt_wait: Duration::from_millis(300) };
    let mut m = vantage_measurement::example::tls_reset(chrono::Utc::now());
    m.target.address = Some(addr.ip());
    m.target.port = Some(addr.port());
    assert!(applies(&m));
    follow_up(&cfg, lc, &mut m, Instant::now(), &Stop::new()).await;
    assert_eq!(m.verdict.localisation, Some(Localisation::not_localised(NotLocalised::TargetReachedServer, 4)));
    let stop = Stop::new();
    stop.stop();
    follow_up(&cfg, lc, &mut m, Instant::now(), &stop).await;
    assert_eq!(m.verdict.localisation, Some(Localisation::not_localised(NotLocalised::Interrupted, 0)));
    // A DNS follow-up without a host that runs no DNS has nothing to ask.
    m.test = TestKind::Dns;
    follow_up(&cfg, lc, &mut m, Instant::now(), &Stop::new()).await;
    assert_eq!(m.verdict.localisation, Some(Localisation::not_localised(NotLocalised::NotApplicable, 0)));
}
