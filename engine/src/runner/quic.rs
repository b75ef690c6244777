//! QUIC runner: one handshake with one SNI, over quinn, recording what the server showed.
//!
//! Censors can only drop UDP, so blocking shows as a handshake timeout; the classifier tells a
//! QUIC-SNI block from an all-UDP block by comparing with the control SNI on the same address.
//! Each handshake uses a fresh endpoint (a fresh source port): a censor that remembers a flow
//! must not see the control and the target as one.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{HandshakeData, QuicClientConfig};
use quinn::{ConnectionError, Endpoint, TransportConfig, VarInt};
use vantage_measurement::{CodeSpace, Detail, Failure, Observation, Operation, RawCode, Role};

use super::tls::{alert_failure, cert_detail, client_config};
use super::verify::TrustAnchors;
use super::{StepContext, io_failure};

/// ALPN offered over QUIC: HTTP/3, which every public QUIC server speaks.
const QUIC_ALPN: &[&[u8]] = &[b"h3"];

/// Handshake with `sni` at `addr`; one `quic_handshake` observation.
pub async fn handshake(ctx: &StepContext, role: Role, addr: SocketAddr, sni: &str, anchors: &TrustAnchors) -> Observation {
    let step = ctx.step(Operation::QuicHandshake, role).peer(addr).sni(sni);
    let (config, record) = match client_config(anchors, QUIC_ALPN) {
        Ok(c) => c,
        Err(failure) => return step.finish(Err(failure), None),
    };
    let outcome = ctx.within(connect(config, addr, sni, ctx.timeout)).await;
    let mut detail = cert_detail(&record);
    let outcome = outcome.map(|alpn| {
        detail.version = Some("TLSv1_3".into());
        detail.alpn = alpn;
    });
    step.finish(outcome, Some(Detail::Tls(detail)))
}

async fn connect(
    config: rustls::ClientConfig,
    addr: SocketAddr,
    sni: &str,
    timeout: Duration,
) -> Result<Option<String>, (Failure, RawCode)> {
    let internal = |name: &str| (Failure::UnknownFailure, RawCode::named(CodeSpace::QuicError, None, name));
    let quic_crypto = QuicClientConfig::try_from(config).map_err(|_| internal("NoInitialCipherSuite"))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic_crypto));
    let mut transport = TransportConfig::default();
    let idle_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    transport.max_idle_timeout(Some(VarInt::from_u32(idle_ms).into()));
    client.transport_config(Arc::new(transport));

    // quinn swallows a send error and waits out its idle timeout, so a network without a route to
    // `addr` (no IPv6 at all, most often) would look like silence: ask the kernel for the route
    // first (connecting a UDP socket sends nothing) and fail at once, as a TCP connect does.
    drop(super::connected_udp(addr).await?);
    let bind: SocketAddr = if addr.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let endpoint = Endpoint::client(bind).map_err(|e| io_failure(&e))?;
    let connecting = endpoint
        .connect_with(client, addr, sni)
        .map_err(|e| (Failure::UnknownFailure, RawCode::named(CodeSpace::QuicError, None, &format!("{e:?}"))))?;
    let result = match connecting.await {
        Ok(conn) => {
            let alpn = conn
                .handshake_data()
                .and_then(|d| d.downcast::<HandshakeData>().ok())
                .and_then(|d| d.protocol)
                .map(|p| String::from_utf8_lossy(&p).into_owned());
            conn.close(VarInt::from_u32(0), b"done");
            Ok(alpn)
        }
        Err(err) => Err(connection_failure(&err)),
    };
    // Let the close frame leave, but never wait long for the peer.
    let _ = tokio::time::timeout(Duration::from_millis(100), endpoint.wait_idle()).await;
    result
}

/// Map a quinn connection error to OONI's failure and the raw QUIC code.
fn connection_failure(err: &ConnectionError) -> (Failure, RawCode) {
    let quic = |failure, code: Option<u64>, name: &str| {
        (failure, RawCode::named(CodeSpace::QuicError, code.and_then(|c| i64::try_from(c).ok()), name))
    };
    match err {
        ConnectionError::TimedOut => (Failure::GenericTimeoutError, RawCode::named(CodeSpace::QuicError, None, "TimedOut")),
        ConnectionError::VersionMismatch => quic(Failure::QuicIncompatibleVersion, None, "VersionMismatch"),
        ConnectionError::Reset => quic(Failure::ConnectionReset, None, "StatelessReset"),
        ConnectionError::TransportError(e) => transport_code_failure(u64::from(e.code)),
        ConnectionError::ConnectionClosed(close) => transport_code_failure(u64::from(close.error_code)),
        ConnectionError::ApplicationClosed(close) => {
            quic(Failure::SslFailedHandshake, Some(close.error_code.into_inner()), "ApplicationClosed")
        }
        ConnectionError::LocallyClosed => quic(Failure::UnknownFailure, None, "LocallyClosed"),
        ConnectionError::CidsExhausted => quic(Failure::UnknownFailure, None, "CidsExhausted"),
    }
}

/// Transport error codes (RFC 9000 §20.1); 0x100–0x1ff carry a TLS alert.
fn transport_code_failure(code: u64) -> (Failure, RawCode) {
    if (0x100..=0x1ff).contains(&code) {
        let alert = rustls::AlertDescription::from((code - 0x100) as u8);
        let (failure, _) = alert_failure(alert);
        return (failure, RawCode::named(CodeSpace::QuicError, i64::try_from(code).ok(), &format!("CRYPTO_ERROR({alert:?})")));
    }
    let (failure, name) = match code {
        0x2 => (Failure::ConnectionRefused, "CONNECTION_REFUSED"),
        0x1 => (Failure::SslFailedHandshake, "INTERNAL_ERROR"),
        0xa => (Failure::SslFailedHandshake, "PROTOCOL_VIOLATION"),
        _ => (Failure::SslFailedHandshake, "TRANSPORT_ERROR"),
    };
    (failure, RawCode::named(CodeSpace::QuicError, i64::try_from(code).ok(), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_errors_carry_the_alert() {
        let (f, raw) = transport_code_failure(0x100 + 48);
        assert_eq!(f, Failure::SslUnknownAuthority);
        assert_eq!(raw.code, Some(0x130));
        assert_eq!(transport_code_failure(0x2).0, Failure::ConnectionRefused);
    }

    #[tokio::test]
    async fn silence_is_a_timeout() {
        // A bound UDP socket that never answers: the Initial goes nowhere.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr");
        let ctx = StepContext::new(vantage_measurement::Vantage::Probe, Duration::from_millis(400));
        let obs = handshake(&ctx, Role::Target, addr, "target.example", &TrustAnchors::empty()).await;
        assert_eq!(obs.failure, Some(Failure::GenericTimeoutError), "{:?}", obs.raw);
        assert_eq!(obs.op, Operation::QuicHandshake);
    }
}
