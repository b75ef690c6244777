//! The end-of-run summary table, built as the run goes from a few words per measurement: a run
//! over 10,000 targets keeps these rows (or, with `--json`, only the counts), never the
//! measurements themselves, so its memory does not grow with what the measurements carry.

use std::io::{self, Write};

use vantage_measurement::{Measurement, Mechanism, Status, TestKind};

/// What the table shows of one measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    target: Box<str>,
    test: TestKind,
    status: Status,
    mechanism: Option<Mechanism>,
    runtime_ms: u64,
}

impl Row {
    fn cells(&self) -> [String; 5] {
        [
            self.target.to_string(),
            self.test.as_str().to_string(),
            self.status.as_str().to_string(),
            self.mechanism.map_or("-", |m| m.as_str()).to_string(),
            format!("{} ms", self.runtime_ms),
        ]
    }

    /// Sorted by target, then test, as the volunteer reads them (names, not enum order).
    fn sort_key(&self) -> (&str, &str, &str, &str, u64) {
        (&self.target, self.test.as_str(), self.status.as_str(), self.mechanism.map_or("-", |m| m.as_str()), self.runtime_ms)
    }
}

/// The run's results as the end-of-run report needs them.
#[derive(Debug, Default)]
pub struct Summary {
    /// `None` when only the totals will be shown (`--json`).
    rows: Option<Vec<Row>>,
    total: usize,
    by_status: [usize; 4],
    offline: usize,
}

impl Summary {
    /// A summary that keeps a row per measurement for [`Summary::write_table`].
    pub fn with_rows() -> Summary {
        Summary { rows: Some(Vec::new()), ..Summary::default() }
    }

    /// A summary that keeps only the counts (the totals line and [`Summary::all_offline`]).
    pub fn counts_only() -> Summary {
        Summary::default()
    }

    /// Count one measurement (and keep its row, if rows are kept).
    pub fn add(&mut self, m: &Measurement) {
        self.total += 1;
        self.by_status[status_index(m.verdict.status)] += 1;
        if m.verdict.mechanism == Some(Mechanism::NetworkOffline) {
            self.offline += 1;
        }
        if let Some(rows) = self.rows.as_mut() {
            rows.push(Row {
                target: m.target.name.as_str().into(),
                test: m.test,
                status: m.verdict.status,
                mechanism: m.verdict.mechanism,
                runtime_ms: m.runtime_ms,
            });
        }
    }

    /// How many measurements were counted.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Whether every test failed for want of a network (no route, interface down).
    pub fn all_offline(&self) -> bool {
        self.total > 0 && self.offline == self.total
    }

    /// `12 measurements: 9 ok, 2 blocked, 0 down, 1 inconclusive`.
    pub fn totals(&self) -> String {
        let count = |s: Status| self.by_status[status_index(s)];
        format!(
            "{} measurements: {} ok, {} blocked, {} down, {} inconclusive",
            self.total,
            count(Status::Ok),
            count(Status::Blocked),
            count(Status::Down),
            count(Status::Inconclusive)
        )
    }

    /// Write the aligned table, sorted by target then test, and the totals line (only the totals
    /// for a counts-only summary). Line by line: a long table is never built as one string.
    pub fn write_table(&mut self, out: &mut impl Write) -> io::Result<()> {
        let rows = self.rows.as_deref_mut().unwrap_or_default();
        rows.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let header = ["TARGET", "TEST", "VERDICT", "MECHANISM", "TIME"].map(String::from);
        let mut widths = header.clone().map(|h| h.len());
        for row in rows.iter() {
            for (w, cell) in widths.iter_mut().zip(row.cells()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for cells in std::iter::once(header).chain(rows.iter().map(Row::cells)) {
            let line: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            writeln!(out, "{}", line.join("  ").trim_end())?;
        }
        writeln!(out, "\n{}", self.totals())
    }
}

/// Index of a status in [`Summary::by_status`]; the four statuses are the closed set's.
fn status_index(status: Status) -> usize {
    match status {
        Status::Ok => 0,
        Status::Blocked => 1,
        Status::Down => 2,
        Status::Inconclusive => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use vantage_measurement::example;

    fn table(summary: &mut Summary) -> String {
        let mut out = Vec::new();
        summary.write_table(&mut out).expect("write to a Vec");
        String::from_utf8(out).expect("utf-8")
    }

    fn named(name: &str, status: Status, mechanism: Option<Mechanism>, runtime_ms: u64) -> Measurement {
        let mut m = example::tls_reset(Utc::now());
        m.target.name = name.to_string();
        m.verdict.status = status;
        m.verdict.mechanism = mechanism;
        m.runtime_ms = runtime_ms;
        m
    }

    #[test]
    fn the_table_has_a_sorted_aligned_row_per_measurement_and_totals() {
        let mut summary = Summary::with_rows();
        summary.add(&named("zeta", Status::Ok, None, 12));
        summary.add(&named("alpha", Status::Blocked, Some(Mechanism::TlsResetAfterClientHello), 1500));
        let text = table(&mut summary);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "TARGET  TEST  VERDICT  MECHANISM                    TIME");
        assert_eq!(lines[1], "alpha   tls   blocked  tls.reset_after_clienthello  1500 ms");
        assert_eq!(lines[2], "zeta    tls   ok       -                            12 ms");
        assert_eq!(lines[3], "");
        assert_eq!(lines[4], "2 measurements: 1 ok, 1 blocked, 0 down, 0 inconclusive");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn counts_only_keeps_no_rows_and_shows_the_totals() {
        let mut summary = Summary::counts_only();
        for status in [Status::Ok, Status::Down, Status::Down, Status::Inconclusive] {
            summary.add(&named("site", status, None, 1));
        }
        assert_eq!(summary.rows, None, "no rows kept");
        assert_eq!(summary.len(), 4);
        assert_eq!(summary.totals(), "4 measurements: 1 ok, 0 blocked, 2 down, 1 inconclusive");
        assert_eq!(table(&mut summary).lines().last(), Some("4 measurements: 1 ok, 0 blocked, 2 down, 1 inconclusive"));
    }

    #[test]
    fn all_offline_needs_every_measurement_offline_and_at_least_one() {
        let mut summary = Summary::counts_only();
        assert!(!summary.all_offline(), "nothing measured is not offline");
        summary.add(&named("a", Status::Inconclusive, Some(Mechanism::NetworkOffline), 1));
        assert!(summary.all_offline());
        summary.add(&named("b", Status::Ok, None, 1));
        assert!(!summary.all_offline());
    }
}
