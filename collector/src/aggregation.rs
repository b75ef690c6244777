//! `GET /api/v1/aggregation`: counts per group, as JSON or CSV, for researchers and charts.
//!
//! Parameters: the filters of the measurements API that make sense for counting (`since`,
//! `until`, `country`, `asn`, `target`, `test`, `mechanism`, `collector_key`; parsed by the same
//! functions as `crate::query`), `time_grain` (`hour`, `day`, `week`, `month`; default `day`;
//! UTC, ISO weeks from Monday), `axis_x`, `axis_y` (any two different of `time`, `country`,
//! `asn`, `target`, `test`, `mechanism`; none gives one total row) and `format` (`json`, the
//! default, or `csv`). A bad value is a `400` naming its parameter.
//!
//! Which rows: every stored row the filters select, as the measurements API returns them
//! (anonymous and untrusted ones too); `collector_key=trusted` keeps only rows whose key was
//! trusted when they arrived.
//!
//! Volunteer safety (k-anonymity, the rule of the metrics' `asn` label): when grouping by ASN, an
//! ASN with fewer than `--asn-min-probes` distinct *trusted* probes among the selected rows is
//! folded into one `"other"` ASN (its groups merged per the other axis), so no small network's
//! handful of volunteers stands out. A group's `probes` is shown only when it is at least that
//! threshold (`null` below it, and for merged `"other"` groups, whose distinct count is unknown).
//!
//! Output, JSON: `{"time_grain", "axes", "asn_min_probes", "rows": [{<axis>: value, …,
//! "measurements", "statuses": {every status}, "mechanisms": {non-zero ones}, "probes"}]}`. CSV: a
//! header of the axes, `measurements`, one column per status ([`Status::ALL`] order), `probes`
//! (empty when hidden), then one column per mechanism ([`Mechanism::ALL`] order, every one, so the
//! columns never depend on the data).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State, rejection::QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use vantage_measurement::{Mechanism, Status};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::fleet::Fleet;
use crate::metrics;
use crate::query::{self, FilterError, invalid, one_of};
use crate::store::{AggregateRow, Aggregation, Axis, Filter, Store, StoreError, TimeGrain};
use crate::trust::TrustPolicy;

/// The label an ASN below the k-anonymity threshold is folded into.
pub const OTHER_ASN: &str = "other";

/// The query string as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationParams {
    since: Option<String>,
    until: Option<String>,
    country: Option<String>,
    asn: Option<String>,
    target: Option<String>,
    test: Option<String>,
    mechanism: Option<String>,
    collector_key: Option<String>,
    time_grain: Option<String>,
    axis_x: Option<String>,
    axis_y: Option<String>,
    format: Option<String>,
}

vantage_measurement::closed_set! {
    /// The output format.
    #[default = Json]
    pub enum Format {
        /// One JSON document.
        Json => "json",
        /// CSV with a header row.
        Csv => "csv",
    }
}

impl AggregationParams {
    /// The aggregation (without `counted`: every selected row) and the format.
    pub fn parse(&self) -> Result<(Aggregation, Format), FilterError> {
        let filter = Filter {
            since: query::time("since", self.since.as_deref())?,
            until: query::time("until", self.until.as_deref())?,
            country: self.country.as_deref().map(|cc| query::country("country", cc)).transpose()?,
            asn: self.asn.as_deref().map(|asn| query::as_number("asn", asn)).transpose()?,
            target: self.target.as_deref().map(query::target).transpose()?,
            test: self.test.as_deref().map(query::test).transpose()?,
            mechanism: self.mechanism.as_deref().map(query::mechanism).transpose()?,
            collector_key: self.collector_key.as_deref().map(query::collector_key).transpose()?,
            ..Filter::default()
        };
        query::check_range(&filter)?;
        let grain = match self.time_grain.as_deref() {
            None => TimeGrain::default(),
            Some(g) => {
                TimeGrain::parse(g).ok_or_else(|| invalid("time_grain", one_of(TimeGrain::ALL.iter().map(|g| g.as_str()))))?
            }
        };
        let axis = |parameter, value: Option<&str>| {
            value
                .map(|a| Axis::parse(a).ok_or_else(|| invalid(parameter, one_of(Axis::ALL.iter().map(|a| a.as_str())))))
                .transpose()
        };
        let x = axis("axis_x", self.axis_x.as_deref())?;
        let y = axis("axis_y", self.axis_y.as_deref())?;
        if x.is_some() && x == y {
            return Err(invalid("axis_y", "an axis other than `axis_x`"));
        }
        let format = match self.format.as_deref() {
            None => Format::default(),
            Some(f) => Format::parse(f).ok_or_else(|| invalid("format", one_of(Format::ALL.iter().map(|f| f.as_str()))))?,
        };
        let group_by = [x, y].into_iter().flatten().collect();
        Ok((Aggregation { filter, group_by, grain, counted: None }, format))
    }
}

/// `GET /api/v1/aggregation`.
pub(crate) async fn get_aggregation(
    State(store): State<Arc<dyn Store>>,
    State(fleet): State<Arc<Fleet>>,
    State(policy): State<Arc<TrustPolicy>>,
    State(clock): State<Arc<dyn Clock>>,
    params: Result<Query<AggregationParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => return ApiError::client(StatusCode::BAD_REQUEST, None, rejection.body_text()).into_response(),
    };
    let (aggregation, format) = match params.parse() {
        Ok(parsed) => parsed,
        Err(e) => return ApiError::client(StatusCode::BAD_REQUEST, None, e.to_string()).into_response(),
    };
    let k = fleet.asn_min_probes();
    let answer = async {
        let named = aggregation.group_by.contains(&Axis::Asn) || aggregation.filter.asn.is_some();
        let eligible = match named {
            true => Some(eligible_asns(store.as_ref(), &policy, clock.now(), &aggregation, k).await?),
            false => None,
        };
        // A filter on a small network would show its counts as plainly as an axis would.
        if let (Some(eligible), Some(asn)) = (&eligible, aggregation.filter.asn)
            && !eligible.names(None, asn)
        {
            return Ok(Err(asn));
        }
        let rows = store.aggregate(&aggregation).await?;
        Ok::<_, StoreError>(Ok(fold(rows, eligible.as_ref(), k)))
    };
    let groups = match answer.await {
        Ok(Ok(groups)) => groups,
        Ok(Err(asn)) => {
            let message = format!("invalid `asn`: AS{asn} has fewer than {k} trusted probes in the rows selected (the ASN rule)");
            return ApiError::client(StatusCode::BAD_REQUEST, None, message).into_response();
        }
        Err(e) => {
            if !matches!(e, StoreError::Busy | StoreError::TooLarge { .. }) {
                tracing::error!("aggregation failed: {e}");
            }
            return ApiError::from(&e).into_response();
        }
    };
    let axes: Vec<Axis> = aggregation.group_by.clone();
    match format {
        Format::Json => axum::Json(to_json(&groups, &axes, aggregation.grain, k)).into_response(),
        Format::Csv => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], to_csv(&groups, &axes)).into_response(),
    }
}

/// Which ASNs may be named: the metrics' rule ([`metrics::fleet::eligible_asns`]), per (country,
/// ASN), over the distinct trusted probes among the rows selected.
struct EligibleAsns {
    /// The (country, ASN) pairs with at least `k` trusted probes.
    pairs: HashSet<(String, u32)>,
    /// ASNs with too few in at least one country: not named where the country is not an axis.
    short_somewhere: BTreeSet<u32>,
}

impl EligibleAsns {
    /// May `asn` be named in a group of country `cc` (`None`: countries not told apart)?
    fn names(&self, cc: Option<&str>, asn: u32) -> bool {
        match cc {
            Some(cc) => self.pairs.contains(&(cc.to_string(), asn)),
            None => !self.short_somewhere.contains(&asn),
        }
    }
}

async fn eligible_asns(
    store: &dyn Store,
    policy: &TrustPolicy,
    now: DateTime<Utc>,
    aggregation: &Aggregation,
    k: u32,
) -> Result<EligibleAsns, StoreError> {
    let since = aggregation.filter.since.unwrap_or(DateTime::UNIX_EPOCH);
    let trusted = policy.counted(&store.active_keys(since).await?, now);
    let per_pair = Aggregation {
        filter: aggregation.filter.clone(),
        group_by: vec![Axis::Country, Axis::Asn],
        grain: aggregation.grain,
        counted: Some(trusted),
    };
    // Every (country, ASN) of the selected rows, not only the trusted ones: a pair no trusted
    // probe reported from has none.
    let all = Aggregation { counted: None, ..per_pair.clone() };
    let probes: Vec<(String, u32, u64)> =
        store.aggregate(&per_pair).await?.into_iter().filter_map(|r| Some((r.cc?, r.asn?, r.probes))).collect();
    let pairs = metrics::fleet::eligible_asns(&probes, k);
    let short_somewhere = store
        .aggregate(&all)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.cc?, r.asn?)))
        .filter(|pair| !pairs.contains(pair))
        .map(|(_, asn)| asn)
        .collect();
    Ok(EligibleAsns { pairs, short_somewhere })
}

/// A group as published: its ASN may be folded and its probe count hidden.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Published {
    row: AggregateRow,
    /// The ASN was folded into [`OTHER_ASN`].
    other_asn: bool,
    /// The probe count, when it may be shown.
    probes: Option<u64>,
}

/// Apply the k-anonymity rule: ASNs `eligible` does not name (when grouped by ASN) merge into one
/// `other` group per remaining axis values; probe counts below `k` are hidden.
fn fold(rows: Vec<AggregateRow>, eligible: Option<&EligibleAsns>, k: u32) -> Vec<Published> {
    let mut out: Vec<Published> = Vec::with_capacity(rows.len());
    let mut others: BTreeMap<OtherKey, usize> = BTreeMap::new();
    for row in rows {
        let folded = match (eligible, row.asn) {
            (Some(eligible), Some(asn)) => !eligible.names(row.cc.as_deref(), asn),
            _ => false,
        };
        if !folded {
            let probes = (row.probes >= u64::from(k)).then_some(row.probes);
            out.push(Published { row, other_asn: false, probes });
            continue;
        }
        let key = (row.time, row.cc.clone(), row.target.clone(), row.test.map(|t| t.as_str()), row.mechanism.map(|m| m.as_str()));
        match others.get(&key) {
            Some(&i) => merge(&mut out[i].row, &row),
            None => {
                others.insert(key, out.len());
                out.push(Published { row: AggregateRow { asn: None, probes: 0, ..row }, other_asn: true, probes: None });
            }
        }
    }
    out
}

/// A folded group's values on every axis but the ASN: groups equal on them merge.
type OtherKey = (Option<DateTime<Utc>>, Option<String>, Option<String>, Option<&'static str>, Option<&'static str>);

fn merge(into: &mut AggregateRow, row: &AggregateRow) {
    into.measurements += row.measurements;
    let mut statuses: BTreeMap<Status, u64> = into.statuses.iter().copied().collect();
    for (s, n) in &row.statuses {
        *statuses.entry(*s).or_default() += n;
    }
    into.statuses = statuses.into_iter().collect();
    let mut mechanisms: BTreeMap<Mechanism, u64> = into.mechanisms.iter().copied().collect();
    for (m, n) in &row.mechanisms {
        *mechanisms.entry(*m).or_default() += n;
    }
    into.mechanisms = mechanisms.into_iter().collect();
}

/// The value of `axis` in `group`, as text (CSV) and JSON.
fn axis_value(group: &Published, axis: Axis) -> Value {
    let row = &group.row;
    match axis {
        Axis::Time => row.time.map_or(Value::Null, |t| json!(t.to_rfc3339_opts(SecondsFormat::Secs, true))),
        Axis::Country => json!(row.cc),
        Axis::Asn if group.other_asn => json!(OTHER_ASN),
        Axis::Asn => json!(row.asn),
        Axis::Target => json!(row.target),
        Axis::Test => json!(row.test.map(|t| t.as_str())),
        Axis::Mechanism => json!(row.mechanism.map(|m| m.as_str())),
    }
}

fn count_of<T: PartialEq + Copy>(counts: &[(T, u64)], of: T) -> u64 {
    counts.iter().find(|(t, _)| *t == of).map_or(0, |(_, n)| *n)
}

fn to_json(groups: &[Published], axes: &[Axis], grain: TimeGrain, k: u32) -> Value {
    let rows: Vec<Value> = groups
        .iter()
        .map(|group| {
            let mut row = Map::new();
            for axis in axes {
                row.insert(axis.as_str().into(), axis_value(group, *axis));
            }
            row.insert("measurements".into(), json!(group.row.measurements));
            let statuses: Map<String, Value> =
                Status::ALL.iter().map(|s| (s.as_str().to_string(), json!(count_of(&group.row.statuses, *s)))).collect();
            row.insert("statuses".into(), Value::Object(statuses));
            let mechanisms: Map<String, Value> =
                group.row.mechanisms.iter().map(|(m, n)| (m.as_str().to_string(), json!(n))).collect();
            row.insert("mechanisms".into(), Value::Object(mechanisms));
            row.insert("probes".into(), json!(group.probes));
            Value::Object(row)
        })
        .collect();
    json!({
        "time_grain": grain.as_str(),
        "axes": axes.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "asn_min_probes": k,
        "rows": rows,
    })
}

fn to_csv(groups: &[Published], axes: &[Axis]) -> String {
    let mut header: Vec<&str> = axes.iter().map(|a| a.as_str()).collect();
    header.push("measurements");
    header.extend(Status::ALL.iter().map(|s| s.as_str()));
    header.push("probes");
    header.extend(Mechanism::ALL.iter().map(|m| m.as_str()));
    let mut out = header.join(",");
    out.push('\n');
    for group in groups {
        let mut cells: Vec<String> = axes
            .iter()
            .map(|axis| match axis_value(group, *axis) {
                Value::Null => String::new(),
                Value::String(s) => csv_cell(&s),
                other => other.to_string(),
            })
            .collect();
        cells.push(group.row.measurements.to_string());
        cells.extend(Status::ALL.iter().map(|s| count_of(&group.row.statuses, *s).to_string()));
        cells.push(group.probes.map(|p| p.to_string()).unwrap_or_default());
        cells.extend(Mechanism::ALL.iter().map(|m| count_of(&group.row.mechanisms, *m).to_string()));
        let _ = writeln!(out, "{}", cells.join(","));
    }
    out
}

/// A text cell, quoted when it holds a comma, a quote or a line break (RFC 4180). Target names
/// are printable ASCII; countries, tests and mechanisms never need it.
fn csv_cell(s: &str) -> String {
    let mut cell = String::new();
    crate::export::format::push_csv_field(&mut cell, s);
    cell
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Result<(Aggregation, Format), FilterError> {
        let uri: axum::http::Uri = format!("/?{query}").parse().expect("uri");
        Query::<AggregationParams>::try_from_uri(&uri).expect("known parameters").0.parse()
    }

    #[test]
    fn axes_grain_and_format_parse_and_bad_values_name_their_parameter() {
        let (aggregation, format) = params("axis_x=time&axis_y=country&time_grain=week&format=csv").expect("valid");
        assert_eq!(
            (aggregation.group_by, aggregation.grain, format),
            (vec![Axis::Time, Axis::Country], TimeGrain::Week, Format::Csv)
        );
        let (aggregation, format) = params("").expect("defaults");
        assert_eq!((aggregation.group_by, aggregation.grain, format), (vec![], TimeGrain::Day, Format::Json));
        for (query, parameter) in [
            ("axis_x=colour", "axis_x"),
            ("axis_x=asn&axis_y=asn", "axis_y"),
            ("time_grain=year", "time_grain"),
            ("format=xml", "format"),
            ("country=de", "country"),
            ("since=yesterday", "since"),
            ("collector_key=maybe", "collector_key"),
        ] {
            assert_eq!(params(query).expect_err(query).parameter, parameter, "{query}");
        }
    }

    #[test]
    fn an_asn_is_named_per_country_as_the_metrics_name_it() {
        // AS 3320: three trusted probes in DE, one in AT.
        let eligible = EligibleAsns { pairs: [("DE".to_string(), 3320)].into(), short_somewhere: [3320].into() };
        assert!(eligible.names(Some("DE"), 3320));
        assert!(!eligible.names(Some("AT"), 3320), "the lone probe in AT stays one of many");
        assert!(!eligible.names(None, 3320), "nor is it named where AT's rows are mixed in");
    }

    #[test]
    fn small_asns_fold_into_other_and_small_probe_counts_are_hidden() {
        let row = |asn: u32, blocked: u64, probes: u64| AggregateRow {
            cc: Some("DE".into()),
            asn: Some(asn),
            measurements: blocked,
            statuses: vec![(Status::Blocked, blocked)],
            probes,
            ..AggregateRow::default()
        };
        let eligible = EligibleAsns { pairs: [("DE".to_string(), 3320)].into(), short_somewhere: [64_500, 64_501].into() };
        let out = fold(vec![row(3320, 5, 4), row(64_500, 2, 1), row(64_501, 3, 2)], Some(&eligible), 3);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].row.asn, out[0].probes, out[0].other_asn), (Some(3320), Some(4), false));
        assert_eq!((out[1].row.measurements, out[1].probes, out[1].other_asn), (5, None, true));
        assert_eq!(out[1].row.statuses, vec![(Status::Blocked, 5)]);
        let csv = to_csv(&out, &[Axis::Country, Axis::Asn]);
        assert!(csv.lines().nth(2).is_some_and(|l| l.starts_with("DE,other,5,0,5,0,0,,")), "{csv}");
    }
}
