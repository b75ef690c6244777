//! Failure strings in OONI's vocabulary, plus the raw code behind each.
//!
//! Researchers compare our data with OONI's, so a failure serialises to the same string OONI's
//! engine emits (`ooni/spec` df-007). A closed enum alone loses information, which is how OONI
//! ends up with many `unknown_failure`s; so every observation also keeps the raw code it was
//! derived from ([`RawCode`]: errno, TLS alert, DNS rcode, QUIC error) next to the string.

use std::io;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

crate::closed_set! {
    /// Why one step of a measurement failed, sorted by where the failure came from.
    ///
    /// `None` in an observation means the step succeeded.
    pub enum Failure {
        // --- transport (errno) ---
        /// The peer, or something on the path, answered the SYN with a RST.
        ConnectionRefused => "connection_refused",
        /// A RST arrived on an established connection (RST injection looks like this).
        ConnectionReset => "connection_reset",
        /// The connection was aborted locally.
        ConnectionAborted => "connection_aborted",
        /// ICMP host unreachable, or no ARP/ND answer.
        HostUnreachable => "host_unreachable",
        /// ICMP network unreachable, or no route at all.
        NetworkUnreachable => "network_unreachable",
        /// The local network interface is down.
        NetworkDown => "network_down",
        /// The kernel refused the operation (a local firewall usually).
        PermissionDenied => "permission_denied",
        /// The requested local address can't be used.
        AddressNotAvailable => "address_not_available",
        // --- time and end of stream ---
        /// Nothing came back in time.
        GenericTimeoutError => "generic_timeout_error",
        /// The peer closed the stream before the exchange completed (FIN / EOF).
        EofError => "eof_error",
        // --- DNS ---
        /// The resolver said the name does not exist.
        DnsNxdomainError => "dns_nxdomain_error",
        /// The resolver answered, but with no address of the asked type.
        DnsNoAnswer => "dns_no_answer",
        /// The resolver refused the query (rcode REFUSED).
        DnsRefusedError => "dns_refused_error",
        /// The resolver failed (rcode SERVFAIL).
        DnsServfailError => "dns_servfail_error",
        /// The resolver's reply made no sense (malformed, other rcode).
        DnsServerMisbehaving => "dns_server_misbehaving",
        /// The resolver answered with a bogon address (private, loopback, reserved…).
        DnsBogonError => "dns_bogon_error",
        /// A reply arrived whose query id did not match ours.
        DnsReplyWithWrongQueryId => "dns_reply_with_wrong_query_id",
        // --- TLS / QUIC ---
        /// The certificate does not cover the name we asked for.
        SslInvalidHostname => "ssl_invalid_hostname",
        /// The certificate chain ends at an issuer we do not trust.
        SslUnknownAuthority => "ssl_unknown_authority",
        /// The certificate is expired, not yet valid, or otherwise malformed.
        SslInvalidCertificate => "ssl_invalid_certificate",
        /// The handshake failed: a fatal alert or a protocol error.
        SslFailedHandshake => "ssl_failed_handshake",
        /// The QUIC server speaks none of our versions.
        QuicIncompatibleVersion => "quic_incompatible_version",
        // --- VPN and other protocol replies ---
        /// The peer answered with bytes that are not the protocol we spoke.
        ProtocolMismatch => "protocol_mismatch",
        // --- fallback ---
        /// Something we have no string for yet; the raw code says what.
        UnknownFailure => "unknown_failure",
    }
}

impl Failure {
    /// Did the network stay silent (as opposed to answering with an error)?
    pub fn is_timeout(self) -> bool {
        self == Self::GenericTimeoutError
    }

    /// Does this failure say the local machine has no usable network at all?
    pub fn is_local_network_failure(self) -> bool {
        matches!(self, Self::NetworkUnreachable | Self::NetworkDown | Self::AddressNotAvailable)
    }

    /// Classify an I/O error into a failure and its raw code.
    ///
    /// Errno is checked first because `io::ErrorKind` folds distinct causes together
    /// (host vs network unreachable), and OONI distinguishes them.
    pub fn from_io(err: &io::Error) -> (Failure, RawCode) {
        let raw = match err.raw_os_error() {
            Some(errno) => RawCode::errno(errno),
            None => RawCode::io_kind(err.kind()),
        };
        let failure = match err.raw_os_error() {
            Some(errno) => match errno_failure(errno) {
                Some(f) => f,
                None => kind_failure(err.kind()),
            },
            None => kind_failure(err.kind()),
        };
        (failure, raw)
    }
}

/// Linux errno values (the probe's platform of record; other platforms fall back to ErrorKind).
fn errno_failure(errno: i32) -> Option<Failure> {
    Some(match errno {
        111 => Failure::ConnectionRefused,
        104 => Failure::ConnectionReset,
        103 => Failure::ConnectionAborted,
        113 => Failure::HostUnreachable,
        101 => Failure::NetworkUnreachable,
        100 => Failure::NetworkDown,
        1 | 13 => Failure::PermissionDenied,
        99 => Failure::AddressNotAvailable,
        110 => Failure::GenericTimeoutError,
        32 => Failure::EofError, // EPIPE: the peer is gone
        _ => return None,
    })
}

fn kind_failure(kind: io::ErrorKind) -> Failure {
    use io::ErrorKind as K;
    match kind {
        K::ConnectionRefused => Failure::ConnectionRefused,
        K::ConnectionReset => Failure::ConnectionReset,
        K::ConnectionAborted => Failure::ConnectionAborted,
        K::HostUnreachable => Failure::HostUnreachable,
        K::NetworkUnreachable => Failure::NetworkUnreachable,
        K::NetworkDown => Failure::NetworkDown,
        K::PermissionDenied => Failure::PermissionDenied,
        K::AddrNotAvailable => Failure::AddressNotAvailable,
        K::TimedOut | K::WouldBlock => Failure::GenericTimeoutError,
        K::UnexpectedEof | K::BrokenPipe => Failure::EofError,
        _ => Failure::UnknownFailure,
    }
}

/// The code a failure was derived from, so `unknown_failure` can still be analysed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RawCode {
    /// Which number space `code` belongs to.
    pub space: CodeSpace,
    /// The number itself (errno, alert, rcode, QUIC error code), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// A short fixed name for the code (e.g. `ECONNRESET`, `handshake_failure`, `SERVFAIL`).
    /// Never free text from the network or the OS: those can carry addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

crate::closed_set! {
    /// The number space of a [`RawCode`].
    pub enum CodeSpace {
        /// Operating-system errno.
        Errno => "errno",
        /// `std::io::ErrorKind`, when no errno was available.
        IoKind => "io_kind",
        /// TLS alert description (RFC 8446 §6).
        TlsAlert => "tls_alert",
        /// A rustls error that is not an alert (the name says which).
        TlsError => "tls_error",
        /// DNS response code (RFC 1035 §4.1.1).
        DnsRcode => "dns_rcode",
        /// QUIC transport or application error code (RFC 9000 §20).
        QuicError => "quic_error",
        /// The probe's own timeout fired.
        Timeout => "timeout",
        /// A protocol reply the probe refused (VPN handshakes); the name says why
        /// (`bad_authentication`, `wrong_session`, …).
        Protocol => "protocol",
    }
}

impl RawCode {
    /// An errno, with its symbolic name where we know it.
    pub fn errno(errno: i32) -> Self {
        let name = match errno {
            1 => "EPERM",
            13 => "EACCES",
            32 => "EPIPE",
            99 => "EADDRNOTAVAIL",
            100 => "ENETDOWN",
            101 => "ENETUNREACH",
            103 => "ECONNABORTED",
            104 => "ECONNRESET",
            110 => "ETIMEDOUT",
            111 => "ECONNREFUSED",
            113 => "EHOSTUNREACH",
            _ => "",
        };
        RawCode { space: CodeSpace::Errno, code: Some(errno.into()), name: (!name.is_empty()).then(|| name.to_string()) }
    }

    /// An `io::ErrorKind` (its Debug name is fixed text, never carrying an address).
    pub fn io_kind(kind: io::ErrorKind) -> Self {
        RawCode { space: CodeSpace::IoKind, code: None, name: Some(format!("{kind:?}")) }
    }

    /// Our own timer ran out after `after_ms`.
    pub fn timeout(after_ms: u64) -> Self {
        RawCode { space: CodeSpace::Timeout, code: Some(after_ms.try_into().unwrap_or(i64::MAX)), name: None }
    }

    /// A code in `space` with a fixed name.
    pub fn named(space: CodeSpace, code: Option<i64>, name: &str) -> Self {
        RawCode { space, code, name: Some(name.to_string()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_failure_string_is_unique_and_matches_serde() {
        let mut seen = HashSet::new();
        for f in Failure::ALL {
            assert!(seen.insert(f.as_str()), "duplicate label {}", f.as_str());
            let json = serde_json::to_string(f).expect("serialise");
            assert_eq!(json, format!("\"{}\"", f.as_str()));
        }
    }

    #[test]
    fn errno_beats_error_kind_for_unreachable() {
        let (f, raw) = Failure::from_io(&io::Error::from_raw_os_error(113));
        assert_eq!(f, Failure::HostUnreachable);
        assert_eq!(raw.name.as_deref(), Some("EHOSTUNREACH"));
        let (f, _) = Failure::from_io(&io::Error::from_raw_os_error(101));
        assert_eq!(f, Failure::NetworkUnreachable);
        assert!(f.is_local_network_failure());
    }

    #[test]
    fn reset_and_refused_are_told_apart() {
        assert_eq!(Failure::from_io(&io::Error::from_raw_os_error(104)).0, Failure::ConnectionReset);
        assert_eq!(Failure::from_io(&io::Error::from(io::ErrorKind::ConnectionRefused)).0, Failure::ConnectionRefused);
    }

    #[test]
    fn an_unknown_errno_falls_back_to_its_kind_and_keeps_the_number() {
        let (f, raw) = Failure::from_io(&io::Error::from_raw_os_error(28)); // ENOSPC
        assert_eq!(f, Failure::UnknownFailure);
        assert_eq!(raw.code, Some(28));
        assert_eq!(raw.space, CodeSpace::Errno);
    }
}
