//! TLS runner: TCP connect, then a handshake with one SNI, recording what the server showed.
//!
//! Call order for one step: [`handshake`] → `tcp::connect` (observation 1) → rustls handshake
//! under the step timeout (observation 2, with [`TlsDetail`]) → optionally a data phase
//! (observation 3) → close.
//!
//! The data phase exists because censors also act *after* the handshake: flows that freeze after
//! 16–20 KB, or are throttled to a trickle. It sends one plain `GET /` and reads at most
//! [`DATA_LIMIT`] bytes, recording how many arrived and when the last one did, so the classifier
//! can tell a freeze (silence long before the deadline) from throttling (bytes still trickling).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use vantage_measurement::{CodeSpace, DataDetail, Detail, Failure, Observation, Operation, RawCode, Role, TlsDetail};

use super::ech::{self, Ech};
use super::verify::{CertRecord, TrustAnchors};
use super::{StepContext, io_failure, ms, tcp, timeout_failure};
use base64::Engine as _;

/// ALPN offered over TCP. HTTP/1.1 only: the data phase speaks it.
pub(crate) const TCP_ALPN: &[&[u8]] = &[b"http/1.1"];

/// The most bytes the data phase reads.
pub const DATA_LIMIT: usize = 64 * 1024;

/// Whether to run the data phase after a successful handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPhase {
    /// Handshake only.
    Skip,
    /// Send `GET /` and read up to [`DATA_LIMIT`] bytes.
    Fetch,
}

/// Connect to `addr` and handshake with `sni`; returns the connect and handshake observations.
pub async fn handshake(
    ctx: &StepContext,
    role: Role,
    addr: SocketAddr,
    sni: &str,
    anchors: &TrustAnchors,
    data: DataPhase,
) -> Vec<Observation> {
    handshake_offering(ctx, role, addr, sni, anchors, data, Ech::Off).await
}

/// [`handshake`] with a ClientHello shaped for the ECH pair (see [`super::ech`]).
pub async fn handshake_offering(
    ctx: &StepContext,
    role: Role,
    addr: SocketAddr,
    sni: &str,
    anchors: &TrustAnchors,
    data: DataPhase,
    ech: Ech,
) -> Vec<Observation> {
    let (connect_obs, stream) = tcp::connect(ctx, role, addr).await;
    let Some(stream) = stream else { return vec![connect_obs] };
    let step = ctx.step(Operation::TlsHandshake, role).peer(addr).sni(sni);
    let (outcome, detail) = handshake_on(ctx, stream, sni, anchors, TCP_ALPN, ech).await;
    let mut data_obs = None;
    let outcome = match outcome {
        Ok(mut tls) => {
            if data == DataPhase::Fetch {
                data_obs = Some(fetch(ctx, role, addr, sni, &mut tls).await);
            }
            // A polite close; the server's reaction is irrelevant, so don't wait for it.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), tls.shutdown()).await;
            Ok(())
        }
        Err(failure) => Err(failure),
    };
    let mut observations = vec![connect_obs, step.finish(outcome, Some(Detail::Tls(detail)))];
    observations.extend(data_obs);
    observations
}

/// A TLS handshake with `sni` on a connected stream, recording the certificate whatever its
/// trust, and version, ALPN and cipher suite when the handshake completes. Shared by the TLS
/// test and the Tor OR-port test.
pub(crate) async fn handshake_on(
    ctx: &StepContext,
    stream: TcpStream,
    sni: &str,
    anchors: &TrustAnchors,
    alpn: &[&[u8]],
    ech: Ech,
) -> (Result<TlsStream<TcpStream>, (Failure, RawCode)>, TlsDetail) {
    let prepared = client_config_offering(anchors, alpn, ech).and_then(|(config, record)| {
        let name = ServerName::try_from(sni.to_string())
            .map_err(|_| (Failure::SslInvalidHostname, RawCode::named(CodeSpace::TlsError, None, "InvalidServerName")))?;
        Ok((config, record, name))
    });
    let (config, record, name) = match prepared {
        Ok(p) => p,
        Err(failure) => return (Err(failure), TlsDetail::default()),
    };
    let connector = TlsConnector::from(Arc::new(config));
    let outcome = ctx.within(async { connector.connect(name, stream).await.map_err(|e| handshake_io_failure(&e)) }).await;
    let mut detail = cert_detail(&record);
    detail.ech = ech.offer();
    if let Ok(tls) = &outcome {
        let (_, conn) = tls.get_ref();
        detail.version = conn.protocol_version().map(|v| format!("{v:?}"));
        detail.alpn = conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
        detail.cipher_suite = conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()));
    }
    (outcome, detail)
}

/// The data phase: one `GET /`, then read until EOF, [`DATA_LIMIT`] bytes, or the timeout.
async fn fetch<S>(ctx: &StepContext, role: Role, addr: SocketAddr, sni: &str, tls: &mut S) -> Observation
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let step = ctx.step(Operation::Data, role).peer(addr).sni(sni);
    let started = tokio::time::Instant::now();
    let request = format!("GET / HTTP/1.1\r\nHost: {sni}\r\nUser-Agent: vantage-probe\r\nConnection: close\r\n\r\n");
    let mut detail = DataDetail { bytes_sent: request.len() as u64, ..DataDetail::default() };
    let deadline = started + ctx.timeout;
    let mut outcome = match tokio::time::timeout_at(deadline, tls.write_all(request.as_bytes())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(handshake_io_failure(&e)),
        Err(_) => Err(timeout_failure(ctx.timeout)),
    };
    let mut buf = vec![0u8; 16 * 1024];
    while outcome.is_ok() && (detail.bytes_received as usize) < DATA_LIMIT {
        match tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                detail.bytes_received += n as u64;
                detail.last_byte_ms = Some(ms(started.elapsed()));
            }
            // Servers often close without close_notify: the data ended, nothing failed.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Ok(Err(e)) => outcome = Err(handshake_io_failure(&e)),
            Err(_) => outcome = Err(timeout_failure(ctx.timeout)),
        }
    }
    step.finish(outcome, Some(Detail::Data(detail)))
}

/// A client config and the certificate record its verifier fills.
pub type RecordingConfig = (ClientConfig, Arc<Mutex<CertRecord>>);

/// A client config whose verifier records instead of aborting, plus the record it fills.
pub(crate) fn client_config(anchors: &TrustAnchors, alpn: &[&[u8]]) -> Result<RecordingConfig, (Failure, RawCode)> {
    client_config_offering(anchors, alpn, Ech::Off)
}

/// [`client_config`] with the ClientHello's ECH shape: [`Ech::Control`] and [`Ech::Grease`] offer
/// TLS 1.3 only (rustls requires it with ECH), so the pair differs by the extension alone.
pub fn client_config_offering(anchors: &TrustAnchors, alpn: &[&[u8]], ech: Ech) -> Result<RecordingConfig, (Failure, RawCode)> {
    let internal = |name: &str| (Failure::UnknownFailure, RawCode::named(CodeSpace::TlsError, None, name));
    let (verifier, record) = anchors.recording_verifier().map_err(|_| internal("VerifierSetup"))?;
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()));
    let versions = match ech {
        Ech::Off => builder.with_safe_default_protocol_versions(),
        Ech::Control => builder.with_protocol_versions(&[&rustls::version::TLS13]),
        Ech::Grease => ech::grease_mode().and_then(|mode| builder.with_ech(mode)),
    };
    let mut config = versions
        .map_err(|_| internal("ProtocolVersions"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok((config, record))
}

/// The certificate part of the detail, from what the verifier recorded.
pub(crate) fn cert_detail(record: &Mutex<CertRecord>) -> TlsDetail {
    let Ok(record) = record.lock() else { return TlsDetail::default() };
    TlsDetail {
        peer_certificates: record.chain.iter().map(|c| base64::engine::general_purpose::STANDARD.encode(c)).collect(),
        leaf_sha256: record.leaf_sha256(),
        verified: record.verified,
        verify_failure: record.failure,
        ..TlsDetail::default()
    }
}

/// tokio-rustls reports TLS errors as `io::Error` wrapping a `rustls::Error`; unwrap that first.
pub(crate) fn handshake_io_failure(err: &io::Error) -> (Failure, RawCode) {
    match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => tls_failure(tls),
        None => io_failure(err),
    }
}

/// Map a rustls error to OONI's failure and the raw alert or error name.
pub(crate) fn tls_failure(err: &rustls::Error) -> (Failure, RawCode) {
    match err {
        rustls::Error::AlertReceived(alert) => alert_failure(*alert),
        other => {
            // The variant name only: payloads may carry peer-controlled text.
            let debug = format!("{other:?}");
            let name = debug.split(['(', ' ', '{']).next().unwrap_or("Other");
            (Failure::SslFailedHandshake, RawCode::named(CodeSpace::TlsError, None, name))
        }
    }
}

/// OONI's mapping of received alerts (netxlite classify.go).
pub(crate) fn alert_failure(alert: AlertDescription) -> (Failure, RawCode) {
    let code = i64::from(u8::from(alert));
    let failure = match code {
        42..=46 => Failure::SslInvalidCertificate,
        48 => Failure::SslUnknownAuthority,
        112 => Failure::SslInvalidHostname,
        _ => Failure::SslFailedHandshake,
    };
    (failure, RawCode::named(CodeSpace::TlsAlert, Some(code), &format!("{alert:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_map_like_ooni() {
        assert_eq!(alert_failure(AlertDescription::UnrecognisedName).0, Failure::SslInvalidHostname);
        assert_eq!(alert_failure(AlertDescription::UnknownCA).0, Failure::SslUnknownAuthority);
        assert_eq!(alert_failure(AlertDescription::CertificateExpired).0, Failure::SslInvalidCertificate);
        let (f, raw) = alert_failure(AlertDescription::HandshakeFailure);
        assert_eq!(f, Failure::SslFailedHandshake);
        assert_eq!(raw.code, Some(40));
        assert_eq!(raw.space, CodeSpace::TlsAlert);
    }

    #[test]
    fn non_alert_errors_keep_only_the_variant_name() {
        let (f, raw) = tls_failure(&rustls::Error::General("peer said 203.0.113.9".into()));
        assert_eq!(f, Failure::SslFailedHandshake);
        assert_eq!(raw.name.as_deref(), Some("General"));
    }
}
