//! `GET /`: a status page for someone who has not set up Grafana yet — where what is blocked,
//! how, since when, by how many probes and networks, with links to the raw measurements.
//!
//! Built from the fleet snapshot the gauges use ([`crate::fleet`]), so it never touches the store
//! itself: the replica that makes the snapshot builds the page and looks up the "since when"
//! ([`fill_since`], one indexed lookup per blocked probe shown), and every replica serves the same
//! page. It is rendered once per snapshot and then served from memory: reloading it, or a crowd
//! reloading it, costs nothing. Like the gauges, it shows only what counts (`crate::trust`):
//! trusted probes' measurements whose observed ASN does not contradict the claimed one.
//!
//! Under each country's heading, a [timeline](timeline) draws the blocked share per target hour
//! by hour ([`fill_timelines`], aggregate queries: one, then one per country with blocking),
//! as an inline [SVG](svg).

pub mod events;
pub mod html;
pub mod svg;
pub mod timeline;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use vantage_measurement::Status;

use crate::fleet::Fleet;
use crate::metrics::{Metrics, StoreOp};
use crate::store::{AggregateRow, Aggregation, Axis, Filter, Store, StoreError};

/// The last rendered page and the snapshot generation it was rendered from.
#[derive(Debug, Default)]
pub(crate) struct PageCache(Mutex<Option<(u64, Arc<String>)>>);

/// What the page forbids the browser: everything but its own inline style and same-origin links.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// `GET /`.
pub(crate) async fn get_status(State(fleet): State<Arc<Fleet>>, State(cache): State<Arc<PageCache>>) -> Response {
    let snapshot = fleet.snapshot();
    let cached = cache.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let html = match cached {
        Some((generation, html)) if generation == snapshot.generation => html,
        _ => {
            let mut page = snapshot.page.clone();
            if snapshot.made_at.is_none() {
                // Before the first snapshot: an empty page that still says the window.
                page.window_secs = fleet.window.as_secs();
            }
            let html = Arc::new(html::render(&page, &snapshot.events, fleet.now()));
            *cache.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((snapshot.generation, Arc::clone(&html)));
            html
        }
    };
    let mut response = (StatusCode::OK, html.as_str().to_owned()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Look up when each shown row's blocking began: the earliest streak start among its probes.
pub(crate) async fn fill_since(store: &dyn Store, metrics: &Metrics, page: &mut view::Page) -> Result<(), StoreError> {
    let keys: Vec<_> = page.countries.iter().flat_map(|c| &c.blocked).flat_map(|row| row.streak_keys.iter().cloned()).collect();
    if keys.is_empty() {
        return Ok(());
    }
    let timer = metrics.store_timer(StoreOp::Streaks);
    let starts = store.blocked_since(keys.clone()).await?;
    timer.observe_duration();
    let by_key: HashMap<_, _> = keys.into_iter().zip(starts).collect();
    for row in page.countries.iter_mut().flat_map(|c| c.blocked.iter_mut()) {
        row.since = row
            .streak_keys
            .iter()
            .filter_map(|key| by_key.get(key).copied().flatten())
            .min()
            .and_then(|t| DateTime::from_timestamp(t, 0));
    }
    Ok(())
}

/// Fill the page's timelines over `span` from the counted measurements (rows of the `counted` keys, none
/// contradicted) of the span: first which countries had anything `blocked` (one row per country),
/// then each such country's series by hour (or day) and target. Per country, so no one query
/// nears the store's group cap ([`MAX_AGGREGATE_ROWS`]) however many countries the fleet spans;
/// a country that still would (thousands of targets) is left without a chart and logged.
///
/// [`MAX_AGGREGATE_ROWS`]: crate::store::MAX_AGGREGATE_ROWS
pub(crate) async fn fill_timelines(
    store: &dyn Store,
    metrics: &Metrics,
    page: &mut view::Page,
    span: &timeline::Span,
    counted: &[String],
) -> Result<(), StoreError> {
    let in_span = Filter { since: Some(span.start), ..Filter::default() };
    let aggregation = |filter: Filter, group_by: Vec<Axis>| Aggregation {
        filter,
        group_by,
        grain: span.grain,
        counted: Some(counted.to_vec()),
    };
    let timer = metrics.store_timer(StoreOp::Timelines);
    let blocked = Filter { verdict: Some(Status::Blocked), ..in_span.clone() };
    let countries = store.aggregate(&aggregation(blocked, vec![Axis::Country])).await?;
    let mut rows = Vec::new();
    for cc in countries.into_iter().filter_map(|row| row.cc) {
        let filter = Filter { country: Some(cc.clone()), ..in_span.clone() };
        match store.aggregate(&aggregation(filter, vec![Axis::Time, Axis::Target])).await {
            Ok(series) => rows.extend(series.into_iter().map(|row| AggregateRow { cc: Some(cc.clone()), ..row })),
            Err(e @ StoreError::TooLarge { .. }) => {
                tracing::warn!(cc = cc.as_str(), "status page: no timeline for this country: {e}")
            }
            Err(e) => return Err(e),
        }
    }
    timer.observe_duration();
    page.timelines = timeline::build(&rows, span);
    Ok(())
}
