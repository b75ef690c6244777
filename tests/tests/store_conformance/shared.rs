//! What replicas share besides measurements: the latest fleet snapshot and the series budget's
//! admissions, decided by the database for every store open on it.

use chrono::{DateTime, Utc};
use vantage_collector::store::{FleetSnapshot, SeriesClaim};

use crate::Fresh;

fn labels(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// A claim for (country, target), folding target then country.
fn claim(cc: &str, target: &str) -> SeriesClaim {
    SeriesClaim {
        family: "measurements".into(),
        candidates: vec![labels(&[cc, target]), labels(&[cc, "other"]), labels(&["ZZ", "other"])],
        cost: 1,
    }
}

/// The latest snapshot wins, whoever writes it: an older one (a replica that lost its duty
/// mid-refresh) never overwrites it, and it survives a reopen.
pub async fn the_latest_fleet_snapshot_wins_and_an_older_one_never_overwrites_it(fresh: Fresh) {
    let (a, b) = (fresh.open().await, fresh.open().await);
    assert_eq!(a.fleet_snapshot().await.expect("read"), None);
    let at = |ms| DateTime::from_timestamp_millis(ms).expect("time");
    let newer = FleetSnapshot { format: 1, made_at: at(1_700_000_001_500), body: "{\"b\":2}".into() };
    let older = FleetSnapshot { format: 1, made_at: at(1_700_000_000_000), body: "{\"a\":1}".into() };
    a.put_fleet_snapshot(&newer).await.expect("put");
    b.put_fleet_snapshot(&older).await.expect("put older");
    assert_eq!(b.fleet_snapshot().await.expect("read"), Some(newer.clone()), "a late writer is ignored");
    let newest = FleetSnapshot { format: 2, made_at: Utc::now(), body: "{\"c\":3}".into() };
    b.put_fleet_snapshot(&newest).await.expect("put newest");
    a.close().await.expect("close");
    b.close().await.expect("close");
    let read = fresh.open().await.fleet_snapshot().await.expect("read").expect("kept");
    assert_eq!((read.format, read.body, read.made_at.timestamp_millis()), (2, newest.body, newest.made_at.timestamp_millis()));
}

/// Two stores on one database (two replicas) admitting at once: the cap holds over both, each
/// combination is admitted once, and both then give the same answer for every combination.
pub async fn series_admission_holds_the_cap_across_stores_and_answers_alike(fresh: Fresh) {
    let (a, b) = (fresh.open().await, fresh.open().await);
    let max = 10;
    let wanted: Vec<SeriesClaim> = (0..40).map(|i| claim(&format!("C{}", (b'A' + i % 8) as char), &format!("t{i}"))).collect();
    let mut tasks = Vec::new();
    for (n, claim) in wanted.iter().enumerate() {
        let store = if n % 2 == 0 { std::sync::Arc::clone(&a) } else { std::sync::Arc::clone(&b) };
        let claim = claim.clone();
        tasks.push(tokio::spawn(async move { store.admit_series(vec![claim], max).await.expect("admit")[0] }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let admitted = a.admitted_series().await.expect("admitted");
    let total: u64 = admitted.iter().map(|s| u64::from(s.cost)).sum();
    assert!(total <= max + 1, "{total} series: the cap of {max} plus the one fully folded remainder");
    assert_eq!(admitted.len(), total as usize, "each combination once");
    // Asked again, from either store, in another order: the same answers, nothing new admitted.
    let from_a = a.admit_series(wanted.clone(), max).await.expect("a");
    let mut reversed = wanted.clone();
    reversed.reverse();
    let mut from_b = b.admit_series(reversed, max).await.expect("b");
    from_b.reverse();
    assert_eq!(from_a, from_b);
    assert_eq!(b.admitted_series().await.expect("admitted").len(), admitted.len());
    let kept: Vec<_> = from_a.iter().filter(|i| **i == 0).collect();
    assert!(kept.len() <= max as usize && !kept.is_empty(), "{from_a:?}");
}
