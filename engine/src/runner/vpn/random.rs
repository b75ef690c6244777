//! The random-bytes control: does plain traffic of the protocol's size reach this port number?
//!
//! Random bytes as long as the protocol's first packet go to an echo service on the same port
//! number at the endpoint's echo address (see `deploy/endpoints/`). If they come back while the
//! protocol gets no answer, the path carries this port and this size: what was dropped is the
//! protocol's fingerprint (`vpn.fingerprint_blocked`). If they are lost too, the port is blocked
//! (`vpn.port_blocked`). This is gfw.report's zero-versus-random control, turned into a
//! reachability check. The bytes are drawn again whenever they happen to start like the
//! protocol (an OpenVPN reset opcode, a WireGuard type word, the NAT-T marker), so the control
//! never carries the fingerprint it is meant to lack.
//!
//! UDP: sent up to [`super::UDP_SENDS`] times until the same bytes come back. TCP: connect
//! (observation 1), write, read the echo back (observation 2).

use std::net::SocketAddr;

use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vantage_measurement::{
    Detail, Failure, Observation, Operation, RawCode, Role, Transport, VpnDetail, VpnProtocol, VpnReply, VpnStage,
};

use super::{Check, connected_udp, udp_exchange};
use crate::runner::{StepContext, io_failure, tcp};

/// Random bytes of `len` that look like none of our protocols' first bytes.
pub fn unlike_any_protocol(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    loop {
        rand::rng().fill_bytes(&mut bytes);
        let looks_like = |b: &[u8]| {
            b.first().is_some_and(|op| op >> 3 == 7 || op >> 3 == 8) // OpenVPN resets (UDP)
                || b.get(2).is_some_and(|op| op >> 3 == 7) // OpenVPN reset after a TCP length
                || b.get(..4).is_some_and(|w| w[1..] == [0, 0, 0] || w == [0, 0, 0, 0]) // WireGuard, NAT-T
        };
        if !looks_like(&bytes) {
            return bytes;
        }
    }
}

/// Send `len` random bytes to the echo at `addr` over `transport`; the control's observations.
pub async fn control(ctx: &StepContext, addr: SocketAddr, transport: Transport, len: usize) -> Vec<Observation> {
    let payload = unlike_any_protocol(len);
    let mut detail = VpnDetail { protocol: VpnProtocol::Random, ..VpnDetail::default() };
    match transport {
        Transport::Udp => {
            let step = ctx.step(Operation::Data, Role::Control).peer(addr);
            let outcome = match connected_udp(addr).await {
                Ok(socket) => {
                    let check =
                        |reply: &[u8]| if reply == payload.as_slice() { Check::Accept(()) } else { Check::Reject("not_an_echo") };
                    udp_exchange(&socket, ctx.timeout, &mut detail, |_| payload.clone(), check).await
                }
                Err(failure) => Err(failure),
            };
            vec![finish(step, outcome, detail)]
        }
        Transport::Tcp => {
            let (connect_obs, stream) = tcp::connect(ctx, Role::Control, addr).await;
            let Some(mut stream) = stream else { return vec![connect_obs] };
            let step = ctx.step(Operation::Data, Role::Control).peer(addr);
            detail.stage_reached = VpnStage::Connected;
            detail.first_packet_len = u32::try_from(len).ok();
            let outcome = ctx.within(tcp_echo(&mut stream, &payload, &mut detail)).await;
            vec![connect_obs, finish(step, outcome, detail)]
        }
    }
}

async fn tcp_echo(stream: &mut tokio::net::TcpStream, payload: &[u8], detail: &mut VpnDetail) -> Result<(), (Failure, RawCode)> {
    stream.write_all(payload).await.map_err(|e| io_failure(&e))?;
    detail.packets_sent = 1;
    detail.stage_reached = VpnStage::Sent;
    let mut echoed = vec![0u8; payload.len()];
    match stream.read_exact(&mut echoed).await {
        Ok(_) if echoed == payload => Ok(()),
        Ok(_) => Err(super::rejected("not_an_echo")),
        Err(e) => Err(io_failure(&e)),
    }
}

fn finish(step: crate::runner::StepRecorder, outcome: Result<(), (Failure, RawCode)>, mut detail: VpnDetail) -> Observation {
    if outcome.is_ok() {
        detail.stage_reached = VpnStage::Data;
        detail.reply = Some(VpnReply::Echo);
        detail.reply_error = None;
    }
    step.finish(outcome, Some(Detail::Vpn(detail)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vantage_measurement::Vantage;

    #[test]
    fn the_control_never_looks_like_a_protocol() {
        for _ in 0..2000 {
            let b = unlike_any_protocol(14);
            assert_ne!(b[0] >> 3, 7);
            assert_ne!(b[1..4], [0, 0, 0]);
        }
    }

    #[tokio::test]
    async fn udp_and_tcp_echoes_pass_and_silence_fails() {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let udp_addr = udp.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let _ = udp.send_to(&buf[..n], from).await;
            }
        });
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let tcp_addr = tcp.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let ctx = StepContext::new(Vantage::Probe, Duration::from_millis(600));
        let obs = control(&ctx, udp_addr, Transport::Udp, 148).await;
        assert!(obs[0].succeeded(), "{obs:?}");
        let obs = control(&ctx, tcp_addr, Transport::Tcp, 16).await;
        assert!(obs.iter().all(Observation::succeeded), "{obs:?}");
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let obs = control(&ctx, silent.local_addr().expect("addr"), Transport::Udp, 14).await;
        assert_eq!(obs[0].failure, Some(Failure::GenericTimeoutError));
    }
}
