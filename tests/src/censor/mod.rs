//! Userspace censors for the lab: the programs behind `vantage-lab-censor`, run inside the
//! `censor` namespace, that do what real censors do where the kernel alone cannot.
//!
//! Each censor uses the mechanism that fits what it emulates:
//!
//! - [`dns_inject`]: an *on-path* injector. It sniffs the probe-facing link with an AF_PACKET
//!   socket and races the real resolver with a forged reply; the query itself is never held,
//!   so the real answer arrives later, which is exactly the evidence the probe looks for.
//! - [`mitm`]: a TLS-intercepting proxy that the harness DNATs traffic into. Listed SNIs get a
//!   certificate from the censor's CA; everything else is spliced through untouched.
//! - [`tun`]: an *in-path* box. Policy routing sends one protocol from the probe through a TUN
//!   device, so every packet passes through userspace: [`quic_tun`] drops QUIC Initials with a
//!   listed SNI ([`quic_filter`]); [`fet_tun`] cuts fully encrypted TCP flows ([`fet`]) after a
//!   volume allowance, as the GFW's detector of random-looking traffic did.
//! - [`nfqueue`]: an *in-path* box on NFQUEUE (iptables' `NFQUEUE` target; the kernel holds each
//!   client→server TCP segment until userspace answers). [`ech_filter`] reassembles the first
//!   bytes of every flow and blocks ClientHellos that offer ECH, by drop or by RST.
//!
//! The decisions are pure functions over bytes ([`packet`], [`dns_forge`], [`tls_hello`],
//! [`quic_initial`], [`quic_filter`], [`ech_filter`]), unit-tested on byte vectors; the I/O modules are thin.

pub mod dns_forge;
pub mod dns_inject;
pub mod ech_filter;
pub mod fet;
pub mod fet_tun;
pub mod mitm;
pub mod nfqueue;
pub mod packet;
pub mod quic_filter;
pub mod quic_initial;
pub mod quic_tun;
pub mod tls_hello;
pub mod tun;

/// Names a censor acts on: each matches itself and its subdomains, ignoring ASCII case and a
/// trailing dot (`example.com` matches `WWW.Example.com.` but not `badexample.com`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameList(Vec<String>);

impl NameList {
    /// A list of `names`, normalised; empty entries are ignored.
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        NameList(names.into_iter().map(|n| normalise(n.as_ref())).filter(|n| !n.is_empty()).collect())
    }

    /// Whether `name` is listed, or is a subdomain of a listed name.
    pub fn matches(&self, name: &str) -> bool {
        let name = normalise(name);
        self.0.iter().any(|listed| {
            name == *listed
                || (name.len() > listed.len()
                    && name.ends_with(listed.as_str())
                    && name.as_bytes()[name.len() - listed.len() - 1] == b'.')
        })
    }

    /// The listed names.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Deterministic noise for hostile-input tests (xorshift32; no dependency, same bytes each run).
#[cfg(test)]
pub(crate) fn noise(state: &mut u32, max_len: usize) -> Vec<u8> {
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 17;
        *state ^= *state << 5;
        *state
    };
    let len = next() as usize % (max_len + 1);
    (0..len).map(|_| next() as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_themselves_and_subdomains_only() {
        let list = NameList::new(["Blocked.Example.", "other.test"]);
        assert!(list.matches("blocked.example"));
        assert!(list.matches("WWW.BLOCKED.EXAMPLE."));
        assert!(list.matches("a.b.other.test"));
        assert!(!list.matches("notblocked.example"));
        assert!(!list.matches("example"));
        assert!(!list.matches(""));
        assert!(!NameList::new([""]).matches(""));
    }
}
