//! The collector's answer to an ingest batch (`POST /api/v1/measurements`): how many lines were
//! stored, how many it already had, each refused line with its reason, and where the collector
//! saw the batch come from (so a probe can notice that its network changed), and where the
//! signing key stands (so a probe knows to register it).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The collector's answer to one batch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestReport {
    /// Lines newly stored.
    pub accepted: usize,
    /// Lines whose id was already stored (or appeared earlier in the batch).
    pub duplicates: usize,
    /// Lines refused, each with why.
    #[serde(default)]
    pub rejected: Vec<RejectedLine>,
    /// Where the collector's GeoIP databases place the submitting address (the address itself
    /// is forgotten at once). Absent when the collector has no databases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedLocation>,
    /// Where the batch's signing key stands with this collector; absent for an anonymous batch
    /// and from collectors older than key registration. A value this probe does not know is
    /// read as absent, so a newer collector never makes a report unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_standing")]
    pub key: Option<KeyStanding>,
}

crate::closed_set! {
    /// Where a probe key stands with a collector. Only a trusted key's measurements count in the
    /// collector's metrics, fleet gauges, status page and alerts; every measurement is stored.
    pub enum KeyStanding {
        /// Never registered: the probe should register it ([`super::registration`]).
        Unregistered => "unregistered",
        /// Registered, still earning trust (too few measurements or days so far).
        Untrusted => "untrusted",
        /// Counts.
        Trusted => "trusted",
    }
}

fn lenient_standing<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<KeyStanding>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    Ok(text.as_deref().and_then(KeyStanding::parse))
}

/// The collector's view of where a batch came from, looked up in its GeoIP databases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedLocation {
    /// ISO 3166-1 alpha-2 country code; `None` when the database has no country for the address.
    pub cc: Option<String>,
    /// Autonomous system number; `None` when the database has no network for the address.
    pub asn: Option<u32>,
}

/// One refused line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectedLine {
    /// 1-based line number in the (decompressed) body.
    pub line: usize,
    /// The measurement id, when the line carried a readable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// The bounded reason code (a [`crate::Rejection`] code).
    pub reason: String,
    /// What exactly was wrong.
    #[serde(default)]
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_standing_is_optional_and_unknown_values_are_ignored() {
        let old: IngestReport = serde_json::from_str(r#"{"accepted": 1, "duplicates": 0}"#).expect("old collector");
        assert_eq!(old.key, None);
        let report = IngestReport { accepted: 1, key: Some(KeyStanding::Unregistered), ..IngestReport::default() };
        let json = serde_json::to_string(&report).expect("json");
        assert!(json.contains(r#""key":"unregistered""#), "{json}");
        assert_eq!(serde_json::from_str::<IngestReport>(&json).expect("parse"), report);
        let newer: IngestReport =
            serde_json::from_str(r#"{"accepted": 1, "duplicates": 0, "key": "revered"}"#).expect("newer collector");
        assert_eq!(newer.key, None);
        let anonymous = serde_json::to_string(&IngestReport::default()).expect("json");
        assert!(!anonymous.contains("key"), "{anonymous}");
        let ids: Vec<_> = KeyStanding::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(ids, ["unregistered", "untrusted", "trusted"]);
    }
}
