//! The collector's answer to an ingest batch (`POST /api/v1/measurements`): how many lines were
//! stored, how many it already had, and each refused line with its reason.

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
