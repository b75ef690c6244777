//! The three export formats, one row at a time: each turns a canonical NDJSON line (what
//! `GET /api/v1/measurements` returns) into the bytes of one row of its file. Pure: no files,
//! no store.
//!
//! - `ndjson`: the line itself. Its rows are the Merkle tree's leaves.
//! - `csv`: one row per measurement with the flat columns researchers filter and group by
//!   ([`csv_columns`], a header first); nested facts (observations, evidence) stay in the NDJSON.
//! - `ooni`: one OONI record per line ([`vantage_measurement::ooni::record`]).

use serde_json::Value;
use vantage_measurement::Measurement;

vantage_measurement::closed_set! {
    /// An export format.
    pub enum Format {
        /// Canonical NDJSON lines, as the measurements API returns them.
        Ndjson => "ndjson",
        /// Flat CSV, one row per measurement.
        Csv => "csv",
        /// OONI records, one per line.
        Ooni => "ooni",
    }
}

/// Where a CSV column's value comes from.
#[derive(Clone, Copy)]
enum Cell {
    /// A JSON pointer into the row (empty when absent or `null`).
    At(&'static str),
    /// The UTC day the row was received: the export's day.
    ReceivedDay,
}

/// The CSV columns in order, each with where its value comes from: one table, so a header and
/// its cells can't drift apart. Stable: columns are only ever added at the end.
const CSV: [(&str, Cell); 20] = [
    ("id", Cell::At("/id")),
    ("started_at", Cell::At("/started_at")),
    ("received_day", Cell::ReceivedDay),
    ("cc", Cell::At("/probe/cc")),
    ("asn", Cell::At("/probe/asn")),
    ("observed_cc", Cell::At("/collector_observed/cc")),
    ("observed_asn", Cell::At("/collector_observed/asn")),
    ("collector_key", Cell::At("/collector_key")),
    ("network_type", Cell::At("/probe/network_type")),
    ("network_epoch", Cell::At("/probe/network_epoch")),
    ("test", Cell::At("/test")),
    ("target", Cell::At("/target/name")),
    ("domain", Cell::At("/target/domain")),
    ("status", Cell::At("/verdict/status")),
    ("mechanism", Cell::At("/verdict/mechanism")),
    ("trials_blocked", Cell::At("/verdict/trials/blocked")),
    ("trials_total", Cell::At("/verdict/trials/total")),
    ("runtime_ms", Cell::At("/runtime_ms")),
    ("software_version", Cell::At("/software/version")),
    ("target_list_version", Cell::At("/target/list_version")),
];

/// The CSV header's column names, in order.
pub fn csv_columns() -> impl Iterator<Item = &'static str> {
    CSV.iter().map(|(name, _)| *name)
}

impl Format {
    /// The file name of a group's file in this format.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Ndjson => "measurements.jsonl.gz",
            Format::Csv => "measurements.csv.gz",
            Format::Ooni => "ooni.jsonl.gz",
        }
    }

    /// The format whose file is called `name`.
    pub fn of_file_name(name: &str) -> Option<Format> {
        Format::ALL.iter().copied().find(|f| f.file_name() == name)
    }

    /// What a file starts with before its rows.
    pub fn header(self) -> Vec<u8> {
        match self {
            Format::Csv => format!("{}\n", csv_columns().collect::<Vec<_>>().join(",")).into_bytes(),
            Format::Ndjson | Format::Ooni => Vec::new(),
        }
    }

    /// One row (with its newline) made from `line`, received on `day` (`YYYY-MM-DD`).
    pub fn row(self, line: &str, day: &str) -> Result<Vec<u8>, FormatError> {
        match self {
            Format::Ndjson => Ok(format!("{line}\n").into_bytes()),
            Format::Csv => csv_row(&parse(line)?, day),
            Format::Ooni => {
                let record = vantage_measurement::ooni::record(&measurement(parse(line)?)?)
                    .map_err(|e| FormatError::Ooni(e.to_string()))?;
                let mut bytes = serde_json::to_vec(&record).map_err(|e| FormatError::Ooni(e.to_string()))?;
                bytes.push(b'\n');
                Ok(bytes)
            }
        }
    }
}

/// Why a row could not be written (a stored row the collector itself can't read back).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The line is not the JSON object the store writes.
    #[error("a stored row is not a measurement: {0}")]
    Row(String),
    /// The OONI mapping refused it.
    #[error("OONI mapping: {0}")]
    Ooni(String),
}

/// The (country, test) a line is filed under.
pub fn group_of(line: &str) -> Result<(String, String), FormatError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        cc: String,
    }
    #[derive(serde::Deserialize)]
    struct Head {
        probe: Probe,
        test: String,
    }
    let head: Head = serde_json::from_str(line).map_err(|e| FormatError::Row(e.to_string()))?;
    Ok((head.probe.cc, head.test))
}

fn parse(line: &str) -> Result<Value, FormatError> {
    serde_json::from_str(line).map_err(|e| FormatError::Row(e.to_string()))
}

fn measurement(mut row: Value) -> Result<Measurement, FormatError> {
    if let Some(object) = row.as_object_mut() {
        for field in crate::store::ANNOTATIONS {
            object.remove(field);
        }
    }
    serde_json::from_value(row).map_err(|e| FormatError::Row(e.to_string()))
}

fn csv_row(row: &Value, day: &str) -> Result<Vec<u8>, FormatError> {
    if row.pointer("/id").is_none() {
        return Err(FormatError::Row("no id".into()));
    }
    let mut out = String::new();
    for (i, (_, cell)) in CSV.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match cell {
            Cell::ReceivedDay => out.push_str(day),
            Cell::At(pointer) => match row.pointer(pointer) {
                Some(Value::String(s)) => push_csv_field(&mut out, s),
                None | Some(Value::Null) => {}
                Some(other) => push_csv_field(&mut out, &other.to_string()),
            },
        }
    }
    out.push('\n');
    Ok(out.into_bytes())
}

/// RFC 4180: quoted when it holds a comma, quote or line break; quotes doubled.
pub(crate) fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{KEY_FIELD, OBSERVED_FIELD};

    #[test]
    fn the_csv_reads_the_annotations_the_store_writes() {
        let pointers: Vec<&str> =
            CSV.iter().filter_map(|(_, cell)| if let Cell::At(p) = cell { Some(*p) } else { None }).collect();
        for annotation in [format!("/{OBSERVED_FIELD}/cc"), format!("/{OBSERVED_FIELD}/asn"), format!("/{KEY_FIELD}")] {
            assert!(pointers.contains(&annotation.as_str()), "{annotation}");
        }
    }

    fn line() -> String {
        let m = vantage_measurement::example::tls_reset(chrono::DateTime::from_timestamp(1_764_547_200, 0).expect("time"));
        let line = m.to_json_line().expect("line");
        format!("{},\"{OBSERVED_FIELD}\":{{\"cc\":\"DE\",\"asn\":3320}}}}", line.strip_suffix('}').expect("object"))
    }

    #[test]
    fn a_row_in_each_format() {
        let line = line();
        assert_eq!(Format::Ndjson.row(&line, "2025-12-01").expect("ndjson"), format!("{line}\n").into_bytes());
        let csv = String::from_utf8(Format::Csv.row(&line, "2025-12-01").expect("csv")).expect("utf-8");
        let cells: Vec<&str> = csv.trim_end().split(',').collect();
        assert_eq!(cells.len(), CSV.len(), "{csv}");
        assert_eq!(
            (cells[1], cells[2], cells[5], cells[6], cells[10]),
            ("2025-12-01T00:00:00Z", "2025-12-01", "DE", "3320", "tls")
        );
        let ooni: Value = serde_json::from_slice(&Format::Ooni.row(&line, "2025-12-01").expect("ooni")).expect("json");
        assert_eq!(ooni["test_name"], "urlgetter", "a TLS handshake is OONI's urlgetter (docs/ooni.md)");
        assert!(ooni["input"].as_str().is_some_and(|input| input.starts_with("tlshandshake://")), "{}", ooni["input"]);
        assert!(ooni["probe_asn"].as_str().is_some_and(|a| a.starts_with("AS")));
        assert_eq!(group_of(&line).expect("group").1, "tls");
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        let mut out = String::new();
        push_csv_field(&mut out, "a,\"b\"");
        assert_eq!(out, "\"a,\"\"b\"\"\"");
        assert!(Format::Csv.header().starts_with(b"id,started_at,received_day,"));
    }

    #[test]
    fn file_names_name_their_format() {
        for format in Format::ALL {
            assert_eq!(Format::of_file_name(format.file_name()), Some(*format));
        }
    }
}
