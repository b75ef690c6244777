//! Encrypted-DNS runners: DNS over TLS (`dot`, RFC 7858) and DNS over HTTPS (`doh`, RFC 8484).
//!
//! Call order for one step: `tcp::connect` (observation 1) → TLS handshake with the resolver's
//! name as SNI (observation 2, the same handshake and certificate record as the `tls` test) → one
//! query for a harmless name (observation 3, `resolve` with engine `dot` or `doh`) → close.
//!
//! The query is sent only over a certificate that verified for the resolver's name: a client
//! that meets an impostor stops there, and the handshake step already holds the evidence. The
//! reply must be a well-formed DNS response to our query (its id and question); for DoH also a
//! 2xx with `application/dns-message`. DoT queries carry a random id; DoH queries id 0, as RFC
//! 8484 §4.1 asks, and the reply must echo it.
//!
//! The framing and the checks are in [`codec`] (pure); this file only moves bytes under the step
//! timeout. DoH speaks HTTP/1.1 (ALPN `http/1.1`), one POST per connection; DoT offers no ALPN.

pub mod codec;

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use vantage_measurement::{
    CodeSpace, Detail, DnsDetail, DnsEngine, DnsReply, Failure, Observation, Operation, RawCode, Role, TestKind,
};

use self::codec::AnswerError;
use super::dns::{self, QueryType, codec as dns_codec};
use super::tls::{handshake_io_failure, handshake_on};
use super::verify::TrustAnchors;
use super::{StepContext, ms, tcp};
use crate::step::TargetStep;
use crate::targets::{ResolverParams, TargetSpec};

/// The name queried when a resolver target names none: harmless everywhere.
pub const DEFAULT_QUERY: &str = "example.org";
/// The DoH path when a resolver target names none (RFC 8484's example, and most resolvers').
pub const DEFAULT_DOH_PATH: &str = "/dns-query";
/// The DoT port (RFC 7858 §3.1).
pub const DOT_PORT: u16 = 853;
/// The DoH port.
pub const DOH_PORT: u16 = 443;

/// What a DoH step asks, besides the endpoint and SNI.
#[derive(Clone, Copy, Debug)]
pub struct DohQuery<'a> {
    /// The request path (`/dns-query`).
    pub path: &'a str,
    /// The name asked for (A record).
    pub name: &'a str,
}

/// DNS over TLS: connect, handshake with `sni`, one A query for `name`.
pub async fn dot(
    ctx: &StepContext,
    role: Role,
    addr: SocketAddr,
    sni: &str,
    name: &str,
    anchors: &TrustAnchors,
) -> Vec<Observation> {
    let id: u16 = rand::random();
    let (mut observations, mut tls) = connect_and_handshake(ctx, role, addr, sni, anchors, &[]).await;
    let Some(tls) = tls.as_mut() else { return observations };
    let step = ctx.step(Operation::Resolve, role).peer(addr).sni(sni);
    let started = tokio::time::Instant::now();
    let outcome = ctx
        .within(async {
            let query = dns_codec::build_query(id, name, QueryType::A)
                .map_err(|_| fixed(Failure::UnknownFailure, "invalid_query_name"))?;
            let framed = codec::dot_frame(&query).ok_or_else(|| fixed(Failure::UnknownFailure, "query_too_long"))?;
            tls.write_all(&framed).await.map_err(|e| handshake_io_failure(&e))?;
            let mut prefix = [0u8; 2];
            tls.read_exact(&mut prefix).await.map_err(|e| handshake_io_failure(&e))?;
            let mut reply = vec![0u8; codec::dot_length(prefix)];
            tls.read_exact(&mut reply).await.map_err(|e| handshake_io_failure(&e))?;
            Ok(reply)
        })
        .await;
    let reply = outcome.and_then(|bytes| codec::check_reply(&bytes, id, name, QueryType::A).map_err(answer_failure));
    observations.push(finish_query(step, DnsEngine::Dot, sni, name, reply, ms(started.elapsed())));
    close(tls).await;
    observations
}

/// DNS over HTTPS: connect, handshake with `sni`, one POST of an A query for `query.name`.
pub async fn doh(
    ctx: &StepContext,
    role: Role,
    addr: SocketAddr,
    sni: &str,
    query: DohQuery<'_>,
    anchors: &TrustAnchors,
) -> Vec<Observation> {
    let (mut observations, mut tls) = connect_and_handshake(ctx, role, addr, sni, anchors, &[b"http/1.1"]).await;
    let Some(tls) = tls.as_mut() else { return observations };
    let step = ctx.step(Operation::Resolve, role).peer(addr).sni(sni);
    let started = tokio::time::Instant::now();
    let outcome = ctx
        .within(async {
            let message = dns_codec::build_query(0, query.name, QueryType::A)
                .map_err(|_| fixed(Failure::UnknownFailure, "invalid_query_name"))?;
            tls.write_all(&codec::doh_request(sni, query.path, &message)).await.map_err(|e| handshake_io_failure(&e))?;
            read_to_close(tls).await
        })
        .await;
    let reply = outcome.and_then(|bytes| codec::check_doh_response(&bytes, 0, query.name, QueryType::A).map_err(answer_failure));
    observations.push(finish_query(step, DnsEngine::Doh, sni, query.name, reply, ms(started.elapsed())));
    close(tls).await;
    observations
}

/// The step of a `dot` or `doh` test of `target` at `addr` (its resolver parameters, or the
/// defaults).
pub fn step(test: TestKind, target: &TargetSpec, addr: SocketAddr) -> TargetStep {
    let params = target.resolver.as_deref().cloned().unwrap_or_default();
    TargetStep::EncryptedDns { test, addr, sni: target.domain.clone(), params }
}

/// Run a `dot` or `doh` step (any other test runs nothing).
pub async fn run(
    ctx: &StepContext,
    role: Role,
    test: TestKind,
    addr: SocketAddr,
    sni: &str,
    params: &ResolverParams,
    anchors: &TrustAnchors,
) -> Vec<Observation> {
    match test {
        TestKind::Dot => dot(ctx, role, addr, sni, &params.query, anchors).await,
        TestKind::Doh => doh(ctx, role, addr, sni, DohQuery { path: &params.doh_path, name: &params.query }, anchors).await,
        _ => Vec::new(),
    }
}

/// The probe's side of one `dot`/`doh` trial: a handshake with the target's control SNI to the
/// same address and port (SNI or not: the `tls` test's control) and then the target step; beside
/// them, a bare TCP connect to [`other_port`] on the same address (port or address), so its
/// timeout, when that port is blocked, overlaps theirs instead of adding to them. Recorded in that order: control SNI, other port, target.
///
/// The control SNI runs before the target, so a residual penalty the target's SNI triggers can't
/// reach it. The other-port connect carries nothing a censor could key on, and is only read when
/// the target's connect failed, i.e. before any SNI was sent.
pub async fn probe_trial(ctx: &StepContext, target: &TargetSpec, step: &TargetStep, anchors: &TrustAnchors) -> Vec<Observation> {
    let TargetStep::EncryptedDns { test, addr, sni, params } = step else { return Vec::new() };
    let sequence = async {
        let control =
            super::tls::handshake(ctx, Role::Control, *addr, &target.control_sni, anchors, super::tls::DataPhase::Skip).await;
        (control, run(ctx, Role::Target, *test, *addr, sni, params, anchors).await)
    };
    let other = tcp::connect(ctx, Role::Control, SocketAddr::new(addr.ip(), other_port(*test)));
    let ((mut obs, target_obs), (other, _)) = tokio::join!(sequence, other);
    obs.push(other);
    obs.extend(target_obs);
    obs
}

/// The port on the same address that tells a blocked port from a blocked address: DoH's for a
/// DoT target and DoT's for a DoH target (the public resolvers serve both on every address).
pub fn other_port(test: TestKind) -> u16 {
    if test == TestKind::Dot { DOH_PORT } else { DOT_PORT }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// The connect and handshake observations, and the stream when the query may go on (the handshake
/// completed with a certificate that verified for `sni`).
async fn connect_and_handshake(
    ctx: &StepContext,
    role: Role,
    addr: SocketAddr,
    sni: &str,
    anchors: &TrustAnchors,
    alpn: &[&[u8]],
) -> (Vec<Observation>, Option<Tls>) {
    let (connect_obs, stream) = tcp::connect(ctx, role, addr).await;
    let Some(stream) = stream else { return (vec![connect_obs], None) };
    let step = ctx.step(Operation::TlsHandshake, role).peer(addr).sni(sni);
    let (outcome, detail) = handshake_on(ctx, stream, sni, anchors, alpn, crate::runner::ech::Ech::Off).await;
    let verified = detail.verified == Some(true);
    let (outcome, tls) = match outcome {
        Ok(tls) => (Ok(()), verified.then_some(tls)),
        Err(failure) => (Err(failure), None),
    };
    (vec![connect_obs, step.finish(outcome, Some(Detail::Tls(detail)))], tls)
}

/// Read until the server closes (it was asked to), at most [`codec::MAX_HTTP_RESPONSE`] + 1 bytes.
async fn read_to_close<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, (Failure, RawCode)> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    while bytes.len() <= codec::MAX_HTTP_RESPONSE {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            // Servers often close without close_notify: the response ended, nothing failed.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !bytes.is_empty() => break,
            Err(e) => return Err(handshake_io_failure(&e)),
        }
    }
    Ok(bytes)
}

/// A polite close whose answer we don't wait for.
async fn close<S: AsyncWrite + Unpin>(tls: &mut S) {
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), tls.shutdown()).await;
}

/// The query observation: one reply (when one came) and its outcome.
fn finish_query(
    step: super::StepRecorder,
    engine: DnsEngine,
    resolver: &str,
    name: &str,
    reply: Result<dns_codec::ParsedReply, (Failure, RawCode)>,
    after_ms: f64,
) -> Observation {
    let mut detail = DnsDetail {
        engine,
        resolver: Some(resolver.to_string()),
        query_name: name.to_string(),
        query_type: QueryType::A.as_str().to_string(),
        replies: Vec::new(),
    };
    let outcome = match reply {
        Ok(r) => {
            let outcome = dns::reply_outcome(r.rcode, !r.answers.is_empty());
            detail.replies.push(DnsReply {
                after_ms,
                rcode: r.rcode_name().to_string(),
                answers: r.answers,
                has_soa: r.has_soa,
                ip_ttl: None,
            });
            outcome
        }
        Err(failure) => Err(failure),
    };
    step.finish(outcome, Some(Detail::Dns(detail)))
}

/// A reply that is not an answer to our query, as failure + fixed raw name.
fn answer_failure(err: AnswerError) -> (Failure, RawCode) {
    let failure = match err {
        AnswerError::WrongId => Failure::DnsReplyWithWrongQueryId,
        _ => Failure::DnsServerMisbehaving,
    };
    fixed(failure, &err.to_string())
}

fn fixed(failure: Failure, name: &str) -> (Failure, RawCode) {
    (failure, RawCode::named(CodeSpace::DnsRcode, None, name))
}

#[cfg(test)]
mod tests;
