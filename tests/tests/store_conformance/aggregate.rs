//! Aggregation: counts per group against a model the test computes from the rows it stored,
//! time buckets in UTC (ISO weeks from Monday, calendar months), and the fleet's counting rule.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use vantage_collector::store::{AggregateRow, Aggregation, Axis, Filter, TimeGrain};
use vantage_measurement::wire::{KeyId, ObservedLocation, ProbeKey};
use vantage_measurement::{Measurement, Mechanism, Status, TestKind, example};

use crate::Fresh;

fn key(n: u8) -> KeyId {
    ProbeKey::from_seed(&[n; 32]).key_id()
}

/// One stored row and who sent it.
struct Sent {
    m: Measurement,
    signer: Option<u8>,
    contradicted: bool,
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().expect("valid time")
}

/// Rows across week and month boundaries, countries, ASNs, targets, tests and verdicts, from
/// three probes and anonymous batches.
fn rows() -> Vec<Sent> {
    let times = [
        utc(2026, 11, 29, 23, 59, 59), // Sunday: the week of Monday 11-23
        utc(2026, 11, 30, 0, 0, 0),    // Monday
        utc(2026, 11, 30, 0, 59, 59),
        utc(2026, 12, 2, 13, 30, 0),
        utc(2026, 12, 6, 23, 59, 59),
        utc(2027, 1, 1, 0, 0, 0),
    ];
    let countries = [("DE", 3320), ("DE", 3209), ("IR", 197_207)];
    let verdicts = [
        (Status::Blocked, Some(Mechanism::TlsResetAfterClientHello)),
        (Status::Ok, None),
        (Status::Blocked, Some(Mechanism::DnsNxdomainHijack)),
        (Status::Down, Some(Mechanism::ControlFailed)),
        (Status::Inconclusive, None),
    ];
    let mut out = Vec::new();
    for i in 0..90usize {
        let mut m = example::tls_reset(times[i % times.len()]);
        let (cc, asn) = countries[i % 3];
        m.probe.cc = cc.into();
        m.probe.asn = asn;
        m.target.name = ["wikipedia", "signal"][i % 2].into();
        m.test = [TestKind::Tls, TestKind::Dns][(i / 2) % 2];
        let (status, mechanism) = verdicts[(i / 3) % verdicts.len()];
        m.verdict.status = status;
        m.verdict.mechanism = mechanism;
        let signer = [Some(1), Some(2), Some(3), None][(i / 5) % 4];
        out.push(Sent { m, signer, contradicted: i % 17 == 0 && signer.is_some() });
    }
    out
}

/// Store the rows: one batch per (signer, contradicted) pair.
async fn store_rows(store: &dyn vantage_collector::store::Store, rows: &[Sent]) {
    let mut batches: BTreeMap<(Option<u8>, bool), Vec<Measurement>> = BTreeMap::new();
    for sent in rows {
        batches.entry((sent.signer, sent.contradicted)).or_default().push(sent.m.clone());
    }
    for ((signer, contradicted), batch) in batches {
        let probe = signer.map(key);
        // A contradicted row's collector-observed ASN differs from the claimed one.
        let observed = contradicted.then_some(ObservedLocation { cc: None, asn: Some(64_512) });
        store.insert_batch(&batch, probe.as_ref(), observed.as_ref(), Utc::now()).await.expect("insert");
    }
}

/// The bucket start by the calendar, independently of the stores' arithmetic.
fn bucket(t: DateTime<Utc>, grain: TimeGrain) -> DateTime<Utc> {
    let day = utc(t.year(), t.month(), t.day(), 0, 0, 0);
    match grain {
        TimeGrain::Hour => day + Duration::hours(i64::from(t.hour())),
        TimeGrain::Day => day,
        TimeGrain::Week => day - Duration::days(i64::from(t.weekday().num_days_from_monday())),
        TimeGrain::Month => utc(t.year(), t.month(), 1, 0, 0, 0),
    }
}

/// A group of the model: its row, counts per status and mechanism, and its signers.
type Group = (AggregateRow, BTreeMap<Status, u64>, BTreeMap<Mechanism, u64>, BTreeSet<u8>);

/// What the aggregation should return, computed row by row (filters: country, since, until).
fn model(rows: &[Sent], aggregation: &Aggregation) -> Vec<AggregateRow> {
    let mut groups: BTreeMap<Vec<String>, Group> = BTreeMap::new();
    let f = &aggregation.filter;
    for sent in rows {
        let m = &sent.m;
        let counted = match &aggregation.counted {
            None => true,
            Some(keys) => sent.signer.is_some_and(|s| keys.contains(&key(s).as_str().to_string())) && !sent.contradicted,
        };
        if !counted
            || f.country.as_ref().is_some_and(|c| *c != m.probe.cc)
            || f.since.is_some_and(|s| m.started_at < s)
            || f.until.is_some_and(|u| m.started_at >= u)
        {
            continue;
        }
        let mut row = AggregateRow::default();
        let mut sort_key = Vec::new();
        for axis in &aggregation.group_by {
            match axis {
                Axis::Time => {
                    let b = bucket(m.started_at, aggregation.grain);
                    sort_key.push(format!("{:020}", b.timestamp()));
                    row.time = Some(b);
                }
                Axis::Country => {
                    sort_key.push(m.probe.cc.clone());
                    row.cc = Some(m.probe.cc.clone());
                }
                Axis::Asn => {
                    sort_key.push(format!("{:010}", m.probe.asn));
                    row.asn = Some(m.probe.asn);
                }
                Axis::Target => {
                    sort_key.push(m.target.name.clone());
                    row.target = Some(m.target.name.clone());
                }
                Axis::Test => {
                    sort_key.push(m.test.as_str().into());
                    row.test = Some(m.test);
                }
                Axis::Mechanism => {
                    // Rows without a mechanism sort first.
                    sort_key.push(m.verdict.mechanism.map_or(String::new(), |x| format!("~{}", x.as_str())));
                    row.mechanism = m.verdict.mechanism;
                }
            }
        }
        let entry = groups.entry(sort_key).or_insert_with(|| (row, BTreeMap::new(), BTreeMap::new(), BTreeSet::new()));
        entry.0.measurements += 1;
        *entry.1.entry(m.verdict.status).or_default() += 1;
        if let Some(mech) = m.verdict.mechanism {
            *entry.2.entry(mech).or_default() += 1;
        }
        entry.3.extend(sent.signer);
    }
    let mut out: Vec<AggregateRow> = groups
        .into_values()
        .map(|(mut row, statuses, mechanisms, probes)| {
            row.statuses = statuses.into_iter().collect();
            row.mechanisms = mechanisms.into_iter().collect();
            row.probes = probes.len() as u64;
            row
        })
        .collect();
    if aggregation.group_by.is_empty() && out.is_empty() {
        out.push(AggregateRow::default());
    }
    out
}

pub async fn aggregates_count_every_group_like_a_row_by_row_model(fresh: Fresh) {
    let store = fresh.open().await;
    let rows = rows();
    store_rows(store.as_ref(), &rows).await;
    let cases: Vec<(Vec<Axis>, TimeGrain, Filter)> = vec![
        (vec![], TimeGrain::Day, Filter::default()),
        (vec![Axis::Time, Axis::Country], TimeGrain::Day, Filter::default()),
        (vec![Axis::Time], TimeGrain::Hour, Filter::default()),
        (vec![Axis::Time], TimeGrain::Week, Filter::default()),
        (vec![Axis::Time, Axis::Target], TimeGrain::Month, Filter::default()),
        (vec![Axis::Country, Axis::Asn], TimeGrain::Day, Filter::default()),
        (vec![Axis::Mechanism, Axis::Test], TimeGrain::Day, Filter::default()),
        (vec![Axis::Target], TimeGrain::Day, Filter { country: Some("DE".into()), ..Filter::default() }),
        (
            vec![Axis::Time, Axis::Country],
            TimeGrain::Day,
            Filter { since: Some(utc(2026, 11, 30, 0, 0, 0)), until: Some(utc(2026, 12, 6, 23, 59, 59)), ..Filter::default() },
        ),
        // Nothing matches: no groups; without axes, one row of zeros.
        (vec![Axis::Country], TimeGrain::Day, Filter { country: Some("FR".into()), ..Filter::default() }),
        (vec![], TimeGrain::Day, Filter { country: Some("FR".into()), ..Filter::default() }),
    ];
    for (group_by, grain, filter) in cases {
        let aggregation = Aggregation { filter, group_by, grain, counted: None };
        let got = store.aggregate(&aggregation).await.expect("aggregate");
        assert_eq!(got, model(&rows, &aggregation), "{aggregation:?}");
    }
    // Sanity of the model itself: the week of a Sunday starts the Monday before.
    let weeks = store
        .aggregate(&Aggregation { group_by: vec![Axis::Time], grain: TimeGrain::Week, ..Aggregation::default() })
        .await
        .expect("weeks");
    let starts: Vec<_> = weeks.iter().filter_map(|r| r.time).collect();
    assert_eq!(starts, vec![utc(2026, 11, 23, 0, 0, 0), utc(2026, 11, 30, 0, 0, 0), utc(2026, 12, 28, 0, 0, 0)]);
    assert_eq!(weeks.iter().map(|r| r.measurements).sum::<u64>(), 90);
}

pub async fn counted_aggregates_read_only_the_listed_keys_and_no_contradicted_row(fresh: Fresh) {
    let store = fresh.open().await;
    let rows = rows();
    store_rows(store.as_ref(), &rows).await;
    for counted in [vec![key(1).as_str().to_string()], vec![key(1).as_str().to_string(), key(3).as_str().to_string()], vec![]] {
        let aggregation = Aggregation {
            group_by: vec![Axis::Country, Axis::Time],
            grain: TimeGrain::Month,
            counted: Some(counted),
            ..Aggregation::default()
        };
        let got = store.aggregate(&aggregation).await.expect("aggregate");
        assert_eq!(got, model(&rows, &aggregation), "{aggregation:?}");
    }
    let total = store.aggregate(&Aggregation::default()).await.expect("total");
    assert_eq!(total.len(), 1);
    assert_eq!((total[0].measurements, total[0].probes), (90, 3), "anonymous rows count as rows, never as probes");
}
