//! Prometheus metrics: what operators graph, with every label drawn from a bounded set.
//!
//! A label value that comes from a submitter (a target name, an ASN, a country) would let anyone
//! with a probe mint new series until Prometheus falls over. So each label is folded into a
//! closed vocabulary before it reaches a metric:
//!
//! | label       | values                                                                 |
//! |-------------|------------------------------------------------------------------------|
//! | `country`   | two upper-case letters, else `ZZ`                                      |
//! | `asn`       | the first [`MAX_ASN_LABELS`] distinct ASNs seen, then `other`          |
//! | `target`    | names on the published list (`--targets`), else `other`                |
//! | `test`, `verdict`, `mechanism`, `phase` | the schema's closed enums (`none`: no mechanism) |
//! | `reason`    | [`Rejection::CODES`] and [`BATCH_REJECTION_CODES`]                     |
//!
//! There is never a per-probe or per-address series: per-probe detail lives in the store.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use chrono::Utc;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramTimer, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use vantage_measurement::{Measurement, Rejection, TestKind, Vantage};

/// Measurements stored, by where, what and what was concluded.
pub const MEASUREMENTS_TOTAL: &str = "vantage_measurements_total";
/// Measurements stored, by network.
pub const MEASUREMENTS_BY_ASN_TOTAL: &str = "vantage_measurements_by_asn_total";
/// Duration of each measurement phase, as the probe timed it.
pub const PHASE_DURATION_SECONDS: &str = "vantage_phase_duration_seconds";
/// Measurements newly stored.
pub const INGESTED_TOTAL: &str = "vantage_collector_ingested_total";
/// Measurements received again after they were stored.
pub const DUPLICATES_TOTAL: &str = "vantage_collector_duplicates_total";
/// Lines (or whole batches) refused, by reason.
pub const REJECTED_TOTAL: &str = "vantage_collector_rejected_total";
/// Time spent in the store.
pub const STORE_DURATION_SECONDS: &str = "vantage_collector_store_duration_seconds";
/// When a batch was last committed.
pub const LAST_INGEST_TIMESTAMP_SECONDS: &str = "vantage_collector_last_ingest_timestamp_seconds";
/// Measurements in the store.
pub const STORED_MEASUREMENTS: &str = "vantage_collector_stored_measurements";
/// Test-helper requests, by outcome.
pub const HELPER_REQUESTS_TOTAL: &str = "vantage_helper_requests_total";

/// Distinct ASNs that get their own `asn` label value; later ones share `other`.
pub const MAX_ASN_LABELS: usize = 1000;

/// Reasons that refuse a whole batch rather than one line.
pub const BATCH_REJECTION_CODES: &[&str] = &[
    "body_too_large",
    "too_many_lines",
    "unsupported_encoding",
    "bad_encoding",
    "body_unreadable",
];

/// Phase durations: 5 ms (a LAN round trip) to 30 s (beyond any sane step timeout).
const PHASE_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Store calls: an fsync'd commit takes milliseconds; a long export seconds.
const STORE_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A store operation, the `op` label of [`STORE_DURATION_SECONDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// One batch insert.
    Insert,
    /// One query, from the request to the last row streamed.
    Query,
}

impl StoreOp {
    const ALL: &'static [StoreOp] = &[Self::Insert, Self::Query];

    fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Query => "query",
        }
    }
}

/// How a test-helper request ended, the `outcome` label of [`HELPER_REQUESTS_TOTAL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperOutcome {
    /// The step ran (whatever it observed).
    Executed,
    /// The address is one the helper refuses to contact.
    Forbidden,
    /// The request lacked a field the test needs.
    Invalid,
    /// Too many requests in flight.
    Busy,
    /// The step outran the helper's overall deadline.
    TimedOut,
}

impl HelperOutcome {
    const ALL: &'static [HelperOutcome] =
        &[Self::Executed, Self::Forbidden, Self::Invalid, Self::Busy, Self::TimedOut];

    fn as_str(self) -> &'static str {
        match self {
            Self::Executed => "executed",
            Self::Forbidden => "forbidden",
            Self::Invalid => "invalid",
            Self::Busy => "busy",
            Self::TimedOut => "timed_out",
        }
    }
}

/// The collector's registry and every family in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    measurements: IntCounterVec,
    measurements_by_asn: IntCounterVec,
    phase_duration: HistogramVec,
    ingested: IntCounter,
    duplicates: IntCounter,
    rejected: IntCounterVec,
    store_duration: HistogramVec,
    last_ingest: Gauge,
    stored: IntGauge,
    helper_requests: IntCounterVec,
    published_targets: HashSet<String>,
    asns_with_label: Mutex<HashSet<u32>>,
}

impl Metrics {
    /// Register every family. `published_targets` are the names allowed as `target` labels.
    pub fn new(published_targets: HashSet<String>) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let histogram_vec = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };

        let measurements = counter_vec(
            MEASUREMENTS_TOTAL,
            "Measurements stored, by probe country, test, published target, verdict and mechanism.",
            &["country", "test", "target", "verdict", "mechanism"],
        )?;
        let measurements_by_asn = counter_vec(
            MEASUREMENTS_BY_ASN_TOTAL,
            "Measurements stored, by probe country, autonomous system, test and verdict.",
            &["country", "asn", "test", "verdict"],
        )?;
        let phase_duration = histogram_vec(
            PHASE_DURATION_SECONDS,
            "Duration of each measurement step as timed on the probe, by test and phase.",
            PHASE_BUCKETS,
            &["test", "phase"],
        )?;
        let rejected = counter_vec(
            REJECTED_TOTAL,
            "Submitted lines refused by reason; batch-level reasons count whole batches.",
            &["reason"],
        )?;
        let store_duration = histogram_vec(
            STORE_DURATION_SECONDS,
            "Time spent in the store per operation (a query includes streaming its rows).",
            STORE_BUCKETS,
            &["op"],
        )?;
        let helper_requests =
            counter_vec(HELPER_REQUESTS_TOTAL, "Test-helper control requests, by test and outcome.", &["test", "outcome"])?;

        let ingested = IntCounter::new(INGESTED_TOTAL, "Measurements newly stored.")?;
        registry.register(Box::new(ingested.clone()))?;
        let duplicates =
            IntCounter::new(DUPLICATES_TOTAL, "Measurements received again after being stored; not stored twice.")?;
        registry.register(Box::new(duplicates.clone()))?;
        let last_ingest =
            Gauge::new(LAST_INGEST_TIMESTAMP_SECONDS, "Unix time of the last committed ingest batch.")?;
        registry.register(Box::new(last_ingest.clone()))?;
        let stored = IntGauge::new(STORED_MEASUREMENTS, "Measurements in the store.")?;
        registry.register(Box::new(stored.clone()))?;

        // Series that exist from the first scrape, so rate() and alerts see zeros, not gaps.
        for reason in Rejection::CODES.iter().chain(BATCH_REJECTION_CODES) {
            rejected.with_label_values(&[*reason]);
        }
        for test in TestKind::ALL {
            for outcome in HelperOutcome::ALL {
                helper_requests.with_label_values(&[test.as_str(), outcome.as_str()]);
            }
        }
        for op in StoreOp::ALL {
            store_duration.with_label_values(&[op.as_str()]);
        }

        Ok(Metrics {
            registry,
            measurements,
            measurements_by_asn,
            phase_duration,
            ingested,
            duplicates,
            rejected,
            store_duration,
            last_ingest,
            stored,
            helper_requests,
            published_targets,
            asns_with_label: Mutex::new(HashSet::new()),
        })
    }

    /// Count one newly stored measurement (never a duplicate).
    pub fn record_measurement(&self, m: &Measurement) {
        let country = country_label(&m.probe.cc);
        let test = m.test.as_str();
        let verdict = m.verdict.status.as_str();
        let mechanism = m.verdict.mechanism.map_or("none", |mech| mech.as_str());
        let target = self.target_label(&m.target.name);
        self.measurements.with_label_values(&[country, test, target, verdict, mechanism]).inc();
        let asn = self.asn_label(m.probe.asn);
        self.measurements_by_asn.with_label_values(&[country, asn.as_str(), test, verdict]).inc();
        for step in m.observations.iter().filter(|o| o.vantage == Vantage::Probe) {
            // A negative or NaN duration is a probe bug; leave it out of operators' graphs.
            if step.duration_ms.is_finite() && step.duration_ms >= 0.0 {
                self.phase_duration
                    .with_label_values(&[test, step.op.as_str()])
                    .observe(step.duration_ms / 1000.0);
            }
        }
    }

    /// Count a committed batch: `inserted` new measurements, `duplicates` already stored.
    pub fn record_batch(&self, inserted: u64, duplicates: u64) {
        self.ingested.inc_by(inserted);
        self.duplicates.inc_by(duplicates);
        self.stored.add(i64::try_from(inserted).unwrap_or(i64::MAX));
        self.last_ingest.set(Utc::now().timestamp_millis() as f64 / 1000.0);
    }

    /// Count one refused line or batch. `reason` must be a [`Rejection`] code or one of
    /// [`BATCH_REJECTION_CODES`].
    pub fn record_rejection(&self, reason: &'static str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    /// Start timing a store call; the time is recorded when the timer is dropped.
    pub fn store_timer(&self, op: StoreOp) -> HistogramTimer {
        self.store_duration.with_label_values(&[op.as_str()]).start_timer()
    }

    /// Count one test-helper request.
    pub fn record_helper(&self, test: TestKind, outcome: HelperOutcome) {
        self.helper_requests.with_label_values(&[test.as_str(), outcome.as_str()]).inc();
    }

    /// Set the stored-measurements gauge (from the store's count at start-up).
    pub fn set_stored(&self, count: u64) {
        self.stored.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The text exposition format, and its content type.
    pub fn render(&self) -> Result<(String, String), prometheus::Error> {
        let encoder = TextEncoder::new();
        let mut buffer = Vec::new();
        encoder.encode(&self.registry.gather(), &mut buffer)?;
        // The text encoder writes UTF-8; a failure here would be a bug in the encoder.
        let text = String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))?;
        Ok((text, format!("{}; charset=utf-8", encoder.format_type())))
    }

    fn target_label<'a>(&self, name: &'a str) -> &'a str {
        if self.published_targets.contains(name) { name } else { "other" }
    }

    fn asn_label(&self, asn: u32) -> String {
        let mut seen = self.asns_with_label.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(&asn) || (seen.len() < MAX_ASN_LABELS && seen.insert(asn)) {
            asn.to_string()
        } else {
            "other".to_string()
        }
    }
}

/// `cc` if it is two upper-case ASCII letters, else `ZZ` (OONI's "unknown").
fn country_label(cc: &str) -> &str {
    if cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase()) { cc } else { "ZZ" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_measurement::example;

    #[test]
    fn country_label_folds_anything_odd_into_zz() {
        assert_eq!(country_label("DE"), "DE");
        for odd in ["de", "D", "DEU", "", "Ü1", "1A"] {
            assert_eq!(country_label(odd), "ZZ", "{odd:?}");
        }
    }

    #[test]
    fn asn_labels_stop_growing_at_the_cap() {
        let metrics = Metrics::new(HashSet::new()).expect("metrics");
        for asn in 0..MAX_ASN_LABELS as u32 {
            assert_eq!(metrics.asn_label(asn), asn.to_string());
        }
        assert_eq!(metrics.asn_label(999_999), "other");
        assert_eq!(metrics.asn_label(7), "7", "an ASN seen before keeps its label");
    }

    #[test]
    fn only_published_targets_become_labels() {
        let metrics = Metrics::new(HashSet::from(["wikipedia".to_string()])).expect("metrics");
        let mut m = example::tls_reset(Utc::now());
        m.target.name = "wikipedia".into();
        metrics.record_measurement(&m);
        m.target.name = "not-published".into();
        metrics.record_measurement(&m);
        let (text, _) = metrics.render().expect("render");
        assert!(text.contains("target=\"wikipedia\""), "{text}");
        assert!(text.contains("target=\"other\""), "{text}");
        assert!(!text.contains("not-published"), "{text}");
    }
}
