//! `POST /api/v1/measurements`: validate a batch line by line, store the good lines once.
//!
//! The promise to a probe: a `200` means every line is either stored (now or earlier) or listed in
//! `rejected` with a reason it can act on, and what was stored is committed durably. So the probe
//! can drop the whole batch from its spool on `200` and keep it for a retry on anything else.
//! A batch-level problem (too large, bad encoding, store down) stores nothing.
//!
//! Identity: a batch signed with a probe key (`X-Vantage-Key`, `X-Vantage-Signature`, see
//! [`vantage_measurement::wire::signature`]) is verified over its exact bytes before anything is inflated or
//! parsed; a bad signature refuses the whole batch with `401`. Its key id is stored beside each
//! measurement so the fleet gauges can count distinct probes, and the key's activity moves in the
//! same transaction. A batch without the headers is accepted as anonymous (older and simple
//! clients). Every valid line is stored; whether it *counts* (moves the measurement counters) is
//! the rule of [`crate::trust`], applied here with the key's standing after the batch: anonymous
//! batches, keys still earning trust and contradicted locations are counted only in
//! `vantage_collector_measurements_uncounted_total{reason}`. The report tells the probe where its
//! key stands, so an unregistered probe knows to register. Its standing *before* the batch (or
//! `anonymous`) is stored beside each row ([`crate::store::KEY_FIELD`]): what the key was when
//! the data arrived, which a later change of trust does not rewrite.
//!
//! Limits: the source is charged before anything else, the key is looked at before the body is
//! read and charged once its signature verified, before anything is inflated ([`crate::limits`]).
//! Over either limit the batch is answered `429` with `Retry-After`, and the probe keeps it.
//!
//! Privacy: the submitter's address (its [`ClientSource`]: the TCP peer, or the client a trusted
//! proxy names) is used for two things only: refusing lines that contain it
//! (a probe bug that would leak the volunteer's IP into public data), and, when the operator
//! gave GeoIP databases, looking up the country and ASN it belongs to (stored beside each
//! measurement of the batch, and told to the probe in the report); besides, the rate limiter
//! counts it under a salted hash kept in memory. Then it is dropped: it is
//! never logged, stored or turned into a metric label. Neither is the key id.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use uuid::Uuid;
use vantage_measurement::wire::{
    IngestReport, KEY_HEADER, KeyId, KeyStanding, ObservedLocation, RejectedLine, SIGNATURE_HEADER, SPOOL_PENDING_HEADER,
    SignatureError, verify_batch,
};
use vantage_measurement::{Measurement, Rejection, RejectionCode, parse_line};

use crate::clock::Clock;
use crate::error::{ApiError, ServerFault};
use crate::geoip::GeoIp;
use crate::limits::{LimitedEndpoint, Limiter, RateLimited, Subject};
use crate::metrics::{BatchIdentity, Metrics, StoreOp};
use crate::payload::{self, PayloadError};
use crate::server::ClientSource;
use crate::store::{CollectorKey, InsertOutcome, Store, StoreError, Submission};
use crate::trust::{self, TrustPolicy, Uncounted};

/// Batches read, inflated and parsed at once (the CPU-heavy part, on blocking threads). Each may
/// hold up to the decompressed cap plus its parsed form in memory.
pub const MAX_CONCURRENT_BATCHES: usize = 4;
// One source may hold only part of the slots (crate::limits), never all of them.
const _: () = assert!((crate::limits::INGEST_AT_ONCE_PER_SOURCE as usize) < MAX_CONCURRENT_BATCHES);
/// Decompressed bytes of the parsed batches waiting for their commit, all together: as much as
/// the decoding slots hold at most. A batch leaves its decoding slot once it has its room here,
/// so many small batches wait for the store at once and go into one commit (the store's group
/// commit) instead of four at a time, each with its own fsync. Together with the slots, this
/// bounds the collector's ingest memory.
pub const MAX_PENDING_BYTES: usize = MAX_CONCURRENT_BATCHES * payload::MAX_DECOMPRESSED_BYTES;
/// How long a batch waits for a slot (or for room to wait for the store) before the probe is
/// told to come back later.
const SLOT_WAIT: Duration = Duration::from_secs(10);
/// A spool backlog above this is not a probe's, but a made-up number: not recorded.
const MAX_PLAUSIBLE_SPOOL_PENDING: u64 = 100_000_000;

/// A batch after validation, before storing.
#[derive(Debug, Default)]
struct CheckedBatch {
    /// Who signed the batch (`None`: anonymous).
    signer: Option<KeyId>,
    /// Bytes of the batch once decompressed.
    decoded_bytes: usize,
    valid: Vec<Measurement>,
    rejected: Vec<RejectedLine>,
}

/// The signature headers of a request, copied out so they can travel to a blocking thread.
///
/// Public (with [`from_headers`](Self::from_headers) and [`verify`](Self::verify)) only so the
/// `signature_headers` fuzz target can drive the collector's own header handling; nothing outside
/// the collector needs it.
#[derive(Debug, Default)]
pub struct SignatureHeaders {
    key: Option<Result<String, ()>>,
    signature: Option<Result<String, ()>>,
}

impl SignatureHeaders {
    /// Copy `X-Vantage-Key` and `X-Vantage-Signature` (or note them absent, or not text).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name| headers.get(name).map(|v: &HeaderValue| v.to_str().map(str::to_string).map_err(|_| ()));
        SignatureHeaders { key: text(KEY_HEADER), signature: text(SIGNATURE_HEADER) }
    }

    /// The public key the batch claims, decoded as [`verify_batch`] decodes it; not yet verified.
    pub(crate) fn claimed_key(&self) -> Option<[u8; 32]> {
        let key = self.key.as_ref()?.as_ref().ok()?;
        BASE64.decode(key.trim()).ok()?.try_into().ok()
    }

    /// The signer of `body`, `None` for an unsigned batch.
    pub fn verify(self, body: &[u8]) -> Result<Option<KeyId>, SignatureError> {
        match (self.key, self.signature) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(SignatureError::MissingHeader("X-Vantage-Signature")),
            (None, Some(_)) => Err(SignatureError::MissingHeader("X-Vantage-Key")),
            (Some(Err(())), _) => Err(SignatureError::NotBase64("X-Vantage-Key")),
            (_, Some(Err(()))) => Err(SignatureError::NotBase64("X-Vantage-Signature")),
            (Some(Ok(key)), Some(Ok(signature))) => verify_batch(&key, &signature, body).map(Some),
        }
    }
}

/// The probe's spool backlog behind this batch, when it said and it is plausible.
fn spool_pending(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(SPOOL_PENDING_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n <= MAX_PLAUSIBLE_SPOOL_PENDING)
}

/// Why a batch got no `200`, sorted by whose fault it was.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    /// The batch is unacceptable as sent (the client's fault): a 4xx, counted under its reason.
    #[error(transparent)]
    Refused(#[from] PayloadError),
    /// The batch's key verified but is over its rate limit: nothing was inflated.
    #[error(transparent)]
    Limited(#[from] RateLimited),
    /// The validation task panicked or was cancelled (the collector's fault).
    #[error("the validation task failed: {0}")]
    Validation(#[from] tokio::task::JoinError),
}

impl From<&BatchError> for ApiError {
    fn from(e: &BatchError) -> Self {
        match e {
            BatchError::Refused(refused) => ApiError::from(refused),
            BatchError::Limited(limited) => ApiError::from(*limited),
            // Only a runtime shutting down cancels the task; the same batch is welcome after.
            BatchError::Validation(task) if task.is_cancelled() => {
                ApiError::server(ServerFault::ShuttingDown, "the collector is shutting down; retry later")
            }
            // A panic is a bug, and the same batch would meet it again.
            BatchError::Validation(_) => {
                ApiError::server(ServerFault::Internal, "the batch could not be validated; the collector's log says why")
            }
        }
    }
}

/// The ingest semaphores, shared by all requests: [`MAX_CONCURRENT_BATCHES`] slots to decode in,
/// then room, weighed in KiB, for [`MAX_PENDING_BYTES`] of parsed batches waiting for the store.
#[derive(Clone, Debug)]
pub(crate) struct BatchSlots {
    decoding: Arc<Semaphore>,
    pending: Arc<Semaphore>,
}

impl Default for BatchSlots {
    fn default() -> Self {
        BatchSlots {
            decoding: Arc::new(Semaphore::new(MAX_CONCURRENT_BATCHES)),
            pending: Arc::new(Semaphore::new(PENDING_KIB as usize)),
        }
    }
}

const PENDING_KIB: u32 = (MAX_PENDING_BYTES / 1024) as u32;

/// The room a batch of `decoded_bytes` takes while it waits for the store, in KiB: at least one,
/// at most all.
fn pending_weight(decoded_bytes: usize) -> u32 {
    u32::try_from(decoded_bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, PENDING_KIB)
}

/// `POST /api/v1/measurements`.
#[expect(clippy::too_many_arguments, reason = "axum extractors: each is one piece of state the handler uses")]
pub(crate) async fn post_measurements(
    State(store): State<Arc<dyn Store>>,
    State(metrics): State<Arc<Metrics>>,
    State(slots): State<BatchSlots>,
    State(geoip): State<Arc<GeoIp>>,
    State(limiter): State<Arc<Limiter>>,
    State(clock): State<Arc<dyn Clock>>,
    State(policy): State<Arc<TrustPolicy>>,
    ClientSource(peer): ClientSource,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Before anything costs: a flood is refused for the price of a hash.
    if let Err(limited) = limiter.check(LimitedEndpoint::Ingest, Subject::Source(peer)) {
        return limited.into_response();
    }
    let claimed_key = SignatureHeaders::from_headers(&headers).claimed_key();
    // A key already over its limit is refused unread; it is only charged once it verified.
    if let Some(key) = &claimed_key
        && let Err(limited) = limiter.peek(LimitedEndpoint::Ingest, Subject::Key(key))
    {
        return limited.into_response();
    }
    // Half the slots at most per source, so a few huge batches from one can't hold them all.
    let _share = match limiter.enter(LimitedEndpoint::Ingest, peer) {
        Ok(permit) => permit,
        Err(limited) => return limited.into_response(),
    };
    let _in_flight = metrics.ingest_in_flight();
    // Where the address is; after this (and the check of the lines for it), only the country and ASN remain.
    let observed = geoip.locate(peer);
    let busy = || ApiError::server(ServerFault::Busy, "the collector is busy; retry later").into_response();
    let Ok(Ok(slot)) = tokio::time::timeout(SLOT_WAIT, Arc::clone(&slots.decoding).acquire_owned()).await else {
        return busy();
    };
    let now = clock.now();
    let checked = match read_and_check(&headers, body, peer, limiter, now).await {
        Ok(checked) => checked,
        Err(BatchError::Refused(e)) => return refuse(&metrics, &e),
        Err(BatchError::Limited(limited)) => return limited.into_response(),
        Err(e) => {
            tracing::error!("batch not checked: {e}");
            return ApiError::from(&e).into_response();
        }
    };
    let signer = checked.signer;
    // Room to wait for the store in, then the slot is the next batch's.
    let weight = pending_weight(checked.decoded_bytes);
    let Ok(Ok(_room)) = tokio::time::timeout(SLOT_WAIT, Arc::clone(&slots.pending).acquire_many_owned(weight)).await else {
        return busy();
    };
    drop(slot);

    let mut report = IngestReport { rejected: checked.rejected, observed, ..IngestReport::default() };
    if !checked.valid.is_empty() {
        let timer = metrics.store_timer(StoreOp::Insert);
        // What the key was when the batch arrived, stored beside each row for researchers; not
        // known (no field) when its record could not be read, never a guess stored for good.
        let before = match signer.as_ref() {
            Some(key) => read_standing(store.as_ref(), &policy, key, now).await.ok().map(CollectorKey::from),
            None => Some(CollectorKey::Anonymous),
        };
        let submission =
            Submission { probe: signer.as_ref(), observed: report.observed.as_ref(), standing: before, received_at: now };
        let outcomes = match store.insert(&checked.valid, &submission).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::error!("storing a batch failed: {e}");
                return ApiError::from(&e).into_response();
            }
        };
        timer.observe_duration();
        report.key = standing(store.as_ref(), &policy, signer.as_ref(), now).await;
        let inserted: Vec<&Measurement> =
            checked.valid.iter().zip(&outcomes).filter(|(_, o)| **o == InsertOutcome::Inserted).map(|(m, _)| m).collect();
        report.accepted = inserted.len();
        report.duplicates = outcomes.len() - inserted.len();
        // The series budget is shared: label combinations this replica has not seen are asked of
        // the store before counting, so every replica folds alike.
        let counted = inserted.iter().filter(|m| trust::counts(report.key, &m.probe, report.observed.as_ref()).is_ok());
        metrics.settle_measurements(store.as_ref(), counted.copied()).await;
        count(&metrics, &inserted, report.key, report.observed.as_ref());
        metrics.record_batch(report.accepted as u64, report.duplicates as u64);
    } else {
        report.key = standing(store.as_ref(), &policy, signer.as_ref(), now).await;
    }
    // Counted under the collector's own static code: a label comes from the closed set only.
    for code in report.rejected.iter().filter_map(|r| RejectionCode::parse(&r.reason)) {
        metrics.record_line_rejection(code);
    }
    metrics.record_batch_source(BatchIdentity::of(signer.is_some()), spool_pending(&headers));
    tracing::info!(
        signed = signer.is_some(),
        key = report.key.map(KeyStanding::as_str),
        accepted = report.accepted,
        duplicates = report.duplicates,
        rejected = report.rejected.len(),
        "batch ingested"
    );
    (StatusCode::OK, Json(report)).into_response()
}

/// Where the batch's key stands after the batch (`None`: anonymous). The batch is already stored:
/// if the key's record can't be read, the key is taken as untrusted and the batch still answered.
async fn standing(store: &dyn Store, policy: &TrustPolicy, signer: Option<&KeyId>, now: DateTime<Utc>) -> Option<KeyStanding> {
    let key = signer?;
    Some(read_standing(store, policy, key, now).await.unwrap_or_else(|e| {
        tracing::warn!("a key's record could not be read; its batch does not count: {e}");
        KeyStanding::Untrusted
    }))
}

/// Where `key` stands by its stored record.
async fn read_standing(
    store: &dyn Store,
    policy: &TrustPolicy,
    key: &KeyId,
    now: DateTime<Utc>,
) -> Result<KeyStanding, StoreError> {
    Ok(policy.standing(key.as_str(), store.key_activity(key).await?.as_ref(), now))
}

/// Count a batch's newly stored measurements by the rule of [`crate::trust`], all of one batch
/// at once (one label lookup per combination, not per measurement). A trusted key's location
/// mismatch is still counted as one (the data-quality figure), though the measurement does not
/// count.
fn count(metrics: &Metrics, inserted: &[&Measurement], standing: Option<KeyStanding>, observed: Option<&ObservedLocation>) {
    let mut counted = Vec::with_capacity(inserted.len());
    let mut uncounted = [0u64; Uncounted::ALL.len()];
    for m in inserted {
        let verdict = trust::counts(standing, &m.probe, observed);
        match verdict {
            Ok(()) => counted.push(*m),
            Err(reason) => uncounted.iter_mut().zip(Uncounted::ALL).filter(|(_, r)| **r == reason).for_each(|(n, _)| *n += 1),
        }
        if let Some(observed) = observed
            && matches!(verdict, Ok(()) | Err(Uncounted::AsnMismatch | Uncounted::CountryMismatch))
        {
            metrics.record_location(m, observed);
        }
    }
    metrics.record_measurements(&counted);
    for (reason, n) in Uncounted::ALL.iter().zip(uncounted).filter(|(_, n)| *n > 0) {
        metrics.record_uncounted(*reason, n);
    }
}

/// Count, log and answer a batch refused as sent.
fn refuse(metrics: &Metrics, e: &PayloadError) -> Response {
    metrics.record_batch_rejection(e.code());
    tracing::info!(reason = e.code().as_str(), "batch refused: {e}");
    let mut response = ApiError::from(e).into_response();
    if response.status() == StatusCode::UNAUTHORIZED {
        // RFC 9110: a 401 names the scheme it wants.
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Vantage-Signature"));
    }
    response
}

async fn read_and_check(
    headers: &HeaderMap,
    body: Body,
    peer: IpAddr,
    limiter: Arc<Limiter>,
    now: DateTime<Utc>,
) -> Result<CheckedBatch, BatchError> {
    let encoding = payload::encoding(headers)?;
    let signature = SignatureHeaders::from_headers(headers);
    let raw = payload::read_capped(body, headers, encoding).await?;
    // A probe on this machine (tests, a lab) may well mention 127.0.0.1 legitimately.
    let submitter = (!peer.to_canonical().is_loopback()).then(|| peer.to_canonical());
    // Inflating and parsing up to 64 MiB is CPU work: keep it off the async workers.
    let checked = tokio::task::spawn_blocking(move || {
        // The signature covers the bytes as sent: check it before inflating anything.
        let key = signature.claimed_key();
        let signer = signature.verify(&raw).map_err(PayloadError::from)?;
        // Only now is the key proven to be the sender's: charge it, and stop here if it is spent.
        if let (Some(_), Some(key)) = (&signer, &key) {
            limiter.check(LimitedEndpoint::Ingest, Subject::Key(key))?;
        }
        let text = payload::decode(raw, encoding)?;
        let lines = payload::lines(&text)?;
        Ok::<_, BatchError>(CheckedBatch { signer, decoded_bytes: text.len(), ..check_lines(&lines, submitter, now) })
    })
    .await??;
    Ok(checked)
}

fn check_lines(lines: &[(usize, &str)], submitter: Option<IpAddr>, now: DateTime<Utc>) -> CheckedBatch {
    let mut batch = CheckedBatch::default();
    for &(line_number, line) in lines {
        let checked = parse_line(line, now).and_then(|m| {
            if submitter.is_some_and(|address| contains_address(line, address)) {
                Err(Rejection::ContainsSubmitterAddress)
            } else {
                Ok(m)
            }
        });
        match checked {
            Ok(m) => batch.valid.push(m),
            Err(rejection) => batch.rejected.push(RejectedLine {
                line: line_number,
                id: readable_id(line),
                reason: rejection.code().as_str().to_string(),
                detail: rejection.to_string(),
            }),
        }
    }
    batch
}

/// Does `line` contain `address` as a whole address, not as part of a longer one? (`10.0.0.1`
/// must not match inside `110.0.0.12`, but does in `10.0.0.1:443`.) Only the canonical text form
/// is looked for, which is the form serde and the probe write.
fn contains_address(line: &str, address: IpAddr) -> bool {
    let (haystack, needle, continues): (std::borrow::Cow<'_, str>, String, fn(char) -> bool) = match address {
        IpAddr::V4(v4) => (line.into(), v4.to_string(), |c| c.is_ascii_digit() || c == '.'),
        // IPv6 hex digits may be written in either case.
        IpAddr::V6(v6) => (line.to_ascii_lowercase().into(), v6.to_string(), |c| c.is_ascii_hexdigit() || c == ':' || c == '.'),
    };
    haystack.match_indices(needle.as_str()).any(|(start, _)| {
        let before = haystack[..start].chars().next_back();
        let after = haystack[start + needle.len()..].chars().next();
        !before.is_some_and(continues) && !after.is_some_and(continues)
    })
}

/// The id of a refused line, if it has a well-formed one (so the probe can match the rejection
/// to its spool). Anything else in the line is not echoed back.
fn readable_id(line: &str) -> Option<Uuid> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<Uuid>,
    }
    serde_json::from_str::<IdOnly>(line).ok().and_then(|i| i.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::BatchRejection;
    use vantage_measurement::example;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn signed(key: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(KEY_HEADER, key.parse().expect("header"));
        headers.insert(SIGNATURE_HEADER, signature.parse().expect("header"));
        headers
    }

    #[test]
    fn signature_headers_are_both_or_neither() {
        use vantage_measurement::wire::ProbeKey;
        let key = ProbeKey::from_seed(&[9; 32]);
        let body = b"gzip bytes";
        let headers = signed(&key.public_key_base64(), &key.sign_base64(body));
        assert_eq!(SignatureHeaders::from_headers(&headers).verify(body), Ok(Some(key.key_id())));
        assert_eq!(SignatureHeaders::from_headers(&HeaderMap::new()).verify(body), Ok(None), "anonymous");

        let mut only_key = HeaderMap::new();
        only_key.insert(KEY_HEADER, key.public_key_base64().parse().expect("header"));
        assert_eq!(
            SignatureHeaders::from_headers(&only_key).verify(body),
            Err(SignatureError::MissingHeader("X-Vantage-Signature"))
        );
        let tampered = SignatureHeaders::from_headers(&headers).verify(b"gzip bytez");
        assert_eq!(tampered, Err(SignatureError::Mismatch));
        let refused = PayloadError::from(SignatureError::Mismatch);
        assert_eq!((refused.status(), refused.code()), (StatusCode::UNAUTHORIZED, BatchRejection::BadSignature));
    }

    #[tokio::test]
    async fn a_failed_validation_task_is_the_collectors_fault() {
        let panicked = tokio::spawn(async { panic!("a bug in validation") }).await.expect_err("panicked");
        let error = ApiError::from(&BatchError::from(panicked));
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(matches!(error, ApiError::Server { fault: ServerFault::Internal, .. }), "{error:?}");

        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let cancelled = task.await.expect_err("cancelled");
        let error = ApiError::from(&BatchError::from(cancelled));
        assert!(matches!(error, ApiError::Server { fault: ServerFault::ShuttingDown, .. }), "{error:?}");
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);

        let refused = ApiError::from(&BatchError::from(PayloadError::TooManyLines));
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn spool_pending_is_read_when_plausible() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(SPOOL_PENDING_HEADER, value.parse().expect("header"));
            spool_pending(&headers)
        };
        assert_eq!(with("0"), Some(0));
        assert_eq!(with(" 1500 "), Some(1500));
        assert_eq!(with("-1"), None);
        assert_eq!(with("lots"), None);
        assert_eq!(with("18446744073709551615"), None);
        assert_eq!(spool_pending(&HeaderMap::new()), None);
    }

    #[test]
    fn addresses_match_whole_not_as_part_of_longer_ones() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(contains_address(r#"{"a":"10.0.0.1"}"#, ip("10.0.0.1")));
        assert!(contains_address(r#"{"peer":"10.0.0.1:443"}"#, ip("10.0.0.1")));
        assert!(!contains_address(r#"{"a":"110.0.0.12"}"#, ip("10.0.0.1")));
        assert!(!contains_address(r#"{"a":"10.0.0.10"}"#, ip("10.0.0.1")));
        assert!(contains_address(r#"{"peer":"[2001:db8::1]:443"}"#, ip("2001:db8::1")));
        assert!(contains_address(r#"{"a":"2001:DB8::1"}"#, ip("2001:db8::1")));
        assert!(!contains_address(r#"{"a":"2001:db8::12"}"#, ip("2001:db8::1")));
    }

    #[test]
    fn a_line_with_the_submitters_address_is_refused_with_its_id() {
        let m = example::tls_reset(now());
        let line = m.to_json_line().expect("serialise");
        let submitter: IpAddr = "203.0.113.10".parse().expect("ip");
        let batch = check_lines(&[(1, &line)], Some(submitter), now());
        assert!(batch.valid.is_empty());
        assert_eq!(batch.rejected.len(), 1);
        assert_eq!(batch.rejected[0].reason, "contains_submitter_address");
        assert_eq!(batch.rejected[0].id, Some(m.id));

        let elsewhere: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(check_lines(&[(1, &line)], Some(elsewhere), now()).valid, vec![m]);
    }

    #[test]
    fn each_refused_line_keeps_its_number_and_precise_reason() {
        let good = example::tls_reset(now());
        let mut bad_country = example::tls_reset(now());
        bad_country.probe.cc = "xx".into();
        let good_line = good.to_json_line().expect("serialise");
        let bad_line = bad_country.to_json_line().expect("serialise");
        let lines = [(1, "{not json"), (2, good_line.as_str()), (4, bad_line.as_str())];
        let batch = check_lines(&lines, None, now());
        assert_eq!(batch.valid, vec![good]);
        let reasons: Vec<_> = batch.rejected.iter().map(|r| (r.line, r.reason.as_str(), r.id)).collect();
        assert_eq!(reasons, vec![(1, "malformed", None), (4, "invalid_country", Some(bad_country.id))]);
    }
}
