//! `GET /api/v1/measurements`: the researcher API, streamed NDJSON, paged by keyset cursors.
//!
//! Every parameter is parsed into a typed [`Filter`] before the store sees it, and a bad one is a
//! `400` that names it, so a typo never silently returns "no data". The parsers of the shared
//! filters (`since` … `collector_key`) are used by `GET /api/v1/aggregation` too.
//!
//! Paging: when rows remain after a page, the response carries `Link: </api/v1/measurements?…&cursor=TOKEN>;
//! rel="next"` (RFC 8288; a relative reference, so it works behind a proxy), absent on the last
//! page. The page's end is found first ([`Store::positions`]: the `limit`-th row and whether one
//! follows), then the rows up to it stream. A cursor ([`crate::cursor`]) is bound to its filters.
//! What a walker sees under concurrent ingest: every row stored before the walk began, exactly
//! once, in `(started_at, id)` order; a row arriving during the walk is seen if it sorts after
//! the page being read and not if it sorts before (a late-arriving measurement that started
//! earlier: walk again with `since`, or filter by arrival in the daily exports). A page can hold a
//! few more than `limit` rows when rows arrive inside its range while it is read. Rows stream from the store
//! as they are read: the body starts before the last row is found, and the collector never holds
//! a whole export in memory. A store error mid-stream aborts the response instead of ending it
//! cleanly, so a client can't mistake a truncated export for a complete one.

use axum::body::{Body, Bytes};
use axum::extract::{Query, RawQuery, State, rejection::QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use vantage_measurement::validate::MAX_NAME_LEN;
use vantage_measurement::{Mechanism, Status, TestKind, is_country_code, is_plausible_name};

use std::sync::Arc;

use crate::cursor::Cursor;
use crate::error::{ApiError, ServerFault};
use crate::metrics::{Metrics, StoreOp};
use crate::store::{CollectorKey, Filter, Store, StoreError};

/// Rows returned when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 100_000;

/// The query string as sent; every value is checked by [`QueryParams::to_filter`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    since: Option<String>,
    until: Option<String>,
    country: Option<String>,
    asn: Option<String>,
    test: Option<String>,
    target: Option<String>,
    verdict: Option<String>,
    mechanism: Option<String>,
    observed_country: Option<String>,
    observed_asn: Option<String>,
    collector_key: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A parameter that could not be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{parameter}`: {expected}")]
pub struct FilterError {
    /// The parameter's name.
    pub parameter: &'static str,
    /// What it should look like.
    pub expected: String,
}

pub(crate) fn invalid(parameter: &'static str, expected: impl Into<String>) -> FilterError {
    FilterError { parameter, expected: expected.into() }
}

impl QueryParams {
    /// The typed filter (with the cursor's position, if one was given) and row limit.
    pub fn to_filter(&self) -> Result<(Filter, usize), FilterError> {
        let mut filter = Filter {
            since: time("since", self.since.as_deref())?,
            until: time("until", self.until.as_deref())?,
            country: self.country.as_deref().map(|cc| country("country", cc)).transpose()?,
            asn: self.asn.as_deref().map(|asn| as_number("asn", asn)).transpose()?,
            observed_country: self.observed_country.as_deref().map(|cc| country("observed_country", cc)).transpose()?,
            observed_asn: self.observed_asn.as_deref().map(|asn| as_number("observed_asn", asn)).transpose()?,
            test: self.test.as_deref().map(test).transpose()?,
            target: self.target.as_deref().map(target).transpose()?,
            verdict: self
                .verdict
                .as_deref()
                .map(|v| Status::parse(v).ok_or_else(|| invalid("verdict", one_of(Status::ALL.iter().map(|s| s.as_str())))))
                .transpose()?,
            mechanism: self.mechanism.as_deref().map(mechanism).transpose()?,
            collector_key: self.collector_key.as_deref().map(collector_key).transpose()?,
            after: None,
            through: None,
        };
        check_range(&filter)?;
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(invalid("limit", format!("a number from 1 to {MAX_LIMIT}"))),
            },
        };
        if let Some(token) = &self.cursor {
            filter.after = Some(Cursor::decode(token, &filter).map_err(|expected| invalid("cursor", expected))?.after);
        }
        Ok((filter, limit))
    }
}

/// `since`, `until`: RFC 3339.
pub(crate) fn time(parameter: &'static str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, FilterError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| invalid(parameter, "an RFC 3339 time such as 2025-01-31T00:00:00Z"))
        })
        .transpose()
}

/// `until` after `since`.
pub(crate) fn check_range(filter: &Filter) -> Result<(), FilterError> {
    match (filter.since, filter.until) {
        (Some(since), Some(until)) if since > until => Err(invalid("until", "a time after `since`")),
        _ => Ok(()),
    }
}

/// `test`.
pub(crate) fn test(t: &str) -> Result<TestKind, FilterError> {
    TestKind::parse(t).ok_or_else(|| invalid("test", one_of(TestKind::ALL.iter().map(|t| t.as_str()))))
}

/// `target`: a name the schema allows.
pub(crate) fn target(name: &str) -> Result<String, FilterError> {
    let expected = format!("a target name (printable ASCII, at most {MAX_NAME_LEN} characters)");
    is_plausible_name(name).then(|| name.to_string()).ok_or_else(|| invalid("target", expected))
}

/// `mechanism`.
pub(crate) fn mechanism(m: &str) -> Result<Mechanism, FilterError> {
    Mechanism::parse(m).ok_or_else(|| invalid("mechanism", one_of(Mechanism::ALL.iter().map(|m| m.as_str()))))
}

/// `collector_key`: where the signer stood at ingest.
pub(crate) fn collector_key(k: &str) -> Result<CollectorKey, FilterError> {
    CollectorKey::parse(k).ok_or_else(|| invalid("collector_key", one_of(CollectorKey::ALL.iter().map(|k| k.as_str()))))
}

pub(crate) fn country(parameter: &'static str, cc: &str) -> Result<String, FilterError> {
    let expected = "two upper-case letters such as DE (ZZ: unknown)";
    is_country_code(cc).then(|| cc.to_string()).ok_or_else(|| invalid(parameter, expected))
}

pub(crate) fn as_number(parameter: &'static str, asn: &str) -> Result<u32, FilterError> {
    let digits = asn.strip_prefix("AS").unwrap_or(asn);
    digits.parse::<u32>().map_err(|_| invalid(parameter, "an AS number such as 3320"))
}

pub(crate) fn one_of<'a>(values: impl Iterator<Item = &'a str>) -> String {
    format!("one of {}", values.collect::<Vec<_>>().join(", "))
}

/// `GET /api/v1/measurements`.
pub(crate) async fn get_measurements(
    State(store): State<Arc<dyn Store>>,
    State(metrics): State<Arc<Metrics>>,
    RawQuery(raw): RawQuery,
    params: Result<Query<QueryParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => return ApiError::client(StatusCode::BAD_REQUEST, None, rejection.body_text()).into_response(),
    };
    let (mut filter, limit) = match params.to_filter() {
        Ok(parsed) => parsed,
        Err(e) => return ApiError::client(StatusCode::BAD_REQUEST, None, e.to_string()).into_response(),
    };
    let timer = metrics.store_timer(StoreOp::Query);
    let failed = |e: StoreError| {
        // Busy is the query slots doing their job, not news for the log.
        if !matches!(e, StoreError::Busy) {
            tracing::error!("query failed: {e}");
        }
        ApiError::from(&e).into_response()
    };
    // Where this page ends: its last row, and whether another follows it. A short last page
    // (fewer rows than `limit`) is found from its start.
    let (last, more) = match store.positions(&filter, limit - 1, 2).await {
        Ok(ends) if !ends.is_empty() => (ends.first().copied(), ends.len() == 2),
        Ok(_) => match store.positions(&filter, 0, limit).await {
            Ok(all) => (all.last().copied(), false),
            Err(e) => return failed(e),
        },
        Err(e) => return failed(e),
    };
    let link =
        match last.filter(|_| more).map(|last| HeaderValue::from_str(&next_link(raw.as_deref(), &Cursor::new(last, &filter)))) {
            None => None,
            Some(Ok(link)) => Some(link),
            // Never drop it quietly: a walker without it would think it had reached the end.
            Some(Err(e)) => return ApiError::server(ServerFault::Internal, format!("the next page's link: {e}")).into_response(),
        };
    // Every row up to the page's end, even if some arrived inside it since it was found (the
    // last page too: a row that arrived there must not push an earlier one past `limit`).
    let mut rows_limit = limit;
    if let Some(last) = last {
        filter.through = Some(last);
        rows_limit = usize::MAX;
    }
    let rows = match store.query(&filter, rows_limit).await {
        Ok(rows) => rows,
        Err(e) => return failed(e),
    };
    // The timer rides along with the stream and records when the last row has gone out.
    let body = futures::stream::unfold((rows, timer), |(mut rows, timer)| async move {
        match rows.recv().await? {
            Ok(mut line) => {
                line.push('\n');
                Some((Ok::<_, StoreError>(Bytes::from(line)), (rows, timer)))
            }
            Err(e) => {
                tracing::error!("query aborted mid-stream: {e}");
                Some((Err(e), (rows, timer)))
            }
        }
    });
    let mut response = ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(body)).into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// The `Link` to the next page: this request's query string (as sent, already URL-encoded)
/// without its `cursor`, plus the next one.
fn next_link(raw: Option<&str>, cursor: &Cursor) -> String {
    let mut pairs: Vec<&str> =
        raw.unwrap_or("").split('&').filter(|pair| !pair.is_empty() && !pair.starts_with("cursor=")).collect();
    let cursor = format!("cursor={}", cursor.encode());
    pairs.push(&cursor);
    format!("</api/v1/measurements?{}>; rel=\"next\"", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> QueryParams {
        let query: String = pairs.iter().map(|(k, v)| format!("{k}={v}&")).collect();
        let uri: axum::http::Uri = format!("/?{query}").parse().expect("uri");
        Query::<QueryParams>::try_from_uri(&uri).expect("known parameters").0
    }

    #[test]
    fn every_filter_parses_to_its_type() {
        let (filter, limit) = params(&[
            ("since", "2025-01-01T00:00:00Z"),
            ("until", "2025-02-01T00:00:00%2B01:00"),
            ("country", "DE"),
            ("asn", "3320"),
            ("test", "tls"),
            ("target", "wikipedia"),
            ("verdict", "blocked"),
            ("mechanism", "tls.reset_after_clienthello"),
            ("observed_country", "FR"),
            ("observed_asn", "AS3215"),
            ("limit", "5"),
        ])
        .to_filter()
        .expect("valid");
        assert_eq!(limit, 5);
        assert_eq!(filter.asn, Some(3320));
        assert_eq!(filter.test, Some(TestKind::Tls));
        assert_eq!(filter.verdict, Some(Status::Blocked));
        assert_eq!(filter.mechanism, Some(Mechanism::TlsResetAfterClientHello));
        assert_eq!((filter.observed_country.as_deref(), filter.observed_asn), (Some("FR"), Some(3215)));
        assert_eq!(filter.until.map(|t| t.to_rfc3339()).as_deref(), Some("2025-01-31T23:00:00+00:00"));
        assert_eq!(params(&[]).to_filter().expect("empty").1, DEFAULT_LIMIT);
    }

    #[test]
    fn a_bad_value_names_its_parameter() {
        for (parameter, value) in [
            ("since", "yesterday"),
            ("country", "de"),
            ("asn", "-1"),
            ("test", "ping"),
            ("verdict", "maybe"),
            ("mechanism", "dns.made_up"),
            ("limit", "0"),
            ("limit", "100001"),
            ("observed_country", "fr"),
            ("observed_asn", "x"),
            ("collector_key", "maybe"),
            ("cursor", "garbage"),
        ] {
            let err = params(&[(parameter, value)]).to_filter().expect_err(value);
            assert_eq!(err.parameter, parameter, "{value}");
        }
        let err = params(&[("since", "2025-02-01T00:00:00Z"), ("until", "2025-01-01T00:00:00Z")])
            .to_filter()
            .expect_err("inverted range");
        assert_eq!(err.parameter, "until");
    }

    #[test]
    fn country_and_target_follow_the_schemas_rules() {
        let longest = "a".repeat(MAX_NAME_LEN);
        let (filter, _) = params(&[("country", "ZZ"), ("target", &longest)]).to_filter().expect("valid");
        assert_eq!((filter.country.as_deref(), filter.target.as_deref()), (Some("ZZ"), Some(longest.as_str())));
        let too_long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(params(&[("target", &too_long)]).to_filter().expect_err("too long").parameter, "target");
        assert_eq!(params(&[("target", "a%20b")]).to_filter().expect_err("a space").parameter, "target");
        assert_eq!(params(&[("country", "DEU")]).to_filter().expect_err("three letters").parameter, "country");
    }

    #[test]
    fn an_unknown_parameter_is_refused() {
        let uri: axum::http::Uri = "/?contry=DE".parse().expect("uri");
        assert!(Query::<QueryParams>::try_from_uri(&uri).is_err());
    }
}
