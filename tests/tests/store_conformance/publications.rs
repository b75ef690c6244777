//! The export's reads and the publication log: a day's rows by arrival in the export's order
//! (country, test, id), one group of them, and manifests that are never overwritten.

use chrono::NaiveDate;
use vantage_collector::store::{DayRows, Publication};
use vantage_measurement::{Measurement, TestKind, example};

use crate::{Fresh, at};

async fn day_lines(store: &dyn vantage_collector::Store, rows: &DayRows) -> Vec<String> {
    let mut rx = store.day_rows(rows).await.expect("day rows");
    let mut out = Vec::new();
    while let Some(line) = rx.recv().await {
        out.push(line.expect("row"));
    }
    out
}

/// Rows are read by the day they *arrived* (not started), grouped by country and test, each group
/// in id order, byte for byte the lines `query` returns; a group reads alone.
pub async fn a_days_rows_come_by_arrival_grouped_by_country_and_test_in_id_order(fresh: Fresh) {
    let store = fresh.open().await;
    let day = NaiveDate::from_ymd_opt(2026, 11, 30).expect("day");
    let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp();
    // Started days earlier, arrived on the day: filed by arrival.
    let started = at(start - 3 * 86_400);
    let mut batch: Vec<Measurement> = (0..12).map(|i| example::tls_reset(started + chrono::Duration::seconds(i))).collect();
    for (i, m) in batch.iter_mut().enumerate() {
        m.probe.cc = ["DE", "AT", "IR"][i % 3].into();
    }
    store.insert_batch(&batch[..6], None, None, at(start)).await.expect("first second of the day");
    store.insert_batch(&batch[6..], None, None, at(start + 86_399)).await.expect("last second of the day");
    let outside = [example::tls_reset(started), example::tls_reset(started)];
    store.insert_batch(&outside[..1], None, None, at(start - 1)).await.expect("the day before");
    store.insert_batch(&outside[1..], None, None, at(start + 86_400)).await.expect("the day after");

    let lines = day_lines(store.as_ref(), &DayRows { day, group: None }).await;
    let mut expected = batch.clone();
    expected.sort_by(|a, b| (&a.probe.cc, a.test.as_str(), a.id).cmp(&(&b.probe.cc, b.test.as_str(), b.id)));
    let ids: Vec<String> = lines.iter().map(|l| serde_json::from_str::<Measurement>(l).expect("row").id.to_string()).collect();
    assert_eq!(ids, expected.iter().map(|m| m.id.to_string()).collect::<Vec<_>>(), "(cc, test, id) order");
    let queried = crate::lines(store.as_ref(), &vantage_collector::Filter::default(), 100).await;
    assert!(lines.iter().all(|l| queried.contains(l)), "the same lines as the query's");

    let iran = day_lines(store.as_ref(), &DayRows { day, group: Some(("IR".into(), TestKind::Tls)) }).await;
    assert_eq!(iran.len(), 4);
    assert!(day_lines(store.as_ref(), &DayRows { day, group: Some(("IR".into(), TestKind::Dns)) }).await.is_empty());
    assert_eq!(store.earliest_received().await.expect("earliest"), Some(at(start - 1)));
    store.close().await.expect("close");
}

/// A published manifest is never overwritten (by this store or another on the same database);
/// the latest and the list follow the days, and survive a reopen.
pub async fn a_published_manifest_is_never_overwritten(fresh: Fresh) {
    let (a, b) = (fresh.open().await, fresh.open().await);
    let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).expect("day");
    assert_eq!(a.latest_publication().await.expect("latest"), None);
    assert_eq!(a.earliest_received().await.expect("earliest"), None);
    let first = Publication { day: day(29), manifest: "{\"first\":1}\n".into() };
    assert!(a.publish(&first).await.expect("publish"));
    let rival = Publication { day: day(29), manifest: "{\"rival\":1}\n".into() };
    assert!(!b.publish(&rival).await.expect("publish again"), "refused, not an error");
    assert!(!a.publish(&rival).await.expect("publish again"));
    let second = Publication { day: day(30), manifest: "{\"second\":1}\n".into() };
    assert!(b.publish(&second).await.expect("next day"));
    assert_eq!(a.publication(day(29)).await.expect("read"), Some(first.clone()));
    assert_eq!(a.publication(day(28)).await.expect("read"), None);
    a.close().await.expect("close");
    b.close().await.expect("close");
    let again = fresh.open().await;
    assert_eq!(again.latest_publication().await.expect("latest"), Some(second));
    assert_eq!(again.published_days().await.expect("days"), vec![day(29), day(30)]);
    again.close().await.expect("close");
}
