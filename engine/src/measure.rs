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
    ControlKind, Detail, DnsEngine, Family, Measurement, Mechanism, Observation, ProbeInfo, Role, SCHEMA_VERSION, Software,
    Status, Target, TestKind, Transport, Vantage, Verdict,
};

use crate::classify::{self, ResidualTaint, bogon::BogonPolicy};
use crate::control::{ControlRequest, DohClient, HelperClient};
use crate::runner::dns::{self, QueryType};
use crate::runner::tls::DataPhase;
use crate::runner::verify::TrustAnchors;
use crate::runner::{StepContext, edns, quic, tls, udp};
use crate::step::{StepEnv, TargetStep};
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
    /// A host that runs no DNS service; the target name is sent there too as an injection control.
    pub dns_blackhole: Option<IpAddr>,
    /// An IPv6 endpoint that answers TCP (a reference endpoint): connected to when an IPv6
    /// measurement fails at the address level, to tell broken IPv6 from a blocked address.
    pub ipv6_control: Option<SocketAddr>,
    /// How long to keep listening after the first DNS reply (injection races the real answer).
    pub dns_linger: Duration,
    /// Where the probe sits (country, ASN): never its address.
    pub probe: ProbeInfo,
    /// Addresses that are not bogons here (a lab's documentation ranges).
    pub bogons: BogonPolicy,
    /// The hop follow-up of `blocked` `tls`/`dns` verdicts (`None`: off, `--no-localise`).
    pub localise: Option<crate::localise::LocaliseConfig>,
    /// When an IPv6 destination last answered this probe, shared by every measurement of a run
    /// and a daemon's runs: without `ipv6_control`, the evidence that IPv6 works here.
    pub ipv6_answered: Ipv6Answered,
}

/// When an IPv6 destination last answered the probe (see [`classify::family::unproven_ipv6`]).
#[derive(Clone, Debug, Default)]
pub struct Ipv6Answered(Arc<std::sync::Mutex<Option<tokio::time::Instant>>>);

impl Ipv6Answered {
    /// Note `observations`' IPv6 answers, if any, at `now`.
    pub fn note(&self, observations: &[Observation], now: tokio::time::Instant) {
        if classify::family::ipv6_answered(observations)
            && let Ok(mut last) = self.0.lock()
        {
            *last = Some(now);
        }
    }

    /// How long ago an IPv6 destination last answered; `None`: never.
    pub fn ago(&self, now: tokio::time::Instant) -> Option<Duration> {
        self.0.lock().ok().and_then(|last| *last).map(|at| now.saturating_duration_since(at))
    }
}

/// A target's name resolved off the censored path, shared by its endpoint tests (the scheduler
/// resolves once, to learn which server a test will reach before it runs).
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The address to connect to, if the name resolved.
    pub address: Option<IpAddr>,
    /// The lookup, recorded in each measurement that uses it (its times are its own).
    pub observation: Observation,
}

impl Resolved {
    /// What a measurement of `family` uses: the same lookup, and its first address of that family
    /// (none if the name has none; the measurement then says it could not be resolved).
    pub fn in_family(&self, family: Family) -> Resolved {
        Resolved { address: family_address(&self.observation, family), observation: self.observation.clone() }
    }

    /// The families the lookup found an address of, IPv4 first: a dual-stack name is measured on
    /// each of them separately.
    pub fn families(&self) -> Vec<Family> {
        Family::ALL.iter().copied().filter(|f| family_address(&self.observation, *f).is_some()).collect()
    }
}

/// Resolve `target`'s name for its endpoint tests: the controls first (a poisoned system resolver
/// must not decide where we connect). `None` for a target with a fixed address.
pub async fn resolve(cfg: &MeasureConfig, target: &TargetSpec) -> Option<Resolved> {
    if target.address.is_some() {
        return None;
    }
    let ctx = StepContext::new(Vantage::Probe, cfg.timeout);
    let (address, observation) = resolve_address(cfg, &ctx, &target.domain).await;
    Some(Resolved { address, observation })
}

/// The transport a test of `target` uses (`None` for DNS).
pub fn transport(test: TestKind, target: &TargetSpec) -> Option<Transport> {
    match test {
        TestKind::Dns => None,
        TestKind::Quic | TestKind::Wireguard | TestKind::Ikev2 => Some(Transport::Udp),
        TestKind::Openvpn => Some(target.transport.unwrap_or(Transport::Udp)),
        TestKind::Tcp
        | TestKind::Tls
        | TestKind::Tor
        | TestKind::Ech
        | TestKind::Dot
        | TestKind::Doh
        | TestKind::Obfs4
        | TestKind::Throttle => Some(Transport::Tcp),
    }
}

/// Measure `target` with `test`. Endpoint tests connect to the target's fixed address, or to
/// `resolved` (resolving here when the caller did not); `taint` is a live residual penalty on
/// that server, which the classifier weighs.
pub async fn measure(
    cfg: &MeasureConfig,
    target: &TargetSpec,
    test: TestKind,
    resolved: Option<&Resolved>,
    taint: Option<&ResidualTaint>,
) -> Measurement {
    let started_at = Utc::now().trunc_subsecs(0);
    let ctx = StepContext::new(Vantage::Probe, cfg.timeout);
    let mut controls = Vec::new();
    let mut observations = Vec::new();
    let mut address = target.address;

    let verdict = match test {
        TestKind::Dns => {
            dns_steps(cfg, &ctx, target, &mut observations, &mut controls).await;
            // Answers unlike the control's are checked over TLS (classify::dns::forged).
            observations.extend(dns::validate_answers(cfg, &ctx, target, &observations).await);
            classify::classify(test, &observations, &cfg.bogons)
        }
        TestKind::Tcp
        | TestKind::Tls
        | TestKind::Quic
        | TestKind::Openvpn
        | TestKind::Wireguard
        | TestKind::Ikev2
        | TestKind::Tor
        | TestKind::Ech
        | TestKind::Dot
        | TestKind::Doh
        | TestKind::Obfs4
        | TestKind::Throttle => {
            let own;
            let resolved = match resolved {
                Some(r) => Some(r),
                None => {
                    own = resolve(cfg, target).await;
                    own.as_ref()
                }
            };
            if let Some(r) = resolved {
                observations.push(r.observation.clone());
                address = r.address;
            }
            match address {
                Some(ip) => match TargetStep::for_probe(test, target, SocketAddr::new(ip, target.port)) {
                    Some(step) => endpoint_steps(cfg, &ctx, target, &step, taint, &mut observations, &mut controls).await,
                    None => Verdict::new(
                        Status::Inconclusive,
                        Mechanism::Other,
                        vec![format!("no {} parameters for this target", test.as_str())],
                    ),
                },
                None => Verdict::new(
                    Status::Inconclusive,
                    Mechanism::Other,
                    vec![format!("{} could not be resolved, so nothing was connected to", target.domain)],
                ),
            }
        }
    };
    let runtime_ms = u64::try_from(ctx.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
    let sni_test = matches!(test, TestKind::Tls | TestKind::Quic | TestKind::Dot | TestKind::Doh | TestKind::Throttle);
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
            transport: transport(test, target),
            control_sni: sni_test.then(|| target.control_sni.clone()),
            // The probe stamps the version of the signed list it measured from.
            list_version: None,
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
        if let Some(blackhole) = cfg.dns_blackhole {
            obs.push(blackhole_lookup(ctx, blackhole, name, cfg.dns_linger).await);
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

/// Ask a host that runs no DNS service: silence is expected, any answer is injected.
async fn blackhole_lookup(ctx: &StepContext, blackhole: IpAddr, name: &str, linger: Duration) -> Observation {
    // Wait no longer than the linger: silence is the expected answer, not worth a full timeout.
    let short = StepContext { timeout: linger.max(Duration::from_millis(500)), ..*ctx };
    let mut obs = dns::udp_lookup(&short, Role::Control, SocketAddr::new(blackhole, 53), name, QueryType::A, linger).await;
    if let Some(Detail::Dns(d)) = &mut obs.detail {
        d.engine = DnsEngine::Blackhole;
    }
    obs
}

/// Resolve `name` off the censored path: the helper first, DoH second.
async fn dns_control(cfg: &MeasureConfig, ctx: &StepContext, name: &str, controls: &mut Vec<ControlKind>) -> Vec<Observation> {
    if let Some(helper) = &cfg.helper {
        match helper.control(&ControlRequest::dns(name), cfg.timeout * 2).await {
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
    family_address(obs, Family::Ipv4).or_else(|| family_address(obs, Family::Ipv6))
}

/// The first answer of `family` of a DNS step.
fn family_address(obs: &Observation, family: Family) -> Option<IpAddr> {
    let Some(Detail::Dns(detail)) = &obs.detail else { return None };
    let answers = detail.replies.first().map(|r| r.answers.as_slice()).unwrap_or_default();
    answers.iter().map(|a| a.ip).find(|ip| Family::of(*ip) == family)
}

/// The probe's steps for one trial of an endpoint test: its controls first (control SNI, UDP
/// echo, random bytes), then the target step.
async fn probe_trial(cfg: &MeasureConfig, ctx: &StepContext, target: &TargetSpec, step: &TargetStep) -> Vec<Observation> {
    let anchors = cfg.anchors.as_ref();
    let mut obs = Vec::new();
    match step {
        TargetStep::Tls { addr, .. } => {
            let control = SocketAddr::new(addr.ip(), target.control_port.unwrap_or(addr.port()));
            obs.extend(tls::handshake(ctx, Role::Control, control, &target.control_sni, anchors, DataPhase::Fetch).await);
        }
        TargetStep::Quic { addr, .. } => {
            if let Some(port) = target.udp_echo_port {
                obs.push(udp::echo(ctx, Role::Control, SocketAddr::new(addr.ip(), port)).await);
            }
            let control = SocketAddr::new(addr.ip(), target.control_port.unwrap_or(addr.port()));
            obs.push(quic::handshake(ctx, Role::Control, control, &target.control_sni, anchors).await);
        }
        TargetStep::Openvpn { .. } | TargetStep::Wireguard { .. } | TargetStep::Ikev2 { .. } => {
            obs.extend(random_bytes_control(ctx, target, step).await);
        }
        TargetStep::EncryptedDns { .. } => return edns::probe_trial(ctx, target, step, anchors).await,
        TargetStep::Obfs4 { addr, .. } => obs.extend(obfs4_control(ctx, target, *addr).await),
        // The ECH pair carries its own control (the same handshake without ECH); throttle's are
        // inside its step, interleaved with the target's downloads.
        TargetStep::Dns { .. }
        | TargetStep::Tcp { .. }
        | TargetStep::Tor { .. }
        | TargetStep::Ech { .. }
        | TargetStep::Throttle { .. } => {}
    }
    let env = StepEnv { anchors, data_phase: DataPhase::Fetch, dns_resolver: None };
    obs.extend(step.run(ctx, Role::Target, env).await);
    obs
}

/// The random-bytes control of a VPN step: as many bytes as the protocol's first packet, to the
/// echo address on the same port number (another address, so a residual block triggered by the
/// protocol can't reach it). Nothing when the target names no echo address.
async fn random_bytes_control(ctx: &StepContext, target: &TargetSpec, step: &TargetStep) -> Vec<Observation> {
    use crate::runner::vpn::{self, codec::wireguard::INITIATION_LEN};
    let Some(echo) = target.echo_address else { return Vec::new() };
    let (addr, transport, len) = match step {
        TargetStep::Openvpn { addr, transport, wrap } => (addr, *transport, vpn::openvpn::first_packet_len(wrap, *transport)),
        TargetStep::Wireguard { addr, .. } => (addr, Transport::Udp, INITIATION_LEN),
        TargetStep::Ikev2 { addr } => (addr, Transport::Udp, vpn::ikev2::first_packet_len(addr.port() == vpn::ikev2::NAT_T_PORT)),
        _ => return Vec::new(),
    };
    vpn::random::control(ctx, SocketAddr::new(echo, addr.port()), transport, len).await
}

/// The obfs4 test's low-entropy control: printable text as long as the obfs4 flow, to the TCP
/// echo on the bridge's port number at the echo address. Nothing without an echo address.
async fn obfs4_control(ctx: &StepContext, target: &TargetSpec, addr: SocketAddr) -> Vec<Observation> {
    let Some(echo) = target.echo_address else { return Vec::new() };
    crate::runner::obfs4::control(ctx, SocketAddr::new(echo, addr.port()), crate::runner::obfs4::expected_flow_len()).await
}

/// Run every trial (controls first in each) with the helper's check alongside, classify each
/// trial, and sum them up: one blocked trial is enough to say `blocked`, and the verdict says in
/// how many of how many.
async fn endpoint_steps(
    cfg: &MeasureConfig,
    ctx: &StepContext,
    target: &TargetSpec,
    step: &TargetStep,
    taint: Option<&ResidualTaint>,
    observations: &mut Vec<Observation>,
    controls: &mut Vec<ControlKind>,
) -> Verdict {
    let (test, addr) = (step.test(), step.addr());
    // Throttle's `trials` are its pairs, all in one step (its rule needs every pair at once).
    let trials = if test == TestKind::Throttle { 1 } else { target.trials.clamp(1, crate::targets::MAX_TRIALS) };
    let probe_side = async {
        let mut per_trial = Vec::new();
        for trial in 1..=trials {
            let mut obs = probe_trial(cfg, ctx, target, step).await;
            if trials > 1 {
                obs.iter_mut().for_each(|o| o.trial = Some(trial));
            }
            per_trial.push(obs);
        }
        per_trial
    };
    let helper_side = async {
        let helper = cfg.helper.as_ref()?;
        // None: no helper peer published, and a WireGuard server answers nobody it doesn't know.
        let req = ControlRequest::for_target(test, target, addr?)?;
        match helper.control(&req, cfg.timeout * 3).await {
            Ok(obs) => Some(obs),
            Err(e) => {
                tracing::warn!("{} control via helper failed: {e}", test.as_str());
                None
            }
        }
    };
    let (per_trial, helper_obs) = tokio::join!(probe_side, helper_side);
    if matches!(test, TestKind::Tls | TestKind::Quic | TestKind::Dot | TestKind::Doh | TestKind::Throttle) {
        controls.push(ControlKind::ControlSni);
    }
    if test == TestKind::Ech {
        controls.push(ControlKind::NoEch);
    }
    if target.echo_address.is_some() && matches!(test, TestKind::Openvpn | TestKind::Wireguard | TestKind::Ikev2) {
        controls.push(ControlKind::RandomBytes);
    }
    if target.echo_address.is_some() && test == TestKind::Obfs4 {
        controls.push(ControlKind::LowEntropy);
    }
    let helper_obs = helper_obs.unwrap_or_default();
    if !helper_obs.is_empty() {
        controls.push(ControlKind::Helper);
    }
    let mut verdict = classify::verdict(test, &per_trial, &helper_obs, &cfg.bogons, taint);
    if test == TestKind::Obfs4 {
        verdict = classify::obfs4::clock_checked(verdict, cfg.helper.as_ref().and_then(HelperClient::clock_offset_secs));
    }
    observations.extend(per_trial.into_iter().flatten());
    observations.extend(helper_obs);
    cfg.ipv6_answered.note(observations, tokio::time::Instant::now());
    let ipv6 = addr.is_some_and(|a| Family::of(a.ip()) == Family::Ipv6);
    if !(ipv6 && classify::family::needs_ipv6_control(&verdict)) {
        return verdict;
    }
    match cfg.ipv6_control {
        Some(control) => {
            let obs = crate::runner::tcp::connect(ctx, Role::Control, control).await.0;
            let verdict = classify::family::broken_ipv6(verdict, &obs);
            observations.push(obs);
            verdict
        }
        None => classify::family::unproven_ipv6(verdict, cfg.ipv6_answered.ago(tokio::time::Instant::now())),
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
        let resolved = Resolved { address: first_address(&obs), observation: obs };
        assert_eq!(resolved.families(), [Family::Ipv4, Family::Ipv6], "dual stack: measured on each");
        assert_eq!(resolved.in_family(Family::Ipv6).address, Some("2001:db8::1".parse().expect("ip")));
    }
}
