//! A measurement as both backends write it: the indexed columns, the day it is filed under, and
//! its canonical line split into skeleton and blobs. Built outside any database lock (splitting
//! and compressing are the CPU part of a write).

use uuid::Uuid;
use vantage_measurement::Measurement;

use super::{StoreError, blobs, id_day};

/// One measurement ready to be written.
pub(crate) struct StoredRow {
    pub(crate) id: Uuid,
    /// The UTC day of the id's time (PostgreSQL's partition key; SQLite's retention uses the id).
    pub(crate) day: i32,
    pub(crate) started_at: i64,
    pub(crate) cc: String,
    pub(crate) asn: u32,
    pub(crate) test: &'static str,
    pub(crate) target: String,
    pub(crate) status: &'static str,
    pub(crate) mechanism: Option<&'static str>,
    pub(crate) split: blobs::Split,
}

impl StoredRow {
    /// Every measurement of a batch, or the first that can't be encoded.
    pub(crate) fn all(batch: &[Measurement]) -> Result<Vec<StoredRow>, StoreError> {
        batch.iter().map(StoredRow::from_measurement).collect()
    }

    fn from_measurement(m: &Measurement) -> Result<StoredRow, StoreError> {
        Ok(StoredRow {
            id: m.id,
            day: id_day(&m.id),
            started_at: m.started_at.timestamp(),
            cc: m.probe.cc.clone(),
            asn: m.probe.asn,
            test: m.test.as_str(),
            target: m.target.name.clone(),
            status: m.verdict.status.as_str(),
            mechanism: m.verdict.mechanism.map(|mech| mech.as_str()),
            split: blobs::split(&m.to_json_line().map_err(|e| StoreError::Encode(e.to_string()))?)?,
        })
    }
}
