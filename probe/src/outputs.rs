//! Where each finished measurement goes, in this order: the spool (synced first, so that what
//! the volunteer saw is never lost to a crash), stdout as an NDJSON line with `--json`, the
//! progress bar, and the summary the end-of-run table is made from. Nothing keeps the
//! measurement itself: memory stays flat however many targets a run has.

use indicatif::ProgressBar;
use vantage_engine::schedule::Handover;
use vantage_measurement::Measurement;

use crate::report;
use crate::report::table::Summary;
use crate::spool::{SpoolError, SpoolWriter};

/// The sinks of one run.
#[derive(Debug)]
pub struct Outputs {
    spool: Option<SpoolWriter>,
    json: bool,
    progress: ProgressBar,
    summary: Summary,
    spool_error: Option<SpoolError>,
}

impl Outputs {
    /// Sinks for a run: `spool` with `--collector`, NDJSON on stdout with `json` (and then only
    /// the totals at the end, so no table rows are kept).
    pub fn new(spool: Option<SpoolWriter>, json: bool, progress: ProgressBar) -> Outputs {
        let summary = if json { Summary::counts_only() } else { Summary::with_rows() };
        Outputs { spool, json, progress, summary, spool_error: None }
    }

    /// Take what the scheduler hands over: a finished measurement is [recorded](Self::record); a
    /// held one (waiting for its hop follow-up) is kept safe in the spool until it comes back
    /// finished, and shown nowhere yet.
    pub fn take(&mut self, handover: Handover) {
        match handover {
            Handover::Done(m) => self.record(m),
            Handover::Held(m) => {
                if let Some(w) = self.spool.as_mut()
                    && let Err(e) = w.hold(&m)
                {
                    self.spool_error.get_or_insert(e);
                }
            }
        }
    }

    /// Take one finished measurement. The run goes on if the spool fails (the measurements are
    /// still shown); [`Outputs::finish`] reports the first failure.
    pub fn record(&mut self, m: Measurement) {
        if let Some(w) = self.spool.as_mut()
            && let Err(e) = w.append(&m)
        {
            self.spool_error.get_or_insert(e);
        }
        if self.json {
            // A closed stdout (`| head`) must not stop measuring or spooling.
            let _ = report::write_json_line(&mut std::io::stdout().lock(), &m);
        }
        self.progress.inc(1);
        self.summary.add(&m);
    }

    /// Close the run: clear the bar, seal the spool file, and hand back the summary.
    pub fn finish(self) -> Result<Summary, SpoolError> {
        self.progress.finish_and_clear();
        if let Some(e) = self.spool_error {
            return Err(e);
        }
        if let Some(w) = self.spool {
            w.seal()?;
        }
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use vantage_measurement::example;

    use super::*;
    use crate::spool;

    #[test]
    fn every_measurement_is_spooled_sealed_and_counted() {
        let (_dir, spool) = spool::scratch();
        let mut outputs = Outputs::new(Some(spool.writer().expect("writer")), false, ProgressBar::hidden());
        let ms = [example::tls_reset(Utc::now()), example::tls_reset(Utc::now())];
        for m in ms.iter().cloned() {
            outputs.record(m);
        }
        let summary = outputs.finish().expect("finish");
        assert_eq!(summary.totals(), "2 measurements: 0 ok, 2 blocked, 0 down, 0 inconclusive");
        let spooled: Vec<String> =
            spool.pending().expect("pending").iter().flat_map(|f| spool::read_lines(f).expect("read")).collect();
        assert_eq!(spooled, ms.iter().map(|m| m.to_json_line().expect("serialise")).collect::<Vec<_>>(), "spooled and sealed");
    }

    #[test]
    fn without_a_collector_nothing_is_spooled() {
        let mut outputs = Outputs::new(None, false, ProgressBar::hidden());
        outputs.record(example::tls_reset(Utc::now()));
        assert_eq!(outputs.finish().expect("finish").len(), 1, "counted, not spooled");
    }
}
