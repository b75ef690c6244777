//! What the volunteer sees: a progress bar while measuring, then a summary table (or NDJSON for
//! machines) and a line on the delivery.
//! Presentation only; nothing here measures or decides.

pub mod progress;
pub mod table;

use std::io::{self, Write};

use vantage_measurement::Measurement;

use crate::upload::FlushReport;

/// Write one measurement as an NDJSON line; a measurement that can't be encoded is an error, not
/// an empty line.
pub fn write_json_line(out: &mut impl Write, m: &Measurement) -> io::Result<()> {
    serde_json::to_writer(&mut *out, m)?;
    out.write_all(b"\n")
}

/// What a delivery achieved, in one line:
/// `collector: 4 stored, 0 already there, 0 refused; 2 waiting in the spool for the next run (…)`.
pub fn delivery_line(d: &FlushReport) -> String {
    let mut line = format!("collector: {} stored, {} already there, {} refused", d.accepted, d.duplicates, d.rejected);
    if d.rejected > 0 {
        line.push_str(" (kept with reasons in the spool's rejected/ folder)");
    }
    if let Some(e) = &d.error {
        line.push_str(&format!("; {} waiting in the spool for the next run ({e})", d.remaining));
    }
    line
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
        assert_eq!(String::from_utf8(out).expect("utf-8"), format!("{}\n", m.to_json_line().expect("serialise")));
    }

    #[test]
    fn the_delivery_line_says_what_was_kept_and_why_some_waits() {
        let done = FlushReport { accepted: 4, duplicates: 1, ..FlushReport::default() };
        assert_eq!(delivery_line(&done), "collector: 4 stored, 1 already there, 0 refused");
        let stopped = FlushReport {
            rejected: 3,
            remaining: 2,
            error: Some(crate::upload::UploadError::Unreachable("connection refused".into())),
            ..FlushReport::default()
        };
        let line = delivery_line(&stopped);
        assert!(line.contains("3 refused (kept with reasons in the spool's rejected/ folder)"), "{line}");
        assert!(
            line.ends_with("; 2 waiting in the spool for the next run (collector unreachable: connection refused)"),
            "{line}"
        );
    }
}
