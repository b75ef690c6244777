//! Reading events from the store: hourly buckets of the look-back through `Store::aggregate`
//! (counted keys only), the detector over each series, then each event's evidence.
//!
//! Bounded: the look-back is read a day at a time (each read at most `MAX_AGGREGATE_ROWS` groups:
//! 4,000 series of 24 hours; a bigger fleet is read in fewer hours at a time), at most
//! [`MAX_SERIES`] series are
//! run (the most measured), at most [`MAX_EVENTS`] events kept, and each kept event costs three
//! small aggregations for its evidence. What was cut is logged.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, DurationRound, Utc};
use vantage_measurement::{Status, TestKind};

use super::detector::{Bucket, Params};
use super::{BUCKET, Event, HourBucket, LOOKBACK_HOURS, MAX_EVENTS, MAX_SERIES, from_buckets, keep_bounded};
use crate::store::{AggregateRow, Aggregation, Axis, Filter, Store, StoreError, TimeGrain};

/// A series' identity: (country, target, test).
type SeriesKey = (String, String, TestKind);

/// The events of the look-back ending at `now`, counting only the rows of `counted` keys; ASNs
/// named only if in `eligible_asns` (the metrics' k-anonymity rule).
pub async fn read(
    store: &dyn Store,
    counted: &[String],
    now: DateTime<Utc>,
    eligible_asns: &BTreeSet<(String, u32)>,
) -> Result<Vec<Event>, StoreError> {
    let end = now.duration_trunc(BUCKET).unwrap_or(now) + BUCKET;
    let first_hour = end - BUCKET * (LOOKBACK_HOURS as i32);
    let mut series: BTreeMap<SeriesKey, Vec<HourBucket>> = BTreeMap::new();
    let mut from = first_hour;
    // A day per read; fewer hours when a day's series would pass the store's group cap.
    let mut hours = 24;
    while from < end {
        let until = (from + chrono::Duration::hours(hours)).min(end);
        let filter = Filter { since: Some(from), until: Some(until), ..Filter::default() };
        let rows = match aggregate(store, counted, filter, vec![Axis::Country, Axis::Target, Axis::Test, Axis::Time]).await {
            Err(StoreError::TooLarge { .. }) if hours > 1 => {
                hours /= 2;
                continue;
            }
            read => read?,
        };
        for row in rows {
            let (Some(cc), Some(target), Some(test), Some(start)) = (row.cc.clone(), row.target.clone(), row.test, row.time)
            else {
                continue;
            };
            series.entry((cc, target, test)).or_default().push(bucket(&row, start));
        }
        from = until;
    }
    let skipped = series.len().saturating_sub(MAX_SERIES);
    if skipped > 0 {
        tracing::warn!(skipped, kept = MAX_SERIES, "events: more series than the cap; the least measured are not run");
    }
    let mut ranked: Vec<(SeriesKey, Vec<HourBucket>)> = series.into_iter().collect();
    ranked.sort_by_key(|(_, buckets)| std::cmp::Reverse(buckets.iter().map(|b| b.counts.measured).sum::<u64>()));
    let params = Params::default();
    let mut events: Vec<Event> = ranked
        .iter()
        .take(MAX_SERIES)
        .flat_map(|((cc, target, test), buckets)| from_buckets(cc, target, *test, buckets, first_hour, &params))
        .collect();
    let dropped = keep_bounded(&mut events);
    if dropped > 0 {
        tracing::warn!(dropped, kept = MAX_EVENTS, "events: more events than the cap; the oldest ended ones are dropped");
    }
    for event in &mut events {
        // Raised by the hour still filling: seen now, not at its end.
        event.detected_at = event.detected_at.min(now);
        evidence(store, counted, event, eligible_asns).await?;
    }
    Ok(events)
}

/// One aggregation of counted rows by `group_by`, hourly.
async fn aggregate(
    store: &dyn Store,
    counted: &[String],
    filter: Filter,
    group_by: Vec<Axis>,
) -> Result<Vec<AggregateRow>, StoreError> {
    store.aggregate(&Aggregation { filter, group_by, grain: TimeGrain::Hour, counted: Some(counted.to_vec()) }).await
}

/// A row's counts as the detector reads them: `ok` and `blocked` are conclusive, `down` and
/// `inconclusive` say nothing about blocking.
fn bucket(row: &AggregateRow, start: DateTime<Utc>) -> HourBucket {
    let count = |status| row.statuses.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
    let blocked = count(Status::Blocked);
    HourBucket {
        start,
        counts: Bucket { blocked, measured: blocked + count(Status::Ok), probes: row.probes },
        mechanisms: row.mechanisms.clone(),
    }
}

/// Fill in the probes and ASNs behind `event`, from its onset to its end (or now).
async fn evidence(
    store: &dyn Store,
    counted: &[String],
    event: &mut Event,
    eligible_asns: &BTreeSet<(String, u32)>,
) -> Result<(), StoreError> {
    let during = Filter {
        since: Some(event.started_at),
        until: event.ended_at,
        country: Some(event.country.clone()),
        target: Some(event.target.clone()),
        test: Some(event.test),
        ..Filter::default()
    };
    let blocked = Filter { verdict: Some(Status::Blocked), ..during.clone() };
    let total = |rows: Vec<AggregateRow>| rows.first().map_or(0, |r| r.probes);
    event.probes_measuring = total(aggregate(store, counted, during, Vec::new()).await?);
    event.probes_blocked = total(aggregate(store, counted, blocked.clone(), Vec::new()).await?);
    let by_asn = aggregate(store, counted, blocked, vec![Axis::Asn]).await?;
    event.asns =
        by_asn.iter().filter_map(|row| row.asn).filter(|asn| eligible_asns.contains(&(event.country.clone(), *asn))).collect();
    Ok(())
}
