//! Delivery of spooled measurements to the collector.
//!
//! A spool file is removed only after the collector answered for every line in it: accepted and
//! duplicate lines are done (ingest is idempotent by id, so re-sending after a lost response is
//! safe), refused lines move to `spool/rejected/` with their reason. Any other outcome (network
//! error, timeout, 5xx) leaves the file for the next run.
//!
//! With a [`ProbeKey`] every batch is signed (see [`vantage_measurement::wire::signature`] for the
//! headers); every batch also says how many measurements still wait behind it, which the
//! collector turns into a fleet-wide backlog histogram.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use vantage_measurement::wire::{IngestReport, KEY_HEADER, ProbeKey, SIGNATURE_HEADER, SPOOL_PENDING_HEADER};

use crate::spool::{self, Spool, SpoolError};

/// Lines per POST; well under the collector's per-batch limit.
pub const BATCH_LINES: usize = 500;

/// Why a batch was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No answer, or a transport error.
    #[error("collector unreachable: {0}")]
    Unreachable(String),
    /// The collector answered with an error status for the whole batch.
    #[error("collector refused the batch: HTTP {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its explanation, truncated.
        body: String,
    },
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Posts NDJSON batches to a collector.
#[derive(Clone, Debug)]
pub struct Uploader {
    url: String,
    http: reqwest::Client,
    timeout: Duration,
    key: Option<Arc<ProbeKey>>,
}

/// What one flush of the spool achieved.
#[derive(Debug, Default)]
pub struct FlushReport {
    /// Stored by the collector now.
    pub accepted: usize,
    /// Already stored before.
    pub duplicates: usize,
    /// Refused and quarantined.
    pub rejected: usize,
    /// Still waiting in the spool.
    pub remaining: usize,
    /// Why the flush stopped early, if it did.
    pub error: Option<String>,
}

impl Uploader {
    /// An uploader to the collector at `base_url` that sends unsigned (anonymous) batches.
    pub fn new(base_url: &str, http: reqwest::Client, timeout: Duration) -> Self {
        Uploader { url: format!("{}/api/v1/measurements", base_url.trim_end_matches('/')), http, timeout, key: None }
    }

    /// Sign every batch with `key`.
    pub fn with_key(mut self, key: ProbeKey) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// Send one batch of NDJSON lines, gzip-compressed (and signed, with a key); `pending_after`
    /// is how many measurements still wait in the spool once this batch is stored.
    pub async fn submit(&self, lines: &[String], pending_after: usize) -> Result<IngestReport, UploadError> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        for line in lines {
            // Writing into a Vec cannot fail.
            let _ = gz.write_all(line.as_bytes()).and_then(|_| gz.write_all(b"\n"));
        }
        let body = gz.finish().map_err(|e| UploadError::Unreachable(e.to_string()))?;
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/x-ndjson")
            .header("content-encoding", "gzip")
            .header(SPOOL_PENDING_HEADER, pending_after.to_string());
        if let Some(key) = &self.key {
            // Over the exact bytes sent: the collector verifies before it inflates anything.
            request = request.header(KEY_HEADER, key.public_key_base64()).header(SIGNATURE_HEADER, key.sign_base64(&body));
        }
        let send = request.body(body).send();
        let resp = tokio::time::timeout(self.timeout, send)
            .await
            .map_err(|_| UploadError::Unreachable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| UploadError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        let text = tokio::time::timeout(self.timeout, resp.text())
            .await
            .map_err(|_| UploadError::Unreachable("response body timed out".into()))?
            .map_err(|e| UploadError::Unreachable(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(UploadError::Refused { status: status.as_u16(), body: text.chars().take(300).collect() });
        }
        serde_json::from_str(&text).map_err(|e| UploadError::Refused { status: status.as_u16(), body: e.to_string() })
    }

    /// Deliver every pending spool file, oldest first; stop at the first failure.
    pub async fn flush(&self, spool: &Spool) -> FlushReport {
        let mut report = FlushReport::default();
        let files = match spool.pending() {
            Ok(f) => f,
            Err(e) => {
                report.error = Some(e.to_string());
                return report;
            }
        };
        // What waits behind each batch, for the collector's backlog histogram, and what is left
        // when a flush stops early. An unreadable file counts as empty; flushing it says why.
        let sizes: Vec<usize> = files.iter().map(|f| spool::read_lines(f).map(|l| l.len()).unwrap_or(0)).collect();
        let mut pending: usize = sizes.iter().sum();
        for (file, size) in files.iter().zip(sizes) {
            if report.error.is_some() {
                report.remaining += size;
                continue;
            }
            if let Err((e, unsent)) = self.flush_file(spool, file, &mut pending, &mut report).await {
                report.error = Some(e.to_string());
                report.remaining += unsent;
            }
        }
        report
    }

    async fn flush_file(
        &self,
        spool: &Spool,
        file: &std::path::Path,
        pending: &mut usize,
        report: &mut FlushReport,
    ) -> Result<(), (UploadError, usize)> {
        let lines = spool::read_lines(file).map_err(|e| (e.into(), 0))?;
        let mut refused = Vec::new();
        for (i, batch) in lines.chunks(BATCH_LINES).enumerate() {
            *pending = pending.saturating_sub(batch.len());
            match self.submit(batch, *pending).await {
                Ok(r) => {
                    report.accepted += r.accepted;
                    report.duplicates += r.duplicates;
                    for rej in r.rejected {
                        if let Some(line) = batch.get(rej.line.wrapping_sub(1)) {
                            refused.push((line.clone(), format!("{}: {}", rej.reason, rej.detail)));
                        }
                    }
                }
                Err(e) => {
                    // Earlier batches of this file were stored; re-sending them is a harmless
                    // duplicate (and a refused line is refused again), so the file stays whole.
                    return Err((e, lines.len() - i * BATCH_LINES));
                }
            }
        }
        report.rejected += refused.len();
        spool.quarantine(file, &refused).map_err(|e| (e.into(), 0))?;
        spool::remove(file).map_err(|e| (e.into(), 0))
    }
}
