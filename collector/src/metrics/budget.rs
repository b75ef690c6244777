//! The series budget: a hard cap on the label combinations the label-bearing families export.
//!
//! The per-label rules (published targets, ASNs with enough probes) keep each label small, but
//! their product can still grow: 250 countries × 1000 targets × 4 tests × 4 verdicts is four
//! million series. So every combination a family is about to export is first [admitted]: while
//! fewer than `max` are known, a new one is taken as is; after that, a new combination folds its
//! most open label into the `other` value (`target` or `asn` → `other`), then `country` → `ZZ`,
//! until it matches one already known. A combination folded all the way is always taken: what is
//! left are closed enums (test, verdict, mechanism), a few hundred values at most.
//!
//! Admitted combinations are never forgotten (a counter's series can't be taken back from
//! Prometheus either), so the exposition never holds more than `max` plus that closed remainder,
//! and a series that appeared once keeps appearing, which keeps `rate()` and alerts sane.
//!
//! Pure and synchronous: the caller holds it behind a mutex.
//!
//! [admitted]: SeriesBudget::admit

use std::collections::{HashMap, HashSet};

/// A label-bearing family under the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `vantage_measurements_total{country, test, target, verdict, mechanism}`.
    Measurements,
    /// `vantage_measurements_by_asn_total{country, asn, test, verdict}`.
    MeasurementsByAsn,
    /// `vantage_probes_active{country}`.
    ProbesActive,
    /// `vantage_target_probes` and `vantage_target_asns`, both `{country, target, test, verdict}`:
    /// one combination, two series.
    TargetVerdicts,
    /// `vantage_target_asns_measured{country, target, test}`.
    TargetMeasured,
}

impl Family {
    /// Which label positions fold, in order, and into what.
    fn folds(self) -> &'static [(usize, FoldLabel)] {
        match self {
            Self::Measurements => &[(2, FoldLabel::Target), (0, FoldLabel::Country)],
            Self::MeasurementsByAsn => &[(1, FoldLabel::Asn), (0, FoldLabel::Country)],
            Self::ProbesActive => &[(0, FoldLabel::Country)],
            Self::TargetVerdicts | Self::TargetMeasured => &[(1, FoldLabel::Target), (0, FoldLabel::Country)],
        }
    }

    /// Series one combination adds to the exposition.
    fn series_per_combination(self) -> usize {
        match self {
            Self::TargetVerdicts => 2,
            _ => 1,
        }
    }
}

vantage_measurement::closed_set! {
    /// A label that can be folded, the `label` of `vantage_metric_labels_folded_total`.
    pub enum FoldLabel {
        /// `target` → `other`.
        Target => "target",
        /// `asn` → `other`.
        Asn => "asn",
        /// `country` → `ZZ`.
        Country => "country",
    }
}

impl FoldLabel {
    /// The value it folds into.
    pub fn other(self) -> &'static str {
        match self {
            Self::Country => "ZZ",
            Self::Target | Self::Asn => "other",
        }
    }
}

vantage_measurement::closed_set! {
    /// Why a label was folded, the `reason` of `vantage_metric_labels_folded_total`.
    pub enum FoldReason {
        /// The target is not on the published list.
        Unpublished => "unpublished",
        /// Fewer than k distinct probes reported this ASN in this country within the window.
        FewProbes => "few_probes",
        /// The series budget is spent.
        Budget => "budget",
    }
}

/// The admitted label combinations of every budgeted family.
#[derive(Debug)]
pub struct SeriesBudget {
    max: usize,
    series: usize,
    admitted: HashMap<Family, HashSet<Vec<String>>>,
}

impl SeriesBudget {
    /// A budget of `max` series.
    pub fn new(max: usize) -> Self {
        SeriesBudget { max, series: 0, admitted: HashMap::new() }
    }

    /// Series admitted so far (may pass `max` by the closed, fully folded remainder).
    pub fn series(&self) -> usize {
        self.series
    }

    /// The configured maximum.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The labels `family` should use for `labels` (values in the family's label order), and
    /// the labels that had to fold because the budget is spent.
    pub fn admit(&mut self, family: Family, mut labels: Vec<String>) -> (Vec<String>, Vec<FoldLabel>) {
        let mut folded = Vec::new();
        let steps = family.folds();
        for step in 0..=steps.len() {
            let known = self.admitted.get(&family).is_some_and(|set| set.contains(&labels));
            if known {
                return (labels, folded);
            }
            // Room left, or nothing left to fold: take it.
            if self.series + family.series_per_combination() <= self.max || step == steps.len() {
                self.series += family.series_per_combination();
                self.admitted.entry(family).or_default().insert(labels.clone());
                return (labels, folded);
            }
            let (position, label) = steps[step];
            if let Some(value) = labels.get_mut(position)
                && value != label.other()
            {
                *value = label.other().to_string();
                folded.push(label);
            }
        }
        (labels, folded)
    }

    /// Every combination admitted for `family` (to export zeros for those absent right now).
    pub fn admitted(&self, family: Family) -> impl Iterator<Item = &Vec<String>> {
        self.admitted.get(&family).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn within_the_budget_labels_pass_unchanged() {
        let mut budget = SeriesBudget::new(10);
        let wanted = labels(&["DE", "tls", "wikipedia", "blocked", "tls.reset_after_clienthello"]);
        assert_eq!(budget.admit(Family::Measurements, wanted.clone()), (wanted.clone(), vec![]));
        assert_eq!(budget.admit(Family::Measurements, wanted.clone()), (wanted, vec![]), "known: no second slot");
        assert_eq!(budget.series(), 1);
    }

    #[test]
    fn a_spent_budget_folds_target_then_country_and_stops_growing() {
        let mut budget = SeriesBudget::new(2);
        let m = |cc: &str, target: &str| labels(&[cc, "tls", target, "blocked", "other"]);
        budget.admit(Family::Measurements, m("DE", "a"));
        budget.admit(Family::Measurements, m("DE", "other"));
        // Full. A new target in a known country folds to (DE, other), which is known.
        assert_eq!(budget.admit(Family::Measurements, m("DE", "b")), (m("DE", "other"), vec![FoldLabel::Target]));
        // A new country folds target, then country, and the closed remainder is taken.
        assert_eq!(
            budget.admit(Family::Measurements, m("FR", "c")),
            (m("ZZ", "other"), vec![FoldLabel::Target, FoldLabel::Country])
        );
        assert_eq!(budget.series(), 3);
        // And from now on, a flood of anything costs nothing more.
        for i in 0..1000 {
            budget.admit(Family::Measurements, m(&format!("X{}", i % 26), &format!("t{i}")));
        }
        assert_eq!(budget.series(), 3);
        assert_eq!(budget.admitted(Family::Measurements).count(), 3);
    }

    #[test]
    fn a_label_already_other_is_not_counted_as_folded() {
        let mut budget = SeriesBudget::new(1);
        budget.admit(Family::MeasurementsByAsn, labels(&["DE", "3320", "tls", "ok"]));
        let (used, folded) = budget.admit(Family::MeasurementsByAsn, labels(&["DE", "other", "tls", "ok"]));
        assert_eq!(used, labels(&["ZZ", "other", "tls", "ok"]));
        assert_eq!(folded, vec![FoldLabel::Country]);
    }

    #[test]
    fn a_two_series_family_spends_two() {
        let mut budget = SeriesBudget::new(3);
        budget.admit(Family::TargetVerdicts, labels(&["DE", "a", "tls", "ok"]));
        assert_eq!(budget.series(), 2);
        let (used, folded) = budget.admit(Family::TargetVerdicts, labels(&["DE", "b", "tls", "ok"]));
        assert_eq!(used, labels(&["ZZ", "other", "tls", "ok"]), "two more would pass 3: folded all the way");
        assert_eq!(folded, vec![FoldLabel::Target, FoldLabel::Country]);
    }
}
