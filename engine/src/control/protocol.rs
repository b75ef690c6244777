//! The test-helper protocol: one JSON request, one JSON response, both versioned with schema v1.
//!
//! The helper executes the request with the probe's own runners ([`execute`]); the collector wraps
//! this in HTTP and decides which addresses it is willing to contact.
//!
//! VPN controls answer one question: is the endpoint up, seen from outside? The request carries
//! what the protocol needs and nothing of the probe's identity:
//! - OpenVPN: transport and the endpoint's static key (tls-auth/tls-crypt servers are silent
//!   without it; it is the endpoint's key, shared by all its clients and published with it);
//! - WireGuard: the endpoint's public key and the private key of the *helper peer* the endpoint
//!   publishes for this purpose, never the probe's own key (a volunteer's own key must not leave
//!   the probe). Without a helper peer there is no WireGuard control: a WireGuard server answers
//!   nobody it doesn't know, so "is the port open" can't be asked;
//! - IKEv2 and Tor need nothing: any IKE reply, or a TLS handshake and VERSIONS, prove it.
//!
//! The helper runs the handshake only, no data phase: the endpoint being up is what it vouches for.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vantage_measurement::{Observation, Role, TestKind, Transport, Vantage};

use crate::runner::tls::DataPhase;
use crate::runner::{self, StepContext, verify::TrustAnchors};
use crate::targets::{KeyText, OpenvpnSpec, decode_key};

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
    /// VPN tests: what the helper needs to speak the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn: Option<VpnControl>,
}

/// The protocol parameters of a VPN control (see the module doc for what is, and isn't, sent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpnControl {
    /// OpenVPN: `udp` or `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// OpenVPN: the endpoint's control-channel protection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openvpn: Option<OpenvpnSpec>,
    /// WireGuard: the endpoint's public key (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_server_public_key: Option<String>,
    /// WireGuard: the helper peer's private key (base64), published with the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_helper_private_key: Option<KeyText>,
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
    /// A VPN parameter is unusable.
    #[error("a {test} control has an invalid parameter: {reason}")]
    Invalid {
        /// The test.
        test: &'static str,
        /// Why (never the parameter's value).
        reason: String,
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
        self.domain.as_deref().ok_or(ControlRequestError::Missing { test: self.test.as_str(), field: "domain" })
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
            runner::tls::handshake(&ctx, Role::Target, req.socket_addr()?, req.domain()?, &trust.anchors, DataPhase::Skip).await
        }
        TestKind::Quic => {
            vec![runner::quic::handshake(&ctx, Role::Target, req.socket_addr()?, req.domain()?, &trust.anchors).await]
        }
        TestKind::Openvpn | TestKind::Wireguard | TestKind::Ikev2 | TestKind::Tor => vpn(req, &ctx).await?,
    };
    Ok(ControlResponse { observations })
}

/// The helper's side of a VPN control: the handshake only.
async fn vpn(req: &ControlRequest, ctx: &StepContext) -> Result<Vec<Observation>, ControlRequestError> {
    use runner::vpn;
    let test = req.test.as_str();
    let addr = req.socket_addr()?;
    let params = req.vpn.clone().unwrap_or_default();
    let invalid = |reason: String| ControlRequestError::Invalid { test, reason };
    Ok(match req.test {
        TestKind::Openvpn => {
            let spec = params.openvpn.ok_or(ControlRequestError::Missing { test, field: "vpn.openvpn" })?;
            let wrap = spec.wrap().map_err(invalid)?;
            vpn::openvpn::handshake(ctx, Role::Target, addr, params.transport.unwrap_or(Transport::Udp), &wrap).await
        }
        TestKind::Wireguard => {
            let missing = |field| ControlRequestError::Missing { test, field };
            let public = params.wireguard_server_public_key.ok_or(missing("vpn.wireguard_server_public_key"))?;
            let private = params.wireguard_helper_private_key.ok_or(missing("vpn.wireguard_helper_private_key"))?;
            let keys = vpn::codec::wireguard::PeerKeys {
                private: vpn::codec::wireguard::Secret(decode_key("wireguard_helper_private_key", &private.0).map_err(invalid)?),
                server_public: decode_key("wireguard_server_public_key", &public).map_err(invalid)?,
                preshared: vpn::codec::wireguard::Secret([0; 32]),
            };
            vpn::wireguard::handshake(ctx, Role::Target, addr, &keys, None).await
        }
        TestKind::Ikev2 => vpn::ikev2::sa_init(ctx, Role::Target, addr).await,
        TestKind::Tor => vpn::tor::handshake(ctx, Role::Target, addr).await,
        TestKind::Dns | TestKind::Tcp | TestKind::Tls | TestKind::Quic => Vec::new(),
    })
}
