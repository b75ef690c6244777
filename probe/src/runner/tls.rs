//! TLS runner (being written).
use std::net::SocketAddr;
use vantage_measurement::{Observation, Role};
use super::{StepContext, verify::TrustAnchors};
/// Connect and handshake with `sni`; returns the connect and handshake observations.
pub async fn handshake(ctx: &StepContext, role: Role, addr: SocketAddr, sni: &str, anchors: &TrustAnchors) -> Vec<Observation> {
    let _ = (ctx, role, addr, sni, anchors); Vec::new()
}
