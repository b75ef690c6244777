//! Who a limit counts, and the salted hash that is all the limiter keeps of it.
//!
//! A source address is reduced first: an IPv4 address as it is (an IPv4-mapped IPv6 address is
//! the IPv4 address), an IPv6 address to its /64, because one host or one home usually holds a
//! whole /64 and could otherwise take a fresh address, and a fresh budget, for every request.
//! The reduced form is hashed (SHA-256, truncated to 64 bits) together with a random 128-bit
//! salt that lives only in memory: the table holds no address, and without the salt its keys
//! can't be matched to one (a brute force over the IPv4 space needs the salt).

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::metrics::LimitScope;
use crate::server::SourceKey;

/// The salt of the hashes: random, in memory only, replaced daily.
pub(super) type Salt = [u8; 16];

/// What a limit is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    /// The client's address (IPv6: its /64).
    Source(IpAddr),
    /// A probe's ed25519 public key, as the 32 bytes of `X-Vantage-Key` (only charge it once
    /// a signature by that key verified).
    Key(&'a [u8; 32]),
}

impl Subject<'_> {
    /// The scope this subject is counted in.
    pub fn scope(self) -> LimitScope {
        match self {
            Subject::Source(_) => LimitScope::Source,
            Subject::Key(_) => LimitScope::Key,
        }
    }

    /// The table key: a salted hash of the reduced subject.
    pub(super) fn hash(self, salt: &Salt) -> u64 {
        let mut hasher = Sha256::new();
        hasher.update(salt);
        match self {
            Subject::Source(ip) => match SourceKey::of(ip) {
                SourceKey::V4(address) => {
                    hasher.update([4]);
                    hasher.update(address.to_be_bytes());
                }
                SourceKey::V6(prefix) => {
                    hasher.update([6]);
                    hasher.update(prefix.to_be_bytes());
                }
            },
            Subject::Key(key) => {
                hasher.update([0x6b]);
                hasher.update(key);
            }
        }
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(ip: &str, salt: &Salt) -> u64 {
        Subject::Source(ip.parse().expect("ip")).hash(salt)
    }

    #[test]
    fn ipv6_sources_are_counted_by_their_64() {
        let salt = [7; 16];
        assert_eq!(source("2001:db8:1:2::1", &salt), source("2001:db8:1:2:ffff:eeee:dddd:cccc", &salt));
        assert_ne!(source("2001:db8:1:2::1", &salt), source("2001:db8:1:3::1", &salt), "the next /64 is another source");
    }

    #[test]
    fn ipv4_sources_are_counted_by_address_however_written() {
        let salt = [7; 16];
        assert_eq!(source("192.0.2.1", &salt), source("::ffff:192.0.2.1", &salt));
        assert_ne!(source("192.0.2.1", &salt), source("192.0.2.2", &salt));
        // An IPv4 address and the IPv6 /64 spelling the same bytes are different sources.
        assert_ne!(source("192.0.2.1", &salt), source("c000:0201::", &salt));
    }

    #[test]
    fn the_salt_changes_every_hash_and_keys_and_sources_never_meet() {
        let (a, b) = ([1; 16], [2; 16]);
        assert_ne!(source("192.0.2.1", &a), source("192.0.2.1", &b));
        let key = [0u8; 32];
        assert_ne!(Subject::Key(&key).hash(&a), Subject::Key(&key).hash(&b));
        assert_ne!(Subject::Key(&key).hash(&a), source("::", &a));
        assert_eq!(Subject::Key(&key).scope(), LimitScope::Key);
        assert_eq!(Subject::Source("::1".parse().expect("ip")).scope(), LimitScope::Source);
    }
}
