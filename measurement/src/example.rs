//! A complete, valid measurement: the one the docs show and the tests start from.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::envelope::{ControlKind, Measurement, ProbeInfo, SCHEMA_VERSION, Software, Target, TestKind, Transport};
use crate::failure::{CodeSpace, Failure, RawCode};
use crate::observation::{Detail, Observation, Operation, Role, TlsDetail, Vantage};
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

/// A fresh UUIDv7 whose time is `at` (random bits after it), as a probe makes at that moment.
pub fn id_at(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        millis / 1000,
        u32::try_from(millis % 1000).unwrap_or(0) * 1_000_000,
    ))
}
