//! The status page's timelines: per country, the share of each target's measurements that were
//! `blocked`, bucket by bucket (an hour, or a day for long windows), so a reader sees when a
//! block began, whether it comes and goes, and where it lifted.
//!
//! Pure: [`build`] turns the store's aggregate ([`Store::aggregate`] grouped by time, country and
//! target over the counted rows) into [`Timelines`], which travel in the fleet snapshot and are
//! drawn by [`super::svg`].
//!
//! What the share is of: the *conclusive* measurements, `ok` and `blocked`. A target that is down
//! for everyone (`down`) or whose evidence was unclear (`inconclusive`) is not "0 % blocked": such
//! measurements are left out, and a bucket with nothing conclusive is a gap, as is a bucket with no
//! measurement at all. Unlike the table above it (each probe's latest verdict), every counted
//! measurement weighs the same here, so a busy probe weighs more than a quiet one.
//!
//! The span is the window, but at least [`MIN_SPAN_HOURS`] hours: the default window is one hour,
//! which in hourly buckets would be a single bar. Windows over [`MAX_HOURLY_HOURS`] hours are
//! drawn in days. Bounded: at most [`MAX_BUCKETS`] buckets, and per country the targets with
//! any `blocked` bucket, at most [`MAX_ROWS_PER_COUNTRY`] (the table's cap; the rest counted).
//!
//! [`Store::aggregate`]: crate::store::Store::aggregate

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use vantage_measurement::Status;

use super::view::MAX_ROWS_PER_COUNTRY;
use crate::store::{AggregateRow, TimeGrain};

/// The shortest span drawn, in hours, whatever the window.
pub const MIN_SPAN_HOURS: u64 = 24;
/// The longest span drawn in hourly buckets; longer windows are drawn in days.
pub const MAX_HOURLY_HOURS: u64 = 48;
/// The most buckets in a timeline (the longest window, 30 days, is 30 daily buckets).
pub const MAX_BUCKETS: usize = 48;

/// The buckets a timeline covers: `buckets` of `grain`, the first starting at `start`, the last
/// holding `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The first bucket's start.
    pub start: DateTime<Utc>,
    /// The bucket width.
    pub grain: TimeGrain,
    /// How many buckets.
    pub buckets: usize,
}

impl Span {
    /// The span for a page with `window_secs` made at `now`.
    pub fn for_window(window_secs: u64, now: DateTime<Utc>) -> Span {
        let hours = window_secs.div_ceil(3600).max(MIN_SPAN_HOURS);
        let (grain, buckets) =
            if hours <= MAX_HOURLY_HOURS { (TimeGrain::Hour, hours) } else { (TimeGrain::Day, hours.div_ceil(24)) };
        let buckets = (buckets as usize).min(MAX_BUCKETS);
        let width = bucket_width(grain);
        let current = now.duration_trunc(width).unwrap_or(now);
        Span { start: current - width * (buckets as i32 - 1), grain, buckets }
    }

    /// Which bucket `at` (a bucket start as the store gives it) falls in.
    fn index(&self, at: DateTime<Utc>) -> Option<usize> {
        let offset = (at - self.start).num_seconds();
        let width = bucket_width(self.grain).num_seconds();
        if offset < 0 {
            return None;
        }
        Some((offset / width) as usize).filter(|i| *i < self.buckets)
    }
}

/// The width of an hourly or daily bucket (the only grains a span uses; UTC has no DST).
fn bucket_width(grain: TimeGrain) -> TimeDelta {
    match grain {
        TimeGrain::Hour => TimeDelta::hours(1),
        _ => TimeDelta::days(1),
    }
}

/// Every country's timeline over one span (shared between replicas in the fleet snapshot).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timelines {
    /// The first bucket's start (`None`: no timelines were computed).
    pub start: Option<DateTime<Utc>>,
    /// The bucket width in seconds (3600 or 86400).
    pub bucket_secs: u64,
    /// How many buckets each series has.
    pub buckets: usize,
    /// Countries with any `blocked` bucket, alphabetically.
    pub countries: Vec<CountryTimeline>,
}

impl Timelines {
    /// The timeline of `cc`, if it had anything blocked in the span.
    pub fn country(&self, cc: &str) -> Option<&CountryTimeline> {
        self.countries.iter().find(|c| c.cc == cc)
    }

    /// The start of bucket `i`.
    pub fn bucket_start(&self, i: usize) -> Option<DateTime<Utc>> {
        let start = self.start?;
        Some(start + TimeDelta::seconds((self.bucket_secs as i64).saturating_mul(i as i64)))
    }
}

/// One country's series.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CountryTimeline {
    /// Two upper-case letters.
    pub cc: String,
    /// Targets with any `blocked` bucket, most blocked measurements first.
    pub targets: Vec<TargetSeries>,
    /// Such targets not shown.
    pub more: usize,
}

/// One target's buckets in one country.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetSeries {
    /// The target's name as measured (from probes: escape it).
    pub target: String,
    /// One per bucket of the span; `None`: nothing conclusive measured (a gap, not a zero).
    pub buckets: Vec<Option<Bucket>>,
}

impl TargetSeries {
    fn blocked_total(&self) -> u64 {
        self.buckets.iter().flatten().map(|b| b.blocked).sum()
    }
}

/// One bucket's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Measurements whose verdict is `blocked`.
    pub blocked: u64,
    /// Conclusive measurements (`ok` or `blocked`); never zero in a stored bucket.
    pub measured: u64,
}

impl Bucket {
    /// The blocked share, 0 to 1.
    pub fn share(&self) -> f64 {
        if self.measured == 0 { 0.0 } else { self.blocked as f64 / self.measured as f64 }
    }
}

/// The timelines from the store's aggregate over `span` (rows grouped by time, country and
/// target; rows outside the span or without those groups are ignored).
pub fn build(rows: &[AggregateRow], span: &Span) -> Timelines {
    let mut series: BTreeMap<&str, BTreeMap<&str, Vec<Option<Bucket>>>> = BTreeMap::new();
    for row in rows {
        let (Some(time), Some(cc), Some(target)) = (row.time, row.cc.as_deref(), row.target.as_deref()) else {
            continue;
        };
        let Some(index) = span.index(time) else {
            continue;
        };
        let count = |status: Status| row.statuses.iter().filter(|(s, _)| *s == status).map(|(_, n)| *n).sum::<u64>();
        let blocked = count(Status::Blocked);
        let measured = blocked + count(Status::Ok);
        if measured == 0 {
            continue;
        }
        let buckets = series.entry(cc).or_default().entry(target).or_insert_with(|| vec![None; span.buckets]);
        let bucket = buckets[index].get_or_insert(Bucket { blocked: 0, measured: 0 });
        bucket.blocked += blocked;
        bucket.measured += measured;
    }
    let countries = series
        .into_iter()
        .filter_map(|(cc, targets)| {
            let mut targets: Vec<TargetSeries> = targets
                .into_iter()
                .map(|(target, buckets)| TargetSeries { target: target.to_string(), buckets })
                .filter(|t| t.blocked_total() > 0)
                .collect();
            if targets.is_empty() {
                return None;
            }
            // Stable: alphabetical among equals.
            targets.sort_by_key(|t| std::cmp::Reverse(t.blocked_total()));
            let more = targets.len().saturating_sub(MAX_ROWS_PER_COUNTRY);
            targets.truncate(MAX_ROWS_PER_COUNTRY);
            Some(CountryTimeline { cc: cc.to_string(), targets, more })
        })
        .collect();
    Timelines {
        start: Some(span.start),
        bucket_secs: bucket_width(span.grain).num_seconds() as u64,
        buckets: span.buckets,
        countries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).expect("time").with_timezone(&Utc)
    }

    fn row(time: &str, cc: &str, target: &str, statuses: &[(Status, u64)]) -> AggregateRow {
        AggregateRow {
            time: Some(at(time)),
            cc: Some(cc.into()),
            asn: None,
            target: Some(target.into()),
            test: None,
            mechanism: None,
            measurements: statuses.iter().map(|(_, n)| n).sum(),
            statuses: statuses.to_vec(),
            mechanisms: Vec::new(),
            probes: 1,
        }
    }

    #[test]
    fn the_span_is_at_least_a_day_of_hours_and_ends_with_the_current_bucket() {
        let now = at("2026-12-02T05:41:10Z");
        let hourly = Span::for_window(3600, now);
        assert_eq!((hourly.start, hourly.grain, hourly.buckets), (at("2026-12-01T06:00:00Z"), TimeGrain::Hour, 24));
        let two_days = Span::for_window(48 * 3600, now);
        assert_eq!((two_days.grain, two_days.buckets), (TimeGrain::Hour, 48));
        let month = Span::for_window(30 * 86_400, now);
        assert_eq!((month.start, month.grain, month.buckets), (at("2026-11-03T00:00:00Z"), TimeGrain::Day, 30));
        assert_eq!(month.index(at("2026-12-02T00:00:00Z")), Some(29));
        assert_eq!(month.index(at("2026-11-02T00:00:00Z")), None, "before the span");
        assert_eq!(hourly.index(at("2026-12-02T06:00:00Z")), None, "after it");
    }

    #[test]
    fn buckets_count_conclusive_measurements_and_leave_gaps() {
        let span = Span::for_window(3600, at("2026-12-02T05:41:10Z"));
        let rows = vec![
            row("2026-12-02T03:00:00Z", "DE", "wiki", &[(Status::Ok, 1), (Status::Blocked, 3), (Status::Down, 5)]),
            row("2026-12-02T05:00:00Z", "DE", "wiki", &[(Status::Ok, 4)]),
            row("2026-12-02T04:00:00Z", "DE", "wiki", &[(Status::Inconclusive, 2)]),
            row("2026-12-02T04:00:00Z", "DE", "fine", &[(Status::Ok, 9)]),
            row("2026-11-30T04:00:00Z", "FR", "old", &[(Status::Blocked, 9)]),
        ];
        let timelines = build(&rows, &span);
        assert_eq!((timelines.bucket_secs, timelines.buckets), (3600, 24));
        assert_eq!(timelines.countries.len(), 1, "FR's block is outside the span");
        let de = timelines.country("DE").expect("DE");
        assert_eq!(de.targets.len(), 1, "a target never blocked has no row");
        let wiki = &de.targets[0];
        assert_eq!(wiki.buckets[21], Some(Bucket { blocked: 3, measured: 4 }), "down is left out");
        assert_eq!(wiki.buckets[22], None, "only inconclusive: a gap");
        assert_eq!(wiki.buckets[23], Some(Bucket { blocked: 0, measured: 4 }), "measured, none blocked: a zero");
        assert_eq!(wiki.buckets.iter().flatten().count(), 2);
        assert_eq!(timelines.bucket_start(21), Some(at("2026-12-02T03:00:00Z")));
    }

    #[test]
    fn the_most_blocked_targets_come_first_and_rows_are_capped() {
        let span = Span::for_window(3600, at("2026-12-02T05:00:00Z"));
        let mut rows: Vec<AggregateRow> = (0..MAX_ROWS_PER_COUNTRY + 3)
            .map(|i| row("2026-12-02T05:00:00Z", "IR", &format!("t{i:03}"), &[(Status::Blocked, 1)]))
            .collect();
        rows.push(row("2026-12-02T04:00:00Z", "IR", "zz-most", &[(Status::Blocked, 7)]));
        let ir = build(&rows, &span).countries.remove(0);
        assert_eq!(ir.targets.len(), MAX_ROWS_PER_COUNTRY);
        assert_eq!(ir.more, 4);
        assert_eq!((ir.targets[0].target.as_str(), ir.targets[1].target.as_str()), ("zz-most", "t000"));
    }
}
