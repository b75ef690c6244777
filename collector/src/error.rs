//! The API's error answer: `{"error": message}`, plus `"reason"` when there is a bounded code.
//!
//! Below every handler, so each of them answers alike without importing the router.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A JSON error body: `{"error": message}`, plus `"reason"` when there is a bounded code.
pub(crate) fn api_error(status: StatusCode, reason: Option<&'static str>, message: &str) -> Response {
    let body = match reason {
        Some(reason) => serde_json::json!({ "error": message, "reason": reason }),
        None => serde_json::json!({ "error": message }),
    };
    (status, axum::Json(body)).into_response()
}
