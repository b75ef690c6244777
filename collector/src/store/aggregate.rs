//! Aggregation as SQL both backends share, and the folding of its result rows into
//! [`AggregateRow`]s.
//!
//! Two statements, both a single pass the database groups itself: one counts rows per (group,
//! status, mechanism), one counts distinct signing keys per group (a distinct count can't be
//! summed over the finer grouping). Each backend binds the values (never spliced) and reads the
//! columns back as [`Part`]s; the folding, the ordering and the group cap are here, once, so
//! both backends answer alike. Time buckets are computed on `started_at` (Unix seconds, UTC):
//! hours, days and ISO weeks by integer arithmetic (1970-01-05 was a Monday), months by each
//! dialect's calendar function.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use vantage_measurement::{Mechanism, Status, TestKind};

use super::filter::{self, Bound, CONTRADICTED};
use super::{Filter, StoreError};

vantage_measurement::closed_set! {
    /// A grouping axis of an aggregation ([`Store::aggregate`]).
    pub enum Axis {
        /// The time bucket of `started_at` ([`TimeGrain`]).
        Time => "time",
        /// `probe.cc`.
        Country => "country",
        /// `probe.asn`.
        Asn => "asn",
        /// `target.name`.
        Target => "target",
        /// The test.
        Test => "test",
        /// `verdict.mechanism` (rows without one form a group of their own).
        Mechanism => "mechanism",
    }
}

vantage_measurement::closed_set! {
    /// The width of a time bucket, in UTC: weeks start on Monday (ISO 8601), months on the 1st.
    #[default = Day]
    pub enum TimeGrain {
        /// A clock hour.
        Hour => "hour",
        /// A UTC day.
        Day => "day",
        /// An ISO week, Monday 00:00 UTC to the next Monday.
        Week => "week",
        /// A calendar month.
        Month => "month",
    }
}

/// What [`Store::aggregate`] counts and how it groups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Aggregation {
    /// Which rows, as for [`Store::query`] (`since`/`until` on `started_at`, …).
    pub filter: Filter,
    /// The grouping, outermost first: any number of axes, none repeated (a repeat counts once);
    /// empty, one total row.
    pub group_by: Vec<Axis>,
    /// The bucket width when `group_by` has [`Axis::Time`].
    pub grain: TimeGrain,
    /// `None`: every row. `Some(keys)`: only rows signed by one of those key ids, and none whose
    /// observed location contradicts the claimed one (the fleet's rule).
    pub counted: Option<Vec<String>>,
}

/// One group of an aggregation: its axis values (`None` for axes not grouped by) and its counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AggregateRow {
    /// The bucket's start, when grouped by time.
    pub time: Option<DateTime<Utc>>,
    /// `probe.cc`, when grouped by country.
    pub cc: Option<String>,
    /// `probe.asn`, when grouped by ASN.
    pub asn: Option<u32>,
    /// `target.name`, when grouped by target.
    pub target: Option<String>,
    /// The test, when grouped by test.
    pub test: Option<TestKind>,
    /// The mechanism, when grouped by mechanism: `None` there is the group of rows without one.
    pub mechanism: Option<Mechanism>,
    /// Rows in the group.
    pub measurements: u64,
    /// Rows per verdict: every status with a non-zero count, in [`Status::ALL`] order.
    pub statuses: Vec<(Status, u64)>,
    /// Rows per mechanism: every mechanism with a non-zero count, in [`Mechanism::ALL`] order.
    pub mechanisms: Vec<(Mechanism, u64)>,
    /// Distinct signing keys among the group's rows (anonymous rows count none). A pseudonymous
    /// count: the API decides where it may be shown (k-anonymity, `crate::aggregation`).
    pub probes: u64,
}

/// The most groups one aggregation returns; more is [`StoreError::TooLarge`] (narrow the
/// filter, coarsen the grain or drop an axis).
pub const MAX_AGGREGATE_ROWS: usize = 100_000;

/// Which SQL dialect to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The two statements of an aggregation and what they bind.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `axes…, status, mechanism, COUNT(*)`.
    pub(crate) counts: String,
    /// `axes…, COUNT(DISTINCT probe_key)`.
    pub(crate) probes: String,
    /// The filter's values, in placeholder order; then, if `counted` is set, the counted keys.
    pub(crate) values: Vec<Bound>,
    /// The counted key ids, bound after `values` (SQLite: as a JSON array; PostgreSQL: `text[]`).
    pub(crate) counted: Option<Vec<String>>,
    /// The axes, without repeats, in `group_by` order: the leading columns of both statements.
    pub(crate) axes: Vec<Axis>,
}

/// Seconds in an hour, a day, a week.
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// 1970-01-01 was a Thursday: shifting by three days puts week boundaries on Mondays.
const MONDAY_SHIFT: i64 = 3 * DAY;

/// The SQL expression for one axis.
fn expression(axis: Axis, grain: TimeGrain, dialect: Dialect) -> String {
    match axis {
        Axis::Time => match (grain, dialect) {
            (TimeGrain::Hour, _) => format!("(started_at - (started_at % {HOUR}))"),
            (TimeGrain::Day, _) => format!("(started_at - (started_at % {DAY}))"),
            (TimeGrain::Week, _) => {
                format!("(started_at - ((started_at + {MONDAY_SHIFT}) % {WEEK}))")
            }
            (TimeGrain::Month, Dialect::Sqlite) => {
                "CAST(strftime('%s', started_at, 'unixepoch', 'start of month') AS INTEGER)".into()
            }
            (TimeGrain::Month, Dialect::Postgres) => {
                "CAST(EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(started_at) AT TIME ZONE 'UTC')) AS bigint)".into()
            }
        },
        Axis::Country => "cc".into(),
        Axis::Asn => "asn".into(),
        Axis::Target => "target".into(),
        Axis::Test => "test".into(),
        Axis::Mechanism => "mechanism".into(),
    }
}

/// The statements for `aggregation` in `dialect`.
pub(crate) fn statements(aggregation: &Aggregation, dialect: Dialect) -> Statements {
    let mut axes: Vec<Axis> = Vec::new();
    for axis in &aggregation.group_by {
        if !axes.contains(axis) {
            axes.push(*axis);
        }
    }
    let conditions = filter::conditions(&aggregation.filter);
    let placeholder = |n: usize| match dialect {
        Dialect::Sqlite => format!("?{n}"),
        Dialect::Postgres => format!("${n}"),
    };
    let mut sql_where = filter::where_clause(&conditions, placeholder);
    if aggregation.counted.is_some() {
        let n = conditions.len() + 1;
        let keys = match dialect {
            Dialect::Sqlite => format!("probe_key IN (SELECT value FROM json_each(?{n}))"),
            Dialect::Postgres => format!("probe_key = ANY(${n})"),
        };
        sql_where.push_str(if sql_where.is_empty() { " WHERE " } else { " AND " });
        sql_where.push_str(&format!("{keys} AND NOT {CONTRADICTED}"));
    }
    let columns: Vec<String> = axes.iter().map(|a| expression(*a, aggregation.grain, dialect)).collect();
    let positions: Vec<String> = (1..=axes.len()).map(|n| n.to_string()).collect();
    let lead = |extra: &str| if columns.is_empty() { extra.to_string() } else { format!("{}, {extra}", columns.join(", ")) };
    let counts = format!(
        "SELECT {} FROM measurements{sql_where} GROUP BY {}",
        lead("status, mechanism, COUNT(*)"),
        positions.iter().map(String::as_str).chain(["status", "mechanism"]).collect::<Vec<_>>().join(", ")
    );
    let probes = if positions.is_empty() {
        format!("SELECT COUNT(DISTINCT probe_key) FROM measurements{sql_where}")
    } else {
        format!("SELECT {} FROM measurements{sql_where} GROUP BY {}", lead("COUNT(DISTINCT probe_key)"), positions.join(", "))
    };
    Statements {
        counts,
        probes,
        values: conditions.into_iter().map(|(_, bound)| bound).collect(),
        counted: aggregation.counted.clone(),
        axes,
    }
}

/// One grouping value as a backend read it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Part {
    /// No value (a row without a mechanism). Sorts first.
    Null,
    /// An integer column (time bucket, ASN).
    Int(i64),
    /// A text column.
    Text(String),
}

/// Is `axis` read as an integer?
pub(crate) fn is_integer(axis: Axis) -> bool {
    matches!(axis, Axis::Time | Axis::Asn)
}

#[derive(Default)]
struct Counts {
    measurements: u64,
    statuses: BTreeMap<Status, u64>,
    mechanisms: BTreeMap<Mechanism, u64>,
    probes: u64,
}

/// Folds the rows of both statements into [`AggregateRow`]s.
pub(crate) struct Folder {
    axes: Vec<Axis>,
    groups: BTreeMap<Vec<Part>, Counts>,
}

impl Folder {
    pub(crate) fn new(statements: &Statements) -> Folder {
        Folder { axes: statements.axes.clone(), groups: BTreeMap::new() }
    }

    fn group(&mut self, key: Vec<Part>) -> Result<&mut Counts, StoreError> {
        if !self.groups.contains_key(&key) && self.groups.len() >= MAX_AGGREGATE_ROWS {
            return Err(StoreError::TooLarge { limit: MAX_AGGREGATE_ROWS });
        }
        Ok(self.groups.entry(key).or_default())
    }

    /// One row of the counts statement: the group, its status and mechanism, and the count.
    pub(crate) fn count(&mut self, key: Vec<Part>, status: &str, mechanism: Option<&str>, n: i64) -> Result<(), StoreError> {
        let status = Status::parse(status).ok_or_else(|| corrupt("status", status))?;
        let mechanism = mechanism.map(|m| Mechanism::parse(m).ok_or_else(|| corrupt("mechanism", m))).transpose()?;
        let n = u64::try_from(n).unwrap_or(0);
        let group = self.group(key)?;
        group.measurements += n;
        *group.statuses.entry(status).or_default() += n;
        if let Some(mechanism) = mechanism {
            *group.mechanisms.entry(mechanism).or_default() += n;
        }
        Ok(())
    }

    /// One row of the probes statement.
    pub(crate) fn probes(&mut self, key: Vec<Part>, n: i64) -> Result<(), StoreError> {
        // A group with rows always came from the counts statement first; a key without one is a
        // row that arrived between the two statements: it is counted when it has rows.
        if let Some(group) = self.groups.get_mut(&key) {
            group.probes = u64::try_from(n).unwrap_or(0);
        }
        Ok(())
    }

    /// The groups, ordered by their values; without axes, exactly one.
    pub(crate) fn finish(mut self) -> Result<Vec<AggregateRow>, StoreError> {
        if self.axes.is_empty() && self.groups.is_empty() {
            self.groups.insert(Vec::new(), Counts::default());
        }
        let axes = self.axes;
        self.groups.into_iter().map(|(key, counts)| row(&axes, key, counts)).collect()
    }
}

fn row(axes: &[Axis], key: Vec<Part>, counts: Counts) -> Result<AggregateRow, StoreError> {
    // Statuses and mechanisms are keyed by the enums, whose Ord is declaration (`ALL`) order.
    let mut out = AggregateRow {
        measurements: counts.measurements,
        statuses: counts.statuses.into_iter().filter(|(_, n)| *n > 0).collect(),
        mechanisms: counts.mechanisms.into_iter().filter(|(_, n)| *n > 0).collect(),
        probes: counts.probes,
        ..AggregateRow::default()
    };
    for (axis, part) in axes.iter().zip(key) {
        match (axis, part) {
            (Axis::Time, Part::Int(t)) => {
                out.time = Some(DateTime::from_timestamp(t, 0).ok_or_else(|| corrupt("time bucket", &t.to_string()))?);
            }
            (Axis::Country, Part::Text(cc)) => out.cc = Some(cc),
            (Axis::Asn, Part::Int(asn)) => {
                out.asn = Some(u32::try_from(asn).map_err(|_| corrupt("asn", &asn.to_string()))?);
            }
            (Axis::Target, Part::Text(target)) => out.target = Some(target),
            (Axis::Test, Part::Text(test)) => {
                out.test = Some(TestKind::parse(&test).ok_or_else(|| corrupt("test", &test))?);
            }
            (Axis::Mechanism, Part::Text(m)) => {
                out.mechanism = Some(Mechanism::parse(&m).ok_or_else(|| corrupt("mechanism", &m))?);
            }
            (Axis::Mechanism, Part::Null) => out.mechanism = None,
            (axis, part) => return Err(corrupt(axis.as_str(), &format!("{part:?}"))),
        }
    }
    Ok(out)
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {column} {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Filter;

    #[test]
    fn week_buckets_start_on_monday_and_months_on_the_first() {
        // Pure arithmetic check of the week expression's constants: 2026-12-02 (a Wednesday)
        // falls in the week of Monday 2026-11-30.
        let wednesday = 1_796_212_800_i64; // 2026-12-02T12:00:00Z
        let monday = wednesday - ((wednesday + MONDAY_SHIFT) % WEEK);
        assert_eq!(DateTime::from_timestamp(monday, 0).map(|t| t.to_rfc3339()), Some("2026-11-30T00:00:00+00:00".into()));
    }

    #[test]
    fn repeated_axes_count_once_and_counted_keys_add_the_fleet_rule() {
        let aggregation = Aggregation {
            filter: Filter { country: Some("DE".into()), ..Filter::default() },
            group_by: vec![Axis::Country, Axis::Time, Axis::Country],
            grain: TimeGrain::Day,
            counted: Some(vec!["k".into()]),
        };
        let sql = statements(&aggregation, Dialect::Postgres);
        assert_eq!(sql.axes, vec![Axis::Country, Axis::Time]);
        assert!(sql.counts.contains("probe_key = ANY($2)") && sql.counts.contains("NOT ((observed_asn"), "{}", sql.counts);
        assert!(sql.counts.ends_with("GROUP BY 1, 2, status, mechanism"), "{}", sql.counts);
        assert_eq!(sql.values, vec![Bound::Text("DE".into())]);
    }
}
