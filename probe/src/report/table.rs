//! The end-of-run summary table.

use std::fmt::Write as _;

use vantage_measurement::{Measurement, Status};

/// Render measurements as an aligned table, sorted by target then test, plus a totals line.
pub fn render(measurements: &[Measurement]) -> String {
    let mut rows: Vec<[String; 5]> = measurements
        .iter()
        .map(|m| {
            [
                m.target.name.clone(),
                m.test.as_str().to_string(),
                m.verdict.status.as_str().to_string(),
                m.verdict.mechanism.map(|x| x.as_str().to_string()).unwrap_or_else(|| "-".into()),
                format!("{} ms", m.runtime_ms),
            ]
        })
        .collect();
    rows.sort();
    let header = ["TARGET", "TEST", "VERDICT", "MECHANISM", "TIME"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let _ = writeln!(out, "\n{}", totals(measurements));
    out
}

/// `12 measurements: 9 ok, 2 blocked, 0 down, 1 inconclusive`.
pub fn totals(measurements: &[Measurement]) -> String {
    let count = |s: Status| measurements.iter().filter(|m| m.verdict.status == s).count();
    format!(
        "{} measurements: {} ok, {} blocked, {} down, {} inconclusive",
        measurements.len(),
        count(Status::Ok),
        count(Status::Blocked),
        count(Status::Down),
        count(Status::Inconclusive)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use vantage_measurement::example;

    #[test]
    fn the_table_has_a_row_per_measurement_and_totals() {
        let ms = vec![example::tls_reset(Utc::now()), example::tls_reset(Utc::now())];
        let text = render(&ms);
        assert_eq!(text.lines().filter(|l| l.contains("tls.reset_after_clienthello")).count(), 2);
        assert!(text.lines().next().is_some_and(|h| h.starts_with("TARGET")));
        assert!(text.contains("2 measurements: 0 ok, 2 blocked, 0 down, 0 inconclusive"));
    }
}
