//! Measurements in OONI's data format, so OONI's researchers can read Vantage's data with the
//! tools they already have.
//!
//! [`record`] maps one [`Measurement`] to one OONI measurement record: the base record of
//! `ooni/spec` df-000 (data format `0.2.0`, as OONI's probes submit it) with `test_keys` in the
//! sub-formats df-002 (`queries`), df-005 (`tcp_connect`), df-006 (`tls_handshakes`,
//! `quic_handshakes`) and df-008 (`network_events`), and failure strings of df-007 through the
//! one mapping table in [`failure`]. It is pure: no clock, no I/O, and the same measurement always
//! gives the same record.
//!
//! Why the choices below (the field-by-field table is `docs/ooni.md`):
//!
//! - **`test_name`**: OONI's tools dispatch on it, so we only claim an OONI experiment whose
//!   `test_keys` have the shape we write. `urlgetter` is OONI's generic single-flow building
//!   block, and its keys are exactly the top-level df-002/005/006/008 lists: `dns`, `tcp` and
//!   `tls` are `urlgetter` with the input scheme OONI uses for that step (`dnslookup://`,
//!   `tcpconnect://`, `tlshandshake://`). The experiments that measure what our other tests
//!   measure (`simplequicping`, `openvpn`, `tor`) nest their keys differently (`pings[]`,
//!   `openvpn_handshake[]`, `targets{}`), and OONI has no WireGuard or IKEv2 experiment, so those
//!   tests are `vantage_<test>`: OONI's tools skip them instead of misreading them.
//! - **No probe address**: `probe_ip` is `127.0.0.1`, as OONI's probes always send.
//! - **`report_id`**: OONI's collector makes one per report (a run of one test by one probe), and
//!   it links the measurements of a run. Vantage has no such run and must not link a probe's
//!   measurements, so each record's `report_id` is made from its own measurement id (already
//!   public): OONI's layout, `<start>_<test>_<CC>_<ASN>_n1_<id>`, one report per measurement.
//! - **What OONI has no field for** goes in two places: envelope facts as strings in
//!   `annotations` (OONI's annotations are a string map: `network_type`, `platform`,
//!   `architecture`, `engine_name`, `engine_version`, and `vantage_network_epoch`,
//!   `vantage_target_list_version`), and everything structured in `test_keys.vantage` (the
//!   measurement id, target, controls, verdict and every observation verbatim, see
//!   `keys.rs`). Nothing is added that the measurement does not already publish.

pub mod failure;
mod keys;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::envelope::{Measurement, SCHEMA_VERSION, TestKind};

pub use failure::failure_string;

/// OONI's base data format version the records follow (df-000, what OONI's probes submit).
pub const DATA_FORMAT_VERSION: &str = "0.2.0";

/// OONI's `probe_ip`: OONI's probes never send theirs, and neither does a Vantage record.
pub const PROBE_IP: &str = "127.0.0.1";

/// Why a measurement could not be written as an OONI record.
#[derive(Debug, thiserror::Error)]
pub enum OoniError {
    /// Another schema version than this crate's: its fields may mean something else.
    #[error("measurement schema version {0} is not {SCHEMA_VERSION}, the only version this mapping knows")]
    SchemaVersion(u32),
    /// Encoding a part of the measurement failed (a bug: our types always encode).
    #[error("could not encode the measurement for the OONI record: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The OONI record of `m` (one line of an OONI JSONL file once serialised).
pub fn record(m: &Measurement) -> Result<Value, OoniError> {
    if m.schema_version != SCHEMA_VERSION {
        return Err(OoniError::SchemaVersion(m.schema_version));
    }
    let start = ooni_time(m.started_at);
    let test_name = test_name(m.test);
    let probe_asn = format!("AS{}", m.probe.asn);
    let mut base = Map::new();
    base.insert("annotations".into(), Value::Object(annotations(m)));
    base.insert("data_format_version".into(), DATA_FORMAT_VERSION.into());
    base.insert("extensions".into(), json!({"dnst": 0, "netevents": 0, "tcpconnect": 0, "tlshandshake": 0}));
    base.insert("input".into(), input(m).map_or(Value::Null, Value::String));
    base.insert("measurement_start_time".into(), start.clone().into());
    base.insert("probe_asn".into(), probe_asn.into());
    base.insert("probe_cc".into(), m.probe.cc.clone().into());
    base.insert("probe_ip".into(), PROBE_IP.into());
    base.insert("report_id".into(), report_id(m, test_name).into());
    base.insert("software_name".into(), m.software.name.clone().into());
    base.insert("software_version".into(), m.software.version.clone().into());
    base.insert("test_keys".into(), keys::test_keys(m)?);
    base.insert("test_name".into(), test_name.into());
    // Seconds, as OONI's; a u64 of milliseconds is exact in an f64 far beyond any runtime.
    base.insert("test_runtime".into(), (m.runtime_ms as f64 / 1000.0).into());
    base.insert("test_start_time".into(), start.into());
    base.insert("test_version".into(), m.software.version.clone().into());
    Ok(Value::Object(base))
}

/// OONI's time format: UTC, `YYYY-MM-DD hh:mm:ss`.
pub fn ooni_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The OONI `test_name` of a Vantage test (see the module docs for why).
pub fn test_name(test: TestKind) -> &'static str {
    match test {
        TestKind::Dns | TestKind::Tcp | TestKind::Tls => "urlgetter",
        TestKind::Quic => "vantage_quic",
        TestKind::Openvpn => "vantage_openvpn",
        TestKind::Wireguard => "vantage_wireguard",
        TestKind::Ikev2 => "vantage_ikev2",
        TestKind::Tor => "vantage_tor",
        // OONI's `echcheck` nests its keys in its own way (`control`, `target`).
        TestKind::Ech => "vantage_ech",
        TestKind::Dot => "vantage_dot",
        TestKind::Doh => "vantage_doh",
        TestKind::Obfs4 => "vantage_obfs4",
        TestKind::Throttle => "vantage_throttle",
    }
}

/// The `input`: a URL in the scheme OONI's `urlgetter` (or, for QUIC, `simplequicping`) takes
/// for the step; `null` for the VPN tests, whose endpoints OONI describes in its own ways.
fn input(m: &Measurement) -> Option<String> {
    let t = &m.target;
    let host = || match (&t.domain, t.address) {
        (Some(domain), _) => Some(domain.clone()),
        (None, Some(std::net::IpAddr::V6(ip))) => Some(format!("[{ip}]")),
        (None, Some(ip)) => Some(ip.to_string()),
        (None, None) => None,
    };
    let endpoint = |scheme: &str| {
        let ip = match t.address? {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        Some(format!("{scheme}://{ip}:{}", t.port?))
    };
    match m.test {
        TestKind::Dns => Some(format!("dnslookup://{}", host()?)),
        TestKind::Tcp => endpoint("tcpconnect"),
        TestKind::Tls | TestKind::Ech => Some(format!("tlshandshake://{}:{}", host()?, t.port?)),
        TestKind::Quic => Some(format!("quichandshake://{}:{}", host()?, t.port?)),
        TestKind::Openvpn | TestKind::Wireguard | TestKind::Ikev2 | TestKind::Tor | TestKind::Obfs4 => None,
        // The target name rides in the SNI of a download from the project's reference endpoint.
        TestKind::Throttle => Some(format!("tlshandshake://{}:{}", host()?, t.port?)),
        TestKind::Dot => Some(format!("dot://{}:{}", host()?, t.port?)),
        TestKind::Doh => Some(format!("https://{}/dns-query", host()?)),
    }
}

/// OONI's report id layout, made from the measurement's own id: one report per measurement.
fn report_id(m: &Measurement, test_name: &str) -> String {
    format!(
        "{}_{}_{}_{}_n1_{}",
        m.started_at.format("%Y%m%dT%H%M%SZ"),
        test_name.replace('_', ""),
        m.probe.cc,
        m.probe.asn,
        m.id.simple()
    )
}

/// Envelope facts as OONI annotations (a string map).
fn annotations(m: &Measurement) -> Map<String, Value> {
    let mut out = Map::new();
    let (platform, architecture) = m.software.platform.split_once('-').unwrap_or((m.software.platform.as_str(), ""));
    out.insert("engine_name".into(), m.software.name.clone().into());
    out.insert("engine_version".into(), m.software.version.clone().into());
    out.insert("platform".into(), platform.into());
    if !architecture.is_empty() {
        out.insert("architecture".into(), architecture.into());
    }
    if let Some(network_type) = m.probe.network_type {
        out.insert("network_type".into(), network_type.as_str().into());
    }
    if let Some(epoch) = m.probe.network_epoch {
        out.insert("vantage_network_epoch".into(), epoch.to_string().into());
    }
    if let Some(version) = m.target.list_version {
        out.insert("vantage_target_list_version".into(), version.to_string().into());
    }
    out
}

#[cfg(test)]
mod tests;
