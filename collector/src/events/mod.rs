//! Events: where and when blocking started and ended, found by a changepoint [detector] over the
//! share of `blocked` per (country, target, test) in trusted, signed measurements.
//!
//! The replica holding the fleet-refresh duty reads (every few refreshes) hourly buckets of the look-back
//! ([`LOOKBACK_HOURS`]) through `Store::aggregate` with the fleet's counted keys (so untrusted,
//! anonymous and contradicted rows never move an event), runs the detector on each series
//! ([`from_buckets`], pure), gathers each event's evidence (probes, ASNs; [`read`]) and puts the
//! list in the shared fleet snapshot. `GET /api/v1/events`, the status page and the
//! `vantage_events_ongoing` gauge all read that one list.
//!
//! An event says "blocked in DE for target X since 14:00, mechanism tls.reset_after_clienthello,
//! 5 of 6 probes, in AS 3320": the onset is the start of the hour bucket the detector places the
//! change in; probes are the distinct counted probes with a `blocked` verdict (and with any
//! verdict) from the onset to the end or now; ASNs are named only where as many probes report as
//! the `asn` metric label requires (`--asn-min-probes`).

pub mod api;
pub mod detector;
pub mod read;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use vantage_measurement::{Mechanism, TestKind};

use detector::{Bucket, Params};

/// How far back the detector reads: a week of hourly buckets (a weekly pattern is in it, and the
/// read stays bounded).
pub const LOOKBACK_HOURS: i64 = 7 * 24;
/// The most (country, target, test) series run per read, most measured first; the rest are
/// skipped and counted in the log.
pub const MAX_SERIES: usize = 5_000;
/// The most events kept (ongoing first, then the most recent); the rest are dropped and counted
/// in the log.
pub const MAX_EVENTS: usize = 200;
/// The width of a bucket.
pub const BUCKET: Duration = Duration::hours(1);

/// One detected episode of blocking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `probe.cc`.
    pub country: String,
    /// `target.name`.
    pub target: String,
    /// The test.
    pub test: TestKind,
    /// The start of the hour in which blocking started (the detector's change-point estimate).
    pub started_at: DateTime<Utc>,
    /// When the data showed it: the end of the bucket that raised the alarm, or the read's time
    /// if that bucket is the hour still filling.
    pub detected_at: DateTime<Utc>,
    /// The start of the hour in which it ended; `None`: ongoing.
    pub ended_at: Option<DateTime<Utc>>,
    /// The onset is the first bucket of the look-back: blocking may have started earlier.
    pub started_before_lookback: bool,
    /// The most frequent mechanism among the blocked measurements of the event.
    pub mechanism: Option<Mechanism>,
    /// The share of `blocked` among conclusive verdicts before the onset (the detector's baseline).
    pub baseline_share: f64,
    /// The share of `blocked` during the event.
    pub blocked_share: f64,
    /// Distinct counted probes with a `blocked` verdict during the event (0 until read).
    pub probes_blocked: u64,
    /// Distinct counted probes measuring during the event (0 until read).
    pub probes_measuring: u64,
    /// ASNs with blocked measurements, only those meeting the k-anonymity rule, sorted.
    pub asns: Vec<u32>,
}

impl Event {
    /// Is it still going on?
    pub fn ongoing(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// One hour of one series, as read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HourBucket {
    /// The bucket's start.
    pub start: DateTime<Utc>,
    /// The counts the detector reads.
    pub counts: Bucket,
    /// Blocked measurements by mechanism.
    pub mechanisms: Vec<(Mechanism, u64)>,
}

/// The events in one series (`buckets` in time order, hours without data absent), evidence not
/// yet read (`probes_*` 0, `asns` empty). `first_hour` is the look-back's first bucket.
pub fn from_buckets(
    country: &str,
    target: &str,
    test: TestKind,
    buckets: &[HourBucket],
    first_hour: DateTime<Utc>,
    params: &Params,
) -> Vec<Event> {
    let counts: Vec<Bucket> = buckets.iter().map(|b| b.counts).collect();
    detector::detect(&counts, params)
        .into_iter()
        .map(|episode| {
            let during = &buckets[episode.onset..episode.end.unwrap_or(buckets.len())];
            Event {
                country: country.to_string(),
                target: target.to_string(),
                test,
                started_at: buckets[episode.onset].start,
                detected_at: buckets[episode.detected].start + BUCKET,
                ended_at: episode.end.map(|end| buckets[end].start),
                started_before_lookback: buckets[episode.onset].start <= first_hour,
                mechanism: top_mechanism(during),
                baseline_share: round(episode.baseline),
                blocked_share: round(episode.level),
                probes_blocked: 0,
                probes_measuring: 0,
                asns: Vec::new(),
            }
        })
        .collect()
}

/// The mechanism with the most blocked measurements (ties: the first in `Mechanism::ALL`).
fn top_mechanism(buckets: &[HourBucket]) -> Option<Mechanism> {
    let mut totals: Vec<(Mechanism, u64)> = Vec::new();
    for (mechanism, n) in buckets.iter().flat_map(|b| &b.mechanisms) {
        match totals.iter_mut().find(|(m, _)| m == mechanism) {
            Some((_, total)) => *total += n,
            None => totals.push((*mechanism, *n)),
        }
    }
    let rank = |m: &Mechanism| Mechanism::ALL.iter().position(|x| x == m).unwrap_or(usize::MAX);
    totals.into_iter().filter(|(_, n)| *n > 0).max_by(|a, b| a.1.cmp(&b.1).then(rank(&b.0).cmp(&rank(&a.0)))).map(|(m, _)| m)
}

/// Three decimals: a share, not a measurement.
fn round(share: f64) -> f64 {
    (share * 1000.0).round() / 1000.0
}

/// Keep at most [`MAX_EVENTS`]: ongoing first, then the latest started. Returns how many were
/// dropped.
pub fn keep_bounded(events: &mut Vec<Event>) -> usize {
    events.sort_by(|a, b| b.ongoing().cmp(&a.ongoing()).then(b.started_at.cmp(&a.started_at)));
    let dropped = events.len().saturating_sub(MAX_EVENTS);
    events.truncate(MAX_EVENTS);
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_547_200 + h * 3600, 0).unwrap_or_default()
    }

    fn quiet(h: i64) -> HourBucket {
        HourBucket { start: hour(h), counts: Bucket { blocked: 0, measured: 24, probes: 6 }, mechanisms: Vec::new() }
    }

    #[test]
    fn an_episode_becomes_an_event_with_its_hours_and_mechanism() {
        let mut buckets: Vec<HourBucket> = (0..48).map(quiet).collect();
        for b in &mut buckets[30..40] {
            b.counts.blocked = 20;
            b.mechanisms = vec![(Mechanism::TlsResetAfterClientHello, 18), (Mechanism::TcpReset, 2)];
        }
        let events = from_buckets("DE", "wiki", TestKind::Tls, &buckets, hour(0), &Params::default());
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert_eq!((e.started_at, e.detected_at, e.ended_at), (hour(30), hour(31), Some(hour(40))));
        assert_eq!(e.mechanism, Some(Mechanism::TlsResetAfterClientHello));
        assert!(!e.started_before_lookback && !e.ongoing());
        assert!((e.blocked_share - 20.0 / 24.0).abs() < 0.001, "{e:?}");
    }

    #[test]
    fn hours_without_data_do_not_end_an_event() {
        let mut buckets: Vec<HourBucket> = (0..20).map(quiet).collect();
        for b in &mut buckets[10..] {
            b.counts.blocked = 24;
        }
        // Hours 20..30 missing (the probes were offline), then still blocked.
        buckets.extend((30..35).map(|h| HourBucket { counts: Bucket { blocked: 24, measured: 24, probes: 6 }, ..quiet(h) }));
        let events = from_buckets("DE", "wiki", TestKind::Tls, &buckets, hour(0), &Params::default());
        assert_eq!(events.len(), 1);
        assert!(events[0].ongoing() && events[0].started_at == hour(10), "{events:?}");
    }

    #[test]
    fn the_bound_keeps_ongoing_events_then_the_latest() {
        let event = |h: i64, ongoing: bool| Event {
            country: "DE".into(),
            target: "wiki".into(),
            test: TestKind::Tls,
            started_at: hour(h),
            detected_at: hour(h + 1),
            ended_at: (!ongoing).then(|| hour(h + 2)),
            started_before_lookback: false,
            mechanism: None,
            baseline_share: 0.0,
            blocked_share: 1.0,
            probes_blocked: 0,
            probes_measuring: 0,
            asns: Vec::new(),
        };
        let mut events: Vec<Event> = (0..MAX_EVENTS as i64 + 10).map(|h| event(h, false)).collect();
        events.push(event(0, true));
        assert_eq!(keep_bounded(&mut events), 11);
        assert_eq!(events.len(), MAX_EVENTS);
        assert!(events[0].ongoing() && events[1].started_at == hour(MAX_EVENTS as i64 + 9));
    }
}
