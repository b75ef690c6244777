//! `POST /api/v1/forget`: a volunteer's signed request to delete everything their probe key
//! submitted ([`vantage_measurement::wire::forget`]).
//!
//! Only the key's holder can sign the request, so nobody can erase another probe's data. The
//! signature covers the exact body, like a batch's; the body must say `delete-all-measurements`
//! and carry a `requested_at` within [`FORGET_MAX_SKEW_SECS`] of the collector's clock, and a
//! request no newer than the last one honoured for the same key is refused, so a captured
//! request can't be replayed to erase what the probe sent since. (The memory of honoured requests
//! lasts as long as the process; the clock check alone covers a restart.) Anonymous rows carry no
//! key and can't be claimed by anyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use vantage_measurement::wire::KeyId;
pub use vantage_measurement::wire::forget::FORGET_PATH;
use vantage_measurement::wire::forget::{FORGET_MAX_SKEW_SECS, FORGET_REQUEST, ForgetReport, ForgetRequest};

use crate::error::ApiError;
use crate::fleet::Fleet;
use crate::ingest::SignatureHeaders;
use crate::metrics::Metrics;
use crate::store::Store;

/// The largest body read: the request is a few dozen bytes.
pub const MAX_REQUEST_BYTES: usize = 4096;

/// Why a deletion request is refused. Each message says what to fix.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForgetError {
    /// No signature headers: nobody can be identified.
    #[error("a deletion request must be signed with the probe's key (X-Vantage-Key, X-Vantage-Signature)")]
    Unsigned,
    /// The signature does not verify.
    #[error("the deletion request's signature does not verify: {0}")]
    BadSignature(String),
    /// Not the documented body.
    #[error("not a deletion request ({0}); expected {{\"request\": \"{FORGET_REQUEST}\", \"requested_at\": \"<RFC 3339>\"}}")]
    Malformed(String),
    /// `requested_at` too far from the collector's clock.
    #[error(
        "the request was made at {requested_at}, {skew_secs} s from the collector's clock (at most {FORGET_MAX_SKEW_SECS} s): an old request is not honoured again; check the probe's clock and sign a new one"
    )]
    Stale {
        /// When the request says it was made.
        requested_at: DateTime<Utc>,
        /// How far that is from now.
        skew_secs: i64,
    },
    /// Already honoured (or an older one was).
    #[error("this deletion request (or a newer one) was already honoured; sign a new one to delete again")]
    Replayed,
}

impl ForgetError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unsigned | Self::BadSignature(_) => StatusCode::UNAUTHORIZED,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Stale { .. } | Self::Replayed => StatusCode::FORBIDDEN,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::BadSignature(_) => "bad_signature",
            Self::Malformed(_) => "malformed",
            Self::Stale { .. } => "stale",
            Self::Replayed => "replayed",
        }
    }
}

/// The newest `requested_at` honoured per key id, pruned of entries the clock check already
/// refuses.
#[derive(Debug, Default)]
pub struct Honoured(Mutex<HashMap<String, DateTime<Utc>>>);

impl Honoured {
    /// Refuse `at` for `key` if a request at least as new was honoured.
    fn check(&self, key: &KeyId, at: DateTime<Utc>) -> Result<(), ForgetError> {
        let seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.get(key.as_str()).is_some_and(|last| at <= *last) {
            return Err(ForgetError::Replayed);
        }
        Ok(())
    }

    /// Remember that the request made `at` for `key` was carried out (only then: a request the
    /// store failed on may be sent again).
    fn record(&self, key: &KeyId, at: DateTime<Utc>, now: DateTime<Utc>) {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let horizon = now - chrono::Duration::seconds(FORGET_MAX_SKEW_SECS);
        seen.retain(|_, last| *last >= horizon);
        let last = seen.entry(key.as_str().to_string()).or_insert(at);
        *last = (*last).max(at);
    }
}

/// Check a deletion request: signed over `body`, the documented body, fresh, not replayed.
/// Returns the key whose data is to be deleted and when the request was made.
pub(crate) fn check(
    signature: SignatureHeaders,
    body: &[u8],
    honoured: &Honoured,
    now: DateTime<Utc>,
) -> Result<(KeyId, DateTime<Utc>), ForgetError> {
    let key = match signature.verify(body) {
        Ok(Some(key)) => key,
        Ok(None) => return Err(ForgetError::Unsigned),
        Err(e) => return Err(ForgetError::BadSignature(e.to_string())),
    };
    let request: ForgetRequest = serde_json::from_slice(body).map_err(|e| ForgetError::Malformed(e.to_string()))?;
    if request.request != FORGET_REQUEST {
        return Err(ForgetError::Malformed(format!("`request` is {:?}", request.request)));
    }
    let skew_secs = (now - request.requested_at).num_seconds().abs();
    if skew_secs > FORGET_MAX_SKEW_SECS {
        return Err(ForgetError::Stale { requested_at: request.requested_at, skew_secs });
    }
    honoured.check(&key, request.requested_at)?;
    Ok((key, request.requested_at))
}

/// `POST /api/v1/forget`.
pub(crate) async fn post_forget(
    State(store): State<Arc<dyn Store>>,
    State(metrics): State<Arc<Metrics>>,
    State(fleet): State<Arc<Fleet>>,
    State(honoured): State<Arc<Honoured>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, requested_at) = match check(SignatureHeaders::from_headers(&headers), &body, &honoured, Utc::now()) {
        Ok(checked) => checked,
        Err(e) => {
            tracing::info!(reason = e.reason(), "deletion request refused");
            let mut response = ApiError::client(e.status(), Some(e.reason()), e.to_string()).into_response();
            if e.status() == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Vantage-Signature"));
            }
            return response;
        }
    };
    let deleted = match store.delete_probe(&key).await {
        Ok(deleted) => deleted,
        Err(e) => {
            tracing::error!("a deletion request failed in the store: {e}");
            return ApiError::from(&e).into_response();
        }
    };
    honoured.record(&key, requested_at, Utc::now());
    // Neither the key id nor the address is logged: the log would keep what was just deleted.
    tracing::info!(deleted, "deletion request honoured");
    match store.count().await {
        Ok(count) => metrics.set_stored(count),
        Err(e) => tracing::warn!("counting after a deletion failed: {e}"),
    }
    if let Err(e) = fleet.refresh().await {
        tracing::warn!("fleet refresh after a deletion failed (the next tick retries): {e}");
    }
    (StatusCode::OK, Json(ForgetReport { deleted })).into_response()
}

#[cfg(test)]
mod tests {
    use vantage_measurement::wire::{KEY_HEADER, ProbeKey, SIGNATURE_HEADER};

    use super::*;

    fn signed(key: &ProbeKey, body: &[u8]) -> SignatureHeaders {
        let mut headers = HeaderMap::new();
        headers.insert(KEY_HEADER, key.public_key_base64().parse().expect("header"));
        headers.insert(SIGNATURE_HEADER, key.sign_base64(body).parse().expect("header"));
        SignatureHeaders::from_headers(&headers)
    }

    fn body(request: &str, at: DateTime<Utc>) -> Vec<u8> {
        serde_json::to_vec(&ForgetRequest { request: request.into(), requested_at: at }).expect("json")
    }

    #[test]
    fn a_fresh_signed_request_names_its_key_once() {
        let key = ProbeKey::from_seed(&[5; 32]);
        let now = Utc::now();
        let honoured = Honoured::default();
        let b = body(FORGET_REQUEST, now);
        assert_eq!(check(signed(&key, &b), &b, &honoured, now), Ok((key.key_id(), now)));
        assert_eq!(check(signed(&key, &b), &b, &honoured, now), Ok((key.key_id(), now)), "not carried out yet: may be retried");
        honoured.record(&key.key_id(), now, now);
        assert_eq!(check(signed(&key, &b), &b, &honoured, now), Err(ForgetError::Replayed));
        let later_at = now + chrono::Duration::seconds(1);
        let later = body(FORGET_REQUEST, later_at);
        assert_eq!(
            check(signed(&key, &later), &later, &honoured, now),
            Ok((key.key_id(), later_at)),
            "a new request is honoured"
        );
    }

    #[test]
    fn unsigned_tampered_malformed_and_stale_requests_are_refused() {
        let key = ProbeKey::from_seed(&[5; 32]);
        let now = Utc::now();
        let honoured = Honoured::default();
        let b = body(FORGET_REQUEST, now);
        assert_eq!(check(SignatureHeaders::default(), &b, &honoured, now), Err(ForgetError::Unsigned));
        let other = body(FORGET_REQUEST, now + chrono::Duration::seconds(5));
        assert!(matches!(check(signed(&key, &b), &other, &honoured, now), Err(ForgetError::BadSignature(_))));
        let wrong = body("delete-everything", now);
        assert!(matches!(check(signed(&key, &wrong), &wrong, &honoured, now), Err(ForgetError::Malformed(_))));
        let old = body(FORGET_REQUEST, now - chrono::Duration::seconds(FORGET_MAX_SKEW_SECS + 1));
        let err = check(signed(&key, &old), &old, &honoured, now).expect_err("stale");
        assert!(matches!(err, ForgetError::Stale { skew_secs, .. } if skew_secs == FORGET_MAX_SKEW_SECS + 1), "{err}");
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
    }
}
