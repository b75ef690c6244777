//! Offline verification: is this file exactly what the collector published for its day?
//!
//! Given the manifest, the collector's public key and the files, [`manifest`] checks the
//! signature (the manifest is the collector's, unchanged) and [`file`] checks one file against
//! its entry: the SHA-256 of its bytes, and for an NDJSON file also its rows: the count and the
//! Merkle root rebuilt from its lines (so the manifest's roots are proven to be of these rows,
//! and a researcher who recompressed a file can still check its content). A CSV or OONI file is
//! checked by its hash; its content is derived from the NDJSON file of the same group, whose
//! rows the root covers.

use std::io::{BufRead, BufReader, Read};

use ed25519_dalek::VerifyingKey;
use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use super::format::Format;
use super::manifest::{Manifest, ManifestError};
use super::merkle::{Frontier, hex};
use vantage_measurement::validate::MAX_LINE_BYTES;

/// What was checked of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    /// The file's path in the manifest.
    pub path: String,
    /// Its rows.
    pub rows: u64,
    /// Whether its rows were rebuilt into the Merkle root (NDJSON files).
    pub merkle_checked: bool,
}

/// Why a file or manifest is not what the collector published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The manifest itself fails.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The manifest lists no such file.
    #[error("{path}: not in the manifest of {day}")]
    NotListed {
        /// The file.
        path: String,
        /// The manifest's day.
        day: String,
    },
    /// The bytes differ from what was published.
    #[error("{path}: the file was changed: its SHA-256 is {found}, the manifest says {expected}{rows}")]
    Hash {
        /// The file.
        path: String,
        /// The manifest's hash.
        expected: String,
        /// The file's hash.
        found: String,
        /// What the rows say, when they were checked.
        rows: String,
    },
    /// The file could not be read or decompressed.
    #[error("{path}: unreadable: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Check the manifest file's bytes against `key`.
pub fn manifest(bytes: &[u8], key: &VerifyingKey) -> Result<Manifest, VerifyError> {
    Ok(Manifest::verified(bytes, key)?)
}

/// Check one file (`path` relative to its day, `bytes` its gzip content) against `manifest`.
pub fn file(manifest: &Manifest, path: &str, bytes: impl Read) -> Result<FileReport, VerifyError> {
    let entry =
        manifest.file(path).ok_or_else(|| VerifyError::NotListed { path: path.to_string(), day: manifest.day.to_string() })?;
    let unreadable = |reason: String| VerifyError::Unreadable { path: path.to_string(), reason };
    let is_ndjson = path.rsplit('/').next().and_then(Format::of_file_name) == Some(Format::Ndjson);
    let mut hashing = HashingReader { inner: bytes, hash: Sha256::new() };
    let mut rows_note = String::new();
    let mut rows = entry.rows;
    if is_ndjson {
        let mut tree = Frontier::default();
        let mut reader = BufReader::new(GzDecoder::new(&mut hashing));
        let mut bad_row = None;
        let mut line = Vec::new();
        for n in 0.. {
            // A row is at most what ingest accepts: a hostile download can't make one huge line.
            line.clear();
            match (&mut reader).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    rows_note = format!("; it does not decompress after row {n}: {e}");
                    break;
                }
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            } else if line.len() > MAX_LINE_BYTES {
                rows_note = format!("; row {} is longer than any row the collector stores (changed)", n + 1);
                break;
            }
            if bad_row.is_none() && serde_json::from_slice::<serde_json::Value>(&line).is_err() {
                bad_row = Some(n + 1);
            }
            tree.push_line(&line);
        }
        rows = tree.leaves();
        if rows_note.is_empty() {
            rows_note = match (rows == entry.rows, hex(&tree.root()) == entry.merkle_root, bad_row) {
                (_, _, Some(row)) => format!("; row {row} is not JSON (changed)"),
                (true, true, None) => "; its rows match the Merkle root (recompressed?)".into(),
                (false, _, None) => format!("; it has {rows} rows, the manifest says {}", entry.rows),
                (true, false, None) => "; its rows do not match the Merkle root (a row was changed)".into(),
            };
        }
        // Whatever the gzip reader left unread still counts for the hash.
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| unreadable(e.to_string()))?;
    } else {
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| unreadable(e.to_string()))?;
    }
    let found = hex(&hashing.hash.finalize());
    if found != entry.sha256 {
        return Err(VerifyError::Hash { path: path.to_string(), expected: entry.sha256.clone(), found, rows: rows_note });
    }
    Ok(FileReport { path: path.to_string(), rows, merkle_checked: is_ndjson })
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::day::{DayExport, Output};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

    struct Collect(Files, String, Vec<u8>);
    impl std::io::Write for Collect {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.2.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.lock().expect("lock").insert(self.1.clone(), self.2.clone());
            Ok(())
        }
    }

    fn exported() -> (Manifest, BTreeMap<String, Vec<u8>>, ed25519_dalek::SigningKey) {
        let t = chrono::DateTime::from_timestamp(1_764_547_200, 0).expect("time");
        let lines: Vec<String> = (0..4)
            .map(|i| vantage_measurement::example::tls_reset(t + chrono::Duration::seconds(i)).to_json_line().expect("line"))
            .collect();
        let mut sorted = lines.clone();
        sorted.sort_by_key(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["id"].as_str().map(String::from));
        let files: Files = Arc::default();
        let sink = Arc::clone(&files);
        let mut day = DayExport::new(t.date_naive(), Format::ALL, move |path: &str| {
            Ok(Box::new(Collect(Arc::clone(&sink), path.to_string(), Vec::new())) as Output)
        });
        sorted.iter().for_each(|l| day.push(l).expect("row"));
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let manifest = day.finish(None).expect("finish").sign(&key);
        let files = files.lock().expect("lock").clone();
        (manifest, files, key)
    }

    #[test]
    fn untouched_files_verify_and_a_flipped_byte_is_caught_naming_the_file() {
        let (manifest, files, key) = exported();
        let manifest = super::manifest(&manifest.to_file_bytes(), &key.verifying_key()).expect("manifest");
        for (path, bytes) in &files {
            let report = file(&manifest, path, bytes.as_slice()).expect("verifies");
            assert_eq!(report.rows, 4, "{path}");
        }
        for (path, bytes) in &files {
            for at in [bytes.len() / 2, bytes.len() - 5] {
                let mut changed = bytes.clone();
                changed[at] ^= 0x01;
                let err = file(&manifest, path, changed.as_slice()).expect_err("changed");
                assert!(err.to_string().starts_with(&format!("{path}: ")), "{err}");
            }
        }
        assert!(matches!(file(&manifest, "XX/tls/ooni.jsonl.gz", &b""[..]), Err(VerifyError::NotListed { .. })));
    }

    #[test]
    fn a_recompressed_ndjson_file_is_told_apart_from_a_changed_one() {
        let (manifest, files, _) = exported();
        let path = "ZZ/tls/measurements.jsonl.gz";
        let mut plain = String::new();
        GzDecoder::new(files[path].as_slice()).read_to_string(&mut plain).expect("gunzip");
        let recompress = |text: &str| {
            let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            std::io::Write::write_all(&mut out, text.as_bytes()).expect("gzip");
            out.finish().expect("finish")
        };
        let err = file(&manifest, path, recompress(&plain).as_slice()).expect_err("other bytes").to_string();
        assert!(err.contains("rows match the Merkle root"), "{err}");
        let edited = plain.replacen("\"ZZ\"", "\"ZY\"", 1);
        let err = file(&manifest, path, recompress(&edited).as_slice()).expect_err("other row").to_string();
        assert!(err.contains("do not match the Merkle root"), "{err}");
    }
}
