//! What the volunteer sees: a summary table at the end of a run, or NDJSON for machines.
//! Presentation only; nothing here measures or decides.

pub mod table;

use std::io::{self, Write};

use vantage_measurement::Measurement;

/// Write one measurement as an NDJSON line.
pub fn write_json_line(out: &mut impl Write, m: &Measurement) -> io::Result<()> {
    writeln!(out, "{}", m.to_json_line())
}
