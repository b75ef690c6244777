//! QUIC runner (being written).
use std::net::SocketAddr;
use vantage_measurement::{Observation, Operation, Role};
use super::{StepContext, verify::TrustAnchors};
/// QUIC handshake with `sni`.
pub async fn handshake(ctx: &StepContext, role: Role, addr: SocketAddr, sni: &str, anchors: &TrustAnchors) -> Observation {
    let _ = (addr, sni, anchors); ctx.step(Operation::QuicHandshake, role).finish(Ok(()), None)
}
