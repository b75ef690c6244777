//! The test-helper protocol: one JSON request, one JSON response, both versioned with schema v1.
//!
//! The helper executes the request with the probe's own runners ([`execute`]); the collector wraps
//! this in HTTP and decides which addresses it is willing to contact.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vantage_measurement::{Observation, Role, TestKind, Vantage};

use crate::runner::tls::DataPhase;
use crate::runner::{self, StepContext, verify::TrustAnchors};

/// One step the helper should repeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    /// Which test.
    pub test: TestKind,
    /// The name to resolve (dns) or to send as SNI (tls, quic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The address to contact (tcp, tls, quic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// The port to contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// What the helper saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Observations with `vantage: helper`, `role: target`.
    pub observations: Vec<Observation>,
}

/// Why a control request can't be executed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlRequestError {
    /// The test needs a field the request lacks.
    #[error("a {test} control needs `{field}`")]
    Missing {
        /// The test.
        test: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

impl ControlRequest {
    /// The socket address, for tests that contact one.
    pub fn socket_addr(&self) -> Result<SocketAddr, ControlRequestError> {
        let test = self.test.as_str();
        let ip = self.address.ok_or(ControlRequestError::Missing { test, field: "address" })?;
        let port = self.port.ok_or(ControlRequestError::Missing { test, field: "port" })?;
        Ok(SocketAddr::new(ip, port))
    }

    fn domain(&self) -> Result<&str, ControlRequestError> {
        self.domain
            .as_deref()
            .ok_or(ControlRequestError::Missing { test: self.test.as_str(), field: "domain" })
    }
}

/// What the helper trusts and how long it waits.
#[derive(Clone, Debug)]
pub struct HelperTrust {
    /// Trust anchors for TLS and QUIC verification.
    pub anchors: Arc<TrustAnchors>,
    /// The wait per step.
    pub timeout: Duration,
    /// A resolver to ask over UDP for DNS controls instead of the system resolver.
    pub dns_resolver: Option<SocketAddr>,
}

/// Execute a control request from this machine's network (the helper's side).
pub async fn execute(req: &ControlRequest, trust: &HelperTrust) -> Result<ControlResponse, ControlRequestError> {
    let ctx = StepContext::new(Vantage::Helper, trust.timeout);
    let observations = match req.test {
        TestKind::Dns => vec![match trust.dns_resolver {
            Some(resolver) => {
                runner::dns::udp_lookup(&ctx, Role::Target, resolver, req.domain()?, runner::dns::QueryType::A, Duration::ZERO)
                    .await
            }
            None => runner::dns::system_lookup(&ctx, Role::Target, req.domain()?).await,
        }],
        TestKind::Tcp => vec![runner::tcp::connect(&ctx, Role::Target, req.socket_addr()?).await.0],
        TestKind::Tls => {
            runner::tls::handshake(&ctx, Role::Target, req.socket_addr()?, req.domain()?, &trust.anchors, DataPhase::Skip)
                .await
        }
        TestKind::Quic => vec![
            runner::quic::handshake(&ctx, Role::Target, req.socket_addr()?, req.domain()?, &trust.anchors).await,
        ],
    };
    Ok(ControlResponse { observations })
}
