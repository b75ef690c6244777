//! The test-helper protocol: one JSON request, one JSON response, both versioned with schema v1.
//!
//! The request is checked once into a [`TargetStep`] ([`ControlRequest::step`]: a missing or
//! unusable field is the client's fault), and the helper runs that step with the probe's own
//! runners ([`execute`]); the collector wraps this in HTTP and decides which addresses it is
//! willing to contact.
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

use crate::runner::obfs4::codec::BridgeCert;
use crate::runner::tls::DataPhase;
use crate::runner::{StepContext, verify::TrustAnchors};
use crate::step::{StepEnv, TargetStep};
use crate::targets::{KeyText, OpenvpnParams, OpenvpnSpec, ParamsError, ResolverParams, TargetSpec, peer_keys};

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
    /// `dot`/`doh`: the DoH path and the name asked for (defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<ResolverParams>,
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
    /// obfs4: the bridge line's `cert` (node id and public key; published with the bridge line,
    /// as a Tor client gets it). The helper runs the handshake only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obfs4_cert: Option<KeyText>,
}

/// What the helper saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Observations with `vantage: helper`, `role: target` (the `ech` pair: `role: control` for
    /// its handshake without ECH).
    pub observations: Vec<Observation>,
}

/// Why a control request can't be executed: the client's fault, answered with a 400.
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
    /// A `dot`/`doh` parameter is unusable.
    #[error("a {test} control has an invalid parameter: {reason}")]
    Resolver {
        /// The test.
        test: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A VPN parameter is unusable.
    #[error("a {test} control has an invalid parameter: {reason}")]
    Invalid {
        /// The test.
        test: &'static str,
        /// Why (never the parameter's value).
        reason: ParamsError,
    },
    /// A test the helper does not run (`throttle`: its control is the same endpoint, another SNI).
    #[error("the helper runs no {test} controls")]
    NotOffered {
        /// The test.
        test: &'static str,
    },
}

impl ControlRequest {
    /// The request a probe sends for its target step of `test` on `target` at `addr`: what the
    /// protocol needs and nothing of the probe's identity (never its own WireGuard key). `None`
    /// when the helper can't check this endpoint (a WireGuard endpoint without a helper peer).
    pub fn for_target(test: TestKind, target: &TargetSpec, addr: SocketAddr) -> Option<ControlRequest> {
        let vpn = match test {
            // The control is the same endpoint under the control SNI; the helper adds nothing.
            TestKind::Throttle => return None,
            TestKind::Openvpn => Some(VpnControl {
                transport: target.transport,
                openvpn: target.openvpn.as_ref().map(|p| p.spec.clone()),
                ..VpnControl::default()
            }),
            TestKind::Wireguard => {
                let spec = &target.wireguard.as_ref()?.spec;
                Some(VpnControl {
                    wireguard_server_public_key: Some(spec.server_public_key.clone()),
                    wireguard_helper_private_key: Some(spec.helper_private_key.clone()?),
                    ..VpnControl::default()
                })
            }
            TestKind::Obfs4 => Some(VpnControl {
                obfs4_cert: Some(KeyText(target.obfs4.as_ref()?.params()?.cert.to_base64())),
                ..VpnControl::default()
            }),
            _ => None,
        };
        let resolver =
            matches!(test, TestKind::Dot | TestKind::Doh).then(|| target.resolver.as_deref().cloned().unwrap_or_default());
        Some(ControlRequest {
            test,
            domain: Some(target.domain.clone()),
            address: Some(addr.ip()),
            port: Some(addr.port()),
            vpn,
            resolver,
        })
    }

    /// A DNS control for `name`.
    pub fn dns(name: &str) -> ControlRequest {
        ControlRequest {
            test: TestKind::Dns,
            domain: Some(name.to_string()),
            address: None,
            port: None,
            vpn: None,
            resolver: None,
        }
    }

    /// A TLS control: a handshake with `sni` to `addr`.
    pub fn tls(sni: &str, addr: SocketAddr) -> ControlRequest {
        ControlRequest {
            test: TestKind::Tls,
            domain: Some(sni.to_string()),
            address: Some(addr.ip()),
            port: Some(addr.port()),
            vpn: None,
            resolver: None,
        }
    }

    /// The step this request asks for, every field checked (the helper's side; the helper runs
    /// the handshake only, with its own peer's keys and no tunnel data phase).
    pub fn step(&self) -> Result<TargetStep, ControlRequestError> {
        let test = self.test.as_str();
        let missing = |field| ControlRequestError::Missing { test, field };
        let invalid = |reason| ControlRequestError::Invalid { test, reason };
        let domain = || self.domain.clone().ok_or(missing("domain"));
        let addr = || -> Result<SocketAddr, ControlRequestError> {
            Ok(SocketAddr::new(self.address.ok_or(missing("address"))?, self.port.ok_or(missing("port"))?))
        };
        let vpn = self.vpn.clone().unwrap_or_default();
        Ok(match self.test {
            TestKind::Dns => TargetStep::Dns { domain: domain()? },
            TestKind::Tcp => TargetStep::Tcp { addr: addr()? },
            TestKind::Tls => TargetStep::Tls { addr: addr()?, sni: domain()? },
            TestKind::Quic => TargetStep::Quic { addr: addr()?, sni: domain()? },
            TestKind::Openvpn => {
                let spec = vpn.openvpn.ok_or(missing("vpn.openvpn"))?;
                let params = OpenvpnParams::try_from(spec).map_err(invalid)?;
                TargetStep::Openvpn { addr: addr()?, transport: vpn.transport.unwrap_or(Transport::Udp), wrap: params.wrap }
            }
            TestKind::Wireguard => {
                let public = vpn.wireguard_server_public_key.ok_or(missing("vpn.wireguard_server_public_key"))?;
                let private = vpn.wireguard_helper_private_key.ok_or(missing("vpn.wireguard_helper_private_key"))?;
                let keys = peer_keys(&public, &private, None).map_err(invalid)?;
                TargetStep::Wireguard { addr: addr()?, keys, tunnel: None }
            }
            TestKind::Ikev2 => TargetStep::Ikev2 { addr: addr()? },
            TestKind::Tor => TargetStep::Tor { addr: addr()? },
            TestKind::Ech => TargetStep::Ech { addr: addr()?, sni: domain()? },
            TestKind::Dot | TestKind::Doh => {
                let params = self.resolver.clone().unwrap_or_default();
                params.check().map_err(|reason| ControlRequestError::Resolver { test, reason })?;
                TargetStep::EncryptedDns { test: self.test, addr: addr()?, sni: domain()?, params }
            }
            TestKind::Obfs4 => {
                let cert = vpn.obfs4_cert.ok_or(missing("vpn.obfs4_cert"))?;
                let cert = BridgeCert::parse(&cert.0).map_err(|e| invalid(ParamsError::Obfs4Cert(e)))?;
                TargetStep::Obfs4 { addr: addr()?, cert }
            }
            TestKind::Throttle => return Err(ControlRequestError::NotOffered { test }),
        })
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

/// Execute a checked control step from this machine's network (the helper's side).
pub async fn execute(step: &TargetStep, trust: &HelperTrust) -> ControlResponse {
    let ctx = StepContext::new(Vantage::Helper, trust.timeout);
    let env = StepEnv { anchors: &trust.anchors, data_phase: DataPhase::Skip, dns_resolver: trust.dns_resolver };
    ControlResponse { observations: step.run(&ctx, Role::Target, env).await }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(test: TestKind) -> ControlRequest {
        ControlRequest {
            test,
            domain: Some("a.example".into()),
            address: Some("203.0.113.20".parse().expect("ip")),
            port: Some(443),
            vpn: None,
            resolver: None,
        }
    }

    #[test]
    fn a_request_is_checked_once_into_the_step_the_probe_ran() {
        let addr: SocketAddr = "203.0.113.20:443".parse().expect("addr");
        assert_eq!(request(TestKind::Tls).step(), Ok(TargetStep::Tls { addr, sni: "a.example".into() }));
        assert_eq!(request(TestKind::Tcp).step(), Ok(TargetStep::Tcp { addr }));
        assert_eq!(request(TestKind::Ech).step(), Ok(TargetStep::Ech { addr, sni: "a.example".into() }));
        assert_eq!(ControlRequest::dns("a.example").step(), Ok(TargetStep::Dns { domain: "a.example".into() }));
        let no_port = ControlRequest { port: None, ..request(TestKind::Quic) };
        assert_eq!(no_port.step(), Err(ControlRequestError::Missing { test: "quic", field: "port" }));
        let no_params = request(TestKind::Openvpn);
        assert_eq!(no_params.step(), Err(ControlRequestError::Missing { test: "openvpn", field: "vpn.openvpn" }));
    }

    #[test]
    fn an_encrypted_dns_control_repeats_the_probes_query() {
        let target = &crate::targets::parse(
            "[[resolver]]\nname='r'\naddresses=['203.0.113.53']\ndot_name='dot.example'\ndoh_name='doh.example'\ndoh_path='/q'\n",
            "t",
        )
        .expect("valid")[1];
        let addr: SocketAddr = "203.0.113.53:443".parse().expect("addr");
        let req = ControlRequest::for_target(TestKind::Doh, target, addr).expect("a request");
        let json = serde_json::to_string(&req).expect("json");
        let back: ControlRequest = serde_json::from_str(&json).expect("parses");
        let step = back.step().expect("valid");
        assert_eq!(step, crate::runner::edns::step(TestKind::Doh, target, addr));
        let TargetStep::EncryptedDns { sni, params, .. } = step else { panic!("{step:?}") };
        assert_eq!((sni.as_str(), params.doh_path.as_str(), params.query.as_str()), ("doh.example", "/q", "example.org"));
        let bad =
            ControlRequest { resolver: Some(ResolverParams { doh_path: "nope".into(), ..ResolverParams::default() }), ..back };
        assert!(matches!(bad.step(), Err(ControlRequestError::Resolver { test: "doh", .. })));
    }

    #[test]
    fn a_wireguard_control_uses_the_helper_peer_and_no_tunnel() {
        let key = "YDGkhG/i5s4SR5FqDrfvMUzNhKnz5RqYkyZ/dZkDBno=";
        let public = "VCL4PuDDDkaj72v22QuilTjmK+2PzN9O2OrMYovzVFg=";
        let vpn = VpnControl {
            wireguard_server_public_key: Some(public.into()),
            wireguard_helper_private_key: Some(KeyText(key.into())),
            ..VpnControl::default()
        };
        let step = ControlRequest { vpn: Some(vpn), ..request(TestKind::Wireguard) }.step().expect("valid");
        let TargetStep::Wireguard { keys, tunnel, .. } = step else { panic!("{step:?}") };
        assert_eq!(keys, peer_keys(public, &KeyText(key.into()), None).expect("keys"));
        assert_eq!(tunnel, None);
        let bad = VpnControl {
            wireguard_server_public_key: Some("short".into()),
            wireguard_helper_private_key: Some(KeyText(key.into())),
            ..VpnControl::default()
        };
        let err = ControlRequest { vpn: Some(bad), ..request(TestKind::Wireguard) }.step().expect_err("bad key");
        assert!(err.to_string().contains("server_public_key"), "{err}");
        assert!(!err.to_string().contains(key), "never echoes a key: {err}");
    }

    #[test]
    fn an_obfs4_control_carries_the_cert_and_nothing_else_of_the_target() {
        let cert = "1zafY8m+vab3C1YJOMbZXKebX9A8Pd1v/Vb7lsZ4NnShUA8A0LMW0GBmRAKAT2p7auhwPg";
        let file = format!(
            "[[target]]\nname='b'\ndomain='bridge.example'\ntests=['obfs4']\n[target.obfs4]\nbridge='203.0.113.40:443 cert={cert}'\n"
        );
        let target = &crate::targets::parse(&file, "t").expect("valid")[0];
        let addr: SocketAddr = "203.0.113.40:443".parse().expect("addr");
        let req = ControlRequest::for_target(TestKind::Obfs4, target, addr).expect("a control");
        assert_eq!(req.vpn.as_ref().and_then(|v| v.obfs4_cert.as_ref()), Some(&KeyText(cert.into())));
        let Ok(TargetStep::Obfs4 { addr: got, cert: parsed }) = req.step() else { panic!("an obfs4 step") };
        assert_eq!((got, parsed.to_base64()), (addr, cert.to_string()));
        let missing = ControlRequest { vpn: None, ..req.clone() };
        assert_eq!(missing.step().err(), Some(ControlRequestError::Missing { test: "obfs4", field: "vpn.obfs4_cert" }));
        let bad =
            ControlRequest { vpn: Some(VpnControl { obfs4_cert: Some(KeyText("AAAA".into())), ..VpnControl::default() }), ..req };
        let err = bad.step().expect_err("bad cert");
        assert!(err.to_string().contains("obfs4 cert"), "{err}");
    }
}
