//! Rate limits: one client, or one probe key, can't take the collector for itself.
//!
//! Each limited endpoint counts requests per *source* (the client's address, an IPv6 client by
//! its /64) and, for ingest, per *probe key*, with GCRA (`gcra.rs`): `N/min` on average, up to a
//! burst at once. Over the limit the answer is `429` with `Retry-After` (whole seconds, rounded
//! up) and the JSON error body with `reason: rate_limited`; the probe keeps the batch in its
//! spool and comes back after that time.
//!
//! | endpoint | counted per | default | why |
//! |---|---|---|---|
//! | `POST /api/v1/measurements` | source | [`DEFAULT_INGEST_PER_SOURCE`] | several probes behind one NAT, each flushing a backlog |
//! | `POST /api/v1/measurements` | key | [`DEFAULT_INGEST_PER_KEY`] | a `run` over 10,000 targets sends ~20 batches at once; a daemon one a minute |
//! | `POST /api/v1/control` | source | [`DEFAULT_HELPER_PER_SOURCE`] | about two controls per measurement at the probe's concurrency 8 |
//! | `POST /api/v1/keys` | source | [`DEFAULT_REGISTER_PER_SOURCE`] | a probe registers once per collector |
//!
//! On top of the rates, one source may have only so many requests *in flight* at once (half of
//! the endpoint's slots, `at_once.rs`): a rate counts requests, not their cost, and a few large
//! or slow ones must not hold every slot.
//!
//! **Who pays.** A source is charged on arrival, before the body is read, so a flood is refused
//! for the price of a hash. A key is only *looked at* before the body is read (a key already over
//! its limit is refused early) and only *charged* once a signature by it verified: nobody can
//! spend another probe's budget by sending its public key.
//!
//! **In a handler**, first thing (`State<Arc<Limiter>>` is in the app state):
//!
//! ```text
//! if let Err(limited) = limits::check(&limiter, LimitedEndpoint::Register, Subject::Source(peer.ip())) {
//!     return limited.into_response(); // 429, Retry-After, {"error": …, "reason": "rate_limited"}
//! }
//! ```
//!
//! **What is kept.** Neither addresses nor key ids: the tables hold a salted 64-bit hash
//! (`subject.rs`) and one timestamp per entry. The salt is random, made in memory at start and
//! replaced every day; the tables of the old salt are dropped with it, which forgives everyone
//! once a day. Nothing is logged about who was limited.
//!
//! **Bounded memory.** Each (endpoint, scope) table tracks at most `max_entries` (default
//! [`DEFAULT_MAX_ENTRIES`]: a full table is about 2.2 MB); entries that owe nothing are dropped. When a table is
//! full of entries that all still owe time, a *new source* is refused with `429` until one drains
//! (fail closed: the limit must hold even when an adversary fills the table), and a *new key* is
//! let through (fail open: keys cost nothing to make, so a flood of them must not lock out honest
//! probes, and the source limit still holds).
//!
//! **Replicas.** The tables live in each collector's memory: behind a balancer that spreads one
//! client over R replicas, the client gets up to R times each limit. Balance by source (sticky
//! sessions) or divide the limits by R.

pub mod args;
mod at_once;
mod gcra;
mod ledger;
mod rate;
mod subject;

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::error::{ApiError, whole_seconds};
use crate::metrics::Metrics;
pub use crate::metrics::{LimitScope, LimitedEndpoint};
use crate::server::SourceKey;
use at_once::InFlight;
pub use at_once::{HELPER_AT_ONCE_PER_SOURCE, INGEST_AT_ONCE_PER_SOURCE, Permit};
use gcra::Refusal;
use ledger::Ledger;
pub use rate::{Limit, ParseLimitError, Rate};
pub use subject::Subject;

/// Ingest batches per source: 120 a minute, 120 at once. Covers a `run --collector` over
/// 10,000 targets (about 20 batches) from each of six probes behind one address, or a few dozen
/// daemons behind one NAT each flushing once a minute.
pub const DEFAULT_INGEST_PER_SOURCE: Limit = Limit::Rate(Rate::per_minute(120, 120));
/// Ingest batches per probe key: 30 a minute (15,000 measurements), 60 at once. A daemon posts
/// at most once a minute; a `run` over 10,000 targets posts about 20 batches back to back; a
/// probe back from weeks offline drains its spool at 15,000 measurements a minute.
pub const DEFAULT_INGEST_PER_KEY: Limit = Limit::Rate(Rate::per_minute(30, 60));
/// Test-helper controls per source: 300 a minute, 300 at once. A probe asks about two controls
/// per measurement (an address, then the step) with 8 measurements in flight: the built-in list
/// (21 tests) takes about 40, a 100-target list about 700 over several minutes.
pub const DEFAULT_HELPER_PER_SOURCE: Limit = Limit::Rate(Rate::per_minute(300, 300));
/// Key registrations per source: 10 an hour, 10 at once. A probe registers once per collector.
pub const DEFAULT_REGISTER_PER_SOURCE: Limit = Limit::Rate(Rate::per_hour(10, 10));
/// Entries each (endpoint, scope) table may hold: a full table is a hash map of 131,072 slots of
/// 17 bytes (an 8-byte hash, an 8-byte timestamp, a control byte), about 2.2 MB.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// The limits of every endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Ingest batches per source.
    pub ingest_per_source: Limit,
    /// Ingest batches per probe key.
    pub ingest_per_key: Limit,
    /// Test-helper controls per source.
    pub helper_per_source: Limit,
    /// Key registrations per source.
    pub register_per_source: Limit,
    /// Entries each (endpoint, scope) table may hold.
    pub max_entries: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ingest_per_source: DEFAULT_INGEST_PER_SOURCE,
            ingest_per_key: DEFAULT_INGEST_PER_KEY,
            helper_per_source: DEFAULT_HELPER_PER_SOURCE,
            register_per_source: DEFAULT_REGISTER_PER_SOURCE,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl Settings {
    /// The limit of `endpoint` in `scope` (off where there is no such limit).
    pub fn limit(&self, endpoint: LimitedEndpoint, scope: LimitScope) -> Limit {
        match (endpoint, scope) {
            (LimitedEndpoint::Ingest, LimitScope::Source) => self.ingest_per_source,
            (LimitedEndpoint::Ingest, LimitScope::Key) => self.ingest_per_key,
            (LimitedEndpoint::Helper, LimitScope::Source) => self.helper_per_source,
            (LimitedEndpoint::Register, LimitScope::Source) => self.register_per_source,
            (LimitedEndpoint::Helper | LimitedEndpoint::Register, LimitScope::Key) => Limit::Off,
        }
    }
}

/// A refused request: which limit, and how long to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct RateLimited {
    /// The endpoint.
    pub endpoint: LimitedEndpoint,
    /// What the exhausted limit counts.
    pub scope: LimitScope,
    /// How long until a request would be allowed.
    pub retry_after: Duration,
    /// Which kind of limit.
    pub cause: Cause,
}

/// Which kind of limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Over the rate of its source or key.
    OverRate,
    /// Its source has as many requests in flight as it may.
    TooManyAtOnce,
    /// The limiter tracks as many sources as it may, all still owing time.
    TableFull,
}

impl RateLimited {
    fn message(&self) -> String {
        let (secs, endpoint) = (whole_seconds(self.retry_after), self.endpoint);
        match (self.cause, self.scope) {
            (Cause::TableFull, _) => format!("the collector is limiting too many clients at once; retry in {secs} s"),
            (Cause::TooManyAtOnce, _) => format!("too many {endpoint} requests at once from this address; retry in {secs} s"),
            (Cause::OverRate, LimitScope::Source) => format!("too many {endpoint} requests from this address; retry in {secs} s"),
            (Cause::OverRate, LimitScope::Key) => format!("too many {endpoint} requests from this probe key; retry in {secs} s"),
        }
    }
}

impl From<RateLimited> for ApiError {
    fn from(limited: RateLimited) -> Self {
        ApiError::RateLimited { retry_after: limited.retry_after, message: limited.to_string() }
    }
}

impl IntoResponse for RateLimited {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// The rate limiter shared by the handlers.
pub struct Limiter {
    inner: Mutex<Inner>,
    in_flight: InFlight,
    origin: Instant,
    metrics: Arc<Metrics>,
}

struct Inner {
    ledger: Ledger,
    /// When a full table was last logged, so a flood logs once a minute, not once a request.
    warned_full_at: Option<u64>,
}

impl fmt::Debug for Limiter {
    // The tables are hashes of addresses: never printed, not even as hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Limiter(..)")
    }
}

/// Allow and count a request of `subject` to `endpoint`, or say how long to wait. Refusals are
/// counted in `vantage_collector_rate_limited_total`; answer them with
/// `ApiError::from(limited)` (429 with `Retry-After`).
pub fn check(limiter: &Limiter, endpoint: LimitedEndpoint, subject: Subject<'_>) -> Result<(), RateLimited> {
    limiter.check(endpoint, subject)
}

impl Limiter {
    /// A limiter with `settings`, reporting to `metrics`, with a fresh random salt.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Limiter {
        Self::with_salts(settings, metrics, random_salt)
    }

    fn with_salts(settings: &Settings, metrics: Arc<Metrics>, new_salt: fn() -> subject::Salt) -> Limiter {
        let limiter = Limiter {
            inner: Mutex::new(Inner { ledger: Ledger::new(settings, 0, new_salt), warned_full_at: None }),
            in_flight: InFlight::default(),
            origin: Instant::now(),
            metrics,
        };
        limiter.publish(&limiter.lock().ledger);
        limiter
    }

    /// Allow and count a request, or refuse it (see [`check`]).
    pub fn check(&self, endpoint: LimitedEndpoint, subject: Subject<'_>) -> Result<(), RateLimited> {
        self.decide(endpoint, subject, self.now(), true)
    }

    /// Would [`check`](Self::check) allow this request now? Counts nothing against the subject
    /// (a refusal is counted in the metric, as it is answered).
    pub fn peek(&self, endpoint: LimitedEndpoint, subject: Subject<'_>) -> Result<(), RateLimited> {
        self.decide(endpoint, subject, self.now(), false)
    }

    /// Count a request of `source` to `endpoint` as in flight until the permit is dropped, or
    /// refuse it (`Retry-After: 1`) if the source already has its share of the slots.
    pub fn enter(&self, endpoint: LimitedEndpoint, source: IpAddr) -> Result<Permit, RateLimited> {
        self.in_flight.enter(endpoint, SourceKey::of(source)).ok_or_else(|| {
            self.metrics.record_rate_limited(endpoint, LimitScope::Source);
            tracing::debug!(%endpoint, "too many requests at once");
            RateLimited { endpoint, scope: LimitScope::Source, retry_after: Duration::from_secs(1), cause: Cause::TooManyAtOnce }
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn decide(&self, endpoint: LimitedEndpoint, subject: Subject<'_>, now: u64, charge: bool) -> Result<(), RateLimited> {
        let scope = subject.scope();
        let mut inner = self.lock();
        let decided =
            if charge { inner.ledger.charge(endpoint, subject, now) } else { inner.ledger.peek(endpoint, subject, now) };
        self.publish(&inner.ledger);
        let refusal = match decided {
            Ok(()) => return Ok(()),
            Err(refusal) => refusal,
        };
        let (retry_after, cause) = match refusal {
            Refusal::OverRate(wait) => (wait, Cause::OverRate),
            Refusal::Full(wait) => (wait, Cause::TableFull),
        };
        if cause == Cause::TableFull && inner.warned_full_at.is_none_or(|at| now.saturating_sub(at) >= 60_000_000_000) {
            inner.warned_full_at = Some(now);
            tracing::warn!(%endpoint, %scope, "the rate limiter's table is full: new sources are refused until entries drain");
        }
        drop(inner);
        self.metrics.record_rate_limited(endpoint, scope);
        tracing::debug!(%endpoint, %scope, "rate limited");
        Err(RateLimited { endpoint, scope, retry_after, cause })
    }

    fn publish(&self, ledger: &Ledger) {
        for (endpoint, scope, entries) in ledger.sizes() {
            self.metrics.set_rate_limit_entries(endpoint, scope, entries);
        }
    }
}

/// 128 random bits from the operating system.
fn random_salt() -> subject::Salt {
    use rand_core::{OsRng, RngCore};
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    salt
}

#[cfg(test)]
mod tests;
