//! Observation builders for the classifier's table tests.

use vantage_measurement::{Detail, Failure, Observation, Operation, RawCode, Role, TlsDetail, Vantage};

/// A bare step.
pub fn step(vantage: Vantage, role: Role, op: Operation, failure: Option<Failure>) -> Observation {
    Observation {
        op,
        role,
        vantage,
        t_start_ms: 0.0,
        duration_ms: 1.0,
        peer: None,
        sni: None,
        failure,
        raw: failure.map(|_| RawCode::timeout(1)),
        detail: None,
        trial: None,
    }
}

/// A TLS handshake step with a certificate outcome and a leaf fingerprint.
pub fn tls_step(vantage: Vantage, role: Role, failure: Option<Failure>, verified: Option<bool>, leaf: &str) -> Observation {
    let mut o = step(vantage, role, Operation::TlsHandshake, failure);
    o.detail = Some(Detail::Tls(TlsDetail {
        verified: failure.is_none().then_some(verified).flatten(),
        verify_failure: (verified == Some(false)).then_some(Failure::SslUnknownAuthority),
        leaf_sha256: failure.is_none().then(|| leaf.to_string()),
        ..TlsDetail::default()
    }));
    o
}

/// A QUIC handshake step with a trusted certificate when it succeeded.
pub fn quic_step(vantage: Vantage, role: Role, failure: Option<Failure>) -> Observation {
    let mut o = tls_step(vantage, role, failure, Some(true), "leaf");
    o.op = Operation::QuicHandshake;
    o
}
