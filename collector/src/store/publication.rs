//! The export's publication log as the store sees it: which rows a day's export reads, what the
//! log keeps per day, and how both backends number days.

use chrono::{DateTime, NaiveDate};
use vantage_measurement::TestKind;

use super::{StoreError, day_of};

/// The rows [`Store::day_rows`] reads: one UTC day of arrival, optionally one (country, test)
/// group of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayRows {
    /// The UTC day: `received_at` in `[day 00:00, next day 00:00)`.
    pub day: NaiveDate,
    /// Only rows of this `probe.cc` and test (`None`: the whole day).
    pub group: Option<(String, TestKind)>,
}

/// The publication log's entry for one day: the signed manifest, exactly as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// The UTC day of arrival it covers.
    pub day: NaiveDate,
    /// The manifest file's bytes (UTF-8 JSON).
    pub manifest: String,
}

/// Days since 1970-01-01 of a calendar day, as the stores key days.
pub(crate) fn day_number(day: NaiveDate) -> i32 {
    day_of(day.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// The calendar day of a day number.
pub(crate) fn day_of_number(day: i64) -> Result<NaiveDate, StoreError> {
    DateTime::from_timestamp(day.saturating_mul(86_400), 0)
        .map(|t| t.date_naive())
        .ok_or_else(|| StoreError::Corrupt(format!("day {day} is out of range")))
}

/// `[start, end)` of a day in Unix seconds.
pub(crate) fn day_seconds(day: NaiveDate) -> (i64, i64) {
    let start = i64::from(day_number(day)) * 86_400;
    (start, start + 86_400)
}
