//! Which rows a read selects, as SQL every backend shares: a [`Filter`] as conditions (one list
//! of which column compares how, each backend adding only its placeholder syntax; values are
//! always bound, never spliced), and the rule that leaves contradicted rows out of the fleet.

use super::Filter;

/// A row whose collector-observed ASN or country contradicts the claimed one (a claimed ASN 0 or
/// country ZZ is "unknown", no claim): the SQL twin of `crate::trust::contradiction`, held
/// together by a test of the store conformance suite (`tests/tests/store_conformance/fleet.rs`).
/// A macro, so SQLite's statements can `concat!` it at compile time.
macro_rules! contradicted {
    () => {
        "((observed_asn IS NOT NULL AND asn != 0 AND observed_asn != asn)
          OR (observed_cc IS NOT NULL AND cc != 'ZZ' AND observed_cc != cc))"
    };
}
pub(crate) use contradicted;

/// [`contradicted!`] as a constant: plain SQL both dialects read alike.
pub(crate) const CONTRADICTED: &str = contradicted!();

/// A value to bind.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Bound {
    /// An integer column (`started_at`, `asn`, `observed_asn`).
    Int(i64),
    /// A text column.
    Text(String),
    /// The id (SQLite: lower-case hyphenated text, which sorts as the bytes; PostgreSQL: `uuid`).
    Id(uuid::Uuid),
}

/// The row-value comparisons of keyset paging: `(started_at, id)` against a position. Both
/// backends compare row values lexicographically and answer them from the `(started_at, id)`
/// index.
const AFTER: &str = "(started_at, id) > (";
const THROUGH: &str = "(started_at, id) <= (";

/// The conditions of `filter`, as (column and operator, value) pairs: `"started_at >="` and the
/// bound value. A backend writes `{condition} {placeholder}` and ANDs them; a condition opening
/// a row value (`… (`) takes two values and is closed after them.
pub(crate) fn conditions(filter: &Filter) -> Vec<(&'static str, Bound)> {
    let mut out = Vec::new();
    if let Some(after) = filter.after {
        out.push((AFTER, Bound::Int(after.started_at)));
        out.push(("", Bound::Id(after.id)));
    }
    if let Some(through) = filter.through {
        out.push((THROUGH, Bound::Int(through.started_at)));
        out.push(("", Bound::Id(through.id)));
    }
    if let Some(since) = filter.since {
        out.push(("started_at >=", Bound::Int(since.timestamp())));
    }
    if let Some(until) = filter.until {
        out.push(("started_at <", Bound::Int(until.timestamp())));
    }
    if let Some(cc) = &filter.country {
        out.push(("cc =", Bound::Text(cc.clone())));
    }
    if let Some(asn) = filter.asn {
        out.push(("asn =", Bound::Int(i64::from(asn))));
    }
    if let Some(test) = filter.test {
        out.push(("test =", Bound::Text(test.as_str().into())));
    }
    if let Some(target) = &filter.target {
        out.push(("target =", Bound::Text(target.clone())));
    }
    if let Some(status) = filter.verdict {
        out.push(("status =", Bound::Text(status.as_str().into())));
    }
    if let Some(mechanism) = filter.mechanism {
        out.push(("mechanism =", Bound::Text(mechanism.as_str().into())));
    }
    if let Some(cc) = &filter.observed_country {
        out.push(("observed_cc =", Bound::Text(cc.clone())));
    }
    if let Some(asn) = filter.observed_asn {
        out.push(("observed_asn =", Bound::Int(i64::from(asn))));
    }
    if let Some(key) = filter.collector_key {
        out.push(("collector_key =", Bound::Text(key.as_str().into())));
    }
    out
}

/// The WHERE clause (with a leading space, empty for no conditions), numbering placeholders with
/// `placeholder(n)` from 1.
pub(crate) fn where_clause(conditions: &[(&'static str, Bound)], placeholder: impl Fn(usize) -> String) -> String {
    if conditions.is_empty() {
        return String::new();
    }
    let mut parts: Vec<String> = Vec::new();
    for (i, (condition, _)) in conditions.iter().enumerate() {
        let value = placeholder(i + 1);
        match parts.last_mut() {
            // The second value of a row value: `(started_at, id) > (?1` becomes `… (?1, ?2)`.
            Some(open) if condition.is_empty() => open.push_str(&format!(", {value})")),
            _ => parts.push(format!("{condition}{}{value}", if condition.ends_with('(') { "" } else { " " })),
        }
    }
    format!(" WHERE {}", parts.join(" AND "))
}
