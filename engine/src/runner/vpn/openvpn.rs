//! OpenVPN runner: the client hard reset over UDP or TCP, until the server's hard reset.
//!
//! UDP: [`udp_exchange`] sends the reset and retransmits it with the next replay packet id (a
//! tls-auth or tls-crypt server drops a replayed id), accepting the first packet that unwraps
//! with the endpoint's key and acknowledges our session. TCP: connect (observation 1), send the
//! length-prefixed reset, read frames until the server's reset, a reset of the connection, EOF,
//! or the timeout (observation 2). No retransmit over TCP: the kernel does that.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vantage_measurement::{
    Detail, Failure, Observation, Operation, RawCode, Role, Transport, VpnDetail, VpnProtocol, VpnReply, VpnStage,
};

use super::codec::openvpn::{self as codec, ReplayId, Wrap};
use super::{Check, connected_udp, random_bytes, rejected, udp_exchange, unix_now};
use crate::runner::{StepContext, io_failure, tcp};

/// Length of the first packet on the wire (what the random-bytes control matches).
pub fn first_packet_len(wrap: &Wrap, transport: Transport) -> usize {
    let len = codec::client_hard_reset(wrap, [0; 8], ReplayId { id: 1, time: 0 }).len();
    if transport == Transport::Tcp { len + 2 } else { len }
}

/// Run the hard-reset exchange with `addr`.
pub async fn handshake(ctx: &StepContext, role: Role, addr: SocketAddr, transport: Transport, wrap: &Wrap) -> Vec<Observation> {
    let session: [u8; 8] = random_bytes();
    let time = u32::try_from(unix_now().0).unwrap_or(u32::MAX);
    let mut detail = VpnDetail { protocol: VpnProtocol::Openvpn, mode: Some(wrap.mode()), ..VpnDetail::default() };
    let build = |attempt: u32| codec::client_hard_reset(wrap, session, ReplayId { id: attempt + 1, time });
    let check = |packet: &[u8]| match codec::parse_server_packet(wrap, packet) {
        Ok(reply) => match codec::check_server_reset(&reply, session) {
            Ok(()) => Check::Accept(()),
            Err(e) => Check::Reject(e.name()),
        },
        Err(e) => Check::Reject(e.name()),
    };
    match transport {
        Transport::Udp => {
            let step = ctx.step(Operation::VpnHandshake, role).peer(addr);
            let outcome = match connected_udp(addr).await {
                Ok(socket) => udp_exchange(&socket, ctx.timeout, &mut detail, build, check).await,
                Err(failure) => Err(failure),
            };
            vec![finish(step, outcome, detail)]
        }
        Transport::Tcp => {
            let (connect_obs, stream) = tcp::connect(ctx, role, addr).await;
            let Some(mut stream) = stream else { return vec![connect_obs] };
            detail.stage_reached = VpnStage::Connected;
            let step = ctx.step(Operation::VpnHandshake, role).peer(addr);
            let packet = codec::frame_tcp(&build(0));
            detail.first_packet_len = u32::try_from(packet.len()).ok();
            let outcome = ctx.within(tcp_exchange(&mut stream, &packet, &mut detail, check)).await;
            let outcome = outcome.map_err(|f| if f.0.is_timeout() { super::silence(&detail, ctx.timeout) } else { f });
            vec![connect_obs, finish(step, outcome, detail)]
        }
    }
}

async fn tcp_exchange(
    stream: &mut TcpStream,
    packet: &[u8],
    detail: &mut VpnDetail,
    mut check: impl FnMut(&[u8]) -> Check<()>,
) -> Result<(), (Failure, RawCode)> {
    stream.write_all(packet).await.map_err(|e| io_failure(&e))?;
    detail.packets_sent = 1;
    detail.stage_reached = VpnStage::Sent;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        while let Some((frame, rest)) = codec::unframe_tcp(&buf) {
            detail.packets_received += 1;
            let verdict = check(frame);
            buf = rest.to_vec();
            match verdict {
                Check::Accept(()) => return Ok(()),
                Check::Reject(why) => {
                    detail.stage_reached = VpnStage::Reply;
                    detail.reply_error = Some(why.to_string());
                }
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) if detail.reply_error.is_some() => return Err(rejected(detail.reply_error.as_deref().unwrap_or("eof"))),
            Ok(0) => return Err((Failure::EofError, RawCode::io_kind(std::io::ErrorKind::UnexpectedEof))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(io_failure(&e)),
        }
        if buf.len() > 64 * 1024 {
            return Err(rejected("oversized"));
        }
    }
}

fn finish(step: crate::runner::StepRecorder, outcome: Result<(), (Failure, RawCode)>, mut detail: VpnDetail) -> Observation {
    if outcome.is_ok() {
        detail.stage_reached = VpnStage::Handshake;
        detail.reply = Some(VpnReply::HardResetServerV2);
        detail.reply_error = None;
    }
    step.finish(outcome, Some(Detail::Vpn(detail)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::{TcpListener, UdpSocket};
    use vantage_measurement::Vantage;

    use crate::runner::vpn::codec::openvpn::StaticKey;

    fn crypt() -> Wrap {
        Wrap::TlsCrypt { key: StaticKey::from_bytes([7; 256]) }
    }

    /// A fake server that answers the client reset as OpenVPN does, after dropping `drop_first`.
    async fn udp_server(wrap: Wrap, drop_first: usize) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut seen = 0;
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                seen += 1;
                let Ok(reset) = codec::parse_packet(&wrap, codec::Side::Server, &buf[..n]) else { continue };
                if seen > drop_first {
                    let reply = codec::server_hard_reset(&wrap, [5; 8], reset.session_id, ReplayId { id: 1, time: 1 });
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        addr
    }

    fn detail(o: &Observation) -> &VpnDetail {
        match &o.detail {
            Some(Detail::Vpn(d)) => d,
            other => panic!("no vpn detail: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_lost_reset_is_retransmitted_and_the_reply_verified() {
        let addr = udp_server(crypt(), 1).await;
        let ctx = StepContext::new(Vantage::Probe, Duration::from_millis(800));
        let obs = handshake(&ctx, Role::Target, addr, Transport::Udp, &crypt()).await;
        assert!(obs[0].succeeded(), "{:?}", obs[0]);
        let d = detail(&obs[0]);
        assert_eq!(
            (d.stage_reached, d.packets_sent, d.mode),
            (VpnStage::Handshake, 2, Some(vantage_measurement::VpnMode::TlsCrypt))
        );
        assert_eq!(d.first_packet_len, Some(54));
    }

    #[tokio::test]
    async fn a_reply_under_the_wrong_key_is_a_mismatch_not_a_success() {
        let addr = udp_server(Wrap::TlsCrypt { key: StaticKey::from_bytes([8; 256]) }, 0).await;
        let ctx = StepContext::new(Vantage::Probe, Duration::from_millis(400));
        let obs = handshake(&ctx, Role::Target, addr, Transport::Udp, &Wrap::Plain).await;
        // The fake server can't read a plain reset with its key, so it stays silent.
        assert_eq!(obs[0].failure, Some(Failure::GenericTimeoutError));
        assert_eq!(detail(&obs[0]).stage_reached, VpnStage::Sent);
    }

    #[tokio::test]
    async fn tcp_frames_are_read_across_segments() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let mut buf = [0u8; 16];
            let _ = s.read_exact(&mut buf).await; // 2 + 14
            let reply = codec::frame_tcp(&codec::server_hard_reset(
                &Wrap::Plain,
                [5; 8],
                buf[3..11].try_into().unwrap_or([0; 8]),
                ReplayId { id: 1, time: 1 },
            ));
            for byte in reply {
                let _ = s.write_all(&[byte]).await;
            }
            let _ = s.read(&mut buf).await;
        });
        let ctx = StepContext::new(Vantage::Probe, Duration::from_secs(2));
        let obs = handshake(&ctx, Role::Target, addr, Transport::Tcp, &Wrap::Plain).await;
        assert_eq!(obs.len(), 2);
        assert!(obs[1].succeeded(), "{:?}", obs[1]);
        assert_eq!(detail(&obs[1]).first_packet_len, Some(16));
    }

    #[tokio::test]
    async fn a_closed_udp_port_is_refused() {
        let addr = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
        let ctx = StepContext::new(Vantage::Probe, Duration::from_millis(800));
        let obs = handshake(&ctx, Role::Target, addr, Transport::Udp, &Wrap::Plain).await;
        assert_eq!(obs[0].failure, Some(Failure::ConnectionRefused));
    }
}
