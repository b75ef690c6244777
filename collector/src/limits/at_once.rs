//! How many requests one source may have in flight at once, per endpoint.
//!
//! A rate limit counts requests, not their cost: within its rate, one source posting the largest
//! batches the collector accepts (10,000 lines) could hold every ingest slot for seconds at a
//! time, and one source asking the helper about targets that never answer could hold every
//! helper slot for the control deadline. So each source may also hold only part of the slots:
//! beyond that its request is answered `429` with `Retry-After: 1` at once, and the rest of the
//! slots stay for everyone else. A probe posts one batch at a time, so the ingest cap only ever
//! touches several probes behind one address flushing at the same moment (they retry a second
//! later).
//!
//! Counted by the source itself ([`SourceKey`], as the connection caps), not by the rates'
//! salted hash: that changes when the salt rotates, and a source would briefly get a second
//! share. An entry exists only while a request of that source is in flight, in memory, so the
//! map is as large as the requests being served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::LimitedEndpoint;
use crate::server::SourceKey;

/// Ingest batches one source may have in flight: half of the collector's 4 ingest slots.
pub const INGEST_AT_ONCE_PER_SOURCE: u32 = 2;
/// Test-helper controls one source may have running: half of the helper's 32 slots, twice a
/// probe's default concurrency (8 measurements, each usually one control at a time).
pub const HELPER_AT_ONCE_PER_SOURCE: u32 = 16;

/// The most requests one source may have in flight at `endpoint`, if capped.
pub(super) fn cap(endpoint: LimitedEndpoint) -> Option<u32> {
    match endpoint {
        LimitedEndpoint::Ingest => Some(INGEST_AT_ONCE_PER_SOURCE),
        LimitedEndpoint::Helper => Some(HELPER_AT_ONCE_PER_SOURCE),
        LimitedEndpoint::Register => None,
    }
}

type Counts = Mutex<HashMap<(LimitedEndpoint, SourceKey), u32>>;

/// The requests in flight, by endpoint and source.
#[derive(Default)]
pub(super) struct InFlight(Arc<Counts>);

/// One request in flight; the count goes down when it is dropped.
#[must_use = "the request counts as in flight only while the permit is held"]
pub struct Permit {
    counts: Option<(Arc<Counts>, (LimitedEndpoint, SourceKey))>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Permit(..)")
    }
}

impl InFlight {
    /// Count one more request of `source` at `endpoint`, unless it already has `cap` in flight.
    pub(super) fn enter(&self, endpoint: LimitedEndpoint, source: SourceKey) -> Option<Permit> {
        let Some(cap) = cap(endpoint) else { return Some(Permit { counts: None }) };
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry((endpoint, source)).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(Permit { counts: Some((Arc::clone(&self.0), (endpoint, source))) })
    }

    /// Sources with a request in flight (all endpoints).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some((counts, key)) = self.counts.take() else { return };
        let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(n: u8) -> SourceKey {
        SourceKey::of(std::net::Ipv4Addr::new(198, 51, 100, n).into())
    }

    #[test]
    fn a_source_holds_at_most_its_share_and_gets_it_back_when_done() {
        let in_flight = InFlight::default();
        let first = in_flight.enter(LimitedEndpoint::Ingest, source(1)).expect("first");
        let second = in_flight.enter(LimitedEndpoint::Ingest, source(1)).expect("second");
        assert!(in_flight.enter(LimitedEndpoint::Ingest, source(1)).is_none(), "a third at once is refused");
        let other = in_flight.enter(LimitedEndpoint::Ingest, source(2)).expect("another source");
        let helper = in_flight.enter(LimitedEndpoint::Helper, source(1)).expect("another endpoint");
        drop(first);
        let third = in_flight.enter(LimitedEndpoint::Ingest, source(1)).expect("a slot came back");
        drop((second, third, other, helper));
        assert_eq!(in_flight.len(), 0, "nothing is kept once nothing is in flight");
    }

    #[test]
    fn an_uncapped_endpoint_counts_nothing() {
        let in_flight = InFlight::default();
        let permits: Vec<_> =
            (0..100).map(|_| in_flight.enter(LimitedEndpoint::Register, source(1)).expect("uncapped")).collect();
        assert_eq!((permits.len(), in_flight.len()), (100, 0));
        assert_eq!(cap(LimitedEndpoint::Ingest), Some(2));
    }
}
