//! Network sanity before measuring: is this the volunteer's own network, and is it still the one
//! the last measurements came from?
//!
//! - **Through a tunnel?** Results measured through a VPN describe the VPN's network, not the
//!   volunteer's. The probe asks the kernel which source address it would use towards the
//!   internet, as a measurement would (a connected UDP socket: no packet is sent, and policy
//!   routing such as wg-quick's `not fwmark 51820 lookup 51820` applies), finds the interface
//!   holding that address and judges it by what the kernel says about it ([`tunnel`]), never by
//!   its name. IPv4 and IPv6 are checked alike, when the host has a route for each.
//!   [`OnVpn`] says what to do then: pause (the default) or measure and tag `network_type=vpn`.
//! - **Another network?** The [`NetworkFingerprint`] (default gateways and egress interfaces) is
//!   compared, salted and hashed, with the last one ([`epoch`]); a change, or another ASN seen by
//!   the collector, starts a new network epoch, stamped on every measurement.
//!
//! Neither an address nor an interface name leaves this module except inside the fingerprint,
//! whose `Debug` shows nothing and which is only ever stored as a salted hash.
//!
//! Known blind spots: policy-based IPsec (strongSwan's default) has no interface of its own, so
//! its traffic leaves from the ordinary one and is not seen; a tunnel that holds the route but no
//! address of its own (rare: replies could not come back) is not seen either.

pub mod epoch;
mod facts;
pub mod tunnel;

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use vantage_measurement::wire::ObservedLocation;
use vantage_measurement::{NetworkType, ProbeInfo};

pub use epoch::{Epoch, EpochError, EpochStore};
pub use tunnel::TunnelKind;

use crate::netcheck::INTERNET_ROUTE_PROBES;

/// What the probe sees of its network right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkView {
    /// The tunnel the default route goes through, if any.
    pub tunnel: Option<TunnelEvidence>,
    /// The facts that identify this network, for [`EpochStore::observe`].
    pub fingerprint: NetworkFingerprint,
}

/// A tunnel holds the default route for one address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelEvidence {
    /// What kind of tunnel the kernel says it is.
    pub kind: TunnelKind,
    /// For which address family's default route.
    pub family: IpFamily,
}

impl fmt::Display for TunnelEvidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} interface holds the {} default route", self.kind, self.family)
    }
}

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// The facts that tell one network from another: the egress interface per family (name and
/// kind), the IPv4 subnet, the main table's default gateways. Only ever stored as a salted hash;
/// its `Debug` shows how many facts it holds, not what they are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NetworkFingerprint {
    /// Canonical lines, sorted.
    lines: Vec<String>,
}

impl NetworkFingerprint {
    fn from_lines(mut lines: Vec<String>) -> NetworkFingerprint {
        lines.sort();
        lines.dedup();
        NetworkFingerprint { lines }
    }

    /// No route at all: nothing to tell networks apart by.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn canonical(&self) -> String {
        self.lines.join("\n")
    }
}

impl fmt::Debug for NetworkFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkFingerprint({} facts)", self.lines.len())
    }
}

/// Look at the network as a measurement would meet it. Reads the routing decision, interfaces,
/// `/sys/class/net` and `/proc/net`; sends nothing. Cheap enough for every cycle.
pub fn inspect() -> NetworkView {
    let mut tunnel = None;
    let mut lines = Vec::new();
    for (family, destination) in [(IpFamily::V4, INTERNET_ROUTE_PROBES[0]), (IpFamily::V6, INTERNET_ROUTE_PROBES[1])] {
        let Some(egress) = facts::egress_towards(destination) else { continue };
        let kind = tunnel::classify(&egress.facts);
        if let (None, Some(kind)) = (tunnel, kind) {
            tunnel = Some(TunnelEvidence { kind, family });
        }
        lines.push(format!("egress {family} {} {}", egress.name, kind.map_or("access", TunnelKind::as_str)));
        if let Some((subnet, len)) = egress.subnet {
            lines.push(format!("subnet {family} {subnet}/{len}"));
        }
    }
    for gateway in facts::default_gateways() {
        let via = gateway.gateway.map_or_else(|| "direct".to_string(), |ip: IpAddr| ip.to_string());
        lines.push(format!("gateway {} {via}", gateway.interface));
    }
    if let Some(evidence) = &tunnel {
        tracing::debug!(kind = %evidence.kind, family = %evidence.family, "the default route goes through a tunnel");
    }
    NetworkView { tunnel, fingerprint: NetworkFingerprint::from_lines(lines) }
}

/// The outcome of [`prepare`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Measure now. `through` is the tunnel the measurements were tagged for (`--on-vpn tag`);
    /// `epoch` is stamped into the probe block when state is kept.
    Measure {
        /// The tunnel measured through, if any.
        through: Option<TunnelEvidence>,
        /// The network epoch, when a state directory was given.
        epoch: Option<Epoch>,
    },
    /// Measure nothing now: this tunnel holds a default route and the policy is to pause.
    Paused(TunnelEvidence),
}

/// Before measuring (a `run`, each daemon cycle): look at the network, apply `on_vpn` to `probe`,
/// and, with a `state_dir`, stamp the network epoch into it. A paused check changes neither
/// `probe` nor the epoch.
pub fn prepare(on_vpn: OnVpn, state_dir: Option<&Path>, probe: &mut ProbeInfo) -> Result<Readiness, EpochError> {
    prepare_for(&inspect(), on_vpn, state_dir, probe)
}

fn prepare_for(
    view: &NetworkView,
    on_vpn: OnVpn,
    state_dir: Option<&Path>,
    probe: &mut ProbeInfo,
) -> Result<Readiness, EpochError> {
    if let Err(tunnel) = on_vpn.apply(view, probe) {
        return Ok(Readiness::Paused(tunnel));
    }
    let epoch = state_dir.map(|dir| EpochStore::open(dir)?.observe(&view.fingerprint)).transpose()?;
    probe.network_epoch = epoch.map(|e| e.number).or(probe.network_epoch);
    Ok(Readiness::Measure { through: view.tunnel, epoch })
}

/// After an upload: the collector says which ASN it saw the batches come from (its GeoIP view);
/// another ASN than before is another network, so the next measurements start a new epoch. Its
/// errors only cost the epoch, never the upload, so they are logged, not returned.
pub fn note_collector_view(state_dir: &Path, observed: Option<&ObservedLocation>) {
    let Some(asn) = observed.and_then(|o| o.asn) else { return };
    if let Err(e) = EpochStore::open(state_dir).and_then(|store| store.observe_asn(asn)) {
        tracing::warn!("the network epoch could not take the collector's view: {e}");
    }
}

/// What to do when a tunnel holds the default route (`--on-vpn`, config `on_vpn`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnVpn {
    /// Measure nothing until the tunnel is gone.
    #[default]
    Pause,
    /// Measure, and set `probe.network_type` to `vpn` on every measurement.
    Tag,
}

impl OnVpn {
    /// The words `--on-vpn` takes.
    pub const WORDS: [&'static str; 2] = ["pause", "tag"];

    /// Decide for `view`, and mark `probe` accordingly: `Err` with the evidence means measure
    /// nothing now.
    pub fn apply(self, view: &NetworkView, probe: &mut ProbeInfo) -> Result<(), TunnelEvidence> {
        match (view.tunnel, self) {
            (None, _) => Ok(()),
            (Some(evidence), OnVpn::Pause) => Err(evidence),
            (Some(_), OnVpn::Tag) => {
                probe.network_type = Some(NetworkType::Vpn);
                Ok(())
            }
        }
    }
}

impl FromStr for OnVpn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pause" => Ok(OnVpn::Pause),
            "tag" => Ok(OnVpn::Tag),
            _ => Err(format!("unknown --on-vpn policy `{s}` (expected {})", OnVpn::WORDS.join(" or "))),
        }
    }
}

impl fmt::Display for OnVpn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            OnVpn::Pause => "pause",
            OnVpn::Tag => "tag",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> ProbeInfo {
        ProbeInfo { cc: "ZZ".into(), asn: 0, network_type: Some(NetworkType::Wifi), network_epoch: None }
    }

    #[test]
    fn the_policy_pauses_or_tags_only_on_a_tunnel() {
        let wg = TunnelEvidence { kind: TunnelKind::WireGuard, family: IpFamily::V4 };
        let on_vpn = NetworkView { tunnel: Some(wg), ..NetworkView::default() };
        let plain = NetworkView::default();

        let mut info = probe();
        assert_eq!(OnVpn::Pause.apply(&on_vpn, &mut info), Err(wg));
        assert_eq!(info, probe(), "a paused run marks nothing");
        assert_eq!(OnVpn::Tag.apply(&on_vpn, &mut info), Ok(()));
        assert_eq!(info.network_type, Some(NetworkType::Vpn));
        for policy in [OnVpn::Pause, OnVpn::Tag] {
            let mut info = probe();
            assert_eq!(policy.apply(&plain, &mut info), Ok(()));
            assert_eq!(info, probe(), "{policy}: the volunteer's own network type stands");
        }
    }

    #[test]
    fn a_paused_check_keeps_no_epoch_a_measured_one_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fingerprint = NetworkFingerprint::from_lines(vec!["gateway eth0 192.0.2.1".into()]);
        let tun = TunnelEvidence { kind: TunnelKind::Tun, family: IpFamily::V6 };
        let on_vpn = NetworkView { tunnel: Some(tun), fingerprint: fingerprint.clone() };
        let plain = NetworkView { tunnel: None, fingerprint };

        let mut info = probe();
        assert_eq!(prepare_for(&on_vpn, OnVpn::Pause, Some(dir.path()), &mut info).expect("check"), Readiness::Paused(tun));
        assert_eq!(info, probe());
        assert!(!dir.path().join(epoch::EPOCH_FILE).exists(), "a paused check starts no epoch");

        let tagged = prepare_for(&on_vpn, OnVpn::Tag, Some(dir.path()), &mut info).expect("check");
        let first = Epoch { number: 1, is_new: true };
        assert_eq!(tagged, Readiness::Measure { through: Some(tun), epoch: Some(first) });
        assert_eq!((info.network_type, info.network_epoch), (Some(NetworkType::Vpn), Some(1)));

        let mut info = probe();
        let measured = prepare_for(&plain, OnVpn::Pause, Some(dir.path()), &mut info).expect("check");
        assert_eq!(measured, Readiness::Measure { through: None, epoch: Some(Epoch { number: 1, is_new: false }) });
        assert_eq!((info.network_type, info.network_epoch), (Some(NetworkType::Wifi), Some(1)));

        let mut info = probe();
        assert_eq!(
            prepare_for(&plain, OnVpn::Pause, None, &mut info).expect("check"),
            Readiness::Measure { through: None, epoch: None }
        );
        assert_eq!(info, probe(), "without state, no epoch");
    }

    #[test]
    fn policy_words_round_trip() {
        for word in OnVpn::WORDS {
            assert_eq!(word.parse::<OnVpn>().expect(word).to_string(), word);
        }
        assert_eq!("TAG".parse::<OnVpn>(), Ok(OnVpn::Tag));
        assert!("ignore".parse::<OnVpn>().is_err());
        assert_eq!(OnVpn::default(), OnVpn::Pause);
        let config: std::collections::BTreeMap<String, OnVpn> = serde_json::from_str(r#"{"on_vpn":"tag"}"#).expect("json");
        assert_eq!(config["on_vpn"], OnVpn::Tag);
    }

    #[test]
    fn the_fingerprint_shows_nothing_in_debug_and_ignores_order() {
        let a = NetworkFingerprint::from_lines(vec!["gateway eth0 192.0.2.1".into(), "egress IPv4 eth0 access".into()]);
        let b = NetworkFingerprint::from_lines(vec!["egress IPv4 eth0 access".into(), "gateway eth0 192.0.2.1".into()]);
        assert_eq!(a, b);
        assert_eq!(
            format!("{:?}", NetworkView { tunnel: None, fingerprint: a }),
            "NetworkView { tunnel: None, fingerprint: NetworkFingerprint(2 facts) }"
        );
    }
}
