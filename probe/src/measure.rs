//! One measurement: run the test's steps with their controls, classify, wrap in the envelope.
//!
//! Order matters because of residual censorship (a censor that, once triggered, blocks the
//! whole 3-tuple for 90–180 s): on the probe's path the control SNI always runs *before* the
//! target SNI, so a residual block triggered by the target can't turn the control into a false
//! failure. Helper steps run concurrently: they leave from another network and can't trigger
//! anything on the probe's path.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use uuid::Uuid;
use vantage_measurement::{
    ControlKind, Detail, Measurement, Observation, ProbeInfo, Role, SCHEMA_VERSION, Software, Target,
    TestKind, Transport, Vantage,
};

use crate::classify::{self, bogon::BogonPolicy};
use crate::control::{ControlRequest, DohClient, HelperClient};
use crate::runner::dns::{self, QueryType};
use crate::runner::verify::TrustAnchors;
use crate::runner::{StepContext, quic, tcp, tls};
use crate::targets::TargetSpec;

/// Everything a measurement needs besides its target.
#[derive(Clone, Debug)]
pub struct MeasureConfig {
    /// Trust anchors for TLS and QUIC.
    pub anchors: Arc<TrustAnchors>,
    /// The wait for one network step.
    pub timeout: Duration,
    /// The collector's test helper, if any.
    pub helper: Option<HelperClient>,
    /// A DoH resolver as DNS control, if any.
    pub doh: Option<DohClient>,
    /// A UDP resolver queried directly, whose every reply is recorded.
    pub udp_resolver: Option<SocketAddr>,
    /// Whether to ask the system resolver too.
    pub system_resolver: bool,
    /// How long to keep listening after the first DNS reply (injection races the real answer).
    pub dns_linger: Duration,
    /// Where the probe sits (country, ASN): never its address.
    pub probe: ProbeInfo,
    /// Addresses that are not bogons here (a lab's documentation ranges).
    pub bogons: BogonPolicy,
}

impl MeasureConfig {
    /// The longest one measurement can take: resolution, control, target, helper in sequence,
    /// plus the DNS linger, plus slack for the helper's own round trip.
    pub fn worst_case(&self) -> Duration {
        self.timeout * 6 + self.dns_linger + Duration::from_secs(5)
    }
}

/// Measure `target` with `test`.
pub async fn measure(cfg: &MeasureConfig, target: &TargetSpec, test: TestKind) -> Measurement {
    let started_at = Utc::now().trunc_subsecs(0);
    let ctx = StepContext::new(Vantage::Probe, cfg.timeout);
    let mut controls = Vec::new();
    let mut observations = Vec::new();
    let mut address = target.address;

    match test {
        TestKind::Dns => dns_steps(cfg, &ctx, target, &mut observations, &mut controls).await,
        TestKind::Tcp | TestKind::Tls | TestKind::Quic => {
            if address.is_none() {
                let (resolved, resolve_obs) = resolve_address(cfg, &ctx, &target.domain).await;
                observations.push(resolve_obs);
                address = resolved;
            }
            if let Some(ip) = address {
                let addr = SocketAddr::new(ip, target.port);
                endpoint_steps(cfg, &ctx, test, target, addr, &mut observations, &mut controls).await;
            }
        }
    }

    let verdict = classify::classify(test, &observations, &cfg.bogons);
    let runtime_ms = u64::try_from(ctx.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
    let sni_test = matches!(test, TestKind::Tls | TestKind::Quic);
    Measurement {
        id: Uuid::now_v7(),
        schema_version: SCHEMA_VERSION,
        software: software(),
        probe: cfg.probe.clone(),
        started_at,
        runtime_ms,
        test,
        target: Target {
            name: target.name.clone(),
            domain: Some(target.domain.clone()),
            address: if test == TestKind::Dns { None } else { address },
            port: (test != TestKind::Dns).then_some(target.port),
            transport: match test {
                TestKind::Dns => None,
                TestKind::Quic => Some(Transport::Udp),
                _ => Some(Transport::Tcp),
            },
            control_sni: sni_test.then(|| target.control_sni.clone()),
        },
        controls,
        observations,
        verdict,
    }
}

/// This software, for the envelope.
pub fn software() -> Software {
    Software {
        name: "vantage-probe".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
    }
}

async fn dns_steps(
    cfg: &MeasureConfig,
    ctx: &StepContext,
    target: &TargetSpec,
    observations: &mut Vec<Observation>,
    controls: &mut Vec<ControlKind>,
) {
    let name = target.domain.as_str();
    let probe_side = async {
        let mut obs = Vec::new();
        if cfg.system_resolver {
            obs.push(dns::system_lookup(ctx, Role::Target, name).await);
        }
        if let Some(resolver) = cfg.udp_resolver {
            obs.push(dns::udp_lookup(ctx, Role::Target, resolver, name, QueryType::A, cfg.dns_linger).await);
        }
        obs
    };
    let (probe_obs, control_obs) = tokio::join!(probe_side, dns_control(cfg, ctx, name, controls));
    if cfg.udp_resolver.is_some() && cfg.system_resolver {
        controls.push(ControlKind::SystemResolver);
    }
    observations.extend(probe_obs);
    observations.extend(control_obs);
}

/// Resolve `name` off the censored path: the helper first, DoH second.
async fn dns_control(cfg: &MeasureConfig, ctx: &StepContext, name: &str, controls: &mut Vec<ControlKind>) -> Vec<Observation> {
    if let Some(helper) = &cfg.helper {
        let req = ControlRequest { test: TestKind::Dns, domain: Some(name.to_string()), address: None, port: None };
        match helper.control(&req, cfg.timeout * 2).await {
            Ok(obs) => {
                controls.push(ControlKind::Helper);
                return obs;
            }
            Err(e) => tracing::warn!("DNS control via helper failed: {e}"),
        }
    }
    if let Some(doh) = &cfg.doh {
        controls.push(ControlKind::Doh);
        let doh_ctx = StepContext { vantage: Vantage::Doh, ..*ctx };
        return vec![doh.lookup(&doh_ctx, name).await];
    }
    Vec::new()
}

/// Find an address for `name`: from the controls (a poisoned system resolver must not decide
/// where we connect), falling back to the system resolver.
async fn resolve_address(cfg: &MeasureConfig, ctx: &StepContext, name: &str) -> (Option<IpAddr>, Observation) {
    let mut ignored = Vec::new();
    for obs in dns_control(cfg, ctx, name, &mut ignored).await {
        if let Some(ip) = first_address(&obs) {
            return (Some(ip), obs);
        }
    }
    let obs = match cfg.udp_resolver.filter(|_| !cfg.system_resolver) {
        Some(resolver) => dns::udp_lookup(ctx, Role::Target, resolver, name, QueryType::A, Duration::ZERO).await,
        None => dns::system_lookup(ctx, Role::Target, name).await,
    };
    (first_address(&obs), obs)
}

/// The first IPv4 answer of a DNS step (IPv6 if there is no IPv4).
fn first_address(obs: &Observation) -> Option<IpAddr> {
    let Some(Detail::Dns(detail)) = &obs.detail else { return None };
    let answers = detail.replies.first().map(|r| r.answers.as_slice()).unwrap_or_default();
    answers.iter().map(|a| a.ip).find(IpAddr::is_ipv4).or_else(|| answers.first().map(|a| a.ip))
}

async fn endpoint_steps(
    cfg: &MeasureConfig,
    ctx: &StepContext,
    test: TestKind,
    target: &TargetSpec,
    addr: SocketAddr,
    observations: &mut Vec<Observation>,
    controls: &mut Vec<ControlKind>,
) {
    let anchors = cfg.anchors.as_ref();
    let probe_side = async {
        match test {
            TestKind::Tcp => vec![tcp::connect(ctx, Role::Target, addr).await.0],
            TestKind::Tls => {
                let mut obs = tls::handshake(ctx, Role::Control, addr, &target.control_sni, anchors).await;
                obs.extend(tls::handshake(ctx, Role::Target, addr, &target.domain, anchors).await);
                obs
            }
            TestKind::Quic => vec![
                quic::handshake(ctx, Role::Control, addr, &target.control_sni, anchors).await,
                quic::handshake(ctx, Role::Target, addr, &target.domain, anchors).await,
            ],
            TestKind::Dns => Vec::new(),
        }
    };
    let helper_side = async {
        let helper = cfg.helper.as_ref()?;
        let req = ControlRequest {
            test,
            domain: Some(target.domain.clone()),
            address: Some(addr.ip()),
            port: Some(addr.port()),
        };
        match helper.control(&req, cfg.timeout * 3).await {
            Ok(obs) => Some(obs),
            Err(e) => {
                tracing::warn!("{} control via helper failed: {e}", test.as_str());
                None
            }
        }
    };
    let (probe_obs, helper_obs) = tokio::join!(probe_side, helper_side);
    if matches!(test, TestKind::Tls | TestKind::Quic) {
        controls.push(ControlKind::ControlSni);
    }
    observations.extend(probe_obs);
    if let Some(obs) = helper_obs {
        controls.push(ControlKind::Helper);
        observations.extend(obs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_measurement::{DnsAnswer, DnsDetail, DnsReply, Operation};

    #[test]
    fn ipv4_is_preferred_for_connecting() {
        let mut obs = crate::classify::testing::step(Vantage::Probe, Role::Target, Operation::Resolve, None);
        obs.detail = Some(Detail::Dns(DnsDetail {
            replies: vec![DnsReply {
                answers: vec![
                    DnsAnswer { ip: "2001:db8::1".parse().expect("ip"), ttl: 60 },
                    DnsAnswer { ip: "192.0.2.1".parse().expect("ip"), ttl: 60 },
                ],
                ..DnsReply::default()
            }],
            ..DnsDetail::default()
        }));
        assert_eq!(first_address(&obs), Some("192.0.2.1".parse().expect("ip")));
    }
}
