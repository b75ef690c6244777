//! The target step of a test, parsed and ready: the one table from a test kind to its runner.
//!
//! The probe runs a target step after its own controls (control SNI, random bytes); the test
//! helper runs the very same step from outside the censored network as the control. Both build a
//! [`TargetStep`] once (the probe from its targets file, the helper from a control request) and
//! dispatch here, so what the helper vouches for is exactly what the probe tried.

use std::net::SocketAddr;

use vantage_measurement::{Observation, Role, TestKind, Transport};

use crate::runner::obfs4::codec::BridgeCert;
use crate::runner::throttle::{self, ThrottlePlan};
use crate::runner::tls::DataPhase;
use crate::runner::verify::TrustAnchors;
use crate::runner::vpn::codec::openvpn::Wrap;
use crate::runner::vpn::codec::wireguard::PeerKeys;
use crate::runner::vpn::wireguard::Tunnel;
use crate::runner::{StepContext, dns, ech, edns, obfs4, quic, tcp, tls, vpn};
use crate::targets::{ResolverParams, TargetSpec};

/// One test's step against its target, with everything its runner needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetStep {
    /// Resolve a name (the helper's DNS control; the probe's own lookups are several, see
    /// [`crate::measure`]).
    Dns {
        /// The name.
        domain: String,
    },
    /// Connect over TCP.
    Tcp {
        /// The endpoint.
        addr: SocketAddr,
    },
    /// TLS handshake with an SNI.
    Tls {
        /// The endpoint.
        addr: SocketAddr,
        /// The name sent.
        sni: String,
    },
    /// QUIC handshake with an SNI.
    Quic {
        /// The endpoint.
        addr: SocketAddr,
        /// The name sent.
        sni: String,
    },
    /// OpenVPN hard reset.
    Openvpn {
        /// The endpoint.
        addr: SocketAddr,
        /// UDP or TCP.
        transport: Transport,
        /// The control channel's protection.
        wrap: Wrap,
    },
    /// WireGuard handshake (and a data phase when tunnel addresses are known).
    Wireguard {
        /// The endpoint.
        addr: SocketAddr,
        /// This peer's keys (the probe's, or the helper peer's).
        keys: PeerKeys,
        /// Tunnel addresses for the data phase.
        tunnel: Option<Tunnel>,
    },
    /// IKEv2 IKE_SA_INIT.
    Ikev2 {
        /// The endpoint.
        addr: SocketAddr,
    },
    /// TLS and VERSIONS to a Tor OR port.
    Tor {
        /// The endpoint.
        addr: SocketAddr,
    },
    /// The ECH pair: TLS 1.3 with GREASE ECH and without, same address and SNI, random order.
    Ech {
        /// The endpoint.
        addr: SocketAddr,
        /// The name sent (in the clear: GREASE ECH has no public name of its own).
        sni: String,
    },
    /// DNS over TLS, or over HTTPS, to a resolver ([`edns`]).
    EncryptedDns {
        /// `dot` or `doh`.
        test: TestKind,
        /// The endpoint.
        addr: SocketAddr,
        /// The resolver's name, sent as SNI.
        sni: String,
        /// The DoH path and the name asked for.
        params: ResolverParams,
    },
    /// obfs4 handshake with a bridge (and the data phase on the probe).
    Obfs4 {
        /// The bridge.
        addr: SocketAddr,
        /// The bridge's node id and public key.
        cert: BridgeCert,
    },
    /// Downloads from a throughput reference endpoint, control and target SNI interleaved.
    Throttle {
        /// Endpoint, names, pins and pairs.
        plan: Box<ThrottlePlan>,
    },
}

/// What a step may use besides its own parameters.
#[derive(Clone, Copy, Debug)]
pub struct StepEnv<'a> {
    /// Trust anchors for TLS and QUIC verification.
    pub anchors: &'a TrustAnchors,
    /// Whether a TLS step also fetches data (the probe does; the helper vouches for the handshake).
    pub data_phase: DataPhase,
    /// A UDP resolver for DNS steps instead of the system resolver.
    pub dns_resolver: Option<SocketAddr>,
}

impl TargetStep {
    /// The probe's step for `test` on `target` at `addr` (the probe's own WireGuard keys). `None`
    /// for DNS, whose probe-side lookups [`crate::measure`] runs itself, and for a VPN test whose
    /// table the target lacks (the targets file refuses that on load).
    pub fn for_probe(test: TestKind, target: &TargetSpec, addr: SocketAddr) -> Option<TargetStep> {
        Some(match test {
            TestKind::Dns => return None,
            TestKind::Tcp => TargetStep::Tcp { addr },
            TestKind::Tls => TargetStep::Tls { addr, sni: target.domain.clone() },
            TestKind::Quic => TargetStep::Quic { addr, sni: target.domain.clone() },
            TestKind::Openvpn => TargetStep::Openvpn {
                addr,
                transport: target.transport.unwrap_or(Transport::Udp),
                wrap: target.openvpn.as_ref()?.wrap.clone(),
            },
            TestKind::Wireguard => {
                let params = target.wireguard.as_ref()?;
                TargetStep::Wireguard { addr, keys: params.keys.clone(), tunnel: params.tunnel }
            }
            TestKind::Ikev2 => TargetStep::Ikev2 { addr },
            TestKind::Tor => TargetStep::Tor { addr },
            TestKind::Ech => TargetStep::Ech { addr, sni: target.domain.clone() },
            TestKind::Dot | TestKind::Doh => edns::step(test, target, addr),
            TestKind::Obfs4 => TargetStep::Obfs4 { addr, cert: target.obfs4.as_ref()?.params()?.cert.clone() },
            TestKind::Throttle => TargetStep::Throttle { plan: Box::new(throttle::plan(target, addr)?) },
        })
    }

    /// The test this step belongs to.
    pub fn test(&self) -> TestKind {
        match self {
            Self::Dns { .. } => TestKind::Dns,
            Self::Tcp { .. } => TestKind::Tcp,
            Self::Tls { .. } => TestKind::Tls,
            Self::Quic { .. } => TestKind::Quic,
            Self::Openvpn { .. } => TestKind::Openvpn,
            Self::Wireguard { .. } => TestKind::Wireguard,
            Self::Ikev2 { .. } => TestKind::Ikev2,
            Self::Tor { .. } => TestKind::Tor,
            Self::Ech { .. } => TestKind::Ech,
            Self::EncryptedDns { test, .. } => *test,
            Self::Obfs4 { .. } => TestKind::Obfs4,
            Self::Throttle { .. } => TestKind::Throttle,
        }
    }

    /// The endpoint the step contacts (`None` for DNS).
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Dns { .. } => None,
            Self::Tcp { addr }
            | Self::Tls { addr, .. }
            | Self::Quic { addr, .. }
            | Self::Openvpn { addr, .. }
            | Self::Wireguard { addr, .. }
            | Self::Ikev2 { addr }
            | Self::Tor { addr }
            | Self::Ech { addr, .. }
            | Self::EncryptedDns { addr, .. }
            | Self::Obfs4 { addr, .. } => Some(*addr),
            Self::Throttle { plan } => Some(plan.addr),
        }
    }

    /// Run the step as `role`; its observations in order. The ECH pair sets its own roles (the
    /// GREASE handshake is the target, the one without ECH the control), for the helper too.
    pub async fn run(&self, ctx: &StepContext, role: Role, env: StepEnv<'_>) -> Vec<Observation> {
        match self {
            Self::Dns { domain } => vec![match env.dns_resolver {
                // Both families: a dual-stack target is measured on each, and the helper checks a
                // listed name's IPv6 address against these answers too.
                Some(resolver) => dns::udp_lookup_both(ctx, role, resolver, domain).await,
                None => dns::system_lookup(ctx, role, domain).await,
            }],
            Self::Tcp { addr } => vec![tcp::connect(ctx, role, *addr).await.0],
            Self::Tls { addr, sni } => tls::handshake(ctx, role, *addr, sni, env.anchors, env.data_phase).await,
            Self::Quic { addr, sni } => vec![quic::handshake(ctx, role, *addr, sni, env.anchors).await],
            Self::Openvpn { addr, transport, wrap } => vpn::openvpn::handshake(ctx, role, *addr, *transport, wrap).await,
            Self::Wireguard { addr, keys, tunnel } => vpn::wireguard::handshake(ctx, role, *addr, keys, *tunnel).await,
            Self::Ikev2 { addr } => vpn::ikev2::sa_init(ctx, role, *addr).await,
            Self::Tor { addr } => vpn::tor::handshake(ctx, role, *addr).await,
            Self::Ech { addr, sni } => ech::pair(ctx, *addr, sni, env.anchors, ech::Order::random()).await,
            Self::EncryptedDns { test, addr, sni, params } => edns::run(ctx, role, *test, *addr, sni, params, env.anchors).await,
            Self::Obfs4 { addr, cert } => obfs4::handshake(ctx, role, *addr, cert, env.data_phase).await,
            // Both roles in one step: the pairs interleave control and target downloads.
            Self::Throttle { plan } => throttle::run(ctx, plan).await,
        }
    }
}
