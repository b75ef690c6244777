//! The collector's wall clock, injected: what "now" is for ingest (validation and `received_at`),
//! the trust policy, the fleet window and the status page.
//!
//! Trust is earned over days. Tests keep the real thresholds and move a [`ManualClock`] instead
//! of waiting a week or lowering them; the binary uses the [`SystemClock`]. Timers (refresh
//! intervals, timeouts) stay on tokio's monotonic time: they measure durations, not dates.

use std::fmt::Debug;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync + Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until moved: for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock showing `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(at))
    }

    /// Move the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Set the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let clock = ManualClock::at(start);
        assert_eq!(clock.now(), start);
        clock.advance(chrono::Duration::days(8));
        assert_eq!(clock.now(), start + chrono::Duration::days(8));
        clock.set(start);
        assert_eq!(clock.now(), start);
        assert!(SystemClock.now() > start);
    }
}
