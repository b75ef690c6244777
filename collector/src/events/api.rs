//! `GET /api/v1/events`: the detected events of the look-back as JSON, from the fleet snapshot
//! (never the store: every replica answers the same list, and a crowd costs nothing).
//!
//! Filters: `since` (RFC 3339: events still going on or ended at or after it), `country`,
//! `target`, `test`; a bad one is a `400` naming it. The answer:
//!
//! ```json
//! {"made_at": "2026-12-01T14:05:00Z", "read_at": "2026-12-01T14:04:15Z", "lookback_hours": 168,
//!  "events": [{"country": "DE", "target": "wikipedia", "test": "tls",
//!              "started_at": "2026-12-01T13:00:00Z", "detected_at": "2026-12-01T14:00:00Z",
//!              "ended_at": null, "ongoing": true, "started_before_lookback": false,
//!              "mechanism": "tls.reset_after_clienthello", "baseline_share": 0.05,
//!              "blocked_share": 0.83, "probes_blocked": 5, "probes_measuring": 6, "asns": [3320]}]}
//! ```
//!
//! `made_at` is when the fleet snapshot was made, `read_at` when its events were read from the
//! store (every few refreshes, `crate::fleet::EVENTS_EVERY_TICKS`). Ongoing events first, then
//! the latest started. `asns` lists only networks with as many
//! trusted probes as the `asn` metric label needs (`--asn-min-probes`), so an event never points
//! at a lone volunteer's network.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State, rejection::QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vantage_measurement::TestKind;

use super::{Event, LOOKBACK_HOURS};
use crate::error::ApiError;
use crate::fleet::Fleet;
use crate::query::{self, FilterError};

/// The query string as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    since: Option<String>,
    country: Option<String>,
    target: Option<String>,
    test: Option<String>,
}

/// The typed filters.
#[derive(Debug, Default, PartialEq)]
pub struct EventFilter {
    since: Option<DateTime<Utc>>,
    country: Option<String>,
    target: Option<String>,
    test: Option<TestKind>,
}

impl EventParams {
    /// The filters, or the parameter that is wrong and what it should be (the measurements API's
    /// parsers, so a value means the same in both).
    pub fn to_filter(&self) -> Result<EventFilter, FilterError> {
        Ok(EventFilter {
            since: query::time("since", self.since.as_deref())?,
            country: self.country.as_deref().map(|cc| query::country("country", cc)).transpose()?,
            target: self.target.as_deref().map(query::target).transpose()?,
            test: self.test.as_deref().map(query::test).transpose()?,
        })
    }
}

impl EventFilter {
    /// Does `event` pass?
    pub fn matches(&self, event: &Event) -> bool {
        self.since.is_none_or(|since| event.ended_at.is_none_or(|end| end >= since))
            && self.country.as_ref().is_none_or(|cc| *cc == event.country)
            && self.target.as_ref().is_none_or(|t| *t == event.target)
            && self.test.is_none_or(|t| t == event.test)
    }
}

/// One event as answered: the stored event and whether it is ongoing.
#[derive(Serialize)]
struct Answered<'a> {
    #[serde(flatten)]
    event: &'a Event,
    ongoing: bool,
}

/// The answer.
#[derive(Serialize)]
struct Answer<'a> {
    made_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
    lookback_hours: i64,
    events: Vec<Answered<'a>>,
}

/// `GET /api/v1/events`.
pub(crate) async fn get_events(State(fleet): State<Arc<Fleet>>, params: Result<Query<EventParams>, QueryRejection>) -> Response {
    let filter = match params.map_err(|r| r.body_text()).and_then(|Query(p)| p.to_filter().map_err(|e| e.to_string())) {
        Ok(filter) => filter,
        Err(message) => return ApiError::client(StatusCode::BAD_REQUEST, None, message).into_response(),
    };
    let snapshot = fleet.snapshot();
    let events =
        snapshot.events.iter().filter(|e| filter.matches(e)).map(|event| Answered { event, ongoing: event.ongoing() }).collect();
    Json(Answer { made_at: snapshot.made_at, read_at: snapshot.events_read_at, lookback_hours: LOOKBACK_HOURS, events })
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(since: Option<&str>, country: Option<&str>, target: Option<&str>, test: Option<&str>) -> EventParams {
        let own = |v: Option<&str>| v.map(str::to_string);
        EventParams { since: own(since), country: own(country), target: own(target), test: own(test) }
    }

    #[test]
    fn a_bad_parameter_is_named() {
        for (p, name) in [
            (params(Some("yesterday"), None, None, None), "since"),
            (params(None, Some("de"), None, None), "country"),
            (params(None, None, Some("a b\n"), None), "target"),
            (params(None, None, None, Some("ftp")), "test"),
        ] {
            let e = p.to_filter().expect_err("refused");
            assert_eq!(e.parameter, name, "{e}");
        }
    }

    #[test]
    fn since_keeps_ongoing_events_and_those_ended_after_it() {
        let at = |h: i64| DateTime::from_timestamp(1_764_547_200 + h * 3600, 0).unwrap_or_default();
        let event = |ended: Option<i64>| Event {
            country: "DE".into(),
            target: "wiki".into(),
            test: TestKind::Tls,
            started_at: at(0),
            detected_at: at(1),
            ended_at: ended.map(at),
            started_before_lookback: false,
            mechanism: None,
            baseline_share: 0.05,
            blocked_share: 1.0,
            probes_blocked: 2,
            probes_measuring: 2,
            asns: Vec::new(),
        };
        let filter = params(Some("2025-12-01T05:00:00Z"), Some("DE"), None, Some("tls")).to_filter().expect("valid");
        assert!(filter.matches(&event(None)));
        assert!(filter.matches(&event(Some(5))));
        assert!(!filter.matches(&event(Some(4))));
        let elsewhere = params(None, Some("FR"), None, None).to_filter().expect("valid");
        assert!(!elsewhere.matches(&event(None)));
    }
}
