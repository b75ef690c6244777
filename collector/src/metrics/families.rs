//! The metric families, registered group by group: what was measured, how ingest goes, the
//! collector's own operations, what the label rules fold, and the fleet.
//!
//! Each group's constructor registers its families and creates the series of its closed label
//! sets up front, so `rate()` and absence alerts see zeros from the first scrape, not gaps.

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use vantage_measurement::wire::KeyStanding;
use vantage_measurement::{RejectionCode, TestKind};

use super::budget::{FoldLabel, FoldReason};
use super::counters::CounterFamily;
use super::fleet::FleetGauges;
use super::outcome::{
    BatchIdentity, ConnectionRefusal, HelperOutcome, LimitedEndpoint, LocationField, RegistrationOutcome, StoreOp,
};
use super::{
    BATCHES_TOTAL, CONNECTIONS_OPEN, CONNECTIONS_REFUSED_TOTAL, DUPLICATES_TOTAL, FLEET_REFRESH_TIMESTAMP_SECONDS,
    FLEET_WINDOW_SECONDS, HELPER_REQUESTS_TOTAL, INGEST_IN_FLIGHT, INGESTED_TOTAL, LABELS_FOLDED_TOTAL,
    LAST_INGEST_TIMESTAMP_SECONDS, LOCATION_MISMATCH_TOTAL, MEASUREMENTS_BY_ASN_TOTAL, MEASUREMENTS_BY_FAMILY_TOTAL,
    MEASUREMENTS_TOTAL, PHASE_DURATION_SECONDS, RATE_LIMIT_ENTRIES, RATE_LIMITED_TOTAL, REJECTED_TOTAL, SERIES_ADMITTED,
    SERIES_LIMIT, SPOOL_PENDING, STORE_DURATION_SECONDS, STORED_MEASUREMENTS, TLS_CERT_EXPIRY_TIMESTAMP_SECONDS,
};
use super::{CENSOR_HOP, DUTY_HELD, EVENTS_ONGOING, LOCALISATIONS_TOTAL, STORE_UP};
use super::{KEY_REGISTRATIONS_TOTAL, KEYS_ACTIVE, MEASUREMENTS_UNCOUNTED_TOTAL};
use crate::payload::BatchRejection;
use crate::store::Duty;
use crate::trust::Uncounted;

/// Spool backlog per batch: an up-to-date probe sends 0; one that was offline for a month
/// with a busy schedule may hold tens of thousands.
const SPOOL_BUCKETS: &[f64] = &[0.0, 1.0, 10.0, 100.0, 500.0, 1000.0, 5000.0, 10_000.0, 50_000.0, 100_000.0];
/// Phase durations: 5 ms (a LAN round trip) to 30 s (beyond any sane step timeout).
/// Hops 1 to 16 (the follow-up tries no further).
const HOP_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0];
const PHASE_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Store calls: an fsync'd commit takes milliseconds; a long export seconds.
const STORE_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

type Result<T> = std::result::Result<T, prometheus::Error>;

/// Creates a family and registers it in one step.
pub(super) struct Registrar<'a>(pub(super) &'a Registry);

impl Registrar<'_> {
    fn register<C: Collector + Clone + 'static>(&self, family: C) -> Result<C> {
        self.0.register(Box::new(family.clone()))?;
        Ok(family)
    }

    fn counter(&self, name: &str, help: &str) -> Result<IntCounter> {
        self.register(IntCounter::new(name, help)?)
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Result<Histogram> {
        self.register(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?)
    }

    fn histogram_vec(&self, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> Result<HistogramVec> {
        self.register(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)?)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<Gauge> {
        self.register(Gauge::new(name, help)?)
    }

    fn int_gauge(&self, name: &str, help: &str) -> Result<IntGauge> {
        self.register(IntGauge::new(name, help)?)
    }

    fn int_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }
}

/// Create the series of a one-label `family` for each value, at zero.
fn zeros<'a, B: MetricVecBuilder>(family: &MetricVec<B>, values: impl Iterator<Item = &'a str>) {
    for value in values {
        family.with_label_values(&[value]);
    }
}

/// Create the series of a two-label `family` for every pair of values, at zero.
fn pair_zeros<'a>(family: &IntCounterVec, first: impl Iterator<Item = &'a str>, second: impl Iterator<Item = &'a str> + Clone) {
    for a in first {
        for b in second.clone() {
            family.with_label_values(&[a, b]);
        }
    }
}

/// What was measured: stored measurements by where, what and verdict, by network, and how long
/// each probe step took. The two counter families grow to the series budget, so they are kept
/// pre-rendered ([`CounterFamily`]), outside the registry.
#[derive(Debug)]
pub(super) struct MeasurementFamilies {
    pub(super) total: CounterFamily,
    pub(super) by_asn: CounterFamily,
    pub(super) phase_duration: HistogramVec,
    pub(super) censor_hop: HistogramVec,
    pub(super) localisations: IntCounterVec,
    /// Endpoint measurements by address family: closed labels only (country, 2 families, test,
    /// verdict), so it stays in the registry, outside the series budget.
    pub(super) by_family: IntCounterVec,
}

impl MeasurementFamilies {
    pub(super) fn register(r: &Registrar<'_>) -> Result<Self> {
        let total = CounterFamily::new(
            MEASUREMENTS_TOTAL,
            "Measurements stored, by probe country, test, published target, verdict and mechanism.",
            &["country", "test", "target", "verdict", "mechanism"],
        );
        let by_asn = CounterFamily::new(
            MEASUREMENTS_BY_ASN_TOTAL,
            "Measurements stored, by probe country, autonomous system (only ASNs with at least \
             --asn-min-probes distinct probes in the window, else other), test and verdict.",
            &["country", "asn", "test", "verdict"],
        );
        let phase_duration = r.histogram_vec(
            PHASE_DURATION_SECONDS,
            "Duration of each measurement step as timed on the probe, by test and phase.",
            PHASE_BUCKETS,
            &["test", "phase"],
        )?;
        let censor_hop = r.histogram_vec(
            CENSOR_HOP,
            "Hop at which the censor sits, from the follow-up of blocked tls and dns verdicts, by probe \
             country and mechanism.",
            HOP_BUCKETS,
            &["country", "mechanism"],
        )?;
        let localisations = r.counter_vec(
            LOCALISATIONS_TOTAL,
            "Follow-ups of blocked verdicts by outcome: localised, or the reason no hop was reported.",
            &["test", "outcome"],
        )?;
        let by_family = r.counter_vec(
            MEASUREMENTS_BY_FAMILY_TOTAL,
            "Endpoint measurements stored, by probe country, address family of the measured address \
             (a dual-stack target is measured on each), test and verdict.",
            &["country", "family", "test", "verdict"],
        )?;
        Ok(MeasurementFamilies { total, by_asn, phase_duration, censor_hop, localisations, by_family })
    }
}

/// How ingest goes: what was stored, refused and is waiting, batch by batch.
#[derive(Debug)]
pub(super) struct IngestFamilies {
    pub(super) ingested: IntCounter,
    pub(super) duplicates: IntCounter,
    pub(super) rejected: IntCounterVec,
    pub(super) batches: IntCounterVec,
    pub(super) last_ingest: Gauge,
    pub(super) stored: IntGauge,
    pub(super) in_flight: IntGauge,
    pub(super) spool_pending: Histogram,
    pub(super) location_mismatch: IntCounterVec,
}

impl IngestFamilies {
    pub(super) fn register(r: &Registrar<'_>) -> Result<Self> {
        let ingested = r.counter(INGESTED_TOTAL, "Measurements newly stored.")?;
        let duplicates = r.counter(DUPLICATES_TOTAL, "Measurements received again after being stored; not stored twice.")?;
        let rejected = r.counter_vec(
            REJECTED_TOTAL,
            "Submitted lines refused by reason; batch-level reasons count whole batches.",
            &["reason"],
        )?;
        let batches = r.counter_vec(
            BATCHES_TOTAL,
            "Ingest batches read and answered 200, by identity: signed (verified probe key) or anonymous.",
            &["identity"],
        )?;
        let last_ingest = r.gauge(
            LAST_INGEST_TIMESTAMP_SECONDS,
            "Unix time of the last committed ingest batch (after a restart: the store's latest arrival).",
        )?;
        let stored = r.int_gauge(STORED_MEASUREMENTS, "Measurements in the store.")?;
        let in_flight = r.int_gauge(INGEST_IN_FLIGHT, "Ingest requests being handled now, waiting for a slot included.")?;
        let spool_pending = r.histogram(
            SPOOL_PENDING,
            "Measurements still waiting in the submitting probe's spool after each batch, as the probe \
             reports it (X-Vantage-Spool-Pending); one observation per batch, no per-probe series.",
            SPOOL_BUCKETS,
        )?;
        let location_mismatch = r.counter_vec(
            LOCATION_MISMATCH_TOTAL,
            "Stored measurements whose self-declared country or ASN differs from the one the collector's \
             GeoIP databases give for the submitting address (only where both are known), by kind.",
            &["kind"],
        )?;
        zeros(&location_mismatch, LocationField::ALL.iter().map(|k| k.as_str()));
        zeros(&rejected, RejectionCode::ALL.iter().map(|c| c.as_str()).chain(BatchRejection::ALL.iter().map(|c| c.as_str())));
        zeros(&batches, BatchIdentity::ALL.iter().map(|i| i.as_str()));
        Ok(IngestFamilies {
            ingested,
            duplicates,
            rejected,
            batches,
            last_ingest,
            stored,
            in_flight,
            spool_pending,
            location_mismatch,
        })
    }
}

/// The collector's own operations: time in the store, and test-helper requests.
#[derive(Debug)]
pub(super) struct OperationFamilies {
    pub(super) store_duration: HistogramVec,
    pub(super) helper_requests: IntCounterVec,
}

impl OperationFamilies {
    pub(super) fn register(r: &Registrar<'_>) -> Result<Self> {
        let store_duration = r.histogram_vec(
            STORE_DURATION_SECONDS,
            "Time spent in the store per operation (a query includes streaming its rows).",
            STORE_BUCKETS,
            &["op"],
        )?;
        let helper_requests =
            r.counter_vec(HELPER_REQUESTS_TOTAL, "Test-helper control requests, by test and outcome.", &["test", "outcome"])?;
        zeros(&store_duration, StoreOp::ALL.iter().map(|op| op.as_str()));
        pair_zeros(&helper_requests, TestKind::ALL.iter().map(|t| t.as_str()), HelperOutcome::ALL.iter().map(|o| o.as_str()));
        Ok(OperationFamilies { store_duration, helper_requests })
    }
}

/// What the label rules and the series budget fold, and how much of the budget is spent.
#[derive(Debug)]
pub(super) struct LabelFamilies {
    pub(super) folded: IntCounterVec,
    pub(super) series_admitted: IntGauge,
}

impl LabelFamilies {
    pub(super) fn register(r: &Registrar<'_>, max_series: usize) -> Result<Self> {
        let folded = r.counter_vec(
            LABELS_FOLDED_TOTAL,
            "Label values replaced by other (country: ZZ) when counting a stored measurement, by label and \
             reason: unpublished target, ASN with too few probes, or series budget spent.",
            &["label", "reason"],
        )?;
        let series_admitted =
            r.int_gauge(SERIES_ADMITTED, "Series held by the budgeted families (measurement counters and fleet gauges).")?;
        let series_limit = r.int_gauge(SERIES_LIMIT, "The series budget (--max-series) of the budgeted families.")?;
        series_limit.set(i64::try_from(max_series).unwrap_or(i64::MAX));
        pair_zeros(&folded, FoldLabel::ALL.iter().map(|l| l.as_str()), FoldReason::ALL.iter().map(|r| r.as_str()));
        Ok(LabelFamilies { folded, series_admitted })
    }
}

/// The fleet: distinct-probe gauges recomputed from the store, when and over which window.
#[derive(Debug)]
pub(super) struct FleetFamilies {
    pub(super) gauges: FleetGauges,
    pub(super) refreshed: Gauge,
    pub(super) window: IntGauge,
    pub(super) events_ongoing: IntGaugeVec,
}

impl FleetFamilies {
    pub(super) fn register(r: &Registrar<'_>) -> Result<Self> {
        let refreshed = r.gauge(
            FLEET_REFRESH_TIMESTAMP_SECONDS,
            "Unix time the fleet snapshot these gauges show was made from the store (by whichever replica holds \
                 the fleet_refresh duty).",
        )?;
        let window = r.int_gauge(
            FLEET_WINDOW_SECONDS,
            "The window (--window-secs) of vantage_probes_active, vantage_target_probes and vantage_target_asns.",
        )?;
        let gauges = r.register(FleetGauges::new()?)?;
        let events_ongoing = r.int_gauge_vec(
            EVENTS_ONGOING,
            "Detected blocking events still going on (a changepoint in the share of blocked among trusted \
             measurements, hourly over the last week; GET /api/v1/events has them with evidence), by country, \
             target, test and the events' main mechanism; 0 for an event that ended within the week. \
             Recomputed every fourth fleet refresh.",
            &["country", "target", "test", "mechanism"],
        )?;
        Ok(FleetFamilies { gauges, refreshed, window, events_ongoing })
    }
}

/// This replica among several: the duties it holds and whether it reaches the store.
#[derive(Debug)]
pub(super) struct ReplicaFamilies {
    pub(super) duty_held: IntGaugeVec,
    pub(super) store_up: IntGauge,
}

impl ReplicaFamilies {
    pub(super) fn register(r: &Registrar<'_>) -> Result<Self> {
        let duty_held = r.int_gauge_vec(
            DUTY_HELD,
            "1 if this replica holds the duty (periodic work one replica does for all, chosen through the \
             database), else 0; asked every fleet refresh. Summed over replicas it should be exactly 1.",
            &["duty"],
        )?;
        let store_up =
            r.int_gauge(STORE_UP, "1 if this replica's last ping of the store (every fleet refresh) succeeded, else 0.")?;
        for duty in Duty::ALL {
            duty_held.with_label_values(&[duty.as_str()]);
        }
        Ok(ReplicaFamilies { duty_held, store_up })
    }
}

/// The rate limiter: what it refused, and how many keys it tracks.
#[derive(Debug)]
pub(super) struct LimitFamilies {
    pub(super) limited: IntCounterVec,
    pub(super) entries: IntGaugeVec,
}

impl LimitFamilies {
    pub(super) fn register(r: &Registrar<'_>) -> Result<Self> {
        let limited = r.counter_vec(
            RATE_LIMITED_TOTAL,
            "Requests answered 429 by the rate limiter, by endpoint and by what the exhausted limit counts \
             (a probe key, or a source address).",
            &["endpoint", "scope"],
        )?;
        let entries = r.int_gauge_vec(
            RATE_LIMIT_ENTRIES,
            "Keys and sources the rate limiter tracks (those that still owe it time), by endpoint and scope; \
             at --rate-limit-entries new sources are refused.",
            &["endpoint", "scope"],
        )?;
        for (endpoint, scope) in LimitedEndpoint::pairs() {
            limited.with_label_values(&[endpoint.as_str(), scope.as_str()]);
            entries.with_label_values(&[endpoint.as_str(), scope.as_str()]);
        }
        Ok(LimitFamilies { limited, entries })
    }
}

/// The connection layer: connections open, refused or cut, and the served certificate's expiry.
#[derive(Debug)]
pub(super) struct ConnectionFamilies {
    pub(super) refused: IntCounterVec,
    pub(super) open: IntGauge,
    /// No labels: a vector so that the series appears only once a certificate is loaded.
    pub(super) cert_expiry: GaugeVec,
}

impl ConnectionFamilies {
    pub(super) fn register(r: &Registrar<'_>) -> Result<Self> {
        let refused = r.counter_vec(
            CONNECTIONS_REFUSED_TOTAL,
            "Connections closed by the collector's connection layer without being served, or cut, by reason: \
             a connection cap, a missing, bad or untrusted PROXY header, a TLS handshake that failed or took \
             too long, no request head within the header timeout, a client that stopped reading.",
            &["reason"],
        )?;
        let open = r.int_gauge(CONNECTIONS_OPEN, "Client connections open now (TLS handshakes included).")?;
        let cert_expiry = r.register(GaugeVec::new(
            Opts::new(
                TLS_CERT_EXPIRY_TIMESTAMP_SECONDS,
                "Unix time the certificate the collector serves (--tls-cert) stops being valid (its not-after); \
                 absent without --tls-cert.",
            ),
            &[],
        )?)?;
        zeros(&refused, ConnectionRefusal::ALL.iter().map(|r| r.as_str()));
        Ok(ConnectionFamilies { refused, open, cert_expiry })
    }
}

/// Trust: what was stored but not counted, key registrations, and the active keys by standing.
#[derive(Debug)]
pub(super) struct TrustFamilies {
    pub(super) uncounted: IntCounterVec,
    pub(super) registrations: IntCounterVec,
    pub(super) keys_active: IntGaugeVec,
}

impl TrustFamilies {
    pub(super) fn register(r: &Registrar<'_>) -> Result<Self> {
        let uncounted = r.counter_vec(
            MEASUREMENTS_UNCOUNTED_TOTAL,
            "Measurements stored but not counted in the measurement counters, fleet gauges, status page \
             and alerts, by reason: anonymous (unsigned batch), untrusted_key (unregistered, or still \
             earning trust), asn_mismatch / country_mismatch (the collector-observed ASN or country is not \
             the claimed one).",
            &["reason"],
        )?;
        let registrations =
            r.counter_vec(KEY_REGISTRATIONS_TOTAL, "Probe key registrations (POST /api/v1/keys), by outcome.", &["outcome"])?;
        let keys_active = r.register(IntGaugeVec::new(
            Opts::new(
                KEYS_ACTIVE,
                "Probe keys with a measurement received in the window, by standing: unregistered, untrusted \
                 (registered, still earning trust) or trusted (counted). Recomputed with the fleet gauges.",
            ),
            &["standing"],
        )?)?;
        zeros(&uncounted, Uncounted::ALL.iter().map(|u| u.as_str()));
        zeros(&registrations, RegistrationOutcome::ALL.iter().map(|o| o.as_str()));
        zeros(&keys_active, KeyStanding::ALL.iter().map(|s| s.as_str()));
        Ok(TrustFamilies { uncounted, registrations, keys_active })
    }
}
