//! Prometheus metrics: what operators graph, with every label drawn from a bounded set.
//!
//! A label value that comes from a submitter (a target name, an ASN, a country) would let anyone
//! with a probe mint new series until Prometheus falls over. So each label is folded into a
//! closed vocabulary before it reaches a metric:
//!
//! | label       | values                                                                 |
//! |-------------|------------------------------------------------------------------------|
//! | `country`   | two upper-case letters, else `ZZ`                                      |
//! | `asn`       | ASNs at least k distinct probe keys reported in that country within the window (`--asn-min-probes`), else `other` |
//! | `target`    | names on the published list (`--targets`), else `other`                |
//! | `test`, `verdict`, `mechanism`, `phase` | the schema's closed enums (`none`: no mechanism) |
//! | `reason`    | [`RejectionCode::ALL`] and [`BatchRejection::ALL`]; of the uncounted: [`Uncounted::ALL`] |
//! | `endpoint`, `scope` | [`LimitedEndpoint::ALL`] and [`LimitScope::ALL`] (the rate limits) |
//! | `outcome`, `standing` | [`RegistrationOutcome::ALL`], [`KeyStanding::ALL`]             |
//!
//! On top of the per-label rules, the [`budget`] caps the label combinations of the label-bearing
//! families (`--max-series`); what any rule folds is counted in
//! `vantage_metric_labels_folded_total{label, reason}`. The [`fleet`] gauges count distinct probes,
//! recomputed from the store. Only measurements that count (`crate::trust`) reach the measurement
//! families and the fleet gauges; the rest are counted by reason only. There is never a per-probe or per-address series: per-probe detail
//! lives in the store, and a probe's key id never becomes a label.

pub mod budget;
mod counters;
mod counting;
mod families;
pub mod fleet;
mod outcome;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{Encoder, HistogramTimer, IntGauge, Registry, TextEncoder};
use vantage_measurement::wire::{KeyStanding, ObservedLocation};
use vantage_measurement::{Measurement, RejectionCode, TestKind, is_country_code};

use crate::payload::BatchRejection;
use crate::store::{Duty, FleetRows};
use crate::trust::Uncounted;
use budget::SeriesBudget;
use families::{
    ConnectionFamilies, FleetFamilies, IngestFamilies, LabelFamilies, LimitFamilies, MeasurementFamilies, OperationFamilies,
    Registrar, ReplicaFamilies, TrustFamilies,
};
use fleet::FleetPublication;
pub use outcome::{
    BatchIdentity, ConnectionRefusal, HelperOutcome, LimitScope, LimitedEndpoint, LocationField, RegistrationOutcome, StoreOp,
};

/// Measurements stored, by where, what and what was concluded.
pub const MEASUREMENTS_TOTAL: &str = "vantage_measurements_total";
/// Measurements stored, by network.
pub const MEASUREMENTS_BY_ASN_TOTAL: &str = "vantage_measurements_by_asn_total";
/// The censor's hop, from localisation follow-ups (issue 15).
pub const CENSOR_HOP: &str = "vantage_censor_hop";
/// Localisation follow-ups by outcome.
pub const LOCALISATIONS_TOTAL: &str = "vantage_localisations_total";
/// Endpoint measurements stored, by the address family they were made on (a dual-stack target
/// is measured on each): what tells IPv6-only blocking from IPv4 in a country.
pub const MEASUREMENTS_BY_FAMILY_TOTAL: &str = "vantage_measurements_by_family_total";
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
/// Ingest batches answered, by whether they were signed.
pub const BATCHES_TOTAL: &str = "vantage_collector_batches_total";
/// Ingest requests inside the handler right now.
pub const INGEST_IN_FLIGHT: &str = "vantage_collector_ingest_in_flight";
/// The probes' spool backlog, one observation per batch.
pub const SPOOL_PENDING: &str = "vantage_probe_spool_pending";
/// Stored measurements whose self-declared location differs from the GeoIP one, by kind.
pub const LOCATION_MISMATCH_TOTAL: &str = "vantage_probe_location_mismatch_total";
/// Label values folded into `other` / `ZZ`, by label and reason.
pub const LABELS_FOLDED_TOTAL: &str = "vantage_metric_labels_folded_total";
/// Series the budgeted families hold.
pub const SERIES_ADMITTED: &str = "vantage_metric_series_admitted";
/// The configured series budget.
pub const SERIES_LIMIT: &str = "vantage_metric_series_limit";
/// When the fleet gauges were last recomputed.
pub const FLEET_REFRESH_TIMESTAMP_SECONDS: &str = "vantage_collector_fleet_refresh_timestamp_seconds";
/// The window of the fleet gauges.
pub const FLEET_WINDOW_SECONDS: &str = "vantage_fleet_window_seconds";
/// Ongoing detected events (`crate::events`), by country, target, test and mechanism.
pub const EVENTS_ONGOING: &str = "vantage_events_ongoing";
/// Requests the rate limiter refused, by endpoint and scope.
pub const RATE_LIMITED_TOTAL: &str = "vantage_collector_rate_limited_total";
/// Keys and sources the rate limiter tracks, by endpoint and scope.
pub const RATE_LIMIT_ENTRIES: &str = "vantage_collector_rate_limit_entries";
/// Connections closed by the connection layer without being served, by reason.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "vantage_collector_connections_refused_total";
/// Connections open now.
pub const CONNECTIONS_OPEN: &str = "vantage_collector_connections_open";
/// The not-after time of the certificate being served (only with `--tls-cert`).
pub const TLS_CERT_EXPIRY_TIMESTAMP_SECONDS: &str = "vantage_collector_tls_cert_expiry_timestamp_seconds";
/// Measurements stored but not counted, by reason (the counting rule of `crate::trust`).
pub const MEASUREMENTS_UNCOUNTED_TOTAL: &str = "vantage_collector_measurements_uncounted_total";
/// Key registrations, by outcome.
pub const KEY_REGISTRATIONS_TOTAL: &str = "vantage_collector_key_registrations_total";
/// Keys active in the window, by standing.
pub const KEYS_ACTIVE: &str = "vantage_collector_keys_active";
/// Whether this replica holds a duty, by duty.
pub const DUTY_HELD: &str = "vantage_collector_duty_held";
/// Whether the last ping of the store succeeded.
pub const STORE_UP: &str = "vantage_collector_store_up";

/// The collector's registry and every family in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    measurements: MeasurementFamilies,
    ingest: IngestFamilies,
    operations: OperationFamilies,
    labels: LabelFamilies,
    fleet: FleetFamilies,
    limits: LimitFamilies,
    connections: ConnectionFamilies,
    trust: TrustFamilies,
    replica: ReplicaFamilies,
    /// The names allowed as `target` labels; replaced when the signed list is re-read.
    published_targets: RwLock<Arc<HashSet<String>>>,
    budget: Mutex<SeriesBudget>,
    /// (country, ASN) pairs with enough probes for an `asn` label, from the last fleet refresh.
    eligible_asns: RwLock<Arc<HashSet<(String, u32)>>>,
}

impl Metrics {
    /// Register every family. `published_targets` are the names allowed as `target` labels;
    /// `max_series` is the series budget of the label-bearing families.
    pub fn new(published_targets: HashSet<String>, max_series: usize) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let measurements = MeasurementFamilies::register(&r)?;
        let ingest = IngestFamilies::register(&r)?;
        let operations = OperationFamilies::register(&r)?;
        let labels = LabelFamilies::register(&r, max_series)?;
        let fleet = FleetFamilies::register(&r)?;
        let limits = LimitFamilies::register(&r)?;
        let connections = ConnectionFamilies::register(&r)?;
        let trust = TrustFamilies::register(&r)?;
        let replica = ReplicaFamilies::register(&r)?;
        Ok(Metrics {
            registry,
            measurements,
            ingest,
            operations,
            labels,
            fleet,
            limits,
            connections,
            trust,
            replica,
            published_targets: RwLock::new(Arc::new(published_targets)),
            budget: Mutex::new(SeriesBudget::new(max_series)),
            eligible_asns: RwLock::new(Arc::new(HashSet::new())),
        })
    }

    /// Count a committed batch: `inserted` new measurements, `duplicates` already stored.
    pub fn record_batch(&self, inserted: u64, duplicates: u64) {
        self.ingest.ingested.inc_by(inserted);
        self.ingest.duplicates.inc_by(duplicates);
        self.ingest.stored.add(i64::try_from(inserted).unwrap_or(i64::MAX));
        self.ingest.last_ingest.set(Utc::now().timestamp_millis() as f64 / 1000.0);
    }

    /// Count an answered batch by who sent it, and the probe's spool backlog behind it when it
    /// said.
    pub fn record_batch_source(&self, identity: BatchIdentity, spool_pending: Option<u64>) {
        self.ingest.batches.with_label_values(&[identity.as_str()]).inc();
        if let Some(pending) = spool_pending {
            self.ingest.spool_pending.observe(pending as f64);
        }
    }

    /// Count a stored measurement whose self-declared location disagrees with the observed one:
    /// only where the probe declared a value (not `ZZ` / 0) and the database knew one.
    pub fn record_location(&self, m: &Measurement, observed: &ObservedLocation) {
        if observed.cc.as_deref().is_some_and(|cc| m.probe.cc != "ZZ" && m.probe.cc != cc) {
            self.ingest.location_mismatch.with_label_values(&[LocationField::Country.as_str()]).inc();
        }
        if observed.asn.is_some_and(|asn| m.probe.asn != 0 && m.probe.asn != asn) {
            self.ingest.location_mismatch.with_label_values(&[LocationField::Asn.as_str()]).inc();
        }
    }

    /// Count `count` stored measurements that do not count, by why (see `crate::trust`).
    pub fn record_uncounted(&self, reason: Uncounted, count: u64) {
        self.trust.uncounted.with_label_values(&[reason.as_str()]).inc_by(count);
    }

    /// Count one key registration request.
    pub fn record_registration(&self, outcome: RegistrationOutcome) {
        self.trust.registrations.with_label_values(&[outcome.as_str()]).inc();
    }

    /// Set the active keys by standing (from a fleet refresh).
    fn publish_keys(&self, by_standing: &[(KeyStanding, u64)]) {
        for (standing, keys) in by_standing {
            self.trust.keys_active.with_label_values(&[standing.as_str()]).set(i64::try_from(*keys).unwrap_or(i64::MAX));
        }
    }

    /// Count one refused line.
    pub fn record_line_rejection(&self, reason: RejectionCode) {
        self.ingest.rejected.with_label_values(&[reason.as_str()]).inc();
    }

    /// Count one refused batch.
    pub fn record_batch_rejection(&self, reason: BatchRejection) {
        self.ingest.rejected.with_label_values(&[reason.as_str()]).inc();
    }

    /// Count an ingest request as in flight until the guard is dropped.
    pub fn ingest_in_flight(&self) -> InFlight {
        self.ingest.in_flight.inc();
        InFlight(self.ingest.in_flight.clone())
    }

    /// Start timing a store call; the time is recorded when the timer is dropped.
    pub fn store_timer(&self, op: StoreOp) -> HistogramTimer {
        self.operations.store_duration.with_label_values(&[op.as_str()]).start_timer()
    }

    /// Count one test-helper request.
    pub fn record_helper(&self, test: TestKind, outcome: HelperOutcome) {
        self.operations.helper_requests.with_label_values(&[test.as_str(), outcome.as_str()]).inc();
    }

    /// Count one request the rate limiter refused.
    pub fn record_rate_limited(&self, endpoint: LimitedEndpoint, scope: LimitScope) {
        self.limits.limited.with_label_values(&[endpoint.as_str(), scope.as_str()]).inc();
    }

    /// Set how many keys or sources the rate limiter tracks for `endpoint` in `scope`.
    pub fn set_rate_limit_entries(&self, endpoint: LimitedEndpoint, scope: LimitScope, entries: usize) {
        self.limits
            .entries
            .with_label_values(&[endpoint.as_str(), scope.as_str()])
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// Set the stored-measurements gauge (from the store's count at start-up).
    pub fn set_stored(&self, count: u64) {
        self.ingest.stored.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// What a fleet read publishes: the gauges (folded by the budget), the ASN label rule's set
    /// (`asn_min_probes` is its k), the keys by standing; `window` only labels the export.
    pub fn fleet_publication(
        &self,
        rows: &FleetRows,
        asn_min_probes: u32,
        window: Duration,
        keys: Vec<(KeyStanding, u64)>,
    ) -> FleetPublication {
        let values = {
            let mut budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
            let values = fleet::values(rows, &mut budget, |name| self.is_published(name));
            self.labels.series_admitted.set(i64::try_from(budget.series()).unwrap_or(i64::MAX));
            values
        };
        FleetPublication {
            values,
            eligible_asns: fleet::eligible_asns(&rows.asn_probes, asn_min_probes).into_iter().collect(),
            keys,
            window_secs: window.as_secs(),
            last_received: rows.last_received,
        }
    }

    /// Publish a fleet snapshot made at `made_at` (by whichever replica): the fleet gauges, the
    /// ASN label rule, the keys by standing, and `made_at` as the refresh time.
    pub fn publish_fleet(&self, published: &FleetPublication, made_at: DateTime<Utc>) -> Result<(), prometheus::Error> {
        let eligible = published.eligible_asns.iter().cloned().collect();
        *self.eligible_asns.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(eligible);
        self.fleet.gauges.publish(&published.values)?;
        self.publish_keys(&published.keys);
        if let Some(last) = published.last_received
            && (last as f64) > self.ingest.last_ingest.get()
        {
            self.ingest.last_ingest.set(last as f64);
        }
        self.fleet.window.set(i64::try_from(published.window_secs).unwrap_or(i64::MAX));
        self.fleet.refreshed.set(made_at.timestamp_millis() as f64 / 1000.0);
        Ok(())
    }

    /// Replace `vantage_events_ongoing` with `events`' (from the published snapshot): one series
    /// per event's labels, 1 per ongoing event, 0 for an ended one (so a series that fired stays
    /// while its event is in the look-back, and resolves instead of vanishing). At most
    /// `events::MAX_EVENTS` series; the target folds into `other` unless published, the country
    /// by the schema's rule.
    pub fn publish_events(&self, events: &[crate::events::Event]) -> Result<(), prometheus::Error> {
        let family = &self.fleet.events_ongoing;
        family.reset();
        for event in events {
            let target = if self.is_published(&event.target) { event.target.as_str() } else { "other" };
            let mechanism = event.mechanism.map_or("none", |m| m.as_str());
            let labels = [country_label(&event.country), target, event.test.as_str(), mechanism];
            family.get_metric_with_label_values(&labels)?.add(i64::from(event.ongoing()));
        }
        Ok(())
    }

    /// Record the outcome of this tick's store ping.
    pub fn set_store_up(&self, up: bool) {
        self.replica.store_up.set(i64::from(up));
    }

    /// Record whether this replica holds `duty`.
    pub fn set_duty_held(&self, duty: Duty, held: bool) {
        self.replica.duty_held.with_label_values(&[duty.as_str()]).set(i64::from(held));
    }

    /// The text exposition format, and its content type.
    pub fn render(&self) -> Result<(String, String), prometheus::Error> {
        let encoder = TextEncoder::new();
        let mut buffer = Vec::new();
        encoder.encode(&self.registry.gather(), &mut buffer)?;
        // The text encoder writes UTF-8; a failure here would be a bug in the encoder.
        let mut text = String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))?;
        // The two largest families, kept pre-rendered outside the registry.
        self.measurements.total.encode(&mut text);
        self.measurements.by_asn.encode(&mut text);
        Ok((text, format!("{}; charset=utf-8", encoder.format_type())))
    }

    /// Is `name` on the published target list?
    pub fn is_published(&self, name: &str) -> bool {
        self.published_targets.read().unwrap_or_else(PoisonError::into_inner).contains(name)
    }

    /// Replace the names allowed as `target` labels (a re-read signed list). Series already
    /// exported keep their values until the process restarts; new measurements follow the list.
    pub fn set_published_targets(&self, names: HashSet<String>) {
        *self.published_targets.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(names);
    }

    fn target_label<'a>(&self, name: &'a str) -> &'a str {
        if self.is_published(name) { name } else { "other" }
    }

    fn asn_has_enough_probes(&self, country: &str, asn: u32) -> bool {
        let eligible = Arc::clone(&self.eligible_asns.read().unwrap_or_else(PoisonError::into_inner));
        eligible.contains(&(country.to_string(), asn))
    }
}

impl Metrics {
    /// Count a connection the connection layer closed without serving it.
    pub fn record_connection_refused(&self, reason: ConnectionRefusal) {
        self.connections.refused.with_label_values(&[reason.as_str()]).inc();
    }

    /// Count a connection as open until the guard is dropped.
    pub fn connection_open(&self) -> InFlight {
        self.connections.open.inc();
        InFlight(self.connections.open.clone())
    }

    /// Export the served certificate's not-after time (Unix seconds). The series exists only
    /// once a certificate was loaded, so a plain-HTTP collector has none for the alert to see.
    pub fn set_tls_cert_expiry(&self, not_after_unix: i64) {
        self.connections.cert_expiry.with_label_values::<&str>(&[]).set(not_after_unix as f64);
    }
}

/// Decrements a gauge of things in progress (`vantage_collector_ingest_in_flight`,
/// `vantage_collector_connections_open`) when dropped.
#[derive(Debug)]
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `cc` if it is a country code by the schema's rule, else `ZZ` (OONI's "unknown").
pub(crate) fn country_label(cc: &str) -> &str {
    if is_country_code(cc) { cc } else { "ZZ" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use budget::{Family, FoldLabel, FoldReason};
    use vantage_measurement::example;

    #[test]
    fn country_label_folds_anything_odd_into_zz() {
        assert_eq!(country_label("DE"), "DE");
        for odd in ["de", "D", "DEU", "", "Ü1", "1A"] {
            assert_eq!(country_label(odd), "ZZ", "{odd:?}");
        }
    }

    /// Dashboards and alerts match these strings: each closed label set is pinned byte for byte,
    /// and its ids are unique.
    #[test]
    fn closed_label_sets_keep_their_values() {
        fn ids<T: Copy>(all: &[T], as_str: fn(T) -> &'static str) -> Vec<&'static str> {
            let ids: Vec<_> = all.iter().map(|m| as_str(*m)).collect();
            assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "{ids:?} repeats an id");
            ids
        }
        assert_eq!(ids(StoreOp::ALL, StoreOp::as_str), ["insert", "query", "fleet", "streaks", "timelines"]);
        assert_eq!(
            ids(HelperOutcome::ALL, HelperOutcome::as_str),
            ["executed", "forbidden", "invalid", "busy", "timed_out", "not_listed"]
        );
        assert_eq!(ids(BatchIdentity::ALL, BatchIdentity::as_str), ["signed", "anonymous"]);
        assert_eq!(ids(LocationField::ALL, LocationField::as_str), ["country", "asn"]);
        assert_eq!(ids(LimitedEndpoint::ALL, LimitedEndpoint::as_str), ["ingest", "helper", "register"]);
        assert_eq!(ids(LimitScope::ALL, LimitScope::as_str), ["key", "source"]);
        let pairs: Vec<_> = LimitedEndpoint::pairs().map(|(e, s)| format!("{e}/{s}")).collect();
        assert_eq!(pairs, ["ingest/source", "ingest/key", "helper/source", "register/source"]);
        assert_eq!(
            ids(ConnectionRefusal::ALL, ConnectionRefusal::as_str),
            [
                "global_limit",
                "source_limit",
                "proxy_header_missing",
                "proxy_header_invalid",
                "proxy_header_untrusted",
                "tls_handshake_timeout",
                "tls_handshake_failed",
                "header_timeout",
                "send_stalled"
            ]
        );
        assert_eq!(
            ids(RegistrationOutcome::ALL, RegistrationOutcome::as_str),
            ["registered", "already_registered", "malformed", "insufficient_work", "bad_signature"]
        );
        assert_eq!(ids(FoldLabel::ALL, FoldLabel::as_str), ["target", "asn", "country"]);
        assert_eq!(ids(FoldReason::ALL, FoldReason::as_str), ["unpublished", "few_probes", "budget"]);
        assert_eq!(ids(Duty::ALL, Duty::as_str), ["fleet_refresh", "retention", "publish"]);
        assert_eq!(
            ids(Family::ALL, Family::as_str),
            ["measurements", "measurements_by_asn", "probes_active", "target_verdicts", "target_measured"],
            "stored in the database: a changed id forgets its admissions"
        );
        assert_eq!(
            ids(BatchRejection::ALL, BatchRejection::as_str),
            ["body_too_large", "too_many_lines", "unsupported_encoding", "bad_encoding", "body_unreadable", "bad_signature"]
        );
        // Line and batch reasons share one `reason` label.
        let line_codes: HashSet<_> = RejectionCode::ALL.iter().map(|c| c.as_str()).collect();
        assert!(BatchRejection::ALL.iter().all(|c| !line_codes.contains(c.as_str())));
        assert_eq!(BatchIdentity::of(true), BatchIdentity::Signed);
        assert_eq!(BatchIdentity::of(false), BatchIdentity::Anonymous);
    }

    fn fleet_with_asn(cc: &str, asn: u32, probes: u64) -> FleetRows {
        FleetRows { asn_probes: vec![(cc.to_string(), asn, probes)], ..FleetRows::default() }
    }

    fn publish(metrics: &Metrics, rows: &FleetRows, k: u32) {
        let published = metrics.fleet_publication(rows, k, Duration::from_secs(3600), Vec::new());
        metrics.publish_fleet(&published, Utc::now()).expect("publish");
    }

    #[test]
    fn an_asn_becomes_a_label_only_with_k_probes() {
        let metrics = Metrics::new(HashSet::new(), 1000).expect("metrics");
        let mut m = example::tls_reset(Utc::now());
        m.probe.cc = "DE".into();
        m.probe.asn = 3320;
        publish(&metrics, &fleet_with_asn("DE", 3320, 2), 3);
        metrics.record_measurement(&m);
        publish(&metrics, &fleet_with_asn("DE", 3320, 3), 3);
        metrics.record_measurement(&m);
        let (text, _) = metrics.render().expect("render");
        let line = |asn: &str| {
            format!("vantage_measurements_by_asn_total{{asn=\"{asn}\",country=\"DE\",test=\"tls\",verdict=\"blocked\"}} 1")
        };
        assert!(text.contains(&line("other")), "{text}");
        assert!(text.contains(&line("3320")), "{text}");
        assert!(text.contains("vantage_metric_labels_folded_total{label=\"asn\",reason=\"few_probes\"} 1"), "{text}");
    }

    #[test]
    fn a_located_censor_counts_its_hop_by_country_and_mechanism() {
        use vantage_measurement::{Localisation, LocalisedHow, NotLocalised, Placement};
        let metrics = Metrics::new(HashSet::new(), 1000).expect("metrics");
        let mut m = example::tls_reset(Utc::now());
        m.verdict.localisation = Some(Localisation {
            censor_hop: Some(3),
            server_hop: Some(5),
            how: Some(LocalisedHow::Reset),
            placement: Some(Placement::Unknown),
            not_localised: None,
            attempts: 11,
        });
        metrics.record_measurement(&m);
        m.verdict.localisation = Some(Localisation::not_localised(NotLocalised::AtServerHop, 14));
        metrics.record_measurement(&m);
        let (text, _) = metrics.render().expect("render");
        let cc = country_label(&m.probe.cc);
        let hop = format!("vantage_censor_hop_bucket{{country=\"{cc}\",mechanism=\"tls.reset_after_clienthello\",le=\"3\"}} 1");
        assert!(text.contains(&hop), "{text}");
        let count = format!("vantage_censor_hop_count{{country=\"{cc}\",mechanism=\"tls.reset_after_clienthello\"}} 1");
        assert!(text.lines().any(|l| l == count), "{text}");
        assert!(text.contains("vantage_localisations_total{outcome=\"localised\",test=\"tls\"} 1"), "{text}");
        assert!(text.contains("vantage_localisations_total{outcome=\"at_server_hop\",test=\"tls\"} 1"), "{text}");
    }

    #[test]
    fn endpoint_measurements_are_counted_by_family_and_dns_is_not() {
        let metrics = Metrics::new(HashSet::new(), 1000).expect("metrics");
        let mut m = example::tls_reset(Utc::now());
        m.probe.cc = "DE".into();
        m.target.address = Some("2001:db8::20".parse().expect("ip"));
        metrics.record_measurement(&m);
        m.target.address = Some("192.0.2.20".parse().expect("ip"));
        m.verdict = vantage_measurement::Verdict::ok();
        metrics.record_measurement(&m);
        m.test = vantage_measurement::TestKind::Dns;
        m.target.address = None;
        metrics.record_measurement(&m);
        let (text, _) = metrics.render().expect("render");
        let line = |family: &str, test: &str, verdict: &str| {
            format!(
                "vantage_measurements_by_family_total{{country=\"DE\",family=\"{family}\",test=\"{test}\",verdict=\"{verdict}\"}} 1"
            )
        };
        assert!(text.contains(&line("ipv6", "tls", "blocked")), "{text}");
        assert!(text.contains(&line("ipv4", "tls", "ok")), "{text}");
        assert!(!text.contains("vantage_measurements_by_family_total{country=\"DE\",family=\"ipv4\",test=\"dns\""), "{text}");
    }

    #[test]
    fn only_published_targets_become_labels() {
        let metrics = Metrics::new(HashSet::from(["wikipedia".to_string()]), 1000).expect("metrics");
        let mut m = example::tls_reset(Utc::now());
        m.target.name = "wikipedia".into();
        metrics.record_measurement(&m);
        m.target.name = "not-published".into();
        metrics.record_measurement(&m);
        let (text, _) = metrics.render().expect("render");
        assert!(text.contains("target=\"wikipedia\""), "{text}");
        assert!(text.contains("target=\"other\""), "{text}");
        assert!(!text.contains("not-published"), "{text}");
        assert!(text.contains("vantage_metric_labels_folded_total{label=\"target\",reason=\"unpublished\"} 1"), "{text}");
    }
}
