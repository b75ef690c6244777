//! Vantage failures as OONI failure strings (`ooni/spec` df-007): the one mapping table.
//!
//! Vantage's [`Failure`] was built on OONI's vocabulary, so a member keeps its string unless OONI
//! has none for it; a test holds every string to df-007's list, so a new Vantage failure that
//! OONI does not know fails it until someone decides here what OONI calls it.
//!
//! A failure OONI has no string for is written the way OONI's own engine writes one:
//! `unknown_failure: <what>`, where `<what>` is fixed text (our name, or the raw code's fixed name
//! and number), never text from the network or the OS, which could carry an address.

use crate::failure::{Failure, RawCode};

/// The OONI string of a Vantage failure, with the raw code behind it (used only to name an
/// `unknown_failure`).
pub fn failure_string(failure: Failure, raw: Option<&RawCode>) -> String {
    match failure {
        // Ours (a VPN reply that is not the protocol spoken): OONI has no string for it.
        Failure::ProtocolMismatch => format!("unknown_failure: {}", failure.as_str()),
        Failure::UnknownFailure => match raw.and_then(raw_label) {
            Some(what) => format!("unknown_failure: {what}"),
            None => failure.as_str().to_string(),
        },
        // Every other Vantage failure is named after OONI's: its name is the df-007 string (the
        // test `every_vantage_failure_maps_to_a_df_007_string` fails for a new one that is not).
        named => named.as_str().to_string(),
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
pub(super) mod tests {
    use super::*;
    use crate::failure::CodeSpace;

    /// df-007's list as the reference gives it (`reference/ooni.md` §2.1): every string we emit
    /// must be one of these, or OONI's `unknown_failure: …` fallback form.
    pub(in crate::ooni) const DF_007: &[&str] = &[
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
