//! The detector's tuning harness: synthetic series with known change points, seeded, so every
//! figure is reproducible. The tests run with the crate's; the tables in `docs/events.md` are
//! what the `tables` test prints:
//!
//! ```text
//! cargo test -p vantage-collector --lib events::detector::tuning::tables -- --nocapture
//! ```
//!
//! The synthetic fleet: [`PROBES`] probes measure the (country, target, test), each present in a
//! bucket with probability 0.8 and making [`PER_PROBE`] measurements there (an hourly bucket at a
//! 15-minute cadence). Benign noise at rate `r` is half independent (each measurement blocked with
//! probability r/2) and half clustered (a probe is flaky for a whole bucket with probability r,
//! then half its measurements are blocked), because flaky networks fail for an hour, not per
//! measurement, and clustered noise is what fools a detector that trusts every measurement.
//! Blocking either takes whole probes (an ISP's block: `k` of the probes, all their
//! measurements) or is intermittent (each measurement blocked with probability `s`).

use super::{Bucket, Episode, Params, detect};

/// Probes measuring the series.
const PROBES: usize = 6;
/// Measurements per probe per bucket.
const PER_PROBE: u64 = 4;

/// xorshift64*: small, seeded, good enough for simulation.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// How blocking looks while it lasts.
#[derive(Clone, Copy, Debug)]
enum Block {
    /// `k` of the probes blocked on every measurement.
    Probes(usize),
    /// Every measurement blocked with this probability.
    Intermittent(f64),
}

/// One bucket of the synthetic fleet at benign noise `noise`, blocked as `block` says.
fn bucket(rng: &mut Rng, noise: f64, block: Option<Block>) -> Bucket {
    let mut out = Bucket::default();
    for probe in 0..PROBES {
        if !rng.chance(0.8) {
            continue;
        }
        out.probes += 1;
        let flaky = rng.chance(noise);
        for _ in 0..PER_PROBE {
            let blocked = match block {
                Some(Block::Probes(k)) if probe < k => true,
                Some(Block::Intermittent(s)) if rng.chance(s) => true,
                _ => rng.chance(noise / 2.0) || (flaky && rng.chance(0.5)),
            };
            out.measured += 1;
            out.blocked += u64::from(blocked);
        }
    }
    out
}

/// A series of `len` buckets blocked as `block` in `[from, to)`.
fn series(seed: u64, len: usize, noise: f64, block: Option<(Block, usize, usize)>) -> Vec<Bucket> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|i| {
            let now = block.and_then(|(b, from, to)| (from..to).contains(&i).then_some(b));
            bucket(&mut rng, noise, now)
        })
        .collect()
}

/// False alarms per 1,000 buckets over `runs` no-change series of 1,000 buckets.
fn false_alarms(params: &Params, noise: f64, runs: u64) -> f64 {
    let alarms: usize = (0..runs).map(|seed| detect(&series(seed, 1_000, noise, None), params).len()).sum();
    alarms as f64 / runs as f64
}

/// Over `runs` series blocked in buckets [200, 300): the share detected by bucket 300, the mean
/// and worst onset delay (buckets from the change to the alarm), the mean end delay, and the
/// mean |onset estimate − 200|.
struct Delays {
    detected: f64,
    mean: f64,
    worst: usize,
    end_mean: f64,
    onset_error: f64,
}

fn delays(params: &Params, noise: f64, block: Block, runs: u64) -> Delays {
    let (mut found, mut sum, mut worst, mut ends, mut end_sum, mut error) = (0, 0, 0, 0, 0, 0);
    for seed in 0..runs {
        let episodes = detect(&series(1_000 + seed, 400, noise, Some((block, 200, 300))), params);
        let Some(hit) = episodes.iter().find(|e: &&Episode| e.detected >= 200 && e.detected < 300) else {
            continue;
        };
        found += 1;
        sum += hit.detected - 200;
        worst = worst.max(hit.detected - 200);
        error += hit.onset.abs_diff(200);
        if let Some(end) = hit.end_detected {
            ends += 1;
            end_sum += end.saturating_sub(300);
        }
    }
    let per = |n: usize, d: usize| if d == 0 { f64::NAN } else { n as f64 / d as f64 };
    Delays {
        detected: per(found, runs as usize),
        mean: per(sum, found),
        worst,
        end_mean: per(end_sum, ends),
        onset_error: per(error, found),
    }
}

const NOISES: [f64; 4] = [0.0, 0.02, 0.05, 0.10];
const BLOCKS: [Block; 5] =
    [Block::Probes(1), Block::Probes(2), Block::Probes(6), Block::Intermittent(0.3), Block::Intermittent(0.5)];

#[test]
fn a_stationary_noisy_series_raises_no_event() {
    for noise in [0.0, 0.02, 0.05] {
        for seed in 0..20 {
            let episodes = detect(&series(seed, 2_000, noise, None), &Params::default());
            assert!(episodes.is_empty(), "noise {noise}, seed {seed}: {episodes:?}");
        }
    }
}

#[test]
fn a_whole_block_is_found_within_a_bucket_of_its_start_and_its_end_in_the_bucket_it_ends() {
    for seed in 0..20 {
        let episodes = detect(&series(seed, 400, 0.05, Some((Block::Probes(PROBES), 200, 300))), &Params::default());
        assert_eq!(episodes.len(), 1, "seed {seed}: {episodes:?}");
        let e = episodes[0];
        // The onset estimate may take in noisy buckets before the change.
        assert!((192..=200).contains(&e.onset), "seed {seed}: {e:?}");
        assert!(e.detected <= 201, "seed {seed}: {e:?}");
        assert_eq!((e.end, e.end_detected), (Some(300), Some(300)), "seed {seed}");
        assert!(e.level > 0.95 && e.baseline < 0.15, "{e:?}");
    }
}

#[test]
fn a_third_of_the_probes_blocked_is_found_within_eight_buckets_and_one_of_six_within_fifty() {
    for (block, within) in [(Block::Probes(2), 8), (Block::Probes(1), 50)] {
        for seed in 0..20 {
            let episodes = detect(&series(seed, 400, 0.05, Some((block, 200, 300))), &Params::default());
            assert_eq!(episodes.len(), 1, "{block:?}, seed {seed}: {episodes:?}");
            let e = episodes[0];
            assert!((200..=200 + within).contains(&e.detected), "{block:?}, seed {seed}: {e:?}");
            assert!(e.onset.abs_diff(200) <= 8, "{block:?}, seed {seed}: {e:?}");
            assert!(e.end.is_some_and(|end| end.abs_diff(300) <= 20), "{block:?}, seed {seed}: {e:?}");
        }
    }
}

#[test]
fn one_probe_alone_never_makes_an_event() {
    let alone = vec![Bucket { blocked: 4, measured: 4, probes: 1 }; 100];
    assert!(detect(&alone, &Params::default()).is_empty());
}

#[test]
fn a_series_blocked_from_its_start_is_an_episode_from_bucket_zero() {
    let episodes = detect(&series(7, 100, 0.05, Some((Block::Probes(PROBES), 0, 100))), &Params::default());
    assert_eq!(episodes.len(), 1, "{episodes:?}");
    assert_eq!((episodes[0].onset, episodes[0].end), (0, None));
}

#[test]
fn a_thousand_measurements_in_an_hour_weigh_no_more_than_twenty() {
    // One flaky hour of a busy probe pair: 30 % blocked of 1,000 is not an event on its own.
    let mut buckets = vec![Bucket { blocked: 0, measured: 24, probes: 6 }; 50];
    buckets[25] = Bucket { blocked: 300, measured: 1_000, probes: 2 };
    assert!(detect(&buckets, &Params::default()).is_empty());
}

/// The tables of `docs/events.md` (printed with `--nocapture`; a few seconds). Asserts the chosen
/// parameters meet the goals the tables are for.
#[test]
fn tables() {
    let chosen = Params::default();
    println!("| shift | threshold | 0 % | 2 % | 5 % | 10 % | 15 % | 1 of 6 probes at 5 %: found, delay mean / worst | 2 of 6 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for shift in [0.15, 0.25] {
        for threshold in [12.0, 16.0, 20.0, 24.0] {
            let params = Params { threshold, shift, ..chosen };
            let fa: Vec<String> =
                [0.0, 0.02, 0.05, 0.10, 0.15].iter().map(|n| format!("{:.2}", false_alarms(&params, *n, 100))).collect();
            let one = delays(&params, 0.05, Block::Probes(1), 200);
            let two = delays(&params, 0.05, Block::Probes(2), 200);
            println!(
                "| {shift} | {threshold} | {} | {:.0} %, {:.2} / {} | {:.0} %, {:.2} / {} |",
                fa.join(" | "),
                one.detected * 100.0,
                one.mean,
                one.worst,
                two.detected * 100.0,
                two.mean,
                two.worst
            );
        }
    }
    println!();
    println!("| blocking | noise | detected | delay mean / worst | onset error | end delay |");
    println!("|---|---|---|---|---|---|");
    for block in BLOCKS {
        for noise in NOISES {
            let d = delays(&chosen, noise, block, 200);
            println!(
                "| {block:?} | {:.0} % | {:.0} % | {:.2} / {} | {:.2} | {:.2} |",
                noise * 100.0,
                d.detected * 100.0,
                d.mean,
                d.worst,
                d.onset_error,
                d.end_mean
            );
            assert!(d.detected > 0.95, "{block:?} at {noise}");
        }
    }
    for noise in [0.0, 0.02, 0.05] {
        assert_eq!(false_alarms(&chosen, noise, 1_000), 0.0, "noise {noise}");
    }
    assert!(false_alarms(&chosen, 0.10, 1_000) < 0.2);
}
