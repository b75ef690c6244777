//! Runners: one file per protocol, each a thin async driver around a pure codec.
//!
//! Every runner follows the same loop: note the time, do one network step under a timeout, turn
//! the outcome into an [`Observation`], return it. Runners never decide verdicts (that is
//! [`crate::classify`]) and never print. The same runners serve the probe and the collector's
//! test helper, so a control step is exactly the step the probe ran, from another vantage point.

pub mod dns;
pub mod ech;
pub mod edns;
pub mod localise;
pub mod obfs4;
pub mod quic;
pub mod tcp;
pub mod throttle;
pub mod tls;
pub mod udp;
pub mod verify;
pub mod vpn;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use vantage_measurement::{CodeSpace, Detail, Failure, Observation, Operation, RawCode, Role, Vantage};

/// The default wait for one network step.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What every step of one measurement shares: its clock origin, where it runs, its patience.
#[derive(Clone, Copy, Debug)]
pub struct StepContext {
    /// The measurement's start; observation times are relative to it.
    pub origin: Instant,
    /// Where the steps run.
    pub vantage: Vantage,
    /// The longest any single step may wait.
    pub timeout: Duration,
}

impl StepContext {
    /// A context starting now.
    pub fn new(vantage: Vantage, timeout: Duration) -> Self {
        StepContext { origin: Instant::now(), vantage, timeout }
    }

    /// Begin recording a step.
    pub fn step(&self, op: Operation, role: Role) -> StepRecorder {
        StepRecorder {
            started: Instant::now(),
            observation: Observation {
                op,
                role,
                vantage: self.vantage,
                t_start_ms: ms(Instant::now() - self.origin),
                duration_ms: 0.0,
                peer: None,
                sni: None,
                failure: None,
                raw: None,
                detail: None,
                trial: None,
            },
        }
    }

    /// Run `fut` under this context's timeout; a timeout becomes `generic_timeout_error`.
    pub async fn within<T, F>(&self, fut: F) -> Result<T, (Failure, RawCode)>
    where
        F: Future<Output = Result<T, (Failure, RawCode)>>,
    {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(timeout_failure(self.timeout)),
        }
    }
}

/// The failure for our own timer running out after `after`.
pub fn timeout_failure(after: Duration) -> (Failure, RawCode) {
    (Failure::GenericTimeoutError, RawCode::timeout(after.as_millis().try_into().unwrap_or(u64::MAX)))
}

/// An observation being filled in; `finish` stamps the duration.
#[derive(Debug)]
pub struct StepRecorder {
    started: Instant,
    observation: Observation,
}

impl StepRecorder {
    /// The server-side address of this step.
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.observation.peer = Some(peer);
        self
    }

    /// The server name sent in this step.
    pub fn sni(mut self, sni: &str) -> Self {
        self.observation.sni = Some(sni.to_string());
        self
    }

    /// Finish the step with its outcome and detail.
    pub fn finish(mut self, outcome: Result<(), (Failure, RawCode)>, detail: Option<Detail>) -> Observation {
        self.observation.duration_ms = ms(self.started.elapsed());
        if let Err((failure, raw)) = outcome {
            self.observation.failure = Some(failure);
            self.observation.raw = Some(raw);
        }
        self.observation.detail = detail;
        self.observation
    }
}

/// Milliseconds with microsecond resolution.
pub fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// A UDP socket connected to `addr` from an ephemeral port of the same family: replies from
/// anyone else are dropped by the kernel, and an ICMP port unreachable shows as a recv error.
pub async fn connected_udp(addr: SocketAddr) -> Result<tokio::net::UdpSocket, (Failure, RawCode)> {
    let bind: SocketAddr =
        if addr.is_ipv4() { (std::net::Ipv4Addr::UNSPECIFIED, 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = tokio::net::UdpSocket::bind(bind).await.map_err(|e| io_failure(&e))?;
    socket.connect(addr).await.map_err(|e| io_failure(&e))?;
    Ok(socket)
}

/// An io::Error as failure + raw code.
pub fn io_failure(err: &std::io::Error) -> (Failure, RawCode) {
    Failure::from_io(err)
}

/// A failure with a fixed name in `space` (rustls errors, QUIC codes).
pub fn named_failure(failure: Failure, space: CodeSpace, code: Option<i64>, name: &str) -> (Failure, RawCode) {
    (failure, RawCode::named(space, code, name))
}
