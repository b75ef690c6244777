//! When each target is measured: a slot per target, spread over the interval, and what to do
//! when the clock lies.
//!
//! Every target gets a fixed phase inside the interval, derived from the probe's own seed and the
//! target's name ([`phase`]): a probe's work is spread over the interval instead of bursting at
//! its start, two probes don't hit a server in step, and a restarted daemon keeps its phase. Slots
//! are anchored to the Unix epoch (`k * interval + phase`), so "the next slot" needs no memory.
//!
//! Time comes in two kinds. The daemon sleeps on the monotonic clock (it does not jump), but slots
//! are wall-clock times. Each tick compares how far each clock moved since the last one
//! ([`detect_jump`]): if they disagree by more than [`JUMP_TOLERANCE`] the wall clock was set or
//! the machine slept (the monotonic clock stops during suspend), and the plan is remade from the
//! new "now" ([`Slots::replan`]) — every target moves to its next slot, so a resumed laptop does
//! not fire a burst of every slot it slept through, and a clock set back does not leave a gap.
//! A tick never runs a slot twice nor replays missed slots: a due target's next slot is the first
//! one after now.
//!
//! Everything here is pure: times are milliseconds since the epoch (wall) or since an arbitrary
//! start (monotonic), passed in by the caller.

use std::collections::BTreeMap;

use vantage_measurement::TestKind;

/// A disagreement between the wall and the monotonic clock larger than this is a jump or a
/// suspend. Ordinary drift (NTP slewing) is far below it; a jump smaller than it moves slots by
/// less than it, which does not matter.
pub const JUMP_TOLERANCE_MS: i64 = 10_000;

/// Where a target's slot sits inside the interval, in milliseconds: a stable hash (FNV-1a, the
/// same on every platform and Rust version) of the probe's seed and the target's name.
pub fn phase(seed: &str, target: &str, interval_ms: i64) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.bytes().chain([0]).chain(target.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % interval_ms.max(1) as u64) as i64
}

/// The first slot (`k * interval + phase`) strictly after `now`.
pub fn next_slot_after(now_ms: i64, phase_ms: i64, interval_ms: i64) -> i64 {
    let interval = interval_ms.max(1);
    let k = (now_ms - phase_ms).div_euclid(interval) + 1;
    k * interval + phase_ms
}

/// A reading of both clocks at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clocks {
    /// Wall clock, milliseconds since the Unix epoch.
    pub wall_ms: i64,
    /// Monotonic clock, milliseconds since any fixed start.
    pub mono_ms: i64,
}

/// How far the wall clock moved beyond what the monotonic clock saw between two readings:
/// `Some(ms)` (positive forward, e.g. a suspend; negative backward) when it exceeds the
/// tolerance, `None` when the clocks agree.
pub fn detect_jump(before: Clocks, now: Clocks) -> Option<i64> {
    let skew = (now.wall_ms - before.wall_ms) - (now.mono_ms - before.mono_ms);
    (skew.abs() > JUMP_TOLERANCE_MS).then_some(skew)
}

/// What a tick found due.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Targets whose slot came (all their tests run, together, so one server's tests stay in
    /// one group).
    pub targets: Vec<String>,
    /// Residual suspects whose re-test is due.
    pub retests: Vec<(String, TestKind)>,
    /// The clock jumped by this much since the last tick, and the plan was remade.
    pub jumped_ms: Option<i64>,
}

/// The daemon's timetable: each target's next slot and the pending re-tests, in wall time.
#[derive(Debug)]
pub struct Slots {
    seed: String,
    interval_ms: i64,
    next: BTreeMap<String, i64>,
    retests: Vec<(String, TestKind, i64)>,
    last: Option<Clocks>,
}

impl Slots {
    /// An empty timetable for a probe with `seed`.
    pub fn new(seed: &str, interval_ms: i64) -> Slots {
        Slots { seed: seed.to_string(), interval_ms: interval_ms.max(1), next: BTreeMap::new(), retests: Vec::new(), last: None }
    }

    /// Take a (new) plan: targets that stay keep their next slot (unless the interval changed),
    /// new ones get their next slot after `now`, removed ones go.
    pub fn set_plan<'a>(&mut self, targets: impl IntoIterator<Item = &'a str>, interval_ms: i64, now_wall_ms: i64) {
        let interval_ms = interval_ms.max(1);
        let same_interval = interval_ms == self.interval_ms;
        self.interval_ms = interval_ms;
        let old = std::mem::take(&mut self.next);
        for name in targets {
            let kept = old.get(name).copied().filter(|_| same_interval);
            let at = kept.unwrap_or_else(|| next_slot_after(now_wall_ms, phase(&self.seed, name, interval_ms), interval_ms));
            self.next.insert(name.to_string(), at);
        }
        self.retests.retain(|(name, _, _)| self.next.contains_key(name));
    }

    /// Move every target to its next slot after `now` (after a jump, and at start).
    pub fn replan(&mut self, now_wall_ms: i64) {
        for (name, at) in self.next.iter_mut() {
            *at = next_slot_after(now_wall_ms, phase(&self.seed, name, self.interval_ms), self.interval_ms);
        }
    }

    /// Re-test `test` of `target` at `at` (wall time), unless one is pending already.
    pub fn retest(&mut self, target: &str, test: TestKind, at_wall_ms: i64) {
        if !self.retests.iter().any(|(n, t, _)| n == target && *t == test) {
            self.retests.push((target.to_string(), test, at_wall_ms));
        }
    }

    /// Read the clocks: re-plan after a jump, then take what is due and move it to its next slot.
    pub fn tick(&mut self, now: Clocks) -> Due {
        let jumped_ms = self.last.and_then(|before| detect_jump(before, now));
        self.last = Some(now);
        if jumped_ms.is_some() {
            self.replan(now.wall_ms);
        }
        let mut due = Due { jumped_ms, ..Due::default() };
        for (name, at) in self.next.iter_mut() {
            if *at <= now.wall_ms {
                due.targets.push(name.clone());
                *at = next_slot_after(now.wall_ms, phase(&self.seed, name, self.interval_ms), self.interval_ms);
            }
        }
        let (ready, waiting) = std::mem::take(&mut self.retests).into_iter().partition(|(_, _, at)| *at <= now.wall_ms);
        self.retests = waiting;
        due.retests = ready.into_iter().map(|(name, test, _)| (name, test)).collect();
        due
    }

    /// The earliest wall time anything is due.
    pub fn next_due(&self) -> Option<i64> {
        self.next.values().copied().chain(self.retests.iter().map(|r| r.2)).min()
    }

    /// Each target's next slot (wall ms), by name.
    pub fn upcoming(&self) -> impl Iterator<Item = (&str, i64)> {
        self.next.iter().map(|(name, at)| (name.as_str(), *at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn at(wall_ms: i64, mono_ms: i64) -> Clocks {
        Clocks { wall_ms, mono_ms }
    }

    #[test]
    fn phases_are_stable_spread_and_inside_the_interval() {
        assert_eq!(phase("probe-a", "wikipedia", HOUR), phase("probe-a", "wikipedia", HOUR), "a restart keeps the phase");
        assert_ne!(phase("probe-a", "wikipedia", HOUR), phase("probe-b", "wikipedia", HOUR), "probes are not in step");
        let names: Vec<String> = (0..200).map(|i| format!("target-{i}")).collect();
        let phases: Vec<i64> = names.iter().map(|n| phase("probe-a", n, HOUR)).collect();
        assert!(phases.iter().all(|p| (0..HOUR).contains(p)));
        // Spread: every quarter of the hour holds some of the 200 slots, none holds most.
        for quarter in 0..4 {
            let here = phases.iter().filter(|p| **p / (HOUR / 4) == quarter).count();
            assert!((25..=75).contains(&here), "quarter {quarter} holds {here} of 200");
        }
    }

    #[test]
    fn the_next_slot_is_strictly_after_now() {
        // (now, phase, interval, expected)
        let table = [
            (0, 10, 100, 10),
            (10, 10, 100, 110),
            (11, 10, 100, 110),
            (109, 10, 100, 110),
            (-5, 10, 100, 10),
            (1_000_000, 0, 100, 1_000_100),
        ];
        for (now, phase, interval, expected) in table {
            assert_eq!(next_slot_after(now, phase, interval), expected, "now {now} phase {phase}");
        }
    }

    #[test]
    fn jumps_are_the_clocks_disagreeing() {
        let before = at(1_000_000, 50_000);
        // (wall moved, mono moved, expected)
        let table = [
            (60_000, 60_000, None),                      // an ordinary minute
            (60_500, 60_000, None),                      // drift under the tolerance
            (8 * HOUR, 60_000, Some(8 * HOUR - 60_000)), // suspended overnight
            (-HOUR + 1_000, 1_000, Some(-HOUR)),         // clock set back an hour
            (0, 30_000, Some(-30_000)),                  // wall clock frozen
        ];
        for (wall, mono, expected) in table {
            assert_eq!(detect_jump(before, at(before.wall_ms + wall, before.mono_ms + mono)), expected, "{wall} / {mono}");
        }
    }

    fn slots(names: &[&str], now: i64) -> Slots {
        let mut s = Slots::new("seed", HOUR);
        s.set_plan(names.iter().copied(), HOUR, now);
        s
    }

    #[test]
    fn each_target_runs_once_per_interval_at_its_phase() {
        let start = 10 * HOUR;
        let mut s = slots(&["a", "b", "c"], start);
        let mut runs: Vec<(String, i64)> = Vec::new();
        // Tick every minute for three hours, both clocks in step.
        for minute in 0..=180 {
            let now = start + minute * 60_000;
            for name in s.tick(at(now, minute * 60_000)).targets {
                runs.push((name, now));
            }
        }
        for name in ["a", "b", "c"] {
            let times: Vec<i64> = runs.iter().filter(|(n, _)| n == name).map(|(_, t)| *t).collect();
            assert_eq!(times.len(), 3, "{name} ran {times:?}");
            assert!(times.windows(2).all(|w| w[1] - w[0] == HOUR), "{name} once an hour: {times:?}");
            let expected_phase = phase("seed", name, HOUR);
            assert!(times.iter().all(|t| (t % HOUR - expected_phase).abs() < 60_000), "{name} at its phase");
        }
    }

    #[test]
    fn a_suspend_replans_instead_of_bursting() {
        let start = 10 * HOUR;
        let names: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
        let mut s = Slots::new("seed", HOUR);
        s.set_plan(names.iter().map(String::as_str), HOUR, start);
        assert!(s.tick(at(start, 0)).targets.is_empty());
        // Suspended for eight hours: the wall clock moved, the monotonic one did not.
        let resumed = s.tick(at(start + 8 * HOUR, 1_000));
        assert_eq!(resumed.jumped_ms, Some(8 * HOUR - 1_000));
        assert!(resumed.targets.is_empty(), "no burst of the slots slept through: {:?}", resumed.targets);
        // Over the next hour every target runs exactly once, spread out.
        let mut ran = Vec::new();
        for minute in 1..=60 {
            ran.extend(s.tick(at(start + 8 * HOUR + minute * 60_000, 1_000 + minute * 60_000)).targets);
        }
        ran.sort();
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(ran, expected);
    }

    #[test]
    fn a_clock_set_back_leaves_no_gap() {
        let start = 10 * HOUR;
        let mut s = slots(&["a"], start);
        s.tick(at(start, 0));
        let before = s.next_due().expect("planned");
        // The clock is set back a day: without a re-plan "a" would wait a day.
        let due = s.tick(at(start - 24 * HOUR, 1_000));
        assert!(due.jumped_ms.is_some_and(|j| j < 0));
        let after = s.next_due().expect("planned");
        assert!(after - (start - 24 * HOUR) <= HOUR, "next run within an interval of the new now");
        assert_eq!(after - before, -24 * HOUR, "same phase");
    }

    #[test]
    fn a_late_tick_runs_a_slot_once_and_skips_the_missed_ones() {
        let mut s = slots(&["a"], 0);
        // The daemon was busy for three intervals (no jump: both clocks moved).
        let due = s.tick(at(3 * HOUR + 5, 3 * HOUR + 5));
        assert_eq!(due.targets, vec!["a".to_string()]);
        assert!(s.next_due().expect("planned") > 3 * HOUR + 5);
        assert!(s.tick(at(3 * HOUR + 6, 3 * HOUR + 6)).targets.is_empty());
    }

    #[test]
    fn retests_come_due_once_and_go_with_their_target() {
        let mut s = slots(&["a", "b"], 0);
        s.retest("a", TestKind::Tls, 1_000);
        s.retest("a", TestKind::Tls, 2_000); // already pending
        s.retest("b", TestKind::Quic, 5_000);
        assert_eq!(s.next_due(), Some(1_000));
        assert_eq!(s.tick(at(1_500, 1_500)).retests, vec![("a".to_string(), TestKind::Tls)]);
        assert!(s.tick(at(1_600, 1_600)).retests.is_empty());
        s.set_plan(["a"], HOUR, 1_700); // "b" left the list
        assert!(s.tick(at(6_000, 6_000)).retests.is_empty());
    }

    #[test]
    fn a_new_plan_keeps_slots_and_a_new_interval_moves_them() {
        let mut s = slots(&["a"], 0);
        let a = s.next_due().expect("a");
        s.set_plan(["a", "b"], HOUR, 100);
        assert_eq!(s.upcoming().find(|(n, _)| *n == "a").map(|(_, t)| t), Some(a));
        s.set_plan(["a", "b"], HOUR / 2, 100);
        assert!(s.upcoming().all(|(_, t)| t > 100 && t <= 100 + HOUR / 2));
    }
}
