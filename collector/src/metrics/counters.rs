//! Counter families whose series are kept already rendered, for the two families that grow to the
//! series budget (`vantage_measurements_total`, `vantage_measurements_by_asn_total`).
//!
//! The `prometheus` crate renders by gathering: every series is copied into a protobuf message
//! (a `String` per label name and value), the family's series are sorted by comparing those, and
//! only then written out. At 100,000 series that is over a second of allocation and comparison
//! per scrape. Here each series is a key made once, when the series first appears: its label set
//! already in exposition form (`{asn="other",country="DE",…}`, label names sorted and values
//! escaped as the text format wants, so each line is what the `prometheus` encoder wrote), in a
//! sorted map. A scrape copies keys and formats integers, under a read lock; counting takes the
//! read lock too unless the series is new.
//!
//! Only what these two families need: monotonic integer counters, label values given in the
//! family's declared order. The families stay out of the `prometheus` registry, and
//! [`Metrics::render`](super::Metrics::render) appends them to its exposition.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

/// An integer counter family with a fixed set of labels.
#[derive(Debug)]
pub(super) struct CounterFamily {
    name: &'static str,
    help: &'static str,
    /// Label names in the family's declared order (the order values are given in).
    labels: &'static [&'static str],
    /// Positions into `labels`, in the order of the label names (the exposition's order).
    sorted: Vec<usize>,
    series: RwLock<BTreeMap<String, AtomicU64>>,
}

impl CounterFamily {
    /// A family `name` with `help` and `labels` (declared order).
    pub(super) fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        let mut sorted: Vec<usize> = (0..labels.len()).collect();
        sorted.sort_by_key(|&i| labels[i]);
        CounterFamily { name, help, labels, sorted, series: RwLock::new(BTreeMap::new()) }
    }

    /// Add `n` to the series of `values` (in declared order), creating it at `n` if new.
    pub(super) fn inc_by(&self, values: &[&str], n: u64) {
        let key = self.key(values);
        if let Some(counter) = self.series.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
            counter.fetch_add(n, Ordering::Relaxed);
            return;
        }
        self.series.write().unwrap_or_else(PoisonError::into_inner).entry(key).or_default().fetch_add(n, Ordering::Relaxed);
    }

    /// The value of the series of `values`, if it exists.
    #[cfg(test)]
    pub(super) fn get(&self, values: &[&str]) -> Option<u64> {
        self.series.read().unwrap_or_else(PoisonError::into_inner).get(&self.key(values)).map(|c| c.load(Ordering::Relaxed))
    }

    /// Append the family in the text exposition format (nothing while it has no series, as the
    /// `prometheus` registry leaves out empty families).
    pub(super) fn encode(&self, out: &mut String) {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        if series.is_empty() {
            return;
        }
        out.reserve(series.len() * (self.name.len() + 64));
        let _ = writeln!(out, "# HELP {} {}", self.name, escape(self.help, false));
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        for (labels, value) in series.iter() {
            out.push_str(self.name);
            out.push_str(labels);
            let _ = writeln!(out, " {}", value.load(Ordering::Relaxed));
        }
    }

    /// `{name="value",…}` with names sorted and values escaped.
    fn key(&self, values: &[&str]) -> String {
        let mut key = String::with_capacity(16 * self.labels.len());
        key.push('{');
        for (n, &i) in self.sorted.iter().enumerate() {
            if n > 0 {
                key.push(',');
            }
            key.push_str(self.labels[i]);
            key.push_str("=\"");
            key.push_str(&escape(values.get(i).copied().unwrap_or(""), true));
            key.push('"');
        }
        key.push('}');
        key
    }
}

/// The text format's escaping: `\` and newline always, `"` in label values.
fn escape(text: &str, quotes: bool) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\\', '\n', '"']) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

    use super::*;

    const LABELS: &[&str] = &["country", "asn", "test"];

    /// Scrapers and the tests read the same bytes the `prometheus` encoder wrote before.
    #[test]
    fn the_exposition_is_the_prometheus_encoders_byte_for_byte() {
        let help = "Measurements, by \\ and\nmore.";
        let ours = CounterFamily::new("vantage_x_total", help, LABELS);
        let registry = Registry::new();
        let theirs = IntCounterVec::new(Opts::new("vantage_x_total", help), LABELS).expect("family");
        registry.register(Box::new(theirs.clone())).expect("register");
        for (values, n) in [
            (["DE", "3320", "tls"], 2),
            (["AT", "other", "tls"], 1),
            (["DE", "3320", "tls"], 5),
            (["ZZ", "odd \"one\"\\\n", "dns"], 1),
        ] {
            ours.inc_by(&values, n);
            theirs.with_label_values(&values).inc_by(n);
        }
        let mut expected = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut expected).expect("encode");
        let mut text = String::new();
        ours.encode(&mut text);
        assert_eq!(text, String::from_utf8(expected).expect("UTF-8"));
        assert_eq!(ours.get(&["DE", "3320", "tls"]), Some(7));
    }

    #[test]
    fn an_empty_family_is_left_out() {
        let mut text = String::new();
        CounterFamily::new("vantage_x_total", "help", LABELS).encode(&mut text);
        assert_eq!(text, "");
    }
}
