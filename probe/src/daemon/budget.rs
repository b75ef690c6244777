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

/// Default daily byte budget: 15 MB a day, at most about 450 MB a month — a few percent of a
/// small mobile plan — and about 2.7× what the built-in list costs at the default interval
/// (5.6 MB a day), leaving room for re-tests and a longer list.
pub const DEFAULT_DAILY_BYTES: u64 = 15_000_000;
/// Default cap on measurements started per hour (re-tests included): far above what the built-in
/// list needs (21 per cycle), it stops a long list or a schedule gone wrong from flooding the
/// volunteer's line and their router's connection table.
pub const DEFAULT_MAX_PER_HOUR: u32 = 600;

/// What one measurement of `test` with `trials` (tcp, tls, quic repeat; see the targets file) is
/// charged, in bytes both ways on the wire: its controls, its helper request and its share of the
/// upload included. Measured in the lab by `tests/bench/daemon-bytes.sh` (IP bytes into and out
/// of the probe's namespace, clean scenario; TLS and QUIC read up to 64 KiB of data from the
/// target and the control, as they do from a real server), rounded up; VPN and Tor kinds are
/// estimated from their packet sizes, not measured.
pub fn estimated_bytes(test: TestKind, trials: u32) -> u64 {
    let trials = u64::from(trials.clamp(1, 8));
    match test {
        TestKind::Dns => 2_500,
        TestKind::Tcp => 8_000 * trials,
        TestKind::Tls => 142_000 * trials,
        TestKind::Quic => 163_000 * trials,
        TestKind::Openvpn | TestKind::Wireguard => 4_000,
        TestKind::Ikev2 => 6_000,
        TestKind::Tor => 20_000,
        // Two TLS 1.3 handshakes (certificate chains both ways of the pair), no data phase.
        TestKind::Ech => 16_000 * trials,
        // Estimated, not measured: two handshakes (control SNI, target) of ~6 KB each, a bare
        // connect to the other port, one query of ~300 B, and the helper request.
        TestKind::Dot | TestKind::Doh => 16_000 * trials,
        // Request (4 KiB on average), 66 KiB of frames, the bridge's answer, and the
        // low-entropy control's 71 KiB both ways.
        TestKind::Obfs4 => 230_000,
        // Pairs of 128 KiB downloads (at least 2, at most 4), each with its handshake and head;
        // estimated from the body size, a target asking for more `bytes` is charged more in fact.
        TestKind::Throttle => 274_000 * trials.clamp(2, 4),
    }
}

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

/// What a hop follow-up costs per attempt (a TCP connection with a ClientHello and its ICMP
/// errors, or one DNS query): about 20 KB for a typical 23 attempts (`docs/localisation.md`).
pub const LOCALISE_BYTES_PER_ATTEMPT: u64 = 900;

impl Usage {
    /// Charge what a measurement cost beyond its admission, at `now` (wall ms): a dual-stack
    /// target's second family (`measurements` 1, its bytes), a hop follow-up's attempts. Never
    /// refused: the traffic has been sent; the next admissions see it.
    pub fn charge(&mut self, now_wall_ms: i64, bytes: u64, measurements: u32) {
        let (day, hour) = (now_wall_ms.div_euclid(DAY_MS), now_wall_ms.div_euclid(HOUR_MS));
        if day != self.day {
            (self.day, self.bytes, self.skipped) = (day, 0, 0);
        }
        if hour != self.hour {
            (self.hour, self.started) = (hour, 0);
        }
        self.bytes = self.bytes.saturating_add(bytes);
        self.started = self.started.saturating_add(measurements);
    }
}

/// What `m` cost beyond the admission of its job: `first` whether it is the job's first
/// measurement (a dual-stack job yields one per family; admission charged one).
pub fn unadmitted_bytes(m: &vantage_measurement::Measurement, first: bool) -> u64 {
    let family = if first { 0 } else { estimated_bytes(m.test, m.verdict.trials.map_or(1, |t| t.total)) };
    let localisation = m.verdict.localisation.as_ref().map_or(0, |l| u64::from(l.attempts) * LOCALISE_BYTES_PER_ATTEMPT);
    family + localisation
}

/// Bytes a cycle over every test of `targets`.
pub fn bytes_per_cycle(targets: &[vantage_engine::targets::TargetSpec]) -> u64 {
    targets.iter().flat_map(|t| t.tests.iter().map(|&test| estimated_bytes(test, t.trials))).sum()
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
        let cycle = bytes_per_cycle(&vantage_engine::targets::builtin());
        assert_eq!(cycle, 6 * 2_500 + 6 * 8_000 + 6 * 142_000 + 3 * 163_000, "the figure docs/probe.md quotes");
        let daily = cycle * (86_400 / crate::daemon::DEFAULT_INTERVAL_SECS);
        assert_eq!(daily, 5_616_000);
        assert!(daily * 2 <= DEFAULT_DAILY_BYTES, "built-in list at the default interval: {daily} B/day");
    }

    #[test]
    fn a_second_family_and_a_hop_follow_up_are_charged_after_the_fact() {
        let mut m = vantage_measurement::example::tls_reset(chrono::Utc::now());
        assert_eq!(unadmitted_bytes(&m, true), 0, "admission charged the job's first measurement");
        assert_eq!(unadmitted_bytes(&m, false), estimated_bytes(TestKind::Tls, 1), "the other family costs as much again");
        m.verdict.localisation =
            Some(vantage_measurement::Localisation::not_localised(vantage_measurement::NotLocalised::TargetReachedServer, 20));
        assert_eq!(unadmitted_bytes(&m, true), 20 * LOCALISE_BYTES_PER_ATTEMPT);
        // Charged, never refused, over the limit too; the next admission sees it.
        let limits = Limits { daily_bytes: 10_000, max_per_hour: 2 };
        let mut usage = Usage::default();
        assert_eq!(usage.admit(limits, NOON, 8_000), Admit::Go);
        usage.charge(NOON + 1, 8_000, 1);
        assert_eq!((usage.bytes, usage.started), (16_000, 2));
        assert_eq!(usage.admit(limits, NOON + 2, 1), Admit::OverBytes);
    }

    #[test]
    fn trials_multiply_the_repeated_tests_only() {
        assert_eq!(estimated_bytes(TestKind::Tls, 3), 3 * estimated_bytes(TestKind::Tls, 1));
        assert_eq!(estimated_bytes(TestKind::Dns, 3), estimated_bytes(TestKind::Dns, 1));
        assert_eq!(estimated_bytes(TestKind::Quic, 0), estimated_bytes(TestKind::Quic, 1), "0 counts as one");
    }
}
