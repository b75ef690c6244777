//! The question asked before each batch: should this network be measured now, and what do the
//! measurements say about it?
//!
//! No route to the targets pauses; so does a VPN or tunnel holding the default route under
//! `on_vpn = "pause"` ([`crate::network`]). Otherwise the probe block comes back stamped for this
//! batch: `network_type = vpn` under `on_vpn = "tag"`, and the current network epoch.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use vantage_engine::targets::TargetSpec;
use vantage_measurement::ProbeInfo;

use crate::netcheck;
use crate::network::{self, OnVpn, Readiness};

/// Whether to measure now.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// Measure, with this probe block on every measurement of the batch.
    Go(ProbeInfo),
    /// Don't measure now; the reason goes to the state file (no addresses in it).
    Pause(String),
}

/// Asked before each batch of `targets`; `probe` is the block the flags or config gave, the
/// network state is kept in `state_dir`.
pub fn before_batch(targets: &[Arc<TargetSpec>], on_vpn: OnVpn, state_dir: &Path, probe: &ProbeInfo) -> Gate {
    let destinations: Vec<IpAddr> = targets.iter().filter_map(|t| t.address).collect();
    let needs_internet = targets.iter().any(|t| t.address.is_none());
    if !netcheck::has_route(&destinations, needs_internet) {
        return Gate::Pause("no network: no route to the targets".into());
    }
    let mut stamped = probe.clone();
    match network::prepare(on_vpn, Some(state_dir), &mut stamped) {
        Ok(Readiness::Measure { .. }) => Gate::Go(stamped),
        Ok(Readiness::Paused(tunnel)) => Gate::Pause(format!("{tunnel} (on_vpn = pause)")),
        Err(e) => Gate::Pause(format!("the network epoch can't be kept: {e}")),
    }
}
