//! Network epochs: a number that changes whenever the probe finds itself on another network, so
//! that a researcher never mixes results from two networks in one series.
//!
//! A change is either local (another default gateway or interface: the
//! [`NetworkFingerprint`](super::NetworkFingerprint) differs) or seen by the collector (the ASN
//! it observed for our uploads differs). The fingerprint is kept only as a salted SHA-256: the
//! salt is random per install (`<data-dir>/network.salt`, mode 0600), so the stored hash can't be
//! matched against a guessed gateway address, and neither leaves the machine. Epochs count up
//! from 1 and never go back: a probe that returns to a network it knew gets a new epoch (the
//! epoch says "same network as the measurement before", not "which network").

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::NetworkFingerprint;
use crate::private_file::{create_private, write_private};

/// The per-install salt of the fingerprint hash.
pub const SALT_FILE: &str = "network.salt";
/// The current epoch: its number, the salted fingerprint hash and the ASN the collector saw.
pub const EPOCH_FILE: &str = "network-epoch.json";

const SALT_LEN: usize = 32;

/// Why the epoch state could not be read or kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EpochError {
    /// Reading or writing a state file failed.
    #[error("network state {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A state file holds something else than this probe writes.
    #[error("network state {path} is unreadable ({reason}); delete it to start a new network epoch")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The epoch measurements are stamped with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// Counts up from 1.
    pub number: u32,
    /// This call started it (the network changed, or it is the probe's first).
    pub is_new: bool,
}

/// What [`EPOCH_FILE`] holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EpochState {
    epoch: u32,
    /// Hex SHA-256 of salt ‖ fingerprint; empty when only the ASN is known yet.
    fingerprint: String,
    #[serde(default)]
    asn: Option<u32>,
}

/// What was just learnt about the network.
#[derive(Clone, Copy)]
enum Sighting<'a> {
    Local(&'a str),
    Asn(u32),
}

/// The next state: the same epoch while nothing changed, the next one when something did.
/// Learning a first fact (no ASN seen yet, no fingerprint yet) is no change.
fn advance(state: Option<EpochState>, sighting: Sighting<'_>) -> (EpochState, bool) {
    let Some(state) = state else {
        let (fingerprint, asn) = match sighting {
            Sighting::Local(hash) => (hash.to_string(), None),
            Sighting::Asn(asn) => (String::new(), Some(asn)),
        };
        return (EpochState { epoch: 1, fingerprint, asn }, true);
    };
    let next = |fingerprint: String, asn| EpochState { epoch: state.epoch.saturating_add(1), fingerprint, asn };
    match sighting {
        Sighting::Local(hash) if state.fingerprint == hash => (state, false),
        Sighting::Local(hash) if state.fingerprint.is_empty() => (EpochState { fingerprint: hash.to_string(), ..state }, false),
        // Another network: the ASN the collector saw belongs to the old one.
        Sighting::Local(hash) => (next(hash.to_string(), None), true),
        Sighting::Asn(asn) if state.asn.is_none_or(|seen| seen == asn) => (EpochState { asn: Some(asn), ..state }, false),
        Sighting::Asn(asn) => (next(state.fingerprint.clone(), Some(asn)), true),
    }
}

/// The epoch state in a data directory.
pub struct EpochStore {
    dir: PathBuf,
    salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for EpochStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl EpochStore {
    /// Open the state in `data_dir`, making the salt on first use.
    pub fn open(data_dir: &Path) -> Result<EpochStore, EpochError> {
        let path = data_dir.join(SALT_FILE);
        let salt = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut salt = [0u8; SALT_LEN];
                OsRng.try_fill_bytes(&mut salt).map_err(|e| io_error(&path, io::Error::other(e.to_string())))?;
                // A salt another process made meanwhile wins.
                create_private(&path, &salt).map_err(|e| io_error(&path, e))?;
                fs::read(&path).map_err(|e| io_error(&path, e))?
            }
            Err(e) => return Err(io_error(&path, e)),
        };
        let salt =
            salt.try_into().map_err(|bytes: Vec<u8>| corrupt(&path, format!("{} bytes, expected {SALT_LEN}", bytes.len())))?;
        Ok(EpochStore { dir: data_dir.to_path_buf(), salt })
    }

    /// Stamp the current network: the same epoch as before unless its fingerprint changed. An
    /// empty fingerprint (no route at all) changes nothing.
    pub fn observe(&self, fingerprint: &NetworkFingerprint) -> Result<Epoch, EpochError> {
        if fingerprint.is_empty() {
            return self.current();
        }
        let hash = self.hash(fingerprint);
        self.update(Sighting::Local(&hash))
    }

    /// The ASN the collector observed for our uploads (`observed.asn` of an ingest report): a
    /// different one from before starts a new epoch, for the next measurements. 0 means unknown.
    pub fn observe_asn(&self, asn: u32) -> Result<Epoch, EpochError> {
        if asn == 0 {
            return self.current();
        }
        self.update(Sighting::Asn(asn))
    }

    /// The epoch now, without learning anything (1 before the first sighting).
    pub fn current(&self) -> Result<Epoch, EpochError> {
        Ok(Epoch { number: self.load()?.map_or(1, |s| s.epoch), is_new: false })
    }

    fn update(&self, sighting: Sighting<'_>) -> Result<Epoch, EpochError> {
        let before = self.load()?;
        let (after, is_new) = advance(before.clone(), sighting);
        if before.as_ref() != Some(&after) {
            let mut text = serde_json::to_vec(&after).map_err(|e| corrupt(&self.dir.join(EPOCH_FILE), e.to_string()))?;
            text.push(b'\n');
            let path = self.dir.join(EPOCH_FILE);
            write_private(&path, &text).map_err(|e| io_error(&path, e))?;
        }
        Ok(Epoch { number: after.epoch, is_new })
    }

    fn load(&self) -> Result<Option<EpochState>, EpochError> {
        let path = self.dir.join(EPOCH_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| corrupt(&path, e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// Hex SHA-256 of the salt and the fingerprint's canonical text.
    fn hash(&self, fingerprint: &NetworkFingerprint) -> String {
        let digest = Sha256::new().chain_update(self.salt).chain_update(fingerprint.canonical().as_bytes()).finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn io_error(path: &Path, source: io::Error) -> EpochError {
    EpochError::Io { path: path.display().to_string(), source }
}

fn corrupt(path: &Path, reason: impl ToString) -> EpochError {
    EpochError::Corrupt { path: path.display().to_string(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(epoch: u32, fingerprint: &str, asn: Option<u32>) -> EpochState {
        EpochState { epoch, fingerprint: fingerprint.into(), asn }
    }

    #[test]
    fn epochs_change_only_when_the_network_does() {
        let cases: &[(&str, Option<EpochState>, Sighting<'_>, EpochState, bool)] = &[
            ("first network", None, Sighting::Local("a"), state(1, "a", None), true),
            ("same network", Some(state(3, "a", Some(64500))), Sighting::Local("a"), state(3, "a", Some(64500)), false),
            ("another gateway", Some(state(3, "a", Some(64500))), Sighting::Local("b"), state(4, "b", None), true),
            ("first ASN seen", Some(state(3, "a", None)), Sighting::Asn(64500), state(3, "a", Some(64500)), false),
            ("same ASN", Some(state(3, "a", Some(64500))), Sighting::Asn(64500), state(3, "a", Some(64500)), false),
            ("another ASN", Some(state(3, "a", Some(64500))), Sighting::Asn(64501), state(4, "a", Some(64501)), true),
            ("ASN before any fingerprint", None, Sighting::Asn(64500), state(1, "", Some(64500)), true),
            (
                "fingerprint after the ASN",
                Some(state(1, "", Some(64500))),
                Sighting::Local("a"),
                state(1, "a", Some(64500)),
                false,
            ),
            ("the counter never wraps", Some(state(u32::MAX, "a", None)), Sighting::Local("b"), state(u32::MAX, "b", None), true),
        ];
        for (story, before, sighting, after, is_new) in cases {
            assert_eq!(advance(before.clone(), *sighting), (after.clone(), *is_new), "{story}");
        }
    }

    fn fingerprint(lines: &[&str]) -> NetworkFingerprint {
        NetworkFingerprint::from_lines(lines.iter().map(|l| l.to_string()).collect())
    }

    #[test]
    fn the_store_keeps_the_epoch_and_only_a_salted_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = fingerprint(&["gateway eth0 192.0.2.1"]);
        let cafe = fingerprint(&["gateway eth0 198.51.100.1"]);
        let store = EpochStore::open(dir.path()).expect("open");
        assert_eq!(store.observe(&home).expect("home"), Epoch { number: 1, is_new: true });
        assert_eq!(store.observe(&home).expect("home again"), Epoch { number: 1, is_new: false });
        assert_eq!(store.observe(&cafe).expect("cafe"), Epoch { number: 2, is_new: true });
        assert_eq!(store.observe_asn(64500).expect("asn"), Epoch { number: 2, is_new: false });
        assert_eq!(store.observe_asn(64501).expect("other asn"), Epoch { number: 3, is_new: true });
        assert_eq!(store.observe(&NetworkFingerprint::default()).expect("offline"), Epoch { number: 3, is_new: false });

        // Reopened (a new run), the state is still there.
        let reopened = EpochStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.current().expect("current").number, 3);
        let saved: EpochState = serde_json::from_slice(&fs::read(dir.path().join(EPOCH_FILE)).expect("state")).expect("json");
        assert_eq!(saved.fingerprint, reopened.hash(&cafe));
        assert_eq!(saved.fingerprint.len(), 64);
        let text = fs::read_to_string(dir.path().join(EPOCH_FILE)).expect("state");
        assert!(!text.contains("198.51.100.1") && !text.contains("eth0"), "no gateway or interface on disk: {text}");

        // Another install salts differently: its hash of the same network differs.
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(EpochStore::open(other.path()).expect("open").hash(&cafe), reopened.hash(&cafe));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for file in [SALT_FILE, EPOCH_FILE] {
                let mode = fs::metadata(dir.path().join(file)).expect(file).permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{file}");
            }
        }
        let mut names: Vec<_> = fs::read_dir(dir.path()).expect("dir").filter_map(Result::ok).map(|e| e.file_name()).collect();
        names.sort();
        assert_eq!(names, vec![std::ffi::OsString::from(EPOCH_FILE), SALT_FILE.into()], "no temporary file left behind");
    }

    #[test]
    fn a_damaged_state_file_is_named_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EpochStore::open(dir.path()).expect("open");
        fs::write(dir.path().join(EPOCH_FILE), "{\"epoch\": \"three\"}").expect("write");
        let err = store.observe(&fingerprint(&["gateway eth0 192.0.2.1"])).expect_err("corrupt");
        assert!(matches!(err, EpochError::Corrupt { .. }), "{err}");
        assert_eq!(fs::read_to_string(dir.path().join(EPOCH_FILE)).expect("kept"), "{\"epoch\": \"three\"}");

        fs::write(dir.path().join(SALT_FILE), [1u8; 5]).expect("write");
        let err = EpochStore::open(dir.path()).expect_err("short salt");
        assert!(matches!(err, EpochError::Corrupt { .. }), "{err}");
    }
}
