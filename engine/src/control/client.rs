//! The probe's side of the test helper: ask the collector to repeat a step from its network.

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
}

/// The longest a helper response may be; a chain of certificates fits comfortably.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

impl HelperClient {
    /// A client for the helper at `base_url` (the collector's base URL).
    pub fn new(base_url: &str, http: reqwest::Client) -> Self {
        HelperClient { url: format!("{}/api/v1/control", base_url.trim_end_matches('/')), http }
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

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, HelperError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| HelperError::Unreachable(error_chain(&e.without_url())))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(HelperError::BadResponse(format!("response larger than {MAX_RESPONSE_BYTES} bytes")));
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
