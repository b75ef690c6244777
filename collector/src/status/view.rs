//! What the status page shows, computed from a fleet read: pure, so it is tested without a
//! database or a browser.
//!
//! Per country: the (target, test) pairs that at least one probe's latest measurement in the
//! window calls `blocked`, how (the mechanisms), by how many of the probes and networks that
//! measured it, and since when. Each probe counts once per (target, test), as in the gauges.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vantage_measurement::{Mechanism, Status, TestKind};

use super::timeline::Timelines;
use crate::store::{FleetRows, LatestVerdict, StreakKey};

/// Rows shown per country; the rest are counted.
pub const MAX_ROWS_PER_COUNTRY: usize = 50;
/// Probes per row whose streak start is looked up ("since" is the earliest among them).
pub const MAX_STREAK_PROBES_PER_ROW: usize = 25;

/// The whole page (shared between replicas in the fleet snapshot).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// When the fleet was read (`None`: not yet).
    pub read_at: Option<DateTime<Utc>>,
    /// The window, in seconds.
    pub window_secs: u64,
    /// Distinct probe keys active in the window.
    pub probes_total: u64,
    /// When a measurement last arrived.
    pub last_ingest: Option<DateTime<Utc>>,
    /// Countries with blocking first, then the rest, alphabetically within each group.
    pub countries: Vec<Country>,
    /// Per country, the blocked share of each target over time (filled from the store).
    #[serde(default)]
    pub timelines: Timelines,
}

/// One country.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Country {
    /// Two upper-case letters (`ZZ`: unknown).
    pub cc: String,
    /// Distinct probes active there in the window.
    pub probes_active: u64,
    /// Blocked (target, test) pairs, most probes first.
    pub blocked: Vec<BlockedRow>,
    /// Blocked pairs not shown.
    pub more: usize,
}

/// One blocked (target, test) in one country.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockedRow {
    /// The target's name as measured.
    pub target: String,
    /// Is it on the published list? (Other names come from probes' own lists.)
    pub published: bool,
    /// The test.
    pub test: TestKind,
    /// Mechanisms among the blocked probes, most common first.
    pub mechanisms: Vec<(Mechanism, u64)>,
    /// Probes whose latest verdict is `blocked`.
    pub probes_blocked: u64,
    /// Probes with any latest verdict for this (target, test).
    pub probes_total: u64,
    /// Distinct ASNs among the blocked probes.
    pub asns_blocked: u64,
    /// Distinct ASNs among all those probes.
    pub asns_total: u64,
    /// When the earliest current blocking streak began (filled from the store).
    pub since: Option<DateTime<Utc>>,
    /// The blocked probes whose streaks are looked up (never rendered, never shared).
    #[serde(skip)]
    pub streak_keys: Vec<StreakKey>,
}

/// Build the page from a fleet read; `since` is left for the streak lookup.
pub fn build(rows: &FleetRows, read_at: Option<DateTime<Utc>>, window_secs: u64, is_published: impl Fn(&str) -> bool) -> Page {
    let mut groups: BTreeMap<(&str, &str, TestKind), Vec<&LatestVerdict>> = BTreeMap::new();
    for row in &rows.latest {
        groups.entry((row.cc.as_str(), row.target.as_str(), row.test)).or_default().push(row);
    }
    let mut countries: BTreeMap<String, Country> = rows
        .active_probes
        .iter()
        .map(|(cc, probes)| (cc.clone(), Country { cc: cc.clone(), probes_active: *probes, ..Country::default() }))
        .collect();
    for ((cc, target, test), group) in groups {
        let country = countries.entry(cc.to_string()).or_insert_with(|| Country { cc: cc.to_string(), ..Country::default() });
        if let Some(row) = blocked_row(target, test, &group, is_published(target)) {
            country.blocked.push(row);
        }
    }
    let mut countries: Vec<Country> = countries.into_values().collect();
    for country in &mut countries {
        country.blocked.sort_by(|a, b| {
            b.probes_blocked.cmp(&a.probes_blocked).then_with(|| (&a.target, a.test.as_str()).cmp(&(&b.target, b.test.as_str())))
        });
        country.more = country.blocked.len().saturating_sub(MAX_ROWS_PER_COUNTRY);
        country.blocked.truncate(MAX_ROWS_PER_COUNTRY);
    }
    // Stable: alphabetical within each group.
    countries.sort_by_key(|c| c.blocked.is_empty());
    Page {
        read_at,
        window_secs,
        probes_total: rows.probes_total,
        last_ingest: rows.last_received.and_then(|t| DateTime::from_timestamp(t, 0)),
        countries,
        timelines: Timelines::default(),
    }
}

fn blocked_row(target: &str, test: TestKind, group: &[&LatestVerdict], published: bool) -> Option<BlockedRow> {
    let blocked: Vec<&&LatestVerdict> = group.iter().filter(|r| r.status == Status::Blocked).collect();
    if blocked.is_empty() {
        return None;
    }
    let distinct_probes =
        |rows: &mut dyn Iterator<Item = &&LatestVerdict>| rows.map(|r| r.probe.as_str()).collect::<HashSet<_>>().len() as u64;
    let distinct_asns =
        |rows: &mut dyn Iterator<Item = &&LatestVerdict>| rows.map(|r| r.asn).collect::<HashSet<_>>().len() as u64;
    let mut mechanisms: HashMap<Mechanism, u64> = HashMap::new();
    for row in &blocked {
        if let Some(mechanism) = row.mechanism {
            *mechanisms.entry(mechanism).or_default() += 1;
        }
    }
    let mut mechanisms: Vec<(Mechanism, u64)> = mechanisms.into_iter().collect();
    mechanisms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str())));
    let streak_keys = blocked
        .iter()
        .take(MAX_STREAK_PROBES_PER_ROW)
        .map(|r| StreakKey { probe: r.probe.clone(), target: r.target.clone(), test: r.test })
        .collect();
    Some(BlockedRow {
        target: target.to_string(),
        published,
        test,
        mechanisms,
        probes_blocked: distinct_probes(&mut blocked.iter().copied()),
        probes_total: distinct_probes(&mut group.iter()),
        asns_blocked: distinct_asns(&mut blocked.iter().copied()),
        asns_total: distinct_asns(&mut group.iter()),
        since: None,
        streak_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(probe: &str, cc: &str, asn: u32, target: &str, status: Status, mechanism: Option<Mechanism>) -> LatestVerdict {
        LatestVerdict {
            probe: probe.into(),
            cc: cc.into(),
            asn,
            target: target.into(),
            test: TestKind::Tls,
            status,
            mechanism,
            started_at: 0,
        }
    }

    #[test]
    fn blocked_pairs_are_summarised_per_country_with_counts_and_mechanisms() {
        let reset = Some(Mechanism::TlsResetAfterClientHello);
        let timeout = Some(Mechanism::TlsTimeoutSni);
        let rows = FleetRows {
            probes_total: 5,
            active_probes: vec![("DE".into(), 4), ("FR".into(), 1)],
            latest: vec![
                row("a", "DE", 1, "wiki", Status::Blocked, reset),
                row("b", "DE", 1, "wiki", Status::Blocked, reset),
                row("c", "DE", 2, "wiki", Status::Blocked, timeout),
                row("d", "DE", 3, "wiki", Status::Ok, None),
                row("a", "DE", 1, "news", Status::Ok, None),
                row("e", "FR", 9, "wiki", Status::Ok, None),
            ],
            last_received: Some(1_700_000_000),
            ..FleetRows::default()
        };
        let page = build(&rows, None, 3600, |t| t == "wiki");
        assert_eq!(page.probes_total, 5);
        assert_eq!(page.countries.len(), 2);
        let de = &page.countries[0];
        assert_eq!((de.cc.as_str(), de.probes_active, de.blocked.len()), ("DE", 4, 1), "news is not blocked");
        let wiki = &de.blocked[0];
        assert!(wiki.published);
        assert_eq!((wiki.probes_blocked, wiki.probes_total, wiki.asns_blocked, wiki.asns_total), (3, 4, 2, 3));
        assert_eq!(wiki.mechanisms, vec![(Mechanism::TlsResetAfterClientHello, 2), (Mechanism::TlsTimeoutSni, 1)]);
        assert_eq!(wiki.streak_keys.len(), 3);
        let fr = &page.countries[1];
        assert!(fr.blocked.is_empty(), "France reports it fine");
        assert_eq!(page.last_ingest.map(|t| t.timestamp()), Some(1_700_000_000));
    }

    #[test]
    fn countries_with_blocking_come_first_and_rows_are_capped() {
        let mut latest = vec![row("z", "AA", 1, "ok-site", Status::Ok, None)];
        for i in 0..(MAX_ROWS_PER_COUNTRY + 7) {
            latest.push(row("p", "ZZ", 1, &format!("t{i:03}"), Status::Blocked, Some(Mechanism::Other)));
        }
        let page = build(&FleetRows { latest, ..FleetRows::default() }, None, 3600, |_| false);
        let order: Vec<&str> = page.countries.iter().map(|c| c.cc.as_str()).collect();
        assert_eq!(order, vec!["ZZ", "AA"]);
        assert_eq!(page.countries[0].blocked.len(), MAX_ROWS_PER_COUNTRY);
        assert_eq!(page.countries[0].more, 7);
        assert!(!page.countries[0].blocked[0].published);
    }
}
