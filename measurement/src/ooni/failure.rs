//! Vantage failures as OONI failure strings (`ooni/spec` df-007): the one mapping table.
//!
//! Vantage's [`Failure`] was built on OONI's vocabulary, so most members keep their string. The
//! table is still written out, as an exhaustive `match` with no wildcard, so that a new Vantage
//! failure does not compile until someone decides what OONI calls it, and so that the day the two
//! vocabularies drift apart there is one place to say how.
//!
//! A failure OONI has no string for is written the way OONI's own engine writes one:
//! `unknown_failure: <what>`, where `<what>` is fixed text (our name, or the raw code's fixed name
//! and number), never text from the network or the OS, which could carry an address.

use crate::failure::{Failure, RawCode};

crate::closed_set! {
    /// The df-007 failure strings Vantage emits in OONI records (a subset of what OONI's engine
    /// emits: `ooni/probe-cli` `internal/netxlite/errno.go`, `classify.go`).
    pub enum OoniFailure {
        /// `ECONNREFUSED`.
        ConnectionRefused => "connection_refused",
        /// `ECONNRESET`.
        ConnectionReset => "connection_reset",
        /// `ECONNABORTED`.
        ConnectionAborted => "connection_aborted",
        /// `EHOSTUNREACH`.
        HostUnreachable => "host_unreachable",
        /// `ENETUNREACH`.
        NetworkUnreachable => "network_unreachable",
        /// `ENETDOWN`.
        NetworkDown => "network_down",
        /// `EPERM`, `EACCES`.
        PermissionDenied => "permission_denied",
        /// `EADDRNOTAVAIL`.
        AddressNotAvailable => "address_not_available",
        /// Any timeout (OONI folds deadline, i/o and handshake timeouts into this one).
        GenericTimeoutError => "generic_timeout_error",
        /// The stream ended early.
        EofError => "eof_error",
        /// NXDOMAIN.
        DnsNxdomainError => "dns_nxdomain_error",
        /// An answer without an address of the asked type.
        DnsNoAnswer => "dns_no_answer",
        /// REFUSED.
        DnsRefusedError => "dns_refused_error",
        /// SERVFAIL.
        DnsServfailError => "dns_servfail_error",
        /// A reply that makes no sense.
        DnsServerMisbehaving => "dns_server_misbehaving",
        /// A bogon address in the answer.
        DnsBogonError => "dns_bogon_error",
        /// A reply with another query id.
        DnsReplyWithWrongQueryId => "dns_reply_with_wrong_query_id",
        /// `x509.HostnameError`, alert 112.
        SslInvalidHostname => "ssl_invalid_hostname",
        /// `x509.UnknownAuthorityError`.
        SslUnknownAuthority => "ssl_unknown_authority",
        /// `x509.CertificateInvalidError`.
        SslInvalidCertificate => "ssl_invalid_certificate",
        /// Any other handshake failure.
        SslFailedHandshake => "ssl_failed_handshake",
        /// QUIC version negotiation failed.
        QuicIncompatibleVersion => "quic_incompatible_version",
        /// OONI's fallback; written `unknown_failure: <what>` when we know what.
        UnknownFailure => "unknown_failure",
    }
}

/// The OONI string of a Vantage failure, with the raw code behind it (used only to name an
/// `unknown_failure`).
pub fn failure_string(failure: Failure, raw: Option<&RawCode>) -> String {
    match (ooni_failure(failure), failure) {
        (OoniFailure::UnknownFailure, Failure::UnknownFailure) => match raw.and_then(raw_label) {
            Some(what) => format!("unknown_failure: {what}"),
            None => OoniFailure::UnknownFailure.as_str().to_string(),
        },
        (OoniFailure::UnknownFailure, other) => format!("unknown_failure: {}", other.as_str()),
        (known, _) => known.as_str().to_string(),
    }
}

/// The mapping table: every Vantage failure, its OONI member.
pub fn ooni_failure(failure: Failure) -> OoniFailure {
    use OoniFailure as O;
    match failure {
        Failure::ConnectionRefused => O::ConnectionRefused,
        Failure::ConnectionReset => O::ConnectionReset,
        Failure::ConnectionAborted => O::ConnectionAborted,
        Failure::HostUnreachable => O::HostUnreachable,
        Failure::NetworkUnreachable => O::NetworkUnreachable,
        Failure::NetworkDown => O::NetworkDown,
        Failure::PermissionDenied => O::PermissionDenied,
        Failure::AddressNotAvailable => O::AddressNotAvailable,
        Failure::GenericTimeoutError => O::GenericTimeoutError,
        Failure::EofError => O::EofError,
        Failure::DnsNxdomainError => O::DnsNxdomainError,
        Failure::DnsNoAnswer => O::DnsNoAnswer,
        Failure::DnsRefusedError => O::DnsRefusedError,
        Failure::DnsServfailError => O::DnsServfailError,
        Failure::DnsServerMisbehaving => O::DnsServerMisbehaving,
        Failure::DnsBogonError => O::DnsBogonError,
        Failure::DnsReplyWithWrongQueryId => O::DnsReplyWithWrongQueryId,
        Failure::SslInvalidHostname => O::SslInvalidHostname,
        Failure::SslUnknownAuthority => O::SslUnknownAuthority,
        Failure::SslInvalidCertificate => O::SslInvalidCertificate,
        Failure::SslFailedHandshake => O::SslFailedHandshake,
        Failure::QuicIncompatibleVersion => O::QuicIncompatibleVersion,
        // Ours (a VPN reply that is not the protocol spoken): OONI has no string for it.
        Failure::ProtocolMismatch => O::UnknownFailure,
        Failure::UnknownFailure => O::UnknownFailure,
    }
}

/// A raw code as fixed text: `<space> <name> <code>` with what is known.
fn raw_label(raw: &RawCode) -> Option<String> {
    let mut parts = vec![raw.space.as_str().to_string()];
    parts.extend(raw.name.clone().filter(|n| is_fixed_name(n)));
    parts.extend(raw.code.map(|c| c.to_string()));
    (parts.len() > 1).then(|| parts.join(" "))
}

/// Raw names are fixed names by contract (`RawCode::name`); this keeps the promise even if a
/// runner ever broke it: only short identifiers pass, nothing that could be an address.
fn is_fixed_name(name: &str) -> bool {
    name.len() <= 48 && !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::closed_set::tests::assert_closed_set;
    use crate::failure::CodeSpace;

    /// df-007's list as the reference gives it (`reference/ooni.md` §2.1): every string we emit
    /// must be one of these, or OONI's `unknown_failure: …` fallback form.
    const DF_007: &[&str] = &[
        "address_family_not_supported",
        "address_in_use",
        "address_not_available",
        "already_connected",
        "bad_address",
        "bad_file_descriptor",
        "connection_aborted",
        "connection_already_closed",
        "connection_already_in_progress",
        "connection_refused",
        "connection_reset",
        "destination_address_required",
        "host_unreachable",
        "interrupted",
        "invalid_argument",
        "message_size",
        "network_down",
        "network_reset",
        "network_unreachable",
        "no_buffer_space",
        "no_protocol_option",
        "not_a_socket",
        "not_connected",
        "operation_would_block",
        "permission_denied",
        "protocol_not_supported",
        "timed_out",
        "wrong_protocol_type",
        "generic_timeout_error",
        "eof_error",
        "dns_nxdomain_error",
        "dns_no_answer",
        "dns_refused_error",
        "dns_servfail_error",
        "dns_server_misbehaving",
        "dns_temporary_failure",
        "dns_non_recoverable_failure",
        "dns_bogon_error",
        "dns_reply_with_wrong_query_id",
        "android_dns_cache_no_data",
        "ssl_invalid_hostname",
        "ssl_unknown_authority",
        "ssl_invalid_certificate",
        "ssl_failed_handshake",
        "quic_incompatible_version",
        "unknown_failure",
    ];

    #[test]
    fn the_ooni_set_is_a_consistent_closed_set_inside_df_007() {
        assert_closed_set(OoniFailure::ALL, |m| m.as_str(), OoniFailure::parse);
        for member in OoniFailure::ALL {
            assert!(DF_007.contains(&member.as_str()), "{member:?} is not a df-007 string");
        }
    }

    #[test]
    fn every_vantage_failure_maps_to_a_df_007_string() {
        for failure in Failure::ALL {
            let text = failure_string(*failure, None);
            let known = DF_007.contains(&text.as_str());
            let fallback = text.starts_with("unknown_failure: ") || text == "unknown_failure";
            assert!(known || fallback, "{failure:?} maps to {text}, not a df-007 string");
        }
    }

    #[test]
    fn vantage_failures_named_after_ooni_keep_their_name() {
        for failure in Failure::ALL.iter().filter(|f| !matches!(f, Failure::ProtocolMismatch | Failure::UnknownFailure)) {
            assert_eq!(failure_string(*failure, None), failure.as_str(), "{failure:?}");
        }
    }

    #[test]
    fn a_failure_ooni_has_no_string_for_uses_its_fallback_form() {
        assert_eq!(failure_string(Failure::ProtocolMismatch, None), "unknown_failure: protocol_mismatch");
        assert_eq!(failure_string(Failure::UnknownFailure, None), "unknown_failure");
        let enospc = RawCode::errno(28);
        assert_eq!(failure_string(Failure::UnknownFailure, Some(&enospc)), "unknown_failure: errno 28");
        let alert = RawCode::named(CodeSpace::TlsAlert, Some(80), "internal_error");
        assert_eq!(failure_string(Failure::UnknownFailure, Some(&alert)), "unknown_failure: tls_alert internal_error 80");
    }

    #[test]
    fn a_raw_name_that_is_not_a_fixed_name_is_left_out() {
        let leaky = RawCode::named(CodeSpace::TlsError, None, "peer 192.0.2.1 misbehaved");
        assert_eq!(failure_string(Failure::UnknownFailure, Some(&leaky)), "unknown_failure");
    }
}
