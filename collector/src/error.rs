//! What a refused request is told, sorted by whose fault it was.
//!
//! rustls sorts its errors by blame, and so does the API: the *request's* fault is a 4xx (sent
//! again unchanged, it fails again), the *collector's* fault is a 5xx and names a [`ServerFault`].
//! Where waiting helps (every slot taken, the store unavailable, a shutdown under way) the answer
//! is `503` with `Retry-After`; where something broke (a task panicked, a stored row is damaged)
//! it is `500`, and the log says what. Either way a probe keeps its batch on anything but `200`,
//! so no fault loses data; the split tells an operator which side to look at.
//!
//! One 4xx says "later" rather than "never": `429` from the rate limiter, with `Retry-After`
//! (whole seconds, rounded up) and [`RATE_LIMITED`] as its reason; a probe keeps its batch.
//!
//! The body is `{"error": message, "reason": code}`, `reason` being a bounded code: a
//! [`BatchRejection`](crate::payload::BatchRejection), a [`ServerFault`] or [`RATE_LIMITED`]. It
//! is absent where the message alone is the answer (a bad query parameter, a bad control request).
//!
//! The mapping of every [`StoreError`] is here, once, for every handler that uses the store.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// The `reason` of a `429`: the client went over a rate limit and may come back after `Retry-After`.
pub const RATE_LIMITED: &str = "rate_limited";

/// How long a client should wait when every slot is taken: a batch or a control takes seconds.
const RETRY_BUSY: Duration = Duration::from_secs(5);
/// How long a client should wait for the store or a restart: long enough not to hammer either.
const RETRY_UNAVAILABLE: Duration = Duration::from_secs(30);

vantage_measurement::closed_set! {
    /// The `reason` of a server-side failure: the collector's fault, not the request's.
    pub enum ServerFault {
        /// Every slot for this kind of request is taken (ingest batches, queries, helper controls).
        Busy => "busy",
        /// The store can't be used right now (closed, locked, out of space).
        StoreUnavailable => "store_unavailable",
        /// The collector is stopping and cancelled the work.
        ShuttingDown => "shutting_down",
        /// Something in the collector broke (a task panicked, a stored row is damaged): the same
        /// request may well fail again; the log says what.
        Internal => "internal_error",
        /// A test-helper control outran the helper's overall deadline.
        HelperTimeout => "helper_timeout",
    }
}

impl ServerFault {
    /// The status: `503` where waiting helps, `504` for a control step that did not finish in
    /// time, `500` for what broke.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Busy | Self::StoreUnavailable | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::HelperTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// How long to wait before retrying, where waiting helps.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Self::Busy => Some(RETRY_BUSY),
            Self::StoreUnavailable | Self::ShuttingDown => Some(RETRY_UNAVAILABLE),
            Self::Internal | Self::HelperTimeout => None,
        }
    }
}

/// A refused request and whose fault it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// The request's fault: a 4xx.
    Client {
        /// A 4xx status.
        status: StatusCode,
        /// The bounded code, if there is one.
        reason: Option<&'static str>,
        /// What to fix.
        message: String,
    },
    /// The collector's fault: a 5xx.
    Server {
        /// Which fault; decides the status and `Retry-After`.
        fault: ServerFault,
        /// What happened, without internals (those go to the log).
        message: String,
    },
    /// Over a rate limit: `429` with `Retry-After`.
    RateLimited {
        /// How long until a request would be allowed.
        retry_after: Duration,
        /// Which limit, in words.
        message: String,
    },
}

impl ApiError {
    /// The request's fault, answered with `status` (a 4xx).
    pub(crate) fn client(status: StatusCode, reason: Option<&'static str>, message: impl Into<String>) -> Self {
        debug_assert!(status.is_client_error(), "{status} is not a client error");
        ApiError::Client { status, reason, message: message.into() }
    }

    /// The collector's fault.
    pub(crate) fn server(fault: ServerFault, message: impl Into<String>) -> Self {
        ApiError::Server { fault, message: message.into() }
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Client { status, .. } => *status,
            Self::Server { fault, .. } => fault.status(),
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The same answer as plain text, for endpoints a browser or a scraper reads.
    pub(crate) fn plain(self) -> Response {
        let retry_after = self.retry_after();
        let status = self.status();
        let (Self::Client { message, .. } | Self::Server { message, .. } | Self::RateLimited { message, .. }) = self;
        with_retry_after((status, format!("{message}\n")).into_response(), retry_after)
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Client { .. } => None,
            Self::Server { fault, .. } => fault.retry_after(),
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after();
        let status = self.status();
        let (reason, message) = match self {
            Self::Client { reason, message, .. } => (reason, message),
            Self::Server { fault, message } => (Some(fault.as_str()), message),
            Self::RateLimited { message, .. } => (Some(RATE_LIMITED), message),
        };
        let body = match reason {
            Some(reason) => serde_json::json!({ "error": message, "reason": reason }),
            None => serde_json::json!({ "error": message }),
        };
        with_retry_after((status, axum::Json(body)).into_response(), retry_after)
    }
}

/// Every store failure, answered once. The caller logs the detail; the client is told only
/// which kind of fault it was.
impl From<&StoreError> for ApiError {
    fn from(e: &StoreError) -> Self {
        let (fault, message) = match e {
            StoreError::TooLarge { .. } => {
                return ApiError::client(StatusCode::BAD_REQUEST, None, e.to_string());
            }
            StoreError::Busy => (ServerFault::Busy, "too many queries are running; retry shortly"),
            // Closed for shutdown, locked, out of space or I/O: all pass, and a retry finds them gone.
            StoreError::Closed | StoreError::Database(_) => {
                (ServerFault::StoreUnavailable, "the store is unavailable; retry later")
            }
            // A panicked statement, a damaged row, or (only at start-up) an unusable file:
            // retrying the same request meets the same failure.
            StoreError::Task(_)
            | StoreError::Corrupt(_)
            | StoreError::Encode(_)
            | StoreError::Incompatible(_)
            | StoreError::Open { .. }
            | StoreError::DataDir { .. } => (ServerFault::Internal, "the store failed; the collector's log says why"),
        };
        ApiError::server(fault, message)
    }
}

/// `Retry-After` in whole seconds, rounded up: a client that waits that long is welcome.
pub(crate) fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

fn with_retry_after(mut response: Response, after: Option<Duration>) -> Response {
    if let Some(after) = after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(after)));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    }

    #[test]
    fn server_faults_are_5xx_and_only_transient_ones_ask_to_retry() {
        for fault in ServerFault::ALL {
            assert!(fault.status().is_server_error(), "{fault}");
            assert_eq!(fault.retry_after().is_some(), fault.status() == StatusCode::SERVICE_UNAVAILABLE, "{fault}");
        }
        let ids: Vec<_> = ServerFault::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(ids, ["busy", "store_unavailable", "shutting_down", "internal_error", "helper_timeout"]);
    }

    #[test]
    fn every_store_error_maps_by_whose_fault_it_is() {
        let fault = |e: StoreError| match ApiError::from(&e) {
            ApiError::Server { fault, .. } => fault,
            client => panic!("a store error is never the client's fault: {client:?}"),
        };
        assert_eq!(fault(StoreError::Busy), ServerFault::Busy);
        assert_eq!(fault(StoreError::Closed), ServerFault::StoreUnavailable);
        assert_eq!(fault(StoreError::Database("database is locked".into())), ServerFault::StoreUnavailable);
        assert_eq!(fault(StoreError::Task("panicked".into())), ServerFault::Internal);
        assert_eq!(fault(StoreError::Encode("bug".into())), ServerFault::Internal);
        assert_eq!(fault(StoreError::Corrupt("bad row".into())), ServerFault::Internal);
        assert_eq!(fault(StoreError::Incompatible("v9".into())), ServerFault::Internal);
    }

    #[tokio::test]
    async fn a_server_fault_says_its_reason_and_when_to_retry() {
        let response = ApiError::server(ServerFault::Busy, "busy; retry later").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(body(response).await, r#"{"error":"busy; retry later","reason":"busy"}"#);

        let response = ApiError::server(ServerFault::Internal, "broke").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none(), "a retry would meet the same failure");
    }

    #[tokio::test]
    async fn a_client_fault_keeps_its_status_and_optional_reason() {
        let response = ApiError::client(StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"), "too large").into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(body(response).await, r#"{"error":"too large","reason":"body_too_large"}"#);
        let response = ApiError::client(StatusCode::BAD_REQUEST, None, "invalid `limit`").into_response();
        assert_eq!(body(response).await, r#"{"error":"invalid `limit`"}"#);
    }

    #[tokio::test]
    async fn over_a_rate_limit_is_429_with_the_wait_rounded_up() {
        let limited = || ApiError::RateLimited { retry_after: Duration::from_millis(1_001), message: "slow down".into() };
        let response = limited().into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(body(response).await, r#"{"error":"slow down","reason":"rate_limited"}"#);
        let plain = limited().plain();
        assert_eq!(plain.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(plain.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn whole_seconds_round_up() {
        for (wait, secs) in
            [(Duration::ZERO, 0), (Duration::from_nanos(1), 1), (Duration::from_millis(1500), 2), (Duration::from_secs(5), 5)]
        {
            assert_eq!(whole_seconds(wait), secs, "{wait:?}");
        }
    }

    #[tokio::test]
    async fn the_plain_form_keeps_status_and_retry_after() {
        let response = ApiError::server(ServerFault::StoreUnavailable, "the store is unavailable").plain();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
        assert_eq!(body(response).await, "the store is unavailable\n");
    }
}
