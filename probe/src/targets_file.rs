//! Reading a long targets file in slices, so its size does not set the probe's peak memory.
//!
//! The TOML parser holds a whole document as a tree of spanned values, about 3 KB per target:
//! 30 MB for a file of 10,000 targets, for a list that then fits in a few. So the file is read
//! [`SLICE`] `[[target]]` tables at a time and each slice is parsed with [`targets::parse`], which
//! checks it by the file's rules; only one slice's text is in memory at once. A file that fails
//! (a slice refused, a name that repeats across slices, unreadable text) is parsed whole, once, by
//! [`targets::load`], so that the error is the one it gives, with the file's real line numbers:
//! the rules live there alone.

use std::collections::HashSet;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::path::Path;

use vantage_engine::targets::{self, TargetSpec, TargetsError};

/// `[[target]]` tables per parsed slice: small enough that parsing one costs well under a
/// megabyte, large enough that slicing costs nothing measurable.
pub const SLICE: usize = 256;

/// Read and check a targets file: the same targets, or the same error, as [`targets::load`], with
/// memory that does not grow with the parser's tree of the whole file.
pub fn load(path: &Path) -> Result<Vec<TargetSpec>, TargetsError> {
    let sliced = || -> Option<Vec<TargetSpec>> {
        // Counted first, so the list is allocated once at its size (a growing Vec holds its old
        // and new buffers at once at the last doubling).
        let tables = BufReader::new(File::open(path).ok()?).lines().map_while(Result::ok).filter(|l| is_table(l)).count();
        parse_slices(BufReader::new(File::open(path).ok()?), tables, &path.display().to_string())
    };
    match sliced() {
        Some(all) => Ok(all),
        None => targets::load(path),
    }
}

/// The targets of `reader`, parsed [`SLICE`] tables at a time; `None` if anything is wrong.
fn parse_slices(mut reader: impl BufRead, tables: usize, origin: &str) -> Option<Vec<TargetSpec>> {
    let mut all = Vec::with_capacity(tables);
    // Hashes, not copies of the names: a collision only costs the whole-file parse, which decides.
    let mut names = HashSet::with_capacity(tables);
    let mut take = |slice: &str| -> Option<()> {
        for target in targets::parse(slice, origin).ok()? {
            names.insert(name_hash(&target.name)).then_some(())?;
            all.push(target);
        }
        Some(())
    };
    let (mut slice, mut line, mut seen) = (String::new(), String::new(), 0);
    while reader.read_line(&mut line).ok()? > 0 {
        if is_table(&line) {
            if seen > 0 && seen % SLICE == 0 {
                take(&slice)?;
                slice.clear();
            }
            seen += 1;
        }
        slice.push_str(&line);
        line.clear();
    }
    take(&slice)?;
    Some(all)
}

/// A `[[target]]` line starts a table; its sub-tables (`[target.openvpn]`) stay in its slice.
fn is_table(line: &str) -> bool {
    line.trim() == "[[target]]"
}

fn name_hash(name: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(i: usize) -> String {
        format!("[[target]]\nname = \"t{i}\"\ndomain = \"t{i}.example\"\ntests = [\"tls\"]\n\n")
    }

    fn file(n: usize) -> String {
        format!("# a list\n\n{}", (0..n).map(target).collect::<String>())
    }

    /// [`load`] and [`targets::load`] of the same text.
    fn both(text: &str) -> (Result<Vec<TargetSpec>, String>, Result<Vec<TargetSpec>, String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("list.toml");
        std::fs::write(&path, text).expect("write");
        (load(&path).map_err(|e| e.to_string()), targets::load(&path).map_err(|e| e.to_string()))
    }

    #[test]
    fn a_sliced_file_reads_as_the_whole_file_does() {
        let text = file(2 * SLICE + 5);
        let (sliced, whole) = both(&text);
        assert_eq!(sliced.as_ref().map(Vec::len), Ok(2 * SLICE + 5));
        assert_eq!(sliced, whole);
    }

    #[test]
    fn slices_keep_every_table_with_its_lines() {
        // Parsed in slices of SLICE tables, the targets come back whole and in file order.
        let text = file(SLICE + 1);
        let all = parse_slices(text.as_bytes(), SLICE + 1, "list.toml").expect("valid");
        let names: Vec<String> = all.iter().map(|t| t.name.clone()).collect();
        assert_eq!(names, (0..=SLICE).map(|i| format!("t{i}")).collect::<Vec<_>>());
        assert!(all.iter().all(|t| t.domain == format!("{}.example", t.name)));
    }

    #[test]
    fn errors_are_the_whole_files_with_its_line_numbers() {
        // A bad value far down the file: the message names the line in the file, not in a slice.
        let mut text = file(SLICE + 3);
        text.push_str("[[target]]\nname = \"late\"\ndomain = \"late.example\"\nport = \"https\"\n");
        let (sliced, whole) = both(&text);
        let error = sliced.clone().expect_err("invalid");
        assert_eq!(sliced, whole);
        let line = text.lines().count();
        assert!(error.contains(&format!("line {line}")), "{error}");
    }

    #[test]
    fn a_name_repeated_in_another_slice_is_refused_as_in_the_whole_file() {
        let mut text = file(SLICE + 1);
        text.push_str(&target(0));
        let (sliced, whole) = both(&text);
        let error = sliced.clone().expect_err("duplicate");
        assert_eq!(sliced, whole);
        assert!(error.contains("target name `t0` appears twice"), "{error}");
    }

    #[test]
    fn a_missing_file_is_the_same_read_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.toml");
        assert_eq!(load(&path).expect_err("absent").to_string(), targets::load(&path).expect_err("absent").to_string());
    }
}
