//! OONI's data format (df-000 base record) for a Vantage measurement.
//!
//! PLACEHOLDER in branch `wt-export`, replaced at merge by helper **ooni**'s module (the full
//! mapping with `test_keys`): only the signature and the base record's fields are here, so the
//! exporter's `ooni` format can be written and tested against the same call.

use serde_json::{Value, json};

use crate::Measurement;

/// Why a measurement could not be mapped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OoniError {
    /// A field could not be serialised (a bug: our types always serialise).
    #[error("cannot serialise {0}")]
    Encode(String),
}

/// One OONI record for `m`: the base record of df-000.
pub fn record(m: &Measurement) -> Result<Value, OoniError> {
    let time = m.started_at.format("%Y-%m-%d %H:%M:%S").to_string();
    let input = match (&m.target.domain, m.target.address, m.target.port) {
        (Some(domain), _, _) => Value::String(domain.clone()),
        (None, Some(address), Some(port)) => Value::String(std::net::SocketAddr::new(address, port).to_string()),
        _ => Value::String(m.target.name.clone()),
    };
    Ok(json!({
        "probe_cc": m.probe.cc,
        "probe_asn": format!("AS{}", m.probe.asn),
        "test_name": m.test.as_str(),
        "measurement_start_time": time,
        "test_start_time": time,
        "input": input,
        "annotations": { "vantage_id": m.id.to_string() },
        "test_keys": {},
    }))
}
