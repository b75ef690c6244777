//! # Vantage measurement schema v1
//!
//! The shared language of the probe, the collector and researchers. A measurement is one JSON
//! object, one per line when stored or exported (NDJSON):
//!
//! ```text
//! Measurement
//! ├── id                 UUIDv7 made by the probe; the collector ingests each id once
//! ├── schema_version     1
//! ├── software           {name, version, platform}
//! ├── probe              {cc, asn, network_type}      never the probe's IP address
//! ├── started_at         UTC, whole seconds
//! ├── runtime_ms
//! ├── test               dns | tcp | tls | quic | openvpn | wireguard | ikev2 | tor
//! ├── target             {name, domain, address, port, transport, control_sni, list_version}
//! ├── controls           [helper | doh | control_sni | system_resolver | random_bytes]
//! ├── observations[]     {op, role, vantage, t_start_ms, duration_ms, peer, sni,
//! │                       failure, raw, detail}
//! └── verdict            {status: ok|blocked|down|inconclusive, mechanism, evidence, trials}
//! ```
//!
//! `failure` strings are OONI's (see [`Failure`]) so the data compares with OONI's; the raw code
//! (errno, TLS alert, DNS rcode, QUIC error) sits next to each in `raw`. `mechanism` is a bounded
//! rule id (see [`Mechanism`]). The JSON Schema generated from these types is committed at
//! `measurement/schema/measurement-v1.schema.json`; a test fails when it is stale.
//!
//! This crate has no I/O: types, (de)serialisation and validation only, the mapping of a
//! measurement to OONI's data format ([`ooni`]), and the wire contract both sides speak ([`wire`]:
//! batch signatures, the ingest report).

#![warn(missing_docs)]

pub mod closed_set;
pub mod envelope;
pub mod example;
pub mod failure;
pub mod localisation;
pub mod observation;
pub mod ooni;
pub mod validate;
pub mod verdict;
pub mod wire;

pub use envelope::{
    ControlKind, Family, Measurement, NetworkType, ProbeInfo, SCHEMA_VERSION, Software, Target, TestKind, Transport,
};
pub use failure::{CodeSpace, Failure, RawCode};
pub use localisation::{Localisation, LocalisedHow, NotLocalised, Placement};
pub use observation::{
    DataDetail, Detail, DnsAnswer, DnsDetail, DnsEngine, DnsReply, EchOffer, Observation, Operation, Role, TlsDetail, Vantage,
    VpnDetail, VpnMode, VpnProtocol, VpnReply, VpnStage,
};
pub use validate::{Rejection, RejectionCode, is_country_code, is_plausible_name, parse_line, validate};
pub use verdict::{Mechanism, Status, Trials, Verdict};

#[doc(hidden)]
/// What [`closed_set!`] expands to refers to these, so its users need not depend on them.
pub mod __private {
    pub use schemars;
    pub use serde;
    pub use serde_json;
}

/// The JSON Schema of [`Measurement`], pretty-printed as committed.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Measurement);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    const SCHEMA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/measurement-v1.schema.json");

    /// Regenerate with `VANTAGE_UPDATE_SCHEMA=1 cargo test -p vantage-measurement`.
    #[test]
    fn committed_json_schema_is_current() {
        let fresh = super::json_schema();
        if std::env::var_os("VANTAGE_UPDATE_SCHEMA").is_some() {
            std::fs::write(SCHEMA_PATH, &fresh).expect("write schema");
        }
        let committed = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_default();
        assert!(
            committed == fresh,
            "measurement/schema/measurement-v1.schema.json is stale: run \
             VANTAGE_UPDATE_SCHEMA=1 cargo test -p vantage-measurement and commit the result"
        );
    }
}
