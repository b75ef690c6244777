//! The daemon's state file: what `vantage-probe status` shows, and what a restarted daemon takes
//! up again (today's budget, the last results).
//!
//! `daemon-state.json` in the data directory, rewritten atomically (a temporary file, synced, then
//! renamed over the old one) at start, at most once a minute, and at stop, so a reader never sees half a file and a crash
//! never leaves none. It names targets by their list name and never holds an address, a hostname
//! or anything about the volunteer's network.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vantage_measurement::{Measurement, Mechanism, Status, TestKind};

use super::budget::{Limits, Usage};

/// The file's name inside the data directory.
pub const STATE_FILE: &str = "daemon-state.json";

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A filesystem operation failed.
    #[error("daemon state {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// The file is not a state file this version understands.
    #[error("daemon state {path} is unreadable: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The error.
        source: serde_json::Error,
    },
}

/// Everything the daemon tells `status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// When the file was written.
    pub written_at: Option<DateTime<Utc>>,
    /// Whether the daemon was running then (false once it stopped cleanly).
    pub running: bool,
    /// The signed list's version, if the plan came from one.
    pub list_version: Option<u64>,
    /// Fingerprint of the list's signer, if the plan came from a signed list.
    pub list_signer: Option<String>,
    /// Seconds between two measurements of a target.
    pub interval_secs: u64,
    /// Measurements in the spool, not yet acknowledged by the collector.
    pub spool_pending: usize,
    /// Budget use and limits.
    pub budget: BudgetState,
    /// Why measuring is paused, if it is.
    pub paused: Option<String>,
    /// Wall-clock jumps and suspends noticed since the daemon started.
    pub clock_jumps: u64,
    /// Uploads.
    pub upload: UploadState,
    /// The last result per target and test, keyed `"<target> <test>"`.
    pub results: BTreeMap<String, LastResult>,
    /// Each target's next slot.
    pub next_runs: BTreeMap<String, DateTime<Utc>>,
}

/// Today's use against the limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetState {
    /// Daily byte budget (0: none).
    pub daily_bytes: u64,
    /// Measurements per hour (0: no cap).
    pub max_per_hour: u32,
    /// What was used.
    pub usage: Usage,
}

impl BudgetState {
    /// The limits in force.
    pub fn limits(&self) -> Limits {
        Limits { daily_bytes: self.daily_bytes, max_per_hour: self.max_per_hour }
    }
}

/// How uploads went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Last time the collector acknowledged a flush.
    pub last_ok_at: Option<DateTime<Utc>>,
    /// Why the last flush stopped early, if it did.
    pub last_error: Option<String>,
    /// No upload before this time (the collector's `Retry-After`, or a back-off).
    pub not_before: Option<DateTime<Utc>>,
    /// Measurements the collector stored since the daemon started.
    pub accepted: u64,
}

/// The last thing that happened to one target's test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    /// The target's name on the list.
    pub target: String,
    /// The test.
    pub test: TestKind,
    /// When it last ran (or was skipped).
    pub at: DateTime<Utc>,
    /// Its verdict, if it ran.
    pub status: Option<Status>,
    /// The verdict's mechanism.
    pub mechanism: Option<Mechanism>,
    /// Why it did not run, if it was skipped.
    pub skipped: Option<String>,
}

impl State {
    /// Note a finished measurement.
    pub fn record(&mut self, m: &Measurement) {
        let entry = LastResult {
            target: m.target.name.clone(),
            test: m.test,
            at: m.started_at,
            status: Some(m.verdict.status),
            mechanism: m.verdict.mechanism,
            skipped: None,
        };
        self.results.insert(key(&m.target.name, m.test), entry);
    }

    /// Note a measurement that was not started, and why. The last verdict is kept.
    pub fn record_skip(&mut self, target: &str, test: TestKind, at: DateTime<Utc>, why: &str) {
        let entry = self.results.entry(key(target, test)).or_insert_with(|| LastResult {
            target: target.to_string(),
            test,
            at,
            status: None,
            mechanism: None,
            skipped: None,
        });
        entry.at = at;
        entry.skipped = Some(why.to_string());
    }

    /// Forget targets that left the plan.
    pub fn keep_targets(&mut self, names: &std::collections::HashSet<&str>) {
        self.results.retain(|_, r| names.contains(r.target.as_str()));
        self.next_runs.retain(|name, _| names.contains(name.as_str()));
    }
}

fn key(target: &str, test: TestKind) -> String {
    format!("{target} {}", test.as_str())
}

/// Where the state file of `data_dir` lives.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE)
}

/// Read a state file; `None` if there is none yet.
pub fn read(path: &Path) -> Result<Option<State>, StateError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { path: path.display().to_string(), source }),
    };
    serde_json::from_slice(&text).map(Some).map_err(|source| StateError::Parse { path: path.display().to_string(), source })
}

/// Replace the state file atomically.
pub fn write(path: &Path, state: &State) -> Result<(), StateError> {
    // Streamed: at 10,000 targets the state is megabytes of JSON, which must not sit in memory.
    crate::private_file::write_private_with(path, |out| serde_json::to_writer(out, state).map_err(io::Error::from))
        .map_err(|source| StateError::Io { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_measurement::example;

    #[test]
    fn a_state_survives_a_write_and_a_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = path(dir.path());
        assert_eq!(read(&file).expect("no file yet"), None);
        let mut state = State { running: true, interval_secs: 3600, list_version: Some(7), ..State::default() };
        let m = example::tls_reset(Utc::now());
        state.record(&m);
        state.record_skip("other", TestKind::Quic, Utc::now(), "daily byte budget spent");
        write(&file, &state).expect("write");
        assert_eq!(read(&file).expect("read"), Some(state.clone()));
        assert!(!dir.path().join("daemon-state.json.tmp").exists(), "the temporary file was renamed");
        let last = &state.results[&format!("{} tls", m.target.name)];
        assert_eq!((last.status, last.mechanism), (Some(m.verdict.status), m.verdict.mechanism));
    }

    #[test]
    fn a_skip_keeps_the_last_verdict() {
        let mut state = State::default();
        let m = example::tls_reset(Utc::now());
        state.record(&m);
        state.record_skip(&m.target.name, m.test, Utc::now(), "rate cap");
        let last = &state.results[&key(&m.target.name, m.test)];
        assert_eq!((last.status, last.skipped.as_deref()), (Some(m.verdict.status), Some("rate cap")));
    }

    #[test]
    fn the_file_holds_no_address() {
        let mut state = State::default();
        let m = example::tls_reset(Utc::now());
        state.record(&m);
        let text = serde_json::to_string(&state).expect("encode");
        if let Some(ip) = m.target.address {
            assert!(!text.contains(&ip.to_string()), "{text}");
        }
        if let Some(domain) = &m.target.domain {
            assert!(!text.contains(domain.as_str()), "no hostname: {text}");
        }
    }
}
