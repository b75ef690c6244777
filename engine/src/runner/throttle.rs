//! Throttle runner: the same body downloaded from a reference endpoint under the control SNI and
//! the target SNI, interleaved, with the goodput of each (docs/throttling.md).
//!
//! Call order: for each pair `p` in `1..=pairs`, [`download`] with the control SNI, then with the
//! target SNI. Each download is `tcp::connect` (observation 1) → a TLS handshake trusting only
//! the endpoint's pinned certificates (observation 2) → `GET /` asking for `bytes` of body with a
//! `Range` header, read until that many body bytes arrived, EOF, or the step timeout
//! (observation 3, with the body bytes and the goodput). Every observation carries `trial = p`.
//!
//! Why control, target, control, target: the first control runs before the target name was ever
//! sent, so a residual penalty the target triggers can't slow it; alternating (rather than both
//! controls first) spreads drifting link conditions over both names alike; and a second control
//! slower than the first shows a penalty that outlived the target's flow. A `control_port` keeps
//! even that penalty away from the control (censors' residual state is per 3-tuple).

pub mod reference;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use vantage_measurement::{CodeSpace, DataDetail, Detail, Failure, Observation, Operation, RawCode, Role, TlsDetail};

use self::reference::Throughput;
use super::tls::{cert_detail, handshake_io_failure};
use super::verify::RecordingVerifier;
use super::{StepContext, ms, tcp, timeout_failure};

/// Pairs unless the target's `trials` asks for more.
pub const MIN_PAIRS: u32 = 2;
/// The most pairs (each is two downloads of `bytes`).
pub const MAX_PAIRS: u32 = 4;
/// The longest response head the endpoint may send.
const MAX_HEAD: usize = 8 * 1024;

/// Where and what to download: one reference endpoint, two names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottlePlan {
    /// The endpoint, for the target SNI.
    pub addr: SocketAddr,
    /// The endpoint's port for the control SNI (`control_port`, else the same).
    pub control_port: u16,
    /// The name under test.
    pub sni: String,
    /// The harmless name.
    pub control_sni: String,
    /// Pins and body size.
    pub throughput: Throughput,
    /// How many control-target pairs.
    pub pairs: u32,
}

/// The plan for `target` at `addr`; `None` without a `throughput` table (refused on load).
pub fn plan(target: &crate::targets::TargetSpec, addr: SocketAddr) -> Option<ThrottlePlan> {
    Some(ThrottlePlan {
        addr,
        control_port: target.control_port.unwrap_or(addr.port()),
        sni: target.domain.clone(),
        control_sni: target.control_sni.clone(),
        throughput: target.throughput.clone()?,
        pairs: target.trials.clamp(MIN_PAIRS, MAX_PAIRS),
    })
}

/// Run every pair, control first in each; the observations in order, each tagged with its pair.
pub async fn run(ctx: &StepContext, plan: &ThrottlePlan) -> Vec<Observation> {
    let control = SocketAddr::new(plan.addr.ip(), plan.control_port);
    let mut observations = Vec::new();
    for pair in 1..=plan.pairs.clamp(MIN_PAIRS, MAX_PAIRS) {
        for (role, addr, sni) in [(Role::Control, control, &plan.control_sni), (Role::Target, plan.addr, &plan.sni)] {
            let mut obs = download(ctx, role, addr, sni, &plan.throughput).await;
            obs.iter_mut().for_each(|o| o.trial = Some(pair));
            observations.extend(obs);
        }
    }
    observations
}

/// One download: connect, pinned handshake, then the body (skipped when the certificate is not
/// pinned: that server is not the reference endpoint, whatever it would send).
pub async fn download(ctx: &StepContext, role: Role, addr: SocketAddr, sni: &str, t: &Throughput) -> Vec<Observation> {
    let (connect_obs, stream) = tcp::connect(ctx, role, addr).await;
    let Some(stream) = stream else { return vec![connect_obs] };
    let step = ctx.step(Operation::TlsHandshake, role).peer(addr).sni(sni);
    let (outcome, detail) = pinned_handshake(ctx, stream, sni, &t.pins).await;
    let pinned = detail.verified == Some(true);
    let mut observations = vec![connect_obs];
    match outcome {
        Ok(mut tls) => {
            observations.push(step.finish(Ok(()), Some(Detail::Tls(detail))));
            if pinned {
                observations.push(fetch(ctx, role, addr, sni, t.bytes, &mut tls).await);
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), tls.shutdown()).await;
        }
        Err(failure) => observations.push(step.finish(Err(failure), Some(Detail::Tls(detail)))),
    }
    observations
}

/// A handshake that trusts exactly the pinned certificates. The detail's `verified` says whether
/// the leaf was pinned; its chain is kept only when it was not (evidence of who answered).
async fn pinned_handshake(
    ctx: &StepContext,
    stream: TcpStream,
    sni: &str,
    pins: &[[u8; 32]],
) -> (Result<TlsStream<TcpStream>, (Failure, RawCode)>, TlsDetail) {
    let (verifier, record) = RecordingVerifier::pinned(pins);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let internal = |name: &str| (Failure::UnknownFailure, RawCode::named(CodeSpace::TlsError, None, name));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth());
    let mut config = match config {
        Ok(c) => c,
        Err(_) => return (Err(internal("ProtocolVersions")), TlsDetail::default()),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let Ok(name) = ServerName::try_from(sni.to_string()) else {
        return (
            Err((Failure::SslInvalidHostname, RawCode::named(CodeSpace::TlsError, None, "InvalidServerName"))),
            TlsDetail::default(),
        );
    };
    let connector = TlsConnector::from(Arc::new(config));
    let outcome = ctx.within(async { connector.connect(name, stream).await.map_err(|e| handshake_io_failure(&e)) }).await;
    let mut detail = cert_detail(&record);
    if detail.verified == Some(true) {
        detail.peer_certificates.clear();
    }
    if let Ok(tls) = &outcome {
        let (_, conn) = tls.get_ref();
        detail.version = conn.protocol_version().map(|v| format!("{v:?}"));
        detail.cipher_suite = conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()));
    }
    (outcome, detail)
}

/// The request: the first `bytes` of the endpoint's body, under `sni` as Host.
pub fn request(sni: &str, bytes: u64) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {sni}\r\nUser-Agent: vantage-probe\r\nRange: bytes=0-{}\r\nConnection: close\r\n\r\n",
        bytes.saturating_sub(1)
    )
}

/// Where a complete response head ends (after its blank line) and its status code; `None` while
/// incomplete or when the first line is not an HTTP status line.
pub fn parse_head(buf: &[u8]) -> Option<(usize, u16)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let line = buf[..end].split(|b| *b == b'\n').next()?;
    let mut words = std::str::from_utf8(line).ok()?.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/1."))?;
    let status = words.next()?.parse().ok()?;
    Some((end, status))
}

/// Goodput in bytes per second over `elapsed_ms` (at least one millisecond).
pub fn goodput(bytes: u64, elapsed_ms: f64) -> u64 {
    (bytes as f64 * 1000.0 / elapsed_ms.max(1.0)) as u64
}

/// The data step: the request, the head, then the body until `want` bytes, EOF or the timeout.
async fn fetch<S>(ctx: &StepContext, role: Role, addr: SocketAddr, sni: &str, want: u64, tls: &mut S) -> Observation
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let step = ctx.step(Operation::Data, role).peer(addr).sni(sni);
    let started = Instant::now();
    let deadline = started + ctx.timeout;
    let request = request(sni, want);
    let mut detail = DataDetail { bytes_sent: request.len() as u64, body_bytes: Some(0), ..DataDetail::default() };
    let mut outcome = match tokio::time::timeout_at(deadline, tls.write_all(request.as_bytes())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(handshake_io_failure(&e)),
        Err(_) => Err(timeout_failure(ctx.timeout)),
    };
    let (mut head, mut in_head, mut body) = (Vec::new(), true, 0u64);
    let mut buf = vec![0u8; 16 * 1024];
    while outcome.is_ok() && body < want {
        let n = match tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            // Servers often close without close_notify: the data ended, nothing failed.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Ok(Err(e)) => {
                outcome = Err(handshake_io_failure(&e));
                break;
            }
            Err(_) => {
                outcome = Err(timeout_failure(ctx.timeout));
                break;
            }
        };
        detail.bytes_received += n as u64;
        let now = ms(started.elapsed());
        detail.last_byte_ms = Some(now);
        let fresh = if in_head {
            head.extend_from_slice(&buf[..n]);
            match parse_head(&head) {
                Some((end, status)) if (200..300).contains(&status) => {
                    in_head = false;
                    (head.len() - end) as u64
                }
                Some((_, status)) => {
                    outcome =
                        Err((Failure::UnknownFailure, RawCode::named(CodeSpace::Protocol, Some(status.into()), "http_status")));
                    0
                }
                None if head.len() > MAX_HEAD => {
                    outcome = Err((Failure::UnknownFailure, RawCode::named(CodeSpace::Protocol, None, "http_head")));
                    0
                }
                None => 0,
            }
        } else {
            n as u64
        };
        if fresh > 0 {
            detail.first_byte_ms.get_or_insert(now);
            body += fresh;
        }
    }
    let body = body.min(want);
    // A complete body is timed to its last byte; an incomplete one to when the probe stopped.
    let elapsed = match detail.last_byte_ms {
        Some(last) if body >= want => last,
        _ => ms(started.elapsed()),
    };
    detail.body_bytes = Some(body);
    detail.goodput_bytes_per_s = Some(goodput(body, elapsed));
    step.finish(outcome, Some(Detail::Data(detail)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_asks_for_exactly_the_body_size_under_the_name() {
        let r = request("twitter.example", 131072);
        assert!(r.starts_with("GET / HTTP/1.1\r\nHost: twitter.example\r\n"));
        assert!(r.contains("\r\nRange: bytes=0-131071\r\n") && r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn response_heads_parse_only_when_complete() {
        let head = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/262144\r\n\r\nBODY";
        assert_eq!(parse_head(head), Some((head.len() - 4, 206)));
        assert_eq!(parse_head(&head[..20]), None);
        assert_eq!(parse_head(b"HTTP/1.1 404 Not Found\r\n\r\n"), Some((26, 404)));
        assert_eq!(parse_head(b"SSH-2.0-x\r\n\r\n"), None);
    }

    /// A loopback endpoint with a fresh self-signed certificate: any SNI, `206` and `body` bytes.
    async fn endpoint(body: usize) -> (SocketAddr, [u8; 32]) {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use sha2::{Digest, Sha256};
        let cert = rcgen::generate_simple_self_signed(vec!["endpoint.test".to_string()]).expect("certificate");
        let der = cert.cert.der().clone();
        let pin: [u8; 32] = Sha256::digest(der.as_ref()).into();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else { return };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    let mut response = format!("HTTP/1.1 206 Partial Content\r\nContent-Length: {body}\r\n\r\n").into_bytes();
                    response.resize(response.len() + body, 0x5a);
                    let _ = tls.write_all(&response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (addr, pin)
    }

    #[tokio::test]
    async fn a_pinned_endpoint_is_downloaded_and_any_other_is_not() {
        let (addr, pin) = endpoint(reference::MIN_BYTES as usize).await;
        let ctx = StepContext::new(vantage_measurement::Vantage::Probe, std::time::Duration::from_secs(5));
        let pinned = Throughput { pins: vec![[7; 32], pin], bytes: reference::MIN_BYTES };
        let obs = download(&ctx, Role::Target, addr, "twitter.example", &pinned).await;
        let ops: Vec<Operation> = obs.iter().map(|o| o.op).collect();
        assert_eq!(ops, [Operation::Connect, Operation::TlsHandshake, Operation::Data]);
        assert!(obs.iter().all(|o| o.failure.is_none()), "{obs:?}");
        assert!(obs[1..].iter().all(|o| o.sni.as_deref() == Some("twitter.example")));
        let Some(Detail::Tls(tls)) = &obs[1].detail else { panic!("no tls detail") };
        assert_eq!(tls.verified, Some(true));
        assert!(tls.peer_certificates.is_empty() && tls.leaf_sha256.is_some(), "the pin says which certificate");
        let Some(Detail::Data(data)) = &obs[2].detail else { panic!("no data detail") };
        assert_eq!(data.body_bytes, Some(reference::MIN_BYTES));
        assert!(data.bytes_received > reference::MIN_BYTES && data.first_byte_ms.is_some());
        assert!(data.goodput_bytes_per_s.is_some_and(|g| g > 0));

        let stranger = Throughput { pins: vec![[7; 32]], bytes: reference::MIN_BYTES };
        let obs = download(&ctx, Role::Control, addr, "example.org", &stranger).await;
        assert_eq!(obs.len(), 2, "nothing is downloaded from a server that is not the pinned one");
        let Some(Detail::Tls(tls)) = &obs[1].detail else { panic!("no tls detail") };
        assert_eq!((tls.verified, tls.verify_failure), (Some(false), Some(Failure::SslInvalidCertificate)));
        assert_eq!(tls.peer_certificates.len(), 1, "an unpinned chain is kept as evidence");
    }

    #[tokio::test]
    async fn a_run_interleaves_control_and_target_and_numbers_the_pairs() {
        let (addr, pin) = endpoint(reference::MIN_BYTES as usize).await;
        let ctx = StepContext::new(vantage_measurement::Vantage::Probe, std::time::Duration::from_secs(5));
        let plan = ThrottlePlan {
            addr,
            control_port: addr.port(),
            sni: "twitter.example".into(),
            control_sni: "example.org".into(),
            throughput: Throughput { pins: vec![pin], bytes: reference::MIN_BYTES },
            pairs: 2,
        };
        let obs = run(&ctx, &plan).await;
        let data: Vec<(Option<u32>, Role)> = obs.iter().filter(|o| o.op == Operation::Data).map(|o| (o.trial, o.role)).collect();
        assert_eq!(data, [(Some(1), Role::Control), (Some(1), Role::Target), (Some(2), Role::Control), (Some(2), Role::Target)]);
        assert_eq!(crate::classify::throttle::classify(&obs).status, vantage_measurement::Status::Ok);
    }

    #[test]
    fn goodput_is_bytes_per_second() {
        assert_eq!(goodput(131072, 1000.0), 131072);
        assert_eq!(goodput(131072, 7500.0), 17476);
        assert_eq!(goodput(10, 0.0), 10_000, "a zero duration counts as one millisecond");
    }
}
