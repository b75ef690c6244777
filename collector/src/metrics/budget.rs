//! The series budget: a hard cap on the label combinations the label-bearing families export.
//!
//! The per-label rules (published targets, ASNs with enough probes) keep each label small, but
//! their product can still grow: 250 countries × 1000 targets × 4 tests × 4 verdicts is four
//! million series. So every combination a family is about to export is first [admitted]: while
//! fewer than `max` are known, a new one is taken as is; after that, a new combination folds its
//! most open label into the `other` value (`target` or `asn` → `other`), then `country` → `ZZ`,
//! until it matches one already known. A combination folded all the way is always taken: what is
//! left are closed enums (test, verdict, mechanism), a few hundred values at most. The rule is
//! [`first_admissible`] over the fold chain ([`SeriesBudget::candidates`]).
//!
//! Admitted combinations are never forgotten (a counter's series can't be taken back from
//! Prometheus either), so the exposition never holds more than `max` plus that closed remainder,
//! and a series that appeared once keeps appearing, which keeps `rate()` and alerts sane.
//!
//! **Across replicas** the database decides: first come, first served would fold different
//! combinations on each replica, and Prometheus' sum over instances would then add folded and
//! unfolded series of the same measurements. So a combination this process has not seen is
//! [claimed](SeriesBudget::claim) from the store ([`Store::admit_series`], one transaction
//! against the cap for all replicas), and the answer is [learnt](SeriesBudget::learn); every
//! admitted combination is [loaded](SeriesBudget::load) at start and each fleet tick. The answer
//! for a combination never changes once given (admitted stays admitted; a spent cap stays spent),
//! so caching it is safe. Only when the store can't be asked does this process decide alone
//! ([`SeriesBudget::admit`] on a miss), and it says so in its log.
//!
//! Pure and synchronous: the caller holds it behind a mutex and does the asking.
//!
//! [admitted]: SeriesBudget::admit
//! [`Store::admit_series`]: crate::store::Store::admit_series

use std::collections::{HashMap, HashSet};

use crate::store::{AdmittedSeries, SeriesClaim};

/// Fold answers remembered for combinations that were not admitted as they are; past this many
/// the memory is dropped and rebuilt from the store on demand.
const MAX_REMEMBERED_FOLDS: usize = 100_000;

vantage_measurement::closed_set! {
    /// A label-bearing family under the budget; the id is how the store names it.
    pub enum Family {
        /// `vantage_measurements_total{country, test, target, verdict, mechanism}`.
        Measurements => "measurements",
        /// `vantage_measurements_by_asn_total{country, asn, test, verdict}`.
        MeasurementsByAsn => "measurements_by_asn",
        /// `vantage_probes_active{country}`.
        ProbesActive => "probes_active",
        /// `vantage_target_probes` and `vantage_target_asns`, both `{country, target, test, verdict}`:
        /// one combination, two series.
        TargetVerdicts => "target_verdicts",
        /// `vantage_target_asns_measured{country, target, test}`.
        TargetMeasured => "target_measured",
    }
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
    fn series_per_combination(self) -> u32 {
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

/// Which candidate of a fold chain is admitted: the first that is admitted already (`known`),
/// or fits (`total + cost <= max`), or is the last (folded all the way). `known` is never empty.
/// The one rule, used by this process alone and by every store inside its transaction.
pub fn first_admissible(known: &[bool], total: u64, cost: u64, max: u64) -> usize {
    let last = known.len().saturating_sub(1);
    known.iter().position(|known| *known || total.saturating_add(cost) <= max).unwrap_or(last).min(last)
}

/// The labels a family uses for a wanted combination, and the labels folded for the budget.
pub type Admitted = (Vec<String>, Vec<FoldLabel>);

/// The admitted label combinations of every budgeted family.
#[derive(Debug)]
pub struct SeriesBudget {
    max: usize,
    series: usize,
    admitted: HashMap<Family, HashSet<Vec<String>>>,
    /// Wanted combinations that were folded, and what they folded to (as decided).
    folds: HashMap<(Family, Vec<String>), usize>,
}

impl SeriesBudget {
    /// A budget of `max` series.
    pub fn new(max: usize) -> Self {
        SeriesBudget { max, series: 0, admitted: HashMap::new(), folds: HashMap::new() }
    }

    /// Series admitted so far (may pass `max` by the closed, fully folded remainder).
    pub fn series(&self) -> usize {
        self.series
    }

    /// The configured maximum.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The fold chain of `labels` (values in the family's label order): the wanted combination,
    /// then each step of folding, with the labels folded so far. A label already `other` folds
    /// to itself and is not counted as folded.
    pub fn candidates(family: Family, labels: Vec<String>) -> Vec<Admitted> {
        let mut chain = vec![(labels.clone(), Vec::new())];
        let (mut labels, mut folded) = (labels, Vec::new());
        for (position, label) in family.folds() {
            if let Some(value) = labels.get_mut(*position)
                && value != label.other()
            {
                *value = label.other().to_string();
                folded.push(*label);
            }
            chain.push((labels.clone(), folded.clone()));
        }
        chain
    }

    /// The labels `family` should use for `labels`, and the labels that had to fold because the
    /// budget is spent: as learnt from the store, else decided here.
    pub fn admit(&mut self, family: Family, labels: Vec<String>) -> Admitted {
        let fold = self.folds.get(&(family, labels.clone())).copied();
        let mut chain = Self::candidates(family, labels);
        let index = match fold {
            Some(index) => index,
            None if self.knows(family, &chain[0].0) => 0,
            None => {
                let known: Vec<bool> = chain.iter().map(|(c, _)| self.knows(family, c)).collect();
                let cost = family.series_per_combination();
                let index = first_admissible(&known, self.series as u64, u64::from(cost), self.max as u64);
                self.remember(family, &chain, index);
                index
            }
        };
        chain.swap_remove(index.min(chain.len() - 1))
    }

    /// What to ask the store for `labels`, or `None` if the answer is known here already.
    pub fn claim(&self, family: Family, labels: Vec<String>) -> Option<SeriesClaim> {
        if self.knows(family, &labels) || self.folds.contains_key(&(family, labels.clone())) {
            return None;
        }
        Some(SeriesClaim {
            family: family.as_str().to_string(),
            candidates: Self::candidates(family, labels).into_iter().map(|(c, _)| c).collect(),
            cost: family.series_per_combination(),
        })
    }

    /// Take the store's answer to `claim`: candidate `index` is admitted.
    pub fn learn(&mut self, claim: &SeriesClaim, index: usize) {
        let Some(family) = Family::parse(&claim.family) else { return };
        let chain: Vec<Admitted> = claim.candidates.iter().map(|c| (c.clone(), Vec::new())).collect();
        if index < chain.len() {
            self.remember(family, &chain, index);
        }
    }

    /// Add what the store holds (other replicas' admissions); a family this build does not know
    /// is left out.
    pub fn load(&mut self, admitted: &[AdmittedSeries]) {
        for series in admitted {
            if let Some(family) = Family::parse(&series.family) {
                self.insert(family, series.labels.clone());
            }
        }
    }

    /// Every combination admitted for `family` (to export zeros for those absent right now).
    pub fn admitted(&self, family: Family) -> impl Iterator<Item = &Vec<String>> {
        self.admitted.get(&family).into_iter().flatten()
    }

    fn knows(&self, family: Family, labels: &[String]) -> bool {
        self.admitted.get(&family).is_some_and(|set| set.contains(labels))
    }

    fn remember(&mut self, family: Family, chain: &[Admitted], index: usize) {
        self.insert(family, chain[index].0.clone());
        if index > 0 {
            if self.folds.len() >= MAX_REMEMBERED_FOLDS {
                self.folds.clear();
            }
            self.folds.insert((family, chain[0].0.clone()), index);
        }
    }

    fn insert(&mut self, family: Family, labels: Vec<String>) {
        if self.admitted.entry(family).or_default().insert(labels) {
            self.series += family.series_per_combination() as usize;
        }
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

    #[test]
    fn the_first_known_or_fitting_candidate_is_admitted_and_the_last_always() {
        assert_eq!(first_admissible(&[false, false, false], 0, 1, 1), 0, "room: as is");
        assert_eq!(first_admissible(&[false, true, false], 1, 1, 1), 1, "full: the first known");
        assert_eq!(first_admissible(&[true, true, false], 1, 1, 1), 0, "known as is");
        assert_eq!(first_admissible(&[false, false, false], 1, 1, 1), 2, "full, none known: folded all the way");
        assert_eq!(first_admissible(&[false, false], 1, 2, 2), 1, "a two-series combination needs two");
        assert_eq!(first_admissible(&[false], u64::MAX, 1, 1), 0, "no overflow, and one candidate is the last");
    }

    /// What a store does with a claim, in memory: the rule over a shared set.
    #[derive(Default)]
    struct Arbiter {
        admitted: HashSet<(String, Vec<String>)>,
        total: u64,
    }

    impl Arbiter {
        fn decide(&mut self, claim: &SeriesClaim, max: u64) -> usize {
            let known: Vec<bool> =
                claim.candidates.iter().map(|c| self.admitted.contains(&(claim.family.clone(), c.clone()))).collect();
            let index = first_admissible(&known, self.total, u64::from(claim.cost), max);
            if self.admitted.insert((claim.family.clone(), claim.candidates[index].clone())) {
                self.total += u64::from(claim.cost);
            }
            index
        }
    }

    #[test]
    fn replicas_that_ask_one_arbiter_fold_the_same_combinations_whatever_the_order() {
        let m = |cc: &str, target: &str| labels(&[cc, "tls", target, "blocked", "other"]);
        let wanted = [m("DE", "a"), m("DE", "b"), m("FR", "c"), m("DE", "other"), m("NL", "d")];
        let mut arbiter = Arbiter::default();
        let (mut one, mut two) = (SeriesBudget::new(2), SeriesBudget::new(2));
        // Replica one sees the combinations in order, replica two backwards; each asks only what
        // it does not know, then loads what the other admitted (the fleet tick).
        let mut ask = |budget: &mut SeriesBudget, labels: &Vec<String>| {
            if let Some(claim) = budget.claim(Family::Measurements, labels.clone()) {
                let index = arbiter.decide(&claim, 2);
                budget.learn(&claim, index);
            }
            budget.admit(Family::Measurements, labels.clone()).0
        };
        let first: Vec<_> = wanted.iter().map(|w| ask(&mut one, w)).collect();
        let mut second: Vec<_> = wanted.iter().rev().map(|w| ask(&mut two, w)).collect();
        second.reverse();
        assert_eq!(first, second, "every combination folds alike on both");
        assert_eq!(first[..2], [m("DE", "a"), m("DE", "b")], "one came first: a and b fit");
        assert_eq!(first[2], m("ZZ", "other"), "then the cap is spent");
        assert_eq!(first[3], m("ZZ", "other"), "(DE, other) was never admitted");
        let shared: Vec<AdmittedSeries> = arbiter
            .admitted
            .iter()
            .map(|(family, labels)| AdmittedSeries { family: family.clone(), labels: labels.clone(), cost: 1 })
            .collect();
        one.load(&shared);
        two.load(&shared);
        assert_eq!(one.series(), two.series());
        assert_eq!(one.series() as u64, arbiter.total, "the cap holds over both");
        assert!(arbiter.total <= 2 + 1, "two as is, plus the folded remainder");
    }

    #[test]
    fn a_fold_chain_folds_each_label_once_in_order() {
        let chain = SeriesBudget::candidates(Family::MeasurementsByAsn, labels(&["DE", "other", "tls", "ok"]));
        let used: Vec<_> = chain.iter().map(|(l, f)| (l[0].as_str(), l[1].as_str(), f.len())).collect();
        assert_eq!(used, vec![("DE", "other", 0), ("DE", "other", 0), ("ZZ", "other", 1)]);
        let mut budget = SeriesBudget::new(5);
        budget.load(&[AdmittedSeries { family: "unknown_family".into(), labels: labels(&["x"]), cost: 1 }]);
        assert_eq!(budget.series(), 0, "a family this build does not know is left out");
    }
}
