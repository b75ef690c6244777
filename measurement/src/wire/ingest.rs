//! The collector's answer to an ingest batch (`POST /api/v1/measurements`): how many lines were
//! stored, how many it already had, each refused line with its reason, and where the collector
//! saw the batch come from (so a probe can notice that its network changed).

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
