//! WireGuard runner: a real handshake from the configured probe key, then a short data phase.
//!
//! Handshake (observation 1, `vpn_handshake`): every (re)transmission is a *fresh* initiation
//! (new ephemeral key, sender index and timestamp), because a responder ignores an initiation
//! whose timestamp it has already seen; a response to any of them completes the step.
//!
//! Data phase (observation 2, `data`, only with tunnel addresses): ICMP echo requests from the
//! probe's tunnel address to the endpoint's, sent every [`ECHO_INTERVAL`] until [`ECHOES`]
//! replies came back or the step timeout passed. Lost echoes are simply replaced by later ones
//! (at most [`MAX_ECHO_SENDS`]), so a lossy link completes late rather than failing; a censor
//! that kills the flow after N packets leaves the count short, with `packets_received` saying
//! how far it got.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;
use vantage_measurement::{Detail, Failure, Observation, Operation, RawCode, Role, VpnDetail, VpnProtocol, VpnReply, VpnStage};

use super::codec::icmp;
use super::codec::wireguard::{self as codec, Handshake, Message, PeerKeys, Session};
use super::{Check, connected_udp, random_bytes, rejected, udp_exchange, unix_now};
use crate::runner::{StepContext, io_failure, timeout_failure};

/// Echo replies the data phase waits for.
pub const ECHOES: u32 = 5;
/// The most echo requests sent (losses are replaced, up to this).
pub const MAX_ECHO_SENDS: u32 = 4 * ECHOES;
/// Spacing of echo requests.
pub const ECHO_INTERVAL: Duration = Duration::from_millis(100);

/// Tunnel addresses for the data phase (the endpoint's peer entry allows `address`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// The probe's address inside the tunnel.
    pub address: Ipv4Addr,
    /// The endpoint's address inside the tunnel (its kernel answers the echoes).
    pub server_address: Ipv4Addr,
}

/// Handshake with `addr` as the peer `keys`, then the data phase if `tunnel` is given.
pub async fn handshake(
    ctx: &StepContext,
    role: Role,
    addr: SocketAddr,
    keys: &PeerKeys,
    tunnel: Option<Tunnel>,
) -> Vec<Observation> {
    let step = ctx.step(Operation::VpnHandshake, role).peer(addr);
    let mut detail = VpnDetail { protocol: VpnProtocol::Wireguard, ..VpnDetail::default() };
    let socket = match connected_udp(addr).await {
        Ok(s) => s,
        Err(failure) => return vec![step.finish(Err(failure), Some(Detail::Vpn(detail)))],
    };
    // A Mutex, not a RefCell: the helper runs this inside a `Send` future.
    let pending: Mutex<Vec<Handshake>> = Mutex::new(Vec::new());
    let build = |_attempt: u32| {
        let (secs, nanos) = unix_now();
        match codec::initiate(keys, random_bytes(), u32::from_le_bytes(random_bytes()), codec::tai64n(secs, nanos)) {
            Ok((msg, hs)) => {
                if let Ok(mut pending) = pending.lock() {
                    pending.push(hs);
                }
                msg
            }
            // Only a degenerate server key gets here; the initiation then can't be answered.
            Err(_) => vec![0u8; codec::INITIATION_LEN],
        }
    };
    let check = |packet: &[u8]| match codec::parse_message(packet) {
        Ok(Message::Response { receiver, .. }) => {
            let found = pending.lock().ok().and_then(|p| p.iter().find(|hs| hs.sender() == receiver).cloned());
            match found {
                Some(hs) => match hs.consume_response(packet) {
                    Ok(session) => Check::Accept(session),
                    Err(e) => Check::Reject(e.name()),
                },
                None => Check::Reject("wrong_receiver"),
            }
        }
        Ok(Message::CookieReply { .. }) => Check::Reject("cookie_reply"),
        Ok(Message::Transport { .. }) => Check::Reject("unexpected_transport"),
        Ok(Message::Initiation) => Check::Reject("unexpected_initiation"),
        Err(e) => Check::Reject(e.name()),
    };
    let outcome = udp_exchange(&socket, ctx.timeout, &mut detail, build, check).await;
    let session = match outcome {
        Ok(session) => session,
        Err(failure) => return vec![step.finish(Err(failure), Some(Detail::Vpn(detail)))],
    };
    detail.stage_reached = VpnStage::Handshake;
    detail.reply = Some(VpnReply::HandshakeResponse);
    detail.reply_error = None;
    let handshake_obs = step.finish(Ok(()), Some(Detail::Vpn(detail)));
    let Some(tunnel) = tunnel else { return vec![handshake_obs] };
    vec![handshake_obs, data_phase(ctx, role, addr, &socket, session, tunnel).await]
}

async fn data_phase(
    ctx: &StepContext,
    role: Role,
    addr: SocketAddr,
    socket: &UdpSocket,
    mut session: Session,
    tunnel: Tunnel,
) -> Observation {
    let step = ctx.step(Operation::Data, role).peer(addr);
    let mut detail = VpnDetail { protocol: VpnProtocol::Wireguard, stage_reached: VpnStage::Handshake, ..VpnDetail::default() };
    let id = u16::from_be_bytes(random_bytes());
    let outcome = echo_loop(ctx.timeout, socket, &mut session, tunnel, id, &mut detail).await;
    if outcome.is_ok() {
        detail.stage_reached = VpnStage::Data;
    }
    step.finish(outcome, Some(Detail::Vpn(detail)))
}

async fn echo_loop(
    timeout: Duration,
    socket: &UdpSocket,
    session: &mut Session,
    tunnel: Tunnel,
    id: u16,
    detail: &mut VpnDetail,
) -> Result<(), (Failure, RawCode)> {
    let deadline = Instant::now() + timeout;
    let mut answered: HashSet<u16> = HashSet::new();
    let mut next_send = Instant::now();
    let mut seq: u16 = 0;
    let mut buf = vec![0u8; 2048];
    while (answered.len() as u32) < ECHOES {
        if seq < MAX_ECHO_SENDS as u16 && Instant::now() >= next_send {
            seq += 1;
            let request = icmp::echo_request(tunnel.address, tunnel.server_address, id, seq, b"vantage-probe data phase");
            let sealed = session.seal(&request).map_err(|e| rejected(e.name()))?;
            socket.send(&sealed).await.map_err(|e| io_failure(&e))?;
            detail.packets_sent += 1;
            next_send = Instant::now() + ECHO_INTERVAL;
        }
        let wake = if seq < MAX_ECHO_SENDS as u16 { next_send.min(deadline) } else { deadline };
        match tokio::time::timeout_at(wake, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                detail.packets_received += 1;
                let reply = session
                    .open(&buf[..n])
                    .map_err(|e| e.name())
                    .and_then(|inner| icmp::parse_echo_reply(&inner, id).map_err(|_| "not_our_echo_reply"));
                match reply {
                    Ok(echo) if echo.from == tunnel.server_address => {
                        answered.insert(echo.seq);
                        detail.reply = Some(VpnReply::EchoReply);
                    }
                    Ok(_) => detail.reply_error = Some("echo_from_elsewhere".into()),
                    // Keepalives and stray handshake retransmits are not errors.
                    Err(why) if buf.first() == Some(&4) && n == 32 => {
                        let _ = why;
                    }
                    Err(why) => detail.reply_error = Some(why.into()),
                }
            }
            Ok(Err(e)) => return Err(io_failure(&e)),
            Err(_) if Instant::now() >= deadline => return Err(timeout_failure(timeout)),
            Err(_) => {}
        }
    }
    Ok(())
}
