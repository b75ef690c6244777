//! GCRA (the generic cell rate algorithm) over a bounded table: one timestamp per tracked key.
//!
//! Each key keeps its *theoretical arrival time* (TAT): when it would be back to a clean slate if
//! it sent nothing more. A request is allowed if, after adding one interval `T` to the TAT, the
//! TAT stays within `burst × T` of now; otherwise the answer says how long until it would. That
//! is a token bucket of `burst` tokens refilled one per `T`, kept in 8 bytes instead of two
//! numbers and a refill time. A key whose TAT has passed owes nothing: it is indistinguishable
//! from a key never seen, so it may be forgotten at any time.
//!
//! Memory is bounded by `capacity` keys. Drained keys are swept out every [`SWEEP_EVERY`] and
//! whenever a new key finds the table full. If nothing is drained, the new key is refused until
//! the first tracked key drains: the caller decides whether that refusal stands (fail closed) or
//! is ignored (fail open). Sweeps are O(n) but rare: a full table remembers when its first key
//! drains and refuses without sweeping until then.
//!
//! Pure: no clock, no I/O. `now` is nanoseconds since any fixed origin, never going back.

use std::collections::HashMap;
use std::time::Duration;

use super::rate::Rate;

/// How often drained keys are swept out even when the table is not full (nanoseconds), so the
/// size the operator graphs is the keys that owe something, not everyone seen since start.
pub(super) const SWEEP_EVERY: u64 = 60_000_000_000;

/// Why a request was not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The key is over its rate; it may come back after the wait.
    OverRate(Duration),
    /// The key is new and the table is full of keys that owe something; one drains after the wait.
    Full(Duration),
}

/// The rate of one (endpoint, scope) and the keys it tracks.
#[derive(Clone)]
pub(super) struct Table {
    interval: u64,
    tolerance: u64,
    capacity: usize,
    tat: HashMap<u64, u64>,
    next_sweep: u64,
    /// While the table is full: when its first key drains (no sweep can free a slot before).
    full_until: Option<u64>,
}

impl Table {
    pub(super) fn new(rate: Rate, capacity: usize) -> Table {
        let interval = rate.interval_nanos();
        Table {
            interval,
            tolerance: interval.saturating_mul(u64::from(rate.burst())),
            capacity: capacity.max(1),
            tat: HashMap::new(),
            next_sweep: SWEEP_EVERY,
            full_until: None,
        }
    }

    /// Keys tracked now.
    pub(super) fn len(&self) -> usize {
        self.tat.len()
    }

    /// Forget every key (a new salt makes the old keys meaningless).
    pub(super) fn clear(&mut self) {
        self.tat = HashMap::new();
        self.full_until = None;
    }

    /// Would a request of `key` be allowed at `now`? Changes nothing; a new key at a full table
    /// is answered by [`charge`](Self::charge) only.
    pub(super) fn peek(&self, key: u64, now: u64) -> Result<(), Refusal> {
        let tat = self.tat.get(&key).copied().unwrap_or(now).max(now);
        self.decide(tat, now).map(drop)
    }

    /// Allow and count a request of `key` at `now`, or refuse it and count nothing.
    pub(super) fn charge(&mut self, key: u64, now: u64) -> Result<(), Refusal> {
        if now >= self.next_sweep {
            self.sweep(now);
        }
        let tat = match self.tat.get(&key) {
            Some(tat) => (*tat).max(now),
            None => {
                self.make_room(now)?;
                now
            }
        };
        let next = self.decide(tat, now)?;
        self.tat.insert(key, next);
        Ok(())
    }

    /// The new TAT if a request at `now` fits, else how long until it would.
    fn decide(&self, tat: u64, now: u64) -> Result<u64, Refusal> {
        let next = tat.saturating_add(self.interval);
        let allowed_until = now.saturating_add(self.tolerance);
        if next <= allowed_until { Ok(next) } else { Err(Refusal::OverRate(Duration::from_nanos(next - allowed_until))) }
    }

    /// Make room for one more key, sweeping if the table is full.
    fn make_room(&mut self, now: u64) -> Result<(), Refusal> {
        if self.tat.len() < self.capacity {
            return Ok(());
        }
        if let Some(until) = self.full_until.filter(|until| now < *until) {
            return Err(Refusal::Full(Duration::from_nanos(until - now)));
        }
        self.sweep(now);
        if self.tat.len() < self.capacity {
            return Ok(());
        }
        // Every key owes something; the earliest TAT is when the first slot can free up.
        let until = self.tat.values().copied().min().unwrap_or(now).max(now.saturating_add(1));
        self.full_until = Some(until);
        Err(Refusal::Full(Duration::from_nanos(until - now)))
    }

    /// Forget the keys that owe nothing.
    fn sweep(&mut self, now: u64) {
        self.tat.retain(|_, tat| *tat > now);
        self.next_sweep = now.saturating_add(SWEEP_EVERY);
        self.full_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// 60 a minute (one a second), 3 at once, room for `capacity` keys.
    fn table(capacity: usize) -> Table {
        Table::new(Rate::per_minute(60, 3), capacity)
    }

    #[test]
    fn a_burst_passes_then_one_per_interval() {
        let mut t = table(10);
        for i in 0..3 {
            assert_eq!(t.charge(1, 0), Ok(()), "request {i} of the burst");
        }
        assert_eq!(t.charge(1, 0), Err(Refusal::OverRate(Duration::from_secs(1))));
        assert_eq!(t.charge(1, SEC / 2), Err(Refusal::OverRate(Duration::from_millis(500))), "the wait shrinks");
        assert_eq!(t.charge(1, SEC), Ok(()), "one interval later, one more");
        assert_eq!(t.charge(1, SEC), Err(Refusal::OverRate(Duration::from_secs(1))));
        // Idle for a long time: the full burst is back, never more.
        let later = 100 * SEC;
        for _ in 0..3 {
            assert_eq!(t.charge(1, later), Ok(()));
        }
        assert!(t.charge(1, later).is_err());
    }

    #[test]
    fn a_refusal_costs_nothing_so_hammering_does_not_extend_the_wait() {
        let mut t = table(10);
        for _ in 0..3 {
            t.charge(1, 0).expect("burst");
        }
        for _ in 0..1000 {
            assert!(t.charge(1, SEC / 2).is_err());
        }
        assert_eq!(t.charge(1, SEC), Ok(()));
    }

    #[test]
    fn keys_do_not_share_a_budget() {
        let mut t = table(10);
        for _ in 0..3 {
            t.charge(1, 0).expect("burst");
        }
        assert!(t.charge(1, 0).is_err());
        assert_eq!(t.charge(2, 0), Ok(()), "another key is untouched");
    }

    #[test]
    fn peek_answers_like_charge_without_counting() {
        let mut t = table(10);
        for _ in 0..10 {
            assert_eq!(t.peek(1, 0), Ok(()), "peeking never spends");
        }
        for _ in 0..3 {
            t.charge(1, 0).expect("burst");
        }
        assert_eq!(t.peek(1, 0), Err(Refusal::OverRate(Duration::from_secs(1))));
        assert_eq!(t.peek(1, SEC), Ok(()));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_full_table_evicts_drained_keys_and_refuses_when_none_is() {
        let mut t = table(2);
        t.charge(1, 0).expect("key 1");
        t.charge(2, 0).expect("key 2");
        // Both owe one interval: a third key waits until the first drains.
        assert_eq!(t.charge(3, 0), Err(Refusal::Full(Duration::from_secs(1))));
        assert_eq!(t.charge(3, SEC / 4), Err(Refusal::Full(Duration::from_millis(750))), "no sweep before then");
        assert_eq!(t.charge(1, SEC / 4), Ok(()), "a tracked key is still served");
        // Key 2 drained at 1 s (key 1 was charged again and owes until 2 s).
        assert_eq!(t.charge(3, SEC), Ok(()));
        assert_eq!(t.len(), 2);
        assert_eq!(t.peek(2, SEC), Ok(()), "the evicted key is back to a clean slate, as it was anyway");
    }

    #[test]
    fn drained_keys_are_swept_routinely() {
        let mut t = table(100);
        for key in 0..50 {
            t.charge(key, 0).expect("charge");
        }
        assert_eq!(t.len(), 50);
        t.charge(1000, SWEEP_EVERY).expect("charge");
        assert_eq!(t.len(), 1, "everyone else owed nothing any more");
        t.clear();
        assert_eq!(t.len(), 0);
    }
}
