//! A limit as an operator writes it: `120/min`, `10/h,burst=3`, or `off`.
//!
//! `N/UNIT` allows N requests per unit on average and up to N at once (a unit's worth); `burst=B`
//! sets how many may come at once instead. `0` and `off` turn the limit off, as `0` means "no
//! limit" for the probe's `--daily-bytes`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A rate: `count` requests per `period` on average, at most `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period: Unit,
    burst: u32,
}

/// A limit: a rate, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Not limited.
    Off,
    /// Limited to this rate.
    Rate(Rate),
}

/// The units a rate may be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    fn parse(s: &str) -> Option<Unit> {
        match s {
            "s" | "sec" => Some(Unit::Second),
            "min" => Some(Unit::Minute),
            "h" | "hour" => Some(Unit::Hour),
            "d" | "day" => Some(Unit::Day),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Unit::Second => "s",
            Unit::Minute => "min",
            Unit::Hour => "h",
            Unit::Day => "d",
        }
    }

    const fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
        })
    }
}

impl Rate {
    /// `count` a minute, `burst` at once.
    pub const fn per_minute(count: u32, burst: u32) -> Rate {
        Rate { count, period: Unit::Minute, burst }
    }

    /// `count` an hour, `burst` at once.
    pub const fn per_hour(count: u32, burst: u32) -> Rate {
        Rate { count, period: Unit::Hour, burst }
    }

    /// The average time between two requests (GCRA's emission interval), in nanoseconds.
    pub(super) fn interval_nanos(self) -> u64 {
        let period = u64::try_from(self.period.duration().as_nanos()).unwrap_or(u64::MAX);
        (period / u64::from(self.count.max(1))).max(1)
    }

    /// How many requests may come at once.
    pub(super) fn burst(self) -> u32 {
        self.burst.max(1)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Off => f.write_str("off"),
            Limit::Rate(rate) => {
                write!(f, "{}/{}", rate.count, rate.period.as_str())?;
                if rate.burst != rate.count {
                    write!(f, ",burst={}", rate.burst)?;
                }
                Ok(())
            }
        }
    }
}

/// Why a limit could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a rate: write N/s, N/min, N/h or N/d (e.g. 120/min), optionally with ,burst=B; or off (also 0)")]
pub struct ParseLimitError(String);

impl FromStr for Limit {
    type Err = ParseLimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ParseLimitError(s.to_string());
        let text = s.trim();
        if text == "off" || text == "0" {
            return Ok(Limit::Off);
        }
        let (rate, burst) = match text.split_once(',') {
            Some((rate, burst)) => (rate, Some(burst.trim().strip_prefix("burst=").ok_or_else(error)?)),
            None => (text, None),
        };
        let (count, unit) = rate.split_once('/').ok_or_else(error)?;
        let count: u32 = count.trim().parse().map_err(|_| error())?;
        let period = Unit::parse(unit.trim()).ok_or_else(error)?;
        let burst: u32 = burst.map_or(Ok(count), |b| b.trim().parse().map_err(|_| error()))?;
        if count == 0 || burst == 0 {
            return Err(error());
        }
        Ok(Limit::Rate(Rate { count, period, burst }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> Rate {
        match s.parse::<Limit>() {
            Ok(Limit::Rate(rate)) => rate,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn rates_read_as_written_and_print_back() {
        // (written, average interval, burst, printed)
        let table = [
            ("120/min", Duration::from_millis(500), 120, "120/min"),
            ("10/h", Duration::from_secs(360), 10, "10/h"),
            ("10/hour,burst=3", Duration::from_secs(360), 3, "10/h,burst=3"),
            (" 5/s , burst=20 ", Duration::from_millis(200), 20, "5/s,burst=20"),
            ("1000/d", Duration::from_nanos(86_400_000_000), 1000, "1000/d"),
        ];
        for (written, interval, burst, printed) in table {
            let r = rate(written);
            assert_eq!(Duration::from_nanos(r.interval_nanos()), interval, "{written}");
            assert_eq!(r.burst(), burst, "{written}");
            assert_eq!(Limit::Rate(r).to_string(), printed, "{written}");
            assert_eq!(printed.parse::<Limit>(), Ok(Limit::Rate(r)), "{printed} round-trips");
        }
    }

    #[test]
    fn zero_and_off_turn_a_limit_off() {
        assert_eq!("off".parse::<Limit>(), Ok(Limit::Off));
        assert_eq!("0".parse::<Limit>(), Ok(Limit::Off));
        assert_eq!(Limit::Off.to_string(), "off");
    }

    #[test]
    fn nonsense_is_refused_with_the_syntax() {
        for bad in
            ["", "120", "120/", "/min", "0/min", "120/fortnight", "-1/min", "1.5/min", "120/min,burst=0", "120/min,3", "x/min"]
        {
            let error = bad.parse::<Limit>().expect_err(bad);
            assert!(error.to_string().contains("N/min"), "{bad}: {error}");
        }
    }

    #[test]
    fn constructors_match_the_written_form() {
        assert_eq!(Limit::Rate(Rate::per_minute(30, 60)), "30/min,burst=60".parse().expect("rate"));
        assert_eq!(Limit::Rate(Rate::per_hour(10, 10)), "10/h".parse().expect("rate"));
    }
}
