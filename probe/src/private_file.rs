//! Files only this user may read (the probe key, the config that pins the operator's key, the
//! list's trust state, the network salt), written atomically so that a crash leaves the old file
//! or the new one. The one place the probe writes such files.
//!
//! Run as root (`sudo vantage-probe join`), a file or directory made inside a directory that
//! belongs to someone else is given to that owner, and a replaced file keeps its owner: the
//! package's service user must still be able to read and replace what root wrote for it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::config::running_as_root;

/// Replace `path` with `bytes`, mode 0600; missing directories are made (mode 0700).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    place(path, |file| file.write_all(bytes), Place::Replace)
}

/// [`write_private`], with the content written by `write` straight into the file, so that a large
/// file (the daemon's state) is never held in memory whole.
pub fn write_private_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    place(
        path,
        |file| {
            let mut buffered = io::BufWriter::new(file);
            write(&mut buffered)?;
            buffered.flush()
        },
        Place::Replace,
    )
}

/// Write `bytes` to `path` (mode 0600) unless a file is already there, which is kept: for what is
/// made once (a key, a salt), so that two processes starting at once end up with the same one.
pub fn create_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    place(path, |file| file.write_all(bytes), Place::KeepExisting)
}

enum Place {
    Replace,
    KeepExisting,
}

/// Through a synced temporary file next to `path`, renamed (or linked) into place: a crash leaves
/// the old file or the new one, never half of one.
fn place(path: &Path, content: impl FnOnce(&mut fs::File) -> io::Result<()>, how: Place) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let temporary = dir.join(format!(".{}.new-{}", name.to_string_lossy(), std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&temporary)?;
        // A stale temporary file from a crash keeps its old mode; make sure.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            give_to_owner(&file, if path.exists() { path } else { dir })?;
        }
        content(&mut file)?;
        file.sync_all()?;
        match how {
            Place::Replace => fs::rename(&temporary, path),
            Place::KeepExisting => match fs::hard_link(&temporary, path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            },
        }
    })();
    let _ = fs::remove_file(&temporary);
    written?;
    // Make the new directory entry durable too.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Root gives what it makes to the owner of `like`; anyone else can only make their own files.
#[cfg(unix)]
fn give_to_owner(file: &fs::File, like: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !running_as_root() {
        return Ok(());
    }
    let owner = fs::metadata(like)?;
    std::os::unix::fs::fchown(file, Some(owner.uid()), Some(owner.gid()))
}

/// Make `dir` and its missing parents, mode 0700, each given (as root) to its parent's owner.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        other => other?,
    }
    #[cfg(unix)]
    {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        give_to_owner(&fs::File::open(dir)?, parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn root_writes_for_the_owner_of_the_place_it_writes_to() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !running_as_root() {
            return; // Only root can give a file away; nothing to check otherwise.
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let owned = |path: &Path| {
            let meta = fs::metadata(path).expect("exists");
            (meta.uid(), meta.gid(), meta.mode() & 0o777)
        };
        // A data directory the package made for its service user (here: nobody).
        let data = dir.path().join("var-lib");
        fs::create_dir(&data).expect("mkdir");
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::chown(&data, Some(65534), Some(65534)).expect("chown to nobody");
        write_private(&data.join("list/trust.json"), b"{}").expect("write");
        assert_eq!(owned(&data.join("list")), (65534, 65534, 0o700));
        assert_eq!(owned(&data.join("list/trust.json")), (65534, 65534, 0o600));

        // A file replaced keeps its owner, whoever owns the directory.
        let config = dir.path().join("probe.toml");
        write_private(&config, b"old").expect("first");
        assert_eq!(owned(&config), (0, 0, 0o600), "root's own directory, root's file");
        std::os::unix::fs::chown(&config, Some(65534), Some(65534)).expect("chown to nobody");
        write_private(&config, b"new").expect("replace");
        assert_eq!(owned(&config), (65534, 65534, 0o600));
        assert_eq!(fs::read(&config).expect("read"), b"new");
    }
}
