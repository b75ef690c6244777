//! Ingest, queries, key records, close and retention: what every backend must do alike.

use chrono::Utc;
use vantage_collector::store::{Filter, InsertOutcome, KeyActivity, OBSERVED_FIELD, StoreError};
use vantage_measurement::wire::{KeyId, ObservedLocation, ProbeKey};
use vantage_measurement::{Measurement, Mechanism, Status, TestKind, example};

use crate::{Fresh, at, collect};

fn key(n: u8) -> KeyId {
    ProbeKey::from_seed(&[n; 32]).key_id()
}

pub async fn duplicates_within_and_across_batches_are_stored_once(fresh: Fresh) {
    let store = fresh.open().await;
    let m = example::tls_reset(at(1_700_000_000));
    let outcomes = store.insert_batch(&[m.clone(), m.clone()], None, None, Utc::now()).await.expect("insert");
    assert_eq!(outcomes, vec![InsertOutcome::Inserted, InsertOutcome::Duplicate]);
    let outcomes = store.insert_batch(std::slice::from_ref(&m), None, None, Utc::now()).await.expect("insert again");
    assert_eq!(outcomes, vec![InsertOutcome::Duplicate]);
    assert_eq!(store.count().await.expect("count"), 1);
    assert_eq!(collect(store.as_ref(), &Filter::default(), 10).await, vec![m]);
}

/// Two stores on one database (two replicas; for SQLite, two openers of one file) insert the
/// same batch at once: each id is stored once, and reported `Inserted` to exactly one of them.
pub async fn concurrent_inserts_of_one_id_store_it_once(fresh: Fresh) {
    let (a, b) = (fresh.open().await, fresh.open().await);
    let now = Utc::now();
    let batch: Vec<Measurement> = (0..50).map(|i| example::tls_reset(now - chrono::Duration::seconds(i))).collect();
    let signer = key(4);
    let (ra, rb) =
        tokio::join!(a.insert_batch(&batch, Some(&signer), None, now), b.insert_batch(&batch, Some(&signer), None, now));
    for (x, y) in ra.expect("a").iter().zip(&rb.expect("b")) {
        assert_ne!(x, y, "each id is Inserted for exactly one of the two");
    }
    assert_eq!(a.count().await.expect("count"), 50);
    let activity = a.key_activity(&signer).await.expect("read").expect("a record");
    assert_eq!(activity.measurements, 50, "activity counts each stored measurement once");
}

pub async fn filters_select_by_every_indexed_column_in_time_order(fresh: Fresh) {
    let store = fresh.open().await;
    let mut late = example::tls_reset(at(1_700_000_100));
    late.probe.cc = "DE".into();
    late.probe.asn = 3320;
    late.test = TestKind::Tcp;
    late.target.name = "wikipedia".into();
    late.verdict.status = Status::Down;
    late.verdict.mechanism = Some(Mechanism::ControlFailed);
    let early = example::tls_reset(at(1_700_000_000));
    store.insert_batch(&[late.clone(), early.clone()], None, None, Utc::now()).await.expect("insert");

    let all = collect(store.as_ref(), &Filter::default(), 10).await;
    assert_eq!(all, vec![early.clone(), late.clone()], "ordered by started_at");
    assert_eq!(collect(store.as_ref(), &Filter::default(), 1).await, vec![early.clone()], "limit");

    let only_late = [
        Filter { since: Some(at(1_700_000_050)), ..Filter::default() },
        Filter { country: Some("DE".into()), ..Filter::default() },
        Filter { asn: Some(3320), ..Filter::default() },
        Filter { test: Some(TestKind::Tcp), ..Filter::default() },
        Filter { target: Some("wikipedia".into()), ..Filter::default() },
        Filter { verdict: Some(Status::Down), ..Filter::default() },
        Filter { mechanism: Some(Mechanism::ControlFailed), ..Filter::default() },
    ];
    for filter in &only_late {
        assert_eq!(collect(store.as_ref(), filter, 10).await, vec![late.clone()], "{filter:?}");
    }
    let until = Filter { until: Some(at(1_700_000_100)), ..Filter::default() };
    assert_eq!(collect(store.as_ref(), &until, 10).await, vec![early.clone()], "until is exclusive");

    // Same second: the id breaks the tie.
    let mut twins = [example::tls_reset(at(1_700_000_200)), example::tls_reset(at(1_700_000_200))];
    twins.sort_by_key(|m| m.id);
    store.insert_batch(&[twins[1].clone(), twins[0].clone()], None, None, Utc::now()).await.expect("twins");
    let since = Filter { since: Some(at(1_700_000_200)), ..Filter::default() };
    assert_eq!(collect(store.as_ref(), &since, 10).await, twins.to_vec(), "then by id");
}

pub async fn the_observed_location_is_added_to_rows_and_a_probes_rows_can_be_deleted(fresh: Fresh) {
    let store = fresh.open().await;
    let (a, b) = (key(1), key(2));
    let seen = ObservedLocation { cc: Some("DE".into()), asn: Some(3320) };
    let first = example::tls_reset(at(1_700_000_000));
    let second = example::tls_reset(at(1_700_000_001));
    store.insert_batch(std::slice::from_ref(&first), Some(&a), Some(&seen), Utc::now()).await.expect("a");
    store.insert_batch(std::slice::from_ref(&second), Some(&b), None, Utc::now()).await.expect("b");

    let lines: Vec<serde_json::Value> = crate::lines(store.as_ref(), &Filter::default(), 10)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines[0][OBSERVED_FIELD], serde_json::json!({"cc": "DE", "asn": 3320}));
    assert!(lines[1].get(OBSERVED_FIELD).is_none(), "nothing observed, nothing added");
    // Without the annotation, each line is still the measurement as stored.
    let mut plain = lines[0].clone();
    plain.as_object_mut().expect("object").remove(OBSERVED_FIELD);
    assert_eq!(serde_json::from_value::<Measurement>(plain).expect("measurement"), first);

    let by_observed = [
        Filter { observed_country: Some("DE".into()), ..Filter::default() },
        Filter { observed_asn: Some(3320), ..Filter::default() },
    ];
    for filter in &by_observed {
        let ids: Vec<serde_json::Value> = crate::lines(store.as_ref(), filter, 10)
            .await
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON")["id"].clone())
            .collect();
        assert_eq!(ids, vec![serde_json::json!(first.id)], "{filter:?}");
    }
    assert_eq!(store.delete_probe(&a).await.expect("delete"), 1);
    assert_eq!(store.delete_probe(&a).await.expect("again"), 0);
    assert_eq!(collect(store.as_ref(), &Filter::default(), 10).await, vec![second], "the other key's row stays");
}

pub async fn a_closed_store_refuses_work_and_reopens_with_its_data(fresh: Fresh) {
    let store = fresh.open().await;
    let m = example::tls_reset(at(1_700_000_000));
    store.insert_batch(std::slice::from_ref(&m), None, None, Utc::now()).await.expect("insert");
    store.close().await.expect("close");
    assert!(matches!(store.ping().await, Err(StoreError::Closed)));
    assert!(matches!(store.insert_batch(std::slice::from_ref(&m), None, None, Utc::now()).await, Err(StoreError::Closed)));
    assert!(matches!(store.query(&Filter::default(), 1).await, Err(StoreError::Closed)));

    let reopened = fresh.open().await;
    assert_eq!(collect(reopened.as_ref(), &Filter::default(), 10).await, vec![m]);
}

/// Queries streaming at once are bounded; one more is refused `Busy`, and a finished one frees
/// its place.
pub async fn queries_beyond_the_limit_are_refused_busy(fresh: Fresh) {
    use vantage_collector::store::postgres::MAX_CONCURRENT_QUERIES as PG;
    use vantage_collector::store::sqlite::MAX_CONCURRENT_QUERIES as SQLITE;
    assert_eq!(PG, SQLITE, "one limit, whatever the backend");
    let store = fresh.open().await;
    let now = Utc::now();
    // More rows than a query's channel holds, so an unread query keeps its place.
    let batch: Vec<Measurement> = (0..300).map(|i| example::tls_reset(now - chrono::Duration::seconds(i))).collect();
    store.insert_batch(&batch, None, None, now).await.expect("insert");
    let mut open = Vec::new();
    for _ in 0..SQLITE {
        open.push(store.query(&Filter::default(), 1000).await.expect("within the limit"));
    }
    assert!(matches!(store.query(&Filter::default(), 1000).await, Err(StoreError::Busy)));
    let mut first = open.remove(0);
    let mut n = 0;
    while let Some(row) = first.recv().await {
        row.expect("row");
        n += 1;
    }
    assert_eq!(n, 300);
    // The reader finished; its place is free as soon as the sender side is gone.
    let mut again = None;
    for _ in 0..100 {
        match store.query(&Filter::default(), 1).await {
            Ok(rx) => {
                again = Some(rx);
                break;
            }
            Err(StoreError::Busy) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(again.is_some(), "a finished query frees its place");
}

pub async fn activity_counts_new_measurements_and_distinct_days_and_survives_registration(fresh: Fresh) {
    let store = fresh.open().await;
    let a = key(1);
    let day0 = 1_700_006_400; // 00:00 UTC
    let batch = |n: usize, t: i64| (0..n).map(|_| example::tls_reset(at(t))).collect::<Vec<_>>();

    assert_eq!(store.key_activity(&a).await.expect("read"), None);
    store.insert_batch(&batch(3, day0), Some(&a), None, at(day0 + 10)).await.expect("insert");
    let same_day = batch(2, day0);
    store.insert_batch(&same_day, Some(&a), None, at(day0 + 80_000)).await.expect("same day");
    // Only duplicates: nothing new, no activity.
    store.insert_batch(&same_day, Some(&a), None, at(day0 + 3 * 86_400)).await.expect("duplicates");
    store.insert_batch(&batch(1, day0), Some(&a), None, at(day0 + 86_400)).await.expect("next day");
    // A clock set back a day adds measurements but no day.
    store.insert_batch(&batch(1, day0), Some(&a), None, at(day0 + 100)).await.expect("clock back");
    // Anonymous batches belong to no key.
    store.insert_batch(&batch(4, day0), None, None, at(day0 + 5 * 86_400)).await.expect("anonymous");

    let expected = KeyActivity {
        key: a.as_str().to_string(),
        registered_at: None,
        first_received: Some(day0 + 10),
        last_received: Some(day0 + 86_400),
        days: 2,
        measurements: 7,
    };
    assert_eq!(store.key_activity(&a).await.expect("read"), Some(expected.clone()));

    assert!(store.register_key(&a, at(day0 + 90_000)).await.expect("register"), "new");
    assert!(!store.register_key(&a, at(day0 + 99_000)).await.expect("again"), "already registered");
    let registered = KeyActivity { registered_at: Some(day0 + 90_000), ..expected };
    assert_eq!(store.key_activity(&a).await.expect("read"), Some(registered.clone()));

    // Registered before any measurement: no activity yet, and not among the active keys.
    let b = key(2);
    assert!(store.register_key(&b, at(day0)).await.expect("register b"));
    assert_eq!(store.active_keys(at(0)).await.expect("active"), vec![registered.clone()]);
    assert_eq!(store.active_keys(at(day0 + 86_401)).await.expect("active"), vec![]);

    // A volunteer's deletion request takes the record with the measurements.
    store.delete_probe(&a).await.expect("delete");
    assert_eq!(store.key_activity(&a).await.expect("read"), None);
}

pub async fn the_salt_is_made_once_and_kept(fresh: Fresh) {
    let store = fresh.open().await;
    let salt = store.registration_salt().await.expect("salt");
    assert_eq!(store.registration_salt().await.expect("again"), salt);
    // A second opener (a replica, or the next start) gets the same.
    let other = fresh.open().await;
    assert_eq!(other.registration_salt().await.expect("second opener"), salt);
    store.close().await.expect("close");
    other.close().await.expect("close");
    let reopened = fresh.open().await;
    assert_eq!(reopened.registration_salt().await.expect("after restart"), salt);
    let elsewhere = Fresh::new(fresh.backend);
    assert_ne!(elsewhere.open().await.registration_salt().await.expect("salt"), salt, "per installation");
}

/// `retain(before)` drops every measurement whose id's UTC day is before `before`'s day, on
/// both backends alike (whatever `started_at` says), and keeps key records.
pub async fn retention_drops_whole_days_by_the_id_and_keeps_the_rest(fresh: Fresh) {
    let store = fresh.open().await;
    let signer = key(7);
    let day0 = 1_796_169_600; // 2026-12-02 00:00 UTC
    let mut kept = Vec::new();
    let mut batch = Vec::new();
    for (offset, keep) in [(-2 * 86_400, false), (-1, false), (0, true), (86_399, true), (86_400 + 5, true)] {
        let mut m = example::tls_reset(at(day0 + offset));
        // started_at says nothing about the day a row is filed under: the id does.
        m.started_at = at(day0 + 100_000 - offset);
        if keep {
            kept.push(m.clone());
        }
        batch.push(m);
    }
    store.insert_batch(&batch, Some(&signer), None, at(day0)).await.expect("insert");
    let before = store.key_activity(&signer).await.expect("read");

    assert_eq!(store.retain(at(day0 + 43_200)).await.expect("retain"), 2, "the two rows of earlier days");
    assert_eq!(store.count().await.expect("count"), 3);
    let mut left: Vec<_> = collect(store.as_ref(), &Filter::default(), 10).await.into_iter().map(|m| m.id).collect();
    let mut expected: Vec<_> = kept.iter().map(|m| m.id).collect();
    left.sort();
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(store.key_activity(&signer).await.expect("read"), before, "key records are history, kept");
    assert_eq!(store.retain(at(day0)).await.expect("again"), 0, "nothing more to drop");

    // A day dropped can take rows again (a late spool): its place is made anew.
    let late = example::tls_reset(at(day0 - 86_400 + 7));
    let outcome = store.insert_batch(std::slice::from_ref(&late), None, None, at(day0)).await.expect("late row");
    assert_eq!(outcome, vec![InsertOutcome::Inserted]);
}
