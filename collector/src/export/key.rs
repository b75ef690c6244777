//! The collector's publication key: the ed25519 key that signs export manifests.
//!
//! It is the collector's own, not a probe's (probe keys stay private: a published per-probe key
//! would link all of a volunteer's measurements) and not the operator's list key (which should
//! live off the serving machine). The file holds the 32-byte seed in base64, mode 0600, the
//! same format as the list key (`operator::read_seed`, `operator::write_seed`); it is made on
//! first use at `<data-dir>/publication.key` unless `--publication-key` names another file.
//! Replicas sharing one database must share one key file: a manifest signed by another key fails
//! verification.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use vantage_measurement::wire::KeyId;

use crate::operator::{read_seed, write_seed};

/// The key file's name in the data directory.
pub const FILE_NAME: &str = "publication.key";

/// Where the key is: `explicit`, or [`FILE_NAME`] in `data_dir`.
pub fn path(explicit: Option<&Path>, data_dir: &Path) -> PathBuf {
    explicit.map_or_else(|| data_dir.join(FILE_NAME), Path::to_path_buf)
}

/// Read the key at `path`, making it first if there is no file (the directory is created).
pub fn load_or_create(path: &Path) -> anyhow::Result<SigningKey> {
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let key = SigningKey::generate(&mut rand_core::OsRng);
        match write_seed(path, key.as_bytes()) {
            Ok(()) => {
                tracing::info!(key = %key_id(&key.verifying_key()), path = %path.display(), "publication key made");
                return Ok(key);
            }
            // Another replica (or process) made it meanwhile: read theirs.
            Err(_) if path.exists() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(SigningKey::from_bytes(&read_seed(path, "publication key", "the collector on first use")?))
}

/// The public key, base64.
pub fn public_base64(key: &VerifyingKey) -> String {
    BASE64.encode(key.as_bytes())
}

/// A short, stable name for the key: `publication-key:` and 16 hex characters of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    format!("publication-key:{}", KeyId::of(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = path(None, &dir.path().join("data"));
        let made = load_or_create(&file).expect("made");
        let again = load_or_create(&file).expect("read");
        assert_eq!(made.as_bytes(), again.as_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&file, "not a key").expect("overwrite");
        let err = load_or_create(&file).expect_err("garbage");
        assert!(format!("{err:#}").contains("is not a publication key"), "{err:#}");
        assert!(key_id(&made.verifying_key()).starts_with("publication-key:"));
    }
}
