//! The signed target list: fetched from the collectors, verified against the pinned key, kept on
//! disk, and narrowed to what this probe will measure.
//!
//! The probe works from the last list it accepted. A refresh asks each collector in turn (the
//! later ones are fallbacks for when one is blocked) and accepts the first list that
//! [`target_list::verify`] passes and whose targets parse; a refused list changes nothing on
//! disk, so a tampered or replayed list can never displace a good one. An expired list is never
//! measured from, even the last good one: a list nobody maintains must not run forever.
//!
//! On disk, in the data directory:
//!
//! ```text
//! list/signed.json   the accepted list, byte for byte as served (re-verified on every load)
//! list/trust.json    {"joined_with": <the config's list_key>, "pinned": <key>, "version": N}
//! ```
//!
//! `pinned` moves along the operator's key rotations; `joined_with` remembers which invitation
//! the trust grew from, so re-joining with a new invitation starts again from its key.

mod fetch;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vantage_engine::targets::{self, TargetSpec};
use vantage_measurement::wire::target_list::{self, ListDocument, ListError, ListTrust, SignedList};

use crate::config::{OptOut, ProbeConfig};
use crate::private_file;

pub use fetch::{Attempt, AttemptError, ListFetcher, MAX_LIST_BYTES};

/// The list's directory inside the data directory.
pub const LIST_DIR: &str = "list";
/// The accepted list, as served.
pub const SIGNED_FILE: &str = "signed.json";
/// The trust state.
pub const TRUST_FILE: &str = "trust.json";

/// What the probe measures now: a verified list, narrowed by the list's own switches and the
/// volunteer's opt-outs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveList {
    /// The list's version.
    pub version: u64,
    /// The signer's fingerprint (`list-key:…`).
    pub signer: String,
    /// How often each target's tests run.
    pub interval: Duration,
    /// When the list stops being used.
    pub expires_at: DateTime<Utc>,
    /// The targets to measure, with only the tests to run.
    pub targets: Vec<TargetSpec>,
    /// The target names that get a metric label of their own at the collector.
    pub labelled: Vec<String>,
    /// The collector that served it just now; `None` when read from disk.
    pub served_by: Option<String>,
}

impl ActiveList {
    /// Measurements in one pass over the list (one per target and test).
    pub fn measurements(&self) -> usize {
        self.targets.iter().map(|t| t.tests.len()).sum()
    }
}

/// A list that passed every check and is not yet kept: join writes its config first.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// What it asks the probe to measure.
    pub active: ActiveList,
    bytes: Vec<u8>,
    trust: ListTrust,
}

/// The outcome of [`ListStore::current`].
#[derive(Debug)]
pub struct Current {
    /// The list to measure from, or why there is none.
    pub list: Result<ActiveList, ListStoreError>,
    /// Why the refresh failed, when it did (the list above is then the last good one).
    pub refresh_error: Option<ListFetchError>,
}

/// Why no list was accepted: what each collector did, in order.
#[derive(Debug, thiserror::Error)]
pub enum ListFetchError {
    /// Every collector failed or served a list the probe refuses.
    #[error("no usable target list: {}", describe(.0))]
    NoGoodList(Vec<Attempt>),
    /// The trust state on disk can't be read or written.
    #[error(transparent)]
    Store(#[from] ListStoreError),
}

fn describe(attempts: &[Attempt]) -> String {
    attempts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl ListFetchError {
    /// The first signature-check refusal, if a collector answered with a list that failed it.
    pub fn refusal(&self) -> Option<&ListError> {
        match self {
            ListFetchError::NoGoodList(attempts) => attempts.iter().find_map(|a| match &a.error {
                AttemptError::Refused(e) => Some(e),
                _ => None,
            }),
            ListFetchError::Store(_) => None,
        }
    }
}

/// Why the list on disk can't be used.
#[derive(Debug, thiserror::Error)]
pub enum ListStoreError {
    /// No list was accepted yet (or only under another invitation).
    #[error("no target list yet: no collector has served a list this probe accepted")]
    NoList,
    /// The last good list expired.
    #[error(
        "the last good target list (version {version}) expired at {at}; measuring nothing until a collector serves a newer one"
    )]
    Expired {
        /// Its version.
        version: u64,
        /// When it expired.
        at: DateTime<Utc>,
    },
    /// The files don't parse or no longer verify (damaged or edited on disk).
    #[error("the kept target list {path} is unusable ({reason}); it will be replaced by the next good list")]
    Damaged {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The trust state does not parse (damaged or edited on disk). Starting again from the
    /// config's key would accept any version, so that is the volunteer's call, not the probe's.
    #[error("the list trust state {path} is unusable ({reason}); delete it to start again from the key in the config file")]
    DamagedTrust {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("target list store {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredTrust {
    joined_with: String,
    #[serde(flatten)]
    trust: ListTrust,
}

/// The last good list and the trust state, in a data directory.
#[derive(Clone, Debug)]
pub struct ListStore {
    dir: PathBuf,
    joined_with: String,
    opt_out: OptOut,
}

impl ListStore {
    /// The store in `data_dir` for a probe that joined with `list_key`; nothing is read yet.
    pub fn open(data_dir: &Path, list_key: &str, opt_out: OptOut) -> ListStore {
        ListStore { dir: data_dir.join(LIST_DIR), joined_with: list_key.to_string(), opt_out }
    }

    /// The store a config file describes.
    pub fn for_config(config: &ProbeConfig) -> ListStore {
        ListStore::open(&config.data_dir, &config.list_key, config.opt_out.clone())
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// What the probe trusts now: the kept state, or the invitation's key if there is none (or
    /// it grew from another invitation).
    pub fn trust(&self) -> Result<ListTrust, ListStoreError> {
        let fresh = ListTrust { pinned: self.joined_with.clone(), version: None };
        let path = self.path(TRUST_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(fresh),
            Err(source) => return Err(ListStoreError::Io { path: path.display().to_string(), source }),
        };
        let stored: StoredTrust = serde_json::from_str(&text)
            .map_err(|e| ListStoreError::DamagedTrust { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(if stored.joined_with == self.joined_with { stored.trust } else { fresh })
    }

    /// Fetch and check a list at `now` without keeping it.
    pub async fn fetch_at(&self, fetcher: &ListFetcher, now: DateTime<Utc>) -> Result<Fetched, ListFetchError> {
        let trust = self.trust()?;
        let mut attempts = Vec::new();
        for collector in fetcher.collectors() {
            let checked = match fetcher.fetch_one(collector).await {
                Ok(bytes) => self.check(&bytes, &trust, now, collector).map(|(verified, active)| Fetched {
                    active,
                    bytes,
                    trust: verified.trust(),
                }),
                Err(e) => Err(e),
            };
            match checked {
                Ok(fetched) => return Ok(fetched),
                Err(error) => {
                    tracing::info!("target list from {collector}: {error}");
                    attempts.push(Attempt { collector: collector.clone(), error });
                }
            }
        }
        Err(ListFetchError::NoGoodList(attempts))
    }

    /// Keep a fetched list: the list first, then the trust, so a crash between the two leaves a
    /// list newer than the trust (still accepted) rather than the reverse.
    pub fn keep(&self, fetched: &Fetched) -> Result<(), ListStoreError> {
        let io_err = |path: PathBuf| move |source| ListStoreError::Io { path: path.display().to_string(), source };
        let signed = self.path(SIGNED_FILE);
        private_file::write_private(&signed, &fetched.bytes).map_err(io_err(signed.clone()))?;
        let stored = StoredTrust { joined_with: self.joined_with.clone(), trust: fetched.trust.clone() };
        // A struct of strings and a number always serialises.
        let text = serde_json::to_vec_pretty(&stored).unwrap_or_default();
        let trust = self.path(TRUST_FILE);
        private_file::write_private(&trust, &text).map_err(io_err(trust.clone()))
    }

    /// Fetch, check and keep a list at `now`; on failure nothing on disk changes.
    pub async fn refresh_at(&self, fetcher: &ListFetcher, now: DateTime<Utc>) -> Result<ActiveList, ListFetchError> {
        let fetched = self.fetch_at(fetcher, now).await?;
        self.keep(&fetched)?;
        Ok(fetched.active)
    }

    /// [`ListStore::refresh_at`] now.
    pub async fn refresh(&self, fetcher: &ListFetcher) -> Result<ActiveList, ListFetchError> {
        self.refresh_at(fetcher, Utc::now()).await
    }

    /// What to measure now: a fresh list if a collector serves one the probe accepts, else the
    /// last good list (never an expired one). Why the refresh failed comes along, to be reported.
    pub async fn current_at(&self, fetcher: &ListFetcher, now: DateTime<Utc>) -> Current {
        match self.refresh_at(fetcher, now).await {
            Ok(list) => Current { list: Ok(list), refresh_error: None },
            Err(e) => Current { list: self.last_good_at(now), refresh_error: Some(e) },
        }
    }

    /// [`ListStore::current_at`] now.
    pub async fn current(&self, fetcher: &ListFetcher) -> Current {
        self.current_at(fetcher, Utc::now()).await
    }

    /// The last good list, checked again at `now` (an expired one is refused).
    pub fn last_good_at(&self, now: DateTime<Utc>) -> Result<ActiveList, ListStoreError> {
        let path = self.path(SIGNED_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ListStoreError::NoList),
            Err(source) => return Err(ListStoreError::Io { path: path.display().to_string(), source }),
        };
        let trust = self.trust()?;
        if trust.version.is_none() {
            // Kept under another invitation: not this network's list.
            return Err(ListStoreError::NoList);
        }
        let damaged = |reason: String| ListStoreError::Damaged { path: path.display().to_string(), reason };
        let list: SignedList = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        match target_list::verify(&list, &trust, now) {
            Ok(verified) => {
                let targets =
                    targets::parse(&verified.document.targets_toml, "the kept list").map_err(|e| damaged(e.to_string()))?;
                Ok(self.activate(&verified.document, &verified.signer, targets, None))
            }
            Err(ListError::Expired(at)) => Err(ListStoreError::Expired { version: trust.version.unwrap_or_default(), at }),
            Err(e) => Err(damaged(e.to_string())),
        }
    }

    /// [`ListStore::last_good_at`] now.
    pub fn last_good(&self) -> Result<ActiveList, ListStoreError> {
        self.last_good_at(Utc::now())
    }

    /// Verify served bytes and parse their targets.
    fn check(
        &self,
        bytes: &[u8],
        trust: &ListTrust,
        now: DateTime<Utc>,
        collector: &str,
    ) -> Result<(target_list::VerifiedList, ActiveList), AttemptError> {
        let list: SignedList = serde_json::from_slice(bytes)
            .map_err(|e| AttemptError::Refused(ListError::Malformed(format!("not the list envelope: {e}"))))?;
        let verified = target_list::verify(&list, trust, now).map_err(AttemptError::Refused)?;
        let origin = format!("the list from {collector}");
        let targets =
            targets::parse(&verified.document.targets_toml, &origin).map_err(|e| AttemptError::BadTargets(e.to_string()))?;
        let active = self.activate(&verified.document, &verified.signer, targets, Some(collector.to_string()));
        Ok((verified, active))
    }

    fn activate(&self, document: &ListDocument, signer: &str, targets: Vec<TargetSpec>, served_by: Option<String>) -> ActiveList {
        ActiveList {
            version: document.version,
            signer: target_list::fingerprint_of(signer),
            interval: Duration::from_secs(document.interval_secs),
            expires_at: document.expires_at,
            targets: select(document, targets, &self.opt_out),
            labelled: document.labelled.clone(),
            served_by,
        }
    }
}

/// The targets and tests to run: the list's own kill switches first, then the volunteer's
/// opt-outs; a target left with no test is dropped.
pub fn select(document: &ListDocument, targets: Vec<TargetSpec>, opt_out: &OptOut) -> Vec<TargetSpec> {
    targets
        .into_iter()
        .filter(|t| !document.disabled_targets.contains(&t.name))
        .filter(|t| t.category.as_ref().is_none_or(|c| !opt_out.categories.contains(c)))
        .filter_map(|mut t| {
            t.tests.retain(|test| !document.disabled_tests.contains(test) && !opt_out.tests.contains(test));
            (!t.tests.is_empty()).then_some(t)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
