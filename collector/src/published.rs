//! The signed target list the operator publishes (`--signed-list`): checked when it is loaded,
//! served byte for byte at `GET /api/v1/targets`, re-read on SIGHUP, and the one source of the
//! `target` metric labels (its `labelled` names).
//!
//! The rules a list must meet are here once, in [`check_document`]: `vantage-collector list sign`
//! applies them before signing and `serve` again when loading, so a list the collector serves is
//! one the probe's own parser accepts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use vantage_engine::targets::{self, TargetSpec};
use vantage_measurement::wire::target_list::{self, ListDocument, ListError, ListTrust, SignedList};

use crate::config::MAX_PUBLISHED_TARGETS;
use crate::error::ApiError;
use crate::helper::policy::HelperPolicy;
use crate::metrics::Metrics;

/// Why a list document breaks the rules, before or after signing.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The targets are not a targets file the probe would accept.
    #[error("the list's targets: {0}")]
    Targets(#[from] targets::TargetsError),
    /// A `labelled` or `disabled_targets` name is not a target of the list.
    #[error("`{field}` names `{name}`, which is not a target of the list")]
    UnknownName {
        /// The field.
        field: &'static str,
        /// The name.
        name: String,
    },
    /// More labels than the collector's label budget.
    #[error(
        "the list would give {count} targets a metric label of their own; at most {MAX_PUBLISHED_TARGETS} may have one: name the ones that need it in `labelled` (the list may still hold more targets)"
    )]
    TooManyLabels {
        /// How many.
        count: usize,
    },
    /// Version 0 is the "no list yet" of a probe.
    #[error("the list version must be at least 1")]
    ZeroVersion,
    /// Already expired.
    #[error("the list expired at {0}; sign it with a later expiry")]
    Expired(DateTime<Utc>),
    /// Measuring every target more than once a minute, or less than once a week, is a typo.
    #[error("the interval must be 60 s to 7 days, not {0} s")]
    Interval(u64),
}

/// The shortest interval a list may ask for.
pub const MIN_INTERVAL_SECS: u64 = 60;
/// The longest.
pub const MAX_INTERVAL_SECS: u64 = 7 * 86_400;

/// Check a list document at `now`: its targets parse with the probe's parser, the names it
/// refers to exist, its labels fit the budget, its version and interval make sense, it has not
/// expired. Returns the parsed targets.
pub fn check_document(document: &ListDocument, now: DateTime<Utc>) -> Result<Vec<TargetSpec>, DocumentError> {
    let specs = targets::parse(&document.targets_toml, "the list's targets")?;
    let names: HashSet<&str> = specs.iter().map(|t| t.name.as_str()).collect();
    for (field, list) in [("labelled", &document.labelled), ("disabled_targets", &document.disabled_targets)] {
        if let Some(name) = list.iter().find(|n| !names.contains(n.as_str())) {
            return Err(DocumentError::UnknownName { field, name: name.clone() });
        }
    }
    let labels = document.labelled.iter().collect::<HashSet<_>>().len();
    if labels > MAX_PUBLISHED_TARGETS {
        return Err(DocumentError::TooManyLabels { count: labels });
    }
    if document.version == 0 {
        return Err(DocumentError::ZeroVersion);
    }
    if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&document.interval_secs) {
        return Err(DocumentError::Interval(document.interval_secs));
    }
    if document.expires_at <= now {
        return Err(DocumentError::Expired(document.expires_at));
    }
    Ok(specs)
}

/// Why a signed list file can't be served.
#[derive(Debug, thiserror::Error)]
pub enum PublishedListError {
    /// Unreadable.
    #[error("cannot read the signed list {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Not the envelope.
    #[error("{path} is not a signed target list (made by `vantage-collector list sign`): {message}")]
    Json {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// The signature, a key or the expiry is wrong.
    #[error("{path}: {source}")]
    Signature {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: ListError,
    },
    /// The document breaks a rule.
    #[error("{path}: {source}")]
    Document {
        /// The file.
        path: String,
        /// Which rule.
        #[source]
        source: DocumentError,
    },
}

/// A signed list that passed its checks, ready to serve.
#[derive(Debug)]
pub struct PublishedList {
    /// The file's bytes, served as they are.
    pub bytes: Bytes,
    /// Its entity tag (quoted).
    pub etag: String,
    /// The document's version.
    pub version: u64,
    /// The signer's fingerprint.
    pub signer: String,
    /// The names that get a `target` label.
    pub labelled: HashSet<String>,
    /// Where the test helper may go while this list is served: what it names.
    pub helper_policy: HelperPolicy,
}

impl PublishedList {
    /// Read and check the signed list at `path` at `now`.
    pub fn load(path: &Path, now: DateTime<Utc>) -> Result<PublishedList, PublishedListError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| PublishedListError::Read { path: shown.clone(), source })?;
        Self::check(bytes, &shown, now)
    }

    /// Check signed-list bytes: the envelope parses, the signature verifies against its own
    /// signer (through no revoked key), and the document meets [`check_document`].
    pub fn check(bytes: Vec<u8>, shown: &str, now: DateTime<Utc>) -> Result<PublishedList, PublishedListError> {
        let list: SignedList = serde_json::from_slice(&bytes)
            .map_err(|e| PublishedListError::Json { path: shown.to_string(), message: e.to_string() })?;
        let own = ListTrust { pinned: list.signer.clone(), version: None };
        let verified = target_list::verify(&list, &own, now)
            .map_err(|source| PublishedListError::Signature { path: shown.to_string(), source })?;
        let targets = check_document(&verified.document, now)
            .map_err(|source| PublishedListError::Document { path: shown.to_string(), source })?;
        let digest = Sha256::digest(&bytes);
        let etag = format!("\"{}\"", digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>());
        Ok(PublishedList {
            etag,
            version: verified.document.version,
            signer: target_list::fingerprint_of(&verified.signer),
            labelled: verified.document.labelled.into_iter().collect(),
            helper_policy: HelperPolicy::listed(&targets),
            bytes: Bytes::from(bytes),
        })
    }
}

/// The list being served (if any) and the file it is re-read from.
#[derive(Debug)]
pub struct ListSlot {
    path: Option<PathBuf>,
    current: RwLock<Option<Arc<PublishedList>>>,
    metrics: Arc<Metrics>,
}

impl ListSlot {
    /// Serve `list`, loaded from `path`; `None` for a collector without a signed list.
    pub fn new(path: Option<PathBuf>, list: Option<PublishedList>, metrics: Arc<Metrics>) -> ListSlot {
        ListSlot { path, current: RwLock::new(list.map(Arc::new)), metrics }
    }

    /// The list served now.
    pub fn current(&self) -> Option<Arc<PublishedList>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Re-read the file. A good list replaces the served one and its labels become the metric
    /// labels; a bad one changes nothing and says why. `Ok(None)`: no file to re-read.
    pub fn reload(&self) -> Result<Option<Arc<PublishedList>>, PublishedListError> {
        let Some(path) = &self.path else { return Ok(None) };
        let list = Arc::new(PublishedList::load(path, Utc::now())?);
        self.metrics.set_published_targets(list.labelled.clone());
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&list));
        Ok(Some(list))
    }

    /// Re-read on every SIGHUP, for ever (the caller aborts the task).
    pub async fn reload_on_hangup(self: Arc<Self>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; the signed list is re-read only at start");
                return;
            };
            while hangups.recv().await.is_some() {
                match self.reload() {
                    Ok(Some(list)) => tracing::info!(version = list.version, signer = %list.signer, "signed list re-read"),
                    Ok(None) => tracing::info!("SIGHUP: no signed list configured, nothing to re-read"),
                    Err(e) => tracing::error!("SIGHUP: keeping the signed list served so far: {e}"),
                }
            }
        }
    }
}

/// `GET /api/v1/targets`: the signed list as the operator's file has it.
pub(crate) async fn get_targets(State(slot): State<Arc<ListSlot>>, headers: HeaderMap) -> Response {
    let Some(list) = slot.current() else {
        return ApiError::client(
            StatusCode::NOT_FOUND,
            Some("no_target_list"),
            "this collector publishes no signed target list (its operator starts it with --signed-list)",
        )
        .into_response();
    };
    let etag = HeaderValue::from_str(&list.etag).unwrap_or(HeaderValue::from_static("\"\""));
    if if_none_match(&headers, &list.etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let content_type = HeaderValue::from_static("application/json");
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type), (header::ETAG, etag)], list.bytes.clone()).into_response()
}

/// Does `If-None-Match` name `etag` (or `*`)? Weak comparison, as RFC 9110 asks for this header.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|tag| {
        let tag = tag.trim();
        tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
    })
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use vantage_measurement::TestKind;
    use vantage_measurement::wire::target_list::ListKey;

    use super::*;

    fn document() -> ListDocument {
        ListDocument {
            version: 3,
            issued_at: Utc::now(),
            expires_at: Utc::now() + Duration::days(7),
            interval_secs: 3600,
            disabled_tests: vec![TestKind::Tor],
            disabled_targets: vec!["signal".into()],
            labelled: vec!["wikipedia".into()],
            targets_toml: "[[target]]\nname = \"wikipedia\"\ndomain = \"www.wikipedia.org\"\n\n[[target]]\nname = \"signal\"\ndomain = \"signal.org\"\n"
                .into(),
        }
    }

    #[test]
    fn a_document_is_checked_with_the_probes_parser_and_its_own_rules() {
        let now = Utc::now();
        assert_eq!(check_document(&document(), now).expect("valid").len(), 2);
        let broken = |edit: fn(&mut ListDocument)| {
            let mut d = document();
            edit(&mut d);
            check_document(&d, now).expect_err("refused")
        };
        assert!(matches!(broken(|d| d.targets_toml.push_str("bogus = 1\n")), DocumentError::Targets(_)));
        assert!(
            matches!(broken(|d| d.labelled.push("nope".into())), DocumentError::UnknownName { field: "labelled", name } if name == "nope")
        );
        assert!(matches!(
            broken(|d| d.disabled_targets.push("x".into())),
            DocumentError::UnknownName { field: "disabled_targets", .. }
        ));
        assert!(matches!(broken(|d| d.version = 0), DocumentError::ZeroVersion));
        assert!(matches!(broken(|d| d.interval_secs = 5), DocumentError::Interval(5)));
        assert!(matches!(broken(|d| d.expires_at = Utc::now() - Duration::seconds(1)), DocumentError::Expired(_)));
    }

    #[test]
    fn more_labels_than_the_budget_are_refused_but_more_targets_are_not() {
        let count = MAX_PUBLISHED_TARGETS + 1;
        let mut d = document();
        d.targets_toml = (0..count).map(|i| format!("[[target]]\nname = \"t{i}\"\ndomain = \"t{i}.example\"\n")).collect();
        d.disabled_targets.clear();
        d.labelled = (0..MAX_PUBLISHED_TARGETS).map(|i| format!("t{i}")).collect();
        assert_eq!(check_document(&d, Utc::now()).expect("more targets than labels is fine").len(), count);
        d.labelled.push(format!("t{MAX_PUBLISHED_TARGETS}"));
        let err = check_document(&d, Utc::now()).expect_err("too many labels");
        assert!(matches!(err, DocumentError::TooManyLabels { count: c } if c == count), "{err}");
    }

    #[test]
    fn a_signed_list_is_checked_against_its_own_signer() {
        let key = ListKey::from_seed(&[4; 32]);
        let bytes = serde_json::to_vec(&key.sign(&document(), vec![], vec![])).expect("json");
        let list = PublishedList::check(bytes.clone(), "list.json", Utc::now()).expect("valid");
        assert_eq!((list.version, list.signer.as_str()), (3, key.fingerprint().as_str()));
        assert_eq!(list.labelled, HashSet::from(["wikipedia".to_string()]));
        assert_eq!(list.bytes.as_ref(), bytes.as_slice());

        let tampered = String::from_utf8(bytes).expect("utf8").replace("wikipedia.org", "wikipedia.com");
        let err = PublishedList::check(tampered.into_bytes(), "list.json", Utc::now()).expect_err("tampered");
        assert!(matches!(err, PublishedListError::Signature { source: ListError::Tampered, .. }), "{err}");
        let revoked = serde_json::to_vec(&key.sign(&document(), vec![], vec![key.revoke()])).expect("json");
        let err = PublishedList::check(revoked, "list.json", Utc::now()).expect_err("revoked");
        assert!(matches!(err, PublishedListError::Signature { source: ListError::Revoked(_), .. }), "{err}");
        assert!(matches!(PublishedList::check(b"{}".to_vec(), "x", Utc::now()), Err(PublishedListError::Json { .. })));
    }

    #[test]
    fn if_none_match_compares_weakly_and_in_lists() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, value.parse().expect("header"));
            if_none_match(&headers, "\"abc\"")
        };
        assert!(with("\"abc\""));
        assert!(with("W/\"abc\""));
        assert!(with("\"x\", \"abc\""));
        assert!(with("*"));
        assert!(!with("\"abd\""));
        assert!(!if_none_match(&HeaderMap::new(), "\"abc\""));
    }
}
