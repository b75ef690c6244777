//! A complete, valid measurement: the one the docs show and the tests start from.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::envelope::{ControlKind, Measurement, ProbeInfo, SCHEMA_VERSION, Software, Target, TestKind, Transport};
use crate::failure::{CodeSpace, Failure, RawCode};
use crate::observation::{Detail, DnsAnswer, DnsDetail, DnsEngine, DnsReply, Observation, Operation, Role, TlsDetail, Vantage};
use crate::verdict::{Mechanism, Status, Verdict};

/// A TLS measurement blocked by RST injection, started at `started_at`; its UUIDv7 id carries
/// that time too (as a probe's does), with random bits after it.
pub fn tls_reset(started_at: DateTime<Utc>) -> Measurement {
    let peer = "203.0.113.10:443".parse().ok();
    let step = |role, sni: &str, failure: Option<Failure>| Observation {
        op: Operation::TlsHandshake,
        role,
        vantage: Vantage::Probe,
        t_start_ms: 0.0,
        duration_ms: 2.5,
        peer,
        sni: Some(sni.to_string()),
        failure,
        raw: failure.map(|_| RawCode::named(CodeSpace::Errno, Some(104), "ECONNRESET")),
        detail: Some(Detail::Tls(TlsDetail {
            version: failure.is_none().then(|| "TLSv1_3".to_string()),
            ..TlsDetail::default()
        })),
        trial: None,
    };
    Measurement {
        id: id_at(started_at),
        schema_version: SCHEMA_VERSION,
        software: Software { name: "vantage-probe".into(), version: "0.1.0".into(), platform: "linux-x86_64".into() },
        probe: ProbeInfo { cc: "ZZ".into(), asn: 0, network_type: None, network_epoch: None },
        started_at,
        runtime_ms: 12,
        test: TestKind::Tls,
        target: Target {
            name: "example".into(),
            domain: Some("blocked.example".into()),
            address: peer.map(|p: std::net::SocketAddr| p.ip()),
            port: Some(443),
            transport: Some(Transport::Tcp),
            control_sni: Some("control.example".into()),
            list_version: None,
        },
        controls: vec![ControlKind::ControlSni],
        observations: vec![
            step(Role::Control, "control.example", None),
            step(Role::Target, "blocked.example", Some(Failure::ConnectionReset)),
        ],
        verdict: Verdict::new(
            Status::Blocked,
            Mechanism::TlsResetAfterClientHello,
            vec!["target sni: connection_reset in tls_handshake; control sni completed".into()],
        ),
    }
}

/// A DNS measurement in which an on-path injector raced the resolver, started at `started_at`:
/// the UDP query to a public resolver got a forged private address first and the real one 9 ms
/// later; the DoH control resolved the name to the real address.
pub fn dns_injected(started_at: DateTime<Utc>) -> Measurement {
    let real: std::net::IpAddr = [203, 0, 113, 20].into();
    let forged: std::net::IpAddr = [10, 10, 34, 35].into();
    let reply = |after_ms: f64, ip, ttl| DnsReply {
        after_ms,
        rcode: "NOERROR".into(),
        answers: vec![DnsAnswer { ip, ttl }],
        has_soa: false,
        ip_ttl: None,
    };
    let lookup = |role, vantage, engine, resolver: Option<&str>, replies| Observation {
        op: Operation::Resolve,
        role,
        vantage,
        t_start_ms: 0.5,
        duration_ms: 41.0,
        peer: resolver.and_then(|r| r.parse().ok()),
        sni: None,
        failure: None,
        raw: None,
        detail: Some(Detail::Dns(DnsDetail {
            engine,
            resolver: resolver.map(str::to_string),
            query_name: "blocked.example".into(),
            query_type: "A".into(),
            replies,
        })),
        trial: None,
    };
    Measurement {
        id: id_at(started_at),
        schema_version: SCHEMA_VERSION,
        software: Software { name: "vantage-probe".into(), version: "0.1.0".into(), platform: "linux-x86_64".into() },
        probe: ProbeInfo { cc: "ZZ".into(), asn: 0, network_type: None, network_epoch: None },
        started_at,
        runtime_ms: 60,
        test: TestKind::Dns,
        target: Target {
            name: "example".into(),
            domain: Some("blocked.example".into()),
            address: None,
            port: None,
            transport: None,
            control_sni: None,
            list_version: None,
        },
        controls: vec![ControlKind::Doh],
        observations: vec![
            lookup(
                Role::Target,
                Vantage::Probe,
                DnsEngine::Udp,
                Some("192.0.2.53:53"),
                vec![reply(3.0, forged, 60), reply(12.0, real, 300)],
            ),
            lookup(Role::Control, Vantage::Doh, DnsEngine::Doh, None, vec![reply(30.0, real, 300)]),
        ],
        verdict: Verdict::new(
            Status::Blocked,
            Mechanism::DnsInjected,
            vec!["two replies to one query disagree: 10.10.34.35 then 203.0.113.20".into()],
        ),
    }
}

/// A fresh UUIDv7 whose time is `at` (random bits after it), as a probe makes at that moment.
pub fn id_at(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        millis / 1000,
        u32::try_from(millis % 1000).unwrap_or(0) * 1_000_000,
    ))
}

/// Probes in the [`tls_fleet`] population.
pub const FLEET_PROBES: u64 = 2_000;
/// Targets the [`tls_fleet`] probes all measure.
pub const FLEET_TARGETS: u64 = 100;

/// The `n`th TLS measurement of a realistic fleet, started at `started_at`: one of
/// [`FLEET_PROBES`] probes (in ten countries) measures one of [`FLEET_TARGETS`] targets, control
/// SNI first (one of ten control names), with the helper repeating the target handshake. Most
/// complete (the server's two-certificate chain, about 3 KB of base64, on each handshake); one in
/// seven is reset after the ClientHello, one in ten sees its country's interception certificate.
/// Chains therefore repeat across measurements as they do in a real fleet, while ids, times and
/// timings differ in every one. Deterministic in `n`, except for the UUIDv7 id.
pub fn tls_fleet(n: u64, started_at: DateTime<Utc>) -> Measurement {
    const COUNTRIES: [&str; 10] = ["IR", "RU", "CN", "TR", "DE", "US", "BR", "IN", "EG", "PK"];
    let roll = mix(n);
    let probe = roll % FLEET_PROBES;
    let target = (roll >> 16) % FLEET_TARGETS;
    let country = (probe % 10) as usize;
    let control = target % 10;
    let timing = |k: u64| (mix(roll ^ k) % 400_000) as f64 / 1000.0;
    let domain = format!("site-{target}.example");
    let control_sni = format!("control-{control}.example");
    let peer = std::net::SocketAddr::from(([203, 0, 113, (target % 250) as u8 + 1], 443));
    let chain = |leaf: u64, issuer: u64| vec![certificate(leaf, 1100 + leaf % 400), certificate(1_000_000 + issuer, 1050)];
    let step = |op, role, vantage, start: u64, sni: &str, failure: Option<Failure>, detail| Observation {
        op,
        role,
        vantage,
        t_start_ms: timing(start),
        duration_ms: timing(start + 1),
        peer: Some(peer),
        sni: (op != Operation::Connect).then(|| sni.to_string()),
        failure,
        raw: failure.map(|_| RawCode::named(CodeSpace::Errno, Some(104), "ECONNRESET")),
        detail,
        trial: None,
    };
    let handshake = |chain: Vec<String>, verified: bool| {
        let leaf_sha256 = chain.first().map(|c| sha256_hex(c.as_bytes()));
        Some(Detail::Tls(TlsDetail {
            version: Some("TLSv1_3".into()),
            alpn: Some("http/1.1".into()),
            cipher_suite: Some("TLS13_AES_128_GCM_SHA256".into()),
            peer_certificates: chain,
            leaf_sha256,
            verified: Some(verified),
            verify_failure: (!verified).then_some(Failure::SslUnknownAuthority),
            ech: None,
        }))
    };
    let tls = Operation::TlsHandshake;
    let mut observations = vec![
        step(Operation::Connect, Role::Control, Vantage::Probe, 1, &control_sni, None, None),
        step(tls, Role::Control, Vantage::Probe, 3, &control_sni, None, handshake(chain(10_000 + control, control % 3), true)),
        step(Operation::Connect, Role::Target, Vantage::Probe, 5, &domain, None, None),
    ];
    let outcome = roll % 70;
    let verdict = if outcome < 10 {
        observations.push(step(tls, Role::Target, Vantage::Probe, 7, &domain, Some(Failure::ConnectionReset), None));
        Verdict::new(
            Status::Blocked,
            Mechanism::TlsResetAfterClientHello,
            vec!["target sni: connection_reset in tls_handshake; control sni completed".into()],
        )
    } else if outcome < 17 {
        let mitm = chain(20_000 + country as u64, 7 + country as u64);
        observations.push(step(tls, Role::Target, Vantage::Probe, 7, &domain, None, handshake(mitm, false)));
        Verdict::new(
            Status::Blocked,
            Mechanism::TlsMitmCertificate,
            vec!["the probe saw a certificate the helper did not".into()],
        )
    } else {
        observations.push(step(tls, Role::Target, Vantage::Probe, 7, &domain, None, handshake(chain(target, target % 6), true)));
        Verdict::ok()
    };
    observations.push(step(tls, Role::Target, Vantage::Helper, 9, &domain, None, handshake(chain(target, target % 6), true)));
    Measurement {
        id: id_at(started_at),
        schema_version: SCHEMA_VERSION,
        software: Software { name: "vantage-probe".into(), version: "0.1.0".into(), platform: "linux-x86_64".into() },
        probe: ProbeInfo {
            cc: COUNTRIES[country].into(),
            asn: 1000 + (probe % 300) as u32,
            network_type: None,
            network_epoch: Some(1),
        },
        started_at,
        runtime_ms: 200 + roll % 1800,
        test: TestKind::Tls,
        target: Target {
            name: format!("site-{target}"),
            domain: Some(domain.clone()),
            address: Some(peer.ip()),
            port: Some(443),
            transport: Some(Transport::Tcp),
            control_sni: Some(control_sni.clone()),
            list_version: None,
        },
        controls: vec![ControlKind::ControlSni, ControlKind::Helper],
        observations,
        verdict,
    }
}

/// A certificate-sized run of base64 (`len` bytes of DER), the same for the same `seed`.
fn certificate(seed: u64, len: u64) -> String {
    use base64::Engine as _;
    let der: Vec<u8> = (0..len).map(|i| mix(seed.wrapping_mul(0x1_0000_0001) ^ i) as u8).collect();
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// SplitMix64: a well-spread number from `n`, no RNG state.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
