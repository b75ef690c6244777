//! The fleet reads and duties: counted keys only, contradicted rows left out, the latest verdict
//! per (probe, target, test), blocking streaks, and which store holds a duty.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use vantage_collector::store::{Duty, StreakKey};
use vantage_measurement::wire::{KeyId, ObservedLocation, ProbeKey};
use vantage_measurement::{Measurement, Mechanism, ProbeInfo, Status, TestKind, example};

use crate::{Backend, Fresh};

fn key(n: u8) -> KeyId {
    ProbeKey::from_seed(&[n; 32]).key_id()
}

fn ids(keys: &[&KeyId]) -> Vec<String> {
    keys.iter().map(|k| k.as_str().to_string()).collect()
}

fn m(at: i64, cc: &str, asn: u32, target: &str, status: Status) -> Measurement {
    let mut m = example::tls_reset(DateTime::from_timestamp(at, 0).expect("time"));
    m.probe.cc = cc.into();
    m.probe.asn = asn;
    m.target.name = target.into();
    m.verdict.status = status;
    m.verdict.mechanism = match status {
        Status::Ok => None,
        Status::Blocked => Some(Mechanism::TlsResetAfterClientHello),
        _ => Some(Mechanism::ControlFailed),
    };
    m
}

pub async fn each_probe_counts_once_with_its_latest_verdict_in_the_window(fresh: Fresh) {
    let store = fresh.open().await;
    let now = Utc::now().timestamp();
    let (a, b, c) = (key(1), key(2), key(3));
    // a: blocked, then ok (latest ok); b: ok, then blocked; c: only before the window.
    store.insert_batch(&[m(now - 50, "DE", 3320, "wiki", Status::Blocked)], Some(&a), None, Utc::now()).await.expect("a1");
    store.insert_batch(&[m(now - 10, "DE", 3320, "wiki", Status::Ok)], Some(&a), None, Utc::now()).await.expect("a2");
    store.insert_batch(&[m(now - 40, "DE", 3209, "wiki", Status::Ok)], Some(&b), None, Utc::now()).await.expect("b1");
    store.insert_batch(&[m(now - 20, "DE", 3209, "wiki", Status::Blocked)], Some(&b), None, Utc::now()).await.expect("b2");
    store.insert_batch(&[m(now - 5000, "FR", 3215, "wiki", Status::Blocked)], Some(&c), None, Utc::now()).await.expect("c");
    // Anonymous: stored, never counted as a probe.
    store.insert_batch(&[m(now - 5, "DE", 3320, "wiki", Status::Blocked)], None, None, Utc::now()).await.expect("anonymous");

    let since = DateTime::from_timestamp(now - 3600, 0).expect("since");
    let rows = store.fleet(since, &ids(&[&a, &b, &c])).await.expect("fleet");
    let latest: Vec<(&str, &str, &str)> =
        rows.latest.iter().map(|l| (l.probe.as_str(), l.cc.as_str(), l.status.as_str())).collect();
    let mut expected = vec![(a.as_str(), "DE", "ok"), (b.as_str(), "DE", "blocked")];
    expected.sort();
    assert_eq!(latest, expected);
    // All arrived just now, so c is an active probe (by arrival) even though its
    // measurement is too old to say anything about the present.
    assert_eq!(rows.active_probes, vec![("DE".to_string(), 2), ("FR".to_string(), 1)]);
    assert_eq!(rows.probes_total, 3);
    assert_eq!(rows.asn_probes, vec![("DE".to_string(), 3209, 1), ("DE".to_string(), 3320, 1), ("FR".to_string(), 3215, 1)]);
    assert!(!rows.truncated);
    assert!(rows.last_received.is_some_and(|t| t >= now));
}

pub async fn a_streak_starts_at_the_first_block_after_the_last_ok(fresh: Fresh) {
    let store = fresh.open().await;
    let (a, b, c) = (key(1), key(2), key(3));
    let t0 = 1_700_000_000;
    let history = [
        (t0, Status::Blocked),
        (t0 + 100, Status::Ok),
        (t0 + 200, Status::Blocked),
        (t0 + 250, Status::Down),
        (t0 + 300, Status::Blocked),
    ];
    for (at, status) in history {
        store.insert_batch(&[m(at, "DE", 1, "wiki", status)], Some(&a), None, Utc::now()).await.expect("a");
    }
    store.insert_batch(&[m(t0 + 50, "DE", 1, "wiki", Status::Blocked)], Some(&b), None, Utc::now()).await.expect("b");
    store.insert_batch(&[m(t0 + 60, "DE", 1, "wiki", Status::Ok)], Some(&c), None, Utc::now()).await.expect("c");
    let streak = |probe: &KeyId| StreakKey { probe: probe.as_str().to_string(), target: "wiki".into(), test: TestKind::Tls };
    let since = store.blocked_since(vec![streak(&a), streak(&b), streak(&c)]).await.expect("streaks");
    assert_eq!(since, vec![Some(t0 + 200), Some(t0 + 50), None], "`down` does not end a streak; `ok` does");
}

pub async fn only_counted_keys_and_uncontradicted_rows_are_read(fresh: Fresh) {
    let store = fresh.open().await;
    let now = Utc::now().timestamp();
    let (trusted, untrusted) = (key(1), key(2));
    let seen = |cc: &str, asn| ObservedLocation { cc: Some(cc.into()), asn: Some(asn) };
    // Every case of the contradiction rule: (claimed cc, claimed ASN, observed, target).
    let cases = [
        ("DE", 3320, Some(seen("DE", 3320)), "same"),
        ("DE", 3320, Some(seen("DE", 3209)), "other-asn"),
        ("DE", 3320, Some(seen("FR", 3320)), "other-country"),
        ("DE", 0, Some(seen("DE", 3209)), "unclaimed-asn"),
        ("DE", 0, Some(seen("FR", 3209)), "unclaimed-asn-other-country"),
        ("ZZ", 0, Some(seen("FR", 3209)), "unclaimed"),
        ("DE", 3320, Some(ObservedLocation { cc: None, asn: None }), "unknown-address"),
        ("DE", 3320, None, "unseen"),
    ];
    for (cc, asn, observed, target) in &cases {
        for signer in [&trusted, &untrusted] {
            let batch = [m(now - 10, cc, *asn, target, Status::Blocked)];
            store.insert_batch(&batch, Some(signer), observed.as_ref(), Utc::now()).await.expect("insert");
        }
    }
    let since = DateTime::from_timestamp(now - 3600, 0).expect("since");
    let rows = store.fleet(since, &ids(&[&trusted])).await.expect("fleet");
    let read: BTreeSet<&str> = rows.latest.iter().map(|l| l.target.as_str()).collect();
    let expected: BTreeSet<&str> = cases
        .iter()
        .filter(|(cc, asn, observed, _)| {
            let claimed = ProbeInfo { cc: cc.to_string(), asn: *asn, network_type: None, network_epoch: None };
            vantage_collector::trust::contradiction(&claimed, observed.as_ref()).is_none()
        })
        .map(|(_, _, _, target)| *target)
        .collect();
    assert_eq!(read, expected, "the SQL and crate::trust::contradiction agree");
    assert_eq!(expected.len(), 5, "three contradicted rows are left out");
    assert!(rows.latest.iter().all(|l| l.probe == trusted.as_str()), "only the counted key");
    assert_eq!(rows.probes_total, 1);
    assert_eq!(store.fleet(since, &[]).await.expect("fleet").probes_total, 0, "nobody counts");

    // A streak ignores contradicted rows too: the contradicted `ok` does not end it.
    let streak = StreakKey { probe: trusted.as_str().to_string(), target: "wiki".into(), test: TestKind::Tls };
    store.insert_batch(&[m(now - 30, "DE", 3320, "wiki", Status::Blocked)], Some(&trusted), None, Utc::now()).await.expect("b");
    let lie = [m(now - 20, "DE", 3320, "wiki", Status::Ok)];
    store.insert_batch(&lie, Some(&trusted), Some(&seen("DE", 64512)), Utc::now()).await.expect("ok from elsewhere");
    assert_eq!(store.blocked_since(vec![streak]).await.expect("streak"), vec![Some(now - 30)]);
}

/// SQLite (one process) holds every duty; two PostgreSQL stores on one database (two replicas)
/// never hold the same duty at once, and when the holder closes the other takes it.
pub async fn duties_are_held_by_one_store_at_a_time(fresh: Fresh) {
    let a = fresh.open().await;
    assert!(a.hold_duty(Duty::Retention).await.expect("a"), "the first to ask takes it");
    assert!(a.hold_duty(Duty::Retention).await.expect("a again"), "and keeps it");
    if fresh.backend == Backend::Sqlite {
        assert!(a.hold_duty(Duty::FleetRefresh).await.expect("all duties"));
        return;
    }
    let b = fresh.open().await;
    assert!(!b.hold_duty(Duty::Retention).await.expect("b"), "held by a");
    assert!(b.hold_duty(Duty::FleetRefresh).await.expect("b"), "another duty is free");
    assert!(!a.hold_duty(Duty::FleetRefresh).await.expect("a"), "held by b");
    a.close().await.expect("close a");
    assert!(b.hold_duty(Duty::Retention).await.expect("b after a closed"), "the duty passes on");
    assert!(b.hold_duty(Duty::Retention).await.expect("b again"));
    let c = fresh.open().await;
    assert!(!c.hold_duty(Duty::Retention).await.expect("c"), "b holds it now");
}
