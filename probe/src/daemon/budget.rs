//! The volunteer's limits: a daily byte budget and a cap on measurements per hour.
//!
//! The daemon can't count its own bytes on the wire without privileges it should not need, so
//! each measurement is charged, before it starts, what its test kind costs on the wire
//! ([`estimated_bytes`]: measured in the lab, controls and re-tries included, plus its share of
//! the upload). Charging up front makes the budget a bound on what is started, not a tally of what
//! was spent. When a limit is reached the measurement is skipped (and counted as skipped); the
//! byte budget starts afresh at midnight UTC, the rate cap at the top of each hour.
//!
//! Defaults ([`DEFAULT_DAILY_BYTES`], [`DEFAULT_MAX_PER_HOUR`]) and how they were chosen are in
//! docs/probe.md ("Running unattended: the daemon").

use serde::{Deserialize, Serialize};
use vantage_measurement::TestKind;

/// Default daily byte budget: 20 MB a day, about 600 MB a month — under 5% of the smallest
/// prepaid mobile plans, and about 4× what the built-in list costs at the default interval.
pub const DEFAULT_DAILY_BYTES: u64 = 20_000_000;
/// Default cap on measurements started per hour (re-tests included).
pub const DEFAULT_MAX_PER_HOUR: u32 = 600;

/// What one measurement of `test` is charged, in bytes both ways on the wire, including its
/// controls and its share of the upload. Measured in the lab (docs/probe.md has the method);
/// rounded up.
pub fn estimated_bytes(test: TestKind) -> u64 {
    let wire = match test {
        TestKind::Dns => 4_000,
        TestKind::Tcp => 1_000,
        TestKind::Tls => 12_000,
        TestKind::Quic => 12_000,
        TestKind::Openvpn => 3_000,
        TestKind::Wireguard => 3_000,
        TestKind::Ikev2 => 4_000,
        TestKind::Tor => 12_000,
    };
    wire + UPLOAD_BYTES_PER_MEASUREMENT
}

/// A measurement's share of its upload batch (gzip-compressed NDJSON plus HTTP overhead).
pub const UPLOAD_BYTES_PER_MEASUREMENT: u64 = 1_000;

/// The limits in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes a day (UTC); 0 means no limit.
    pub daily_bytes: u64,
    /// Measurements started per hour; 0 means no limit.
    pub max_per_hour: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { daily_bytes: DEFAULT_DAILY_BYTES, max_per_hour: DEFAULT_MAX_PER_HOUR }
    }
}

/// What was used in the current day and hour; kept in the state file so a restart does not
/// reset it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Days since the epoch (UTC) that `bytes` and `skipped` count.
    pub day: i64,
    /// Bytes charged today.
    pub bytes: u64,
    /// Measurements skipped today for a limit.
    pub skipped: u64,
    /// Hours since the epoch that `started` counts.
    pub hour: i64,
    /// Measurements started this hour.
    pub started: u32,
}

/// Whether a measurement may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Yes; it has been charged.
    Go,
    /// No: today's bytes are spent.
    OverBytes,
    /// No: this hour's measurements are spent.
    OverRate,
}

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

impl Usage {
    /// Ask to start a measurement costing `bytes` at `now` (wall ms): roll the day and the hour
    /// over, then charge it, or count it as skipped.
    pub fn admit(&mut self, limits: Limits, now_wall_ms: i64, bytes: u64) -> Admit {
        let (day, hour) = (now_wall_ms.div_euclid(DAY_MS), now_wall_ms.div_euclid(HOUR_MS));
        if day != self.day {
            (self.day, self.bytes, self.skipped) = (day, 0, 0);
        }
        if hour != self.hour {
            (self.hour, self.started) = (hour, 0);
        }
        let verdict = if limits.daily_bytes != 0 && self.bytes.saturating_add(bytes) > limits.daily_bytes {
            Admit::OverBytes
        } else if limits.max_per_hour != 0 && self.started >= limits.max_per_hour {
            Admit::OverRate
        } else {
            Admit::Go
        };
        match verdict {
            Admit::Go => {
                self.bytes = self.bytes.saturating_add(bytes);
                self.started += 1;
            }
            Admit::OverBytes | Admit::OverRate => self.skipped += 1,
        }
        verdict
    }
}

/// Bytes a day the `tests` of every target cost at `interval_secs` (for the docs and `status`).
pub fn bytes_per_day(tests_per_cycle: impl IntoIterator<Item = TestKind>, interval_secs: u64) -> u64 {
    let per_cycle: u64 = tests_per_cycle.into_iter().map(estimated_bytes).sum();
    per_cycle * (86_400 / interval_secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: i64 = 20_000 * DAY_MS + 12 * HOUR_MS;

    #[test]
    fn limits_admit_charge_and_skip() {
        use Admit::*;
        let limits = Limits { daily_bytes: 10_000, max_per_hour: 3 };
        // (minutes after noon, bytes asked, expected, bytes used after, skipped today after)
        let table = [
            (0, 4_000, Go, 4_000, 0),
            (1, 4_000, Go, 8_000, 0),
            (2, 4_000, OverBytes, 8_000, 1), // would pass 10 000
            (3, 2_000, Go, 10_000, 1),       // exactly the budget is fine; third this hour
            (4, 1, OverBytes, 10_000, 2),
            (61, 0, Go, 10_000, 2), // a new hour, a free measurement
            (12 * 60, 1, Go, 1, 0), // midnight: a new day, skips reset
        ];
        let mut usage = Usage::default();
        for (minutes, bytes, expected, used, skipped) in table {
            assert_eq!(usage.admit(limits, NOON + minutes * 60_000, bytes), expected, "at +{minutes} min");
            assert_eq!((usage.bytes, usage.skipped), (used, skipped), "at +{minutes} min");
        }
    }

    #[test]
    fn the_rate_cap_counts_per_clock_hour() {
        let limits = Limits { daily_bytes: 0, max_per_hour: 2 };
        let mut usage = Usage::default();
        let verdicts: Vec<Admit> = [0, 1, 2, 59, 60, 61, 62].iter().map(|m| usage.admit(limits, NOON + m * 60_000, 1)).collect();
        use Admit::*;
        assert_eq!(verdicts, [Go, Go, OverRate, OverRate, Go, Go, OverRate]);
        assert_eq!(usage.skipped, 3);
    }

    #[test]
    fn zero_means_unlimited() {
        let mut usage = Usage::default();
        let unlimited = Limits { daily_bytes: 0, max_per_hour: 0 };
        assert!((0..10_000).all(|i| usage.admit(unlimited, NOON + i, u64::MAX / 2) == Admit::Go));
    }

    #[test]
    fn the_defaults_carry_the_builtin_list_with_room_to_spare() {
        let tests = vantage_engine::targets::builtin().into_iter().flat_map(|t| t.tests);
        let daily = bytes_per_day(tests, 3_600);
        assert!(daily * 2 <= DEFAULT_DAILY_BYTES, "built-in list hourly: {daily} B/day");
    }
}
