//! Every table of the limiter, the salt of their keys and its daily rotation. Pure: the caller
//! passes `now` (nanoseconds on a monotonic clock) and a source of fresh salts.

use super::gcra::{Refusal, Table};
use super::subject::{Salt, Subject};
use super::{Limit, Settings};
use crate::metrics::{LimitScope, LimitedEndpoint};

/// How long one salt is used (nanoseconds): a day.
pub(super) const SALT_LIFETIME: u64 = 86_400 * 1_000_000_000;

/// The limiter's whole state.
pub(super) struct Ledger {
    /// One table per limited (endpoint, scope) pair; a pair whose limit is off has none.
    tables: Vec<(LimitedEndpoint, LimitScope, Table)>,
    salt: Salt,
    salted_at: u64,
    new_salt: fn() -> Salt,
}

impl Ledger {
    pub(super) fn new(settings: &Settings, now: u64, new_salt: fn() -> Salt) -> Ledger {
        let tables = LimitedEndpoint::pairs()
            .filter_map(|(endpoint, scope)| match settings.limit(endpoint, scope) {
                Limit::Off => None,
                Limit::Rate(rate) => Some((endpoint, scope, Table::new(rate, settings.max_entries))),
            })
            .collect();
        Ledger { tables, salt: new_salt(), salted_at: now, new_salt }
    }

    /// Allow and count a request, or refuse it. A key that finds its table full is let through
    /// (fail open: keys cost nothing to make, so a flood of them must not lock out honest ones,
    /// and the source limit still holds); a source that finds its table full is refused (fail
    /// closed: the source limit is the one that must hold), except at registration, whose real
    /// gate is the proof of work: there a full table (one IPv6 /48 holds 65,536 sources) must
    /// not lock new volunteers out.
    pub(super) fn charge(&mut self, endpoint: LimitedEndpoint, subject: Subject<'_>, now: u64) -> Result<(), Refusal> {
        self.rotate_if_due(now);
        let key = subject.hash(&self.salt);
        let Some(table) = self.table(endpoint, subject.scope()) else { return Ok(()) };
        match table.charge(key, now) {
            Err(Refusal::Full(_)) if fails_open(endpoint, subject.scope()) => Ok(()),
            decided => decided,
        }
    }

    /// Would [`charge`](Self::charge) allow this request? Counts nothing.
    pub(super) fn peek(&mut self, endpoint: LimitedEndpoint, subject: Subject<'_>, now: u64) -> Result<(), Refusal> {
        self.rotate_if_due(now);
        let key = subject.hash(&self.salt);
        self.table(endpoint, subject.scope()).map_or(Ok(()), |table| table.peek(key, now))
    }

    /// The keys each table tracks.
    pub(super) fn sizes(&self) -> impl Iterator<Item = (LimitedEndpoint, LimitScope, usize)> + '_ {
        self.tables.iter().map(|(endpoint, scope, table)| (*endpoint, *scope, table.len()))
    }

    fn table(&mut self, endpoint: LimitedEndpoint, scope: LimitScope) -> Option<&mut Table> {
        self.tables.iter_mut().find(|(e, s, _)| *e == endpoint && *s == scope).map(|(_, _, table)| table)
    }

    /// A new salt every day, and the tables of the old one dropped: the old keys can't be found
    /// again, and nothing derived from an address outlives its salt by more than a day. Everyone
    /// starts the new day with a clean slate (a rotation forgives once a day).
    fn rotate_if_due(&mut self, now: u64) {
        if now.saturating_sub(self.salted_at) < SALT_LIFETIME {
            return;
        }
        self.salt = (self.new_salt)();
        self.salted_at = now;
        for (_, _, table) in &mut self.tables {
            table.clear();
        }
    }
}

/// Does a full table let a new `scope` subject through at `endpoint`? See [`Ledger::charge`].
fn fails_open(endpoint: LimitedEndpoint, scope: LimitScope) -> bool {
    scope == LimitScope::Key || endpoint == LimitedEndpoint::Register
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::limits::Rate;

    const SEC: u64 = 1_000_000_000;

    fn counting_salt() -> Salt {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        [NEXT.fetch_add(1, Ordering::Relaxed); 16]
    }

    fn settings(max_entries: usize) -> Settings {
        Settings {
            ingest_per_source: Limit::Rate(Rate::per_minute(60, 2)),
            ingest_per_key: Limit::Rate(Rate::per_minute(60, 1)),
            helper_per_source: Limit::Off,
            register_per_source: Limit::Rate(Rate::per_hour(1, 1)),
            max_entries,
        }
    }

    fn ip(n: u8) -> Subject<'static> {
        Subject::Source(IpAddr::from([192, 0, 2, n]))
    }

    #[test]
    fn each_endpoint_and_scope_has_its_own_budget_and_off_is_off() {
        let mut ledger = Ledger::new(&settings(100), 0, counting_salt);
        assert_eq!(ledger.charge(LimitedEndpoint::Register, ip(1), 0), Ok(()));
        assert!(ledger.charge(LimitedEndpoint::Register, ip(1), 0).is_err(), "one an hour");
        assert_eq!(ledger.charge(LimitedEndpoint::Ingest, ip(1), 0), Ok(()), "ingest is counted apart");
        for _ in 0..1000 {
            assert_eq!(ledger.charge(LimitedEndpoint::Helper, ip(1), 0), Ok(()), "the helper's limit is off");
        }
        let sizes: Vec<_> = ledger.sizes().map(|(e, s, n)| (e.as_str(), s.as_str(), n)).collect();
        assert_eq!(sizes, [("ingest", "source", 1), ("ingest", "key", 0), ("register", "source", 1)]);
    }

    #[test]
    fn a_full_table_refuses_new_sources_but_lets_new_keys_through() {
        let mut ledger = Ledger::new(&settings(2), 0, counting_salt);
        ledger.charge(LimitedEndpoint::Ingest, ip(1), 0).expect("first source");
        ledger.charge(LimitedEndpoint::Ingest, ip(2), 0).expect("second source");
        assert_eq!(
            ledger.charge(LimitedEndpoint::Ingest, ip(3), 0),
            Err(Refusal::Full(Duration::from_secs(1))),
            "fail closed for sources"
        );
        let keys = [[1u8; 32], [2; 32], [3; 32]];
        for key in &keys {
            assert_eq!(ledger.charge(LimitedEndpoint::Ingest, Subject::Key(key), 0), Ok(()), "fail open for keys");
        }
        assert!(ledger.charge(LimitedEndpoint::Ingest, Subject::Key(&keys[0]), 0).is_err(), "a tracked key is still limited");
    }

    #[test]
    fn the_salt_rotates_daily_and_forgives_everyone_once() {
        let mut ledger = Ledger::new(&settings(100), 0, counting_salt);
        let key = [9u8; 32];
        ledger.charge(LimitedEndpoint::Register, ip(1), 0).expect("first");
        ledger.charge(LimitedEndpoint::Ingest, Subject::Key(&key), 0).expect("first");
        let first_salt = ledger.salt;
        assert!(ledger.charge(LimitedEndpoint::Register, ip(1), SEC).is_err(), "within the hour");
        assert_eq!(ledger.peek(LimitedEndpoint::Register, ip(1), 3600 * SEC), Ok(()), "drained after its hour");

        let before_rotation = SALT_LIFETIME - SEC;
        ledger.charge(LimitedEndpoint::Register, ip(1), before_rotation).expect("charged again");
        assert!(ledger.peek(LimitedEndpoint::Register, ip(1), before_rotation + SEC / 2).is_err());
        // A day after the salt was made: a new salt, empty tables, a clean slate.
        assert_eq!(ledger.peek(LimitedEndpoint::Register, ip(1), SALT_LIFETIME), Ok(()));
        assert_ne!(ledger.salt, first_salt);
        assert!(ledger.sizes().all(|(_, _, n)| n == 0), "the old tables are dropped");
        assert_eq!(ledger.charge(LimitedEndpoint::Register, ip(1), SALT_LIFETIME), Ok(()));
    }

    #[test]
    fn peeking_a_key_never_spends_it() {
        let mut ledger = Ledger::new(&settings(100), 0, counting_salt);
        let key = [5u8; 32];
        for _ in 0..100 {
            assert_eq!(ledger.peek(LimitedEndpoint::Ingest, Subject::Key(&key), 0), Ok(()));
        }
        assert_eq!(ledger.charge(LimitedEndpoint::Ingest, Subject::Key(&key), 0), Ok(()));
        assert_eq!(ledger.peek(LimitedEndpoint::Ingest, Subject::Key(&key), 0), Err(Refusal::OverRate(Duration::from_secs(1))));
    }
}
