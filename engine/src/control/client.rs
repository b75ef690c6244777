//! The probe's side of the test helper: ask the collector to repeat a step from its network.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vantage_measurement::{Observation, Vantage};

use super::protocol::{ControlRequest, ControlResponse};

/// Why the helper gave no usable answer. The measurement then goes on without the control.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// The helper could not be reached or timed out.
    #[error("test helper unreachable: {0}")]
    Unreachable(String),
    /// The helper answered with an error status.
    #[error("test helper refused the request: HTTP {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The helper's explanation (truncated).
        body: String,
    },
    /// The helper's answer was not a control response.
    #[error("test helper sent an unreadable response: {0}")]
    BadResponse(String),
}

/// Client of a collector's `POST /api/v1/control`.
#[derive(Clone, Debug)]
pub struct HelperClient {
    url: String,
    http: reqwest::Client,
    /// The helper's clock minus this probe's, in seconds, from the last answer's `Date` header.
    clock_offset: Arc<Mutex<Option<i64>>>,
}

/// The longest a helper response may be; a chain of certificates fits comfortably.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

impl HelperClient {
    /// A client for the helper at `base_url` (the collector's base URL).
    pub fn new(base_url: &str, http: reqwest::Client) -> Self {
        HelperClient {
            url: format!("{}/api/v1/control", base_url.trim_end_matches('/')),
            http,
            clock_offset: Arc::new(Mutex::new(None)),
        }
    }

    /// The helper's clock minus this probe's, in seconds, as its last answer showed (HTTP `Date`,
    /// whole seconds); `None` before any answer. What an obfs4 verdict checks: the handshake
    /// carries the hour.
    pub fn clock_offset_secs(&self) -> Option<i64> {
        self.clock_offset.lock().ok().and_then(|o| *o)
    }

    /// Ask the helper to run `req`. The helper's observations come back marked `vantage: helper`.
    pub async fn control(&self, req: &ControlRequest, timeout: Duration) -> Result<Vec<Observation>, HelperError> {
        let send = async {
            let resp = self
                .http
                .post(&self.url)
                .json(req)
                .send()
                .await
                .map_err(|e| HelperError::Unreachable(error_chain(&e.without_url())))?;
            let status = resp.status();
            if let Some(offset) = clock_offset(resp.headers().get(reqwest::header::DATE), chrono::Utc::now())
                && let Ok(mut kept) = self.clock_offset.lock()
            {
                *kept = Some(offset);
            }
            let body = read_limited(resp).await?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body).chars().take(300).collect();
                return Err(HelperError::Refused { status: status.as_u16(), body: text });
            }
            let parsed: ControlResponse = serde_json::from_slice(&body).map_err(|e| HelperError::BadResponse(e.to_string()))?;
            Ok(parsed.observations)
        };
        let observations = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| HelperError::Unreachable(format!("no answer within {timeout:?}")))??;
        // A helper can't vouch for anything but its own view: relabel defensively.
        Ok(observations
            .into_iter()
            .map(|mut o| {
                o.vantage = Vantage::Helper;
                o
            })
            .collect())
    }
}

/// The seconds a `Date` header (an HTTP-date, RFC 9110) is ahead of `now`; `None` without a
/// readable one.
fn clock_offset(date: Option<&reqwest::header::HeaderValue>, now: chrono::DateTime<chrono::Utc>) -> Option<i64> {
    let date = chrono::DateTime::parse_from_rfc2822(date?.to_str().ok()?).ok()?;
    Some(date.timestamp() - now.timestamp())
}

async fn read_limited(resp: reqwest::Response) -> Result<Vec<u8>, HelperError> {
    read_capped(resp, MAX_RESPONSE_BYTES).await.map_err(|e| match e {
        CappedReadError::Transport(e) => HelperError::Unreachable(e),
        too_large @ CappedReadError::TooLarge(_) => HelperError::BadResponse(too_large.to_string()),
    })
}

/// Why a capped read of a response body failed.
#[derive(Debug, thiserror::Error)]
pub enum CappedReadError {
    /// The connection failed mid-body (the error and its causes).
    #[error("{0}")]
    Transport(String),
    /// The body outgrew the cap.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

/// A response body, at most `cap` bytes: a hostile server can't make the caller buffer more.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, CappedReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| CappedReadError::Transport(error_chain(&e.without_url())))? {
        if body.len() + chunk.len() > cap {
            return Err(CappedReadError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes on one line: reqwest's top line alone says only "error sending
/// request", and the cause (a refused certificate, a pin mismatch) is what the log needs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn the_date_header_gives_the_helpers_clock_offset() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z").expect("time").to_utc();
        let offset = |v: &'static str| clock_offset(Some(&HeaderValue::from_static(v)), now);
        assert_eq!(offset("Wed, 02 Dec 2026 10:00:00 GMT"), Some(0));
        assert_eq!(offset("Wed, 02 Dec 2026 13:00:05 GMT"), Some(3 * 3600 + 5), "the helper is ahead");
        assert_eq!(offset("Wed, 02 Dec 2026 08:00:00 GMT"), Some(-2 * 3600));
        assert_eq!(offset("yesterday"), None);
        assert_eq!(clock_offset(None, now), None);
    }
}
