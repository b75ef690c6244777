//! What researchers read beside the rows: the signer's standing at ingest, and the positions
//! keyset paging walks by.

use chrono::Utc;
use vantage_collector::store::{CollectorKey, Filter, KEY_FIELD, Position, Submission};
use vantage_measurement::wire::{KeyStanding, ProbeKey};
use vantage_measurement::{Measurement, example};

use crate::{Fresh, at, collect};

pub async fn the_standing_at_ingest_is_stored_beside_each_row_and_filters(fresh: Fresh) {
    let store = fresh.open().await;
    let key = ProbeKey::from_seed(&[5; 32]).key_id();
    let rows: Vec<Measurement> = (0..5).map(|i| example::tls_reset(at(1_700_000_000 + i))).collect();
    let sent = |standing| Submission { probe: Some(&key), observed: None, standing, received_at: Utc::now() };
    store.insert(&rows[0..1], &sent(Some(KeyStanding::Unregistered.into()))).await.expect("unregistered");
    store.insert(&rows[1..2], &sent(Some(KeyStanding::Trusted.into()))).await.expect("trusted");
    let anonymous = Submission { probe: None, observed: None, standing: Some(CollectorKey::Anonymous), received_at: Utc::now() };
    store.insert(&rows[2..3], &anonymous).await.expect("anonymous");
    store.insert(&rows[3..4], &sent(None)).await.expect("standing unknown");
    store.insert_batch(&rows[4..5], Some(&key), None, Utc::now()).await.expect("through insert_batch");
    // A duplicate keeps what its first copy was stored with.
    store.insert(&rows[0..1], &sent(Some(KeyStanding::Trusted.into()))).await.expect("again");

    let lines: Vec<serde_json::Value> = crate::lines(store.as_ref(), &Filter::default(), 10)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let keys: Vec<Option<&str>> = lines.iter().map(|l| l.get(KEY_FIELD).and_then(|k| k.as_str())).collect();
    assert_eq!(keys, vec![Some("unregistered"), Some("trusted"), Some("anonymous"), None, None]);
    let trusted = Filter { collector_key: Some(CollectorKey::Trusted), ..Filter::default() };
    let only: Vec<Measurement> = crate::lines(store.as_ref(), &trusted, 10)
        .await
        .iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("JSON");
            v.as_object_mut().expect("object").remove(KEY_FIELD);
            serde_json::from_value(v).expect("measurement")
        })
        .collect();
    assert_eq!(only, vec![rows[1].clone()]);
}

pub async fn positions_and_keyset_bounds_walk_every_row_once(fresh: Fresh) {
    let store = fresh.open().await;
    // Ties on the second: the id breaks them.
    let mut rows: Vec<Measurement> = (0..23).map(|i| example::tls_reset(at(1_700_000_000 + i / 3))).collect();
    store.insert_batch(&rows, None, None, Utc::now()).await.expect("insert");
    rows.sort_by_key(|m| (m.started_at, m.id));
    let position = |m: &Measurement| Position { started_at: m.started_at.timestamp(), id: m.id };
    let ends = store.positions(&Filter::default(), 4, 2).await.expect("positions");
    assert_eq!(ends, vec![position(&rows[4]), position(&rows[5])]);
    let mut seen = Vec::new();
    let mut filter = Filter::default();
    loop {
        let ends = store.positions(&filter, 4, 2).await.expect("page end");
        let page_filter = Filter { through: ends.first().copied().filter(|_| ends.len() == 2), ..filter.clone() };
        let page = collect(store.as_ref(), &page_filter, 5).await;
        seen.extend(page.iter().cloned());
        if ends.len() < 2 {
            break;
        }
        filter.after = Some(ends[0]);
    }
    assert_eq!(seen, rows, "every row once, in order");
}
