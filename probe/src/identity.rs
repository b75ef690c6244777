//! The probe's identity on disk: an ed25519 key made on first use, which signs every upload
//! batch (the signature format is the wire contract in [`vantage_measurement::wire::signature`]).
//!
//! On disk the key is `<data-dir>/probe.key`: the 32-byte secret seed, nothing else, mode `0600`.
//! A key file that other users can read is refused rather than used, as OpenSSH does: a leaked
//! key lets anyone submit in this probe's name. A volunteer who deletes it becomes a new probe.

use std::fs;
use std::io;
use std::path::Path;

use vantage_measurement::wire::ProbeKey;

use crate::private_file::create_private;

/// The key file inside the probe's data directory.
pub const KEY_FILE: &str = "probe.key";

/// Why the probe's key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading, creating or writing the key file failed.
    #[error("probe key {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Other users may read the key file.
    #[error(
        "probe key {path} is accessible to other users (mode {mode:04o}); it must be private to this user. \
         Run `chmod 600 {path}` (or delete it to start over as a new probe)"
    )]
    Unprotected {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a 32-byte seed.
    #[error("probe key {path} is {len} bytes, expected a 32-byte ed25519 seed; delete it to start over as a new probe")]
    BadLength {
        /// The file.
        path: String,
        /// Its length.
        len: u64,
    },
}

/// Load `<data_dir>/probe.key`, creating it (mode 0600) if there is none yet.
pub fn load_or_create(data_dir: &Path) -> Result<ProbeKey, IdentityError> {
    let path = data_dir.join(KEY_FILE);
    match load(&path) {
        Err(IdentityError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            create_key_file(&path)?;
            load(&path)
        }
        other => other,
    }
}

/// Load an existing key file, refusing one other users can read.
pub fn load(path: &Path) -> Result<ProbeKey, IdentityError> {
    let shown = path.display().to_string();
    let io_err = |source| IdentityError::Io { path: shown.clone(), source };
    let metadata = fs::metadata(path).map_err(io_err)?;
    check_private(path, &metadata)?;
    if metadata.len() != 32 {
        return Err(IdentityError::BadLength { path: shown, len: metadata.len() });
    }
    let bytes = fs::read(path).map_err(io_err)?;
    let seed: [u8; 32] =
        bytes.as_slice().try_into().map_err(|_| IdentityError::BadLength { path: shown.clone(), len: bytes.len() as u64 })?;
    Ok(ProbeKey::from_seed(&seed))
}

/// Make a key file: a crash leaves either no key or a whole one, and a key that appeared
/// meanwhile is kept, not overwritten.
fn create_key_file(path: &Path) -> Result<(), IdentityError> {
    create_private(path, ProbeKey::generate().seed())
        .map_err(|source| IdentityError::Io { path: path.display().to_string(), source })
}

#[cfg(unix)]
fn check_private(path: &Path, metadata: &fs::Metadata) -> Result<(), IdentityError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Unprotected { path: path.display().to_string(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _metadata: &fs::Metadata) -> Result<(), IdentityError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let first = load_or_create(&data).expect("create");
        let again = load_or_create(&data).expect("load");
        assert_eq!(first.key_id(), again.key_id(), "the same probe across runs");
        let path = data.join(KEY_FILE);
        assert_eq!(fs::metadata(&path).expect("key file").len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).expect("key file").permissions().mode() & 0o777, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(&data).expect("dir").filter_map(Result::ok).map(|e| e.file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(KEY_FILE)], "no temporary file left behind");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_other_users_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        load_or_create(dir.path()).expect("create");
        let path = dir.path().join(KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_or_create(dir.path()).expect_err("world-readable");
        assert!(matches!(err, IdentityError::Unprotected { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_truncated_key_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        create_private(&path, &[1; 5]).expect("write");
        let err = load_or_create(dir.path()).expect_err("truncated");
        assert!(matches!(err, IdentityError::BadLength { len: 5, .. }), "{err}");
        assert_eq!(fs::read(&path).expect("still there").len(), 5, "the file is left for the volunteer to judge");
    }
}
