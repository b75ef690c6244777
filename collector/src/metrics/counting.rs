//! Counting measurements under the label rules and the series budget, and settling the budget
//! with the store: a label combination this replica has not seen is asked of the database first,
//! so every replica sharing it folds alike (`budget.rs` has the rule, `docs/metrics.md` the why).

use std::collections::{BTreeSet, HashMap};
use std::sync::PoisonError;

use prometheus::Histogram;
use vantage_measurement::{Measurement, Operation, TestKind, Vantage};

use super::budget::{Family, FoldLabel, FoldReason};
use super::{Metrics, country_label, fleet};
use crate::store::{AdmittedSeries, FleetRows, Store, StoreError};

impl Metrics {
    /// Count one newly stored measurement (never a duplicate). Its label combinations are
    /// taken from the budget as [settled](Self::settle_measurements) with the store.
    pub fn record_measurement(&self, m: &Measurement) {
        self.record_measurements(&[m]);
    }

    /// Count newly stored measurements (never duplicates): those of one batch, with one label
    /// lookup per combination of labels and per phase histogram the batch has, not per
    /// measurement. Label combinations are taken from the budget as
    /// [settled](Self::settle_measurements) with the store.
    pub fn record_measurements(&self, batch: &[&Measurement]) {
        let mut combinations: HashMap<Combination<'_>, u64> = HashMap::new();
        for m in batch {
            *combinations.entry(Combination::of(m)).or_default() += 1;
        }
        for (combination, count) in combinations {
            self.record_combination(&combination, count);
        }
        for m in batch {
            // DNS measurements have no address, so no family.
            if let Some(ip) = m.target.address {
                let family = vantage_measurement::Family::of(ip).as_str();
                let labels = [country_label(&m.probe.cc), family, m.test.as_str(), m.verdict.status.as_str()];
                self.measurements.by_family.with_label_values(&labels).inc();
            }
        }
        let mut phases: HashMap<(TestKind, Operation), Histogram> = HashMap::new();
        for m in batch {
            self.record_localisation(m);
            for step in m.observations.iter().filter(|o| o.vantage == Vantage::Probe) {
                // A negative or NaN duration is a probe bug; leave it out of operators' graphs.
                if step.duration_ms.is_finite() && step.duration_ms >= 0.0 {
                    let histogram = phases.entry((m.test, step.op)).or_insert_with(|| {
                        self.measurements.phase_duration.with_label_values(&[m.test.as_str(), step.op.as_str()])
                    });
                    histogram.observe(step.duration_ms / 1000.0);
                }
            }
        }
    }

    /// A verdict's localisation block: its outcome (`localised` or the closed set of reasons), and
    /// the censor's hop by country (folded as everywhere) and mechanism.
    fn record_localisation(&self, m: &Measurement) {
        let Some(block) = m.verdict.localisation else { return };
        let outcome = block.not_localised.map_or("localised", |r| r.as_str());
        self.measurements.localisations.with_label_values(&[m.test.as_str(), outcome]).inc();
        if let (Some(hop), Some(mechanism)) = (block.censor_hop, m.verdict.mechanism) {
            let country = country_label(&m.probe.cc);
            self.measurements.censor_hop.with_label_values(&[country, mechanism.as_str()]).observe(f64::from(hop));
        }
    }

    /// Count `count` measurements of one label combination.
    fn record_combination(&self, c: &Combination<'_>, count: u64) {
        let (by_target, by_asn, mut folds) = self.combination_labels(c);
        let (by_target, by_asn) = {
            let mut budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
            let by_target = budget.admit(Family::Measurements, by_target);
            let by_asn = budget.admit(Family::MeasurementsByAsn, by_asn);
            self.labels.series_admitted.set(i64::try_from(budget.series()).unwrap_or(i64::MAX));
            (by_target, by_asn)
        };
        folds.extend(by_target.1.iter().chain(&by_asn.1).map(|label| (*label, FoldReason::Budget)));
        self.measurements.total.inc_by(&strs(&by_target.0), count);
        self.measurements.by_asn.inc_by(&strs(&by_asn.0), count);
        for (label, reason) in folds {
            self.labels.folded.with_label_values(&[label.as_str(), reason.as_str()]).inc_by(count);
        }
    }

    /// The label values `c` wants in [`MEASUREMENTS_TOTAL`] and [`MEASUREMENTS_BY_ASN_TOTAL`]
    /// before the budget, and what the per-label rules folded.
    fn combination_labels(&self, c: &Combination<'_>) -> (Vec<String>, Vec<String>, BTreeSet<(FoldLabel, FoldReason)>) {
        let Combination { country, test, verdict, mechanism, .. } = *c;
        let test = test.as_str();
        let mut folds = BTreeSet::new();
        let target = self.target_label(c.target);
        if target != c.target {
            folds.insert((FoldLabel::Target, FoldReason::Unpublished));
        }
        let asn = if self.asn_has_enough_probes(country, c.asn) {
            c.asn.to_string()
        } else {
            folds.insert((FoldLabel::Asn, FoldReason::FewProbes));
            "other".to_string()
        };
        (owned(&[country, test, target, verdict, mechanism]), owned(&[country, &asn, test, verdict]), folds)
    }

    /// Ask the store about the label combinations of `counted` (measurements about to be
    /// recorded) that this process has not seen, so every replica folds them alike. On a store
    /// error this process decides alone until the next answer (logged).
    pub async fn settle_measurements<'a>(&self, store: &dyn Store, counted: impl IntoIterator<Item = &'a Measurement>) {
        let wanted = counted.into_iter().flat_map(|m| {
            let (by_target, by_asn, _) = self.combination_labels(&Combination::of(m));
            [(Family::Measurements, by_target), (Family::MeasurementsByAsn, by_asn)]
        });
        if let Err(e) = self.settle(store, wanted.collect()).await {
            tracing::warn!("series budget: the store could not be asked; this replica folds alone for now: {e}");
        }
    }

    /// Ask the store about every combination of `wanted` the budget does not know, in one call.
    async fn settle(&self, store: &dyn Store, wanted: BTreeSet<(Family, Vec<String>)>) -> Result<(), StoreError> {
        let (claims, max) = {
            let budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
            let claims: Vec<_> = wanted.into_iter().filter_map(|(family, labels)| budget.claim(family, labels)).collect();
            (claims, budget.max())
        };
        if claims.is_empty() {
            return Ok(());
        }
        let chosen = store.admit_series(claims.clone(), max as u64).await?;
        let mut budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        for (claim, index) in claims.iter().zip(chosen) {
            budget.learn(claim, index);
        }
        self.labels.series_admitted.set(i64::try_from(budget.series()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Take every combination the store holds (other replicas' admissions).
    pub fn load_series(&self, admitted: &[AdmittedSeries]) {
        let mut budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        budget.load(admitted);
        self.labels.series_admitted.set(i64::try_from(budget.series()).unwrap_or(i64::MAX));
    }

    /// Ask the store about the fleet gauges' label combinations in `rows` (the replica making
    /// the snapshot, before [`fleet_publication`](Self::fleet_publication)).
    pub async fn settle_fleet(&self, store: &dyn Store, rows: &FleetRows) -> Result<(), StoreError> {
        self.settle(store, fleet::wanted(rows, |name| self.is_published(name))).await?;
        let measured = {
            let mut budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
            fleet::wanted_measured(rows, &mut budget, |name| self.is_published(name))
        };
        self.settle(store, measured).await
    }
}

/// The labels one measurement is counted under, before the label rules and the budget fold them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Combination<'a> {
    country: &'a str,
    asn: u32,
    test: TestKind,
    target: &'a str,
    verdict: &'static str,
    mechanism: &'static str,
}

impl<'a> Combination<'a> {
    fn of(m: &'a Measurement) -> Self {
        Combination {
            country: country_label(&m.probe.cc),
            asn: m.probe.asn,
            test: m.test,
            target: &m.target.name,
            verdict: m.verdict.status.as_str(),
            mechanism: m.verdict.mechanism.map_or("none", |mech| mech.as_str()),
        }
    }
}

fn owned(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|l| l.to_string()).collect()
}

fn strs(labels: &[String]) -> Vec<&str> {
    labels.iter().map(String::as_str).collect()
}
