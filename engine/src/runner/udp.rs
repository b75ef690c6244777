//! UDP echo baseline: can plain datagrams reach the target's address at all?
//!
//! Sent before a QUIC test to a UDP echo service on the same address (the reference endpoints
//! run one). If the echo comes back while every QUIC handshake fails, QUIC itself is filtered;
//! if the echo is lost too, all UDP to the address is. Payloads are random, so a middlebox can't
//! match them, and sizes go up to a typical QUIC Initial's so an MTU problem shows as one.

use std::net::SocketAddr;

use rand::RngCore;
use vantage_measurement::{DataDetail, Detail, Failure, Observation, Operation, Role};

use super::{StepContext, connected_udp, io_failure, ms, timeout_failure};

/// Datagram sizes sent: small, medium, and the size of a QUIC Initial.
const SIZES: [usize; 3] = [64, 512, 1200];

/// Send three random datagrams to `addr` and wait for their echoes; one `data` observation.
/// Succeeds when at least one datagram came back unchanged.
pub async fn echo(ctx: &StepContext, role: Role, addr: SocketAddr) -> Observation {
    let step = ctx.step(Operation::Data, role).peer(addr);
    let started = tokio::time::Instant::now();
    let mut detail = DataDetail::default();
    let outcome = exchange(ctx, addr, &mut detail, started).await;
    step.finish(outcome, Some(Detail::Data(detail)))
}

async fn exchange(
    ctx: &StepContext,
    addr: SocketAddr,
    detail: &mut DataDetail,
    started: tokio::time::Instant,
) -> Result<(), (Failure, vantage_measurement::RawCode)> {
    let socket = connected_udp(addr).await?;
    let mut payloads = Vec::with_capacity(SIZES.len());
    for size in SIZES {
        let mut payload = vec![0u8; size];
        rand::rng().fill_bytes(&mut payload);
        socket.send(&payload).await.map_err(|e| io_failure(&e))?;
        detail.bytes_sent += size as u64;
        payloads.push(payload);
    }
    let mut buf = vec![0u8; 2048];
    let mut echoed = 0;
    let deadline = started + ctx.timeout;
    while echoed < payloads.len() {
        match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                if payloads.iter().any(|p| p.as_slice() == &buf[..n]) {
                    echoed += 1;
                    detail.bytes_received += n as u64;
                    detail.last_byte_ms = Some(ms(started.elapsed()));
                }
            }
            // A refused port shows up here (ICMP port unreachable on a connected socket).
            Ok(Err(e)) if echoed == 0 => return Err(io_failure(&e)),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    if echoed == 0 { Err(timeout_failure(ctx.timeout)) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::UdpSocket;
    use vantage_measurement::Vantage;

    #[tokio::test]
    async fn an_echo_service_echoes() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let _ = server.send_to(&buf[..n], from).await;
            }
        });
        let ctx = StepContext::new(Vantage::Probe, Duration::from_secs(2));
        let obs = echo(&ctx, Role::Control, addr).await;
        assert!(obs.succeeded(), "{obs:?}");
        let Some(Detail::Data(d)) = obs.detail else { panic!("no data detail") };
        assert_eq!(d.bytes_received, 64 + 512 + 1200);
    }

    #[tokio::test]
    async fn silence_is_a_timeout_with_nothing_received() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let ctx = StepContext::new(Vantage::Probe, Duration::from_millis(300));
        let obs = echo(&ctx, Role::Control, silent.local_addr().expect("addr")).await;
        assert_eq!(obs.failure, Some(Failure::GenericTimeoutError));
    }
}
