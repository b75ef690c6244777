//! One day's export, fed a line at a time: the files of each (country, test) group, their hashes
//! and Merkle roots, and the day's unsigned manifest. Pure: where the bytes go is the caller's
//! `open` (files under a directory, or nowhere when only the manifest is wanted).
//!
//! Rows must come grouped and ordered by (country, test, id), as [`Store::day_rows`] returns
//! them, so exactly one group's files are open at once and memory stays constant whatever the
//! day's size: a row is written and hashed, then dropped. A row out of that order is an error,
//! not a second file.
//!
//! Every format's file is always *hashed* (the manifest lists all three); only those in `written`
//! are given to `open`.
//!
//! [`Store::day_rows`]: crate::store::Store::day_rows

use std::io::{self, Write};

use chrono::NaiveDate;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use super::format::{Format, FormatError, group_of};
use super::manifest::{FORMAT_VERSION, FileEntry, Manifest};
use super::merkle::{Frontier, hex};

/// The gzip level of every export file: fixed, so the same rows give the same bytes.
pub const GZIP_LEVEL: u32 = 6;

/// A deterministic gzip stream into `w`: no name, no time (mtime 0), OS "unknown", fixed level.
pub fn gzip<W: Write>(w: W) -> GzEncoder<W> {
    GzBuilder::new().mtime(0).operating_system(255).write(w, Compression::new(GZIP_LEVEL))
}

/// A writer that hashes what passes through it.
pub struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Hashing<W> {
    /// Hash everything written to `inner`.
    pub fn new(inner: W) -> Self {
        Hashing { inner, hash: Sha256::new() }
    }

    /// The SHA-256 of what was written, hex, and the writer.
    pub fn finish(self) -> (String, W) {
        (hex(&self.hash.finalize()), self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One row of `format` made from `line`, or `None` for a row the OONI mapping refuses: it is left
/// out of the OONI file only (logged by id), so one unmappable measurement never stops a day's
/// publication; the manifest counts the rows each file holds.
pub fn row_or_skip(format: Format, line: &str, day: &str) -> Result<Option<Vec<u8>>, FormatError> {
    match format.row(line, day) {
        Ok(row) => Ok(Some(row)),
        Err(FormatError::Ooni(reason)) => {
            let id = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["id"].as_str().map(String::from));
            tracing::warn!(id = id.as_deref().unwrap_or("?"), "left out of the OONI file: {reason}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Why a day could not be exported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file, relative to the day.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A stored row could not be turned into a row of a format.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The rows did not come in (country, test, id) groups: a store bug.
    #[error("rows out of order: {0} after {1}")]
    Order(String, String),
    /// The store failed mid-day.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The log's latest manifest is not signed by this collector's publication key: another
    /// replica (or an earlier installation) signs with another one.
    #[error(
        "the publication log's manifest of {day} does not verify with this collector's publication key ({reason}); \
         every replica must use the same --publication-key, and a chain is never continued with another"
    )]
    ForeignKey {
        /// The latest published day.
        day: chrono::NaiveDate,
        /// Why it did not verify.
        reason: String,
    },
}

/// Where a written file goes.
pub type Output = Box<dyn Write + Send>;

struct File {
    format: Format,
    path: String,
    rows: u64,
    out: GzEncoder<Hashing<Output>>,
}

struct Group {
    cc: String,
    test: String,
    tree: Frontier,
    files: Vec<File>,
}

/// A day being exported.
pub struct DayExport<O> {
    day: NaiveDate,
    day_text: String,
    written: Vec<Format>,
    open: O,
    group: Option<Group>,
    files: Vec<FileEntry>,
    tree: Frontier,
}

impl<O: FnMut(&str) -> io::Result<Output>> DayExport<O> {
    /// Export `day`, writing the files of `written` through `open(path relative to the day)`.
    pub fn new(day: NaiveDate, written: &[Format], open: O) -> Self {
        DayExport {
            day,
            day_text: day.format("%Y-%m-%d").to_string(),
            written: written.to_vec(),
            open,
            group: None,
            files: Vec::new(),
            tree: Frontier::default(),
        }
    }

    /// The next row (a canonical line, no newline).
    pub fn push(&mut self, line: &str) -> Result<(), ExportError> {
        let (cc, test) = group_of(line)?;
        let same = self.group.as_ref().is_some_and(|g| g.cc == cc && g.test == test);
        if !same {
            if let Some(previous) = &self.group
                && (previous.cc.as_str(), previous.test.as_str()) > (cc.as_str(), test.as_str())
            {
                return Err(ExportError::Order(format!("{cc}/{test}"), format!("{}/{}", previous.cc, previous.test)));
            }
            self.close_group()?;
            self.group = Some(self.open_group(cc, test)?);
        }
        let Some(group) = self.group.as_mut() else { return Ok(()) };
        group.tree.push_line(line.as_bytes());
        self.tree.push_line(line.as_bytes());
        for file in &mut group.files {
            let Some(row) = row_or_skip(file.format, line, &self.day_text)? else { continue };
            file.out.write_all(&row).map_err(|source| ExportError::Io { path: file.path.clone(), source })?;
            file.rows += 1;
        }
        Ok(())
    }

    /// Close the last group; the day's manifest, unsigned, chained to `previous`.
    pub fn finish(mut self, previous: Option<String>) -> Result<Manifest, ExportError> {
        self.close_group()?;
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest {
            format_version: FORMAT_VERSION,
            day: self.day,
            publication_key: String::new(),
            files: self.files,
            rows: self.tree.leaves(),
            merkle_root: hex(&self.tree.root()),
            previous,
            signature: None,
        })
    }

    fn open_group(&mut self, cc: String, test: String) -> Result<Group, ExportError> {
        let mut files = Vec::with_capacity(Format::ALL.len());
        for format in Format::ALL.iter().copied() {
            let path = format!("{cc}/{test}/{}", format.file_name());
            let output: Output = if self.written.contains(&format) {
                (self.open)(&path).map_err(|source| ExportError::Io { path: path.clone(), source })?
            } else {
                Box::new(io::sink())
            };
            let mut out = gzip(Hashing::new(output));
            out.write_all(&format.header()).map_err(|source| ExportError::Io { path: path.clone(), source })?;
            files.push(File { format, path, rows: 0, out });
        }
        Ok(Group { cc, test, tree: Frontier::default(), files })
    }

    fn close_group(&mut self) -> Result<(), ExportError> {
        let Some(group) = self.group.take() else { return Ok(()) };
        let root = hex(&group.tree.root());
        for file in group.files {
            let io_error = |source| ExportError::Io { path: file.path.clone(), source };
            let (sha256, mut output) = file.out.finish().map_err(io_error)?.finish();
            output.flush().map_err(io_error)?;
            self.files.push(FileEntry { path: file.path, rows: file.rows, sha256, merkle_root: root.clone() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    /// Files kept in memory, by path.
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<BTreeMap<String, Vec<u8>>>>);

    struct MemoryFile(Memory, String);
    impl Write for MemoryFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.0.lock().expect("lock").entry(self.1.clone()).or_default().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines() -> Vec<String> {
        let t = chrono::DateTime::from_timestamp(1_764_547_200, 0).expect("time");
        let mut rows: Vec<vantage_measurement::Measurement> =
            (0..5).map(|i| vantage_measurement::example::tls_reset(t + chrono::Duration::seconds(i))).collect();
        rows[3].probe.cc = "AT".into();
        rows.sort_by(|a, b| (&a.probe.cc, a.test.as_str(), a.id).cmp(&(&b.probe.cc, b.test.as_str(), b.id)));
        rows.iter().map(|m| m.to_json_line().expect("line")).collect()
    }

    fn export(lines: &[String], written: &[Format]) -> (Manifest, BTreeMap<String, Vec<u8>>) {
        let memory = Memory::default();
        let open_memory = memory.clone();
        let mut day = DayExport::new(NaiveDate::from_ymd_opt(2025, 12, 1).expect("day"), written, move |path: &str| {
            Ok(Box::new(MemoryFile(open_memory.clone(), path.to_string())) as Output)
        });
        for line in lines {
            day.push(line).expect("row");
        }
        let manifest = day.finish(None).expect("finish");
        let files = memory.0.lock().expect("lock").clone();
        (manifest, files)
    }

    #[test]
    fn groups_become_files_whose_hashes_are_in_the_manifest_and_repeat_exactly() {
        let lines = lines();
        let (manifest, files) = export(&lines, Format::ALL);
        assert_eq!(manifest.rows, 5);
        assert_eq!(manifest.files.len(), 6, "two groups, three formats");
        assert_eq!(manifest.files.iter().map(|f| f.rows).sum::<u64>(), 15);
        for entry in &manifest.files {
            assert_eq!(hex(&Sha256::digest(&files[&entry.path])), entry.sha256, "{}", entry.path);
        }
        assert_eq!(manifest.file("AT/tls/measurements.jsonl.gz").map(|f| f.rows), Some(1));
        // Deterministic: the same rows, the same bytes; writing only one format hashes all three.
        let (again, only_csv) = export(&lines, &[Format::Csv]);
        assert_eq!(again, manifest);
        let written: Vec<&str> = only_csv.keys().map(String::as_str).collect();
        assert_eq!(written, ["AT/tls/measurements.csv.gz", "ZZ/tls/measurements.csv.gz"]);
        assert_eq!(only_csv["AT/tls/measurements.csv.gz"], files["AT/tls/measurements.csv.gz"]);
        // The day's root is the tree over every row in order.
        let mut tree = Frontier::default();
        lines.iter().for_each(|l| tree.push_line(l.as_bytes()));
        assert_eq!(manifest.merkle_root, hex(&tree.root()));
    }

    #[test]
    fn rows_out_of_group_order_are_refused() {
        let mut lines = lines();
        lines.reverse();
        let mut day =
            DayExport::new(NaiveDate::from_ymd_opt(2025, 12, 1).expect("day"), &[], |_: &str| Ok(Box::new(io::sink()) as Output));
        let result = lines.iter().try_for_each(|l| day.push(l));
        assert!(matches!(result, Err(ExportError::Order(..))), "{result:?}");
    }
}
