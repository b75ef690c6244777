//! The addresses the helper's own resolver returned for listed names, lately: what a TCP, QUIC or
//! VPN control to a listed target without an `address` may go to ([`super::policy::Decision::IfResolves`]).
//!
//! Filled from two sides: every DNS control for a listed name (a probe asks for one before it
//! connects, so the address it then asks about is usually here already), and a lookup of the
//! helper's own when a control names an address that isn't. Each address is kept for its record
//! TTL clamped to [`MIN_KEEP`]..[`MAX_KEEP`]: a CDN's short TTLs must outlive one measurement, and
//! an address the name left must not stay reachable for long. Pure: the caller passes the time.
//!
//! Bounded: at most [`MAX_NAMES`] names (the ones whose addresses all expired go first, then the
//! least recently resolved) and [`MAX_ADDRESSES_PER_NAME`] addresses per name. A name is looked up
//! again at most once per [`MIN_REFRESH`], so a stream of made-up addresses for one listed name
//! costs the resolver one query per that interval, not one per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use vantage_measurement::{Detail, Observation};

/// The shortest an answered address is kept, whatever its TTL (a lab's resolver answers TTL 0).
pub const MIN_KEEP: Duration = Duration::from_secs(60);
/// The longest.
pub const MAX_KEEP: Duration = Duration::from_secs(300);
/// The least time between two lookups of one name.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Names held at most.
pub const MAX_NAMES: usize = 4096;
/// Addresses held per name at most.
pub const MAX_ADDRESSES_PER_NAME: usize = 32;

/// Recent answers of the helper's resolver, by normalised name.
#[derive(Debug, Default)]
pub struct ResolvedNames {
    names: HashMap<String, Resolved>,
}

#[derive(Debug)]
struct Resolved {
    /// When the name was last looked up.
    at: Instant,
    /// Each address and until when it counts.
    addresses: Vec<(IpAddr, Instant)>,
}

impl ResolvedNames {
    /// Note that `name` was looked up at `now` and answered `answers` (address, TTL in seconds).
    pub fn record(&mut self, name: &str, answers: &[(IpAddr, u32)], now: Instant) {
        if !self.names.contains_key(name) && self.names.len() >= MAX_NAMES {
            self.make_room(now);
        }
        let entry = self.names.entry(name.to_string()).or_insert_with(|| Resolved { at: now, addresses: Vec::new() });
        entry.at = now;
        entry.addresses.retain(|(_, until)| *until > now);
        for &(ip, ttl) in answers {
            let until = now + Duration::from_secs(u64::from(ttl)).clamp(MIN_KEEP, MAX_KEEP);
            match entry.addresses.iter_mut().find(|(known, _)| *known == ip) {
                Some((_, kept)) => *kept = (*kept).max(until),
                None => entry.addresses.push((ip, until)),
            }
        }
        if entry.addresses.len() > MAX_ADDRESSES_PER_NAME {
            // Keep the ones that count longest.
            entry.addresses.sort_by_key(|&(_, until)| std::cmp::Reverse(until));
            entry.addresses.truncate(MAX_ADDRESSES_PER_NAME);
        }
    }

    /// Did the resolver return `address` for `name` recently enough?
    pub fn contains(&self, name: &str, address: IpAddr, now: Instant) -> bool {
        self.names.get(name).is_some_and(|r| r.addresses.iter().any(|(ip, until)| *ip == address && *until > now))
    }

    /// Was `name` looked up less than [`MIN_REFRESH`] ago (so looking it up again is not worth it)?
    pub fn fresh(&self, name: &str, now: Instant) -> bool {
        self.names.get(name).is_some_and(|r| now.saturating_duration_since(r.at) < MIN_REFRESH)
    }

    /// How many names are held.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn make_room(&mut self, now: Instant) {
        self.names.retain(|_, r| r.addresses.iter().any(|(_, until)| *until > now));
        if self.names.len() >= MAX_NAMES
            && let Some(oldest) = self.names.iter().min_by_key(|(_, r)| r.at).map(|(name, _)| name.clone())
        {
            self.names.remove(&oldest);
        }
    }
}

/// The address answers (and their TTLs) of a DNS step's observations.
pub fn answers(observations: &[Observation]) -> Vec<(IpAddr, u32)> {
    observations
        .iter()
        .filter_map(|o| match &o.detail {
            Some(Detail::Dns(d)) => Some(d),
            _ => None,
        })
        .flat_map(|d| d.replies.iter().flat_map(|r| r.answers.iter().map(|a| (a.ip, a.ttl))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn an_answer_counts_for_its_ttl_clamped_to_one_to_five_minutes() {
        let t0 = Instant::now();
        let mut names = ResolvedNames::default();
        names.record("a.example", &[(ip("192.0.2.1"), 0), (ip("192.0.2.2"), 3600), (ip("192.0.2.3"), 120)], t0);
        assert!(names.contains("a.example", ip("192.0.2.1"), t0 + Duration::from_secs(59)));
        assert!(!names.contains("a.example", ip("192.0.2.1"), t0 + MIN_KEEP), "TTL 0 is kept the minimum");
        assert!(names.contains("a.example", ip("192.0.2.3"), t0 + Duration::from_secs(119)));
        assert!(!names.contains("a.example", ip("192.0.2.3"), t0 + Duration::from_secs(120)));
        assert!(names.contains("a.example", ip("192.0.2.2"), t0 + MAX_KEEP - Duration::from_secs(1)));
        assert!(!names.contains("a.example", ip("192.0.2.2"), t0 + MAX_KEEP), "a day's TTL is capped");
        assert!(!names.contains("a.example", ip("192.0.2.9"), t0));
        assert!(!names.contains("b.example", ip("192.0.2.1"), t0));
    }

    #[test]
    fn rotating_answers_accumulate_and_a_repeat_extends_its_address() {
        let t0 = Instant::now();
        let mut names = ResolvedNames::default();
        names.record("cdn.example", &[(ip("198.51.100.1"), 60)], t0);
        let t1 = t0 + Duration::from_secs(30);
        names.record("cdn.example", &[(ip("198.51.100.2"), 60), (ip("198.51.100.1"), 60)], t1);
        let t2 = t0 + Duration::from_secs(70);
        assert!(names.contains("cdn.example", ip("198.51.100.1"), t2), "extended by the second answer");
        assert!(names.contains("cdn.example", ip("198.51.100.2"), t2));
    }

    #[test]
    fn a_name_is_looked_up_again_only_after_the_refresh_interval() {
        let t0 = Instant::now();
        let mut names = ResolvedNames::default();
        assert!(!names.fresh("a.example", t0));
        names.record("a.example", &[], t0);
        assert!(names.fresh("a.example", t0 + MIN_REFRESH - Duration::from_millis(1)));
        assert!(!names.fresh("a.example", t0 + MIN_REFRESH));
    }

    #[test]
    fn memory_is_bounded_in_names_and_in_addresses_per_name() {
        let t0 = Instant::now();
        let mut names = ResolvedNames::default();
        let many: Vec<(IpAddr, u32)> =
            (0..100u16).map(|i| (IpAddr::from([10, 0, (i >> 8) as u8, i as u8]), 60 + u32::from(i))).collect();
        names.record("big.example", &many, t0);
        assert!(names.contains("big.example", ip("10.0.0.99"), t0), "the longest-lived are kept");
        assert!(!names.contains("big.example", ip("10.0.0.0"), t0), "the shortest-lived went");

        for i in 0..MAX_NAMES + 10 {
            let at = t0 + Duration::from_millis(i as u64);
            names.record(&format!("n{i}.example"), &[(ip("192.0.2.1"), 60)], at);
        }
        assert_eq!(names.len(), MAX_NAMES);
        let last = format!("n{}.example", MAX_NAMES + 9);
        assert!(names.contains(&last, ip("192.0.2.1"), t0 + Duration::from_secs(1)), "the newest stays");
        assert!(!names.contains("big.example", ip("10.0.0.99"), t0), "the least recently resolved went first");

        // Once everything expired, expired names make the room.
        let later = t0 + MAX_KEEP + Duration::from_secs(1);
        names.record("fresh.example", &[(ip("192.0.2.7"), 60)], later);
        assert_eq!(names.len(), 1);
    }
}
