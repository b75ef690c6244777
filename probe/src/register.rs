//! Registering the probe key with a collector, once, when the collector says it is unregistered.
//!
//! A collector counts a probe's measurements only once its key is registered (a small proof of
//! work, [`vantage_measurement::wire::registration`]) and has reported for a while. Every ingest
//! report says where the key stands; when it says `unregistered`, the uploader asks the
//! collector for its challenge, solves it on a blocking thread (about a second or two on a
//! desktop, longer on a small board), and registers. Success is remembered in
//! `<data-dir>/registered` (one `KEY-ID URL` line per collector), so each key registers once per
//! collector. Registration never holds up or loses an upload: it runs after the batches were
//! answered, every network wait has a timeout, and a failure is only logged and tried again at
//! most once an hour. Deleting `probe.key` makes a new key, which registers (and earns trust)
//! anew.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use vantage_engine::control::{error_chain, read_capped};
use vantage_measurement::wire::ProbeKey;
use vantage_measurement::wire::registration::{self, CHALLENGE_PATH, REGISTER_PATH, RegistrationChallenge, RegistrationError};

use crate::private_file::write_private;

/// Where successful registrations are remembered, beside `probe.key`.
pub const RECORD_FILE: &str = "registered";
/// How long after a failed attempt a collector is asked again (by this process).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(3600);
/// The largest challenge or registration answer read: both are a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// What became of a registration the collector asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registered {
    /// Registered just now.
    Now,
    /// This key registered with this collector before (the record says so): nothing sent.
    Before,
    /// An attempt is under way, or failed less than [`RETRY_AFTER_FAILURE`] ago: nothing sent.
    Deferred,
}

/// Why registering failed. None of these touches the spool.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// No answer, or a transport error.
    #[error("collector unreachable: {0}")]
    Unreachable(String),
    /// The collector answered with an error status.
    #[error("the collector refused: HTTP {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its explanation, truncated.
        message: String,
    },
    /// The challenge could not be read.
    #[error("unreadable challenge: {0}")]
    Challenge(String),
    /// The challenge can't be solved (too much work asked, a bad salt).
    #[error(transparent)]
    Work(#[from] RegistrationError),
    /// The work was abandoned (the probe is stopping).
    #[error("stopped before the work was done")]
    Stopped,
    /// Registered, but the record could not be written (it will register again next time).
    #[error("could not remember the registration in {path}: {source}")]
    Record {
        /// The record file.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// Registration for one probe key, shared by every clone of its uploader.
#[derive(Debug)]
pub struct Registration {
    data_dir: PathBuf,
    /// When each collector was last tried (kept while under way and after a failure), in this
    /// process.
    tried: Mutex<HashMap<String, Instant>>,
}

/// Sets the flag when dropped: a registration whose future is dropped (the probe stopping) tells
/// its blocking solver to give up.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Registration {
    /// Registrations remembered in `data_dir` (the probe's, where `probe.key` is).
    pub fn new(data_dir: &Path) -> Self {
        Registration { data_dir: data_dir.to_path_buf(), tried: Mutex::default() }
    }

    /// Register `key` with the collector at `base` unless it was registered there before, or an
    /// attempt is under way or failed within the hour.
    pub async fn ensure(
        &self,
        http: &reqwest::Client,
        base: &str,
        key: &Arc<ProbeKey>,
        timeout: Duration,
    ) -> Result<Registered, RegisterError> {
        let base = base.trim_end_matches('/');
        let id = key.key_id().to_string();
        if recorded(&self.data_dir, &id, base) {
            return Ok(Registered::Before);
        }
        {
            let mut tried = self.tried.lock().unwrap_or_else(PoisonError::into_inner);
            if tried.get(base).is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE) {
                return Ok(Registered::Deferred);
            }
            tried.insert(base.to_string(), Instant::now());
        }
        let outcome = register(http, base, key, timeout).await;
        if matches!(outcome, Ok(()) | Err(RegisterError::Stopped)) {
            // Done, or not really tried: the next report that asks may start again.
            self.tried.lock().unwrap_or_else(PoisonError::into_inner).remove(base);
        }
        outcome?;
        record(&self.data_dir, &id, base)?;
        Ok(Registered::Now)
    }
}

/// Fetch the challenge, solve it off the async workers, register.
async fn register(http: &reqwest::Client, base: &str, key: &Arc<ProbeKey>, timeout: Duration) -> Result<(), RegisterError> {
    let text = fetch(http.get(format!("{base}{CHALLENGE_PATH}")), timeout).await?;
    let challenge: RegistrationChallenge = serde_json::from_str(&text).map_err(|e| RegisterError::Challenge(e.to_string()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    let solver = {
        let (key, challenge) = (Arc::clone(key), challenge.clone());
        tokio::task::spawn_blocking(move || registration::solve_unless(&key, &challenge, &stop))
    };
    let started = Instant::now();
    let nonce = solver.await.map_err(|_| RegisterError::Stopped)??.ok_or(RegisterError::Stopped)?;
    tracing::info!(bits = challenge.difficulty_bits, secs = started.elapsed().as_secs_f32(), "registration work done");
    let request = registration::request(key, &challenge, nonce)?;
    fetch(http.post(format!("{base}{REGISTER_PATH}")).json(&request), timeout).await?;
    Ok(())
}

/// Send `request` and read the answer's text, each step within `timeout`; an error status is
/// [`RegisterError::Refused`].
async fn fetch(request: reqwest::RequestBuilder, timeout: Duration) -> Result<String, RegisterError> {
    let response = tokio::time::timeout(timeout, request.send())
        .await
        .map_err(|_| RegisterError::Unreachable(format!("no answer within {timeout:?}")))?
        .map_err(|e| RegisterError::Unreachable(error_chain(&e.without_url())))?;
    let status = response.status();
    let body = tokio::time::timeout(timeout, read_capped(response, MAX_ANSWER_BYTES))
        .await
        .map_err(|_| RegisterError::Unreachable("response body timed out".into()))?
        .map_err(|e| RegisterError::Unreachable(e.to_string()))?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(RegisterError::Refused { status: status.as_u16(), message: text.chars().take(300).collect() });
    }
    Ok(text)
}

/// Does the record say `key_id` registered with `base`?
fn recorded(data_dir: &Path, key_id: &str, base: &str) -> bool {
    let text = std::fs::read_to_string(data_dir.join(RECORD_FILE)).unwrap_or_default();
    text.lines().any(|line| line.split_once(' ') == Some((key_id, base)))
}

/// Add `key_id base` to the record (lines of other keys are dropped: they are no longer this
/// probe's).
fn record(data_dir: &Path, key_id: &str, base: &str) -> Result<(), RegisterError> {
    let path = data_dir.join(RECORD_FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<&str> = text.lines().filter(|line| line.split_once(' ').is_some_and(|(id, _)| id == key_id)).collect();
    let line = format!("{key_id} {base}");
    lines.push(&line);
    let body = lines.join("\n") + "\n";
    write_private(&path, body.as_bytes()).map_err(|source| RegisterError::Record { path: path.display().to_string(), source })
}

/// Forget every registration on record: after a deletion request the collectors deleted the key's
/// record too, so the key must register again to count.
pub fn forget_registrations(data_dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(data_dir.join(RECORD_FILE)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
#[path = "register_tests.rs"]
mod tests;
