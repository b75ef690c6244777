//! DNS runner (being written): system resolver and a lingering UDP exchange.
pub mod codec;

use std::net::SocketAddr;
use std::time::Duration;
use vantage_measurement::{Observation, Operation, Role};
use super::StepContext;

/// Record type asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryType { A, Aaaa }

/// Resolve `name` with the system resolver.
pub async fn system_lookup(ctx: &StepContext, role: Role, name: &str) -> Observation {
    let _ = name;
    ctx.step(Operation::Resolve, role).finish(Ok(()), None)
}

/// Ask `resolver` over UDP, keeping the socket open `linger` after the first reply.
pub async fn udp_lookup(ctx: &StepContext, role: Role, resolver: SocketAddr, name: &str, qtype: QueryType, linger: Duration) -> Observation {
    let _ = (resolver, name, qtype, linger);
    ctx.step(Operation::Resolve, role).finish(Ok(()), None)
}
