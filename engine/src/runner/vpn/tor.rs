//! Tor runner: TCP connect, TLS handshake to the OR port, then the link protocol's VERSIONS.
//!
//! Relays present self-signed certificates, so the chain is recorded but trust is not asked for
//! (a Tor client authenticates relays inside the link protocol, not with WebPKI). The SNI is a
//! random `www.<letters>.com`, as tor itself sends. Observations: `connect`, `tls_handshake`
//! (with the certificate detail), `data` (the VERSIONS exchange, `stage_reached: data`).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vantage_measurement::{Detail, Failure, Observation, Operation, RawCode, Role, VpnDetail, VpnProtocol, VpnReply, VpnStage};

use super::codec::tor as codec;
use super::{random_bytes, rejected};
use crate::runner::ech::Ech;
use crate::runner::tls::{handshake_io_failure, handshake_on};
use crate::runner::verify::TrustAnchors;
use crate::runner::{StepContext, io_failure, tcp};

/// Connect, handshake and exchange VERSIONS with the OR port at `addr`.
pub async fn handshake(ctx: &StepContext, role: Role, addr: SocketAddr) -> Vec<Observation> {
    let (connect_obs, stream) = tcp::connect(ctx, role, addr).await;
    let Some(stream) = stream else { return vec![connect_obs] };
    let sni = random_sni();
    let step = ctx.step(Operation::TlsHandshake, role).peer(addr).sni(&sni);
    let (outcome, tls_detail) = handshake_on(ctx, stream, &sni, &TrustAnchors::empty(), &[], Ech::Off).await;
    let mut tls = match outcome {
        Ok(tls) => tls,
        Err(failure) => return vec![connect_obs, step.finish(Err(failure), Some(Detail::Tls(tls_detail)))],
    };
    let tls_obs = step.finish(Ok(()), Some(Detail::Tls(tls_detail)));

    let link = ctx.step(Operation::Data, role).peer(addr);
    let cell = codec::versions_cell();
    let mut detail = VpnDetail {
        protocol: VpnProtocol::Tor,
        stage_reached: VpnStage::Handshake,
        first_packet_len: u32::try_from(cell.len()).ok(),
        ..VpnDetail::default()
    };
    let outcome = ctx.within(versions(&mut tls, &cell, &mut detail)).await;
    if outcome.is_ok() {
        detail.stage_reached = VpnStage::Data;
        detail.reply = Some(VpnReply::Versions);
    }
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), tls.shutdown()).await;
    vec![connect_obs, tls_obs, link.finish(outcome, Some(Detail::Vpn(detail)))]
}

async fn versions<S>(tls: &mut S, cell: &[u8], detail: &mut VpnDetail) -> Result<(), (Failure, RawCode)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tls.write_all(cell).await.map_err(|e| io_failure(&e))?;
    tls.flush().await.map_err(|e| io_failure(&e))?;
    detail.packets_sent = 1;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match codec::parse_versions(&buf) {
            Ok(_) => return Ok(()),
            Err(codec::DecodeError::Incomplete { .. }) => {}
            Err(e) => {
                detail.stage_reached = VpnStage::Reply;
                detail.reply_error = Some(e.name().into());
                return Err(rejected(e.name()));
            }
        }
        match tls.read(&mut chunk).await {
            Ok(0) => return Err((Failure::EofError, RawCode::io_kind(std::io::ErrorKind::UnexpectedEof))),
            Ok(n) => {
                detail.packets_received += 1;
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err((Failure::EofError, RawCode::io_kind(std::io::ErrorKind::UnexpectedEof)));
            }
            Err(e) => return Err(handshake_io_failure(&e)),
        }
    }
}

/// `www.<8–16 random letters>.com`, like tor's own client.
pub(crate) fn random_sni() -> String {
    let bytes: [u8; 17] = random_bytes();
    let len = 8 + usize::from(bytes[0] % 9);
    let label: String = bytes[1..=len].iter().map(|b| char::from(b'a' + b % 26)).collect();
    format!("www.{label}.com")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snis_look_like_tor_s() {
        for _ in 0..50 {
            let sni = random_sni();
            assert!(sni.starts_with("www.") && sni.ends_with(".com"), "{sni}");
            assert!((16..=24).contains(&sni.len()), "{sni}");
        }
    }
}
