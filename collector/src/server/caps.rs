//! Connection caps: how many connections the collector holds at once, in all and per source.
//!
//! A slot is a guard: the connection holds it while it lives and gives it back when dropped, so
//! no path can forget to. Over a cap, the accept loop closes the connection at once.
//!
//! Who is counted ([`counted_as`]): a client, by its own address or the one a trusted proxy's
//! PROXY header names. A trusted proxy's own connections are not (one carries many clients, and
//! is bounded by the global cap), nor are loopback ones: a reverse proxy on the same machine that
//! was not declared with `--trusted-proxy` would otherwise squeeze every client into one
//! source's cap, and nobody off the machine can connect from loopback.
//!
//! A source is an IPv4 address, or an IPv6 /64: one subscriber line usually gets a whole /64, so
//! counting single IPv6 addresses would give one attacker 2^64 caps. The table holds only the
//! sources with a connection open (at most the global cap of entries) and forgets a source when
//! its last connection closes; it is never logged or exported.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::source::TrustedProxies;

/// The address a connection from (or on behalf of) `addr` is counted under, if any.
pub(crate) fn counted_as(addr: IpAddr, trusted: &TrustedProxies) -> Option<IpAddr> {
    let addr = addr.to_canonical();
    (!addr.is_loopback() && !trusted.contains(addr)).then_some(addr)
}

/// The unit a per-source cap counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    /// One IPv4 address (a v4-mapped IPv6 address counts as its IPv4 address).
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl SourceKey {
    /// The source `ip` belongs to.
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => SourceKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// The global and per-source caps and what is held against them.
#[derive(Debug)]
pub(crate) struct ConnectionCaps {
    global: Arc<Semaphore>,
    per_source: usize,
    held: Arc<Mutex<HashMap<SourceKey, usize>>>,
}

/// One of the global slots.
#[derive(Debug)]
pub(crate) struct GlobalSlot {
    _permit: OwnedSemaphorePermit,
}

/// One of a source's slots.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    key: SourceKey,
    held: Arc<Mutex<HashMap<SourceKey, usize>>>,
}

impl ConnectionCaps {
    /// At most `global` connections, at most `per_source` from one source.
    pub(crate) fn new(global: usize, per_source: usize) -> Self {
        ConnectionCaps { global: Arc::new(Semaphore::new(global)), per_source, held: Arc::default() }
    }

    /// A global slot, if one is free.
    pub(crate) fn global(&self) -> Option<GlobalSlot> {
        Arc::clone(&self.global).try_acquire_owned().ok().map(|permit| GlobalSlot { _permit: permit })
    }

    /// A slot for `ip`'s source, if it holds fewer than the per-source cap.
    pub(crate) fn source(&self, ip: IpAddr) -> Option<SourceSlot> {
        let key = SourceKey::of(ip);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key).or_insert(0);
        if *count >= self.per_source {
            // An entry made just now for a cap of 0 must not linger.
            if *count == 0 {
                held.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(SourceSlot { key, held: Arc::clone(&self.held) })
    }

    /// Sources with a connection open now (tests, and the memory bound's proof).
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_source_gets_its_cap_and_no_more_while_others_still_get_theirs() {
        let caps = ConnectionCaps::new(100, 2);
        let first = caps.source(ip("192.0.2.1")).expect("1st");
        let _second = caps.source(ip("192.0.2.1")).expect("2nd");
        assert!(caps.source(ip("192.0.2.1")).is_none(), "3rd over the cap");
        assert!(caps.source(ip("::ffff:192.0.2.1")).is_none(), "the same address, v4-mapped");
        let _other = caps.source(ip("192.0.2.2")).expect("another source");
        drop(first);
        assert!(caps.source(ip("192.0.2.1")).is_some(), "a closed connection frees its slot");
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64() {
        let caps = ConnectionCaps::new(100, 1);
        let _held = caps.source(ip("2001:db8:1:2::1")).expect("1st");
        assert!(caps.source(ip("2001:db8:1:2:ffff::9")).is_none(), "same /64");
        assert!(caps.source(ip("2001:db8:1:3::1")).is_some(), "next /64");
    }

    #[test]
    fn the_table_forgets_a_source_with_nothing_open() {
        let caps = ConnectionCaps::new(100, 3);
        let slots: Vec<_> = (0..50u8).map(|i| caps.source(IpAddr::from([10, 0, 0, i])).expect("slot")).collect();
        assert_eq!(caps.sources(), 50);
        drop(slots);
        assert_eq!(caps.sources(), 0);
        let none = ConnectionCaps::new(100, 0);
        assert!(none.source(ip("10.0.0.1")).is_none());
        assert_eq!(none.sources(), 0);
    }

    #[test]
    fn clients_are_counted_proxies_and_loopback_are_not() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().expect("block")]);
        assert_eq!(counted_as(ip("198.51.100.7"), &trusted), Some(ip("198.51.100.7")));
        assert_eq!(counted_as(ip("::ffff:198.51.100.7"), &trusted), Some(ip("198.51.100.7")));
        assert_eq!(counted_as(ip("2001:db8::1"), &trusted), Some(ip("2001:db8::1")));
        assert_eq!(counted_as(ip("10.0.0.1"), &trusted), None, "a trusted proxy");
        assert_eq!(counted_as(ip("127.0.0.2"), &trusted), None);
        assert_eq!(counted_as(ip("::1"), &trusted), None);
        assert_eq!(counted_as(ip("::ffff:127.0.0.1"), &trusted), None);
    }

    #[test]
    fn the_global_cap_counts_every_connection() {
        let caps = ConnectionCaps::new(2, 10);
        let a = caps.global().expect("1st");
        let _b = caps.global().expect("2nd");
        assert!(caps.global().is_none());
        drop(a);
        assert!(caps.global().is_some());
    }
}
