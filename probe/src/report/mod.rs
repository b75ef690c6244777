//! What the volunteer sees: a summary table at the end of a run, or NDJSON for machines.
//! Presentation only; nothing here measures or decides.

pub mod table;

use std::io::{self, Write};

use vantage_measurement::Measurement;

/// Write one measurement as an NDJSON line; a measurement that can't be encoded is an error, not
/// an empty line.
pub fn write_json_line(out: &mut impl Write, m: &Measurement) -> io::Result<()> {
    serde_json::to_writer(&mut *out, m)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use vantage_measurement::example;

    #[test]
    fn a_json_line_is_the_measurement_and_a_newline() {
        let m = example::tls_reset(Utc::now());
        let mut out = Vec::new();
        write_json_line(&mut out, &m).expect("write");
        assert_eq!(String::from_utf8(out).expect("utf-8"), format!("{}\n", m.to_json_line()));
    }
}
