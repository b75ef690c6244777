//! The question asked before each batch: should this network be measured now?
//!
//! Today it asks only whether there is a route at all ([`crate::netcheck`]). The network-sanity
//! check (a VPN or tunnel holding the default route, a changed network) replaces the body of
//! [`before_batch`]; the daemon already pauses on [`Gate::Pause`] (and records the reason) and
//! labels a batch on [`Gate::Tag`].

use std::net::IpAddr;

use vantage_engine::targets::TargetSpec;
use vantage_measurement::NetworkType;

use crate::netcheck;

/// Whether to measure now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Measure.
    Go,
    /// Measure, but label this batch's measurements with this network type (a VPN that the
    /// volunteer chose to measure through: `on_vpn = "tag"`).
    Tag(NetworkType),
    /// Don't measure now; the reason goes to the state file (no addresses in it).
    Pause(String),
}

/// Asked before each batch of `targets`.
pub fn before_batch(targets: &[TargetSpec]) -> Gate {
    let destinations: Vec<IpAddr> = targets.iter().filter_map(|t| t.address).collect();
    let needs_internet = targets.iter().any(|t| t.address.is_none());
    if netcheck::has_route(&destinations, needs_internet) {
        Gate::Go
    } else {
        Gate::Pause("no network: no route to the targets".into())
    }
}
