//! A volunteer's request to delete everything their probe key submitted.
//!
//! ```text
//! POST /api/v1/forget
//! X-Vantage-Key / X-Vantage-Signature: as for a batch, over the exact JSON body
//! {"request": "delete-all-measurements", "requested_at": "2026-12-01T12:00:00Z"}
//! ```
//!
//! Only the key's holder can sign it, so nobody can delete another probe's data. `requested_at`
//! must be within [`FORGET_MAX_SKEW_SECS`] of the collector's clock, so a captured request can't
//! be replayed later to erase what the probe sent since.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The path of the request.
pub const FORGET_PATH: &str = "/api/v1/forget";
/// The body's `request`.
pub const FORGET_REQUEST: &str = "delete-all-measurements";
/// How far `requested_at` may be from the collector's clock.
pub const FORGET_MAX_SKEW_SECS: i64 = 600;

/// The signed body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    /// [`FORGET_REQUEST`].
    pub request: String,
    /// When the volunteer asked.
    pub requested_at: DateTime<Utc>,
}

/// The collector's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetReport {
    /// Measurements deleted.
    pub deleted: u64,
}
