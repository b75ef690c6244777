//! The measurement envelope: one JSON object per measurement, one per line in NDJSON.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::observation::Observation;
use crate::verdict::Verdict;

/// The schema version this crate writes. Readers accept this version only; a new major
/// version gets a new number and a new JSON Schema file beside the old one.
pub const SCHEMA_VERSION: u32 = 1;

/// One measurement of one target by one test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    /// UUIDv7 made by the probe; the collector ingests each id exactly once.
    pub id: Uuid,
    /// Always [`SCHEMA_VERSION`] for this crate.
    pub schema_version: u32,
    /// The software that measured.
    pub software: Software,
    /// Where the probe sits, coarsely. Never its IP address.
    pub probe: ProbeInfo,
    /// When the measurement started, UTC, whole seconds.
    pub started_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub runtime_ms: u64,
    /// Which test ran.
    pub test: TestKind,
    /// What was measured.
    pub target: Target,
    /// The controls used to tell blocking from breakage.
    pub controls: Vec<ControlKind>,
    /// Ordered steps: target and control, probe and helper.
    pub observations: Vec<Observation>,
    /// The conclusion.
    pub verdict: Verdict,
}

/// The measuring software.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Software {
    /// `vantage-probe`.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// Operating system and architecture, e.g. `linux-x86_64`.
    pub platform: String,
}

/// The probe's coarse location. The probe's IP address is never part of a measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeInfo {
    /// ISO 3166-1 alpha-2 country code; `ZZ` when unknown or withheld (as OONI).
    pub cc: String,
    /// Autonomous system number; 0 when unknown or withheld.
    pub asn: u32,
    /// The kind of access network, when the volunteer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_type: Option<NetworkType>,
    /// Which network this probe was on: the number changes whenever the probe finds itself on
    /// another network (another default gateway or interface, or another ASN seen by the
    /// collector), so a probe's series can be split by network. Counts up from 1; says nothing
    /// about the network itself. Absent when the probe keeps no state (a one-off `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_epoch: Option<u32>,
}

crate::closed_set! {
    /// The kind of access network.
    pub enum NetworkType {
        /// Fixed line (DSL, cable, fibre).
        Fixed => "fixed",
        /// Wi-Fi.
        Wifi => "wifi",
        /// Mobile data.
        Mobile => "mobile",
        /// Through a VPN.
        Vpn => "vpn",
    }
}

crate::closed_set! {
    /// The tests a probe runs.
    pub enum TestKind {
        /// DNS resolution compared with controls.
        Dns => "dns",
        /// TCP connect.
        Tcp => "tcp",
        /// TLS handshake, target SNI against a control SNI.
        Tls => "tls",
        /// QUIC handshake, target SNI against a control SNI.
        Quic => "quic",
        /// OpenVPN hard reset (UDP or TCP; plain, tls-auth or tls-crypt) against random bytes.
        Openvpn => "openvpn",
        /// WireGuard handshake and a short data phase through the tunnel.
        Wireguard => "wireguard",
        /// IKEv2 IKE_SA_INIT on UDP 500 or 4500; never IKE_AUTH.
        Ikev2 => "ikev2",
        /// TLS handshake and link-protocol VERSIONS exchange with a Tor relay's OR port.
        Tor => "tor",
        /// A TLS 1.3 handshake offering GREASE ECH paired with the same handshake without ECH, to
        /// the same server and SNI, in random order.
        Ech => "ech",
        /// DNS over TLS (RFC 7858) to a resolver: TCP, TLS with the resolver's name, one query.
        Dot => "dot",
        /// DNS over HTTPS (RFC 8484) to a resolver: TCP, TLS with the resolver's name, one POST.
        Doh => "doh",
        /// obfs4 handshake with a Tor bridge, 64 KiB through the tunnel, against a low-entropy
        /// payload of equal length.
        Obfs4 => "obfs4",
        /// Download goodput with the target SNI against the control SNI, interleaved, from a
        /// reference endpoint that serves the same body for any name (throttling by name).
        Throttle => "throttle",
    }
}

impl TestKind {
    /// The VPN and circumvention tests: they need endpoint parameters from the targets file.
    pub const VPN: &'static [TestKind] = &[Self::Openvpn, Self::Wireguard, Self::Ikev2, Self::Tor, Self::Obfs4];

    /// Is this one of the [`TestKind::VPN`] tests?
    pub fn is_vpn(self) -> bool {
        Self::VPN.contains(&self)
    }
}

/// What a measurement tested.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The target's name on the published list (e.g. `wikipedia`).
    pub name: String,
    /// The domain resolved (DNS) or sent as SNI (TLS, QUIC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The server address connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// The server port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `udp` or `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// The control SNI paired with the target's (TLS, QUIC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_sni: Option<String>,
    /// The version of the signed target list the probe measured this target from (the list
    /// document's `version`), so a researcher can tell which list a row answered. Absent when the
    /// probe measured from a local targets file or its built-in list (a one-off `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_version: Option<u64>,
}

crate::closed_set! {
    /// An IP address family. Not a field of the envelope (a measurement's `target.address` shows
    /// its family); named for targets files (`families`) and metric labels.
    pub enum Family {
        /// IPv4.
        Ipv4 => "ipv4",
        /// IPv6.
        Ipv6 => "ipv6",
    }
}

impl Family {
    /// The family of `ip` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn of(ip: std::net::IpAddr) -> Family {
        match ip {
            std::net::IpAddr::V4(_) => Family::Ipv4,
            std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Family::Ipv4,
            std::net::IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

crate::closed_set! {
    /// Transport protocol.
    pub enum Transport {
        /// TCP.
        Tcp => "tcp",
        /// UDP.
        Udp => "udp",
    }
}

crate::closed_set! {
    /// A control used by a measurement.
    pub enum ControlKind {
        /// The same step repeated by the collector's test helper, off the censored path.
        Helper => "helper",
        /// DNS over HTTPS to a trusted resolver.
        Doh => "doh",
        /// A control SNI on the same address and port, run first.
        ControlSni => "control_sni",
        /// The system resolver compared with a configured UDP resolver.
        SystemResolver => "system_resolver",
        /// Random bytes as long as the protocol's first packet, to an echo on the same port number
        /// (tells a port block from a protocol fingerprint block).
        RandomBytes => "random_bytes",
        /// A low-entropy (printable ASCII) payload as long as what an obfs4 test sends, to an
        /// echo on the same port number: what a fully-encrypted-traffic detector lets through.
        LowEntropy => "low_entropy",
        /// The same TLS 1.3 handshake without the ECH extension, to the same address with the same
        /// SNI, before or after the ECH one at random (the `ech` test).
        NoEch => "no_ech",
    }
}

impl Measurement {
    /// One NDJSON line (no trailing newline). Our types have no map with non-string keys and no
    /// fallible `Serialize`, so an error here is a bug; it is reported, never an empty line.
    pub fn to_json_line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}
