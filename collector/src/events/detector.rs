//! The changepoint detector: a two-sided Bernoulli CUSUM over the share of `blocked` in a series
//! of time buckets of one (country, target, test). Pure: buckets in, episodes out; no clock, no
//! store.
//!
//! # How it decides
//!
//! Each measurement is a Bernoulli trial, blocked or not. The detector is in one of two states:
//!
//! - **Normal**, at a *baseline* share `p0` (learnt slowly from the buckets it judged normal,
//!   starting at [`BASELINE_PRIOR`]): it sums the log-likelihood ratio of "the share is now
//!   `p0 + SHIFT`" against "it is still `p0`", floored at zero (Page's CUSUM). When the sum
//!   passes [`THRESHOLD`], blocking has *started*, at the first bucket of the run that carried the
//!   sum up from zero (the CUSUM's own change-point estimate, earlier than the bucket that raised
//!   the alarm).
//! - **Blocked**, at the episode's *level* `p1` (the share in the buckets it judged blocked): it
//!   sums the ratio of "the share is back at the baseline" against "it is still `p1`". When that
//!   passes the same threshold, blocking has *ended*, at the first bucket of its run.
//!
//! # False positives it avoids
//!
//! - *Flaky networks*: a benign 0–10 % of `blocked` verdicts (a lossy link, a probe behind a
//!   captive portal) is absorbed by the baseline, and the alternative sits [`SHIFT`] above it.
//! - *One busy probe*: measurements from one probe are not independent (its network is flaky for
//!   an hour, not per measurement), so a bucket weighs at most [`MAX_WEIGHT`] measurements however
//!   many it holds: its counts are scaled down, its share kept.
//! - *One volunteer*: a bucket with fewer than [`MIN_PROBES`] distinct probes carries no weight,
//!   so one probe alone never makes an event (it would also point at that volunteer).
//!
//! The constants were picked with the tuning harness in this module's tests (false alarms per
//! 1,000 no-change buckets and detection delays; `docs/events.md` has the tables).

/// The share of blocked the detector assumes before it has seen a normal bucket: a little benign
/// noise, so the first buckets of a quiet series don't look like a shift.
pub const BASELINE_PRIOR: f64 = 0.05;

/// How fast the baseline follows normal buckets (an exponential average; 1/48 ≈ two days of
/// hourly buckets), so a slow drift in benign noise is learnt but an onset is not.
pub const BASELINE_ALPHA: f64 = 1.0 / 48.0;

/// The lowest baseline assumed: a little benign noise is always possible, and a baseline learnt
/// near zero would make two flaky measurements look like a shift.
pub const BASELINE_MIN: f64 = 0.05;

/// The highest baseline learnt: above it, a series is more than half blocked and "normal" would
/// hide a block.
pub const BASELINE_MAX: f64 = 0.3;

/// The shift in the share of blocked that the onset side is tuned for (15 points: one ISP of six
/// blocking). Tuned against 25 points: smaller shifts are found surely and sooner, for about the
/// same false alarms at a higher threshold.
pub const SHIFT: f64 = 0.15;

/// The CUSUM decision threshold (nats). Tuned: no false alarm in 100,000 no-change buckets at
/// benign noise up to 5 % (one at 10 %), and a whole block still found in the bucket it starts
/// (a full bucket weighs `MAX_WEIGHT × ln((p0 + SHIFT) / p0)` ≈ 28 nats at the 5 % baseline).
pub const THRESHOLD: f64 = 20.0;

/// The most measurements one bucket weighs (its counts scaled to it): one hour of one target by a
/// handful of probes. Bounds one bucket's log-likelihood ratio, so a single hour can raise an
/// alarm only if it is nearly all blocked.
pub const MAX_WEIGHT: f64 = 20.0;

/// The fewest distinct probes in a bucket for it to count.
pub const MIN_PROBES: u64 = 2;

/// Shares are clamped into `[P_MIN, 1 − P_MIN]` so a log-likelihood ratio stays finite.
const P_MIN: f64 = 0.005;

/// One time bucket of one series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Measurements with a `blocked` verdict.
    pub blocked: u64,
    /// Measurements with a conclusive verdict (`ok` or `blocked`; `down` and `inconclusive` say
    /// nothing about blocking).
    pub measured: u64,
    /// Distinct probes among them.
    pub probes: u64,
}

/// The detector's parameters (the constants above, unless a tuning harness varies them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// [`THRESHOLD`].
    pub threshold: f64,
    /// [`SHIFT`].
    pub shift: f64,
    /// [`MAX_WEIGHT`].
    pub max_weight: f64,
    /// [`MIN_PROBES`].
    pub min_probes: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params { threshold: THRESHOLD, shift: SHIFT, max_weight: MAX_WEIGHT, min_probes: MIN_PROBES }
    }
}

/// One stretch of blocking found in a series; indices are into the buckets given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Episode {
    /// The first bucket blocked (the change-point estimate).
    pub onset: usize,
    /// The bucket whose arrival raised the alarm (`onset ≤ detected`).
    pub detected: usize,
    /// The first bucket no longer blocked, once the end is detected; `None`: ongoing.
    pub end: Option<usize>,
    /// The bucket whose arrival detected the end.
    pub end_detected: Option<usize>,
    /// The baseline share before the onset.
    pub baseline: f64,
    /// The share of blocked in the buckets judged blocked.
    pub level: f64,
}

/// The episodes of blocking in `buckets` (in order, oldest first; empty buckets and buckets with
/// too few probes are skipped, not read as "not blocked").
pub fn detect(buckets: &[Bucket], params: &Params) -> Vec<Episode> {
    let mut episodes = Vec::new();
    let mut baseline = BASELINE_PRIOR;
    // The baseline when the current run started: the episode's, should the run raise an alarm.
    let mut run_baseline = baseline;
    let mut sum = 0.0;
    let mut run_start = None;
    // The current episode, with the weighted counts behind its level.
    let mut open: Option<(Episode, f64, f64)> = None;
    for (i, bucket) in buckets.iter().enumerate() {
        let Some((blocked, measured)) = weighed(bucket, params) else {
            continue;
        };
        match open.as_mut() {
            None => {
                let alternative = (baseline + params.shift).min(1.0);
                sum = (sum + llr(blocked, measured, baseline, alternative)).max(0.0);
                // Every normal bucket teaches the baseline (learning only from those that leave
                // the sum at zero biases it low, and a noisy series then alarms), but a bucket's
                // share counts at most half a shift above the baseline, so an onset can't drag
                // the baseline up after itself.
                let share = (blocked / measured).min(baseline + params.shift / 2.0);
                baseline = ((1.0 - BASELINE_ALPHA) * baseline + BASELINE_ALPHA * share).clamp(BASELINE_MIN, BASELINE_MAX);
                if sum <= 0.0 {
                    run_start = None;
                    continue;
                }
                if run_start.is_none() {
                    run_start = Some(i);
                    run_baseline = baseline;
                }
                let onset = run_start.unwrap_or(i);
                if sum > params.threshold {
                    // The level: the onset run's share (the run is what moved the sum).
                    let (b, m) = buckets[onset..=i]
                        .iter()
                        .filter_map(|b| weighed(b, params))
                        .fold((0.0, 0.0), |(b, m), (x, y)| (b + x, m + y));
                    let level = b / m.max(f64::MIN_POSITIVE);
                    let episode = Episode { onset, detected: i, end: None, end_detected: None, baseline: run_baseline, level };
                    open = Some((episode, b, m));
                    sum = 0.0;
                    run_start = None;
                }
            }
            Some((episode, level_blocked, level_measured)) => {
                sum = (sum + llr(blocked, measured, episode.level, episode.baseline)).max(0.0);
                if sum <= 0.0 {
                    run_start = None;
                    *level_blocked += blocked;
                    *level_measured += measured;
                    episode.level = *level_blocked / *level_measured;
                    continue;
                }
                let end = *run_start.get_or_insert(i);
                if sum > params.threshold {
                    episode.end = Some(end);
                    episode.end_detected = Some(i);
                    baseline = episode.baseline;
                    episodes.push(*episode);
                    open = None;
                    sum = 0.0;
                    run_start = None;
                }
            }
        }
    }
    if let Some((episode, _, _)) = open {
        episodes.push(episode);
    }
    episodes
}

/// A bucket's (blocked, measured), scaled to at most `max_weight` measurements; `None` when it
/// does not count.
fn weighed(bucket: &Bucket, params: &Params) -> Option<(f64, f64)> {
    if bucket.measured == 0 || bucket.probes < params.min_probes {
        return None;
    }
    let measured = bucket.measured as f64;
    let scale = (params.max_weight / measured).min(1.0);
    Some((bucket.blocked.min(bucket.measured) as f64 * scale, measured * scale))
}

/// The log-likelihood ratio of `blocked` of `measured` under share `alternative` against `null`.
fn llr(blocked: f64, measured: f64, null: f64, alternative: f64) -> f64 {
    let clamp = |p: f64| p.clamp(P_MIN, 1.0 - P_MIN);
    let (p0, p1) = (clamp(null), clamp(alternative));
    blocked * (p1 / p0).ln() + (measured - blocked) * ((1.0 - p1) / (1.0 - p0)).ln()
}

#[cfg(test)]
#[path = "tuning.rs"]
mod tuning;
