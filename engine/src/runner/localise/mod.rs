//! The TTL-limited repeats of a triggering packet, for [`crate::classify::localise`]: the
//! ClientHello over TCP ([`tcp`]) and the DNS query over UDP ([`udp`]). Each attempt is one fresh
//! socket and comes back as a [`crate::classify::localise::Seen`]; no address of an intermediate
//! hop is ever returned. The driver that decides which TTLs to try, and when, is
//! [`crate::localise`].

pub mod tcp;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod udp;

pub use tcp::tcp_attempt;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use udp::dns_attempt;
