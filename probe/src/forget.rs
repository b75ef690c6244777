//! `vantage-probe forget`: ask the collector to delete everything this probe's key submitted.
//!
//! The request ([`vantage_measurement::wire::forget`]) is signed with the probe key like an
//! upload batch, so only this probe can ask for its own data to go. It is sent to the first
//! collector that answers (the collectors of one network share their store). The key is only
//! read, never made: a probe without a key never sent anything signed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use vantage_measurement::wire::forget::{FORGET_PATH, FORGET_REQUEST, ForgetReport, ForgetRequest};
use vantage_measurement::wire::{KEY_HEADER, ProbeKey, SIGNATURE_HEADER};

use crate::identity::{self, IdentityError};

/// How much of a refusal's text is kept.
const MESSAGE_CHARS: usize = 300;

/// Flags of `vantage-probe forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Config file (as written by `join`). Default: $VANTAGE_CONFIG, else /etc/vantage/probe.toml
    /// as root, else ~/.config/vantage/probe.toml.
    #[arg(long, env = "VANTAGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Allow plaintext http:// collectors on other machines (labs only; see `run --help`).
    #[arg(long)]
    pub danger_plaintext_collector: bool,
}

/// The collector's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// The collector that deleted.
    pub collector: String,
    /// Measurements deleted.
    pub deleted: u64,
}

/// Why nothing was deleted.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// There is no probe key: nothing signed was ever sent.
    #[error("no probe key at {0}: this probe never sent a signed upload, so no collector holds measurements under its key")]
    NoKey(String),
    /// The key file is unusable.
    #[error(transparent)]
    Key(IdentityError),
    /// No collector answered.
    #[error("no collector answered the deletion request: {0}; nothing was deleted, try again later")]
    Unreachable(String),
    /// A collector refused the request.
    #[error("{collector} refused the deletion request: HTTP {status}: {message}")]
    Refused {
        /// The collector.
        collector: String,
        /// HTTP status.
        status: u16,
        /// Its explanation, truncated.
        message: String,
    },
}

/// Load the probe key in `data_dir` (without making one).
pub fn probe_key(data_dir: &Path) -> Result<ProbeKey, ForgetError> {
    let path = data_dir.join(identity::KEY_FILE);
    identity::load(&path).map_err(|e| match e {
        IdentityError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ForgetError::NoKey(path.display().to_string())
        }
        other => ForgetError::Key(other),
    })
}

/// The signed request body: the exact bytes the signature covers.
pub fn request_body(now: DateTime<Utc>) -> Vec<u8> {
    let request = ForgetRequest { request: FORGET_REQUEST.to_string(), requested_at: now };
    // A string and a timestamp always serialise.
    serde_json::to_vec(&request).unwrap_or_default()
}

/// Send the request to each collector in turn until one answers it; `timeout` bounds each.
pub async fn forget(
    collectors: &[String],
    key: &ProbeKey,
    http: &reqwest::Client,
    timeout: Duration,
    now: DateTime<Utc>,
) -> Result<Forgotten, ForgetError> {
    let body = request_body(now);
    let signature = key.sign_base64(&body);
    let mut failures = Vec::new();
    for collector in collectors {
        let url = format!("{}{FORGET_PATH}", collector.trim_end_matches('/'));
        let request = http
            .post(&url)
            .header("content-type", "application/json")
            .header(KEY_HEADER, key.public_key_base64())
            .header(SIGNATURE_HEADER, &signature)
            .body(body.clone());
        let answer = tokio::time::timeout(timeout, async {
            let resp = request.send().await?;
            let status = resp.status();
            resp.text().await.map(|text| (status, text))
        })
        .await;
        let (status, text) = match answer {
            Err(_) => {
                failures.push(format!("{collector}: no answer within {} s", timeout.as_secs()));
                continue;
            }
            Ok(Err(e)) => {
                failures.push(format!("{collector}: {}", vantage_engine::control::error_chain(&e.without_url())));
                continue;
            }
            Ok(Ok(answer)) => answer,
        };
        let message: String = text.trim().chars().take(MESSAGE_CHARS).collect();
        match status.as_u16() {
            200..=299 => {
                let report: ForgetReport = serde_json::from_str(&text).map_err(|e| ForgetError::Refused {
                    collector: collector.clone(),
                    status: status.as_u16(),
                    message: format!("unreadable answer: {e}"),
                })?;
                return Ok(Forgotten { collector: collector.clone(), deleted: report.deleted });
            }
            // Busy, down, or a collector without the endpoint yet: another one may answer.
            404 | 405 | 408 | 429 | 500..=599 => failures.push(format!("{collector}: HTTP {status}")),
            _ => return Err(ForgetError::Refused { collector: collector.clone(), status: status.as_u16(), message }),
        }
    }
    Err(ForgetError::Unreachable(failures.join("; ")))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use vantage_measurement::wire::verify_batch;

    use super::*;

    type Seen = Arc<Mutex<Vec<ForgetRequest>>>;

    /// The collector's side as the wire contract has it: verify the signature over the exact
    /// body, check the request and the clock, answer with a count.
    async fn forget_endpoint(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        if verify_batch(&header(KEY_HEADER), &header(SIGNATURE_HEADER), &body).is_err() {
            return (StatusCode::UNAUTHORIZED, "{\"error\":\"bad signature\"}".into());
        }
        let Ok(request) = serde_json::from_slice::<ForgetRequest>(&body) else {
            return (StatusCode::BAD_REQUEST, "{\"error\":\"not a forget request\"}".into());
        };
        let fresh = (Utc::now() - request.requested_at).num_seconds().abs() <= 600;
        if request.request != FORGET_REQUEST || !fresh {
            return (StatusCode::BAD_REQUEST, "{\"error\":\"stale\"}".into());
        }
        seen.lock().expect("lock").push(request);
        (StatusCode::OK, serde_json::json!({ "deleted": 42 }).to_string())
    }

    async fn collector() -> (String, Seen) {
        let seen: Seen = Arc::default();
        let app = Router::new().route(FORGET_PATH, post(forget_endpoint)).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    /// A port nothing listens on: bound, then closed.
    async fn refusing() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    }

    #[tokio::test]
    async fn a_signed_request_reaches_the_first_collector_that_answers() {
        let (url, seen) = collector().await;
        let collectors = vec![refusing().await, url.clone()];
        let key = ProbeKey::from_seed(&[5; 32]);
        let now = Utc::now();
        let done = forget(&collectors, &key, &reqwest::Client::new(), Duration::from_secs(5), now).await.expect("forgotten");
        assert_eq!(done, Forgotten { collector: url, deleted: 42 });
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].requested_at.timestamp(), now.timestamp());
    }

    #[tokio::test]
    async fn a_refusal_is_reported_and_a_missing_key_is_not_made() {
        let (url, seen) = collector().await;
        // Stale by an hour: the collector refuses it (a replay).
        let stale = Utc::now() - chrono::Duration::hours(1);
        let key = ProbeKey::from_seed(&[5; 32]);
        let err = forget(&[url], &key, &reqwest::Client::new(), Duration::from_secs(5), stale).await.expect_err("stale");
        assert!(matches!(err, ForgetError::Refused { status: 400, .. }), "{err}");
        assert!(seen.lock().expect("lock").is_empty());

        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(probe_key(dir.path()), Err(ForgetError::NoKey(_))));
        assert!(!dir.path().join(identity::KEY_FILE).exists(), "forget never makes a key");
    }
}
