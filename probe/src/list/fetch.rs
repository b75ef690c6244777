//! `GET /api/v1/targets` from each collector in turn, with a deadline and a size cap.

use std::fmt;
use std::time::Duration;

use vantage_measurement::wire::target_list::{LIST_PATH, ListError};

use crate::cli::ConfigError;
use crate::config::{CollectorAccess, ProbeConfig, collector_client};
use vantage_engine::control::error_chain;

/// The largest list body read (a signed list of 10,000 web targets with a category each is 1.8 MB).
pub const MAX_LIST_BYTES: usize = 8 << 20;

/// What happened at one collector.
#[derive(Debug)]
pub struct Attempt {
    /// The collector's base URL.
    pub collector: String,
    /// What went wrong there.
    pub error: AttemptError,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.collector, self.error)
    }
}

/// Why one collector gave no usable list.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// No answer, or a transport error (blocked, down, a proxy that refused).
    #[error("unreachable ({0})")]
    Unreachable(String),
    /// An error status.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// The body is larger than [`MAX_LIST_BYTES`].
    #[error("the list is larger than {MAX_LIST_BYTES} bytes; refusing it")]
    TooLarge,
    /// The list failed verification.
    #[error("{0}")]
    Refused(ListError),
    /// Signed, but its targets don't parse (the operator's tooling checks them, so this is a
    /// collector of another version).
    #[error("signed, but its targets are unusable: {0}")]
    BadTargets(String),
}

/// Fetches the signed list from the collectors, the first preferred.
#[derive(Clone, Debug)]
pub struct ListFetcher {
    collectors: Vec<String>,
    http: reqwest::Client,
    timeout: Duration,
}

impl ListFetcher {
    /// Fetch from `collectors` with `http` (which carries the trust anchors and any proxy);
    /// `timeout` bounds each collector's whole answer.
    pub fn new(collectors: Vec<String>, http: reqwest::Client, timeout: Duration) -> ListFetcher {
        ListFetcher { collectors, http, timeout }
    }

    /// The fetcher a config file describes (its CA files, pins and SOCKS5 proxy); its collectors
    /// must pass the transport rule.
    pub fn for_config(config: &ProbeConfig, timeout: Duration) -> Result<ListFetcher, ConfigError> {
        Ok(ListFetcher::new(config.collectors.clone(), config.collector_client(timeout)?, timeout))
    }

    /// A fetcher for these collectors with a fresh client built from `access`.
    pub fn with_access(
        collectors: Vec<String>,
        access: &CollectorAccess<'_>,
        timeout: Duration,
    ) -> Result<ListFetcher, ConfigError> {
        let http = collector_client(&collectors, access, timeout)?;
        Ok(ListFetcher::new(collectors, http, timeout))
    }

    /// The collectors in the order they are asked.
    pub fn collectors(&self) -> &[String] {
        &self.collectors
    }

    /// The list's bytes from one collector.
    pub(super) async fn fetch_one(&self, base: &str) -> Result<Vec<u8>, AttemptError> {
        let url = format!("{}{LIST_PATH}", base.trim_end_matches('/'));
        tokio::time::timeout(self.timeout, self.read_capped(&url))
            .await
            .map_err(|_| AttemptError::Unreachable(format!("no whole answer within {} s", self.timeout.as_secs())))?
    }

    async fn read_capped(&self, url: &str) -> Result<Vec<u8>, AttemptError> {
        let unreachable = |e: reqwest::Error| AttemptError::Unreachable(error_chain(&e.without_url()));
        let mut resp = self.http.get(url).header("accept", "application/json").send().await.map_err(unreachable)?;
        if !resp.status().is_success() {
            return Err(AttemptError::Status(resp.status().as_u16()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_LIST_BYTES as u64) {
            return Err(AttemptError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_LIST_BYTES {
                return Err(AttemptError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
