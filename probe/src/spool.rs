//! The on-disk spool: measurements wait here until the collector has acknowledged them.
//!
//! Layout under the data directory:
//!
//! ```text
//! spool/<uuidv7>.ndjson.part   the running measurement run, one line per finished measurement
//! spool/<uuidv7>.ndjson        sealed runs waiting for upload (oldest first: v7 ids sort by time)
//! spool/<uuidv7>+<n>.ndjson    what is left of a run after its first n lines were answered
//! spool/rejected/<…>.ndjson    lines the collector refused, each with its reason: kept, not lost
//! spool/held/<id>.json         a blocked measurement waiting for its hop follow-up (minutes), as
//!                              it would be uploaded if the follow-up never ended
//! spool/.lock                  held by the running probe, so two probes never share a spool
//! ```
//!
//! Every line is flushed and synced as soon as its measurement finishes, so a crash or power
//! loss mid-run loses at most the measurement in flight. A `.part` file found at start belongs to
//! a crashed run (the lock proves no one else writes it) and is uploaded like a sealed one; a
//! torn last line is dropped, being by construction a measurement that never finished writing.
//! A held measurement is its own file until its final form is appended; held files found at start
//! belong to a crashed run too and are queued as they were held (`localisation: interrupted`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;
use vantage_measurement::Measurement;

/// Why the spool could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A filesystem operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// Another probe holds the spool.
    #[error("another vantage-probe is using {0}; wait for it or pick another --data-dir")]
    Busy(String),
    /// A measurement could not be encoded as JSON (rather than spooled as an empty line).
    #[error("a measurement could not be encoded for the spool: {0}")]
    Encode(serde_json::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.display().to_string(), source }
}

/// The spool directory, locked for this process.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    _lock: File,
}

impl Spool {
    /// Open (creating) the spool under `data_dir` and take its lock.
    pub fn open(data_dir: &Path) -> Result<Spool, SpoolError> {
        let dir = data_dir.join("spool");
        fs::create_dir_all(dir.join("rejected")).map_err(io_err(&dir))?;
        fs::create_dir_all(dir.join(HELD)).map_err(io_err(&dir))?;
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Busy(dir.display().to_string())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        // A crash inside `keep_unanswered` leaves its scratch copy; the file it was copying is
        // still there, so the copy is only clutter. Nobody else writes here while we hold the lock.
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))?.filter_map(Result::ok) {
            let path = entry.path();
            if path.to_str().is_some_and(|p| p.ends_with(".ndjson.tmp")) {
                remove(&path)?;
            }
        }
        recover_held(&dir)?;
        Ok(Spool { dir, _lock: lock })
    }

    /// Start a new run file.
    pub fn writer(&self) -> Result<SpoolWriter, SpoolError> {
        let path = self.dir.join(format!("{}.ndjson.part", Uuid::now_v7()));
        let file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io_err(&path))?;
        Ok(SpoolWriter { path, file, lines: 0 })
    }

    /// Files waiting for upload, oldest first, including `.part` files of crashed runs.
    pub fn pending(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map_err(io_err(&self.dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                name.ends_with(".ndjson") || name.ends_with(".ndjson.part")
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Drop the first `answered` lines of `file` (the collector answered for them), keeping the
    /// rest as `<run>+<n>.ndjson` in the same place in the queue. An upload that stopped midway
    /// (a `429`, the network) then resumes where it stopped instead of sending the answered part
    /// again, which would spend the probe's rate limit on duplicates: a file longer than the
    /// limit's burst would never get past it. The rest is written and synced before the old file
    /// goes, so a crash in between only sends some lines twice (harmless: ingest is idempotent).
    pub fn keep_unanswered(&self, file: &Path, answered: usize) -> Result<PathBuf, SpoolError> {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let run = name.trim_end_matches(".part").trim_end_matches(".ndjson");
        let (run, before) = match run.split_once('+') {
            Some((run, n)) => (run, n.parse::<usize>().unwrap_or(0)),
            None => (run, 0),
        };
        let rest = self.dir.join(format!("{run}+{}.ndjson", before + answered));
        let scratch = self.dir.join(format!("{run}+{}.ndjson.tmp", before + answered));
        let mut out = File::create(&scratch).map_err(io_err(&scratch))?;
        let mut skipped = 0;
        for batch in batches(file, 1000)? {
            let batch = batch?;
            let skip = (answered - skipped).min(batch.len());
            skipped += skip;
            for line in &batch[skip..] {
                writeln!(out, "{line}").map_err(io_err(&scratch))?;
            }
        }
        out.sync_all().map_err(io_err(&scratch))?;
        fs::rename(&scratch, &rest).map_err(io_err(&scratch))?;
        remove(file)?;
        Ok(rest)
    }

    /// Keep refused lines, each next to the collector's reason, under `rejected/`.
    pub fn quarantine(&self, from: &Path, refused: &[(String, String)]) -> Result<(), SpoolError> {
        if refused.is_empty() {
            return Ok(());
        }
        let name = from.file_name().and_then(|n| n.to_str()).unwrap_or("batch").trim_end_matches(".part").to_string();
        let path = self.dir.join("rejected").join(name);
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        for (line, reason) in refused {
            let entry = serde_json::json!({ "reason": reason, "measurement": line });
            writeln!(file, "{entry}").map_err(io_err(&path))?;
        }
        file.sync_all().map_err(io_err(&path))
    }
}

/// The directory of held measurements, under the spool.
const HELD: &str = "held";

/// Queue the held measurements of a crashed run: their follow-ups will never end, so they go as
/// they were held. Written and synced as one sealed run before the held files go, so a crash in
/// between queues them twice at worst (harmless: ingest is idempotent), never not at all. So is a
/// held file whose final form was spooled just before the crash could remove it.
fn recover_held(dir: &Path) -> Result<(), SpoolError> {
    let held_dir = dir.join(HELD);
    let mut lines = String::new();
    let mut files = Vec::new();
    for entry in fs::read_dir(&held_dir).map_err(io_err(&held_dir))?.filter_map(Result::ok) {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".json.tmp") {
            // Torn by a crash while it was being written: like a torn spool line, a measurement
            // that never finished being kept (the one in flight).
            remove(&path)?;
        } else if name.ends_with(".json") {
            let line = fs::read_to_string(&path).map_err(io_err(&path))?;
            if !line.trim().is_empty() {
                lines.push_str(line.trim_end());
                lines.push('\n');
            }
            files.push(path);
        }
    }
    if files.is_empty() {
        return Ok(());
    }
    if !lines.is_empty() {
        let run = dir.join(format!("{}.ndjson", Uuid::now_v7()));
        let scratch = run.with_extension("ndjson.tmp");
        let mut out = File::create(&scratch).map_err(io_err(&scratch))?;
        out.write_all(lines.as_bytes()).map_err(io_err(&scratch))?;
        out.sync_all().map_err(io_err(&scratch))?;
        fs::rename(&scratch, &run).map_err(io_err(&scratch))?;
    }
    files.iter().try_for_each(|f| remove(f))
}

/// Read the complete lines of a spool file (a torn last line is dropped).
pub fn read_lines(path: &Path) -> Result<Vec<String>, SpoolError> {
    batches(path, usize::MAX)?.try_fold(Vec::new(), |mut all, batch| {
        all.extend(batch?);
        Ok(all)
    })
}

/// How many complete lines a spool file holds, without holding them.
pub fn count_lines(path: &Path) -> Result<usize, SpoolError> {
    batches(path, 1)?.try_fold(0, |n, batch| batch.map(|b| n + b.len()))
}

/// The complete lines of a spool file, at most `size` at a time: a run of 10,000 measurements is
/// megabytes, and an upload needs one batch in memory, not the file.
pub fn batches(path: &Path, size: usize) -> Result<Batches, SpoolError> {
    let file = File::open(path).map_err(io_err(path))?;
    Ok(Batches { path: path.to_path_buf(), reader: io::BufReader::new(file), size: size.max(1), done: false })
}

/// See [`batches`].
#[derive(Debug)]
pub struct Batches {
    path: PathBuf,
    reader: io::BufReader<File>,
    size: usize,
    done: bool,
}

impl Iterator for Batches {
    type Item = Result<Vec<String>, SpoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut batch = Vec::new();
        let mut raw = Vec::new();
        while !self.done && batch.len() < self.size {
            raw.clear();
            match self.reader.read_until(b'\n', &mut raw) {
                Err(e) => {
                    self.done = true;
                    return Some(Err(io_err(&self.path)(e)));
                }
                // The end, or a torn last line: a measurement that never finished writing.
                Ok(_) if raw.last() != Some(&b'\n') => self.done = true,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&raw);
                    let line = line.trim_end_matches(['\n', '\r']);
                    if !line.trim().is_empty() {
                        batch.push(line.to_string());
                    }
                }
            }
        }
        (!batch.is_empty()).then_some(Ok(batch))
    }
}

/// Finish an encoded value as an NDJSON line (the wire format: compact JSON, then a newline); a
/// value that could not be encoded is an error, never an empty line.
fn ndjson_line(encoded: serde_json::Result<String>) -> Result<String, SpoolError> {
    let mut line = encoded.map_err(SpoolError::Encode)?;
    line.push('\n');
    Ok(line)
}

/// Remove an acknowledged file.
pub fn remove(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Appends one run's measurements, each synced to disk before the next starts.
#[derive(Debug)]
pub struct SpoolWriter {
    path: PathBuf,
    file: File,
    lines: usize,
}

impl SpoolWriter {
    /// Append one measurement and make it durable; a held copy of it (same id) goes.
    pub fn append(&mut self, m: &Measurement) -> Result<(), SpoolError> {
        let line = ndjson_line(m.to_json_line())?;
        self.file.write_all(line.as_bytes()).map_err(io_err(&self.path))?;
        self.file.sync_data().map_err(io_err(&self.path))?;
        self.lines += 1;
        remove(&self.held_path(m))
    }

    /// Keep `m`, a measurement held back for its hop follow-up, safe until its final form is
    /// [appended](Self::append): written and synced whole (a scratch file renamed), so that a
    /// crash in the meantime queues it as held at the next start.
    pub fn hold(&mut self, m: &Measurement) -> Result<(), SpoolError> {
        let held = self.held_path(m);
        let scratch = held.with_extension("json.tmp");
        let line = ndjson_line(m.to_json_line())?;
        let mut file = File::create(&scratch).map_err(io_err(&scratch))?;
        file.write_all(line.as_bytes()).map_err(io_err(&scratch))?;
        file.sync_all().map_err(io_err(&scratch))?;
        fs::rename(&scratch, &held).map_err(io_err(&scratch))
    }

    fn held_path(&self, m: &Measurement) -> PathBuf {
        let spool = self.path.parent().unwrap_or(Path::new("."));
        spool.join(HELD).join(format!("{}.json", m.id))
    }

    /// Close the run: rename `.part` to `.ndjson`, or remove it if nothing was written.
    pub fn seal(self) -> Result<(), SpoolError> {
        if self.lines == 0 {
            return remove(&self.path);
        }
        let sealed = self.path.with_extension("");
        fs::rename(&self.path, &sealed).map_err(io_err(&self.path))
    }
}

/// A spool in a fresh temporary directory, for tests (the directory goes when dropped).
#[cfg(test)]
pub(crate) fn scratch() -> (tempfile::TempDir, Spool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path()).expect("open");
    (dir, spool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use vantage_measurement::example;

    #[test]
    fn a_run_is_sealed_and_listed() {
        let (_dir, spool) = scratch();
        let mut w = spool.writer().expect("writer");
        w.append(&example::tls_reset(Utc::now())).expect("append");
        w.append(&example::tls_reset(Utc::now())).expect("append");
        w.seal().expect("seal");
        let pending = spool.pending().expect("pending");
        assert_eq!(pending.len(), 1);
        assert!(pending[0].to_string_lossy().ends_with(".ndjson"));
        assert_eq!(read_lines(&pending[0]).expect("read").len(), 2);
    }

    #[test]
    fn a_crashed_run_is_recovered_without_its_torn_line() {
        let (_dir, spool) = scratch();
        let mut w = spool.writer().expect("writer");
        w.append(&example::tls_reset(Utc::now())).expect("append");
        let path = w.path.clone();
        drop(w); // crash: never sealed
        fs::OpenOptions::new().append(true).open(&path).expect("open").write_all(b"{\"id\":\"torn").expect("write");
        let pending = spool.pending().expect("pending");
        assert_eq!(pending, vec![path.clone()]);
        assert_eq!(read_lines(&path).expect("read").len(), 1);
    }

    #[test]
    fn a_held_measurement_survives_a_crash_and_goes_once_it_is_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (held, finished) = (example::tls_reset(Utc::now()), example::tls_reset(Utc::now()));
        {
            let spool = Spool::open(dir.path()).expect("open");
            let mut w = spool.writer().expect("writer");
            w.hold(&held).expect("hold");
            w.hold(&finished).expect("hold");
            w.append(&finished).expect("append"); // its follow-up ended: the held copy goes
            drop(w); // crash: `held`'s follow-up never ends, the run is never sealed
        }
        let held_dir = dir.path().join("spool").join(HELD);
        fs::write(held_dir.join("torn.json.tmp"), "{\"id\":").expect("a hold torn by the crash");
        let spool = Spool::open(dir.path()).expect("reopen");
        let lines: Vec<String> = spool.pending().expect("pending").iter().flat_map(|p| read_lines(p).expect("read")).collect();
        let ids: Vec<String> =
            lines.iter().map(|l| serde_json::from_str::<Measurement>(l).expect("a measurement").id.to_string()).collect();
        assert_eq!(ids.len(), 2, "{lines:?}");
        assert!(ids.contains(&held.id.to_string()) && ids.contains(&finished.id.to_string()), "{ids:?}");
        assert_eq!(fs::read_dir(&held_dir).expect("held dir").count(), 0, "recovered, and the torn scratch file gone");
        drop(spool);
        // Opening again queues nothing more.
        let spool = Spool::open(dir.path()).expect("reopen");
        assert_eq!(spool.pending().expect("pending").iter().map(|p| read_lines(p).expect("read").len()).sum::<usize>(), 2);
    }

    #[test]
    fn a_long_file_is_read_a_batch_at_a_time_and_its_torn_line_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.ndjson");
        let lines: Vec<String> = (0..7).map(|i| format!("{{\"n\":{i}}}")).collect();
        fs::write(&path, format!("{}\n\n{{\"torn", lines.join("\n"))).expect("write");
        let batches: Vec<Vec<String>> = batches(&path, 3).expect("open").collect::<Result<_, _>>().expect("read");
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!(batches.concat(), lines, "every complete line once, in order; the blank and the torn one dropped");
        assert_eq!(count_lines(&path).expect("count"), 7);
    }

    #[test]
    fn the_unanswered_rest_of_a_run_keeps_its_place_in_the_queue() {
        let (dir, spool) = scratch();
        let lines: Vec<String> = (0..1203).map(|i| format!("{{\"n\":{i}}}")).collect();
        let run = dir.path().join("spool/0190a000-0000-7000-8000-000000000001.ndjson");
        fs::write(&run, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("write");
        let later = dir.path().join("spool/0190a000-0000-7000-8000-000000000002.ndjson");
        fs::write(&later, "{}\n").expect("write");

        let rest = spool.keep_unanswered(&run, 1000).expect("kept");
        assert_eq!(rest.file_name().and_then(|n| n.to_str()), Some("0190a000-0000-7000-8000-000000000001+1000.ndjson"));
        assert_eq!(read_lines(&rest).expect("read"), lines[1000..]);
        assert_eq!(spool.pending().expect("pending"), [rest.clone(), later.clone()], "still before the later run");
        // Stopped again, 3 lines further: the offset counts from the start of the run.
        let rest = spool.keep_unanswered(&rest, 3).expect("kept");
        assert_eq!(rest.file_name().and_then(|n| n.to_str()), Some("0190a000-0000-7000-8000-000000000001+1003.ndjson"));
        assert_eq!(read_lines(&rest).expect("read"), lines[1003..]);
        assert_eq!(spool.pending().expect("pending"), [rest, later]);
    }

    #[test]
    fn a_scratch_copy_left_by_a_crash_is_cleared_and_its_run_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool_dir = dir.path().join("spool");
        fs::create_dir_all(&spool_dir).expect("mkdir");
        let run = spool_dir.join("0190a000-0000-7000-8000-000000000001.ndjson");
        fs::write(&run, "{}\n{}\n").expect("write");
        let scratch = spool_dir.join("0190a000-0000-7000-8000-000000000001+1.ndjson.tmp");
        fs::write(&scratch, "{}\n").expect("write");
        let spool = Spool::open(dir.path()).expect("open");
        assert!(!scratch.exists(), "the scratch copy is gone");
        assert_eq!(spool.pending().expect("pending"), [run], "the run it was copying is still queued, whole");
    }

    #[test]
    fn two_probes_cannot_share_a_spool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Spool::open(dir.path()).expect("open");
        assert!(matches!(Spool::open(dir.path()), Err(SpoolError::Busy(_))));
    }

    #[test]
    fn refused_lines_are_kept_with_their_reason() {
        let (dir, spool) = scratch();
        spool.quarantine(Path::new("x.ndjson"), &[("{}".into(), "malformed".into())]).expect("quarantine");
        let kept = fs::read_to_string(dir.path().join("spool/rejected/x.ndjson")).expect("read");
        assert!(kept.contains("malformed"));
    }

    #[test]
    fn a_line_is_the_wire_format_and_an_unencodable_value_is_an_error() {
        let m = example::tls_reset(Utc::now());
        assert_eq!(
            ndjson_line(serde_json::to_string(&m)).expect("encode"),
            format!("{}\n", m.to_json_line().expect("serialise"))
        );
        // JSON object keys must be strings: this cannot be encoded, and must not become "".
        let bad = std::collections::HashMap::from([((1u8, 2u8), 3u8)]);
        assert!(matches!(ndjson_line(serde_json::to_string(&bad)), Err(SpoolError::Encode(_))));
    }

    #[test]
    fn an_empty_run_leaves_nothing_behind() {
        let (_dir, spool) = scratch();
        spool.writer().expect("writer").seal().expect("seal");
        assert!(spool.pending().expect("pending").is_empty());
    }
}
