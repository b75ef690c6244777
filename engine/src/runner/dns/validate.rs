//! Answer validation: does an address only the probe's resolver returned serve the name?
//!
//! When the probe's answers share nothing with the control's, the classifier can't tell a CDN's
//! regional answer from a lying resolver by the addresses alone ([`crate::classify::dns::forged`]
//! has the reasoning). This step gathers what it needs: for each such address (at most
//! [`MAX_VALIDATED`]), a TLS handshake to `addr:port` with the name as SNI and the chain verified
//! for the name, from the probe and from the helper; and the same handshake to one of the
//! control's own addresses, from the helper, to show that the name does serve TLS.
//!
//! Steps are recorded as observations of the DNS measurement: `connect` and `tls_handshake`,
//! `role: target` for an answered address, `role: control` for the control's address, `vantage`
//! saying where each ran. They run only when the answers differ and the target offers TLS (a
//! `tls` or `quic` test): a name without TLS, a VPN endpoint's, has nothing to prove itself with.
//!
//! Cost when it runs: per checked address one TCP connect and one TLS handshake from the probe
//! (no data phase), all addresses at once, each wait under the step timeout; helper requests run
//! alongside and cost the probe one HTTPS request each to the collector.

use std::net::SocketAddr;

use futures::future::join_all;
use vantage_measurement::{Observation, Role, TestKind};

use crate::classify::dns::{MAX_VALIDATED, ValidationPlan, validation_plan};
use crate::control::ControlRequest;
use crate::measure::MeasureConfig;
use crate::runner::StepContext;
use crate::runner::tls::{self, DataPhase};
use crate::targets::{DEFAULT_PORT, TargetSpec};

/// Check the answered addresses the control did not return, if the lookups call for it; returns
/// the steps to add to the measurement (none when the answers agree or the target has no TLS).
pub async fn validate_answers(
    cfg: &MeasureConfig,
    ctx: &StepContext,
    target: &TargetSpec,
    lookups: &[Observation],
) -> Vec<Observation> {
    if !target.tests.iter().any(|t| matches!(t, TestKind::Tls | TestKind::Quic)) {
        return Vec::new();
    }
    let Some(plan) = validation_plan(lookups, &cfg.bogons) else { return Vec::new() };
    // The TLS test's port when there is one; QUIC-only names are asked on 443 over TCP.
    let port = if target.tests.contains(&TestKind::Tls) { target.port } else { DEFAULT_PORT };
    let name = target.domain.as_str();
    tracing::debug!(addresses = ?plan.addresses, reference = ?plan.reference, "validating DNS answers for {name} over TLS");
    debug_assert!(plan.addresses.len() <= MAX_VALIDATED);

    let probe_side = join_all(
        plan.addresses
            .iter()
            .map(|ip| tls::handshake(ctx, Role::Target, SocketAddr::new(*ip, port), name, &cfg.anchors, DataPhase::Skip)),
    );
    let (probe, helper) = tokio::join!(probe_side, helper_side(cfg, &plan, name, port));
    probe.into_iter().flatten().chain(helper).collect()
}

/// The helper's view: each answered address, then the control's address (relabelled `control`).
async fn helper_side(cfg: &MeasureConfig, plan: &ValidationPlan, name: &str, port: u16) -> Vec<Observation> {
    let Some(helper) = &cfg.helper else { return Vec::new() };
    let asks = plan.addresses.iter().map(|ip| (*ip, Role::Target)).chain(plan.reference.map(|ip| (ip, Role::Control)));
    let requests = asks.map(|(ip, role)| async move {
        let req = ControlRequest::tls(name, SocketAddr::new(ip, port));
        // A connect and a handshake, each under the helper's step timeout, plus the round trip.
        match helper.control(&req, cfg.timeout * 3).await {
            Ok(mut obs) => {
                obs.iter_mut().for_each(|o| o.role = role);
                obs
            }
            Err(e) => {
                tracing::warn!("TLS check of an answered address via the helper failed: {e}");
                Vec::new()
            }
        }
    });
    join_all(requests).await.into_iter().flatten().collect()
}
