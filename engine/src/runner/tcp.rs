//! TCP connect: the simplest runner, and the first step of TLS.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use vantage_measurement::{Observation, Operation, Role};

use super::{StepContext, io_failure};

/// Connect to `addr`, recording one `connect` observation. The stream is returned on success so
/// TLS can continue on it.
///
/// Dropping the stream aborts the connection (RST, zero linger) instead of closing it: after a
/// ClientHello went unanswered, a graceful close leaves the kernel retransmitting the triggering
/// bytes for minutes, and every copy renews a censor's residual penalty on the server (seen in the
/// lab: the innocent name re-tested after the window still found the penalty live).
pub async fn connect(ctx: &StepContext, role: Role, addr: SocketAddr) -> (Observation, Option<TcpStream>) {
    let step = ctx.step(Operation::Connect, role).peer(addr);
    let result = ctx.within(async { TcpStream::connect(addr).await.map_err(|e| io_failure(&e)) }).await;
    match result {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            let _ = stream.set_zero_linger();
            (step.finish(Ok(()), None), Some(stream))
        }
        Err(failure) => (step.finish(Err(failure), None), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vantage_measurement::{Failure, Vantage};

    #[tokio::test]
    async fn a_listening_port_connects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ctx = StepContext::new(Vantage::Probe, Duration::from_secs(2));
        let (obs, stream) = connect(&ctx, Role::Target, addr).await;
        assert!(obs.succeeded(), "{obs:?}");
        assert_eq!(stream.as_ref().and_then(|s| s.linger().ok()), Some(Some(Duration::ZERO)), "dropping aborts");
        assert_eq!(obs.peer, Some(addr));
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_not_timed_out() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let ctx = StepContext::new(Vantage::Probe, Duration::from_secs(2));
        let (obs, stream) = connect(&ctx, Role::Target, addr).await;
        assert_eq!(obs.failure, Some(Failure::ConnectionRefused));
        assert_eq!(obs.raw.and_then(|r| r.name).as_deref(), Some("ECONNREFUSED"));
        assert!(stream.is_none());
    }
}
