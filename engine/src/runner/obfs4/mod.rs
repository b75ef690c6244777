//! obfs4 runner: the bridge handshake, a data phase past the volume cuts, and the low-entropy
//! control.
//!
//! One trial, as `measure` runs it:
//!
//! 1. [`control`]: printable text as long as the obfs4 flow will be, to a TCP echo on the same
//!    port number at the endpoint's echo address. Censors of fully encrypted traffic exempt
//!    exactly this (Wu et al., USENIX Security 2023: printable first bytes, more than half
//!    printable), so it passes where the bridge's flow is cut, and is lost where the port is;
//! 2. [`handshake`]: TCP connect, the client request (random padding of obfs4proxy's length
//!    range), the bridge's response verified (mark, MAC, ntor AUTH: only the bridge holding the
//!    cert's key can answer); observation `vpn_handshake`;
//! 3. the data phase (probe only): [`DATA_BYTES`] of padding frames, which the bridge
//!    authenticates and discards, then a TLS ClientHello as payload, which the bridge forwards
//!    to its upstream (Tor's OR port speaks TLS); the phase succeeds when upstream data comes
//!    back through the tunnel. Observation `data`.
//!
//! The cert and every key stay in memory: observations carry stages, counts, byte totals and
//! fixed reply names only.

pub mod bridge;
pub mod codec;

use std::net::SocketAddr;
use std::sync::Arc;

use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vantage_measurement::{Detail, Failure, Observation, Operation, RawCode, Role, VpnDetail, VpnProtocol, VpnReply, VpnStage};

use self::codec::{BridgeCert, ClientHandshake, ClientKey, CodecError, Decoder, Encoder, Established};
use crate::runner::tls::DataPhase;
use crate::runner::vpn::{random_bytes, rejected, unix_now};
use crate::runner::{StepContext, io_failure, tcp};

/// Bytes of padding frames sent through the tunnel before the upstream probe: past the ~50 KB
/// at which some censors cut fully encrypted flows (and the 16–20 KB freezes seen in Russia).
pub const DATA_BYTES: usize = 64 * 1024;

/// Connect to the bridge at `addr`, handshake, and (with [`DataPhase::Fetch`]) run the data phase.
pub async fn handshake(ctx: &StepContext, role: Role, addr: SocketAddr, cert: &BridgeCert, data: DataPhase) -> Vec<Observation> {
    let (connect_obs, stream) = tcp::connect(ctx, role, addr).await;
    let Some(mut stream) = stream else { return vec![connect_obs] };
    let step = ctx.step(Operation::VpnHandshake, role).peer(addr);
    let mut detail = VpnDetail { protocol: VpnProtocol::Obfs4, stage_reached: VpnStage::Connected, ..VpnDetail::default() };
    let request = client_request(cert);
    let mut rest = Vec::new();
    let outcome = ctx.within(exchange(&mut stream, &request, &mut detail, &mut rest)).await;
    let (session, outcome) = match outcome {
        Ok(est) => (Some(est), Ok(())),
        Err(failure) => (None, Err(failure)),
    };
    let handshake_obs = step.finish(outcome, Some(Detail::Vpn(detail)));
    let (Some(est), DataPhase::Fetch) = (session, data) else { return vec![connect_obs, handshake_obs] };
    let step = ctx.step(Operation::Data, role).peer(addr);
    let mut detail = VpnDetail { protocol: VpnProtocol::Obfs4, stage_reached: VpnStage::Handshake, ..VpnDetail::default() };
    let outcome = ctx.within(tunnel(&mut stream, est, rest, &mut detail)).await;
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), stream.shutdown()).await;
    vec![connect_obs, handshake_obs, step.finish(outcome, Some(Detail::Vpn(detail)))]
}

/// What the probe sends in one trial: the request's expected length plus the data phase
/// (padding frames and the ClientHello frame), for the control to match.
pub fn expected_flow_len() -> usize {
    let pad_mean = (codec::CLIENT_MIN_PAD + codec::CLIENT_MAX_PAD) / 2;
    64 + pad_mean + padding_frames() * codec::MAX_SEGMENT + codec::MAX_SEGMENT
}

fn padding_frames() -> usize {
    DATA_BYTES.div_ceil(codec::MAX_SEGMENT)
}

/// A fresh key and padding, and the request for them.
fn client_request(cert: &BridgeCert) -> ClientHandshake {
    let key = loop {
        let secret: [u8; 32] = random_bytes();
        let [tweak] = random_bytes::<1>();
        if let Some(key) = ClientKey::new(secret, tweak) {
            break key;
        }
    };
    ClientHandshake::new(cert.clone(), key, unix_now().0 / 3600)
}

async fn exchange(
    stream: &mut TcpStream,
    hs: &ClientHandshake,
    detail: &mut VpnDetail,
    rest: &mut Vec<u8>,
) -> Result<Established, (Failure, RawCode)> {
    let span = codec::CLIENT_MAX_PAD - codec::CLIENT_MIN_PAD + 1;
    let pad_len = codec::CLIENT_MIN_PAD + usize::try_from(rand::rng().next_u32()).unwrap_or(0) % span;
    let mut pad = vec![0u8; pad_len];
    rand::rng().fill_bytes(&mut pad);
    let request = hs.request(&pad);
    detail.first_packet_len = u32::try_from(request.len()).ok();
    stream.write_all(&request).await.map_err(|e| io_failure(&e))?;
    detail.packets_sent = 1;
    detail.bytes_sent = Some(request.len() as u64);
    detail.stage_reached = VpnStage::Sent;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        match hs.finish(&buf) {
            Ok(est) => {
                detail.stage_reached = VpnStage::Handshake;
                detail.reply = Some(VpnReply::ServerHandshake);
                rest.extend_from_slice(&buf[est.consumed..]);
                return Ok(est);
            }
            Err(CodecError::Incomplete) => {}
            Err(e) => {
                detail.stage_reached = VpnStage::Reply;
                detail.reply_error = Some(e.name().into());
                return Err(rejected(e.name()));
            }
        }
        let n = read_some(stream, &mut chunk).await?;
        detail.packets_received += 1;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The data phase: padding frames, then a ClientHello for the upstream, until upstream data
/// comes back.
async fn tunnel(
    stream: &mut TcpStream,
    est: Established,
    mut buf: Vec<u8>,
    detail: &mut VpnDetail,
) -> Result<(), (Failure, RawCode)> {
    let Established { mut encoder, mut decoder, .. } = est;
    let mut out = Vec::with_capacity(padding_frames() * codec::MAX_SEGMENT + codec::MAX_SEGMENT);
    for _ in 0..padding_frames() {
        out.extend(encoder.frame(codec::PACKET_PAYLOAD, &[], codec::MAX_PACKET_BODY).map_err(|e| rejected(e.name()))?);
    }
    let hello = client_hello()?;
    let hello_frames = frames_for(&mut encoder, &hello)?;
    let frames = padding_frames() + hello_frames.len();
    detail.first_packet_len = Some(codec::MAX_SEGMENT as u32);
    for f in hello_frames {
        out.extend(f);
    }
    detail.stage_reached = VpnStage::Sent;
    detail.bytes_sent = Some(out.len() as u64);
    detail.packets_sent = u32::try_from(frames).unwrap_or(u32::MAX);
    stream.write_all(&out).await.map_err(|e| io_failure(&e))?;
    let mut chunk = vec![0u8; 16384];
    loop {
        if upstream_answered(&mut decoder, &mut buf, detail)? {
            detail.stage_reached = VpnStage::Data;
            detail.reply = Some(VpnReply::TunnelData);
            return Ok(());
        }
        let n = read_some(stream, &mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Decode what is buffered; `true` once a payload packet with data arrived.
fn upstream_answered(decoder: &mut Decoder, buf: &mut Vec<u8>, detail: &mut VpnDetail) -> Result<bool, (Failure, RawCode)> {
    loop {
        match decoder.packet(buf) {
            Ok(p) => {
                detail.packets_received += 1;
                if p.kind == codec::PACKET_PAYLOAD && !p.payload.is_empty() {
                    return Ok(true);
                }
            }
            Err(CodecError::Incomplete) => return Ok(false),
            Err(e) => {
                detail.reply_error = Some(e.name().into());
                return Err(rejected(e.name()));
            }
        }
    }
}

fn frames_for(encoder: &mut Encoder, data: &[u8]) -> Result<Vec<Vec<u8>>, (Failure, RawCode)> {
    data.chunks(codec::MAX_PACKET_BODY)
        .map(|c| encoder.frame(codec::PACKET_PAYLOAD, c, 0).map_err(|e| rejected(e.name())))
        .collect()
}

/// Read once; the end of the stream is an `eof_error`.
async fn read_some(stream: &mut TcpStream, chunk: &mut [u8]) -> Result<usize, (Failure, RawCode)> {
    match stream.read(chunk).await {
        Ok(0) => Err((Failure::EofError, RawCode::io_kind(std::io::ErrorKind::UnexpectedEof))),
        Ok(n) => Ok(n),
        Err(e) => Err(io_failure(&e)),
    }
}

/// A TLS ClientHello for the bridge's upstream (a Tor OR port speaks TLS), from rustls with a
/// random `www.<letters>.com` SNI as tor sends; nothing after it is ever answered.
fn client_hello() -> Result<Vec<u8>, (Failure, RawCode)> {
    let (config, _record) = crate::runner::tls::client_config(&crate::runner::verify::TrustAnchors::empty(), &[])?;
    let sni = crate::runner::vpn::tor::random_sni();
    let name = rustls::pki_types::ServerName::try_from(sni).map_err(|_| rejected("bad_sni"))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| crate::runner::tls::tls_failure(&e))?;
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).map_err(|e| io_failure(&e))?;
    }
    Ok(out)
}

/// The low-entropy control: `len` bytes of printable text to the TCP echo at `addr`, read back.
pub async fn control(ctx: &StepContext, addr: SocketAddr, len: usize) -> Vec<Observation> {
    let (connect_obs, stream) = tcp::connect(ctx, Role::Control, addr).await;
    let Some(mut stream) = stream else { return vec![connect_obs] };
    let step = ctx.step(Operation::Data, Role::Control).peer(addr);
    let payload = low_entropy(len);
    let mut detail = VpnDetail {
        protocol: VpnProtocol::LowEntropy,
        stage_reached: VpnStage::Connected,
        first_packet_len: u32::try_from(len).ok(),
        ..VpnDetail::default()
    };
    let outcome = ctx.within(echo(&mut stream, &payload, &mut detail)).await;
    if outcome.is_ok() {
        detail.stage_reached = VpnStage::Data;
        detail.reply = Some(VpnReply::Echo);
    }
    vec![connect_obs, step.finish(outcome, Some(Detail::Vpn(detail)))]
}

async fn echo(stream: &mut TcpStream, payload: &[u8], detail: &mut VpnDetail) -> Result<(), (Failure, RawCode)> {
    let (mut reader, mut writer) = stream.split();
    let write = async {
        writer.write_all(payload).await.map_err(|e| io_failure(&e))?;
        Ok::<(), (Failure, RawCode)>(())
    };
    let read = async {
        let mut echoed = vec![0u8; payload.len()];
        reader.read_exact(&mut echoed).await.map_err(|e| io_failure(&e))?;
        Ok::<Vec<u8>, (Failure, RawCode)>(echoed)
    };
    detail.packets_sent = 1;
    detail.bytes_sent = Some(payload.len() as u64);
    detail.stage_reached = VpnStage::Sent;
    let (written, echoed) = tokio::join!(write, read);
    written?;
    if echoed? == payload { Ok(()) } else { Err(rejected("not_an_echo")) }
}

/// Printable ASCII text of `len` bytes: what a fully-encrypted-traffic detector exempts (its
/// first six bytes printable, all of it printable, about 3.6 bits set per byte).
pub fn low_entropy(len: usize) -> Vec<u8> {
    const TEXT: &[u8] = b"Vantage low-entropy control: plain printable text, the same length as the obfs4 flow. ";
    TEXT.iter().copied().cycle().take(len).collect()
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
