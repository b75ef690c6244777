//! Fleet gauges: how many probes are active, and how many distinct probes and networks report
//! each verdict for each target — the numbers behind "blocked for 5 probes in 3 of 4 ASNs".
//!
//! A single probe's failure is noise; correlated reports are the signal. Counters can't say how
//! many *distinct* probes agree (a probe measuring every minute would count sixty times an hour),
//! so these are gauges computed from the store: each probe counts once, with its latest verdict
//! for each (target, test) within the window.
//!
//! The counting is the pure [`count_latest`]. Publishing swaps a complete snapshot in one step
//! (a custom [`Collector`]), so a scrape never sees half of one refresh and half of the next.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};
use serde::{Deserialize, Serialize};
use vantage_measurement::wire::KeyStanding;

use super::budget::{Family, SeriesBudget};
use super::country_label;
use crate::store::{FleetRows, LatestVerdict};

/// Distinct probe keys with a measurement received in the window, by country.
pub const PROBES_ACTIVE: &str = "vantage_probes_active";
/// Distinct probes whose latest measurement of (target, test) in the window has this verdict.
pub const TARGET_PROBES: &str = "vantage_target_probes";
/// Distinct ASNs among those probes.
pub const TARGET_ASNS: &str = "vantage_target_asns";
/// Distinct ASNs with any latest verdict for (target, test): the n of "blocked in m of n ASNs".
pub const TARGET_ASNS_MEASURED: &str = "vantage_target_asns_measured";

/// The labels of [`TARGET_PROBES`] and [`TARGET_ASNS`].
pub const VERDICT_LABELS: &[&str] = &["country", "target", "test", "verdict"];

/// How many distinct probes and distinct ASNs stand behind one label combination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distinct {
    /// Distinct probe keys.
    pub probes: u64,
    /// Distinct autonomous systems those probes measured from.
    pub asns: u64,
}

/// Count distinct probes and ASNs per key. `latest` holds one row per (probe, target, test); the
/// key function folds labels (e.g. unpublished targets into `other`), so several rows of one probe
/// may share a key; the probe still counts once there.
pub fn count_latest<K: Ord>(latest: &[LatestVerdict], mut key: impl FnMut(&LatestVerdict) -> K) -> BTreeMap<K, Distinct> {
    let mut sets: BTreeMap<K, (HashSet<&str>, HashSet<u32>)> = BTreeMap::new();
    for row in latest {
        let (probes, asns) = sets.entry(key(row)).or_default();
        probes.insert(row.probe.as_str());
        asns.insert(row.asn);
    }
    sets.into_iter().map(|(k, (probes, asns))| (k, Distinct { probes: probes.len() as u64, asns: asns.len() as u64 })).collect()
}

/// The (country, ASN) pairs that at least `k` distinct probes reported from in the window: the
/// only ASNs that may become `asn` label values.
pub fn eligible_asns(asn_probes: &[(String, u32, u64)], k: u32) -> HashSet<(String, u32)> {
    asn_probes.iter().filter(|(_, _, probes)| *probes >= u64::from(k)).map(|(cc, asn, _)| (cc.clone(), *asn)).collect()
}

/// The labels of [`TARGET_ASNS_MEASURED`].
pub const MEASURED_LABELS: &[&str] = &["country", "target", "test"];

/// What one refresh publishes, every map keyed by label values already folded and admitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetValues {
    /// `[country]` → distinct active probes.
    #[serde(with = "pairs")]
    pub active: BTreeMap<Vec<String>, u64>,
    /// [`VERDICT_LABELS`] values → distinct probes and ASNs.
    #[serde(with = "pairs")]
    pub verdicts: BTreeMap<Vec<String>, Distinct>,
    /// [`MEASURED_LABELS`] values → distinct ASNs with any verdict.
    #[serde(with = "pairs")]
    pub measured: BTreeMap<Vec<String>, Distinct>,
}

/// Everything the metrics take from one fleet refresh: made by the replica holding the duty,
/// kept in the shared snapshot, published by every replica alike.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetPublication {
    /// The gauges' values.
    pub values: FleetValues,
    /// The (country, ASN) pairs allowed as `asn` labels (the k-anonymity rule), sorted.
    pub eligible_asns: BTreeSet<(String, u32)>,
    /// Active keys by standing.
    pub keys: Vec<(KeyStanding, u64)>,
    /// The window, seconds.
    pub window_secs: u64,
    /// The store's latest arrival, Unix seconds.
    pub last_received: Option<i64>,
}

/// A map with non-string keys as a JSON list of pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer, K: Serialize, V: Serialize>(map: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
    {
        Vec::<(K, V)>::deserialize(d).map(|pairs| pairs.into_iter().collect())
    }
}

/// The combinations a fleet read wants before any budget folding, for the families admitted
/// first (the measured family's labels are the verdicts' once admitted, see [`values`]).
pub fn wanted(rows: &FleetRows, is_published: impl Fn(&str) -> bool) -> BTreeSet<(Family, Vec<String>)> {
    let active = rows.active_probes.iter().map(|(cc, _)| (Family::ProbesActive, vec![country_label(cc).to_string()]));
    let verdicts = rows.latest.iter().map(|row| (Family::TargetVerdicts, verdict_labels(row, &is_published)));
    active.chain(verdicts).collect()
}

/// The measured family's wanted combinations: each row's verdict labels as `budget` admits
/// them (ask the store for [`wanted`] first), without the verdict.
pub fn wanted_measured(
    rows: &FleetRows,
    budget: &mut SeriesBudget,
    is_published: impl Fn(&str) -> bool,
) -> BTreeSet<(Family, Vec<String>)> {
    let verdicts: BTreeSet<Vec<String>> = rows.latest.iter().map(|row| verdict_labels(row, &is_published)).collect();
    verdicts
        .into_iter()
        .map(|labels| {
            let mut labels = budget.admit(Family::TargetVerdicts, labels).0;
            labels.truncate(MEASURED_LABELS.len());
            (Family::TargetMeasured, labels)
        })
        .collect()
}

/// A row's [`VERDICT_LABELS`] values before the budget: country by the schema's rule, target
/// only if published.
fn verdict_labels(row: &LatestVerdict, is_published: impl Fn(&str) -> bool) -> Vec<String> {
    let target = if is_published(&row.target) { row.target.as_str() } else { "other" };
    [country_label(&row.cc), target, row.test.as_str(), row.status.as_str()].iter().map(|l| l.to_string()).collect()
}

/// Fold a fleet read into gauge values, every label combination admitted by `budget`.
/// Combinations exported before stay, at zero when nobody reports them now, so a series never
/// vanishes under an alert.
pub fn values(rows: &FleetRows, budget: &mut SeriesBudget, is_published: impl Fn(&str) -> bool) -> FleetValues {
    let zeros = |budget: &SeriesBudget, family| {
        budget.admitted(family).map(|labels| (labels.clone(), Distinct::default())).collect::<BTreeMap<_, _>>()
    };
    let mut values = FleetValues {
        active: budget.admitted(Family::ProbesActive).map(|labels| (labels.clone(), 0)).collect(),
        verdicts: zeros(budget, Family::TargetVerdicts),
        measured: zeros(budget, Family::TargetMeasured),
    };
    for (cc, probes) in &rows.active_probes {
        let (labels, _) = budget.admit(Family::ProbesActive, vec![country_label(cc).to_string()]);
        // Countries folded into ZZ by the budget add up (a probe seen in two of them counts
        // twice there: an upper bound, and only once the budget is spent).
        *values.active.entry(labels).or_default() += probes;
    }
    let verdict_labels = |budget: &mut SeriesBudget, row: &LatestVerdict| {
        budget.admit(Family::TargetVerdicts, verdict_labels(row, &is_published)).0
    };
    values.verdicts.extend(count_latest(&rows.latest, |row| verdict_labels(budget, row)));
    // The same labels without the verdict (folded alike), for the n of "m of n ASNs".
    let measured = count_latest(&rows.latest, |row| {
        let mut labels = verdict_labels(budget, row);
        labels.truncate(MEASURED_LABELS.len());
        budget.admit(Family::TargetMeasured, labels).0
    });
    values.measured.extend(measured);
    values
}

/// The fleet gauge families, exposed as one swappable snapshot.
#[derive(Clone, Debug)]
pub struct FleetGauges {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Empty families whose descriptors are registered; every snapshot is built like them.
    templates: [IntGaugeVec; 4],
    current: RwLock<Vec<MetricFamily>>,
}

impl FleetGauges {
    /// The families, empty until the first [`publish`](Self::publish).
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(FleetGauges { inner: Arc::new(Inner { templates: families()?, current: RwLock::new(Vec::new()) }) })
    }

    /// Replace the exported values.
    pub fn publish(&self, values: &FleetValues) -> Result<(), prometheus::Error> {
        let [probes_active, target_probes, target_asns, asns_measured] = families()?;
        for (labels, probes) in &values.active {
            probes_active.get_metric_with_label_values(&as_strs(labels))?.set(saturating(*probes));
        }
        for (labels, distinct) in &values.verdicts {
            let labels = as_strs(labels);
            target_probes.get_metric_with_label_values(&labels)?.set(saturating(distinct.probes));
            target_asns.get_metric_with_label_values(&labels)?.set(saturating(distinct.asns));
        }
        for (labels, distinct) in &values.measured {
            asns_measured.get_metric_with_label_values(&as_strs(labels))?.set(saturating(distinct.asns));
        }
        let snapshot = [probes_active, target_probes, target_asns, asns_measured].iter().flat_map(|f| f.collect()).collect();
        *self.inner.current.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
        Ok(())
    }
}

impl Collector for FleetGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.templates.iter().flat_map(|f| f.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.inner.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn families() -> Result<[IntGaugeVec; 4], prometheus::Error> {
    Ok([
        IntGaugeVec::new(
            Opts::new(
                PROBES_ACTIVE,
                "Distinct probe keys with a measurement received in the window (--window-secs), by country; \
                 recomputed from the store every refresh. Anonymous submissions are not counted.",
            ),
            &["country"],
        )?,
        IntGaugeVec::new(
            Opts::new(
                TARGET_PROBES,
                "Distinct probe keys whose latest measurement of the target and test in the window has this \
                 verdict; each probe counts once. Recomputed from the store every refresh.",
            ),
            VERDICT_LABELS,
        )?,
        IntGaugeVec::new(
            Opts::new(
                TARGET_ASNS,
                "Distinct ASNs among the probes counted in vantage_target_probes for the same labels \
                 (the m of blocked in m of n networks). Recomputed from the store every refresh.",
            ),
            VERDICT_LABELS,
        )?,
        IntGaugeVec::new(
            Opts::new(
                TARGET_ASNS_MEASURED,
                "Distinct ASNs with a latest measurement of the target and test in the window, whatever the \
                 verdict (the n of blocked in m of n networks). Recomputed from the store every refresh.",
            ),
            MEASURED_LABELS,
        )?,
    ])
}

fn as_strs(labels: &[String]) -> Vec<&str> {
    labels.iter().map(String::as_str).collect()
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use vantage_measurement::{Status, TestKind};

    use super::*;

    fn row(probe: &str, asn: u32, target: &str, status: Status) -> LatestVerdict {
        LatestVerdict {
            probe: probe.into(),
            cc: "DE".into(),
            asn,
            target: target.into(),
            test: TestKind::Tls,
            status,
            mechanism: None,
            started_at: 0,
        }
    }

    #[test]
    fn probes_and_asns_are_counted_once_per_key() {
        let latest = [
            row("p1", 3320, "wiki", Status::Blocked),
            row("p2", 3320, "wiki", Status::Blocked),
            row("p3", 3209, "wiki", Status::Blocked),
            row("p4", 3209, "wiki", Status::Ok),
            // p1's other targets fold into `other`: two rows, one probe.
            row("p1", 3320, "x", Status::Blocked),
            row("p1", 3320, "y", Status::Blocked),
        ];
        let counts = count_latest(&latest, |r| {
            let target = if r.target == "wiki" { "wiki" } else { "other" };
            (target, r.status.as_str())
        });
        assert_eq!(counts[&("wiki", "blocked")], Distinct { probes: 3, asns: 2 });
        assert_eq!(counts[&("wiki", "ok")], Distinct { probes: 1, asns: 1 });
        assert_eq!(counts[&("other", "blocked")], Distinct { probes: 1, asns: 1 });
        assert_eq!(counts.len(), 3);
    }

    #[test]
    fn values_fold_unpublished_targets_and_keep_past_series_at_zero() {
        let mut budget = SeriesBudget::new(100);
        let rows = FleetRows {
            active_probes: vec![("DE".into(), 2)],
            latest: vec![row("p1", 3320, "wiki", Status::Blocked), row("p2", 3209, "secret", Status::Blocked)],
            ..FleetRows::default()
        };
        let first = values(&rows, &mut budget, |t| t == "wiki");
        let key = |target: &str| vec!["DE".to_string(), target.to_string(), "tls".to_string(), "blocked".to_string()];
        assert_eq!(first.verdicts[&key("wiki")], Distinct { probes: 1, asns: 1 });
        assert_eq!(first.verdicts[&key("other")], Distinct { probes: 1, asns: 1 });
        assert_eq!(first.measured[&vec!["DE".to_string(), "wiki".to_string(), "tls".to_string()]].asns, 1);
        // Next refresh nobody reports: the series stay, at zero.
        let second = values(&FleetRows::default(), &mut budget, |t| t == "wiki");
        assert_eq!(second.verdicts[&key("wiki")], Distinct::default());
        assert_eq!(second.active[&vec!["DE".to_string()]], 0);
        assert_eq!(second.verdicts.len(), 2);
    }

    #[test]
    fn an_asn_needs_k_probes() {
        let reported = [("DE".to_string(), 3320, 3), ("DE".to_string(), 3209, 2), ("FR".to_string(), 3320, 1)];
        assert_eq!(eligible_asns(&reported, 3), HashSet::from([("DE".to_string(), 3320)]));
        assert_eq!(eligible_asns(&reported, 1).len(), 3);
    }

    #[test]
    fn a_published_snapshot_replaces_the_previous_one() {
        let gauges = FleetGauges::new().expect("families");
        let active = |cc: &str, n| FleetValues { active: BTreeMap::from([(vec![cc.to_string()], n)]), ..FleetValues::default() };
        gauges.publish(&active("DE", 4)).expect("publish");
        gauges.publish(&active("FR", 2)).expect("publish");
        let families = gauges.collect();
        let active = families.iter().find(|f| f.name() == PROBES_ACTIVE).expect("active family");
        let values: Vec<(String, f64)> =
            active.get_metric().iter().map(|m| (m.get_label()[0].value().to_string(), m.get_gauge().get_value())).collect();
        assert_eq!(values, vec![("FR".to_string(), 2.0)]);
        assert_eq!(gauges.desc().len(), 4);
    }
}
