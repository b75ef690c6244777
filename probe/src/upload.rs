//! Delivery of spooled measurements to the collector.
//!
//! A spool file is removed only after the collector answered for every line in it: accepted and
//! duplicate lines are done (ingest is idempotent by id, so re-sending after a lost response is
//! safe), refused lines move to `spool/rejected/` with their reason.
//!
//! A batch that was not delivered is handled by whose fault that is ([`Fault`], sorted as rustls
//! sorts its errors): the network's or a busy collector's, and the batch waits for the next run;
//! the batch's own (the collector will refuse it every time), and its lines are quarantined like
//! refused lines so that the batches behind it still go; the probe's setup (a wrong URL, a key the
//! collector refuses), and the flush stops with nothing quarantined, since every batch would fail
//! alike; or this machine's (compressing, the spool), and the batch waits, reported as local.
//!
//! With a [`ProbeKey`] every batch is signed (see [`vantage_measurement::wire::signature`] for the
//! headers); every batch also says how many measurements still wait behind it, which the
//! collector turns into a fleet-wide backlog histogram. Each report says where the key stands
//! with the collector; told `unregistered`, an uploader made [`Uploader::registering`] registers
//! the key when asked after the flush ([`Uploader::register_if_asked`], [`crate::register`]),
//! never before or instead of an upload.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use vantage_measurement::wire::{
    IngestReport, KEY_HEADER, KeyStanding, ObservedLocation, ProbeKey, SIGNATURE_HEADER, SPOOL_PENDING_HEADER,
};

use crate::register::{Registered, Registration};
use crate::spool::{self, Spool, SpoolError};

/// Lines per POST; well under the collector's per-batch limit.
pub const BATCH_LINES: usize = 500;

/// The longest `Retry-After` a flush waits out before sending the batch again, once per flush; a
/// longer wait ends the flush instead (the volunteer is watching, the spool keeps the batch).
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// How much of a refusal's text is kept.
const MESSAGE_CHARS: usize = 300;

/// Whose fault a failed delivery is, which decides what becomes of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The network's or the collector's, for now: the batch stays in the spool and the flush
    /// stops; the next run sends it again.
    Transient,
    /// The batch's own: the collector will refuse it every time, so its lines are quarantined
    /// with the reason and the flush goes on with the next batch.
    Batch,
    /// The probe's setup (the collector URL, the key): the collector would refuse every batch
    /// alike, so nothing is quarantined and the flush stops until the volunteer fixes it.
    Setup,
    /// This machine's (compressing a batch, the spool): the batch stays and the flush stops.
    Local,
}

/// Why a batch was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No answer, or a transport error.
    #[error("collector unreachable: {0}")]
    Unreachable(String),
    /// The collector can't take batches just now (408, 429, 5xx).
    #[error("collector unavailable: HTTP {status}: {message}{}", wait_hint(*retry_after))]
    Unavailable {
        /// HTTP status.
        status: u16,
        /// Its explanation, truncated.
        message: String,
        /// How long it asked the probe to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// A success status with a report the probe can't read: what was stored is unknown, so the
    /// batch is sent again later (harmless, ingest being idempotent).
    #[error("collector answered HTTP {status} with an unreadable report: {detail}")]
    UnreadableReport {
        /// HTTP status.
        status: u16,
        /// Why the report could not be read.
        detail: String,
    },
    /// The collector refused this batch and would refuse it again (400, 413, 422).
    #[error("collector refused the batch: HTTP {status}: {message}")]
    BatchRefused {
        /// HTTP status.
        status: u16,
        /// Its explanation (the collector's reason code first), truncated.
        message: String,
    },
    /// The collector refuses this probe or this address whatever the batch (401, 403, 404, …).
    #[error("collector refused this probe: HTTP {status}: {message} (check --collector and the probe key)")]
    ProbeRefused {
        /// HTTP status.
        status: u16,
        /// Its explanation, truncated.
        message: String,
    },
    /// Compressing a batch failed on this machine; nothing was sent.
    #[error("could not compress a batch on this machine: {0}")]
    Compress(io::Error),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

fn wait_hint(retry_after: Option<Duration>) -> String {
    retry_after.map(|d| format!(" (it asks to wait {} s)", d.as_secs())).unwrap_or_default()
}

impl UploadError {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        match self {
            UploadError::Unreachable(_) | UploadError::Unavailable { .. } | UploadError::UnreadableReport { .. } => {
                Fault::Transient
            }
            UploadError::BatchRefused { .. } => Fault::Batch,
            UploadError::ProbeRefused { .. } => Fault::Setup,
            UploadError::Compress(_) | UploadError::Spool(_) => Fault::Local,
        }
    }

    /// How long the collector asked the probe to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UploadError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Sort an error status: only a refusal that names the batch's content or size is the
    /// batch's fault; any other 4xx (a wrong URL, a refused key, a proxy) would refuse every
    /// batch, and quarantining the whole spool for it would lose it from the volunteer's view.
    fn from_status(status: StatusCode, text: &str, retry_after: Option<Duration>) -> UploadError {
        let message = refusal_message(text);
        let status = status.as_u16();
        match status {
            408 | 429 | 500..=599 => UploadError::Unavailable { status, message, retry_after },
            400 | 413 | 422 => UploadError::BatchRefused { status, message },
            _ => UploadError::ProbeRefused { status, message },
        }
    }
}

/// The collector's refusal in a line: `{"error": …, "reason": …}` as `reason: error`, any other
/// body as its first characters.
fn refusal_message(text: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(|v| v.as_str()).map(str::to_string);
    let message = match (field("reason"), field("error")) {
        (Some(reason), Some(error)) => format!("{reason}: {error}"),
        (None, Some(error)) => error,
        _ => text.trim().to_string(),
    };
    message.chars().take(MESSAGE_CHARS).collect()
}

/// `Retry-After` as a wait: delta-seconds or an HTTP date (a date in the past is no wait).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

/// Posts NDJSON batches to a collector.
#[derive(Clone, Debug)]
pub struct Uploader {
    /// The collector's base URL.
    base: String,
    /// Its ingest endpoint.
    url: String,
    http: reqwest::Client,
    timeout: Duration,
    key: Option<Arc<ProbeKey>>,
    registration: Option<Arc<Registration>>,
}

/// What one flush of the spool achieved.
#[derive(Debug, Default)]
pub struct FlushReport {
    /// Stored by the collector now.
    pub accepted: usize,
    /// Already stored before.
    pub duplicates: usize,
    /// Refused (line by line, or with their whole batch) and quarantined.
    pub rejected: usize,
    /// Still waiting in the spool.
    pub remaining: usize,
    /// Why the flush stopped early, if it did.
    pub error: Option<UploadError>,
    /// Where the collector saw the uploads come from (its GeoIP view), if it says: a new ASN
    /// there means a new network (a new epoch).
    pub observed: Option<ObservedLocation>,
    /// Where the probe key stands with the collector, as its last report said.
    pub key: Option<KeyStanding>,
}

/// What one flush carries from batch to batch.
struct Flushing {
    /// Measurements still waiting behind the batch being sent.
    pending: usize,
    /// Whether a `Retry-After` may still be waited out.
    may_wait: bool,
}

impl Uploader {
    /// An uploader to the collector at `base_url` that sends unsigned (anonymous) batches.
    pub fn new(base_url: &str, http: reqwest::Client, timeout: Duration) -> Self {
        let mut uploader = Uploader { base: String::new(), url: String::new(), http, timeout, key: None, registration: None };
        uploader.send_to(base_url);
        uploader
    }

    /// Send to the collector at `base_url` from now on (a fallback that answered when the first
    /// was blocked).
    pub fn send_to(&mut self, base_url: &str) {
        self.base = base_url.trim_end_matches('/').to_string();
        self.url = format!("{}/api/v1/measurements", self.base);
    }

    /// Sign every batch with `key`.
    pub fn with_key(mut self, key: ProbeKey) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// Register the key (set with [`Uploader::with_key`]) with a collector that reports it
    /// unregistered, remembering success in `data_dir` (the probe's, beside `probe.key`).
    pub fn registering(mut self, data_dir: &Path) -> Self {
        self.registration = Some(Arc::new(Registration::new(data_dir)));
        self
    }

    /// Send one batch of NDJSON lines, gzip-compressed (and signed, with a key); `pending_after`
    /// is how many measurements still wait in the spool once this batch is stored.
    pub async fn submit(&self, lines: &[String], pending_after: usize) -> Result<IngestReport, UploadError> {
        let body = gzip_lines(lines).map_err(UploadError::Compress)?;
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
            .map_err(|e| UploadError::Unreachable(vantage_engine::control::error_chain(&e.without_url())))?;
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let text = tokio::time::timeout(self.timeout, resp.text())
            .await
            .map_err(|_| UploadError::Unreachable("response body timed out".into()))?
            .map_err(|e| UploadError::Unreachable(vantage_engine::control::error_chain(&e.without_url())))?;
        if !status.is_success() {
            return Err(UploadError::from_status(status, &text, wait));
        }
        serde_json::from_str(&text).map_err(|e| UploadError::UnreadableReport { status: status.as_u16(), detail: e.to_string() })
    }

    /// Deliver every pending spool file, oldest first; a batch refused for good is quarantined
    /// and the flush goes on, any other failure stops it.
    pub async fn flush(&self, spool: &Spool) -> FlushReport {
        let mut report = FlushReport::default();
        let files = match spool.pending() {
            Ok(f) => f,
            Err(e) => {
                report.error = Some(e.into());
                return report;
            }
        };
        // What waits behind each batch, for the collector's backlog histogram, and what is left
        // when a flush stops early. An unreadable file counts as empty; flushing it says why.
        let sizes: Vec<usize> = files.iter().map(|f| spool::count_lines(f).unwrap_or(0)).collect();
        let mut flushing = Flushing { pending: sizes.iter().sum(), may_wait: true };
        for (file, size) in files.iter().zip(sizes) {
            if report.error.is_some() {
                report.remaining += size;
                continue;
            }
            if let Err((e, unsent)) = self.flush_file(spool, file, size, &mut flushing, &mut report).await {
                report.error = Some(e);
                report.remaining += unsent;
            }
        }
        report
    }

    /// Register the key with this collector if a flush's report said it is unregistered (and
    /// this uploader is [`Uploader::registering`]). Call it after the flush: the batches are
    /// answered and the spool settled, whatever happens here. `run` waits for it; the daemon
    /// runs it beside its schedule.
    pub async fn register_if_asked(&self, standing: Option<KeyStanding>) {
        if standing != Some(KeyStanding::Unregistered) {
            return;
        }
        let (Some(registration), Some(key)) = (&self.registration, &self.key) else { return };
        match registration.ensure(&self.http, &self.base, key, self.timeout).await {
            Ok(Registered::Now) => {
                tracing::info!("probe key registered with the collector; its measurements count once it has reported for a while")
            }
            Ok(Registered::Before | Registered::Deferred) => {}
            Err(crate::register::RegisterError::Stopped) => tracing::info!("registration stopped with the probe"),
            Err(e) => tracing::warn!("registering the probe key failed (uploads go on; tried again later): {e}"),
        }
    }

    async fn flush_file(
        &self,
        spool: &Spool,
        file: &Path,
        size: usize,
        flushing: &mut Flushing,
        report: &mut FlushReport,
    ) -> Result<(), (UploadError, usize)> {
        let mut refused = Vec::new();
        // Read a batch at a time: the file may hold a whole long run.
        let mut sent = 0;
        for batch in spool::batches(file, BATCH_LINES).map_err(|e| (e.into(), size))? {
            let batch = batch.map_err(|e| (e.into(), size.saturating_sub(sent)))?;
            flushing.pending = flushing.pending.saturating_sub(batch.len());
            match self.submit_patiently(&batch, flushing).await {
                Ok(r) => {
                    report.accepted += r.accepted;
                    report.duplicates += r.duplicates;
                    report.observed = r.observed.or(report.observed.take());
                    report.key = r.key.or(report.key);
                    for rej in r.rejected {
                        if let Some(line) = batch.get(rej.line.wrapping_sub(1)) {
                            refused.push((line.clone(), format!("{}: {}", rej.reason, rej.detail)));
                        }
                    }
                }
                Err(e) if e.fault() == Fault::Batch => {
                    // Sent again it would be refused again, and every batch behind it would wait
                    // forever: set it aside with the collector's reason instead.
                    let reason = e.to_string();
                    refused.extend(batch.iter().map(|line| (line.clone(), reason.clone())));
                }
                Err(e) => {
                    // What was answered is done: set its refusals aside and keep only the rest,
                    // so the next flush resumes here instead of spending the collector's rate
                    // limit on duplicates (see `Spool::keep_unanswered`).
                    if sent > 0 {
                        spool.quarantine(file, &refused).map_err(|e| (e.into(), size.saturating_sub(sent)))?;
                        report.rejected += refused.len();
                        spool.keep_unanswered(file, sent).map_err(|e| (e.into(), size.saturating_sub(sent)))?;
                    }
                    return Err((e, size.saturating_sub(sent)));
                }
            }
            sent += batch.len();
        }
        // Until the file is gone its every line is still pending, however the collector answered.
        spool.quarantine(file, &refused).map_err(|e| (e.into(), size))?;
        spool::remove(file).map_err(|e| (e.into(), size))?;
        report.rejected += refused.len();
        Ok(())
    }

    /// Send a batch; if the collector asks for a short wait (`Retry-After`, at most
    /// [`MAX_RETRY_WAIT`]), wait once per flush and send it again.
    async fn submit_patiently(&self, batch: &[String], flushing: &mut Flushing) -> Result<IngestReport, UploadError> {
        let first = self.submit(batch, flushing.pending).await;
        if let Err(e) = &first
            && flushing.may_wait
            && let Some(wait) = e.retry_after().filter(|wait| *wait <= MAX_RETRY_WAIT)
        {
            flushing.may_wait = false;
            tracing::info!("the collector asks to wait {} s; waiting once", wait.as_secs());
            tokio::time::sleep(wait).await;
            return self.submit(batch, flushing.pending).await;
        }
        first
    }
}

/// The batch body: each line and a newline, gzip-compressed.
fn gzip_lines(lines: &[String]) -> io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    for line in lines {
        gz.write_all(line.as_bytes())?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
